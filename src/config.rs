//! The config file (JSON, version 1): serde shapes that reject unknown keys, then
//! validation into typed values. Every error names its JSON path and the offending value.
//! Nothing here touches the system.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

/// Where `run` and `check` read the config unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/cilium-peer/config.json";
/// Where the control socket lives unless the config says otherwise.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/cilium-peer/control.sock";
/// The routing protocol number our kernel routes carry (`ip route ... proto cilium-peer`
/// with the rt_protos.d line the NixOS module installs). No routing daemon, Kubernetes
/// network plugin or iproute2 file we know of claims it: docs/config.md has the survey.
pub const DEFAULT_KERNEL_PROTOCOL: u8 = 214;
/// The number our routes carried before 214: FRR's for its static routes. Routes in our
/// table with it are adopted at start and moved to `kernel.protocol`.
pub const PREVIOUS_DEFAULT_KERNEL_PROTOCOL: u8 = 196;
/// The kernel's main table.
pub const MAIN_TABLE: u32 = 254;

/// A validated config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub router_id: Ipv4Addr,
    pub asn: u32,
    pub listen: Vec<ListenAddr>,
    pub kernel: Kernel,
    pub bridges: BTreeMap<String, Bridge>,
    pub neighbors: Vec<NeighborGroup>,
    pub control_socket: PathBuf,
    /// Group that owns the control socket (mode 0660), so its members may run `show`.
    pub control_socket_group: Option<String>,
    /// Where Prometheus scrapes `/metrics` (HTTP); off when `None`.
    pub metrics: Option<SocketAddr>,
    /// Connection admission limits (see `bgp::admission`).
    pub limits: Limits,
}

/// Admission limits on connections (the `limits` object), enforced by `bgp::admission`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sessions not yet Established, over all sources.
    pub max_half_open: usize,
    /// Connects one source address may make at once...
    pub source_burst: u32,
    /// ...and per minute after that.
    pub source_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_half_open: 64,
            source_burst: 10,
            source_per_minute: 30,
        }
    }
}

/// A socket address to accept BGP on; a link-local one names its interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    pub addr: SocketAddr,
    /// The interface of a link-local address (`[fe80::1%vmbr-dev]:179`).
    pub interface: Option<String>,
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.addr, &self.interface) {
            (SocketAddr::V6(a), Some(ifname)) => write!(f, "[{}%{}]:{}", a.ip(), ifname, a.port()),
            (addr, _) => write!(f, "{addr}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub table: u32,
    pub persist: bool,
    pub multipath: bool,
    /// The most next hops one ECMP route gets.
    pub max_paths: u16,
    pub protocol: u8,
    /// Other protocol numbers whose routes in `table` are taken as a previous run's at
    /// start: adopted, and moved to `protocol`.
    pub adopt_protocols: Vec<u8>,
    /// How long, after start, routes adopted from a previous run wait for their peers to
    /// come back and re-announce them before they are removed.
    pub adopt_grace_s: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bridge {
    pub prefixes: Vec<IpNet>,
    /// Router advertisements on this bridge (keys in docs/ra.md).
    pub ra: crate::ra::RaConfig,
}

/// `neighbors[]`: a range of addresses that may open passive sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborGroup {
    pub name: String,
    pub range: IpNet,
    pub asn: u32,
    pub password_file: Option<PathBuf>,
    pub max_prefixes: Option<u32>,
    /// After a session was closed for `max_prefixes`, connections from its address are
    /// refused for this long (seconds), so that a node sending too much does not flap.
    pub max_prefixes_hold_s: u32,
    pub ttl_security: bool,
    pub import: Vec<ImportRule>,
    /// Hold time we offer in OPEN (seconds; 0 or 3..=65535).
    pub hold_time: u16,
    /// Advertise graceful restart and keep a dropped peer's routes for its restart time.
    pub graceful_restart: bool,
    /// Watch each node on its bridge and take its routes out while it does not answer.
    pub liveness: Liveness,
    /// BFD with the group's nodes; Down takes a node's routes out at once.
    pub bfd: crate::bfd::Settings,
}

/// `neighbors[].liveness`: the host probes each node of the group on its bridge (ARP or
/// Neighbor Solicitation) every `interval_ms`; `multiplier` probes in a row unanswered, or
/// its bridge port gone, and its routes leave the table until it answers again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Liveness {
    pub enable: bool,
    pub interval_ms: u32,
    pub multiplier: u8,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            enable: true,
            interval_ms: 400,
            multiplier: 3,
        }
    }
}

