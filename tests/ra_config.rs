//! `bridges.<ifname>.ra`: parsing, defaults, validation, and the RA built from it compared
//! byte for byte with what radvd sends for the same settings (tests/vectors/*.out, captured
//! with tests/vectors/capture-radvd.sh from the radvd-*.conf beside them).

mod common;

use common::net;

use std::time::{Duration, Instant};

use cilium_peer::ra::advert::{self, LinkFacts, Renumbering};
use cilium_peer::ra::config::{Lifetime, RaConfig};
use cilium_peer::ra::packet::{NdOption, PrefixInformation, RouterAdvertisement};

fn parse(json: &str) -> RaConfig {
    serde_json::from_str(json).unwrap()
}

fn errors(json: &str) -> Vec<(String, String)> {
    parse(json).validate("bridges.vmbr-dev.ra")
}

fn captured_ras(file: &str) -> Vec<Vec<u8>> {
    file.lines()
        .filter(|l| l.starts_with("ra "))
        .map(|l| {
            let h = l.rsplit(' ').next().unwrap();
            let mut bytes: Vec<u8> = (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                .collect();
            bytes[2] = 0;
            bytes[3] = 0;
            bytes
        })
        .collect()
}

const LINK: LinkFacts = LinkFacts {
    mac: None,
    forwarding: true,
};

fn link() -> LinkFacts {
    LinkFacts {
        mac: Some(vec![2, 0, 0, 0, 0, 1]),
        ..LINK
    }
}

/// tests/vectors/radvd-full.conf in our terms; the bridge has 2001:db8:1::/64.
const FULL: &str = r#"{
    "min_interval": 3, "max_interval": 10, "managed": true, "other_config": true,
    "mtu": 1400, "reachable_time": 30000, "retrans_timer": 1000, "cur_hop_limit": 64,
    "router_lifetime": 1800, "router_preference": "high",
    "prefixes": {
        "2001:db8:1::/64": { "valid_lifetime": 86400, "preferred_lifetime": 14400 },
        "2001:db8:2::/64": { "on_link": false, "autonomous": false,
                             "valid_lifetime": "infinity", "preferred_lifetime": 0 }
    },
    "routes": [ { "prefix": "2001:db8:ff::/48", "preference": "low", "lifetime": 1800 } ],
    "rdnss": ["2001:db8:1::53", "2001:db8:1::54"], "rdnss_lifetime": 30,
    "dnssl": ["cluster.internal", "example.org"], "dnssl_lifetime": 30
}"#;

#[test]
fn the_ra_built_from_settings_equal_to_radvds_is_byte_for_byte_what_radvd_sends() {
    let config = parse(FULL);
    assert!(
        config.validate("ra").is_empty(),
        "{:?}",
        config.validate("ra")
    );
    let pios = advert::prefix_information(&config, &[net("2001:db8:1::/64")]);
    let ras = captured_ras(include_str!("vectors/radvd-full.out"));
    assert_eq!(advert::build(&config, &pios, &link()).encode(), ras[0]);
}

#[test]
fn the_final_ra_is_byte_for_byte_radvds_final_ra() {
    let config = parse(FULL);
    let pios = advert::prefix_information(&config, &[net("2001:db8:1::/64")]);
    let ras = captured_ras(include_str!("vectors/radvd-full.out"));
    assert_eq!(
        advert::build_final(&config, &pios, &link()).encode(),
        *ras.last().unwrap()
    );
}

#[test]
fn defaults_are_radvds_except_the_dns_lifetimes_which_follow_rfc_8106() {
    let config = parse(
        r#"{ "routes": [ { "prefix": "2001:db8:ff::/48" } ],
             "rdnss": ["2001:db8:1::53"], "dnssl": ["cluster.internal"] }"#,
    );
    let pios = advert::prefix_information(&config, &[net("2001:db8:1::/64")]);
    let ours = advert::build(&config, &pios, &link());
    let mut radvds =
        RouterAdvertisement::decode(&captured_ras(include_str!("vectors/radvd-defaults.out"))[0])
            .unwrap();
    // radvd 2.19 sends MaxRtrAdvInterval (600); RFC 8106 5.1 asks for 3 x MaxRtrAdvInterval.
    for option in &mut radvds.options {
        if let NdOption::Rdnss { lifetime, .. } | NdOption::Dnssl { lifetime, .. } = option {
            assert_eq!(*lifetime, 600);
            *lifetime = 1800;
        }
    }
    assert_eq!(ours, radvds);
}

