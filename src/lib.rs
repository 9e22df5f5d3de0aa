//! cilium-peer: a passive dual-stack BGP speaker for Cilium that installs learned routes
//! into a kernel table, and an IPv6 router advertisement sender for the host's bridges.
//!
//! The flow: `bgp::listener` accepts, `bgp::peer` drives a `bgp::session` per connection
//! and applies `policy`, `daemon` merges routes into the `rib`, whose changes `fib` writes
//! into the kernel. `config` is the validated config file; `control` serves `show`;
//! `metrics` serves Prometheus; `ra` sends router advertisements on the bridges; `cilium`
//! writes the Cilium side of the sessions (`cilium-peer cilium-manifests`).

pub mod bfd;
pub mod bgp;
pub mod cilium;
pub mod config;
pub mod control;
pub mod daemon;
pub mod fib;
pub mod liveness;
pub mod metrics;
pub mod neighbor;
pub mod policy;
pub mod ra;
pub mod rib;
