//! What an RA says: builds the Router Advertisement of a bridge from its `ra` settings, its
//! prefixes and facts read from the link just before sending (MAC address, IPv6 forwarding),
//! the final RA, the packets of a burst (split by one rule for every kind of RA), the
//! deprecation of prefixes removed on reload (renumbering), and the RFC 4861 6.2.7 comparison
//! with other routers' RAs. Pure: `now` is an argument.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ipnet::Ipv6Net;

use super::config::RaConfig;
use super::packet::{NdOption, PrefixInformation, RouteInformation, RouterAdvertisement};
use super::scheduler::Transmit;

/// A prefix removed from the configuration is advertised deprecated with a valid lifetime
/// counting down from at most this (RFC 4862 5.5.3 e: hosts keep at least two hours).
pub const DEPRECATED_VALID_LIFETIME: Duration = Duration::from_secs(7200);

/// Facts about the link read afresh before each RA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkFacts {
    /// The bridge's current MAC address (it changes when the first port joins).
    pub mac: Option<Vec<u8>>,
    /// Whether IPv6 forwarding is on for the bridge; without it the router lifetime is 0.
    pub forwarding: bool,
}

/// The Prefix Information options for the current configuration: the bridge's IPv6
/// prefixes (with their `prefixes` overrides), then listed prefixes the bridge lacks.
pub fn prefix_information(
    config: &RaConfig,
    bridge_prefixes: &[Ipv6Net],
) -> Vec<PrefixInformation> {
    let extra = config
        .prefixes
        .keys()
        .filter(|p| !bridge_prefixes.contains(&p.trunc()));
    bridge_prefixes
        .iter()
        .map(|p| p.trunc())
        .chain(extra.map(|p| p.trunc()))
        .filter_map(|prefix| {
            let pc = config.prefixes.get(&prefix).cloned().unwrap_or_default();
            pc.advertise.then_some(PrefixInformation {
                prefix,
                on_link: pc.on_link,
                autonomous: pc.autonomous,
                valid_lifetime: pc.valid_lifetime.as_u32(),
                preferred_lifetime: pc.preferred_lifetime.as_u32(),
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Deprecated {
    on_link: bool,
    autonomous: bool,
    /// When the advertised valid lifetime reaches zero.
    expires: Instant,
}

/// Prefixes that were advertised and no longer are, still advertised with preferred
/// lifetime 0 and a decreasing valid lifetime so guests stop using them (RFC 4862 5.5.3).
#[derive(Debug, Clone, Default)]
pub struct Renumbering {
    deprecated: BTreeMap<Ipv6Net, Deprecated>,
}

impl Renumbering {
    /// The configuration changed from advertising `before` to `after`.
    pub fn update(
        &mut self,
        now: Instant,
        before: &[PrefixInformation],
        after: &[PrefixInformation],
    ) {
        for old in before {
            if !after.iter().any(|new| new.prefix == old.prefix) {
                let valid = Duration::from_secs(u64::from(old.valid_lifetime))
                    .min(DEPRECATED_VALID_LIFETIME);
                self.deprecated.insert(
                    old.prefix,
                    Deprecated {
                        on_link: old.on_link,
                        autonomous: old.autonomous,
                        expires: now + valid,
                    },
                );
            }
        }
        for new in after {
            self.deprecated.remove(&new.prefix);
        }
    }

    /// The deprecated prefixes' options at `now`; those whose valid lifetime ran out are
    /// forgotten.
    pub fn options(&mut self, now: Instant) -> Vec<PrefixInformation> {
        self.deprecated.retain(|_, d| d.expires > now);
        self.deprecated
            .iter()
            .map(|(prefix, d)| PrefixInformation {
                prefix: *prefix,
                on_link: d.on_link,
                autonomous: d.autonomous,
                valid_lifetime: u32::try_from((d.expires - now).as_secs()).unwrap_or(u32::MAX),
                preferred_lifetime: 0,
            })
            .collect()
    }

    /// Whether any prefix is still being deprecated.
    pub fn is_empty(&self) -> bool {
        self.deprecated.is_empty()
    }
}

/// The RA for the bridge, options in radvd's order (PIO, RIO, RDNSS, DNSSL, then PREF64 and
/// captive portal, then MTU and SLLA). `prefixes` are the current and deprecated PIOs.
pub fn build(
    config: &RaConfig,
    prefixes: &[PrefixInformation],
    link: &LinkFacts,
) -> RouterAdvertisement {
    let mut options: Vec<NdOption> = prefixes
        .iter()
        .cloned()
        .map(NdOption::PrefixInformation)
        .collect();
    options.extend(config.routes.iter().map(|route| {
        NdOption::RouteInformation(RouteInformation {
            prefix: route.prefix.trunc(),
            preference: route.preference,
            lifetime: config.route_lifetime(route),
        })
    }));
    if !config.rdnss.is_empty() {
        options.push(NdOption::Rdnss {
            lifetime: config.rdnss_lifetime(),
            servers: config.rdnss.clone(),
        });
    }
    if !config.dnssl.is_empty() {
        options.push(NdOption::Dnssl {
            lifetime: config.dnssl_lifetime(),
            domains: config
                .dnssl
                .iter()
                .map(|d| d.trim_end_matches('.').to_string())
                .collect(),
        });
    }
    if let Some(prefix) = config.pref64 {
        options.push(NdOption::Pref64 {
            lifetime: config.pref64_lifetime(),
            prefix,
        });
    }
    if let Some(uri) = &config.captive_portal {
        options.push(NdOption::CaptivePortal(uri.clone()));
    }
    if config.mtu != 0 {
        options.push(NdOption::Mtu(config.mtu));
    }
    if config.source_link_layer_address
        && let Some(mac) = &link.mac
    {
        options.push(NdOption::SourceLinkLayerAddress(mac.clone()));
    }
    RouterAdvertisement {
        cur_hop_limit: config.cur_hop_limit,
        managed: config.managed,
        other_config: config.other_config,
        preference: config.router_preference,
        router_lifetime: if link.forwarding {
            config.router_lifetime()
        } else {
            0
        },
        reachable_time: config.reachable_time,
        retrans_timer: config.retrans_timer,
        options,
    }
}

/// The final RA (RFC 4861 6.2.5): router lifetime 0, and, as radvd does by default
/// (RemoveRoute, FlushRDNSS, FlushDNSSL), routes, DNS servers, search domains and the NAT64
/// prefix withdrawn with lifetime 0. Prefixes keep their lifetimes.
pub fn build_final(
    config: &RaConfig,
    prefixes: &[PrefixInformation],
    link: &LinkFacts,
) -> RouterAdvertisement {
    let mut ra = build(config, prefixes, link);
    ra.router_lifetime = 0;
    for option in &mut ra.options {
        match option {
            NdOption::RouteInformation(ri) => ri.lifetime = 0,
            NdOption::Rdnss { lifetime, .. } | NdOption::Dnssl { lifetime, .. } => *lifetime = 0,
            NdOption::Pref64 { lifetime, .. } => *lifetime = 0,
            _ => {}
        }
    }
    ra
}

/// The packets of one burst, as they go on the wire: the RA, or the final RA for
/// [`Transmit::Final`], split for `link_mtu` by [`RouterAdvertisement::split`]'s rule.
/// Unsolicited, solicited (multicast or unicast) and final RAs all go through here, so a
/// client that keeps only the latest packet of a burst sees the same in each case.
pub fn burst(
    config: &RaConfig,
    prefixes: &[PrefixInformation],
    link: &LinkFacts,
    transmit: Transmit,
    link_mtu: usize,
) -> Vec<RouterAdvertisement> {
    let ra = match transmit {
        Transmit::Advertisement(_) => build(config, prefixes, link),
        Transmit::Final => build_final(config, prefixes, link),
    };
    ra.split(link_mtu)
}

/// RFC 4861 6.2.7: the ways another router's RA disagrees with ours, for logging. Values
/// that either side leaves unspecified (zero, or an absent option) are not compared.
pub fn inconsistencies(ours: &RouterAdvertisement, theirs: &RouterAdvertisement) -> Vec<String> {
    let mut found = Vec::new();
    let mut both_set = |name: &str, a: u32, b: u32| {
        if a != 0 && b != 0 && a != b {
            found.push(format!("{name}: ours {a}, theirs {b}"));
        }
    };
    both_set(
        "cur hop limit",
        ours.cur_hop_limit.into(),
        theirs.cur_hop_limit.into(),
    );
    both_set("reachable time", ours.reachable_time, theirs.reachable_time);
    both_set("retrans timer", ours.retrans_timer, theirs.retrans_timer);
    let mtu = |ra: &RouterAdvertisement| {
        ra.options.iter().find_map(|o| match o {
            NdOption::Mtu(m) => Some(*m),
            _ => None,
        })
    };
    if let (Some(a), Some(b)) = (mtu(ours), mtu(theirs)) {
        both_set("MTU", a, b);
    }
    if ours.managed != theirs.managed {
        found.push(format!(
            "M flag: ours {}, theirs {}",
            ours.managed, theirs.managed
        ));
    }
    if ours.other_config != theirs.other_config {
        found.push(format!(
            "O flag: ours {}, theirs {}",
            ours.other_config, theirs.other_config
        ));
    }
    let pios = |ra: &RouterAdvertisement| -> Vec<PrefixInformation> {
        ra.options
            .iter()
            .filter_map(|o| match o {
                NdOption::PrefixInformation(pi) => Some(pi.clone()),
                _ => None,
            })
            .collect()
    };
    let ours_pios = pios(ours);
    for theirs_pi in pios(theirs) {
        if let Some(ours_pi) = ours_pios.iter().find(|p| p.prefix == theirs_pi.prefix) {
            if ours_pi.valid_lifetime != theirs_pi.valid_lifetime {
                found.push(format!(
                    "valid lifetime of {}: ours {}, theirs {}",
                    ours_pi.prefix, ours_pi.valid_lifetime, theirs_pi.valid_lifetime
                ));
            }
            if ours_pi.preferred_lifetime != theirs_pi.preferred_lifetime {
                found.push(format!(
                    "preferred lifetime of {}: ours {}, theirs {}",
                    ours_pi.prefix, ours_pi.preferred_lifetime, theirs_pi.preferred_lifetime
                ));
            }
        }
    }
    found
}
