//! Routes a previous run left in our kernel table, adopted at start. Each next hop of an
//! adopted route stays until the peer behind its gateway has come back and sent End-of-RIB
//! for the route's family (it had its chance to announce the route again), or until the
//! grace time ends. Meanwhile the kernel holds the union of the RIB's next hops and the
//! adopted ones, so an ECMP route keeps every leg while its nodes return one by one.
//! Pure: the daemon owns the clock and talks to the kernel.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::rib::{Afi, NextHop, NextHops};

/// The adopted next hops, by prefix; a prefix leaves once none is left.
#[derive(Debug, Default)]
pub struct Adopted {
    routes: BTreeMap<IpNet, Vec<NextHop>>,
}

impl Adopted {
    /// Adopts the routes a kernel dump found. A route without next hops is none that we
    /// install: it is not adopted (the caller removes it).
    pub fn new(routes: BTreeMap<IpNet, Vec<NextHop>>) -> Adopted {
        let mut routes = routes;
        routes.retain(|_, hops| !hops.is_empty());
        Adopted { routes }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Prefixes with adopted next hops.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// The adopted next hops of `prefix` (empty when none).
    pub fn get(&self, prefix: &IpNet) -> &[NextHop] {
        self.routes.get(prefix).map_or(&[], Vec::as_slice)
    }

    /// Every prefix with its adopted next hops, by prefix.
    pub fn iter(&self) -> impl Iterator<Item = (&IpNet, &[NextHop])> {
        self.routes.iter().map(|(p, h)| (p, h.as_slice()))
    }

    /// What the kernel should hold for `prefix` when the RIB wants `rib` (sorted, without
    /// duplicates): both sets, the same way. Empty means no route.
    pub fn desired(&self, prefix: &IpNet, rib: &NextHops) -> NextHops {
        let adopted = self.get(prefix);
        if adopted.is_empty() {
            return NextHops::clone(rib);
        }
        let mut hops: Vec<NextHop> = rib.iter().chain(adopted).copied().collect();
        hops.sort_unstable();
        hops.dedup();
        hops.into()
    }

    /// Peers reachable at the gateways in `done` sent End-of-RIB for `afi`: their adopted
    /// next hops in that family go. Returns the prefixes that lost next hops.
    pub fn end_of_rib(&mut self, afi: Afi, done: &HashSet<IpAddr>) -> Vec<IpNet> {
        let mut changed = Vec::new();
        self.routes.retain(|prefix, hops| {
            if Afi::of(prefix) != afi {
                return true;
            }
            let before = hops.len();
            hops.retain(|h| !done.contains(&h.gateway));
            if hops.len() != before {
                changed.push(*prefix);
            }
            !hops.is_empty()
        });
        changed
    }

    /// The grace time is over: every adopted next hop goes. Returns the prefixes.
    pub fn expire(&mut self) -> Vec<IpNet> {
        std::mem::take(&mut self.routes).into_keys().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::{hop, net};

    fn adopted(routes: &[(&str, &[&str])]) -> Adopted {
        Adopted::new(
            routes
                .iter()
                .map(|(p, gws)| (net(p), gws.iter().map(|g| hop(g)).collect()))
                .collect(),
        )
    }

    fn set(hops: &[NextHop]) -> NextHops {
        NextHops::from(hops)
    }

    fn done(gateways: &[&str]) -> HashSet<IpAddr> {
        gateways.iter().map(|g| g.parse().unwrap()).collect()
    }

    #[test]
    fn the_kernel_gets_the_rib_next_hops_and_the_adopted_ones_together() {
        let a = adopted(&[("198.51.100.7/32", &["2001:db8:1::11", "2001:db8:1::12"])]);
        let prefix = net("198.51.100.7/32");
        assert_eq!(
            *a.desired(&prefix, &set(&[hop("2001:db8:1::11")])),
            [hop("2001:db8:1::11"), hop("2001:db8:1::12")]
        );
        assert_eq!(
            *a.desired(&net("10.244.1.0/24"), &set(&[hop("2001:db8:1::13")])),
            [hop("2001:db8:1::13")]
        );
        assert!(a.desired(&net("10.244.1.0/24"), &set(&[])).is_empty());
    }

    #[test]
    fn an_end_of_rib_removes_only_that_peers_next_hops_in_that_family() {
        let mut a = adopted(&[
            ("198.51.100.7/32", &["2001:db8:1::11", "2001:db8:1::12"]),
            ("10.244.1.0/24", &["2001:db8:1::11"]),
            ("fd00:ff00:1::/64", &["2001:db8:1::11"]),
        ]);
        let changed = a.end_of_rib(Afi::Ipv4, &done(&["2001:db8:1::11"]));
        assert_eq!(changed, vec![net("10.244.1.0/24"), net("198.51.100.7/32")]);
        assert_eq!(a.get(&net("198.51.100.7/32")), &[hop("2001:db8:1::12")][..]);
        assert!(a.get(&net("10.244.1.0/24")).is_empty());
        assert_eq!(
            a.get(&net("fd00:ff00:1::/64")),
            &[hop("2001:db8:1::11")][..]
        );
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn an_end_of_rib_from_a_peer_without_adopted_next_hops_changes_nothing() {
        let mut a = adopted(&[("10.244.1.0/24", &["2001:db8:1::11"])]);
        assert!(
            a.end_of_rib(Afi::Ipv4, &done(&["2001:db8:1::12"]))
                .is_empty()
        );
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn the_grace_time_ending_releases_every_prefix() {
        let mut a = adopted(&[
            ("10.244.1.0/24", &["2001:db8:1::11"]),
            ("fd00:ff00:1::/64", &["2001:db8:1::12"]),
        ]);
        assert_eq!(
            a.expire(),
            vec![net("10.244.1.0/24"), net("fd00:ff00:1::/64")]
        );
        assert!(a.is_empty());
    }

    #[test]
    fn a_dumped_route_without_next_hops_is_not_adopted() {
        let a = Adopted::new([(net("10.244.1.0/24"), Vec::new())].into_iter().collect());
        assert!(a.is_empty());
    }
}
