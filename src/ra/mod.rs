//! IPv6 router advertisements on the host's bridges (RFC 4861 router side), replacing radvd.
//! Pure: `packet` (wire format), `scheduler` (timing rules), `config` (the `ra` settings)
//! and `advert` (what an RA says). IO: `sender` (raw ICMPv6 socket), `monitor` (netlink
//! link/address events) and `runtime` (the per-bridge tasks behind [`spawn`]).

pub mod advert;
pub mod config;
pub mod monitor;
pub mod packet;
pub mod runtime;
pub mod scheduler;
pub mod sender;

pub use config::RaConfig;
pub use runtime::{Bridge, BridgeStatus, RaHandle, RaState, StopMode, spawn};
