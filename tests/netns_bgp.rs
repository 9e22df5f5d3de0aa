//! cilium-peer against real GoBGP "Cilium nodes" in network namespaces: routes reach the
//! kernel table as Cilium sends them, and leave it when withdrawn or when a node dies.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// A lab running cilium-peer for `range`, with the given extra neighbor-group keys.
fn lab_with_daemon(test: &str, range: &str, extra_group: Value) -> Option<Lab> {
    let mut lab = lab_or_skip(test, &["gobgpd", "gobgp"])?;
    let config = host_config_json(&lab, &["[::]:179"], range, extra_group).to_string();
    lab.start_cilium_peer(&config);
    Some(lab)
}

#[test]
fn ipv4_and_ipv6_pod_cidrs_over_one_ipv6_session_land_in_the_table_the_ipv4_one_via_inet6() {
    let Some(mut lab) = lab_with_daemon("ipv6 session", "2001:db8:1::/64", json!({})) else {
        return;
    };
    let node = lab.cilium_node(1, true);
    lab.announce(&node, "10.244.1.0/24");
    lab.announce(&node, "fd00:ff00:1::/64");

    let v4 = lab.wait_route("10.244.1.0/24");
    assert_eq!(v4["via"]["family"], "inet6", "{v4}");
    assert_eq!(v4["via"]["host"], "2001:db8:1::11", "{v4}");
    assert_eq!(v4["dev"], BRIDGE, "{v4}");
    let v6 = lab.wait_route("fd00:ff00:1::/64");
    assert_eq!(gateway(&v6), "2001:db8:1::11", "{v6}");
    assert_eq!(v6["dev"], BRIDGE, "{v6}");

    // The host reaches an address inside the pod CIDR through the `via inet6` route.
    lab.addr(&node, "lo", "10.244.1.1/32");
    lab.exec(
        &lab.host,
        &[
            "ip",
            "rule",
            "add",
            "to",
            "10.244.0.0/16",
            "lookup",
            &TABLE.to_string(),
        ],
    );
    lab.exec(&lab.host, &["ping", "-c", "1", "-W", "5", "10.244.1.1"]);

    // `show` agrees with GoBGP and the kernel.
    let peers = lab.show("peers");
    let peer = &peers[0];
    assert_eq!(peer["name"], "cilium1");
    assert_eq!(peer["address"], "2001:db8:1::11");
    assert_eq!(peer["asn"], 65100);
    assert_eq!(peer["state"], "Established");
    assert_eq!(peer["received"], 2);
    assert_eq!(peer["installed"], 2);
    let routes = lab.show("routes");
    assert_eq!(routes.as_array().unwrap().len(), 2, "{routes}");

    // Withdraw removes.
    lab.withdraw(&node, "fd00:ff00:1::/64");
    lab.wait_no_route("fd00:ff00:1::/64");
    assert!(lab.route("10.244.1.0/24").is_some());
}

#[test]
fn routes_added_before_the_session_is_up_still_arrive() {
    let Some(mut lab) = lab_or_skip("routes before session", &["gobgpd", "gobgp"]) else {
        return;
    };
    // GoBGP starts first, with its routes, while nothing listens yet.
    let node = lab.cilium_node(1, true);
    lab.announce(&node, "10.244.7.0/24");
    lab.announce(&node, "fd00:ff00:7::/64");
    let config = host_config(&lab, &["[::]:179"], "2001:db8:1::/64", "");
    lab.start_cilium_peer(&config);
    lab.wait_route("10.244.7.0/24");
    lab.wait_route("fd00:ff00:7::/64");
}

#[test]
fn an_ipv4_session_installs_ipv6_routes_via_the_nodes_link_local_address() {
    let Some(mut lab) = lab_with_daemon("ipv4 session", "192.0.2.0/24", json!({})) else {
        return;
    };
    let node = lab.node("a", &["192.0.2.11/24", "2001:db8:1::11/64"]);
    lab.start_gobgp(
        &node,
        &GoBgpNode::cilium("192.0.2.11", "192.0.2.1", "192.0.2.11"),
    );
    lab.wait_gobgp_established(&node);
    lab.announce(&node, "10.244.2.0/24");
    lab.announce(&node, "fd00:ff00:2::/64");

    let v4 = lab.wait_route("10.244.2.0/24");
    assert_eq!(gateway(&v4), "192.0.2.11", "{v4}");
    let v6 = lab.wait_route("fd00:ff00:2::/64");
    assert_eq!(gateway(&v6), link_local(&lab, &node, "eth0"), "{v6}");
    assert_eq!(v6["dev"], BRIDGE, "{v6}");
}

