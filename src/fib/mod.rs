//! The kernel FIB side: what to change in the kernel routing table.

pub mod diff;
