//! The kernel FIB side: what to change in the kernel routing table (`diff`, pure) and the
//! netlink code that changes it, the routes a previous run left there (`adopted`, pure),
//! and the kernel events that show it changed behind our back (`monitor`).
//!
//! The netlink code, in layers: `nlmsg` frames messages (header, attributes, the one list of
//! message types; pure), `route` and `nexthop` encode and parse route and nexthop-object
//! messages (pure), `socket` holds the sockets (`netlink_sys::Socket`, options through nix
//! and socket2) and the batched [`socket::Channel`] with its courier thread, `netlink` is the
//! writer with its books of our routes (`installed`) and objects, and `monitor` listens on a
//! socket of the same layer and hands the daemon parsed routes.
//!
//! Which netlink style where, and why:
//! - our own batched socket (`socket`, `route`, `nexthop`) for everything about routes and
//!   nexthop objects: bulk writes many requests per `sendmsg` without acknowledgements,
//!   dumps of the whole table, and the monitor's events (filtered in the kernel by a socket
//!   filter). That is the hot path (200,000 routes), where an async request/response client
//!   would cost a round trip and an allocation per route;
//! - `rtnetlink` (async, tokio) off the hot path, outside this module: the few
//!   request/response calls for neighbor entries of IPv4-mapped next hops
//!   (`crate::neighbor`) and the link and address events RA watches (`crate::ra::monitor`),
//!   where convenience beats speed.

pub mod adopted;
pub mod diff;
pub mod installed;
pub mod monitor;
pub mod netlink;
pub mod nexthop;
pub mod nlmsg;
pub mod route;
pub mod socket;
