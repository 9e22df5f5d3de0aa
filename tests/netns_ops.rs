//! Operating cilium-peer against real GoBGP "Cilium nodes" (graceful restart on, as Cilium
//! sets it) in network namespaces: SIGHUP reloads, a node's graceful restart, cilium-peer's
//! own restart with the table sampled every 50 ms, and `show ... --json` against GoBGP's
//! view and the kernel table.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use common::*;

const NODE_A: &str = "2001:db8:1::11";
const NODE_B: &str = "2001:db8:1::12";

/// A host config with these neighbor groups, multipath on, and `extra` merged in (such as
/// `{"kernel": {"persist": false}}`).
fn config_json(lab: &Lab, groups: &[Value], extra: Value) -> Value {
    let mut config = base_config(lab);
    config["kernel"]["multipath"] = json!(true);
    config["neighbors"] = json!(groups);
    merged(config, extra)
}

/// [`config_json`] as text.
fn config(lab: &Lab, groups: &[Value], extra: Value) -> String {
    config_json(lab, groups, extra).to_string()
}

/// The one group most tests use: `cilium` over the bridge's IPv6 prefix.
fn cilium() -> Value {
    group("cilium", "2001:db8:1::/64", json!({}))
}

/// GoBGP as Cilium runs it on node `n` (`192.0.2.1n`, `2001:db8:1::1n`), to adjust
/// before `Lab::start_gobgp`.
fn gobgp_node(n: u8) -> GoBgpNode {
    GoBgpNode::cilium(
        &format!("192.0.2.1{n}"),
        "2001:db8:1::1",
        &format!("2001:db8:1::1{n}"),
    )
}

/// GoBGP's own view of its session with the host.
fn gobgp_neighbor(lab: &Lab, ns: &str) -> Value {
    let text = lab.gobgp(ns, &["neighbor", "2001:db8:1::1", "-j"]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("gobgp neighbor -j: {e}: {text}"))
}

/// When GoBGP last saw the session come up (seconds since the epoch).
fn gobgp_uptime(lab: &Lab, ns: &str) -> u64 {
    gobgp_neighbor(lab, ns)["timers"]["state"]["uptime"]["seconds"]
        .as_u64()
        .expect("uptime in gobgp neighbor -j")
}

fn gobgp_established(lab: &Lab, ns: &str) -> bool {
    // BGP_FSM_ESTABLISHED in GoBGP's API enum.
    gobgp_neighbor(lab, ns)["state"]["session_state"] == 6
}

/// Prefixes GoBGP holds in its own RIB for one family.
fn gobgp_prefixes(lab: &Lab, ns: &str, family: &str) -> BTreeSet<String> {
    let text = lab.gobgp(ns, &["global", "rib", "-a", family, "-j"]);
    let rib: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    rib.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// Our routes in the kernel table: prefix -> sorted gateways.
type Table = BTreeMap<String, Vec<String>>;

fn kernel_table(host: &str) -> Option<Table> {
    let mut table = BTreeMap::new();
    for family in ["-4", "-6"] {
        let out = Command::new("ip")
            .args(["-n", host, "-j", family, "route", "show", "table"])
            .arg(TABLE.to_string())
            .args(["proto", &PROTO.to_string()])
            .output()
            .ok()?;
        // A table that does not exist yet is empty.
        let routes: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]));
        for route in routes.as_array()? {
            let mut gateways: Vec<String> = match route["nexthops"].as_array() {
                Some(hops) => hops.iter().map(gateway).collect(),
                None => vec![gateway(route)],
            };
            gateways.sort();
            table.insert(full_prefix(route["dst"].as_str()?), gateways);
        }
    }
    Some(table)
}

/// Samples the kernel table every 50 ms in the background; `stop` returns every sample.
fn sample_table(lab: &Lab) -> Sampler<Table> {
    let host = lab.host.clone();
    Sampler::start(Duration::from_millis(50), move || kernel_table(&host))
}

/// Panics unless every sample holds every prefix in `always`.
fn assert_never_missing(samples: &[Table], always: &[&str], context: &str) {
    assert!(samples.len() > 10, "too few samples: {}", samples.len());
    for (i, sample) in samples.iter().enumerate() {
        for prefix in always {
            assert!(
                sample.contains_key(*prefix),
                "{prefix} missing from the table in sample {i} of {} ({context}): {sample:?}",
                samples.len()
            );
        }
    }
}

fn wait_log(lab: &Lab, label: &str, needle: &str, times: usize) {
    wait_for(
        &format!("{times} x {needle:?} in the {label} log"),
        Duration::from_secs(30),
        || (count(&lab.log(label), needle) >= times).then_some(()),
    );
}

fn peer_named<'a>(peers: &'a Value, name: &str) -> &'a Value {
    peers
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no peer {name} in {peers}"))
}

