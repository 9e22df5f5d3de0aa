//! cilium-peer: a passive dual-stack BGP speaker for Cilium that installs learned routes
//! into a kernel table, and an IPv6 router advertisement sender for the host's bridges.

pub mod bgp;
pub mod ra;
