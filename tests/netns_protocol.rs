//! The protocol number on our kernel routes: routes a previous version left under the old
//! default 196 (FRR's number for its static routes) are adopted at start and moved to the
//! new default in place, and a reload changing `kernel.protocol` moves them too; the table
//! is sampled all along and never misses a route, and nobody else's routes are touched.
//! Real GoBGP "Cilium nodes" in network namespaces, as in netns_ops.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use common::*;

const OLD_DEFAULT: u32 = 196;

/// A host config, multipath and persist on, with `kernel` merged into the `kernel` object.
fn config(lab: &Lab, kernel: Value) -> String {
    merged(
        base_config(lab),
        json!({
            "kernel": merged(json!({ "multipath": true, "persist": true }), kernel),
            "neighbors": [group("cilium", "2001:db8:1::/64", json!({}))],
        }),
    )
    .to_string()
}

/// One route as the kernel lists it: protocol number, sorted gateways (or the route type
/// when it has none).
type Entry = (u32, Vec<String>);
/// Every route of one table, whatever its protocol: prefix -> its entries, sorted.
type Table = BTreeMap<String, Vec<Entry>>;

fn table_of(host: &str, table: u32) -> Option<Table> {
    let mut routes = Table::new();
    for family in ["-4", "-6"] {
        let out = Command::new("ip")
            .args(["-n", host, "-N", "-j", family, "route", "show", "table"])
            .arg(table.to_string())
            .output()
            .ok()?;
        // A table that does not exist (yet, or any more) is empty.
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]));
        for route in list.as_array()? {
            let protocol = route["protocol"].as_str()?.parse().ok()?;
            let mut gateways: Vec<String> = match route["nexthops"].as_array() {
                Some(hops) => hops.iter().map(gateway).collect(),
                None => vec![gateway(route)],
            };
            if gateways == [""] {
                gateways = vec![route["type"].as_str().unwrap_or("unicast").to_string()];
            }
            gateways.sort();
            let entries = routes
                .entry(full_prefix(route["dst"].as_str()?))
                .or_default();
            entries.push((protocol, gateways));
            entries.sort();
        }
    }
    Some(routes)
}

/// The routes of `table` under `protocol` only: prefix -> gateways.
fn under(table: &Table, protocol: u32) -> BTreeMap<String, Vec<String>> {
    table
        .iter()
        .flat_map(|(prefix, entries)| {
            entries
                .iter()
                .filter(move |(p, _)| *p == protocol)
                .map(move |(_, gateways)| (prefix.clone(), gateways.clone()))
        })
        .collect()
}

/// Samples our table as fast as `ip` answers, in the background; `stop` returns every
/// sample.
fn sample_table(lab: &Lab) -> Sampler<Table> {
    let host = lab.host.clone();
    Sampler::start(Duration::from_millis(5), move || table_of(&host, TABLE))
}

/// Panics unless every sample holds each prefix of `always` with these gateways, under
/// one of `protocols`.
fn assert_never_missing(
    samples: &[Table],
    always: &BTreeMap<String, Vec<String>>,
    protocols: &[u32],
) {
    assert!(samples.len() > 20, "too few samples: {}", samples.len());
    for (i, sample) in samples.iter().enumerate() {
        for (prefix, gateways) in always {
            let found = sample.get(prefix).is_some_and(|entries| {
                entries
                    .iter()
                    .any(|(p, g)| protocols.contains(p) && g == gateways)
            });
            assert!(
                found,
                "{prefix} via {gateways:?} missing in sample {i} of {}: {sample:?}",
                samples.len()
            );
        }
    }
}

fn ip(lab: &Lab, args: &[&str]) {
    let mut full = vec!["ip"];
    full.extend_from_slice(args);
    lab.exec(&lab.host, &full);
}

/// Nexthop objects in the host namespace: id -> protocol number.
fn nexthop_objects(lab: &Lab) -> BTreeMap<u64, u32> {
    let out = lab.exec(&lab.host, &["ip", "-N", "-j", "nexthop", "show"]);
    let list: Value = serde_json::from_str(&out).unwrap_or(Value::Array(vec![]));
    list.as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let protocol = o["protocol"].as_str().and_then(|p| p.parse().ok());
            (o["id"].as_u64().unwrap(), protocol.unwrap_or(0))
        })
        .collect()
}

/// Two Cilium nodes announcing pod CIDRs (one per family from node 1) and a LoadBalancer
/// IP from both; returns their namespaces.
fn two_nodes_announcing(lab: &mut Lab) -> (String, String) {
    let a = lab.cilium_node(1, true);
    let b = lab.cilium_node(2, true);
    for prefix in ["10.244.1.0/24", "fd00:ff00:1::/64", "198.51.100.7/32"] {
        lab.announce(&a, prefix);
    }
    for prefix in ["10.244.2.0/24", "198.51.100.7/32"] {
        lab.announce(&b, prefix);
    }
    (a, b)
}