#[test]
fn a_reload_adding_a_second_range_keeps_the_session_and_its_routes_and_a_broken_file_changes_nothing()
 {
    let Some(mut lab) = lab_or_skip("reload keeps session", &["gobgpd", "gobgp"]) else {
        return;
    };
    let cilium = cilium();
    let other = group("other", "2001:db8:2::/64", json!({}));
    lab.start_cilium_peer(&config(&lab, std::slice::from_ref(&cilium), json!({})));
    let a = lab.cilium_node(1, true);
    lab.announce(&a, "10.244.1.0/24");
    lab.announce(&a, "fd00:ff00:1::/64");
    lab.wait_route("10.244.1.0/24");
    lab.wait_route("fd00:ff00:1::/64");
    let up_since = gobgp_uptime(&lab, &a);
    let gobgp_log = format!("gobgpd-{a}");
    assert_eq!(count(&lab.log(&gobgp_log), "Peer Up"), 1);

    let sampler = sample_table(&lab);
    // A second range.
    lab.write("config.json", &config(&lab, &[cilium, other], json!({})));
    lab.signal("cilium-peer", "HUP");
    wait_log(&lab, "cilium-peer", "config reloaded", 1);
    // A broken file that, were it applied, would remove the node's range.
    lab.write(
        "config.json",
        &config(
            &lab,
            &[group("other", "2001:db8:2::/129", json!({}))],
            json!({}),
        ),
    );
    lab.signal("cilium-peer", "HUP");
    wait_log(&lab, "cilium-peer", "reload refused", 1);
    // Whatever the reloads were going to close would have closed by now.
    std::thread::sleep(Duration::from_secs(2));
    let samples = sampler.stop();

    assert_never_missing(&samples, &["10.244.1.0/24", "fd00:ff00:1::/64"], "reload");
    assert!(gobgp_established(&lab, &a));
    assert_eq!(
        gobgp_uptime(&lab, &a),
        up_since,
        "GoBGP saw the session restart"
    );
    let log = lab.log(&gobgp_log);
    assert_eq!(count(&log, "Peer Up"), 1, "{log}");
    assert_eq!(count(&log, "received notification"), 0, "{log}");
    let peers = lab.show("peers");
    let peer = peer_named(&peers, "cilium1");
    assert_eq!(peer["state"], "Established", "{peers}");
    assert_eq!(peer["group"], "cilium", "{peers}");
    assert_eq!(peer["installed"], 2, "{peers}");
    assert!(
        lab.log("cilium-peer")
            .contains("neighbors[0].range: \"2001:db8:2::/129\""),
        "the refusal names the error:\n{}",
        lab.log("cilium-peer")
    );

    // The config in force is still the one with both ranges: a node's session in it stays.
    lab.signal("cilium-peer", "HUP");
    wait_log(&lab, "cilium-peer", "reload refused", 2);
    assert!(gobgp_established(&lab, &a));
}

#[test]
fn a_reload_changing_only_the_import_list_keeps_the_session_and_refilters_by_route_refresh() {
    let Some(mut lab) = lab_or_skip("reload import", &["gobgpd", "gobgp"]) else {
        return;
    };
    let only_244 = group(
        "cilium",
        "2001:db8:1::/64",
        json!({ "import": [{ "prefix": "10.244.0.0/16", "max_length": 24 }] }),
    );
    lab.start_cilium_peer(&config(&lab, &[only_244], json!({})));
    let a = lab.cilium_node(1, true);
    lab.announce(&a, "10.244.1.0/24");
    lab.announce(&a, "10.245.1.0/24");
    lab.wait_route("10.244.1.0/24");
    let up_since = gobgp_uptime(&lab, &a);
    assert!(lab.route("10.245.1.0/24").is_none());

    let only_245 = group(
        "cilium",
        "2001:db8:1::/64",
        json!({ "import": [{ "prefix": "10.245.0.0/16", "max_length": 24 }] }),
    );
    lab.reload_cilium_peer(&config(&lab, &[only_245], json!({})));
    lab.wait_route("10.245.1.0/24");
    lab.wait_no_route("10.244.1.0/24");
    assert!(gobgp_established(&lab, &a));
    assert_eq!(
        gobgp_uptime(&lab, &a),
        up_since,
        "GoBGP saw the session restart"
    );
    let peers = lab.show("peers");
    let peer = peer_named(&peers, "cilium1");
    assert_eq!(peer["installed"], 1, "{peers}");
}