impl Liveness {
    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::from(self.interval_ms))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportRule {
    pub prefix: IpNet,
    pub max_length: u8,
}

impl ImportRule {
    pub fn accepts(&self, prefix: &IpNet) -> bool {
        self.prefix.contains(prefix) && prefix.prefix_len() <= self.max_length
    }
}

/// One config error: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// All errors found in one config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

// The file's shape. Addresses stay strings here so that validation can name the value.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    router_id: String,
    asn: u32,
    #[serde(default)]
    listen: Option<Vec<String>>,
    #[serde(default)]
    kernel: RawKernel,
    #[serde(default)]
    bridges: BTreeMap<String, RawBridge>,
    #[serde(default)]
    neighbors: Vec<RawNeighbor>,
    #[serde(default)]
    control_socket: Option<PathBuf>,
    #[serde(default)]
    control_socket_group: Option<String>,
    #[serde(default)]
    metrics: Option<RawMetrics>,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default = "default_max_half_open")]
    max_half_open: usize,
    #[serde(default = "default_source_burst")]
    source_burst: u32,
    #[serde(default = "default_source_per_minute")]
    source_per_minute: u32,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_half_open: default_max_half_open(),
            source_burst: default_source_burst(),
            source_per_minute: default_source_per_minute(),
        }
    }
}

