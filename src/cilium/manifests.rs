//! The Cilium side of the sessions, decided from the config and the host's bridge addresses
//! (pure: no file, socket or kernel access): one BGP instance per neighbor group in a
//! `CiliumBGPClusterConfig`, a `CiliumBGPPeerConfig` per group, one `CiliumBGPAdvertisement`;
//! or every reason they cannot work, each naming its JSON path (or flag) and value.
//! It never reads a password file: a peer config only names the Secret to create from it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use super::yaml::{self, Document, Value, map, str};
use crate::config::{Config, ConfigError, ImportRule, ListenAddr, NeighborGroup};

/// The API version the manifests are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `cilium.io/v2`: Cilium 1.18 and later.
    V2,
    /// `cilium.io/v2alpha1`: Cilium 1.16 and 1.17.
    V2alpha1,
}

impl Api {
    pub fn api_version(self) -> &'static str {
        match self {
            Api::V2 => "cilium.io/v2",
            Api::V2alpha1 => "cilium.io/v2alpha1",
        }
    }

    fn releases(self) -> &'static str {
        match self {
            Api::V2 => "Cilium 1.18 and later",
            Api::V2alpha1 => "Cilium 1.16 and 1.17",
        }
    }
}

/// The restart time the nodes advertise: how long cilium-peer keeps a node's routes (stale)
/// while its agent restarts. Cilium's default, and longer than an agent restart takes.
pub const RESTART_TIME_S: u16 = 120;
/// Cilium's default is 120 s: a node would wait 120 to 240 s to reconnect after the host
/// restarted. 5 s brings it back within seconds.
pub const CONNECT_RETRY_S: u32 = 5;
/// The label the advertisement carries and the peer configs' families select.
pub const ADVERTISE_LABEL: (&str, &str) = ("advertise", "cilium-peer");
/// Where Cilium looks for `authSecretRef` Secrets unless `bgp-secrets-namespace` says otherwise.
pub const SECRETS_NAMESPACE: &str = "kube-system";
/// `bgpInstances` of a `CiliumBGPClusterConfig`: `maxItems: 16` in both API versions.
pub const MAX_INSTANCES: usize = 16;
/// The name of the cluster config and of the advertisement.
pub const OBJECT_NAME: &str = "cilium-peer";

/// Where the host's addresses came from; refusals say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressSource {
    Kernel,
    Given,
}

/// The host's addresses on each configured bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddresses {
    pub source: AddressSource,
    pub by_bridge: BTreeMap<String, Vec<IpAddr>>,
}

impl HostAddresses {
    /// The kernel's `(interface, address)` pairs, kept for configured bridges.
    pub fn from_interfaces(
        config: &Config,
        addresses: impl IntoIterator<Item = (String, IpAddr)>,
    ) -> HostAddresses {
        let mut by_bridge: BTreeMap<String, Vec<IpAddr>> = config
            .bridges
            .keys()
            .map(|name| (name.clone(), Vec::new()))
            .collect();
        for (interface, address) in addresses {
            if let Some(list) = by_bridge.get_mut(&interface)
                && !list.contains(&address)
            {
                list.push(address);
            }
        }
        HostAddresses {
            source: AddressSource::Kernel,
            by_bridge,
        }
    }

    /// Addresses given on the command line (`--address`), each on the bridge whose prefixes
    /// hold it.
    pub fn given(config: &Config, addresses: &[IpAddr]) -> Result<HostAddresses, Vec<ConfigError>> {
        let mut by_bridge: BTreeMap<String, Vec<IpAddr>> = config
            .bridges
            .keys()
            .map(|name| (name.clone(), Vec::new()))
            .collect();
        let mut errors = Vec::new();
        for &address in addresses {
            match config.bridge_of(address) {
                Some(bridge) => by_bridge
                    .get_mut(bridge)
                    .expect("bridge_of names a configured bridge")
                    .push(address),
                None => errors.push(ConfigError {
                    path: "--address".into(),
                    message: format!(
                        "{address} is in none of the bridges' prefixes (bridges.*.prefixes)"
                    ),
                }),
            }
        }
        if errors.is_empty() {
            Ok(HostAddresses {
                source: AddressSource::Given,
                by_bridge,
            })
        } else {
            Err(errors)
        }
    }
}

/// What to build.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub api: Api,
    /// Only the groups on this bridge (`--bridge`).
    pub bridge: Option<&'a str>,
    pub addresses: &'a HostAddresses,
}