#[test]
fn a_reload_changing_its_group_closes_with_cease_6_and_removing_its_range_with_cease_3() {
    let Some(mut lab) = lab_or_skip("reload closes session", &["gobgpd", "gobgp"]) else {
        return;
    };
    lab.start_cilium_peer(&config(&lab, &[cilium()], json!({})));
    let a = lab.cilium_node(1, true);
    lab.announce(&a, "10.244.1.0/24");
    lab.announce(&a, "fd00:ff00:1::/64");
    lab.wait_route("10.244.1.0/24");
    lab.wait_route("fd00:ff00:1::/64");
    let gobgp_log = format!("gobgpd-{a}");

    // A group changed in what goes into OPEN (here its hold time): Cease, other
    // configuration change.
    let changed = group("cilium", "2001:db8:1::/64", json!({ "hold_time": 30 }));
    lab.write("config.json", &config(&lab, &[changed], json!({})));
    lab.signal("cilium-peer", "HUP");
    wait_log(&lab, &gobgp_log, "Subcode=6", 1);
    assert!(
        lab.log(&gobgp_log)
            .contains("received notification\" Code=6")
    );
    // The node comes back under the new group and announces again.
    wait_log(&lab, &gobgp_log, "Peer Up", 2);
    lab.wait_route("10.244.1.0/24");
    lab.wait_route("fd00:ff00:1::/64");

    // Its range removed: Cease, peer de-configured; its routes go, its reconnects are refused.
    lab.write(
        "config.json",
        &config(
            &lab,
            &[group("other", "2001:db8:2::/64", json!({}))],
            json!({}),
        ),
    );
    lab.signal("cilium-peer", "HUP");
    wait_log(&lab, &gobgp_log, "Subcode=3", 1);
    lab.wait_no_route("10.244.1.0/24");
    lab.wait_no_route("fd00:ff00:1::/64");
    wait_for(
        "the node's session to be gone",
        Duration::from_secs(10),
        || {
            lab.show("peers")
                .as_array()
                .is_some_and(|p| p.is_empty())
                .then_some(())
        },
    );
    assert!(!gobgp_established(&lab, &a));
}

#[test]
fn a_reload_removing_the_range_of_a_node_away_in_graceful_restart_removes_its_kept_routes() {
    let Some(mut lab) = lab_or_skip("reload stale", &["gobgpd", "gobgp"]) else {
        return;
    };
    lab.start_cilium_peer(&config(&lab, &[cilium()], json!({})));
    let a = lab.cilium_node(1, true);
    lab.announce(&a, "10.244.1.0/24");
    lab.wait_route("10.244.1.0/24");
    lab.stop(&format!("gobgpd-{a}"), "KILL");
    wait_for("the node to be Stale", Duration::from_secs(10), || {
        (peer_named(&lab.show("peers"), "cilium1")["state"] == "Stale").then_some(())
    });
    lab.write(
        "config.json",
        &config(
            &lab,
            &[group("other", "2001:db8:2::/64", json!({}))],
            json!({}),
        ),
    );
    lab.signal("cilium-peer", "HUP");
    wait_log(&lab, "cilium-peer", "config reloaded", 1);
    // Well within the node's 120 s restart time.
    lab.wait_no_route("10.244.1.0/24");
    assert!(lab.show("peers").as_array().unwrap().is_empty());
}

#[test]
fn a_reload_starts_and_stops_listening_addresses_and_keeps_established_sessions() {
    let Some(mut lab) = lab_or_skip("reload listen", &["gobgpd", "gobgp", "ss"]) else {
        return;
    };
    let cilium = [cilium()];
    lab.start_cilium_peer(&config(&lab, &cilium, json!({})));
    let a = lab.cilium_node(1, true);
    lab.announce(&a, "10.244.1.0/24");
    lab.wait_route("10.244.1.0/24");
    let listening = |lab: &Lab| -> Vec<String> {
        let out = lab.exec(&lab.host, &["ss", "-Hltn"]);
        let mut ports: Vec<String> = out
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .filter_map(|local| local.rsplit(':').next().map(str::to_string))
            .filter(|port| port == "179" || port == "1790")
            .collect();
        ports.sort();
        ports
    };
    assert_eq!(listening(&lab), vec!["179"]);
    let listen = |ports: &[&str]| config(&lab, &cilium, json!({ "listen": ports }));
    lab.write("config.json", &listen(&["[::]:179", "[::]:1790"]));
    lab.signal("cilium-peer", "HUP");
    wait_log(&lab, "cilium-peer", "config reloaded", 1);
    assert_eq!(listening(&lab), vec!["179", "1790"]);
    lab.write("config.json", &listen(&["[::]:1790"]));
    lab.signal("cilium-peer", "HUP");
    wait_log(&lab, "cilium-peer", "config reloaded", 2);
    wait_for("port 179 to close", Duration::from_secs(5), || {
        (listening(&lab) == vec!["1790"]).then_some(())
    });
    assert!(gobgp_established(&lab, &a), "the session on 179 stays");
    assert!(lab.route("10.244.1.0/24").is_some());
}

#[test]
fn a_reload_capping_max_paths_at_one_leaves_the_lowest_router_id_on_a_load_balancer_ip() {
    let Some(mut lab) = lab_or_skip("reload max paths", &["gobgpd", "gobgp"]) else {
        return;
    };
    let cilium = [cilium()];
    lab.start_cilium_peer(&config(&lab, &cilium, json!({})));
    let a = lab.cilium_node(1, true);
    let b = lab.cilium_node(2, true);
    for ns in [&a, &b] {
        lab.announce(ns, "198.51.100.7/32");
    }
    let legs = |lab: &Lab| -> Option<usize> {
        let route = lab.route("198.51.100.7/32")?;
        Some(route["nexthops"].as_array().map_or(1, Vec::len))
    };
    wait_for("two next hops", Duration::from_secs(30), || {
        (legs(&lab) == Some(2)).then_some(())
    });
    lab.write(
        "config.json",
        &config(&lab, &cilium, json!({ "kernel": { "max_paths": 1 } })),
    );
    lab.signal("cilium-peer", "HUP");
    wait_log(&lab, "cilium-peer", "config reloaded", 1);
    wait_for("one next hop", Duration::from_secs(10), || {
        (legs(&lab) == Some(1)).then_some(())
    });
    let route = lab.route("198.51.100.7/32").unwrap();
    assert_eq!(
        route["via"]["host"], NODE_A,
        "node 1 has the lower router id: {route}"
    );
}

