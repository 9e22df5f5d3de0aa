//! `cilium-peer cilium-manifests` as a user runs it: the YAML parses, every field it writes
//! exists in Cilium's CRD schemas with the right type, for both API versions; the MD5 key is
//! never printed; what cannot work is refused with its JSON path; docs/cilium.md shows
//! exactly what the command prints for README's example config; and, in network
//! namespaces, GoBGP configured from the generated peer config's values reaches Established
//! with cilium-peer and installs IPv4 and IPv6 routes over one IPv6 session.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use common::*;

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cilium-peer-manifests-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `cilium-peer cilium-manifests --config CONFIG ARGS`.
fn run(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cilium-peer"))
        .args(["cilium-manifests", "--config"])
        .arg(config)
        .args(args)
        .output()
        .expect("cilium-peer runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "cilium-manifests failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("UTF-8 YAML")
}

/// Every document of a YAML stream, as JSON values (what the API server would receive).
fn parse(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|document| Value::deserialize(document).expect("valid YAML"))
        .collect()
}

fn kind<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

// ---- Cilium's CRD schemas: only the facts these tests need -----------------------------
//
// From cilium/cilium pkg/k8s/apis/cilium.io/client/crds/v2/ciliumbgp{clusterconfigs,
// peerconfigs,advertisements}.yaml, whose `versions` hold both `v2` and `v2alpha1`: the
// fields below have the same names, types and bounds in both (v2alpha1 adds
// `transport.localPort` and `peerConfigRef.group/kind`, v2 adds `peerInterface`,
// `autoDiscovery`, `transport.sourceInterface` and the `Interface` advertisement type; the
// manifests use none of those).

#[derive(Clone, Copy, Debug)]
enum Type {
    Object,
    /// An object of string values (`matchLabels`: `additionalProperties: {type: string}`).
    Labels,
    List,
    Str,
    /// An IP address (the CRD's `peerAddress` pattern).
    Ip,
    Int(i64, i64),
    Bool,
    Enum(&'static [&'static str]),
}

use Type::*;

const U32: Type = Int(1, 4_294_967_295);
const SELECTOR: &[(&str, Type)] = &[
    ("matchLabels", Labels),
    ("matchExpressions", List),
    ("matchExpressions[]", Object),
    ("matchExpressions[].key", Str),
    (
        "matchExpressions[].operator",
        Enum(&["In", "NotIn", "Exists", "DoesNotExist"]),
    ),
    ("matchExpressions[].values", List),
    ("matchExpressions[].values[]", Str),
];

