//! `bridges.<ifname>.ra`: the router advertisement settings of one bridge, their defaults
//! (radvd's, named after the RFC 4861/4191/8106/8781/8910 variables) and their validation.
//! The fields' meanings and defaults are documented in docs/ra.md.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv6Addr;
use std::time::Duration;

use ipnet::Ipv6Net;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::packet::{RouterPreference, dns_name_len, pref64_plc};
use super::scheduler::Intervals;

/// A lifetime in seconds, or `"infinity"` (0xffffffff on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    Seconds(u32),
    Infinity,
}

impl Lifetime {
    /// The on-the-wire value.
    pub fn as_u32(self) -> u32 {
        match self {
            Lifetime::Seconds(s) => s,
            Lifetime::Infinity => u32::MAX,
        }
    }
}

impl fmt::Display for Lifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lifetime::Seconds(s) => write!(f, "{s}"),
            Lifetime::Infinity => f.write_str("\"infinity\""),
        }
    }
}

impl Serialize for Lifetime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Lifetime::Seconds(s) => serializer.serialize_u32(*s),
            Lifetime::Infinity => serializer.serialize_str("infinity"),
        }
    }
}

impl<'de> Deserialize<'de> for Lifetime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Lifetime;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds below 4294967295 or \"infinity\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Lifetime, E> {
                match u32::try_from(v) {
                    Ok(s) if s != u32::MAX => Ok(Lifetime::Seconds(s)),
                    _ => Err(E::custom(format!(
                        "{v} is not a lifetime in seconds below 4294967295 (use \"infinity\")"
                    ))),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Lifetime, E> {
                if v == "infinity" {
                    Ok(Lifetime::Infinity)
                } else {
                    Err(E::custom(format!(
                        "\"{v}\" is not a number of seconds or \"infinity\""
                    )))
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Prefix Information settings for one prefix (RFC 4861 4.6.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrefixConfig {
    /// Advertise this prefix at all (false leaves one of the bridge's prefixes out of RAs).
    pub advertise: bool,
    /// AdvOnLinkFlag (L).
    pub on_link: bool,
    /// AdvAutonomousFlag (A).
    pub autonomous: bool,
    /// AdvValidLifetime.
    pub valid_lifetime: Lifetime,
    /// AdvPreferredLifetime.
    pub preferred_lifetime: Lifetime,
}

impl Default for PrefixConfig {
    fn default() -> Self {
        PrefixConfig {
            advertise: true,
            on_link: true,
            autonomous: true,
            valid_lifetime: Lifetime::Seconds(86400),
            preferred_lifetime: Lifetime::Seconds(14400),
        }
    }
}

/// A Route Information option (RFC 4191 2.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub prefix: Ipv6Net,
    /// Route Preference.
    #[serde(default)]
    pub preference: RouterPreference,
    /// Route Lifetime (radvd's AdvRouteLifetime); default 3 x max_interval.
    #[serde(default)]
    pub lifetime: Option<Lifetime>,
}

/// The `ra` object of a bridge. Every field has a default; see docs/ra.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaConfig {
    /// AdvSendAdvert; default: true when the bridge has an IPv6 prefix.
    pub enable: Option<bool>,
    /// MinRtrAdvInterval, seconds; default 0.33 x max_interval.
    pub min_interval: Option<u32>,
    /// MaxRtrAdvInterval, seconds.
    pub max_interval: u32,
    /// AdvCurHopLimit.
    pub cur_hop_limit: u8,
    /// AdvManagedFlag (M).
    pub managed: bool,
    /// AdvOtherConfigFlag (O).
    pub other_config: bool,
    /// AdvDefaultLifetime, seconds; default 3 x max_interval.
    pub router_lifetime: Option<u32>,
    /// AdvDefaultPreference (RFC 4191 Prf).
    pub router_preference: RouterPreference,
    /// AdvReachableTime, milliseconds.
    pub reachable_time: u32,
    /// AdvRetransTimer, milliseconds.
    pub retrans_timer: u32,
    /// AdvLinkMTU; 0 sends no MTU option.
    pub mtu: u32,
    /// AdvSourceLLAddress: send the bridge's MAC address in a Source Link-Layer Address option.
    pub source_link_layer_address: bool,
    /// Per-prefix Prefix Information settings, keyed by prefix. The bridge's IPv6 prefixes
    /// are advertised with the defaults unless listed; listed prefixes that are not the
    /// bridge's are advertised too.
    pub prefixes: BTreeMap<Ipv6Net, PrefixConfig>,
    /// Route Information options (RFC 4191).
    pub routes: Vec<RouteConfig>,
    /// RDNSS addresses (RFC 8106).
    pub rdnss: Vec<Ipv6Addr>,
    /// RDNSS Lifetime; default 3 x max_interval.
    pub rdnss_lifetime: Option<Lifetime>,
    /// DNSSL domain names (RFC 8106).
    pub dnssl: Vec<String>,
    /// DNSSL Lifetime; default 3 x max_interval.
    pub dnssl_lifetime: Option<Lifetime>,
    /// NAT64 prefix for the PREF64 option (RFC 8781).
    pub pref64: Option<Ipv6Net>,
    /// PREF64 lifetime, seconds (sent in units of 8 s); default 3 x max_interval.
    pub pref64_lifetime: Option<u16>,
    /// Captive portal API URI (RFC 8910).
    pub captive_portal: Option<String>,
}

impl Default for RaConfig {
    fn default() -> Self {
        RaConfig {
            enable: None,
            min_interval: None,
            max_interval: 600,
            cur_hop_limit: 64,
            managed: false,
            other_config: false,
            router_lifetime: None,
            router_preference: RouterPreference::Medium,
            reachable_time: 0,
            retrans_timer: 0,
            mtu: 0,
            source_link_layer_address: true,
            prefixes: BTreeMap::new(),
            routes: Vec::new(),
            rdnss: Vec::new(),
            rdnss_lifetime: None,
            dnssl: Vec::new(),
            dnssl_lifetime: None,
            pref64: None,
            pref64_lifetime: None,
            captive_portal: None,
        }
    }
}

/// The most RDNSS addresses one option may carry and still fit in a 1280-byte RA.
pub const MAX_RDNSS: usize = 64;
/// The most bytes of encoded DNSSL names, for the same reason.
pub const MAX_DNSSL_BYTES: usize = 1024;
/// The longest captive-portal URI accepted.
pub const MAX_CAPTIVE_PORTAL_LEN: usize = 1024;
/// The longest PREF64 lifetime the 13-bit scaled field can carry.
pub const MAX_PREF64_LIFETIME: u16 = 8191 * 8;

impl RaConfig {
    /// Whether RAs are sent: `enable`, or by default whether the bridge has an IPv6 prefix.
    pub fn enabled(&self, has_ipv6_prefix: bool) -> bool {
        self.enable.unwrap_or(has_ipv6_prefix)
    }

    /// MinRtrAdvInterval and MaxRtrAdvInterval.
    pub fn intervals(&self) -> Intervals {
        let max = Duration::from_secs(u64::from(self.max_interval));
        Intervals {
            min: self
                .min_interval
                .map_or(max.mul_f64(0.33), |s| Duration::from_secs(u64::from(s))),
            max,
        }
    }

    /// 3 x MaxRtrAdvInterval, the default of every option lifetime.
    fn three_max(&self) -> u32 {
        3 * self.max_interval
    }

    /// AdvDefaultLifetime in seconds.
    pub fn router_lifetime(&self) -> u16 {
        u16::try_from(self.router_lifetime.unwrap_or(self.three_max())).unwrap_or(u16::MAX)
    }

    /// The lifetime of Route Information options without their own.
    pub fn route_lifetime(&self, route: &RouteConfig) -> u32 {
        route.lifetime.map_or(self.three_max(), Lifetime::as_u32)
    }

    /// The RDNSS Lifetime.
    pub fn rdnss_lifetime(&self) -> u32 {
        self.rdnss_lifetime
            .map_or(self.three_max(), Lifetime::as_u32)
    }

    /// The DNSSL Lifetime.
    pub fn dnssl_lifetime(&self) -> u32 {
        self.dnssl_lifetime
            .map_or(self.three_max(), Lifetime::as_u32)
    }

    /// The PREF64 lifetime in seconds.
    pub fn pref64_lifetime(&self) -> u16 {
        self.pref64_lifetime.unwrap_or_else(|| {
            u16::try_from(self.three_max())
                .map_or(MAX_PREF64_LIFETIME, |l| l.min(MAX_PREF64_LIFETIME))
        })
    }

    /// Every problem with these settings, as (JSON path, message naming the value). `path`
    /// is this object's own path, such as `bridges.vmbr-dev.ra`.
    pub fn validate(&self, path: &str) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut error =
            |key: String, message: String| errors.push((format!("{path}.{key}"), message));
        let max = self.max_interval;
        if !(4..=1800).contains(&max) {
            error(
                "max_interval".into(),
                format!("{max} is not between 4 and 1800 seconds"),
            );
        }
        if let Some(min) = self.min_interval {
            if min < 3 {
                error("min_interval".into(), format!("{min} is below 3 seconds"));
            } else if f64::from(min) > 0.75 * f64::from(max) {
                error(
                    "min_interval".into(),
                    format!("{min} is above 0.75 x max_interval {max}"),
                );
            }
        }
        if let Some(lifetime) = self.router_lifetime
            && lifetime != 0
            && !(max..=9000).contains(&lifetime)
        {
            error(
                "router_lifetime".into(),
                format!("{lifetime} is neither 0 nor between max_interval {max} and 9000 seconds"),
            );
        }
        if self.reachable_time > 3_600_000 {
            error(
                "reachable_time".into(),
                format!("{} is above 3600000 milliseconds", self.reachable_time),
            );
        }
        if self.mtu != 0 && self.mtu < 1280 {
            error(
                "mtu".into(),
                format!("{} is neither 0 nor at least 1280", self.mtu),
            );
        }
        for (prefix, pc) in &self.prefixes {
            let key = format!("prefixes[\"{prefix}\"]");
            if prefix.trunc() != *prefix {
                error(
                    key.clone(),
                    format!(
                        "\"{prefix}\" has host bits set (the prefix is {})",
                        prefix.trunc()
                    ),
                );
            }
            if pc.preferred_lifetime.as_u32() > pc.valid_lifetime.as_u32() {
                error(
                    format!("{key}.preferred_lifetime"),
                    format!(
                        "{} is above valid_lifetime {}",
                        pc.preferred_lifetime, pc.valid_lifetime
                    ),
                );
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            if route.prefix.trunc() != route.prefix {
                error(
                    format!("routes[{i}].prefix"),
                    format!(
                        "\"{}\" has host bits set (the prefix is {})",
                        route.prefix,
                        route.prefix.trunc()
                    ),
                );
            }
        }
        if self.rdnss.len() > MAX_RDNSS {
            error(
                "rdnss".into(),
                format!("{} addresses is more than {MAX_RDNSS}", self.rdnss.len()),
            );
        }
        for (i, server) in self.rdnss.iter().enumerate() {
            if server.is_unspecified() || server.is_loopback() || server.is_multicast() {
                error(
                    format!("rdnss[{i}]"),
                    format!("\"{server}\" is not a unicast address"),
                );
            }
        }
        for (key, lifetime) in [
            ("rdnss_lifetime", self.rdnss_lifetime),
            ("dnssl_lifetime", self.dnssl_lifetime),
        ] {
            if let Some(Lifetime::Seconds(s)) = lifetime
                && s != 0
                && s < max
            {
                error(
                    key.into(),
                    format!("{s} is neither 0 nor at least max_interval {max}"),
                );
            }
        }
        for (i, domain) in self.dnssl.iter().enumerate() {
            if let Err(why) = check_domain(domain) {
                error(
                    format!("dnssl[{i}]"),
                    format!("\"{domain}\" is not a domain name: {why}"),
                );
            }
        }
        let dnssl_bytes: usize = self.dnssl.iter().map(|d| dns_name_len(d)).sum();
        if dnssl_bytes > MAX_DNSSL_BYTES {
            error(
                "dnssl".into(),
                format!("{dnssl_bytes} bytes of names is more than {MAX_DNSSL_BYTES}"),
            );
        }
        if let Some(prefix) = self.pref64 {
            if pref64_plc(prefix.prefix_len()).is_none() {
                error(
                    "pref64".into(),
                    format!("\"{prefix}\" is not a /32, /40, /48, /56, /64 or /96 (RFC 6052)"),
                );
            } else if prefix.trunc() != prefix {
                error("pref64".into(), format!("\"{prefix}\" has host bits set"));
            }
        }
        if let Some(lifetime) = self.pref64_lifetime
            && lifetime > MAX_PREF64_LIFETIME
        {
            error(
                "pref64_lifetime".into(),
                format!("{lifetime} is above {MAX_PREF64_LIFETIME} seconds"),
            );
        }
        if let Some(uri) = &self.captive_portal
            && (!(uri.starts_with("https://") || uri == "urn:ietf:params:capport:unrestricted")
                || uri.len() > MAX_CAPTIVE_PORTAL_LEN
                || uri.contains('\0'))
        {
            error(
                "captive_portal".into(),
                format!(
                    "\"{uri}\" is not an https URI (or urn:ietf:params:capport:unrestricted) of at most {MAX_CAPTIVE_PORTAL_LEN} bytes"
                ),
            );
        }
        errors
    }
}

/// Checks a domain name for DNSSL: labels of 1 to 63 letters, digits, hyphens or
/// underscores, at most 253 characters, an optional trailing dot.
fn check_domain(domain: &str) -> Result<(), &'static str> {
    let name = domain.strip_suffix('.').unwrap_or(domain);
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 253 {
        return Err("it is longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("every label must be 1 to 63 characters long");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("labels may hold only letters, digits, '-' and '_'");
        }
    }
    Ok(())
}

/// Parses a bridge's `ra` object as written in the config file and validates it. `path` is
/// the object's JSON path (`bridges.vmbr-dev.ra`); every error names its path and value.
pub fn parse(path: &str, value: &serde_json::Value) -> Result<RaConfig, Vec<(String, String)>> {
    let config: RaConfig = serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let at = if inner == "." {
            path.to_string()
        } else {
            format!("{path}.{inner}")
        };
        // Name the offending value, which serde's message may not.
        let offending = e.path().iter().try_fold(value, |v, segment| match segment {
            serde_path_to_error::Segment::Seq { index } => v.get(*index),
            serde_path_to_error::Segment::Map { key } => v.get(key.as_str()),
            _ => None,
        });
        let message = match offending {
            Some(v) if !v.is_object() && !v.is_array() => format!("{v}: {}", e.into_inner()),
            _ => e.into_inner().to_string(),
        };
        vec![(at, message)]
    })?;
    let errors = config.validate(path);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}
