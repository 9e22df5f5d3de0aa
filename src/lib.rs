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

/// Helpers the unit tests share.
#[cfg(test)]
pub(crate) mod testing {
    /// A prefix (`IpNet`, `Ipv4Net`, `Ipv6Net`: whichever the caller wants) from a literal.
    pub fn net<N: std::str::FromStr<Err: std::fmt::Debug>>(s: &str) -> N {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} is not a prefix: {e:?}"))
    }

    /// A next hop via `gateway` on interface 7.
    pub fn hop(gateway: &str) -> crate::rib::NextHop {
        crate::rib::NextHop {
            gateway: gateway.parse().unwrap(),
            ifindex: Some(7),
        }
    }
}