fn schema(kind: &str) -> Vec<(String, Type)> {
    let own: &[(&str, Type)] = match kind {
        "CiliumBGPClusterConfig" => &[
            ("spec", Object),
            ("spec.nodeSelector", Object),
            ("spec.bgpInstances", List),
            ("spec.bgpInstances[]", Object),
            ("spec.bgpInstances[].name", Str),
            ("spec.bgpInstances[].localASN", U32),
            ("spec.bgpInstances[].localPort", Int(1, 65535)),
            ("spec.bgpInstances[].peers", List),
            ("spec.bgpInstances[].peers[]", Object),
            ("spec.bgpInstances[].peers[].name", Str),
            ("spec.bgpInstances[].peers[].peerAddress", Ip),
            ("spec.bgpInstances[].peers[].peerASN", Int(0, 4_294_967_295)),
            ("spec.bgpInstances[].peers[].peerConfigRef", Object),
            ("spec.bgpInstances[].peers[].peerConfigRef.name", Str),
        ],
        "CiliumBGPPeerConfig" => &[
            ("spec", Object),
            ("spec.authSecretRef", Str),
            ("spec.ebgpMultihop", Int(1, 255)),
            ("spec.transport", Object),
            ("spec.transport.peerPort", Int(1, 65535)),
            ("spec.timers", Object),
            ("spec.timers.connectRetryTimeSeconds", Int(1, 2_147_483_647)),
            ("spec.timers.holdTimeSeconds", Int(3, 65535)),
            ("spec.timers.keepAliveTimeSeconds", Int(1, 65535)),
            ("spec.gracefulRestart", Object),
            ("spec.gracefulRestart.enabled", Bool),
            ("spec.gracefulRestart.restartTimeSeconds", Int(1, 4095)),
            ("spec.families", List),
            ("spec.families[]", Object),
            (
                "spec.families[].afi",
                Enum(&["ipv4", "ipv6", "l2vpn", "ls", "opaque"]),
            ),
            (
                "spec.families[].safi",
                Enum(&["unicast", "multicast", "mpls_label"]),
            ),
            ("spec.families[].advertisements", Object),
        ],
        "CiliumBGPAdvertisement" => &[
            ("spec", Object),
            ("spec.advertisements", List),
            ("spec.advertisements[]", Object),
            (
                "spec.advertisements[].advertisementType",
                Enum(&["PodCIDR", "CiliumPodIPPool", "Service"]),
            ),
            ("spec.advertisements[].service", Object),
            ("spec.advertisements[].service.addresses", List),
            (
                "spec.advertisements[].service.addresses[]",
                Enum(&["LoadBalancerIP", "ClusterIP", "ExternalIP"]),
            ),
            ("spec.advertisements[].selector", Object),
        ],
        other => panic!("{other} is not a kind the manifests should hold"),
    };
    let selectors: &[&str] = match kind {
        "CiliumBGPClusterConfig" => &["spec.nodeSelector"],
        "CiliumBGPPeerConfig" => &["spec.families[].advertisements"],
        _ => &["spec.advertisements[].selector"],
    };
    let mut all: Vec<(String, Type)> = own.iter().map(|(p, t)| (p.to_string(), *t)).collect();
    for base in selectors {
        all.extend(SELECTOR.iter().map(|(p, t)| (format!("{base}.{p}"), *t)));
    }
    all
}

/// Fields the CRDs require, as (object's path, field).
fn required(kind: &str) -> &'static [(&'static str, &'static str)] {
    match kind {
        "CiliumBGPClusterConfig" => &[
            ("spec", "bgpInstances"),
            ("spec.bgpInstances[]", "name"),
            ("spec.bgpInstances[].peers[]", "name"),
            ("spec.bgpInstances[].peers[].peerConfigRef", "name"),
        ],
        "CiliumBGPPeerConfig" => &[
            ("spec.families[]", "afi"),
            ("spec.families[]", "safi"),
            ("spec.gracefulRestart", "enabled"),
        ],
        _ => &[
            ("spec", "advertisements"),
            ("spec.advertisements[]", "advertisementType"),
            ("spec.advertisements[].service", "addresses"),
            ("spec.advertisements[].selector.matchExpressions[]", "key"),
            (
                "spec.advertisements[].selector.matchExpressions[]",
                "operator",
            ),
        ],
    }
}

/// Every way `document` breaks the schema of its kind, as "path: why".
fn schema_violations(document: &Value) -> Vec<String> {
    let kind = document["kind"].as_str().expect("a kind");
    let schema = schema(kind);
    let mut found = Vec::new();
    let mut violations = Vec::new();
    walk(
        &document["spec"],
        "spec",
        &schema,
        &mut found,
        &mut violations,
    );
    for (object, field) in required(kind) {
        for (path, value) in &found {
            if path == object && value.get(field).is_none() {
                violations.push(format!("{path}: required field {field} missing"));
            }
        }
    }
    let timers = &document["spec"]["timers"];
    if let (Some(keepalive), Some(hold)) = (
        timers["keepAliveTimeSeconds"].as_u64(),
        timers["holdTimeSeconds"].as_u64(),
    ) && keepalive > hold
    {
        violations.push(
            "spec.timers: keepAliveTimeSeconds can not be larger than holdTimeSeconds".into(),
        );
    }
    for advertisement in document["spec"]["advertisements"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let kind = &advertisement["advertisementType"];
        if (kind == "Service") != advertisement.get("service").is_some() {
            violations.push(format!(
                "{advertisement}: service only and always with Service"
            ));
        }
        if kind == "PodCIDR" && advertisement.get("selector").is_some() {
            violations.push(format!("{advertisement}: no selector for PodCIDR"));
        }
    }
    violations
}

