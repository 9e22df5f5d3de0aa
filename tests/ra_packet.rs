//! Byte-vector tests for the RA/RS codec. The radvd vectors in tests/vectors/*.out were
//! captured with tests/vectors/capture-radvd.sh (radvd 2.19 in a namespace, tshark on the
//! other end of a veth pair) from the radvd-*.conf files beside them; PREF64 and the
//! captive-portal option, which radvd 2.19 cannot send, are checked by tshark's decoder.

mod common;

use common::net;

use std::net::Ipv6Addr;
use std::process::Command;

use cilium_peer::ra::packet::{
    DecodeError, NdOption, PrefixInformation, RouteInformation, RouterAdvertisement,
    RouterPreference, RouterSolicitation, validate_received_ra,
};

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The captured messages of one kind ("ra" or "rs") from a capture file, checksum zeroed.
fn captured(file: &str, kind: &str) -> Vec<Vec<u8>> {
    file.lines()
        .filter(|l| l.starts_with(kind))
        .map(|l| {
            let mut bytes = hex(l.rsplit(' ').next().unwrap());
            bytes[2] = 0;
            bytes[3] = 0;
            bytes
        })
        .collect()
}

const FULL: &str = include_str!("vectors/radvd-full.out");
const DEFAULTS: &str = include_str!("vectors/radvd-defaults.out");

