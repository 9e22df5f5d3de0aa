//! IPv6 router advertisements on the host's bridges (RFC 4861 router side), replacing radvd.
//! `packet` is the wire format, `scheduler` the timing rules, `config` the `ra` settings and
//! `advert` what an RA says; all four are pure.

pub mod advert;
pub mod config;
pub mod packet;
pub mod scheduler;