fn walk(
    value: &Value,
    path: &str,
    schema: &[(String, Type)],
    found: &mut Vec<(String, Value)>,
    violations: &mut Vec<String>,
) {
    found.push((path.to_string(), value.clone()));
    let Some((_, ty)) = schema.iter().find(|(p, _)| p == path) else {
        violations.push(format!("{path}: no such field in the CRD"));
        return;
    };
    let fits = match (ty, value) {
        (Object, Value::Object(fields)) => {
            for (name, child) in fields {
                walk(child, &format!("{path}.{name}"), schema, found, violations);
            }
            true
        }
        (Labels, Value::Object(labels)) => labels.values().all(|v| {
            v.as_str().is_some_and(|s| {
                s.len() <= 63
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            })
        }),
        (List, Value::Array(items)) => {
            for item in items {
                walk(item, &format!("{path}[]"), schema, found, violations);
            }
            true
        }
        (Str, Value::String(_)) => true,
        (Ip, Value::String(s)) => s.parse::<IpAddr>().is_ok(),
        (Int(min, max), Value::Number(n)) => n.as_i64().is_some_and(|n| (*min..=*max).contains(&n)),
        (Bool, Value::Bool(_)) => true,
        (Enum(values), Value::String(s)) => values.contains(&s.as_str()),
        _ => false,
    };
    if !fits {
        violations.push(format!("{path}: {value} is not {ty:?}"));
    }
}

// ---- the command --------------------------------------------------------------------------

/// Two bridges: an IPv6 iBGP group with an MD5 key, short hold time and a port of its own,
/// and an IPv4 eBGP group with GTSM on another bridge.
fn two_bridges(dir: &Path) -> PathBuf {
    let key = dir.join("md5.key");
    std::fs::write(&key, "not-in-the-yaml-7f3a\n").unwrap();
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{
  "router_id": "192.0.2.1", "asn": 65100, "listen": ["[::]:1179"],
  "bridges": {{ "vmbr-dev": {{ "prefixes": ["192.0.2.0/24", "2001:db8:1::/64"] }},
                "vmbr-lab": {{ "prefixes": ["198.51.100.0/24"] }} }},
  "neighbors": [
    {{ "name": "cilium", "range": "2001:db8:1::/64", "asn": 65100, "hold_time": 30,
       "password_file": "{}" }},
    {{ "name": "lab_nodes", "range": "198.51.100.0/24", "asn": 65200, "ttl_security": true }}
  ]
}}"#,
            key.display()
        ),
    )
    .unwrap();
    config
}

const ADDRESSES: &[&str] = &[
    "--address",
    "2001:db8:1::1",
    "--address",
    "192.0.2.1",
    "--address",
    "198.51.100.1",
];