#[test]
fn the_defaults_are_the_documented_rfc_values() {
    let config = RaConfig::default();
    let intervals = config.intervals();
    assert_eq!(intervals.max, Duration::from_secs(600));
    assert_eq!(intervals.min, Duration::from_secs(198));
    assert_eq!(config.router_lifetime(), 1800);
    assert_eq!(config.rdnss_lifetime(), 1800);
    assert_eq!(config.dnssl_lifetime(), 1800);
    assert_eq!(config.pref64_lifetime(), 1800);
    assert_eq!(config.cur_hop_limit, 64);
    assert!(config.source_link_layer_address);
    assert_eq!(parse("{}"), config);
}

#[test]
fn ra_is_enabled_by_default_only_when_the_bridge_has_an_ipv6_prefix() {
    assert!(parse("{}").enabled(true));
    assert!(!parse("{}").enabled(false));
    assert!(!parse(r#"{"enable": false}"#).enabled(true));
    assert!(parse(r#"{"enable": true}"#).enabled(false));
}

#[test]
fn unknown_keys_are_rejected() {
    let err = serde_json::from_str::<RaConfig>(r#"{"max_intervall": 10}"#).unwrap_err();
    assert!(err.to_string().contains("max_intervall"), "{err}");
    let err =
        serde_json::from_str::<RaConfig>(r#"{"prefixes": {"2001:db8::/64": {"onlink": true}}}"#)
            .unwrap_err();
    assert!(err.to_string().contains("onlink"), "{err}");
}

#[test]
fn a_lifetime_is_seconds_or_infinity() {
    let config = parse(r#"{"rdnss_lifetime": "infinity", "dnssl_lifetime": 900}"#);
    assert_eq!(config.rdnss_lifetime, Some(Lifetime::Infinity));
    assert_eq!(config.rdnss_lifetime(), u32::MAX);
    assert_eq!(config.dnssl_lifetime(), 900);
    let err = serde_json::from_str::<RaConfig>(r#"{"rdnss_lifetime": "forever"}"#).unwrap_err();
    assert!(err.to_string().contains("\"forever\""), "{err}");
}

#[test]
fn the_settings_serialize_back_to_what_was_parsed() {
    let config = parse(FULL);
    let again: RaConfig = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
    assert_eq!(again, config);
}

#[test]
fn a_min_interval_above_three_quarters_of_max_interval_is_an_error_naming_both_values() {
    assert_eq!(
        errors(r#"{"min_interval": 200, "max_interval": 150}"#),
        [(
            "bridges.vmbr-dev.ra.min_interval".to_string(),
            "200 is above 0.75 x max_interval 150".to_string()
        )]
    );
}

#[test]
fn each_out_of_range_value_is_reported_at_its_path() {
    let cases = [
        (
            r#"{"max_interval": 3}"#,
            "max_interval",
            "3 is not between 4 and 1800 seconds",
        ),
        (
            r#"{"max_interval": 1801}"#,
            "max_interval",
            "1801 is not between 4 and 1800 seconds",
        ),
        (
            r#"{"min_interval": 2}"#,
            "min_interval",
            "2 is below 3 seconds",
        ),
        (
            r#"{"router_lifetime": 100}"#,
            "router_lifetime",
            "100 is neither 0 nor between max_interval 600 and 9000 seconds",
        ),
        (
            r#"{"router_lifetime": 9001}"#,
            "router_lifetime",
            "9001 is neither 0 nor between max_interval 600 and 9000 seconds",
        ),
        (
            r#"{"reachable_time": 3600001}"#,
            "reachable_time",
            "3600001 is above 3600000 milliseconds",
        ),
        (
            r#"{"mtu": 1000}"#,
            "mtu",
            "1000 is neither 0 nor at least 1280",
        ),
        (
            r#"{"prefixes": {"2001:db8:1::1/64": {}}}"#,
            "prefixes[\"2001:db8:1::1/64\"]",
            "\"2001:db8:1::1/64\" has host bits set (the prefix is 2001:db8:1::/64)",
        ),
        (
            r#"{"prefixes": {"2001:db8:1::/64": {"preferred_lifetime": "infinity", "valid_lifetime": 600}}}"#,
            "prefixes[\"2001:db8:1::/64\"].preferred_lifetime",
            "\"infinity\" is above valid_lifetime 600",
        ),
        (
            r#"{"routes": [{"prefix": "2001:db8:ff::1/48"}]}"#,
            "routes[0].prefix",
            "\"2001:db8:ff::1/48\" has host bits set (the prefix is 2001:db8:ff::/48)",
        ),
        (
            r#"{"rdnss": ["2001:db8::53", "ff02::1"]}"#,
            "rdnss[1]",
            "\"ff02::1\" is not a unicast address",
        ),
        (
            r#"{"rdnss_lifetime": 100}"#,
            "rdnss_lifetime",
            "100 is neither 0 nor at least max_interval 600",
        ),
        (
            r#"{"dnssl_lifetime": 100}"#,
            "dnssl_lifetime",
            "100 is neither 0 nor at least max_interval 600",
        ),
        (
            r#"{"dnssl": ["ok.example", "bad..example"]}"#,
            "dnssl[1]",
            "\"bad..example\" is not a domain name: every label must be 1 to 63 characters long",
        ),
        (
            r#"{"dnssl": ["sp ace.example"]}"#,
            "dnssl[0]",
            "\"sp ace.example\" is not a domain name: labels may hold only letters, digits, '-' and '_'",
        ),
        (
            r#"{"pref64": "64:ff9b::/80"}"#,
            "pref64",
            "\"64:ff9b::/80\" is not a /32, /40, /48, /56, /64 or /96 (RFC 6052)",
        ),
        (
            r#"{"pref64": "64:ff9b::1/96"}"#,
            "pref64",
            "\"64:ff9b::1/96\" has host bits set",
        ),
        (
            r#"{"pref64_lifetime": 65529}"#,
            "pref64_lifetime",
            "65529 is above 65528 seconds",
        ),
        (
            r#"{"captive_portal": "http://portal.example/"}"#,
            "captive_portal",
            "\"http://portal.example/\" is not an https URI (or urn:ietf:params:capport:unrestricted) of at most 1024 bytes",
        ),
    ];
    for (json, key, message) in cases {
        assert_eq!(
            errors(json),
            [(format!("bridges.vmbr-dev.ra.{key}"), message.to_string())],
            "{json}"
        );
    }
}

#[test]
fn too_many_rdnss_addresses_or_search_domains_are_errors() {
    let servers: Vec<String> = (0..65).map(|i| format!("2001:db8::{i:x}")).collect();
    assert_eq!(
        errors(&serde_json::json!({ "rdnss": servers }).to_string()),
        [(
            "bridges.vmbr-dev.ra.rdnss".to_string(),
            "65 addresses is more than 64".to_string()
        )]
    );
    let domains: Vec<String> = (0..40)
        .map(|i| format!("domain-number-{i}.cluster.example"))
        .collect();
    let errs = errors(&serde_json::json!({ "dnssl": domains }).to_string());
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].0, "bridges.vmbr-dev.ra.dnssl");
}

#[test]
fn a_valid_configuration_has_no_errors() {
    assert!(errors(FULL).is_empty());
    assert!(errors("{}").is_empty());
    assert!(
        errors(r#"{"pref64": "64:ff9b::/96", "captive_portal": "https://portal.example/api"}"#)
            .is_empty()
    );
}

#[test]
fn every_ipv6_prefix_of_the_bridge_is_advertised_on_link_and_autonomous_by_default() {
    let pios = advert::prefix_information(
        &RaConfig::default(),
        &[net("2001:db8:1::/64"), net("fd00:1::/64")],
    );
    assert_eq!(pios.len(), 2);
    for (pi, prefix) in pios.iter().zip(["2001:db8:1::/64", "fd00:1::/64"]) {
        assert_eq!(
            *pi,
            PrefixInformation {
                prefix: net(prefix),
                on_link: true,
                autonomous: true,
                valid_lifetime: 86400,
                preferred_lifetime: 14400
            }
        );
    }
}

#[test]
fn a_prefix_can_be_left_out_of_ras() {
    let config = parse(r#"{"prefixes": {"fd00:1::/64": {"advertise": false}}}"#);
    let pios = advert::prefix_information(&config, &[net("2001:db8:1::/64"), net("fd00:1::/64")]);
    assert_eq!(
        pios.iter().map(|p| p.prefix).collect::<Vec<_>>(),
        [net("2001:db8:1::/64")]
    );
}

#[test]
fn pref64_and_captive_portal_are_sent_when_configured() {
    let config =
        parse(r#"{"pref64": "64:ff9b::/96", "captive_portal": "https://portal.example/api"}"#);
    let ra = advert::build(&config, &[], &LINK);
    assert_eq!(
        ra.options,
        [
            NdOption::Pref64 {
                lifetime: 1800,
                prefix: net("64:ff9b::/96")
            },
            NdOption::CaptivePortal("https://portal.example/api".into())
        ]
    );
}

#[test]
fn without_ipv6_forwarding_the_router_lifetime_is_zero() {
    let ra = advert::build(
        &RaConfig::default(),
        &[],
        &LinkFacts {
            mac: None,
            forwarding: false,
        },
    );
    assert_eq!(ra.router_lifetime, 0);
    assert_eq!(
        advert::build(&RaConfig::default(), &[], &LINK).router_lifetime,
        1800
    );
}

#[test]
fn the_source_link_layer_address_is_the_mac_of_the_moment() {
    let mut link = link();
    let before = advert::build(&RaConfig::default(), &[], &link);
    link.mac = Some(vec![2, 0, 0, 0, 0, 9]);
    let after = advert::build(&RaConfig::default(), &[], &link);
    assert_eq!(
        before.options,
        [NdOption::SourceLinkLayerAddress(vec![2, 0, 0, 0, 0, 1])]
    );
    assert_eq!(
        after.options,
        [NdOption::SourceLinkLayerAddress(vec![2, 0, 0, 0, 0, 9])]
    );
    let off = parse(r#"{"source_link_layer_address": false}"#);
    assert!(advert::build(&off, &[], &link).options.is_empty());
}

#[test]
fn a_prefix_removed_on_reload_is_advertised_deprecated_with_a_valid_lifetime_counting_down_from_two_hours()
 {
    let t0 = Instant::now();
    let before = advert::prefix_information(
        &RaConfig::default(),
        &[net("2001:db8:1::/64"), net("2001:db8:2::/64")],
    );
    let after = advert::prefix_information(&RaConfig::default(), &[net("2001:db8:2::/64")]);
    let mut renumbering = Renumbering::default();
    renumbering.update(t0, &before, &after);
    let deprecated = PrefixInformation {
        prefix: net("2001:db8:1::/64"),
        on_link: true,
        autonomous: true,
        valid_lifetime: 7200,
        preferred_lifetime: 0,
    };
    assert_eq!(renumbering.options(t0), std::slice::from_ref(&deprecated));
    assert_eq!(
        renumbering.options(t0 + Duration::from_secs(3600)),
        [PrefixInformation {
            valid_lifetime: 3600,
            ..deprecated
        }]
    );
    assert!(
        renumbering
            .options(t0 + Duration::from_secs(7200))
            .is_empty()
    );
    assert!(renumbering.is_empty());
}

#[test]
fn a_short_valid_lifetime_is_not_lengthened_by_deprecation() {
    let t0 = Instant::now();
    let config = parse(
        r#"{"prefixes": {"2001:db8:1::/64": {"valid_lifetime": 600, "preferred_lifetime": 300}}}"#,
    );
    let before = advert::prefix_information(&config, &[net("2001:db8:1::/64")]);
    let mut renumbering = Renumbering::default();
    renumbering.update(t0, &before, &[]);
    assert_eq!(renumbering.options(t0)[0].valid_lifetime, 600);
}

#[test]
fn a_prefix_that_comes_back_is_no_longer_deprecated() {
    let t0 = Instant::now();
    let pios = advert::prefix_information(&RaConfig::default(), &[net("2001:db8:1::/64")]);
    let mut renumbering = Renumbering::default();
    renumbering.update(t0, &pios, &[]);
    renumbering.update(t0 + Duration::from_secs(10), &[], &pios);
    assert!(renumbering.options(t0 + Duration::from_secs(10)).is_empty());
}

#[test]
fn another_routers_conflicting_values_are_found_and_unspecified_ones_are_not() {
    let config = parse(FULL);
    let pios = advert::prefix_information(&config, &[net("2001:db8:1::/64")]);
    let ours = advert::build(&config, &pios, &link());
    let mut theirs = ours.clone();
    assert!(advert::inconsistencies(&ours, &theirs).is_empty());
    theirs.cur_hop_limit = 0;
    theirs.reachable_time = 0;
    assert!(advert::inconsistencies(&ours, &theirs).is_empty());
    theirs.cur_hop_limit = 32;
    theirs.managed = false;
    theirs.options = vec![
        NdOption::Mtu(1500),
        NdOption::PrefixInformation(PrefixInformation {
            preferred_lifetime: 100,
            ..pios[0].clone()
        }),
    ];
    assert_eq!(
        advert::inconsistencies(&ours, &theirs),
        [
            "cur hop limit: ours 64, theirs 32",
            "MTU: ours 1400, theirs 1500",
            "M flag: ours true, theirs false",
            "preferred lifetime of 2001:db8:1::/64: ours 14400, theirs 100"
        ]
    );
}

#[test]
fn parsing_the_ra_object_of_the_config_file_names_the_path_of_a_bad_value() {
    use cilium_peer::ra::config::parse;
    let path = "bridges.vmbr-dev.ra";
    let value: serde_json::Value =
        serde_json::from_str(r#"{"routes": [{"prefix": "2001:db8::/129"}]}"#).unwrap();
    let errors = parse(path, &value).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0, "bridges.vmbr-dev.ra.routes[0].prefix");
    assert_eq!(errors[0].1, "\"2001:db8::/129\": invalid IP address syntax");
    let value: serde_json::Value =
        serde_json::from_str(r#"{"min_interval": 200, "max_interval": 150}"#).unwrap();
    assert_eq!(
        parse(path, &value).unwrap_err(),
        [(
            "bridges.vmbr-dev.ra.min_interval".to_string(),
            "200 is above 0.75 x max_interval 150".to_string()
        )]
    );
    assert_eq!(
        parse(path, &serde_json::json!({})).unwrap(),
        RaConfig::default()
    );
}

#[test]
fn a_bridge_from_the_config_file_keeps_only_its_ipv6_prefixes() {
    let prefixes: Vec<ipnet::IpNet> = vec![
        "192.0.2.0/24".parse().unwrap(),
        "2001:db8:1::/64".parse().unwrap(),
    ];
    let bridge = cilium_peer::ra::Bridge::from_config("vmbr-dev", &prefixes, &RaConfig::default());
    assert_eq!(bridge.prefixes, [net("2001:db8:1::/64")]);
    assert!(bridge.ra.enabled(!bridge.prefixes.is_empty()));
}