fn addr(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// The RA radvd-full.conf describes, in radvd's option order.
fn full_ra(router_lifetime: u16, option_lifetime: u32, route_lifetime: u32) -> RouterAdvertisement {
    RouterAdvertisement {
        cur_hop_limit: 64,
        managed: true,
        other_config: true,
        preference: RouterPreference::High,
        router_lifetime,
        reachable_time: 30000,
        retrans_timer: 1000,
        options: vec![
            NdOption::PrefixInformation(PrefixInformation {
                prefix: net("2001:db8:1::/64"),
                on_link: true,
                autonomous: true,
                valid_lifetime: 86400,
                preferred_lifetime: 14400,
            }),
            NdOption::PrefixInformation(PrefixInformation {
                prefix: net("2001:db8:2::/64"),
                on_link: false,
                autonomous: false,
                valid_lifetime: u32::MAX,
                preferred_lifetime: 0,
            }),
            NdOption::RouteInformation(RouteInformation {
                prefix: net("2001:db8:ff::/48"),
                preference: RouterPreference::Low,
                lifetime: route_lifetime,
            }),
            NdOption::Rdnss {
                lifetime: option_lifetime,
                servers: vec![addr("2001:db8:1::53"), addr("2001:db8:1::54")],
            },
            NdOption::Dnssl {
                lifetime: option_lifetime,
                domains: vec!["cluster.internal".into(), "example.org".into()],
            },
            NdOption::Mtu(1400),
            NdOption::SourceLinkLayerAddress(MAC.to_vec()),
        ],
    }
}

#[test]
fn an_ra_with_every_radvd_option_encodes_to_the_bytes_radvd_sends() {
    let ras = captured(FULL, "ra");
    assert_eq!(full_ra(1800, 30, 1800).encode(), ras[0]);
}

#[test]
fn radvds_final_ra_has_zero_router_route_and_dns_lifetimes_and_encodes_the_same() {
    let ras = captured(FULL, "ra");
    assert_eq!(full_ra(0, 0, 0).encode(), *ras.last().unwrap());
}

#[test]
fn radvds_ra_decodes_to_every_field_and_option() {
    let ras = captured(FULL, "ra");
    assert_eq!(
        RouterAdvertisement::decode(&ras[0]).unwrap(),
        full_ra(1800, 30, 1800)
    );
}

#[test]
fn radvds_default_ra_decodes_with_its_documented_defaults() {
    let ra = RouterAdvertisement::decode(&captured(DEFAULTS, "ra")[0]).unwrap();
    assert_eq!(ra.cur_hop_limit, 64);
    assert_eq!(ra.router_lifetime, 1800);
    assert_eq!((ra.managed, ra.other_config), (false, false));
    assert_eq!(ra.preference, RouterPreference::Medium);
    assert_eq!((ra.reachable_time, ra.retrans_timer), (0, 0));
    assert_eq!(
        ra.options[0],
        NdOption::PrefixInformation(PrefixInformation {
            prefix: net("2001:db8:1::/64"),
            on_link: true,
            autonomous: true,
            valid_lifetime: 86400,
            preferred_lifetime: 14400,
        })
    );
    assert_eq!(
        ra.options[1],
        NdOption::RouteInformation(RouteInformation {
            prefix: net("2001:db8:ff::/48"),
            preference: RouterPreference::Medium,
            lifetime: 1800,
        })
    );
    // radvd 2.19 sends MaxRtrAdvInterval as the RDNSS/DNSSL lifetime by default.
    assert!(matches!(
        ra.options[2],
        NdOption::Rdnss { lifetime: 600, .. }
    ));
    assert!(matches!(
        ra.options[3],
        NdOption::Dnssl { lifetime: 600, .. }
    ));
    assert_eq!(ra.encode(), captured(DEFAULTS, "ra")[0]);
}

#[test]
fn a_route_information_option_of_every_length_decodes() {
    // RFC 4191 2.3 lengths 1, 2 and 3 for /0, /48 and /96.
    let cases = [
        ("18010018ffffffff", "::/0"),
        ("1802300800000e1020010db800ff0000", "2001:db8:ff::/48"),
        (
            "1803600000000e1020010db800ff00000000000100000000",
            "2001:db8:ff:0:0:1::/96",
        ),
    ];
    for (option, prefix) in cases {
        let mut msg = hex("86000000400000000000000000000000");
        msg.extend(hex(option));
        let ra = RouterAdvertisement::decode(&msg).unwrap();
        let NdOption::RouteInformation(ri) = &ra.options[0] else {
            panic!("{option}: {ra:?}")
        };
        assert_eq!(ri.prefix, net(prefix), "{option}");
    }
}

#[test]
fn a_route_information_option_too_short_for_its_prefix_length_is_rejected() {
    let mut msg = hex("86000000400000000000000000000000");
    msg.extend(hex("1801400800000e10"));
    assert!(matches!(
        RouterAdvertisement::decode(&msg),
        Err(DecodeError::MalformedOption { kind: 24, .. })
    ));
}

fn pref64_and_captive_portal_ra() -> RouterAdvertisement {
    RouterAdvertisement {
        cur_hop_limit: 64,
        managed: false,
        other_config: false,
        preference: RouterPreference::Medium,
        router_lifetime: 1800,
        reachable_time: 0,
        retrans_timer: 0,
        options: vec![
            NdOption::Pref64 {
                lifetime: 1800,
                prefix: net("64:ff9b::/96"),
            },
            NdOption::CaptivePortal("https://portal.example/api".into()),
        ],
    }
}

#[test]
fn pref64_and_captive_portal_options_encode_as_rfc_8781_and_8910_lay_them_out() {
    let bytes = pref64_and_captive_portal_ra().encode();
    // PREF64: type 38, length 2, scaled lifetime 1800/8 = 225 << 3 | PLC 0, 96 prefix bits.
    assert_eq!(bytes[16..32], hex("260207080064ff9b0000000000000000")[..]);
    // Captive portal: type 37, length 4 (2 + 26 bytes of URI, padded with NULs to 32).
    assert_eq!(bytes[32..34], [37, 4]);
    assert_eq!(&bytes[34..60], b"https://portal.example/api");
    assert_eq!(bytes[60..64], [0, 0, 0, 0]);
    assert_eq!(
        RouterAdvertisement::decode(&bytes).unwrap(),
        pref64_and_captive_portal_ra()
    );
}

#[test]
fn every_pref64_prefix_length_code_round_trips() {
    for (plen, prefix) in [
        (32, "2001:db8::/32"),
        (40, "2001:db8:100::/40"),
        (48, "2001:db8:1::/48"),
        (56, "2001:db8:1:100::/56"),
        (64, "2001:db8:1:2::/64"),
        (96, "2001:db8:1:2:3:4::/96"),
    ] {
        let ra = RouterAdvertisement {
            options: vec![NdOption::Pref64 {
                lifetime: 600,
                prefix: net(prefix),
            }],
            ..pref64_and_captive_portal_ra()
        };
        let decoded = RouterAdvertisement::decode(&ra.encode()).unwrap();
        assert_eq!(decoded, ra, "/{plen}");
    }
}

/// ICMPv6 checksum over the pseudo-header (RFC 8200 8.1).
fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut data = Vec::new();
    data.extend_from_slice(&src.octets());
    data.extend_from_slice(&dst.octets());
    data.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    data.extend_from_slice(&[0, 0, 0, 58]);
    data.extend_from_slice(msg);
    if data.len() % 2 == 1 {
        data.push(0);
    }
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[test]
fn radvds_checksum_matches_the_pseudo_header_so_the_vectors_are_whole_messages() {
    let line = FULL.lines().next().unwrap();
    let mut bytes = hex(line.rsplit(' ').next().unwrap());
    let sent = u16::from_be_bytes([bytes[2], bytes[3]]);
    bytes[2] = 0;
    bytes[3] = 0;
    assert_eq!(
        icmpv6_checksum(addr("fe80::1"), addr("ff02::1"), &bytes),
        sent
    );
}

/// Decodes an RA with tshark (an independent decoder) and returns the requested fields.
fn tshark_fields(ra: &RouterAdvertisement, fields: &[&str]) -> Option<Vec<String>> {
    let test = std::thread::current()
        .name()
        .unwrap_or("ra_packet")
        .to_string();
    if common::skip_unless_installed(&test, &["tshark"]) {
        return None;
    }
    let (src, dst) = (addr("fe80::1"), addr("ff02::1"));
    let mut msg = ra.encode();
    let sum = icmpv6_checksum(src, dst, &msg);
    msg[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut frame = hex("33330000000102000000000186dd");
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[58, 255]);
    frame.extend_from_slice(&src.octets());
    frame.extend_from_slice(&dst.octets());
    frame.extend_from_slice(&msg);
    let mut pcap = hex("d4c3b2a1020004000000000000000000ffff000001000000");
    for v in [0u32, 0, frame.len() as u32, frame.len() as u32] {
        pcap.extend_from_slice(&v.to_le_bytes());
    }
    pcap.extend_from_slice(&frame);
    let path = std::env::temp_dir().join(format!(
        "ra-packet-{}-{}.pcap",
        std::process::id(),
        fields.len()
    ));
    std::fs::write(&path, pcap).unwrap();
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(&path)
        .args(["-T", "fields", "-E", "separator=|"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap();
    std::fs::remove_file(&path).unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    Some(text.trim_end().split('|').map(str::to_string).collect())
}

#[test]
fn tshark_decodes_our_pref64_and_captive_portal_options_as_sent() {
    let Some(fields) = tshark_fields(
        &pref64_and_captive_portal_ra(),
        &[
            "icmpv6.opt.pref64.scaled_lifetime",
            "icmpv6.opt.pref64.plc",
            "icmpv6.opt.pref64.prefix",
            "icmpv6.opt.captive_portal",
            "icmpv6.checksum.status",
        ],
    ) else {
        return;
    };
    assert_eq!(
        fields,
        [
            "225",
            "0x0000",
            "64:ff9b::",
            "https://portal.example/api",
            "1"
        ]
    );
}

#[test]
fn tshark_decodes_our_full_ra_as_radvd_configured_it() {
    let Some(fields) = tshark_fields(
        &full_ra(1800, 30, 1800),
        &[
            "icmpv6.nd.ra.router_lifetime",
            "icmpv6.opt.prefix",
            "icmpv6.opt.rdnss",
            "icmpv6.opt.dnssl",
            "icmpv6.opt.mtu",
            "icmpv6.opt.linkaddr",
        ],
    ) else {
        return;
    };
    assert_eq!(
        fields,
        [
            "1800",
            // tshark lists the Route Information prefix with the PIO ones.
            "2001:db8:1::,2001:db8:2::,2001:db8:ff::",
            "2001:db8:1::53,2001:db8:1::54",
            "cluster.internal,example.org",
            "1400",
            "02:00:00:00:00:01"
        ]
    );
}

#[test]
fn an_ra_larger_than_the_link_mtu_is_split_with_the_header_options_in_every_part() {
    let prefixes: Vec<NdOption> = (0..40u16)
        .map(|i| {
            NdOption::PrefixInformation(PrefixInformation {
                prefix: ipnet::Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, i, 0, 0, 0, 0, 0), 64)
                    .unwrap(),
                on_link: true,
                autonomous: true,
                valid_lifetime: 86400,
                preferred_lifetime: 14400,
            })
        })
        .collect();
    let mut ra = full_ra(1800, 30, 1800);
    ra.options.splice(0..2, prefixes.clone());
    assert!(ra.encoded_len() > 1280 - 40);
    let parts = ra.split(1280);
    assert_eq!(parts.len(), 2);
    for part in &parts {
        assert!(part.encoded_len() + 40 <= 1280, "{}", part.encoded_len());
        assert!(part.options.contains(&NdOption::Mtu(1400)));
        assert!(
            part.options
                .contains(&NdOption::SourceLinkLayerAddress(MAC.to_vec()))
        );
        assert_eq!(part.router_lifetime, 1800);
    }
    // The prefixes (too many to repeat) and the route are spread, once each and in order;
    // RDNSS and DNSSL are repeated like the header options (tests/ra_split.rs has the rule).
    let spread = |o: &&NdOption| {
        matches!(
            o,
            NdOption::PrefixInformation(_) | NdOption::RouteInformation(_)
        )
    };
    let carried: Vec<&NdOption> = parts
        .iter()
        .flat_map(|p| p.options.iter())
        .filter(spread)
        .collect();
    let expected: Vec<&NdOption> = ra.options.iter().filter(spread).collect();
    assert_eq!(carried, expected);
    for part in &parts {
        for option in ra.options.iter().filter(|o| !spread(o)) {
            assert!(part.options.contains(option), "{option:?}");
        }
    }
}

#[test]
fn an_ra_that_fits_is_not_split() {
    let ra = full_ra(1800, 30, 1800);
    assert_eq!(ra.split(1500), vec![ra.clone()]);
}

const LL: &str = "fe80::2";

#[test]
fn rdisc6s_solicitation_is_valid() {
    let rs = &captured(DEFAULTS, "rs")[0];
    assert_eq!(
        RouterSolicitation::decode(rs, addr(LL), 255).unwrap(),
        RouterSolicitation {
            source_link_layer_address: None
        }
    );
}

#[test]
fn a_solicitation_with_hop_limit_254_is_rejected() {
    let rs = &captured(DEFAULTS, "rs")[0];
    assert_eq!(
        RouterSolicitation::decode(rs, addr(LL), 254),
        Err(DecodeError::HopLimit(254))
    );
}

#[test]
fn a_solicitation_with_a_nonzero_code_is_rejected() {
    assert_eq!(
        RouterSolicitation::decode(&hex("8501000000000000"), addr(LL), 255),
        Err(DecodeError::NonZeroCode(1))
    );
}

#[test]
fn a_solicitation_shorter_than_8_bytes_is_rejected() {
    assert_eq!(
        RouterSolicitation::decode(&hex("85000000"), addr(LL), 255),
        Err(DecodeError::TooShort(4))
    );
}

#[test]
fn a_solicitation_with_a_zero_length_option_is_rejected() {
    assert_eq!(
        RouterSolicitation::decode(&hex("85000000000000000100020000000001"), addr(LL), 255),
        Err(DecodeError::ZeroLengthOption(8))
    );
}

#[test]
fn a_solicitation_with_an_option_past_its_end_is_rejected() {
    assert_eq!(
        RouterSolicitation::decode(&hex("85000000000000000102020000000001"), addr(LL), 255),
        Err(DecodeError::TruncatedOption(8))
    );
}

#[test]
fn a_solicitation_with_a_source_link_layer_address_is_valid_from_a_unicast_source() {
    let rs = hex("85000000000000000101020000000002");
    assert_eq!(
        RouterSolicitation::decode(&rs, addr(LL), 255).unwrap(),
        RouterSolicitation {
            source_link_layer_address: Some(vec![2, 0, 0, 0, 0, 2])
        }
    );
}

#[test]
fn a_solicitation_from_the_unspecified_address_with_a_source_link_layer_address_is_rejected() {
    let rs = hex("85000000000000000101020000000002");
    assert_eq!(
        RouterSolicitation::decode(&rs, Ipv6Addr::UNSPECIFIED, 255),
        Err(DecodeError::SllaFromUnspecified)
    );
}

#[test]
fn a_received_ra_must_come_from_a_link_local_source_with_hop_limit_255() {
    let ra = captured(FULL, "ra")[0].clone();
    assert!(validate_received_ra(&ra, addr("fe80::1"), 255).is_ok());
    assert_eq!(
        validate_received_ra(&ra, addr("fe80::1"), 64),
        Err(DecodeError::HopLimit(64))
    );
    assert_eq!(
        validate_received_ra(&ra, addr("2001:db8::1"), 255),
        Err(DecodeError::SourceNotLinkLocal(addr("2001:db8::1")))
    );
}

/// Found by fuzzing (`ra_decode`): the host bits were kept on decode and dropped on encode,
/// so the same RA compared unequal to itself after a round trip.
#[test]
fn a_prefix_information_option_with_host_bits_set_decodes_without_them() {
    let mut msg = hex("86000000400000000000000000000000");
    msg.extend(hex("030440c00001518000003840000000002001\
         0db800010000 7f00000000000000"
        .replace(' ', "")
        .as_str()));
    let ra = RouterAdvertisement::decode(&msg).unwrap();
    let NdOption::PrefixInformation(pio) = &ra.options[0] else {
        panic!("{ra:?}");
    };
    assert_eq!(pio.prefix, net("2001:db8:1::/64"));
    assert_eq!(RouterAdvertisement::decode(&ra.encode()).unwrap(), ra);
}

/// Found by fuzzing (`ra_decode`): a DNSSL label holding a dot decoded as ".luster.internal",
/// which encodes as other labels than it came in. Such a label makes the option malformed.
#[test]
fn a_dnssl_label_containing_a_dot_or_no_name_at_all_makes_the_option_malformed() {
    // An RA with one DNSSL option of 4 units: reserved, lifetime 600, then the labels.
    let ra_with = |names: &[u8]| {
        let mut msg = hex("860000004000000000000000000000001f04000000000258");
        msg.extend_from_slice(names);
        msg.resize(16 + 32, 0);
        msg
    };
    assert!(matches!(
        RouterAdvertisement::decode(&ra_with(b"\x07.luster\x08internal\x00")),
        Err(DecodeError::MalformedOption { kind: 31, .. })
    ));
    // Found the same way: padding and no name at all is not a DNSSL either (RFC 8106 5.2),
    // and would not encode to one.
    assert!(matches!(
        RouterAdvertisement::decode(&ra_with(b"")),
        Err(DecodeError::MalformedOption { kind: 31, .. })
    ));
    // The same name with proper labels decodes.
    let ra = RouterAdvertisement::decode(&ra_with(b"\x06luster\x08internal\x00")).unwrap();
    assert!(
        matches!(&ra.options[0], NdOption::Dnssl { domains, .. } if domains == &["luster.internal"]),
        "{ra:?}"
    );
}