/// One neighbor group's BGP instance: its nodes peer with the host on one bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The group's index in `neighbors[]`.
    pub index: usize,
    /// The group's name (the instance's name).
    pub group: String,
    /// The peer config's Kubernetes name.
    pub peer_config: String,
    pub bridge: String,
    /// The nodes' AS: the group's `asn`.
    pub local_asn: u32,
    /// The host's AS: the config's `asn`.
    pub peer_asn: u32,
    /// The host's address on the bridge, in the range's family.
    pub peer_address: IpAddr,
    /// The port of the `listen` entry that accepts connections to `peer_address`.
    pub peer_port: u16,
    /// The group's `hold_time` (0: none).
    pub hold_time: u16,
    pub graceful_restart: bool,
    pub password_file: Option<PathBuf>,
    /// 255 when the group wants GTSM over eBGP (the nodes then send with TTL 255).
    pub ebgp_multihop: Option<u8>,
    pub import: Vec<ImportRule>,
}

impl Instance {
    /// The Secret holding the MD5 key, when the group has one.
    pub fn secret(&self) -> Option<String> {
        self.password_file
            .as_ref()
            .map(|_| self.peer_config.clone())
    }

    /// Keepalive every third of the hold time, as cilium-peer itself sends them.
    pub fn keepalive(&self) -> u16 {
        (self.hold_time / 3).max(1)
    }
}

/// The manifests, decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifests {
    pub api: Api,
    pub router_id: std::net::Ipv4Addr,
    pub asn: u32,
    pub instances: Vec<Instance>,
    /// Groups left out, and why (written as comments).
    pub notes: Vec<String>,
}