/// What `two_nodes_announcing` puts in the table once settled.
fn learned() -> BTreeMap<String, Vec<String>> {
    [
        ("10.244.1.0/24", vec!["2001:db8:1::11"]),
        ("fd00:ff00:1::/64", vec!["2001:db8:1::11"]),
        ("10.244.2.0/24", vec!["2001:db8:1::12"]),
        ("198.51.100.7/32", vec!["2001:db8:1::11", "2001:db8:1::12"]),
    ]
    .into_iter()
    .map(|(p, g)| (p.to_string(), g.into_iter().map(String::from).collect()))
    .collect()
}

fn wait_settled(lab: &Lab, protocol: u32, expected: &BTreeMap<String, Vec<String>>) {
    wait_for(
        &format!(
            "the table under protocol {protocol} to be {expected:?}\n{}",
            lab.log("cilium-peer")
        ),
        Duration::from_secs(60),
        || (&under(&table_of(&lab.host, TABLE)?, protocol) == expected).then_some(()),
    );
}

#[test]
fn routes_a_previous_version_left_under_protocol_196_are_adopted_and_moved_to_the_new_default_without_a_gap_and_nobody_elses_routes_move()
 {
    let Some(mut lab) = lab_or_skip("protocol upgrade", &["gobgpd", "gobgp"]) else {
        return;
    };
    // The previous version: the old default number.
    lab.start_cilium_peer(&config(&lab, json!({ "protocol": OLD_DEFAULT })));
    let (a, _b) = two_nodes_announcing(&mut lab);
    // Withdrawn while cilium-peer is away: the new run must remove it at End-of-RIB.
    lab.announce(&a, "10.244.9.0/24");
    let mut before = learned();
    before.insert("10.244.9.0/24".into(), vec!["2001:db8:1::11".into()]);
    wait_settled(&lab, OLD_DEFAULT, &before);
    let old_objects: Vec<u64> = nexthop_objects(&lab)
        .into_iter()
        .filter(|(_, p)| *p == OLD_DEFAULT)
        .map(|(id, _)| id)
        .collect();
    assert!(!old_objects.is_empty(), "the old run used nexthop objects");

    lab.stop("cilium-peer", "TERM");
    lab.withdraw(&a, "10.244.9.0/24");
    // Routes that are not ours, added while no cilium-peer runs (the previous version took
    // every 196 route in its table for its own): FRR's static routes share 196 (a
    // blackhole, a route via its own nexthop object), another protocol in our table, 196
    // in another table.
    let table = TABLE.to_string();
    let other_table = (TABLE + 1).to_string();
    ip(
        &lab,
        &[
            "route",
            "add",
            "blackhole",
            "10.97.0.0/16",
            "proto",
            "196",
            "table",
            &table,
        ],
    );
    ip(
        &lab,
        &[
            "nexthop",
            "add",
            "id",
            "77",
            "via",
            "192.0.2.50",
            "dev",
            BRIDGE,
            "proto",
            "196",
        ],
    );
    ip(
        &lab,
        &[
            "route",
            "add",
            "10.96.0.0/16",
            "nhid",
            "77",
            "proto",
            "196",
            "table",
            &table,
        ],
    );
    ip(
        &lab,
        &[
            "route",
            "add",
            "10.98.0.0/16",
            "via",
            "192.0.2.50",
            "proto",
            "static",
            "table",
            &table,
        ],
    );
    ip(
        &lab,
        &[
            "route",
            "add",
            "10.99.0.0/16",
            "via",
            "192.0.2.50",
            "proto",
            "196",
            "table",
            &other_table,
        ],
    );
    let foreign = |lab: &Lab| {
        let mut ours = table_of(&lab.host, TABLE).unwrap();
        ours.retain(|prefix, _| prefix.starts_with("10.9"));
        (ours, table_of(&lab.host, TABLE + 1).unwrap())
    };
    let foreign_before = foreign(&lab);
    assert_eq!(foreign_before.0.len(), 3, "{foreign_before:?}");

    assert_eq!(
        under(&table_of(&lab.host, TABLE).unwrap(), OLD_DEFAULT).len(),
        7
    );

    // The new version, with the new default number.
    let sampler = sample_table(&lab);
    sampler.wait_more(12);
    lab.start_cilium_peer(&config(&lab, json!({})));
    // Moved at once, before any node is back: adopted, under the new number.
    let now = table_of(&lab.host, TABLE).unwrap();
    assert_eq!(under(&now, PROTO), before, "{now:?}");
    let adopted = lab.show("routes");
    assert_eq!(adopted.as_array().unwrap().len(), before.len(), "{adopted}");
    assert!(
        adopted
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["adopted"] == true),
        "{adopted}"
    );
    // The nodes come back; what no node announces any more goes at their End-of-RIB.
    wait_settled(&lab, PROTO, &learned());
    lab.wait_none_adopted(Duration::from_secs(60));
    sampler.wait_more(12);
    let samples = sampler.stop();

    assert_never_missing(&samples, &learned(), &[OLD_DEFAULT, PROTO]);
    let end = table_of(&lab.host, TABLE).unwrap();
    assert_eq!(under(&end, PROTO), learned(), "{end:?}");
    // Of 196 only FRR's two remain; nothing else of anyone else changed.
    assert_eq!(
        under(&end, OLD_DEFAULT).into_keys().collect::<Vec<_>>(),
        ["10.96.0.0/16", "10.97.0.0/16"],
        "{end:?}"
    );
    assert_eq!(foreign(&lab), foreign_before);
    // The old run's objects are gone; the foreign one stays.
    let objects = nexthop_objects(&lab);
    for id in old_objects {
        assert!(!objects.contains_key(&id), "old object {id}: {objects:?}");
    }
    assert_eq!(objects.get(&77), Some(&OLD_DEFAULT), "{objects:?}");
    assert!(
        objects.iter().all(|(id, p)| *id == 77 || *p == PROTO),
        "{objects:?}"
    );
    let log = lab.log("cilium-peer");
    assert!(log.contains("now under ours"), "{log}");

    // With the line the docs give for /etc/iproute2/rt_protos.d, `ip route` names us. (In
    // a mount namespace of its own: the machine's /etc stays as it is.)
    let etc = lab.dir.join("iproute2");
    std::fs::create_dir_all(etc.join("rt_protos.d")).unwrap();
    std::fs::copy("/etc/iproute2/rt_protos", etc.join("rt_protos")).unwrap();
    std::fs::write(
        etc.join("rt_protos.d/cilium-peer.conf"),
        format!("{PROTO} cilium-peer\n"),
    )
    .unwrap();
    let shown = sh(&[
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &format!(
            "mount --bind {} /etc/iproute2 && ip -n {} route show table {TABLE}",
            etc.display(),
            lab.host
        ),
    ]);
    assert!(
        shown.contains("10.244.1.0/24") && shown.contains(" proto cilium-peer"),
        "{shown}"
    );
    assert!(!shown.contains(&format!("proto {PROTO}")), "{shown}");
}

