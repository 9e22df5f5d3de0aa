//! The rule for an RA that does not fit one packet (docs/ra.md, "An RA larger than the
//! link MTU"), checked on the bytes that go on the wire: every packet of a burst is encoded,
//! held to the link MTU and decoded again, and read the way dhcpcd 9 reads RAs, keeping only
//! the latest packet from a router and a DNSSL only next to an RDNSS.

mod common;

use common::net;

use std::net::Ipv6Addr;

use cilium_peer::ra::RaConfig;
use cilium_peer::ra::advert::{self, LinkFacts};
use cilium_peer::ra::packet::{
    IPV6_HEADER_LEN, NdOption, PrefixInformation, RouteInformation, RouterAdvertisement,
    RouterPreference,
};
use cilium_peer::ra::scheduler::{Destination, Transmit};

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn prefix(i: u16) -> NdOption {
    NdOption::PrefixInformation(PrefixInformation {
        prefix: ipnet::Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, i, 0, 0, 0, 0, 0), 64).unwrap(),
        on_link: true,
        autonomous: true,
        valid_lifetime: 86400,
        preferred_lifetime: 14400,
    })
}

fn route(i: u16) -> NdOption {
    NdOption::RouteInformation(RouteInformation {
        prefix: ipnet::Ipv6Net::new(Ipv6Addr::new(0xfd00, 0xff00, i, 0, 0, 0, 0, 0), 48).unwrap(),
        preference: RouterPreference::Medium,
        lifetime: 1800,
    })
}

fn rdnss(servers: u16) -> NdOption {
    NdOption::Rdnss {
        lifetime: 1800,
        servers: (0..servers)
            .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x53 + i))
            .collect(),
    }
}

/// A DNSSL of `domains` names, each `label` + ".cluster.internal".
fn dnssl(domains: usize, label: usize) -> NdOption {
    NdOption::Dnssl {
        lifetime: 1800,
        domains: (0..domains)
            .map(|i| format!("{}{i:02}.cluster.internal", "d".repeat(label)))
            .collect(),
    }
}

/// An RA in the builder's order: prefixes, routes, RDNSS, DNSSL, PREF64, captive portal,
/// MTU, source link-layer address.
fn ra(mut options: Vec<NdOption>, with_extras: bool) -> RouterAdvertisement {
    if with_extras {
        options.push(NdOption::Pref64 {
            lifetime: 1800,
            prefix: net("64:ff9b::/96"),
        });
        options.push(NdOption::CaptivePortal(
            "https://portal.example.org/api".into(),
        ));
    }
    options.push(NdOption::Mtu(1400));
    options.push(NdOption::SourceLinkLayerAddress(MAC.to_vec()));
    RouterAdvertisement {
        cur_hop_limit: 64,
        managed: false,
        other_config: false,
        preference: RouterPreference::Medium,
        router_lifetime: 1800,
        reachable_time: 0,
        retrans_timer: 0,
        options,
    }
}

/// Splits `ra` for `mtu` and returns the parts as decoded from their bytes, after checking
/// that each fits the link MTU and keeps the header.
fn wire(ra: &RouterAdvertisement, mtu: usize) -> Vec<RouterAdvertisement> {
    ra.split(mtu)
        .iter()
        .map(|part| {
            let bytes = part.encode();
            assert!(
                bytes.len() + IPV6_HEADER_LEN <= mtu,
                "a {}-byte RA does not fit an MTU of {mtu}",
                bytes.len()
            );
            assert_eq!(bytes[..16], ra.encode()[..16], "the header changed");
            RouterAdvertisement::decode(&bytes).unwrap()
        })
        .collect()
}

fn count(parts: &[RouterAdvertisement], option: &NdOption) -> usize {
    parts
        .iter()
        .flat_map(|p| &p.options)
        .filter(|o| *o == option)
        .count()
}

fn is_repeated(o: &NdOption) -> bool {
    matches!(
        o,
        NdOption::SourceLinkLayerAddress(_)
            | NdOption::Mtu(_)
            | NdOption::Rdnss { .. }
            | NdOption::Dnssl { .. }
            | NdOption::Pref64 { .. }
            | NdOption::CaptivePortal(_)
    )
}