fn default_max_half_open() -> usize {
    Limits::default().max_half_open
}
fn default_source_burst() -> u32 {
    Limits::default().source_burst
}
fn default_source_per_minute() -> u32 {
    Limits::default().source_per_minute
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKernel {
    #[serde(default = "default_table")]
    table: u32,
    #[serde(default = "yes")]
    persist: bool,
    #[serde(default = "yes")]
    multipath: bool,
    #[serde(default = "default_max_paths")]
    max_paths: u16,
    #[serde(default = "default_protocol")]
    protocol: u8,
    #[serde(default = "default_adopt_protocols")]
    adopt_protocols: Vec<u8>,
    #[serde(default = "default_adopt_grace")]
    adopt_grace_s: u64,
}

impl Default for RawKernel {
    fn default() -> Self {
        RawKernel {
            table: default_table(),
            persist: true,
            multipath: true,
            max_paths: default_max_paths(),
            protocol: default_protocol(),
            adopt_protocols: default_adopt_protocols(),
            adopt_grace_s: default_adopt_grace(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBridge {
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    ra: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeighbor {
    name: String,
    range: String,
    asn: u32,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    max_prefixes: Option<u32>,
    #[serde(default = "default_max_prefixes_hold_s")]
    max_prefixes_hold_s: u32,
    #[serde(default)]
    ttl_security: bool,
    #[serde(default)]
    import: Vec<RawImport>,
    #[serde(default = "default_hold_time")]
    hold_time: u16,
    #[serde(default = "yes")]
    graceful_restart: bool,
    #[serde(default)]
    liveness: Liveness,
    #[serde(default)]
    bfd: crate::bfd::Settings,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImport {
    prefix: String,
    #[serde(default)]
    max_length: Option<u8>,
}

fn default_table() -> u32 {
    MAIN_TABLE
}
fn default_protocol() -> u8 {
    DEFAULT_KERNEL_PROTOCOL
}
fn default_adopt_protocols() -> Vec<u8> {
    vec![PREVIOUS_DEFAULT_KERNEL_PROTOCOL]
}
fn default_adopt_grace() -> u64 {
    120
}
/// ECMP routes wider than this are refused by iproute2's dumps and strain the kernel's
/// notifications (bench/README.md); 256 is past any sensible width.
const MAX_PATHS_LIMIT: u16 = 256;

fn default_max_paths() -> u16 {
    64
}
fn default_hold_time() -> u16 {
    90
}
fn default_max_prefixes_hold_s() -> u32 {
    60
}
fn yes() -> bool {
    true
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: String::new(),
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        Config::parse(&text)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            ConfigErrors(vec![ConfigError {
                path: if path == "." { String::new() } else { path },
                message: e.into_inner().to_string(),
            }])
        })?;
        let mut v = Validator::default();
        let config = v.config(raw);
        if v.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(v.errors))
        }
    }

    /// The bridge whose on-link prefixes contain `addr`, if any.
    pub fn bridge_of(&self, addr: IpAddr) -> Option<&str> {
        self.bridges
            .iter()
            .find(|(_, b)| b.prefixes.iter().any(|p| p.contains(&addr)))
            .map(|(name, _)| name.as_str())
    }

    /// The neighbor group whose range contains `addr` (the first one, in file order).
    pub fn neighbor_group_of(&self, addr: IpAddr) -> Option<&NeighborGroup> {
        self.neighbors.iter().find(|n| n.range.contains(&addr))
    }
}

#[derive(Default)]
struct Validator {
    errors: Vec<ConfigError>,
}

impl Validator {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn prefix(&mut self, path: &str, text: &str) -> Option<IpNet> {
        match text.parse::<IpNet>() {
            Ok(net) if net.trunc() == net => Some(net),
            Ok(net) => {
                self.error(
                    path,
                    format!(
                        "{text:?} has host bits set (did you mean \"{}\"?)",
                        net.trunc()
                    ),
                );
                None
            }
            Err(_) => {
                self.error(path, format!("{text:?} is not an IP prefix"));
                None
            }
        }
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let router_id = raw.router_id.parse::<Ipv4Addr>().unwrap_or_else(|_| {
            self.error(
                "router_id",
                format!("{:?} is not an IPv4 address (dotted quad)", raw.router_id),
            );
            Ipv4Addr::UNSPECIFIED
        });
        if router_id.is_unspecified() && raw.router_id.parse::<Ipv4Addr>().is_ok() {
            self.error("router_id", "\"0.0.0.0\" is not a valid BGP identifier");
        }
        if raw.asn == 0 || raw.asn == u32::from(crate::bgp::wire::AS_TRANS) {
            self.error("asn", format!("{} is not a usable AS number", raw.asn));
        }
        let listen_text = raw.listen.unwrap_or_else(|| vec!["[::]:179".to_string()]);
        if listen_text.is_empty() {
            self.error("listen", "[] leaves nothing to accept BGP on");
        }
        let listen = listen_text
            .iter()
            .enumerate()
            .filter_map(|(i, text)| {
                let parsed = parse_listen(text);
                if parsed.is_none() {
                    self.error(
                        format!("listen[{i}]"),
                        format!(
                            "{text:?} is not a socket address (\"[::]:179\", \"192.0.2.1:179\" or \"[fe80::1%vmbr-dev]:179\")"
                        ),
                    );
                }
                parsed
            })
            .collect();

        let kernel = Kernel {
            table: raw.kernel.table,
            persist: raw.kernel.persist,
            multipath: raw.kernel.multipath,
            max_paths: raw.kernel.max_paths,
            protocol: raw.kernel.protocol,
            adopt_protocols: raw.kernel.adopt_protocols,
            adopt_grace_s: raw.kernel.adopt_grace_s,
        };
        if !(1..=MAX_PATHS_LIMIT).contains(&kernel.max_paths) {
            self.error(
                "kernel.max_paths",
                format!("{} is outside 1..={MAX_PATHS_LIMIT}", kernel.max_paths),
            );
        }
        // 253 default, 255 local, 0 unspec: never ours to write.
        if matches!(kernel.table, 0 | 253 | 255) {
            self.error(
                "kernel.table",
                format!("{} is a reserved kernel table", kernel.table),
            );
        }
        if matches!(kernel.protocol, 0..=4) {
            self.error(
                "kernel.protocol",
                format!(
                    "{} is reserved for the kernel's own routes",
                    kernel.protocol
                ),
            );
        }
        for (i, protocol) in kernel.adopt_protocols.iter().enumerate() {
            if matches!(protocol, 0..=4) {
                self.error(
                    format!("kernel.adopt_protocols[{i}]"),
                    format!("{protocol} is reserved for the kernel's own routes"),
                );
            }
        }

        let mut bridges = BTreeMap::new();
        for (name, b) in raw.bridges {
            let path = format!("bridges.{name}");
            if !valid_ifname(&name) {
                self.error(
                    &path,
                    format!("{name:?} is not a valid interface name (1-15 bytes, no '/', ':' or whitespace)"),
                );
            }
            let prefixes = b
                .prefixes
                .iter()
                .enumerate()
                .filter_map(|(i, p)| self.prefix(&format!("{path}.prefixes[{i}]"), p))
                .collect();
            let ra_value =
                b.ra.unwrap_or(serde_json::Value::Object(Default::default()));
            let ra = crate::ra::config::parse(&format!("{path}.ra"), &ra_value).unwrap_or_else(
                |errors| {
                    for (path, message) in errors {
                        self.error(path, message);
                    }
                    crate::ra::RaConfig::default()
                },
            );
            bridges.insert(name, Bridge { prefixes, ra });
        }

        let mut neighbors: Vec<NeighborGroup> = Vec::new();
        for (i, n) in raw.neighbors.into_iter().enumerate() {
            let path = format!("neighbors[{i}]");
            if n.name.is_empty()
                || !n
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
            {
                self.error(
                    format!("{path}.name"),
                    format!("{:?} must be non-empty letters, digits, '-' or '_'", n.name),
                );
            }
            if neighbors.iter().any(|o| o.name == n.name) {
                self.error(
                    format!("{path}.name"),
                    format!("{:?} is used twice", n.name),
                );
            }
            let range = self.prefix(&format!("{path}.range"), &n.range);
            if n.asn == 0 {
                self.error(format!("{path}.asn"), "0 is not a usable AS number");
            }
            if n.hold_time != 0 && n.hold_time < 3 {
                self.error(
                    format!("{path}.hold_time"),
                    format!("{} must be 0 or at least 3 (RFC 4271)", n.hold_time),
                );
            }
            if n.max_prefixes_hold_s > 86_400 {
                self.error(
                    format!("{path}.max_prefixes_hold_s"),
                    format!("{} is more than a day (86400)", n.max_prefixes_hold_s),
                );
            }
            if !(50..=60_000).contains(&n.liveness.interval_ms) {
                self.error(
                    format!("{path}.liveness.interval_ms"),
                    format!(
                        "{} is outside 50..=60000 (ms between probes)",
                        n.liveness.interval_ms
                    ),
                );
            }
            if n.liveness.multiplier == 0 {
                self.error(
                    format!("{path}.liveness.multiplier"),
                    "0 would call every node dead; at least 1 unanswered probe",
                );
            }
            for (key, message) in n.bfd.validate(&format!("{path}.bfd")) {
                self.error(key, message);
            }
            if n.max_prefixes == Some(0) {
                self.error(
                    format!("{path}.max_prefixes"),
                    "0 would refuse every route; use null for no limit",
                );
            }
            let import = n
                .import
                .iter()
                .enumerate()
                .filter_map(|(j, rule)| {
                    let rpath = format!("{path}.import[{j}]");
                    let prefix = self.prefix(&format!("{rpath}.prefix"), &rule.prefix)?;
                    let max_length = rule.max_length.unwrap_or(prefix.prefix_len());
                    if max_length < prefix.prefix_len() || max_length > prefix.max_prefix_len() {
                        self.error(
                            format!("{rpath}.max_length"),
                            format!(
                                "{max_length} is outside {}..={} for {prefix}",
                                prefix.prefix_len(),
                                prefix.max_prefix_len()
                            ),
                        );
                        return None;
                    }
                    Some(ImportRule { prefix, max_length })
                })
                .collect();
            if let Some(file) = &n.password_file
                && !file.is_absolute()
            {
                self.error(
                    format!("{path}.password_file"),
                    format!("{:?} is not an absolute path", file.display().to_string()),
                );
            }
            if let Some(range) = range {
                neighbors.push(NeighborGroup {
                    name: n.name,
                    range,
                    asn: n.asn,
                    password_file: n.password_file,
                    max_prefixes: n.max_prefixes,
                    max_prefixes_hold_s: n.max_prefixes_hold_s,
                    ttl_security: n.ttl_security,
                    import,
                    hold_time: n.hold_time,
                    graceful_restart: n.graceful_restart,
                    liveness: n.liveness,
                    bfd: n.bfd,
                });
            }
        }
        for (i, a) in neighbors.iter().enumerate() {
            for b in &neighbors[i + 1..] {
                if a.range.contains(&b.range) || b.range.contains(&a.range) {
                    self.error(
                        "neighbors",
                        format!(
                            "ranges {} ({}) and {} ({}) overlap: each address must belong to one group",
                            a.range, a.name, b.range, b.name
                        ),
                    );
                }
            }
        }

        let control_socket = raw
            .control_socket
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET));
        if !control_socket.is_absolute() {
            self.error(
                "control_socket",
                format!(
                    "{:?} is not an absolute path",
                    control_socket.display().to_string()
                ),
            );
        }

        let metrics = raw.metrics.and_then(|m| {
            let addr = m.listen.parse::<SocketAddr>().ok();
            if addr.is_none() {
                self.error(
                    "metrics.listen",
                    format!(
                        "{:?} is not a socket address (\"[::1]:9179\", \"192.0.2.1:9179\")",
                        m.listen
                    ),
                );
            }
            addr
        });
        let limits = Limits {
            max_half_open: raw.limits.max_half_open,
            source_burst: raw.limits.source_burst,
            source_per_minute: raw.limits.source_per_minute,
        };
        for (key, value) in [
            ("max_half_open", limits.max_half_open as u64),
            ("source_burst", u64::from(limits.source_burst)),
            ("source_per_minute", u64::from(limits.source_per_minute)),
        ] {
            if value == 0 {
                self.error(format!("limits.{key}"), "0 would refuse every connection");
            }
        }

        Config {
            router_id,
            asn: raw.asn,
            listen,
            kernel,
            bridges,
            neighbors,
            control_socket,
            control_socket_group: raw.control_socket_group,
            metrics,
            limits,
        }
    }
}