#[test]
fn a_reload_changing_kernel_protocol_moves_our_routes_to_the_new_number_in_place() {
    let Some(mut lab) = lab_or_skip("protocol reload", &["gobgpd", "gobgp"]) else {
        return;
    };
    let new = PROTO + 1;
    lab.start_cilium_peer(&config(&lab, json!({})));
    let (a, b) = two_nodes_announcing(&mut lab);
    wait_settled(&lab, PROTO, &learned());
    let sessions = lab.show("peers");

    let sampler = sample_table(&lab);
    sampler.wait_more(12);
    lab.reload_cilium_peer(&config(&lab, json!({ "protocol": new })));
    wait_settled(&lab, new, &learned());
    sampler.wait_more(12);
    let samples = sampler.stop();

    assert_never_missing(&samples, &learned(), &[PROTO, new]);
    let end = table_of(&lab.host, TABLE).unwrap();
    assert!(under(&end, PROTO).is_empty(), "{end:?}");
    let objects = nexthop_objects(&lab);
    assert!(objects.values().all(|p| *p == new), "{objects:?}");
    // The sessions stayed.
    let peers = lab.show("peers");
    for peer in sessions.as_array().unwrap() {
        let now = peers
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == peer["name"])
            .unwrap_or_else(|| panic!("{peer} gone: {peers}"));
        assert_eq!(now["state"], "Established", "{peers}");
        assert!(
            now["uptime_s"].as_u64() >= peer["uptime_s"].as_u64(),
            "{peers}"
        );
    }
    for ns in [&a, &b] {
        assert!(lab.gobgp(ns, &["neighbor"]).contains("Establ"));
    }
    // New routes go in under the new number.
    lab.announce(&a, "10.244.3.0/24");
    let mut more = learned();
    more.insert("10.244.3.0/24".into(), vec!["2001:db8:1::11".into()]);
    wait_settled(&lab, new, &more);
}