#[test]
fn a_reload_changing_the_kernel_table_moves_our_routes() {
    let Some(mut lab) = lab_or_skip("reload table", &["gobgpd", "gobgp"]) else {
        return;
    };
    let cilium = [cilium()];
    lab.start_cilium_peer(&config(&lab, &cilium, json!({})));
    let a = lab.cilium_node(1, true);
    lab.announce(&a, "10.244.1.0/24");
    lab.announce(&a, "fd00:ff00:1::/64");
    lab.wait_route("10.244.1.0/24");
    lab.wait_route("fd00:ff00:1::/64");
    let moved = config(&lab, &cilium, json!({ "kernel": { "table": TABLE + 1 } }));
    lab.write("config.json", &moved);
    lab.signal("cilium-peer", "HUP");
    wait_log(&lab, "cilium-peer", "config reloaded", 1);
    lab.wait_no_route("10.244.1.0/24");
    lab.wait_no_route("fd00:ff00:1::/64");
    for family in ["-4", "-6"] {
        let out = lab.exec(
            &lab.host,
            &[
                "ip",
                family,
                "route",
                "show",
                "table",
                &(TABLE + 1).to_string(),
                "proto",
                &PROTO.to_string(),
            ],
        );
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains("via") && out.contains(NODE_A), "{out}");
    }
    assert!(gobgp_established(&lab, &a));
}

#[test]
fn a_killed_graceful_restart_node_keeps_its_routes_until_it_returns_and_what_it_does_not_announce_again_goes_at_its_end_of_rib()
 {
    let Some(mut lab) = lab_or_skip("node graceful restart", &["gobgpd", "gobgp"]) else {
        return;
    };
    lab.start_cilium_peer(&config(&lab, &[cilium()], json!({})));
    let a = lab.cilium_node(1, true);
    let kept = ["10.244.1.0/24", "fd00:ff00:1::/64"];
    let dropped = ["10.244.2.0/24", "fd00:ff00:2::/64"];
    for prefix in kept.iter().chain(&dropped) {
        lab.announce(&a, prefix);
    }
    for prefix in kept.iter().chain(&dropped) {
        lab.wait_route(prefix);
    }

    let sampler = sample_table(&lab);
    lab.stop(&format!("gobgpd-{a}"), "KILL");
    wait_for("the node to be Stale", Duration::from_secs(10), || {
        (peer_named(&lab.show("peers"), "cilium1")["state"] == "Stale").then_some(())
    });
    // The node restarts as an agent does (-r), with only part of its routes, and comes up.
    let mut restarted = gobgp_node(1);
    restarted.admin_down = true;
    lab.start_gobgp(&a, &restarted);
    for prefix in kept {
        lab.announce(&a, prefix);
    }
    let before_return = kernel_table(&lab.host).unwrap();
    lab.gobgp(&a, &["neighbor", "2001:db8:1::1", "enable"]);
    lab.wait_gobgp_established(&a);
    for prefix in dropped {
        lab.wait_no_route(prefix);
    }
    let samples = sampler.stop();

    for prefix in kept.iter().chain(&dropped) {
        assert!(
            before_return.contains_key(*prefix),
            "{prefix} left while the node was away: {before_return:?}"
        );
    }
    assert_never_missing(&samples, &kept, "node restart");
    let log = lab.log("cilium-peer");
    assert!(
        log.contains("graceful restart: keeping its routes as stale"),
        "{log}"
    );
    assert_eq!(count(&log, "stale routes removed"), 2, "{log}");
    let peer = peer_named(&lab.show("peers"), "cilium1").clone();
    assert_eq!(peer["state"], "Established", "{peer}");
    assert_eq!(peer["stale"], false, "{peer}");
    assert_eq!(peer["received"], 2, "{peer}");
}

