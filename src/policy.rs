//! Import policy, pure: which announced prefixes may enter the RIB (the built-in safety
//! rules, then the neighbor group's `import` list) and which kernel next hop an announced
//! BGP next hop becomes. The caller resolves IPv4-mapped next hops through the kernel's
//! neighbor tables; everything else is decided here.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::bgp::wire::AsPath;
use crate::config::ImportRule;
use crate::rib::NextHop;

/// Why a prefix or its next hop was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rejection {
    DefaultRoute,
    OverlapsBridge,
    LinkLocal,
    Multicast,
    Loopback,
    /// Outside every `import` rule, or longer than its `max_length`.
    NotImported,
    /// The next hop is neither the peer nor on the peer's bridge.
    NextHopNotOnLink,
    /// `::ffff:<v4>` from an IPv4 session, and the node's link-local address is unknown.
    MappedNextHopUnresolved,
    /// An IPv6 route with an IPv4 next hop, or a next hop the kernel cannot use.
    UnusableNextHop,
    /// The UPDATE was malformed in a way RFC 7606 turns into a withdrawal.
    TreatAsWithdraw,
    /// Our own AS is in the AS_PATH: the route went through us already (RFC 4271 9.1.2).
    AsPathLoop,
}

impl Rejection {
    pub const ALL: [Rejection; 11] = [
        Rejection::DefaultRoute,
        Rejection::OverlapsBridge,
        Rejection::LinkLocal,
        Rejection::Multicast,
        Rejection::Loopback,
        Rejection::NotImported,
        Rejection::NextHopNotOnLink,
        Rejection::MappedNextHopUnresolved,
        Rejection::UnusableNextHop,
        Rejection::TreatAsWithdraw,
        Rejection::AsPathLoop,
    ];

    /// A stable name for logs, `show` and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Rejection::DefaultRoute => "default_route",
            Rejection::OverlapsBridge => "overlaps_bridge",
            Rejection::LinkLocal => "link_local",
            Rejection::Multicast => "multicast",
            Rejection::Loopback => "loopback",
            Rejection::NotImported => "not_imported",
            Rejection::NextHopNotOnLink => "next_hop_not_on_link",
            Rejection::MappedNextHopUnresolved => "mapped_next_hop_unresolved",
            Rejection::UnusableNextHop => "unusable_next_hop",
            Rejection::TreatAsWithdraw => "treat_as_withdraw",
            Rejection::AsPathLoop => "as_path_loop",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// RFC 4271 9.1.2: a route whose AS_PATH (AS_SEQUENCE or AS_SET) holds our own AS looped
/// back to us and is not used. Applied to every peer: iBGP Cilium nodes send an empty
/// AS_PATH, eBGP ones their own AS, so our AS in it is never legitimate here.
pub fn check_as_path(as_path: Option<&AsPath>, local_as: u32) -> Result<(), Rejection> {
    match as_path {
        Some(path) if path.contains(local_as) => Err(Rejection::AsPathLoop),
        _ => Ok(()),
    }
}

/// The built-in safety rules, then the allow list. `bridges` are every bridge's prefixes.
/// Address space no learned route may touch, with the reason.
const SPECIAL: &[(IpNet, Rejection)] = {
    use std::net::{Ipv4Addr as V4, Ipv6Addr as V6};
    const fn v4(a: [u8; 4], len: u8) -> IpNet {
        IpNet::V4(ipnet::Ipv4Net::new_assert(
            V4::new(a[0], a[1], a[2], a[3]),
            len,
        ))
    }
    const fn v6(a: [u16; 8], len: u8) -> IpNet {
        IpNet::V6(ipnet::Ipv6Net::new_assert(
            V6::new(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]),
            len,
        ))
    }
    &[
        (v4([169, 254, 0, 0], 16), Rejection::LinkLocal),
        (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), Rejection::LinkLocal),
        (v4([224, 0, 0, 0], 4), Rejection::Multicast),
        (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), Rejection::Multicast),
        (v4([127, 0, 0, 0], 8), Rejection::Loopback),
        (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), Rejection::Loopback),
        // IPv4-mapped and unspecified space has no business in an IPv6 table.
        (
            v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),
            Rejection::UnusableNextHop,
        ),
        (v6([0; 8], 128), Rejection::UnusableNextHop),
        (v4([0, 0, 0, 0], 8), Rejection::UnusableNextHop),
    ]
};

