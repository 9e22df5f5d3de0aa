//! IPv6 router advertisements on the host's bridges (RFC 4861 router side), replacing radvd.
//! `packet` is the wire format, `scheduler` the timing rules.

pub mod packet;
pub mod scheduler;