#[test]
fn a_killed_graceful_restart_node_that_does_not_return_loses_its_routes_when_its_restart_time_runs_out()
 {
    let Some(mut lab) = lab_or_skip("restart time", &["gobgpd", "gobgp"]) else {
        return;
    };
    lab.start_cilium_peer(&config(&lab, &[cilium()], json!({})));
    let mut node = gobgp_node(1);
    node.restart_time = 3;
    let a = lab.node("1", &["192.0.2.11/24", "2001:db8:1::11/64"]);
    lab.start_gobgp(&a, &node);
    lab.wait_gobgp_established(&a);
    lab.announce(&a, "10.244.1.0/24");
    lab.wait_route("10.244.1.0/24");
    lab.stop(&format!("gobgpd-{a}"), "KILL");
    wait_for("the node to be Stale", Duration::from_secs(10), || {
        (peer_named(&lab.show("peers"), "cilium1")["state"] == "Stale").then_some(())
    });
    assert!(lab.route("10.244.1.0/24").is_some());
    lab.wait_no_route("10.244.1.0/24");
    assert!(
        lab.log("cilium-peer")
            .contains("graceful restart time over")
    );
    wait_for("the node to be forgotten", Duration::from_secs(10), || {
        lab.show("peers")
            .as_array()
            .is_some_and(|p| p.is_empty())
            .then_some(())
    });
}

/// Restarts cilium-peer with `signal` while the table is sampled: the learned routes never
/// leave it, the sessions come back, and a route withdrawn meanwhile goes at End-of-RIB.
fn restart_keeps_the_routes(test: &str, signal: &str, persist: bool) {
    let Some(mut lab) = lab_or_skip(test, &["gobgpd", "gobgp"]) else {
        return;
    };
    let host_config = config(
        &lab,
        &[cilium()],
        json!({ "kernel": { "persist": persist } }),
    );
    lab.start_cilium_peer(&host_config);
    let a = lab.cilium_node(1, true);
    let b = lab.cilium_node(2, true);
    let learned = [
        "10.244.1.0/24",
        "fd00:ff00:1::/64",
        "10.244.2.0/24",
        "fd00:ff00:2::/64",
        "198.51.100.7/32",
    ];
    lab.announce(&a, "10.244.1.0/24");
    lab.announce(&a, "fd00:ff00:1::/64");
    lab.announce(&b, "10.244.2.0/24");
    lab.announce(&b, "fd00:ff00:2::/64");
    lab.announce(&a, "198.51.100.7/32");
    lab.announce(&b, "198.51.100.7/32");
    // Withdrawn while cilium-peer is away.
    lab.announce(&a, "10.244.9.0/24");
    for prefix in learned.iter().chain(&["10.244.9.0/24"]) {
        lab.wait_route(prefix);
    }
    wait_for(
        "ECMP for the LoadBalancer IP",
        Duration::from_secs(30),
        || (kernel_table(&lab.host)?.get("198.51.100.7/32")?.len() == 2).then_some(()),
    );
    let before = kernel_table(&lab.host).unwrap();

    let sampler = sample_table(&lab);
    std::thread::sleep(Duration::from_millis(300));
    lab.stop("cilium-peer", signal);
    lab.withdraw(&a, "10.244.9.0/24");
    assert_eq!(
        kernel_table(&lab.host).unwrap(),
        before,
        "the table changed when cilium-peer stopped"
    );
    lab.start_cilium_peer(&host_config);
    let adopted = lab.show("routes");
    assert!(
        adopted
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["adopted"] == true),
        "{adopted}"
    );
    assert_eq!(adopted.as_array().unwrap().len(), before.len(), "{adopted}");
    for ns in [&a, &b] {
        wait_for(
            &format!("GoBGP in {ns} to come back"),
            Duration::from_secs(60),
            || gobgp_established(&lab, ns).then_some(()),
        );
    }
    lab.wait_no_route("10.244.9.0/24");
    lab.wait_none_adopted(Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    let samples = sampler.stop();

    assert_never_missing(&samples, &learned, test);
    // The nodes came back one after the other; the LoadBalancer IP kept both legs meanwhile.
    for (i, sample) in samples.iter().enumerate() {
        assert_eq!(
            sample["198.51.100.7/32"],
            before["198.51.100.7/32"],
            "sample {i} of {}",
            samples.len()
        );
    }
    let mut expected = before;
    expected.remove("10.244.9.0/24");
    assert_eq!(kernel_table(&lab.host).unwrap(), expected);
    let peers = lab.show("peers");
    assert_eq!(peers.as_array().unwrap().len(), 2, "{peers}");
    for peer in peers.as_array().unwrap() {
        assert_eq!(peer["state"], "Established", "{peers}");
    }
    let log = lab.log("cilium-peer");
    assert!(
        log.contains("adopted routes left by a previous run"),
        "{log}"
    );
    // We came back with the Restart State bit (RFC 4724 4.1), as GoBGP expects of a
    // restarting helper it kept routes for.
    for ns in [&a, &b] {
        let theirs = lab.log(&format!("gobgpd-{ns}"));
        assert!(theirs.contains("peer graceful restart"), "{theirs}");
        assert!(!theirs.contains("restart flag is not set"), "{theirs}");
    }
}

#[test]
fn restarting_cilium_peer_with_sigusr2_never_takes_the_learned_routes_out_of_the_table() {
    restart_keeps_the_routes("restart with SIGUSR2", "USR2", false);
}

#[test]
fn stopping_and_starting_cilium_peer_with_persist_never_takes_the_learned_routes_out_of_the_table()
{
    restart_keeps_the_routes("restart with SIGTERM", "TERM", true);
}