/// What dhcpcd 9 takes from a burst: only the last packet counts, and a DNSSL only when an
/// RDNSS is in the same packet (dhcpcd-hooks/20-resolv.conf). Name servers and search list.
fn dhcpcd_dns(parts: &[RouterAdvertisement]) -> (Vec<Ipv6Addr>, Vec<String>) {
    let last = parts.last().unwrap();
    let servers: Vec<Ipv6Addr> = last
        .options
        .iter()
        .filter_map(|o| match o {
            NdOption::Rdnss { servers, .. } => Some(servers.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let domains = if servers.is_empty() {
        Vec::new()
    } else {
        last.options
            .iter()
            .filter_map(|o| match o {
                NdOption::Dnssl { domains, .. } => Some(domains.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    };
    (servers, domains)
}

#[test]
fn every_packet_of_a_split_ra_repeats_the_prefixes_dns_mtu_pref64_captive_portal_and_mac() {
    let mut options = vec![prefix(1), prefix(2)];
    options.extend((0..60).map(route));
    options.push(rdnss(2));
    options.push(dnssl(2, 1));
    let ra = ra(options, true);
    assert!(ra.encoded_len() + IPV6_HEADER_LEN > 1280);
    let parts = wire(&ra, 1280);
    assert_eq!(parts.len(), 2, "{parts:#?}");
    for (n, part) in parts.iter().enumerate() {
        for option in ra
            .options
            .iter()
            .filter(|o| is_repeated(o) || matches!(o, NdOption::PrefixInformation(_)))
        {
            assert!(part.options.contains(option), "packet {n} lacks {option:?}");
        }
    }
}

#[test]
fn routes_are_spread_over_a_split_ra_each_in_exactly_one_packet_and_in_order() {
    let mut options = vec![prefix(1)];
    options.extend((0..100).map(route));
    options.push(rdnss(2));
    options.push(dnssl(4, 4));
    let ra = ra(options, false);
    let parts = wire(&ra, 1280);
    assert!(parts.len() >= 3, "{} packets", parts.len());
    let spread: Vec<&NdOption> = parts
        .iter()
        .flat_map(|p| &p.options)
        .filter(|o| matches!(o, NdOption::RouteInformation(_)))
        .collect();
    let expected: Vec<&NdOption> = ra
        .options
        .iter()
        .filter(|o| matches!(o, NdOption::RouteInformation(_)))
        .collect();
    assert_eq!(spread, expected);
    for option in &ra.options {
        let n = count(&parts, option);
        match option {
            NdOption::RouteInformation(_) => assert_eq!(n, 1, "{option:?}"),
            _ => assert_eq!(n, parts.len(), "{option:?}"),
        }
    }
}

#[test]
fn the_last_packet_of_a_split_ra_gives_a_latest_only_client_both_name_servers_and_search_domains() {
    let mut options = vec![prefix(1)];
    options.extend((0..80).map(route));
    options.push(rdnss(2));
    options.push(dnssl(8, 10));
    let ra = ra(options, true);
    let parts = wire(&ra, 1280);
    assert!(parts.len() > 1);
    let (servers, domains) = dhcpcd_dns(&parts);
    assert_eq!(servers.len(), 2);
    assert_eq!(domains.len(), 8);
}

#[test]
fn prefixes_too_many_for_every_packet_are_spread_once_each_while_dns_stays_in_every_packet() {
    let mut options: Vec<NdOption> = (0..60).map(prefix).collect();
    options.extend((0..4).map(route));
    options.push(rdnss(2));
    options.push(dnssl(2, 1));
    let ra = ra(options, true);
    let parts = wire(&ra, 1280);
    assert!(parts.len() >= 2);
    for option in &ra.options {
        let n = count(&parts, option);
        if is_repeated(option) {
            assert_eq!(n, parts.len(), "{option:?}");
        } else {
            assert_eq!(n, 1, "{option:?}");
        }
    }
    // Prefixes first, routes after them, as in the unsplit RA.
    let last = parts.last().unwrap();
    assert!(last.options.contains(&route(3)));
}

#[test]
fn a_search_list_too_large_to_repeat_beside_the_servers_goes_in_the_last_packet_with_them() {
    // 40 servers (648 bytes) and a 560-byte DNSSL: with the MAC and the MTU they leave no
    // room for a prefix, so the prefix is spread, then the DNSSL, which goes last.
    let mut options = vec![prefix(1)];
    options.extend((0..20).map(route));
    options.push(rdnss(40));
    let domains = dnssl(21, 5);
    assert_eq!(domains.encoded_len(), 560);
    options.push(domains.clone());
    let ra = ra(options, false);
    let parts = wire(&ra, 1280);
    assert!(parts.len() >= 2);
    assert_eq!(count(&parts, &domains), 1);
    assert!(parts.last().unwrap().options.contains(&domains));
    assert_eq!(count(&parts, &rdnss(40)), parts.len());
    let (servers, search) = dhcpcd_dns(&parts);
    assert_eq!((servers.len(), search.len()), (40, 21));
    for option in &ra.options {
        assert!(count(&parts, option) >= 1, "{option:?} went missing");
    }
}

#[test]
fn rdnss_and_dnssl_that_cannot_share_a_packet_leave_the_name_servers_in_the_last_one() {
    // 64 servers (1032 bytes) and a 300-odd-byte DNSSL cannot go in one 1280-byte packet.
    let mut options = vec![prefix(1)];
    options.extend((0..10).map(route));
    options.push(rdnss(64));
    options.push(dnssl(12, 8));
    let ra = ra(options, true);
    let parts = wire(&ra, 1280);
    let last = parts.last().unwrap();
    assert!(last.options.contains(&rdnss(64)), "{last:#?}");
    for option in &ra.options {
        assert!(count(&parts, option) >= 1, "{option:?} went missing");
    }
    for part in &parts {
        assert!(part.options.contains(&NdOption::Mtu(1400)));
        assert!(
            part.options
                .contains(&NdOption::SourceLinkLayerAddress(MAC.to_vec()))
        );
    }
}

fn config(routes: usize, domains: usize) -> RaConfig {
    let routes: Vec<serde_json::Value> = (0..routes)
        .map(|i| serde_json::json!({ "prefix": format!("fd00:ff00:{i:x}::/48") }))
        .collect();
    let dnssl: Vec<String> = (0..domains)
        .map(|i| format!("team{i:02}.cluster.internal"))
        .collect();
    serde_json::from_value(serde_json::json!({
        "max_interval": 10, "mtu": 1400,
        "routes": routes,
        "rdnss": ["2001:db8:1::53", "2001:db8:1::54"],
        "dnssl": dnssl,
        "pref64": "64:ff9b::/96",
        "captive_portal": "https://portal.example.org/api",
    }))
    .unwrap()
}

fn bridge_prefixes(config: &RaConfig) -> Vec<PrefixInformation> {
    advert::prefix_information(config, &[net("2001:db8:1::/64")])
}

const LINK: LinkFacts = LinkFacts {
    mac: None,
    forwarding: true,
};

#[test]
fn unsolicited_solicited_and_final_bursts_are_split_by_the_same_rule() {
    let config = config(70, 12);
    let prefixes = bridge_prefixes(&config);
    let link = LinkFacts {
        mac: Some(MAC.to_vec()),
        ..LINK
    };
    for transmit in [
        Transmit::Advertisement(Destination::AllNodes),
        Transmit::Advertisement(Destination::Unicast("fe80::2".parse().unwrap())),
        Transmit::Final,
    ] {
        let whole = match transmit {
            Transmit::Final => advert::build_final(&config, &prefixes, &link),
            Transmit::Advertisement(_) => advert::build(&config, &prefixes, &link),
        };
        let burst = advert::burst(&config, &prefixes, &link, transmit, 1280);
        assert_eq!(burst, whole.split(1280), "{transmit:?}");
        assert!(burst.len() > 1, "{transmit:?} was not split");
        for part in &burst {
            for option in whole
                .options
                .iter()
                .filter(|o| !matches!(o, NdOption::RouteInformation(_)))
            {
                assert!(part.options.contains(option), "{transmit:?}: {option:?}");
            }
        }
    }
}

#[test]
fn every_packet_of_a_split_final_ra_withdraws_the_default_route_and_the_dns_settings() {
    let config = config(70, 12);
    let prefixes = bridge_prefixes(&config);
    let burst = advert::burst(&config, &prefixes, &LINK, Transmit::Final, 1280);
    assert!(burst.len() > 1);
    for part in &burst {
        let bytes = part.encode();
        assert_eq!(bytes[6..8], [0, 0], "router lifetime");
        for option in &part.options {
            match option {
                NdOption::Rdnss { lifetime, .. } | NdOption::Dnssl { lifetime, .. } => {
                    assert_eq!(*lifetime, 0)
                }
                NdOption::RouteInformation(ri) => assert_eq!(ri.lifetime, 0),
                NdOption::Pref64 { lifetime, .. } => assert_eq!(*lifetime, 0),
                _ => {}
            }
        }
        assert!(
            part.options
                .iter()
                .any(|o| matches!(o, NdOption::Rdnss { .. }))
        );
        assert!(
            part.options
                .iter()
                .any(|o| matches!(o, NdOption::Dnssl { .. }))
        );
    }
}

#[test]
fn an_ra_that_fits_one_packet_goes_out_as_built() {
    let config = config(4, 2);
    let prefixes = bridge_prefixes(&config);
    let whole = advert::build(&config, &prefixes, &LINK);
    let burst = advert::burst(
        &config,
        &prefixes,
        &LINK,
        Transmit::Advertisement(Destination::AllNodes),
        1280,
    );
    assert_eq!(burst, vec![whole]);
}

#[test]
fn a_larger_link_mtu_takes_fewer_packets_and_each_still_stands_alone() {
    let mut options = vec![prefix(1)];
    options.extend((0..200).map(route));
    options.push(rdnss(3));
    options.push(dnssl(6, 3));
    let ra = ra(options, true);
    let small = wire(&ra, 1280);
    let large = wire(&ra, 1500);
    assert!(
        large.len() < small.len(),
        "{} vs {}",
        large.len(),
        small.len()
    );
    for parts in [&small, &large] {
        assert_eq!(dhcpcd_dns(parts).0.len(), 3);
        assert_eq!(dhcpcd_dns(parts).1.len(), 6);
        assert_eq!(count(parts, &prefix(1)), parts.len());
    }
}