#[test]
fn the_yaml_parses_and_every_field_matches_ciliums_crd_schemas_in_both_api_versions() {
    let dir = scratch("schema");
    let config = two_bridges(&dir);
    for (api, api_version) in [
        (None, "cilium.io/v2"),
        (Some("v2"), "cilium.io/v2"),
        (Some("v2alpha1"), "cilium.io/v2alpha1"),
    ] {
        let mut args = ADDRESSES.to_vec();
        if let Some(api) = api {
            args.extend(["--api", api]);
        }
        let documents = parse(&stdout(&run(&config, &args)));
        let kinds: Vec<&str> = documents
            .iter()
            .map(|d| d["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "CiliumBGPClusterConfig",
                "CiliumBGPPeerConfig",
                "CiliumBGPPeerConfig",
                "CiliumBGPAdvertisement"
            ]
        );
        for document in &documents {
            assert_eq!(document["apiVersion"], api_version);
            let name = document["metadata"]["name"].as_str().expect("a name");
            assert!(
                !name.is_empty()
                    && name.len() <= 253
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name} is not a Kubernetes object name"
            );
            let violations = schema_violations(document);
            assert!(
                violations.is_empty(),
                "{api_version}: {violations:#?}\n{document:#}"
            );
        }

        // The references hold: each peer's config exists, each family selects the
        // advertisement.
        let peer_configs: BTreeSet<&str> = kind(&documents, "CiliumBGPPeerConfig")
            .iter()
            .map(|d| d["metadata"]["name"].as_str().unwrap())
            .collect();
        let cluster = kind(&documents, "CiliumBGPClusterConfig")[0];
        let instances = cluster["spec"]["bgpInstances"].as_array().unwrap();
        let summary: Vec<(String, u64, String, u64)> = instances
            .iter()
            .map(|i| {
                let peer = &i["peers"][0];
                let reference = peer["peerConfigRef"]["name"].as_str().unwrap();
                assert!(peer_configs.contains(reference), "{reference} missing");
                (
                    i["name"].as_str().unwrap().to_string(),
                    i["localASN"].as_u64().unwrap(),
                    peer["peerAddress"].as_str().unwrap().to_string(),
                    peer["peerASN"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("cilium".into(), 65100, "2001:db8:1::1".into(), 65100),
                ("lab_nodes".into(), 65200, "198.51.100.1".into(), 65100),
            ]
        );
        let advertisement = kind(&documents, "CiliumBGPAdvertisement")[0];
        for peer_config in kind(&documents, "CiliumBGPPeerConfig") {
            let families = peer_config["spec"]["families"].as_array().unwrap();
            let afis: Vec<&str> = families
                .iter()
                .map(|f| f["afi"].as_str().unwrap())
                .collect();
            assert_eq!(afis, ["ipv4", "ipv6"]);
            for family in families {
                let wanted = family["advertisements"]["matchLabels"].as_object().unwrap();
                for (key, value) in wanted {
                    assert_eq!(&advertisement["metadata"]["labels"][key], value);
                }
            }
            assert_eq!(peer_config["spec"]["transport"]["peerPort"], 1179);
        }
        let types: Vec<&str> = advertisement["spec"]["advertisements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["advertisementType"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["PodCIDR", "Service"]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_schema_check_catches_a_misspelt_field_a_wrong_type_and_a_value_out_of_bounds() {
    // The check above must be able to fail.
    let bad = parse(
        "apiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata:\n  name: x\nspec:\n  \
         timers:\n    holdTimeSecond: 90\n    keepAliveTimeSeconds: \"30\"\n  gracefulRestart:\n    \
         restartTimeSeconds: 5000\n",
    );
    let mut violations = schema_violations(&bad[0]);
    violations.sort();
    assert_eq!(
        violations,
        [
            "spec.gracefulRestart.restartTimeSeconds: 5000 is not Int(1, 4095)",
            "spec.gracefulRestart: required field enabled missing",
            "spec.timers.holdTimeSecond: no such field in the CRD",
            "spec.timers.keepAliveTimeSeconds: \"30\" is not Int(1, 65535)",
        ]
    );
}

#[test]
fn the_md5_key_is_never_printed_only_the_secret_to_create_from_its_file() {
    let dir = scratch("md5");
    let config = two_bridges(&dir);
    let output = run(&config, ADDRESSES);
    let yaml = stdout(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!yaml.contains("not-in-the-yaml") && !stderr.contains("not-in-the-yaml"));
    let documents = parse(&yaml);
    let with_key = kind(&documents, "CiliumBGPPeerConfig")
        .into_iter()
        .find(|d| d["spec"].get("authSecretRef").is_some())
        .expect("the group with a password_file has an authSecretRef");
    let secret = with_key["spec"]["authSecretRef"].as_str().unwrap();
    let command = format!(
        "#   printf %s \"$(cat {})\" | kubectl -n kube-system create secret generic {secret} \
         --from-file=password=/dev/stdin\n",
        dir.join("md5.key").display()
    );
    assert!(yaml.contains(&command), "{command} not in\n{yaml}");
    // The group without a key has no reference to one.
    assert_eq!(
        kind(&documents, "CiliumBGPPeerConfig")
            .iter()
            .filter(|d| d["spec"].get("authSecretRef").is_some())
            .count(),
        1
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn what_cannot_work_is_refused_on_stderr_with_its_json_path_and_nothing_on_stdout() {
    let dir = scratch("refused");
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        r#"{ "router_id": "192.0.2.1", "asn": 65100, "listen": ["0.0.0.0:179"],
             "bridges": { "vmbr-dev": { "prefixes": ["192.0.2.0/24", "2001:db8:1::/64"] } },
             "neighbors": [ { "name": "cilium", "range": "2001:db8:1::/64", "asn": 65100 },
                            { "name": "far", "range": "2001:db8:9::/64", "asn": 65100 } ] }"#,
    )
    .unwrap();
    let output = run(&config, &["--address", "2001:db8:1::1"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "neighbors[1].range: \"2001:db8:9::/64\" is on no configured bridge",
        "listen: none of [\"0.0.0.0:179\"] accepts connections to 2001:db8:1::1",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in\n{stderr}");
    }
    let output = run(&config, &["--address", "203.0.113.9"]);
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("--address: 203.0.113.9 is in none of the bridges' prefixes"),
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The first fenced block of `language` after `marker` in `text`.
fn block_after<'a>(text: &'a str, marker: &str, language: &str) -> &'a str {
    let after = &text[text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} not found"))..];
    let fence = format!("```{language}\n");
    let start = after.find(&fence).expect("a fenced block") + fence.len();
    let end = after[start..].find("```").expect("a closed block");
    &after[start..start + end]
}

#[test]
fn docs_cilium_md_shows_what_the_command_prints_for_the_readmes_example_config() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let example = block_after(&readme, "A minimal config for a bridge", "json");
    let docs = std::fs::read_to_string("docs/cilium.md").unwrap();
    let command = block_after(&docs, "<!-- generated -->", "sh");
    let shown = block_after(&docs, "<!-- generated -->", "yaml");
    let args: Vec<&str> = command
        .trim()
        .strip_prefix("$ cilium-peer cilium-manifests --config config.json ")
        .expect("the docs show the command line")
        .split_whitespace()
        .collect();
    let dir = scratch("docs");
    let config = dir.join("config.json");
    std::fs::write(&config, example).unwrap();
    let printed = stdout(&run(&config, &args));
    assert_eq!(
        shown, printed,
        "docs/cilium.md's YAML differs from the command's"
    );
    assert!(
        readme.contains("(docs/cilium.md)"),
        "README links docs/cilium.md"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- in network namespaces: GoBGP as configured by the manifests --------------------------

/// GoBGP's config for a node, every session value taken from the manifests.
fn gobgp_toml(
    node: &(String, String),
    instance: &Value,
    peer: &Value,
    key: Option<&str>,
) -> String {
    let (router_id, local_address) = node;
    let spec = &peer["spec"];
    let timers = &spec["timers"];
    let gr = &spec["gracefulRestart"];
    let bgp_peer = &instance["peers"][0];
    let auth = key
        .map(|k| format!("    auth-password = \"{k}\"\n"))
        .unwrap_or_default();
    let family_gr = if gr["enabled"] == true {
        "    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n"
    } else {
        ""
    };
    let families: String = spec["families"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{}-{}\"\n{family_gr}",
                f["afi"].as_str().unwrap(),
                f["safi"].as_str().unwrap()
            )
        })
        .collect();
    format!(
        r#"[global.config]
  as = {local_asn}
  router-id = "{router_id}"
  port = -1
[global.apply-policy.config]
  import-policy-list = ["allow-local"]
  default-import-policy = "reject-route"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{peer_address}"
    peer-as = {peer_asn}
{auth}  [neighbors.transport.config]
    local-address = "{local_address}"
    remote-port = {port}
  [neighbors.timers.config]
    connect-retry = {retry}
    hold-time = {hold}
    keepalive-interval = {keepalive}
  [neighbors.graceful-restart.config]
    enabled = {gr_enabled}
    restart-time = {restart}
    notification-enabled = true
{families}[[policy-definitions]]
  name = "allow-local"
  [[policy-definitions.statements]]
    [policy-definitions.statements.conditions.bgp-conditions]
      route-type = "local"
    [policy-definitions.statements.actions]
      route-disposition = "accept-route"
"#,
        local_asn = instance["localASN"],
        peer_address = bgp_peer["peerAddress"].as_str().unwrap(),
        peer_asn = bgp_peer["peerASN"],
        port = spec["transport"]["peerPort"],
        retry = timers["connectRetryTimeSeconds"],
        hold = timers["holdTimeSeconds"],
        keepalive = timers["keepAliveTimeSeconds"],
        gr_enabled = gr["enabled"],
        restart = gr["restartTimeSeconds"],
    )
}

#[test]
fn gobgp_configured_from_the_generated_manifests_peers_over_ipv6_with_md5_and_installs_both_families()
 {
    let Some(mut lab) = lab_or_skip("cilium manifests", &["gobgpd", "gobgp"]) else {
        return;
    };
    let key_file = lab.write("md5.key", "manifest-key-91\n");
    let config = format!(
        r#"{{
  "router_id": "192.0.2.1",
  "asn": 65100,
  "listen": ["[::]:179"],
  "kernel": {{ "table": {TABLE}, "persist": false }},
  "bridges": {{ "{BRIDGE}": {{ "prefixes": ["192.0.2.0/24", "2001:db8:1::/64"] }} }},
  "neighbors": [ {{ "name": "cilium", "range": "2001:db8:1::/64", "asn": 65100, "hold_time": 30,
                   "password_file": "{}" }} ],
  "control_socket": "{}"
}}"#,
        key_file.display(),
        lab.socket().display()
    );
    let config_path = lab.write("config.json", &config);

    // On the host (its namespace), the command reads the bridge's addresses from the kernel.
    let host = lab.host.clone();
    let yaml = lab.exec(
        &host,
        &[
            env!("CARGO_BIN_EXE_cilium-peer"),
            "cilium-manifests",
            "--config",
            config_path.to_str().unwrap(),
        ],
    );
    let documents = parse(&yaml);
    let instance = &kind(&documents, "CiliumBGPClusterConfig")[0]["spec"]["bgpInstances"][0];
    let peer_config = kind(&documents, "CiliumBGPPeerConfig")[0];
    // The lab's bridge has 192.0.2.1, 2001:db8:1::1 and fe80::1: the global IPv6 one wins.
    assert_eq!(instance["peers"][0]["peerAddress"], "2001:db8:1::1");
    assert!(peer_config["spec"]["authSecretRef"].is_string());
    // The Secret made as the comment says: the file's contents without trailing newlines.
    let key = std::fs::read_to_string(&key_file).unwrap();
    let key = key.trim_end_matches('\n');

    lab.start_cilium_peer(&config);
    let node = (String::from("192.0.2.11"), String::from("2001:db8:1::11"));
    let ns = lab.node("1", &["192.0.2.11/24", "2001:db8:1::11/64"]);
    let toml = lab.write(
        &format!("{ns}.toml"),
        &gobgp_toml(&node, instance, peer_config, Some(key)),
    );
    lab.spawn(
        &ns,
        "gobgpd",
        &[
            "gobgpd",
            "-f",
            toml.to_str().unwrap(),
            "-r",
            "-p",
            "--api-hosts",
            "127.0.0.1:50061",
            "--pprof-disable",
        ],
    );
    wait_for("gobgpd's API", Duration::from_secs(10), || {
        lab.try_exec(&ns, &["gobgp", "-p", "50061", "global"])
            .status
            .success()
            .then_some(())
    });
    lab.wait_gobgp_established(&ns);
    lab.announce(&ns, "10.244.1.0/24");
    lab.announce(&ns, "fd00:ff00:1::/64");

    let v4 = lab.wait_route("10.244.1.0/24");
    assert_eq!(v4["via"]["family"], "inet6", "{v4}");
    assert_eq!(gateway(&v4), "2001:db8:1::11", "{v4}");
    let v6 = lab.wait_route("fd00:ff00:1::/64");
    assert_eq!(gateway(&v6), "2001:db8:1::11", "{v6}");

    // One session, over IPv6, with the manifests' hold time and graceful restart.
    let peers = lab.show("peers");
    let peers = peers.as_array().unwrap();
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0]["address"], "2001:db8:1::11");
    assert_eq!(peers[0]["state"], "Established");
    assert_eq!(peers[0]["installed"], 2);
    assert_eq!(
        peers[0]["hold_time"],
        peer_config["spec"]["timers"]["holdTimeSeconds"]
    );
    assert_eq!(
        peers[0]["graceful_restart"],
        peer_config["spec"]["gracefulRestart"]["enabled"]
    );
}