#[test]
fn adopted_routes_whose_node_does_not_come_back_go_when_the_grace_time_ends() {
    let Some(mut lab) = lab_or_skip("adopt grace", &["gobgpd", "gobgp"]) else {
        return;
    };
    let host_config = config(
        &lab,
        &[cilium()],
        json!({ "kernel": { "persist": true, "adopt_grace_s": 3 } }),
    );
    lab.start_cilium_peer(&host_config);
    let a = lab.cilium_node(1, true);
    lab.announce(&a, "10.244.1.0/24");
    lab.wait_route("10.244.1.0/24");
    lab.stop("cilium-peer", "TERM");
    lab.stop(&format!("gobgpd-{a}"), "KILL");
    lab.start_cilium_peer(&host_config);
    let routes = lab.show("routes");
    assert_eq!(routes[0]["prefix"], "10.244.1.0/24", "{routes}");
    assert_eq!(routes[0]["adopted"], true, "{routes}");
    lab.wait_no_route("10.244.1.0/24");
    assert!(
        lab.log("cilium-peer")
            .contains("not re-announced within the grace time")
    );
}

/// `cilium-peer show WHAT --json` as the operator runs it.
fn show_json(lab: &Lab, what: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_cilium-peer"))
        .args(["show", what, "--json", "--socket"])
        .arg(lab.socket())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn show_peers_and_show_routes_as_json_match_gobgp_and_the_kernel_table() {
    let Some(mut lab) = lab_or_skip("show json", &["gobgpd", "gobgp"]) else {
        return;
    };
    lab.start_cilium_peer(&config(&lab, &[cilium()], json!({})));
    let a = lab.cilium_node(1, true);
    let b = lab.cilium_node(2, true);
    for prefix in ["10.244.1.0/24", "fd00:ff00:1::/64", "198.51.100.7/32"] {
        lab.announce(&a, prefix);
    }
    for prefix in [
        "10.244.2.0/24",
        "10.244.3.0/24",
        "fd00:ff00:2::/64",
        "198.51.100.7/32",
        "2001:db8:ff::7/128",
    ] {
        lab.announce(&b, prefix);
    }
    let nodes = [(&a, NODE_A, "192.0.2.11"), (&b, NODE_B, "192.0.2.12")];
    // Settled: every route of every node installed.
    wait_for("all 7 routes", Duration::from_secs(30), || {
        let table = kernel_table(&lab.host)?;
        (table.len() == 7 && table["198.51.100.7/32"].len() == 2).then_some(())
    });

    let peers = show_json(&lab, "peers");
    assert_eq!(peers.as_array().unwrap().len(), 2, "{peers}");
    for (ns, address, router_id) in nodes {
        let peer = peers
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["address"] == address)
            .unwrap_or_else(|| panic!("{address} not in {peers}"));
        let theirs = gobgp_neighbor(&lab, ns);
        assert_eq!(theirs["state"]["session_state"], 6);
        assert_eq!(peer["state"], "Established");
        assert_eq!(peer["router_id"], router_id);
        assert_eq!(peer["asn"], theirs["conf"]["local_asn"]);
        let announced =
            gobgp_prefixes(&lab, ns, "ipv4").len() + gobgp_prefixes(&lab, ns, "ipv6").len();
        assert_eq!(peer["received"], announced, "{peer}");
        assert_eq!(peer["installed"], announced, "{peer}");
        let hold = theirs["timers"]["state"]["negotiated_hold_time"].as_u64();
        assert_eq!(peer["hold_time"].as_u64(), hold, "{peer}");
        assert!(peer["uptime_s"].as_u64().is_some());
    }

    let routes = show_json(&lab, "routes");
    let ours: BTreeMap<String, Vec<String>> = routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut gateways: Vec<String> = r["nexthops"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    assert_eq!(h["interface"], BRIDGE, "{r}");
                    h["gateway"].as_str().unwrap().to_string()
                })
                .collect();
            gateways.sort();
            (r["prefix"].as_str().unwrap().to_string(), gateways)
        })
        .collect();
    assert_eq!(ours, kernel_table(&lab.host).unwrap());
    // Every prefix a node holds is installed via that node.
    for (ns, address, _) in nodes {
        for family in ["ipv4", "ipv6"] {
            for prefix in gobgp_prefixes(&lab, ns, family) {
                let gateways = ours
                    .get(&prefix)
                    .unwrap_or_else(|| panic!("{prefix} of {address} not in {ours:?}"));
                assert!(
                    gateways.iter().any(|g| g == address),
                    "{prefix}: {gateways:?}"
                );
            }
        }
    }
}