fn refusal(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

fn family(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "IPv4",
        IpNet::V6(_) => "IPv6",
    }
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

/// Decides the manifests for `config`, or says every reason they cannot work.
pub fn plan(config: &Config, request: &Request<'_>) -> Result<Manifests, Vec<ConfigError>> {
    let mut errors = Vec::new();
    if let Some(bridge) = request.bridge
        && !config.bridges.contains_key(bridge)
    {
        let known: Vec<&str> = config.bridges.keys().map(String::as_str).collect();
        return Err(vec![refusal(
            "--bridge",
            format!(
                "{bridge:?} is not a configured bridge (bridges: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        )]);
    }

    // Each group's bridge: the one whose prefixes overlap its range.
    let mut placed: Vec<(usize, &NeighborGroup, &str)> = Vec::new();
    for (index, group) in config.neighbors.iter().enumerate() {
        let bridges: Vec<&str> = config
            .bridges
            .iter()
            .filter(|(_, b)| b.prefixes.iter().any(|p| overlaps(p, &group.range)))
            .map(|(name, _)| name.as_str())
            .collect();
        let path = format!("neighbors[{index}].range");
        match (bridges.as_slice(), request.bridge) {
            ([], Some(_)) => {}
            ([], None) => errors.push(refusal(
                path,
                format!(
                    "\"{}\" is on no configured bridge (no bridges.*.prefixes overlaps it), so \
                     no host address for its nodes to peer with is known",
                    group.range
                ),
            )),
            (found, Some(wanted)) => {
                if found.contains(&wanted) {
                    placed.push((index, group, wanted));
                }
            }
            ([one], None) => placed.push((index, group, one)),
            (several, None) => errors.push(refusal(
                path,
                format!(
                    "\"{}\" spans bridges {}, on which the host has different addresses: \
                     choose one with --bridge",
                    group.range,
                    several.join(" and ")
                ),
            )),
        }
    }

    let mut instances = Vec::new();
    let mut notes = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for &(index, group, bridge) in &placed {
        // One IPv6 session carries both families: an IPv4 group beside an IPv6 one on the
        // same bridge would give every node a second session.
        if group.range.addr().is_ipv4()
            && let Some(&(v6_index, v6_group, _)) = placed
                .iter()
                .find(|(_, g, b)| *b == bridge && g.range.addr().is_ipv6())
        {
            notes.push(format!(
                "neighbors[{index}] ({:?}, {}) is left out: the nodes on {bridge} peer over IPv6 \
                 with neighbors[{v6_index}] ({:?}), one session for both families.",
                group.name, group.range, v6_group.name
            ));
            continue;
        }
        let Some(peer_address) = host_address(config, request.addresses, group, bridge) else {
            errors.push(no_address(config, request.addresses, index, group, bridge));
            continue;
        };
        let Some(peer_port) = listening_port(&config.listen, peer_address) else {
            let listen: Vec<String> = config.listen.iter().map(|l| format!("\"{l}\"")).collect();
            errors.push(refusal(
                "listen",
                format!(
                    "none of [{}] accepts connections to {peer_address}, the host's address on \
                     {bridge} that the nodes of neighbors[{index}] ({:?}) must peer with",
                    listen.join(", "),
                    group.name
                ),
            ));
            continue;
        };
        let ibgp = group.asn == config.asn;
        if group.ttl_security && ibgp {
            errors.push(refusal(
                format!("neighbors[{index}].ttl_security"),
                "true cannot work with Cilium: its iBGP sessions send with the kernel's default \
                 TTL, not 255, so every packet would be dropped; set it to false",
            ));
            continue;
        }
        let mut peer_config = format!("{OBJECT_NAME}-{}", kubernetes_name(&group.name));
        if names.contains(&peer_config) {
            peer_config = format!("{peer_config}-{index}");
        }
        names.push(peer_config.clone());
        instances.push(Instance {
            index,
            group: group.name.clone(),
            peer_config,
            bridge: bridge.to_string(),
            local_asn: group.asn,
            peer_asn: config.asn,
            peer_address,
            peer_port,
            hold_time: group.hold_time,
            graceful_restart: group.graceful_restart,
            password_file: group.password_file.clone(),
            ebgp_multihop: (group.ttl_security && !ibgp).then_some(255),
            import: group.import.clone(),
        });
    }

    if instances.len() > MAX_INSTANCES {
        errors.push(refusal(
            "neighbors",
            format!(
                "{} BGP instances (one per neighbor group) are more than a \
                 CiliumBGPClusterConfig holds ({MAX_INSTANCES})",
                instances.len()
            ),
        ));
    }
    if errors.is_empty() && instances.is_empty() {
        errors.push(refusal(
            "neighbors",
            match request.bridge {
                Some(bridge) => format!("no neighbor group's range is on bridge {bridge:?}"),
                None => "no neighbor group: there is nothing for Cilium to peer with".to_string(),
            },
        ));
    }
    if errors.is_empty() {
        Ok(Manifests {
            api: request.api,
            router_id: config.router_id,
            asn: config.asn,
            instances,
            notes,
        })
    } else {
        Err(errors)
    }
}

/// Whether a node on the bridge can use `address` as its peer: a global unicast address.
fn usable(address: &IpAddr) -> bool {
    match address {
        IpAddr::V4(a) => {
            !(a.is_unspecified() || a.is_loopback() || a.is_link_local() || a.is_multicast())
        }
        IpAddr::V6(a) => {
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_unicast_link_local()
                || a.is_multicast())
        }
    }
}

/// The host's address the group's nodes peer with on `bridge`: in the range's family, in a
/// bridge prefix that overlaps the range (on-link for the nodes); one inside the range
/// itself first, then the lowest.
fn host_address(
    config: &Config,
    addresses: &HostAddresses,
    group: &NeighborGroup,
    bridge: &str,
) -> Option<IpAddr> {
    let on_link: Vec<&IpNet> = on_link_prefixes(config, group, bridge);
    let mut candidates: Vec<IpAddr> = addresses
        .by_bridge
        .get(bridge)
        .into_iter()
        .flatten()
        .copied()
        .filter(|a| a.is_ipv6() == group.range.addr().is_ipv6() && usable(a))
        .filter(|a| on_link.iter().any(|p| p.contains(a)))
        .collect();
    candidates.sort_by_key(|a| (!group.range.contains(a), *a));
    candidates.first().copied()
}

fn on_link_prefixes<'c>(config: &'c Config, group: &NeighborGroup, bridge: &str) -> Vec<&'c IpNet> {
    config.bridges[bridge]
        .prefixes
        .iter()
        .filter(|p| overlaps(p, &group.range))
        .collect()
}

fn no_address(
    config: &Config,
    addresses: &HostAddresses,
    index: usize,
    group: &NeighborGroup,
    bridge: &str,
) -> ConfigError {
    let on_link: Vec<String> = on_link_prefixes(config, group, bridge)
        .iter()
        .map(ToString::to_string)
        .collect();
    let found: Vec<String> = addresses
        .by_bridge
        .get(bridge)
        .into_iter()
        .flatten()
        .map(ToString::to_string)
        .collect();
    let seen = match (addresses.source, found.is_empty()) {
        (AddressSource::Kernel, true) => format!(
            "the kernel shows no address on {bridge}: on another machine than the host, give \
             them with --address"
        ),
        (AddressSource::Kernel, false) => {
            format!("addresses read from the kernel: {}", found.join(", "))
        }
        (AddressSource::Given, true) => format!("no --address is on {bridge}"),
        (AddressSource::Given, false) => format!("given with --address: {}", found.join(", ")),
    };
    refusal(
        format!("bridges.{bridge}"),
        format!(
            "the host has no {} address in {} on {bridge} for the nodes of neighbors[{index}] \
             ({:?}, {}) to peer with ({seen})",
            family(&group.range),
            on_link.join(", "),
            group.name,
            group.range
        ),
    )
}

/// The port of the first `listen` entry that accepts connections to `address`.
fn listening_port(listen: &[ListenAddr], address: IpAddr) -> Option<u16> {
    listen
        .iter()
        .find(|l| {
            l.interface.is_none()
                && match l.addr.ip() {
                    // `[::]` takes IPv4 too (IPV6_V6ONLY off); `0.0.0.0` only IPv4.
                    IpAddr::V6(ip) if ip.is_unspecified() => true,
                    IpAddr::V4(ip) if ip.is_unspecified() => address.is_ipv4(),
                    ip => ip.to_canonical() == address,
                }
        })
        .map(|l| l.addr.port())
}

/// A Kubernetes object name from a group name (letters, digits, '-', '_'): lowercase
/// letters, digits and '-'.
fn kubernetes_name(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| match c {
            '_' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    if trimmed.is_empty() {
        "group".to_string()
    } else {
        trimmed.to_string()
    }
}

fn metadata(name: &str, labels: Option<(&str, &str)>) -> Value {
    let mut entries = vec![("name", str(name))];
    if let Some((key, value)) = labels {
        entries.push(("labels", map([(key, str(value))])));
    }
    map(entries)
}

fn describe_import(rules: &[ImportRule]) -> String {
    let rules: Vec<String> = rules
        .iter()
        .map(|r| format!("{} up to /{}", r.prefix, r.max_length))
        .collect();
    rules.join(", ")
}

impl Manifests {
    /// The YAML documents, in the order to apply them.
    pub fn documents(&self) -> Vec<Document> {
        let api_version = || str(self.api.api_version());
        let mut documents = Vec::new();

        let instances = self
            .instances
            .iter()
            .map(|i| {
                map([
                    ("name", str(&i.group)),
                    ("localASN", Value::Int(u64::from(i.local_asn))),
                    (
                        "peers",
                        Value::List(vec![map([
                            ("name", str(OBJECT_NAME)),
                            ("peerAddress", str(i.peer_address.to_string())),
                            ("peerASN", Value::Int(u64::from(i.peer_asn))),
                            ("peerConfigRef", map([("name", str(&i.peer_config))])),
                        ])]),
                    ),
                ])
            })
            .collect();
        let bridges: Vec<String> = self
            .instances
            .iter()
            .map(|i| format!("{} on {}", i.group, i.bridge))
            .collect();
        documents.push(Document {
            comments: vec![format!(
                "One BGP instance per neighbor group ({}), on every node (no nodeSelector).",
                bridges.join(", ")
            )],
            value: map([
                ("apiVersion", api_version()),
                ("kind", str("CiliumBGPClusterConfig")),
                ("metadata", metadata(OBJECT_NAME, None)),
                ("spec", map([("bgpInstances", Value::List(instances))])),
            ]),
        });

        for i in &self.instances {
            let mut comments = Vec::new();
            if i.hold_time == 0 {
                comments.push(format!(
                    "neighbors[{}].hold_time is 0: the session runs without a hold timer \
                     whatever Cilium offers; these timers are Cilium's defaults.",
                    i.index
                ));
            }
            if !i.import.is_empty() {
                comments.push(format!(
                    "The host accepts from these nodes only {} (neighbors[{}].import).",
                    describe_import(&i.import),
                    i.index
                ));
            }
            if let (Some(secret), Some(file)) = (i.secret(), &i.password_file) {
                comments.push(format!(
                    "TCP-MD5: the key is not in this file. Create the Secret (key `password`) \
                     from the host's key file {} (trailing newlines stripped, as cilium-peer \
                     reads it), in Cilium's bgp-secrets-namespace ({SECRETS_NAMESPACE} by \
                     default):",
                    file.display()
                ));
                comments.push(format!(
                    "  printf %s \"$(cat {})\" | kubectl -n {SECRETS_NAMESPACE} create secret \
                     generic {secret} --from-file=password=/dev/stdin",
                    file.display()
                ));
            }
            let (hold, keepalive) = if i.hold_time == 0 {
                (90, 30)
            } else {
                (i.hold_time, i.keepalive())
            };
            let mut spec = vec![
                (
                    "transport",
                    map([("peerPort", Value::Int(u64::from(i.peer_port)))]),
                ),
                (
                    "timers",
                    map([
                        (
                            "connectRetryTimeSeconds",
                            Value::Int(u64::from(CONNECT_RETRY_S)),
                        ),
                        ("holdTimeSeconds", Value::Int(u64::from(hold))),
                        ("keepAliveTimeSeconds", Value::Int(u64::from(keepalive))),
                    ]),
                ),
                (
                    "gracefulRestart",
                    if i.graceful_restart {
                        map([
                            ("enabled", Value::Bool(true)),
                            ("restartTimeSeconds", Value::Int(u64::from(RESTART_TIME_S))),
                        ])
                    } else {
                        map([("enabled", Value::Bool(false))])
                    },
                ),
            ];
            if let Some(secret) = i.secret() {
                spec.push(("authSecretRef", str(secret)));
            }
            if let Some(ttl) = i.ebgp_multihop {
                spec.push(("ebgpMultihop", Value::Int(u64::from(ttl))));
            }
            let families = ["ipv4", "ipv6"]
                .into_iter()
                .map(|afi| {
                    map([
                        ("afi", str(afi)),
                        ("safi", str("unicast")),
                        (
                            "advertisements",
                            map([(
                                "matchLabels",
                                map([(ADVERTISE_LABEL.0, str(ADVERTISE_LABEL.1))]),
                            )]),
                        ),
                    ])
                })
                .collect();
            spec.push(("families", Value::List(families)));
            documents.push(Document {
                comments,
                value: map([
                    ("apiVersion", api_version()),
                    ("kind", str("CiliumBGPPeerConfig")),
                    ("metadata", metadata(&i.peer_config, None)),
                    ("spec", map(spec)),
                ]),
            });
        }

        documents.push(Document {
            comments: vec![
                "Pod CIDRs, and the LoadBalancer IPs of every Service (the NotIn expression \
                 matches all; narrow it to advertise fewer)."
                    .to_string(),
            ],
            value: map([
                ("apiVersion", api_version()),
                ("kind", str("CiliumBGPAdvertisement")),
                ("metadata", metadata(OBJECT_NAME, Some(ADVERTISE_LABEL))),
                (
                    "spec",
                    map([(
                        "advertisements",
                        Value::List(vec![
                            map([("advertisementType", str("PodCIDR"))]),
                            map([
                                ("advertisementType", str("Service")),
                                (
                                    "service",
                                    map([("addresses", Value::List(vec![str("LoadBalancerIP")]))]),
                                ),
                                (
                                    "selector",
                                    map([(
                                        "matchExpressions",
                                        Value::List(vec![map([
                                            ("key", str("somekey")),
                                            ("operator", str("NotIn")),
                                            ("values", Value::List(vec![str("never-used-value")])),
                                        ])]),
                                    )]),
                                ),
                            ]),
                        ]),
                    )]),
                ),
            ]),
        });
        documents
    }

    /// The whole YAML stream, with a header saying what it is for.
    pub fn render(&self) -> String {
        let mut header = String::new();
        let _ = write!(
            header,
            "Cilium BGP control plane ({}: {}) for the nodes that peer with this host \
             (cilium-peer, router id {}, AS {}). Generated by `cilium-peer cilium-manifests` \
             from its config: change the config and generate again.",
            self.api.api_version(),
            self.api.releases(),
            self.router_id,
            self.asn
        );
        let mut lines = wrap(&header, 90);
        for note in &self.notes {
            lines.extend(wrap(note, 90));
        }
        let documents: Vec<Document> = self
            .documents()
            .into_iter()
            .map(|d| Document {
                comments: d.comments.iter().flat_map(|c| wrap(c, 90)).collect(),
                value: d.value,
            })
            .collect();
        yaml::render(&lines, &documents)
    }
}

/// Breaks a comment into lines of at most `width` characters at spaces (a command line,
/// which starts with spaces, is kept whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    if text.starts_with(' ') {
        return vec![text.to_string()];
    }
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    /// README's example config, with `extra` keys in the neighbor group.
    fn config_with(listen: &str, group: &str) -> Config {
        Config::parse(&format!(
            r#"{{
              "router_id": "192.0.2.1", "asn": 65100, "listen": [{listen}],
              "bridges": {{ "vmbr-dev": {{ "prefixes": ["192.0.2.0/24", "2001:db8:1::/64"] }},
                            "vmbr-lab": {{ "prefixes": ["198.51.100.0/24"] }} }},
              "neighbors": [ {group} ]
            }}"#
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    const CILIUM: &str = r#"{ "name": "cilium", "range": "2001:db8:1::/64", "asn": 65100 }"#;

    fn kernel(config: &Config, pairs: &[(&str, &str)]) -> HostAddresses {
        HostAddresses::from_interfaces(
            config,
            pairs
                .iter()
                .map(|(i, a)| (i.to_string(), a.parse().unwrap())),
        )
    }

    fn plan_v2(config: &Config, addresses: &HostAddresses) -> Result<Manifests, Vec<String>> {
        plan(
            config,
            &Request {
                api: Api::V2,
                bridge: None,
                addresses,
            },
        )
        .map_err(|e| e.iter().map(ToString::to_string).collect())
    }

    const DUAL_STACK: &[(&str, &str)] = &[
        ("vmbr-dev", "fe80::1"),
        ("vmbr-dev", "192.0.2.1"),
        ("vmbr-dev", "2001:db8:1::1"),
        ("eth0", "2001:db8:ffff::1"),
    ];

    #[test]
    fn the_nodes_of_an_ipv6_range_peer_with_the_hosts_global_ipv6_address_on_their_bridge() {
        let config = config_with(r#""[::]:179""#, CILIUM);
        let m = plan_v2(&config, &kernel(&config, DUAL_STACK)).unwrap();
        assert_eq!(m.instances.len(), 1);
        let i = &m.instances[0];
        assert_eq!(i.peer_address, "2001:db8:1::1".parse::<IpAddr>().unwrap());
        assert_eq!((i.local_asn, i.peer_asn, i.peer_port), (65100, 65100, 179));
        assert_eq!(i.bridge, "vmbr-dev");
        assert_eq!(i.peer_config, "cilium-peer-cilium");
        assert_eq!((i.hold_time, i.keepalive()), (90, 30));
        assert!(i.graceful_restart);
    }

    #[test]
    fn an_address_inside_the_range_is_preferred_to_a_lower_one_outside_it() {
        let config = Config::parse(
            r#"{ "router_id": "192.0.2.1", "asn": 65100,
                 "bridges": { "vmbr-dev": { "prefixes": ["2001:db8::/48"] } },
                 "neighbors": [ { "name": "c", "range": "2001:db8:0:5::/64", "asn": 65100 } ] }"#,
        )
        .unwrap();
        let addresses = kernel(
            &config,
            &[("vmbr-dev", "2001:db8::1"), ("vmbr-dev", "2001:db8:0:5::1")],
        );
        let m = plan_v2(&config, &addresses).unwrap();
        assert_eq!(
            m.instances[0].peer_address,
            "2001:db8:0:5::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn an_ipv4_group_beside_an_ipv6_group_on_the_same_bridge_is_left_out_with_a_note() {
        let config = config_with(
            r#""[::]:179""#,
            &format!(r#"{{ "name": "legacy", "range": "192.0.2.0/24", "asn": 65100 }}, {CILIUM}"#),
        );
        let m = plan_v2(&config, &kernel(&config, DUAL_STACK)).unwrap();
        let groups: Vec<&str> = m.instances.iter().map(|i| i.group.as_str()).collect();
        assert_eq!(groups, ["cilium"]);
        assert_eq!(m.notes.len(), 1);
        assert!(
            m.notes[0].starts_with("neighbors[0] (\"legacy\", 192.0.2.0/24) is left out"),
            "{}",
            m.notes[0]
        );
        assert!(m.render().contains("# neighbors[0] (\"legacy\""));
    }

    #[test]
    fn an_ipv4_group_alone_on_its_bridge_peers_over_ipv4() {
        let config = config_with(
            r#""[::]:179""#,
            r#"{ "name": "lab", "range": "198.51.100.0/24", "asn": 65200 }"#,
        );
        let m = plan_v2(&config, &kernel(&config, &[("vmbr-lab", "198.51.100.1")])).unwrap();
        assert_eq!(
            m.instances[0].peer_address,
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            (m.instances[0].local_asn, m.instances[0].peer_asn),
            (65200, 65100)
        );
    }

    #[test]
    fn a_bridge_without_an_address_of_the_ranges_family_is_refused_naming_what_was_found() {
        let config = config_with(r#""[::]:179""#, CILIUM);
        let only_v4_and_link_local = kernel(
            &config,
            &[("vmbr-dev", "192.0.2.1"), ("vmbr-dev", "fe80::1")],
        );
        assert_eq!(
            plan_v2(&config, &only_v4_and_link_local).unwrap_err(),
            [
                "bridges.vmbr-dev: the host has no IPv6 address in 2001:db8:1::/64 on vmbr-dev \
                 for the nodes of neighbors[0] (\"cilium\", 2001:db8:1::/64) to peer with \
                 (addresses read from the kernel: 192.0.2.1, fe80::1)"
            ]
        );
        let nothing = kernel(&config, &[]);
        let error = &plan_v2(&config, &nothing).unwrap_err()[0];
        assert!(
            error.ends_with(
                "(the kernel shows no address on vmbr-dev: on another machine than the host, \
                 give them with --address)"
            ),
            "{error}"
        );
    }

    #[test]
    fn a_range_on_no_bridge_is_refused_with_its_json_path() {
        let config = config_with(
            r#""[::]:179""#,
            &format!(r#"{CILIUM}, {{ "name": "far", "range": "2001:db8:9::/64", "asn": 65100 }}"#),
        );
        assert_eq!(
            plan_v2(&config, &kernel(&config, DUAL_STACK)).unwrap_err(),
            [
                "neighbors[1].range: \"2001:db8:9::/64\" is on no configured bridge (no \
                 bridges.*.prefixes overlaps it), so no host address for its nodes to peer with \
                 is known"
            ]
        );
    }

    #[test]
    fn a_listen_address_the_nodes_cannot_reach_is_refused() {
        for listen in [
            r#""0.0.0.0:179""#,
            r#""[fe80::1%vmbr-dev]:179""#,
            r#""[::1]:179""#,
            r#""[2001:db8:1::2]:179""#,
        ] {
            let config = config_with(listen, CILIUM);
            let errors = plan_v2(&config, &kernel(&config, DUAL_STACK)).unwrap_err();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].starts_with(&format!(
                    "listen: none of [{listen}] accepts connections to 2001:db8:1::1, the host's \
                     address on vmbr-dev"
                )),
                "{}",
                errors[0]
            );
        }
    }

    #[test]
    fn the_port_of_the_listen_entry_that_reaches_the_host_becomes_the_peer_port() {
        let config = config_with(r#""0.0.0.0:179", "[2001:db8:1::1]:1179""#, CILIUM);
        let m = plan_v2(&config, &kernel(&config, DUAL_STACK)).unwrap();
        assert_eq!(m.instances[0].peer_port, 1179);
        assert!(m.render().contains("    peerPort: 1179\n"));
    }

    #[test]
    fn timers_follow_hold_time_and_a_password_file_names_a_secret_without_the_key() {
        let config = config_with(
            r#""[::]:179""#,
            r#"{ "name": "Cilium_Nodes", "range": "2001:db8:1::/64", "asn": 65100,
                 "hold_time": 9, "graceful_restart": false,
                 "password_file": "/run/secrets/md5" }"#,
        );
        let m = plan_v2(&config, &kernel(&config, DUAL_STACK)).unwrap();
        let yaml = m.render();
        for expected in [
            "  name: cilium-peer-cilium-nodes\n",
            "    holdTimeSeconds: 9\n    keepAliveTimeSeconds: 3\n",
            "    connectRetryTimeSeconds: 5\n",
            "  gracefulRestart:\n    enabled: false\n",
            "  authSecretRef: cilium-peer-cilium-nodes\n",
            "printf %s \"$(cat /run/secrets/md5)\" | kubectl -n kube-system create secret \
             generic cilium-peer-cilium-nodes --from-file=password=/dev/stdin\n",
            "    - name: Cilium_Nodes\n",
        ] {
            assert!(yaml.contains(expected), "{expected:?} not in\n{yaml}");
        }
    }

    #[test]
    fn a_hold_time_of_zero_gets_ciliums_default_timers_and_says_why() {
        let config = config_with(
            r#""[::]:179""#,
            r#"{ "name": "c", "range": "2001:db8:1::/64", "asn": 65100, "hold_time": 0,
                 "import": [ { "prefix": "10.244.0.0/16", "max_length": 24 } ] }"#,
        );
        let yaml = plan_v2(&config, &kernel(&config, DUAL_STACK))
            .unwrap()
            .render();
        for expected in [
            "    holdTimeSeconds: 90\n    keepAliveTimeSeconds: 30\n",
            "# neighbors[0].hold_time is 0: the session runs without a hold timer whatever",
            "# The host accepts from these nodes only 10.244.0.0/16 up to /24 \
             (neighbors[0].import).\n",
        ] {
            assert!(yaml.contains(expected), "{expected:?} not in\n{yaml}");
        }
    }

    #[test]
    fn more_groups_than_a_cluster_config_holds_are_refused() {
        let groups: Vec<String> = (0..17)
            .map(|i| {
                format!(r#"{{ "name": "g{i}", "range": "2001:db8:1:{i:x}::/64", "asn": 65100 }}"#)
            })
            .collect();
        let config = Config::parse(&format!(
            r#"{{ "router_id": "192.0.2.1", "asn": 65100,
                 "bridges": {{ "vmbr-dev": {{ "prefixes": ["2001:db8:1::/48"] }} }},
                 "neighbors": [ {} ] }}"#,
            groups.join(", ")
        ))
        .unwrap();
        let addresses = kernel(&config, &[("vmbr-dev", "2001:db8:1::1")]);
        assert_eq!(
            plan_v2(&config, &addresses).unwrap_err(),
            [
                "neighbors: 17 BGP instances (one per neighbor group) are more than a \
                 CiliumBGPClusterConfig holds (16)"
            ]
        );
    }

    #[test]
    fn gtsm_is_refused_for_ibgp_and_becomes_ebgp_multihop_255_for_ebgp() {
        let group = |asn: u32| {
            format!(
                r#"{{ "name": "c", "range": "2001:db8:1::/64", "asn": {asn}, "ttl_security": true }}"#
            )
        };
        let ibgp = config_with(r#""[::]:179""#, &group(65100));
        let errors = plan_v2(&ibgp, &kernel(&ibgp, DUAL_STACK)).unwrap_err();
        assert!(
            errors[0].starts_with("neighbors[0].ttl_security: true cannot work with Cilium"),
            "{errors:?}"
        );
        let ebgp = config_with(r#""[::]:179""#, &group(65001));
        let m = plan_v2(&ebgp, &kernel(&ebgp, DUAL_STACK)).unwrap();
        assert_eq!(m.instances[0].ebgp_multihop, Some(255));
        assert!(m.render().contains("  ebgpMultihop: 255\n"));
    }

    #[test]
    fn given_addresses_go_to_the_bridge_whose_prefixes_hold_them_and_others_are_refused() {
        let config = config_with(r#""[::]:179""#, CILIUM);
        let given = HostAddresses::given(
            &config,
            &[
                "192.0.2.1".parse().unwrap(),
                "2001:db8:1::1".parse().unwrap(),
            ],
        )
        .unwrap();
        assert_eq!(
            given.by_bridge["vmbr-dev"],
            [
                "192.0.2.1".parse::<IpAddr>().unwrap(),
                "2001:db8:1::1".parse().unwrap()
            ]
        );
        assert!(given.by_bridge["vmbr-lab"].is_empty());
        let errors = HostAddresses::given(&config, &["203.0.113.1".parse().unwrap()]).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "--address: 203.0.113.1 is in none of the bridges' prefixes (bridges.*.prefixes)"
        );
    }

    #[test]
    fn bridge_selects_the_groups_on_it_and_an_unknown_one_is_refused() {
        let config = config_with(
            r#""[::]:179""#,
            &format!(r#"{CILIUM}, {{ "name": "lab", "range": "198.51.100.0/24", "asn": 65200 }}"#),
        );
        let addresses = kernel(
            &config,
            &[("vmbr-dev", "2001:db8:1::1"), ("vmbr-lab", "198.51.100.1")],
        );
        let request = |bridge| Request {
            api: Api::V2alpha1,
            bridge,
            addresses: &addresses,
        };
        let all = plan(&config, &request(None)).unwrap();
        assert_eq!(all.instances.len(), 2);
        let lab = plan(&config, &request(Some("vmbr-lab"))).unwrap();
        let groups: Vec<&str> = lab.instances.iter().map(|i| i.group.as_str()).collect();
        assert_eq!(groups, ["lab"]);
        assert!(lab.render().contains("apiVersion: cilium.io/v2alpha1\n"));
        let errors = plan(&config, &request(Some("vmbr-nope"))).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "--bridge: \"vmbr-nope\" is not a configured bridge (bridges: vmbr-dev, vmbr-lab)"
        );
    }
}
