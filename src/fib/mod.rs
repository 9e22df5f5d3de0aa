//! The kernel FIB side: what to change in the kernel routing table (`diff`, pure) and the
//! netlink code that changes it (`netlink`, with nexthop objects from `nexthop` and its
//! books of our routes in `installed`), the routes a previous run left there (`adopted`,
//! pure), and the kernel events that show it changed behind our back (`monitor`).

pub mod adopted;
pub mod diff;
pub mod installed;
pub mod monitor;
pub mod netlink;
pub mod nexthop;