#[test]
fn routes_of_ours_deleted_or_changed_behind_our_back_are_put_back_and_foreign_routes_stay() {
    let Some(mut lab) = lab_or_skip("repair", &["gobgpd", "gobgp"]) else {
        return;
    };
    lab.start_cilium_peer(&config(&lab, &[cilium()], json!({})));
    let a = lab.cilium_node(1, true);
    lab.announce(&a, "10.244.1.0/24");
    lab.announce(&a, "fd00:ff00:1::/64");
    lab.wait_route("10.244.1.0/24");
    lab.wait_route("fd00:ff00:1::/64");
    let table = TABLE.to_string();
    let host = lab.host.clone();
    let ip = |args: &[&str]| {
        let mut full = vec!["ip"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["table", &table]);
        lab.exec(&host, &full);
    };
    let expected = kernel_table(&lab.host).unwrap();
    let repaired = |n: usize| {
        wait_log(&lab, "cilium-peer", "changed behind our back", n);
        wait_for("the table put back", Duration::from_secs(10), || {
            (kernel_table(&lab.host)? == expected).then_some(())
        });
    };

    ip(&["route", "del", "10.244.1.0/24"]);
    repaired(1);
    ip(&["-6", "route", "del", "fd00:ff00:1::/64"]);
    repaired(2);
    // Ours, changed: another gateway under our protocol number.
    ip(&[
        "route",
        "replace",
        "10.244.1.0/24",
        "via",
        "192.0.2.99",
        "dev",
        BRIDGE,
        "proto",
        &PROTO.to_string(),
    ]);
    repaired(3);
    // Our own writes (the installs, the repairs) come back as events too: none was taken
    // for someone else's.
    std::thread::sleep(Duration::from_millis(500));
    let log = lab.log("cilium-peer");
    assert_eq!(count(&log, "changed behind our back"), 3, "{log}");
    // Someone else's routes in our table stay, and are not ours to show.
    ip(&[
        "route",
        "add",
        "10.99.0.0/16",
        "via",
        "192.0.2.50",
        "proto",
        "static",
    ]);
    ip(&[
        "-6",
        "route",
        "add",
        "fd00:99::/64",
        "via",
        NODE_A,
        "proto",
        "static",
    ]);
    // A link flap: the kernel flushes IPv4 routes of a link that goes down without a word.
    lab.exec(&host, &["ip", "link", "set", BRIDGE, "down"]);
    lab.exec(&host, &["ip", "link", "set", BRIDGE, "up"]);
    // IPv6 addresses go with the link; the network manager puts them back.
    lab.addr(&host, BRIDGE, "2001:db8:1::1/64");
    lab.addr(&host, BRIDGE, "fe80::1/64");
    wait_for(
        "the table put back after the flap",
        Duration::from_secs(10),
        || (kernel_table(&lab.host)? == expected).then_some(()),
    );
    ip(&[
        "route",
        "add",
        "10.98.0.0/16",
        "via",
        "192.0.2.50",
        "proto",
        "static",
    ]);
    lab.signal("cilium-peer", "HUP");
    wait_log(&lab, "cilium-peer", "config reloaded", 1);
    let foreign = lab.exec(
        &host,
        &["ip", "route", "show", "table", &table, "proto", "static"],
    );
    assert!(foreign.contains("10.98.0.0/16"), "{foreign}");
    let routes = lab.show("routes");
    assert_eq!(routes.as_array().unwrap().len(), 2, "{routes}");
    assert_eq!(kernel_table(&lab.host).unwrap(), expected);
}

/// One HTTP/1.0 GET from inside the lab's host namespace: status line and body.
fn http_get(lab: &Lab, addr: &'static str, path: &'static str) -> (String, String) {
    lab.in_namespace(&lab.host, move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).expect("metrics endpoint listens");
        write!(stream, "GET {path} HTTP/1.0\r\nHost: cilium-peer\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response
            .split_once("\r\n\r\n")
            .expect("a complete response");
        (head.lines().next().unwrap().to_string(), body.to_string())
    })
}

