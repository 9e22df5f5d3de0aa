//! The kernel FIB side: what to change in the kernel routing table (`diff`, pure) and the
//! netlink code that changes it (`netlink`).

pub mod diff;
pub mod netlink;
pub mod nexthop;