pub fn check_prefix(
    prefix: &IpNet,
    bridges: &[IpNet],
    import: &[ImportRule],
) -> Result<(), Rejection> {
    if prefix.prefix_len() == 0 {
        return Err(Rejection::DefaultRoute);
    }
    for (net, why) in SPECIAL {
        if overlaps(net, prefix) {
            return Err(*why);
        }
    }
    if bridges.iter().any(|b| overlaps(b, prefix)) {
        return Err(Rejection::OverlapsBridge);
    }
    if !import.is_empty() && !import.iter().any(|rule| rule.accepts(prefix)) {
        return Err(Rejection::NotImported);
    }
    Ok(())
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

/// Where the peer sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerLink {
    /// The peer's address (IPv4-mapped addresses already turned into IPv4).
    pub address: IpAddr,
    /// The interface the peer is directly connected on: its bridge, or the scope of a
    /// link-local session.
    pub ifindex: Option<u32>,
    /// The on-link prefixes of that bridge.
    pub on_link: Vec<IpNet>,
}

/// What an announced next hop becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Ready(NextHop),
    /// `::ffff:<v4>`: the caller must find that node's IPv6 link-local address on
    /// `PeerLink::ifindex` and call `resolve_link_local`.
    NeedsLinkLocalOf(Ipv4Addr),
    Rejected(Rejection),
}