#[test]
fn the_metrics_endpoint_answers_with_the_documented_names() {
    let Some(mut lab) = lab_or_skip("metrics", &["gobgpd", "gobgp"]) else {
        return;
    };
    let with_metrics = |lab: &Lab, groups: &[Value]| {
        config(
            lab,
            groups,
            json!({ "metrics": { "listen": "[::1]:9179" } }),
        )
    };
    let imports = || {
        group(
            "cilium",
            "2001:db8:1::/64",
            json!({ "import": [
                { "prefix": "10.244.0.0/16", "max_length": 24 },
                { "prefix": "fd00:ff00::/32", "max_length": 64 },
            ] }),
        )
    };
    lab.start_cilium_peer(&with_metrics(&lab, &[imports()]));
    let a = lab.cilium_node(1, true);
    lab.announce(&a, "10.244.1.0/24");
    lab.announce(&a, "fd00:ff00:1::/64");
    // Outside the import rules: counted as rejected.
    lab.announce(&a, "10.99.0.0/16");
    lab.wait_route("10.244.1.0/24");
    lab.wait_route("fd00:ff00:1::/64");
    wait_for(
        "the refused prefix to be counted",
        Duration::from_secs(10),
        || {
            (peer_named(&lab.show("peers"), "cilium1")["rejected"]["not_imported"] == 1)
                .then_some(())
        },
    );
    // A refused reload and an applied one.
    lab.write("config.json", "{");
    lab.signal("cilium-peer", "HUP");
    wait_log(&lab, "cilium-peer", "reload refused", 1);
    lab.write("config.json", &with_metrics(&lab, &[imports()]));
    lab.signal("cilium-peer", "HUP");
    wait_log(&lab, "cilium-peer", "config reloaded", 1);

    let (status, body) = http_get(&lab, "[::1]:9179", "/metrics");
    assert_eq!(status, "HTTP/1.0 200 OK");
    let docs = include_str!("../docs/operation.md");
    let documented: BTreeSet<&str> = docs
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("cilium_peer_"))
        .collect();
    assert!(documented.len() > 20, "{documented:?}");
    for name in &documented {
        assert!(
            body.contains(&format!("# TYPE {name} ")),
            "{name} is documented but not exposed:\n{body}"
        );
    }
    let samples: BTreeMap<&str, f64> = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name, value.parse().ok()?))
        })
        .collect();
    let peer = format!(r#"peer="cilium1",address="{NODE_A}""#);
    for (sample, value) in [
        (
            r#"cilium_peer_sessions{state="Established"}"#.to_string(),
            1.0,
        ),
        (format!("cilium_peer_session_established{{{peer}}}"), 1.0),
        (
            format!("cilium_peer_session_prefixes_received_total{{{peer}}}"),
            3.0,
        ),
        (
            format!("cilium_peer_session_prefixes_accepted{{{peer}}}"),
            2.0,
        ),
        (
            format!("cilium_peer_session_prefixes_installed{{{peer}}}"),
            2.0,
        ),
        (
            format!(
                r#"cilium_peer_session_prefixes_rejected_total{{{peer},reason="not_imported"}}"#
            ),
            1.0,
        ),
        ("cilium_peer_routes".to_string(), 2.0),
        (
            r#"cilium_peer_reloads_total{outcome="applied"}"#.to_string(),
            1.0,
        ),
        (
            r#"cilium_peer_reloads_total{outcome="refused"}"#.to_string(),
            1.0,
        ),
        ("cilium_peer_config_last_reload_successful".to_string(), 1.0),
        (
            format!(
                r#"cilium_peer_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        ),
    ] {
        assert_eq!(
            samples.get(sample.as_str()),
            Some(&value),
            "{sample} in\n{body}"
        );
    }
    assert!(samples["cilium_peer_fib_operations_total"] >= 2.0, "{body}");
    let sent = format!(r#"cilium_peer_ra_adverts_sent_total{{bridge="{BRIDGE}"}}"#);
    assert!(samples[sent.as_str()] >= 1.0, "{body}");
    let (status, _) = http_get(&lab, "[::1]:9179", "/nothing");
    assert_eq!(status, "HTTP/1.0 404 Not Found");
}

#[test]
fn systemd_hears_ready_watchdog_pings_reloading_and_stopping() {
    let Some(mut lab) = lab_or_skip("sd-notify", &[]) else {
        return;
    };
    let path = lab.dir.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let running = Arc::new(AtomicBool::new(true));
    let listener = {
        let received = received.clone();
        let running = running.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while running.load(Ordering::SeqCst) {
                if let Ok(n) = socket.recv(&mut buffer) {
                    let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
                    received.lock().unwrap().push(text);
                }
            }
        })
    };
    let notify = format!("NOTIFY_SOCKET={}", path.display());
    // WatchdogSec=0.4s: a ping every 0.2 s.
    lab.start_cilium_peer_with_env(
        &config(&lab, &[cilium()], json!({})),
        &[&notify, "WATCHDOG_USEC=400000"],
    );
    let pings = || {
        received
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.contains("WATCHDOG=1"))
            .count()
    };
    wait_for("5 watchdog pings", Duration::from_secs(10), || {
        (pings() >= 5).then_some(())
    });
    lab.signal("cilium-peer", "HUP");
    wait_log(&lab, "cilium-peer", "config reloaded", 1);
    let before = pings();
    wait_for("pings after the reload", Duration::from_secs(10), || {
        (pings() >= before + 3).then_some(())
    });
    lab.stop("cilium-peer", "TERM");
    std::thread::sleep(Duration::from_millis(300));
    running.store(false, Ordering::SeqCst);
    listener.join().unwrap();

    let messages = received.lock().unwrap().clone();
    let position = |what: &str| {
        messages
            .iter()
            .position(|m| m.lines().any(|l| l == what))
            .unwrap_or_else(|| panic!("no {what} in {messages:?}"))
    };
    let ready = position("READY=1");
    let reloading = position("RELOADING=1");
    let stopping = position("STOPPING=1");
    assert!(ready < reloading && reloading < stopping, "{messages:?}");
    assert!(
        messages[reloading].contains("MONOTONIC_USEC="),
        "{messages:?}"
    );
    assert!(
        messages[reloading + 1..stopping]
            .iter()
            .any(|m| m.lines().any(|l| l == "READY=1")),
        "READY=1 after the reload: {messages:?}"
    );
}