/// Linux interface names: 1 to 15 bytes, no '/', ':' or whitespace (hyphens welcome).
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// `[::]:179`, `192.0.2.1:179`, `[fe80::1%vmbr-dev]:179`. The interface of a link-local
/// address is resolved to its index when the socket is bound.
fn parse_listen(text: &str) -> Option<ListenAddr> {
    if let Some(rest) = text.strip_prefix('[')
        && let Some((inside, port)) = rest.split_once("]:")
        && let Some((ip, ifname)) = inside.split_once('%')
    {
        let ip: std::net::Ipv6Addr = ip.parse().ok()?;
        let port: u16 = port.parse().ok()?;
        if !valid_ifname(ifname) {
            return None;
        }
        return Some(ListenAddr {
            addr: SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)),
            interface: Some(ifname.to_string()),
        });
    }
    let addr: SocketAddr = text.parse().ok()?;
    if let SocketAddr::V6(a) = addr
        && a.ip().is_unicast_link_local()
    {
        // A link-local address means nothing without its interface.
        return None;
    }
    Some(ListenAddr {
        addr,
        interface: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{ "router_id": "192.0.2.1", "asn": 65100 }"#;

    fn errors(text: &str) -> Vec<String> {
        Config::parse(text)
            .expect_err("config should be rejected")
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_minimal_config_gets_the_documented_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.listen.len(), 1);
        assert_eq!(c.listen[0].addr, "[::]:179".parse::<SocketAddr>().unwrap());
        assert_eq!(c.kernel.table, 254);
        assert!(c.kernel.persist);
        assert!(c.kernel.multipath);
        assert_eq!(c.kernel.max_paths, 64);
        assert_eq!(c.kernel.protocol, 214);
        assert_eq!(c.kernel.adopt_protocols, vec![196]);
        assert_eq!(c.control_socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
        assert!(c.bridges.is_empty() && c.neighbors.is_empty());
        assert_eq!(c.metrics, None);
        assert_eq!(c.limits, Limits::default());
    }

    #[test]
    fn a_metrics_listen_address_is_parsed_and_a_bad_one_named() {
        let c = Config::parse(
            r#"{ "router_id": "192.0.2.1", "asn": 65100, "metrics": { "listen": "[::1]:9179" } }"#,
        )
        .unwrap();
        assert_eq!(c.metrics, Some("[::1]:9179".parse().unwrap()));
        let e = errors(
            r#"{ "router_id": "192.0.2.1", "asn": 65100, "metrics": { "listen": "9179" } }"#,
        );
        assert_eq!(
            e,
            vec![
                r#"metrics.listen: "9179" is not a socket address ("[::1]:9179", "192.0.2.1:9179")"#
            ]
        );
    }

    #[test]
    fn connection_limits_are_read_and_zero_is_refused() {
        let c = Config::parse(
            r#"{ "router_id": "192.0.2.1", "asn": 65100,
                 "limits": { "max_half_open": 8, "source_burst": 3 } }"#,
        )
        .unwrap();
        assert_eq!(
            c.limits,
            Limits {
                max_half_open: 8,
                source_burst: 3,
                source_per_minute: Limits::default().source_per_minute,
            }
        );
        let e = errors(
            r#"{ "router_id": "192.0.2.1", "asn": 65100, "limits": { "source_per_minute": 0 } }"#,
        );
        assert_eq!(
            e,
            vec!["limits.source_per_minute: 0 would refuse every connection"]
        );
    }

    #[test]
    fn a_bad_range_is_reported_with_its_json_path_and_value() {
        let e = errors(
            r#"{ "router_id": "192.0.2.1", "asn": 65100,
                 "neighbors": [ { "name": "cilium", "range": "2001:db8::/129", "asn": 65100 } ] }"#,
        );
        assert_eq!(
            e,
            vec![r#"neighbors[0].range: "2001:db8::/129" is not an IP prefix"#]
        );
    }

    #[test]
    fn max_paths_outside_one_to_256_and_a_hold_time_over_a_day_are_named() {
        let e = errors(
            r#"{ "router_id": "192.0.2.1", "asn": 65100, "kernel": { "max_paths": 0 },
                 "neighbors": [ { "name": "cilium", "range": "2001:db8::/64", "asn": 65100,
                                  "max_prefixes_hold_s": 90000 } ] }"#,
        );
        assert_eq!(
            e,
            vec![
                "kernel.max_paths: 0 is outside 1..=256",
                "neighbors[0].max_prefixes_hold_s: 90000 is more than a day (86400)",
            ]
        );
    }

    #[test]
    fn adopted_protocol_numbers_may_not_be_the_kernels_own() {
        let e = errors(
            r#"{ "router_id": "192.0.2.1", "asn": 65100,
                 "kernel": { "protocol": 4, "adopt_protocols": [196, 3] } }"#,
        );
        assert_eq!(
            e,
            vec![
                "kernel.protocol: 4 is reserved for the kernel's own routes",
                "kernel.adopt_protocols[1]: 3 is reserved for the kernel's own routes",
            ]
        );
        let c = Config::parse(
            r#"{ "router_id": "192.0.2.1", "asn": 65100, "kernel": { "adopt_protocols": [] } }"#,
        )
        .unwrap();
        assert!(c.kernel.adopt_protocols.is_empty());
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_its_path() {
        let e = errors(r#"{ "router_id": "192.0.2.1", "asn": 65100, "kernel": { "tabel": 5 } }"#);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("kernel.tabel: unknown field `tabel`"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn a_wrong_type_names_the_nested_path() {
        let e = errors(
            r#"{ "router_id": "192.0.2.1", "asn": 65100,
                 "neighbors": [ { "name": "a", "range": "192.0.2.0/24", "asn": "x" } ] }"#,
        );
        assert!(
            e[0].starts_with("neighbors[0].asn: invalid type"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn every_semantic_error_is_reported_not_only_the_first() {
        let e = errors(
            r#"{ "router_id": "192.0.2.300", "asn": 0, "listen": ["nowhere"],
                 "bridges": { "vmbr-dev": { "prefixes": ["192.0.2.1/24", "bogus"] } },
                 "neighbors": [ { "name": "a", "range": "192.0.2.0/24", "asn": 65100, "hold_time": 2,
                                  "import": [ { "prefix": "10.0.0.0/8", "max_length": 7 } ] } ] }"#,
        );
        assert_eq!(
            e,
            vec![
                r#"router_id: "192.0.2.300" is not an IPv4 address (dotted quad)"#.to_string(),
                "asn: 0 is not a usable AS number".into(),
                r#"listen[0]: "nowhere" is not a socket address ("[::]:179", "192.0.2.1:179" or "[fe80::1%vmbr-dev]:179")"#.into(),
                r#"bridges.vmbr-dev.prefixes[0]: "192.0.2.1/24" has host bits set (did you mean "192.0.2.0/24"?)"#.into(),
                r#"bridges.vmbr-dev.prefixes[1]: "bogus" is not an IP prefix"#.into(),
                "neighbors[0].hold_time: 2 must be 0 or at least 3 (RFC 4271)".into(),
                "neighbors[0].import[0].max_length: 7 is outside 8..=32 for 10.0.0.0/8".into(),
            ]
        );
    }

    #[test]
    fn a_link_local_listen_address_keeps_its_hyphenated_interface() {
        let c = Config::parse(
            r#"{ "router_id": "192.0.2.1", "asn": 65100, "listen": ["[fe80::1%vmbr-dev]:179"] }"#,
        )
        .unwrap();
        assert_eq!(c.listen[0].interface.as_deref(), Some("vmbr-dev"));
        assert_eq!(c.listen[0].to_string(), "[fe80::1%vmbr-dev]:179");
    }

    #[test]
    fn a_link_local_listen_address_without_interface_is_refused() {
        let e =
            errors(r#"{ "router_id": "192.0.2.1", "asn": 65100, "listen": ["[fe80::1]:179"] }"#);
        assert!(e[0].starts_with("listen[0]: \"[fe80::1]:179\""), "{}", e[0]);
    }

    #[test]
    fn overlapping_neighbor_ranges_are_refused() {
        let e = errors(
            r#"{ "router_id": "192.0.2.1", "asn": 65100, "neighbors": [
                 { "name": "a", "range": "2001:db8::/32", "asn": 65100 },
                 { "name": "b", "range": "2001:db8:1::/64", "asn": 65100 } ] }"#,
        );
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("overlap"), "{}", e[0]);
    }

    #[test]
    fn an_import_rule_without_max_length_accepts_only_the_prefix_itself() {
        let c = Config::parse(
            r#"{ "router_id": "192.0.2.1", "asn": 65100, "neighbors": [
                 { "name": "a", "range": "2001:db8::/32", "asn": 65100,
                   "import": [ { "prefix": "10.244.0.0/16" } ] } ] }"#,
        )
        .unwrap();
        let rule = c.neighbors[0].import[0];
        assert!(rule.accepts(&"10.244.0.0/16".parse().unwrap()));
        assert!(!rule.accepts(&"10.244.1.0/24".parse().unwrap()));
    }

    #[test]
    fn peers_are_matched_to_their_bridge_and_group() {
        let c = Config::parse(
            r#"{ "router_id": "192.0.2.1", "asn": 65100,
                 "bridges": { "vmbr-dev": { "prefixes": ["2001:db8:1::/64"] } },
                 "neighbors": [ { "name": "cilium", "range": "2001:db8:1::/64", "asn": 65100 } ] }"#,
        )
        .unwrap();
        let peer: IpAddr = "2001:db8:1::11".parse().unwrap();
        assert_eq!(c.bridge_of(peer), Some("vmbr-dev"));
        assert_eq!(c.neighbor_group_of(peer).unwrap().name, "cilium");
        assert_eq!(c.bridge_of("2001:db8:2::1".parse().unwrap()), None);
    }
}

#[cfg(test)]
mod ra_tests {
    use super::*;

    #[test]
    fn a_bad_ra_setting_is_reported_with_its_path_by_check() {
        let errors = Config::parse(
            r#"{ "router_id": "192.0.2.1", "asn": 65100,
                 "bridges": { "vmbr-dev": { "prefixes": ["2001:db8:1::/64"],
                                            "ra": { "min_interval": 500, "max_interval": 100 } } } }"#,
        )
        .expect_err("min_interval above max_interval");
        assert!(
            errors
                .0
                .iter()
                .any(|e| e.path.starts_with("bridges.vmbr-dev.ra.")),
            "{errors}"
        );
    }
}