/// Turns the announced next hop of a route into a kernel next hop. `announced` is the
/// NEXT_HOP or MP_REACH next hop (`link_local` the second half of a 32-byte one).
pub fn resolve_next_hop(
    peer: &PeerLink,
    prefix: &IpNet,
    announced: IpAddr,
    link_local: Option<Ipv6Addr>,
) -> Resolution {
    let announced = match announced {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            // Cilium over an IPv4 session: `::ffff:<node v4>` for IPv6 routes.
            Some(v4) if prefix.addr().is_ipv6() => {
                if IpAddr::V4(v4) != peer.address && !on_link(peer, IpAddr::V4(v4)) {
                    return Resolution::Rejected(Rejection::NextHopNotOnLink);
                }
                return match peer.ifindex {
                    Some(_) => Resolution::NeedsLinkLocalOf(v4),
                    None => Resolution::Rejected(Rejection::MappedNextHopUnresolved),
                };
            }
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    // Unspecified means the peer itself.
    let gateway = if announced.is_unspecified() {
        peer.address
    } else {
        announced
    };
    if prefix.addr().is_ipv6() && gateway.is_ipv4() {
        return Resolution::Rejected(Rejection::UnusableNextHop);
    }
    // Prefer the link-local half of a 32-byte next hop when the global one is not on our
    // link (BIRD sends both).
    if let Some(ll) = link_local
        && !on_link(peer, gateway)
        && gateway != peer.address
        && peer.ifindex.is_some()
    {
        return Resolution::Ready(NextHop {
            gateway: IpAddr::V6(ll),
            ifindex: peer.ifindex,
        });
    }
    if let IpAddr::V6(v6) = gateway
        && v6.is_unicast_link_local()
    {
        return match peer.ifindex {
            Some(ifindex) => Resolution::Ready(NextHop {
                gateway,
                ifindex: Some(ifindex),
            }),
            None => Resolution::Rejected(Rejection::NextHopNotOnLink),
        };
    }
    if gateway != peer.address && !on_link(peer, gateway) {
        return Resolution::Rejected(Rejection::NextHopNotOnLink);
    }
    Resolution::Ready(NextHop {
        gateway,
        ifindex: peer.ifindex,
    })
}

/// The node's link-local address, found for a `NeedsLinkLocalOf` next hop.
pub fn resolve_link_local(peer: &PeerLink, link_local: Option<Ipv6Addr>) -> Resolution {
    match (link_local, peer.ifindex) {
        (Some(ll), Some(ifindex)) if ll.is_unicast_link_local() => Resolution::Ready(NextHop {
            gateway: IpAddr::V6(ll),
            ifindex: Some(ifindex),
        }),
        _ => Resolution::Rejected(Rejection::MappedNextHopUnresolved),
    }
}

fn on_link(peer: &PeerLink, address: IpAddr) -> bool {
    peer.on_link.iter().any(|p| p.contains(&address))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::net;
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const BRIDGES: &[&str] = &["192.0.2.0/24", "2001:db8:1::/64"];

    fn check(prefix: &str, import: &[ImportRule]) -> Result<(), Rejection> {
        let bridges: Vec<IpNet> = BRIDGES.iter().map(|b| net(b)).collect();
        check_prefix(&net(prefix), &bridges, import)
    }

    fn v6_peer() -> PeerLink {
        PeerLink {
            address: ip("2001:db8:1::11"),
            ifindex: Some(7),
            on_link: BRIDGES.iter().map(|b| net(b)).collect(),
        }
    }

    fn v4_peer() -> PeerLink {
        PeerLink {
            address: ip("192.0.2.11"),
            ..v6_peer()
        }
    }

    #[test]
    fn pod_cidrs_and_load_balancer_ips_pass_the_safety_rules() {
        for p in [
            "10.244.1.0/24",
            "fd00:ff00:1::/64",
            "198.51.100.7/32",
            "2001:db8:ff::7/128",
        ] {
            assert_eq!(check(p, &[]), Ok(()), "{p}");
        }
    }

    #[test]
    fn each_safety_rule_rejects_its_own_space() {
        let cases = [
            ("0.0.0.0/0", Rejection::DefaultRoute),
            ("::/0", Rejection::DefaultRoute),
            ("192.0.2.128/25", Rejection::OverlapsBridge),
            ("192.0.0.0/16", Rejection::OverlapsBridge),
            ("2001:db8:1::5/128", Rejection::OverlapsBridge),
            ("169.254.1.0/24", Rejection::LinkLocal),
            ("fe80::/64", Rejection::LinkLocal),
            ("224.1.0.0/16", Rejection::Multicast),
            ("ff02::/16", Rejection::Multicast),
            ("127.0.0.1/32", Rejection::Loopback),
            ("::1/128", Rejection::Loopback),
            ("::ffff:10.0.0.0/104", Rejection::UnusableNextHop),
        ];
        for (p, why) in cases {
            assert_eq!(check(p, &[]), Err(why), "{p}");
        }
    }

    #[test]
    fn our_own_as_anywhere_in_the_as_path_is_a_loop() {
        use crate::bgp::wire::AsSegment;
        let path = |segments| AsPath { segments };
        assert_eq!(check_as_path(None, 65100), Ok(()));
        assert_eq!(check_as_path(Some(&path(vec![])), 65100), Ok(()));
        let ebgp = path(vec![AsSegment::Sequence(vec![65200, 65300])]);
        assert_eq!(check_as_path(Some(&ebgp), 65100), Ok(()));
        let looped = path(vec![AsSegment::Sequence(vec![65200, 65100])]);
        assert_eq!(
            check_as_path(Some(&looped), 65100),
            Err(Rejection::AsPathLoop)
        );
        let in_set = path(vec![
            AsSegment::Sequence(vec![65200]),
            AsSegment::Set(vec![65300, 4_200_000_000]),
        ]);
        assert_eq!(
            check_as_path(Some(&in_set), 4_200_000_000),
            Err(Rejection::AsPathLoop)
        );
    }

    #[test]
    fn every_rejection_has_its_own_stable_name() {
        let names: std::collections::BTreeSet<&str> =
            Rejection::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), Rejection::ALL.len());
        assert!(names.contains("as_path_loop"));
    }

    #[test]
    fn an_import_list_accepts_only_its_prefixes_up_to_max_length() {
        let import = [ImportRule {
            prefix: net("10.244.0.0/16"),
            max_length: 24,
        }];
        assert_eq!(check("10.244.3.0/24", &import), Ok(()));
        assert_eq!(check("10.244.3.0/25", &import), Err(Rejection::NotImported));
        assert_eq!(check("10.245.0.0/24", &import), Err(Rejection::NotImported));
        assert_eq!(check("fd00::/64", &import), Err(Rejection::NotImported));
    }

    #[test]
    fn an_unspecified_next_hop_means_the_peer_itself() {
        let r = resolve_next_hop(&v6_peer(), &net("10.244.1.0/24"), ip("::"), None);
        assert_eq!(
            r,
            Resolution::Ready(NextHop {
                gateway: ip("2001:db8:1::11"),
                ifindex: Some(7)
            })
        );
    }

    #[test]
    fn an_ipv4_route_over_ipv6_keeps_the_ipv6_gateway_on_the_bridge() {
        let r = resolve_next_hop(
            &v6_peer(),
            &net("10.244.1.0/24"),
            ip("2001:db8:1::11"),
            None,
        );
        assert_eq!(
            r,
            Resolution::Ready(NextHop {
                gateway: ip("2001:db8:1::11"),
                ifindex: Some(7)
            })
        );
    }

    #[test]
    fn a_link_local_next_hop_uses_the_peer_interface() {
        let r = resolve_next_hop(&v6_peer(), &net("fd00:ff00:1::/64"), ip("fe80::11"), None);
        assert_eq!(
            r,
            Resolution::Ready(NextHop {
                gateway: ip("fe80::11"),
                ifindex: Some(7)
            })
        );
        let off_link = PeerLink {
            ifindex: None,
            on_link: vec![],
            ..v6_peer()
        };
        assert_eq!(
            resolve_next_hop(&off_link, &net("fd00:ff00:1::/64"), ip("fe80::11"), None),
            Resolution::Rejected(Rejection::NextHopNotOnLink)
        );
    }

    #[test]
    fn a_next_hop_off_the_peers_link_is_refused() {
        let r = resolve_next_hop(&v6_peer(), &net("10.244.1.0/24"), ip("2001:db8:9::1"), None);
        assert_eq!(r, Resolution::Rejected(Rejection::NextHopNotOnLink));
    }

    #[test]
    fn another_address_on_the_same_bridge_is_a_valid_next_hop() {
        let r = resolve_next_hop(&v4_peer(), &net("10.244.1.0/24"), ip("192.0.2.12"), None);
        assert_eq!(
            r,
            Resolution::Ready(NextHop {
                gateway: ip("192.0.2.12"),
                ifindex: Some(7)
            })
        );
    }

    #[test]
    fn an_ipv4_mapped_next_hop_asks_for_the_nodes_link_local_address() {
        let r = resolve_next_hop(
            &v4_peer(),
            &net("fd00:ff00:1::/64"),
            ip("::ffff:192.0.2.11"),
            None,
        );
        assert_eq!(
            r,
            Resolution::NeedsLinkLocalOf(Ipv4Addr::new(192, 0, 2, 11))
        );
        assert_eq!(
            resolve_link_local(&v4_peer(), Some("fe80::11".parse().unwrap())),
            Resolution::Ready(NextHop {
                gateway: ip("fe80::11"),
                ifindex: Some(7)
            })
        );
        assert_eq!(
            resolve_link_local(&v4_peer(), None),
            Resolution::Rejected(Rejection::MappedNextHopUnresolved)
        );
    }

    #[test]
    fn an_ipv4_mapped_next_hop_of_a_stranger_is_refused() {
        let r = resolve_next_hop(
            &v4_peer(),
            &net("fd00:ff00:1::/64"),
            ip("::ffff:198.51.100.1"),
            None,
        );
        assert_eq!(r, Resolution::Rejected(Rejection::NextHopNotOnLink));
    }

    #[test]
    fn an_ipv6_route_with_an_ipv4_next_hop_is_unusable() {
        let r = resolve_next_hop(&v4_peer(), &net("fd00:ff00:1::/64"), ip("192.0.2.11"), None);
        assert_eq!(r, Resolution::Rejected(Rejection::UnusableNextHop));
    }

    #[test]
    fn the_link_local_half_of_a_32_byte_next_hop_is_used_when_the_global_is_off_link() {
        let r = resolve_next_hop(
            &v6_peer(),
            &net("fd00:ff00:1::/64"),
            ip("2001:db8:77::1"),
            Some("fe80::11".parse().unwrap()),
        );
        assert_eq!(
            r,
            Resolution::Ready(NextHop {
                gateway: ip("fe80::11"),
                ifindex: Some(7)
            })
        );
        let r = resolve_next_hop(
            &v6_peer(),
            &net("fd00:ff00:1::/64"),
            ip("2001:db8:1::11"),
            Some("fe80::11".parse().unwrap()),
        );
        assert_eq!(
            r,
            Resolution::Ready(NextHop {
                gateway: ip("2001:db8:1::11"),
                ifindex: Some(7)
            })
        );
    }
}
