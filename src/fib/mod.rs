//! The kernel FIB side: what to change in the kernel routing table (`diff`, pure) and the
//! netlink code that changes it (`netlink`), and the routes a previous run left there
//! (`adopted`, pure).

pub mod adopted;
pub mod diff;
pub mod netlink;