#[test]
fn two_nodes_announcing_the_same_load_balancer_ips_give_ecmp_and_one_withdrawing_leaves_the_other()
{
    let Some(mut lab) = lab_with_daemon("ecmp", "2001:db8:1::/64", json!({})) else {
        return;
    };
    let a = lab.cilium_node(1, true);
    let b = lab.cilium_node(2, true);
    for ns in [&a, &b] {
        lab.announce(ns, "198.51.100.7/32");
        // ORIGIN differences must not break ECMP (LoadBalancer IPs may be INCOMPLETE).
        let origin = if ns == &a { "igp" } else { "incomplete" };
        lab.gobgp(
            ns,
            &[
                "global",
                "rib",
                "add",
                "-a",
                "ipv6",
                "2001:db8:ff::7/128",
                "origin",
                origin,
            ],
        );
    }
    for prefix in ["198.51.100.7/32", "2001:db8:ff::7/128"] {
        let route = wait_for(
            &format!("two next hops for {prefix}"),
            Duration::from_secs(30),
            || {
                lab.route(prefix)
                    .filter(|r| r["nexthops"].as_array().is_some_and(|n| n.len() == 2))
            },
        );
        let mut hops: Vec<String> = route["nexthops"]
            .as_array()
            .unwrap()
            .iter()
            .map(gateway)
            .collect();
        hops.sort();
        assert_eq!(hops, ["2001:db8:1::11", "2001:db8:1::12"], "{route}");
    }
    lab.withdraw(&a, "198.51.100.7/32");
    let left = wait_for("one next hop left", Duration::from_secs(30), || {
        lab.route("198.51.100.7/32")
            .filter(|r| r["nexthops"].is_null())
    });
    assert_eq!(gateway(&left), "2001:db8:1::12", "{left}");
}

#[test]
fn killing_a_node_without_graceful_restart_removes_its_routes_at_once() {
    let Some(mut lab) = lab_with_daemon("node killed", "2001:db8:1::/64", json!({})) else {
        return;
    };
    let node = lab.cilium_node(1, false);
    lab.announce(&node, "10.244.3.0/24");
    lab.wait_route("10.244.3.0/24");
    lab.stop(&format!("gobgpd-{node}"), "KILL");
    // The kernel closes the dead process's socket: FIN, no graceful restart.
    lab.wait_no_route("10.244.3.0/24");
    let peers = lab.show("peers");
    assert!(peers.as_array().unwrap().is_empty(), "{peers}");
}

#[test]
fn a_connection_from_outside_every_range_gets_no_session() {
    // Only 2001:db8:1::100/120 may peer; the node is outside it.
    let Some(mut lab) = lab_with_daemon("outside range", "2001:db8:1::100/120", json!({})) else {
        return;
    };
    let node = lab.node("a", &["192.0.2.11/24", "2001:db8:1::11/64"]);
    lab.start_gobgp(
        &node,
        &GoBgpNode::cilium("192.0.2.11", "2001:db8:1::1", "2001:db8:1::11"),
    );
    wait_for("the refusal to be logged", Duration::from_secs(20), || {
        lab.log("cilium-peer")
            .contains("outside every neighbor range")
            .then_some(())
    });
    assert!(!lab.gobgp(&node, &["neighbor"]).contains("Establ"));
    assert!(lab.show("peers").as_array().unwrap().is_empty());
}

#[test]
fn a_link_local_listen_address_on_a_hyphenated_bridge_takes_link_local_sessions() {
    let Some(mut lab) = lab_or_skip("link-local", &["gobgpd", "gobgp"]) else {
        return;
    };
    let node = lab.node("a", &["fe80::11/64"]);
    let config = host_config(&lab, &["[fe80::1%vmbr-dev]:179"], "fe80::/64", "");
    lab.start_cilium_peer(&config);
    let mut gobgp = GoBgpNode::cilium("192.0.2.11", "fe80::1%eth0", "fe80::11");
    gobgp.local_address = None;
    lab.start_gobgp(&node, &gobgp);
    lab.wait_gobgp_established(&node);
    lab.announce(&node, "10.244.4.0/24");
    lab.announce(&node, "fd00:ff00:4::/64");
    let v4 = lab.wait_route("10.244.4.0/24");
    assert_eq!(v4["via"]["host"], "fe80::11", "{v4}");
    assert_eq!(v4["dev"], BRIDGE, "{v4}");
    let v6 = lab.wait_route("fd00:ff00:4::/64");
    assert_eq!(gateway(&v6), "fe80::11", "{v6}");
    assert_eq!(v6["dev"], BRIDGE, "{v6}");
}

#[test]
fn a_session_past_max_prefixes_is_closed_with_cease_1_its_routes_go_and_its_node_is_held_down() {
    let Some(mut lab) = lab_with_daemon(
        "max prefixes",
        "2001:db8:1::/64",
        json!({ "max_prefixes": 2, "max_prefixes_hold_s": 20 }),
    ) else {
        return;
    };
    let node = lab.cilium_node(1, true);
    lab.announce(&node, "10.244.8.0/24");
    lab.announce(&node, "10.244.9.0/24");
    lab.wait_route("10.244.9.0/24");
    lab.announce(&node, "10.244.10.0/24");
    wait_for("the Cease to be logged", Duration::from_secs(20), || {
        lab.log("cilium-peer")
            .contains("sent Cease / Maximum Number of Prefixes Reached (6/1)")
            .then_some(())
    });
    lab.wait_no_route("10.244.8.0/24");
    assert!(lab.route("10.244.10.0/24").is_none());
    // GoBGP connects again within seconds: refused while held down, so no route comes back.
    wait_for("a refused reconnection", Duration::from_secs(20), || {
        lab.log("cilium-peer")
            .contains("the node passed max_prefixes, held down for")
            .then_some(())
    });
    assert!(lab.route("10.244.8.0/24").is_none());
    let log = lab.log("cilium-peer");
    assert_eq!(log.matches("session established").count(), 1, "{log}");
}
