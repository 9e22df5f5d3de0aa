//! A dead node leaves the kernel table in about a second (issue 13), against real GoBGP
//! "Cilium nodes" with Cilium's timers (hold 90 s, graceful restart 120 s) and FRR's bfdd:
//! the node's bridge port deleted, the node hung (gobgpd stopped, IPv6 off inside it), its
//! agent restarted (the node still answers: nothing changes), BFD from bfdd stopped, and the
//! node returning in each case.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

use common::bfdd::Bfdd;
use common::*;

const LB: &str = "198.51.100.7/32";
const POD1: &str = "10.244.1.0/24";

fn lab(test: &str, needs: &[&str]) -> Option<Lab> {
    let mut all = vec!["gobgpd", "gobgp"];
    all.extend_from_slice(needs);
    lab_or_skip(test, &all)
}

/// Two nodes announcing the LoadBalancer IP, node 1 its pod CIDR too; cilium-peer with
/// `extra` in its neighbor group.
fn two_nodes(lab: &mut Lab, extra: &str) -> (String, String) {
    lab.start_cilium_peer(&host_config(lab, &["[::]:179"], "2001:db8:1::/64", extra));
    let one = lab.cilium_node(1, true);
    let two = lab.cilium_node(2, true);
    lab.announce(&one, LB);
    lab.announce(&one, POD1);
    lab.announce(&two, LB);
    wait_for("both ECMP legs", Duration::from_secs(30), || {
        (legs(lab, LB).len() == 2).then_some(())
    });
    lab.wait_route(POD1);
    (one, two)
}

/// The gateways of `prefix` in the kernel table.
fn legs(lab: &Lab, prefix: &str) -> Vec<String> {
    let Some(route) = lab.route(prefix) else {
        return Vec::new();
    };
    match route["nexthops"].as_array() {
        Some(hops) => hops.iter().map(gateway).collect(),
        None => vec![gateway(&route)],
    }
}

fn peer<'a>(peers: &'a Value, address: &str) -> &'a Value {
    peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["address"] == address)
        .unwrap_or_else(|| panic!("{address} not in {peers}"))
}

fn wait_liveness(lab: &Lab, address: &str, state: &str) {
    wait_for(
        &format!("{address} {state}\n{}", lab.log("cilium-peer")),
        Duration::from_secs(20),
        || (peer(&lab.show("peers"), address)["liveness"] == state).then_some(()),
    );
}

/// Waits until cilium-peer knows which bridge port node 1 is behind.
fn wait_port_known(lab: &Lab) {
    wait_for("node 1's bridge port", Duration::from_secs(10), || {
        peer(&lab.show("peers"), "2001:db8:1::11")["port"]
            .as_str()
            .map(str::to_string)
    });
}

/// The host end of node `n`'s veth pair (as `Lab::node` names it).
fn port_of(lab: &Lab, n: u8) -> String {
    let name = format!("v{}{n}", lab.id);
    name[..name.len().min(15)].to_string()
}

#[test]
fn a_node_whose_bridge_port_is_deleted_loses_its_ecmp_leg_and_pod_route_and_gets_them_back_when_it_returns()
 {
    let Some(mut lab) = lab("port deleted", &[]) else {
        return;
    };
    let (one, _two) = two_nodes(&mut lab, "");
    wait_port_known(&lab);
    assert_eq!(
        peer(&lab.show("peers"), "2001:db8:1::11")["port"],
        port_of(&lab, 1)
    );
    // The VM stops: its tap (here the veth's host end) goes.
    let gone = Instant::now();
    lab.exec(&lab.host, &["ip", "link", "del", &port_of(&lab, 1)]);
    wait_for("node 1's leg to leave", Duration::from_secs(10), || {
        (legs(&lab, LB) == ["2001:db8:1::12"]).then_some(())
    });
    lab.wait_no_route(POD1);
    eprintln!("port deleted: leg gone after {:?}", gone.elapsed());
    wait_liveness(&lab, "2001:db8:1::11", "unreachable");
    // The VM comes back on a new port, its agent reconnects and announces again.
    lab.stop(&format!("gobgpd-{one}"), "KILL");
    // (Deleting the host end took the node's eth0 with it.)
    let port = port_of(&lab, 1);
    sh(&[
        "ip", "link", "add", &port, "netns", &lab.host, "type", "veth", "peer", "name", "eth0",
        "netns", &one,
    ]);
    lab.exec(
        &lab.host,
        &["ip", "link", "set", &port, "master", BRIDGE, "up"],
    );
    lab.exec(&one, &["ip", "link", "set", "eth0", "up"]);
    lab.addr(&one, "eth0", "192.0.2.11/24");
    lab.addr(&one, "eth0", "2001:db8:1::11/64");
    let mut node = GoBgpNode::cilium("192.0.2.11", "2001:db8:1::1", "2001:db8:1::11");
    node.graceful_restart = true;
    lab.start_gobgp(&one, &node);
    lab.wait_gobgp_established(&one);
    lab.announce(&one, LB);
    lab.announce(&one, POD1);
    wait_for("node 1's leg to return", Duration::from_secs(20), || {
        (legs(&lab, LB).len() == 2).then_some(())
    });
    lab.wait_route(POD1);
    wait_liveness(&lab, "2001:db8:1::11", "reachable");
}

#[test]
fn a_hung_node_loses_its_ecmp_leg_and_pod_route_while_bgp_still_says_established_and_gets_them_back_when_it_wakes()
 {
    let Some(mut lab) = lab("hung node", &[]) else {
        return;
    };
    let (one, _two) = two_nodes(&mut lab, "");
    let hung = Instant::now();
    lab.signal(&format!("gobgpd-{one}"), "STOP");
    lab.exec(
        &one,
        &["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"],
    );
    wait_for("node 1's leg to leave", Duration::from_secs(10), || {
        (legs(&lab, LB) == ["2001:db8:1::12"]).then_some(())
    });
    lab.wait_no_route(POD1);
    eprintln!("hung node: leg gone after {:?}", hung.elapsed());
    let peers = lab.show("peers");
    assert_eq!(peer(&peers, "2001:db8:1::11")["liveness"], "unreachable");
    assert_eq!(
        peer(&peers, "2001:db8:1::11")["state"],
        "Established",
        "BGP has not noticed: its hold time is 90 s"
    );
    // It wakes up: IPv6 back (disabling it dropped the address), gobgpd running again.
    lab.exec(
        &one,
        &["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"],
    );
    lab.addr(&one, "eth0", "2001:db8:1::11/64");
    lab.signal(&format!("gobgpd-{one}"), "CONT");
    wait_for("node 1's leg to return", Duration::from_secs(20), || {
        (legs(&lab, LB).len() == 2).then_some(())
    });
    lab.wait_route(POD1);
    wait_liveness(&lab, "2001:db8:1::11", "reachable");
}

#[test]
fn a_node_whose_agent_restarts_keeps_every_route_under_graceful_restart_with_no_change_in_the_table()
 {
    let Some(mut lab) = lab("agent restart", &[]) else {
        return;
    };
    let (one, _two) = two_nodes(&mut lab, "");
    let before = (legs(&lab, LB), legs(&lab, POD1));
    lab.stop(&format!("gobgpd-{one}"), "KILL");
    wait_for("node 1 to be Stale", Duration::from_secs(10), || {
        (peer(&lab.show("peers"), "2001:db8:1::11")["state"] == "Stale").then_some(())
    });
    // Many probe intervals (400 ms) with the node answering and no agent.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        assert_eq!((legs(&lab, LB), legs(&lab, POD1)), before);
        std::thread::sleep(Duration::from_millis(100));
    }
    let node = peer(&lab.show("peers"), "2001:db8:1::11").clone();
    assert_eq!(node["liveness"], "reachable", "{node}");
    let log = lab.log("cilium-peer");
    assert!(!log.contains("does not answer"), "{log}");
}

#[test]
fn bfd_down_from_frr_bfdd_takes_the_nodes_leg_out_and_it_returns_with_bfd() {
    let Some(mut lab) = common::bfdd::lab_with_bfdd("bfd with bfdd", &["gobgpd", "gobgp"]) else {
        return;
    };
    // Liveness off: BFD alone must do it.
    let (one, _two) = two_nodes(
        &mut lab,
        r#", "liveness": { "enable": false }, "bfd": { "enable": true }"#,
    );
    let bfdd = Bfdd::start(&mut lab, &one, &[("2001:db8:1::1", "2001:db8:1::11")]);
    wait_for(
        &format!("BFD up\n{}", lab.log("cilium-peer")),
        Duration::from_secs(20),
        || (peer(&lab.show("peers"), "2001:db8:1::11")["bfd"] == "up").then_some(()),
    );
    let stopped = Instant::now();
    lab.stop("bfdd", "KILL");
    wait_for("node 1's leg to leave", Duration::from_secs(10), || {
        (legs(&lab, LB) == ["2001:db8:1::12"]).then_some(())
    });
    lab.wait_no_route(POD1);
    eprintln!("bfdd stopped: leg gone after {:?}", stopped.elapsed());
    assert!(
        lab.log("cilium-peer").contains("BFD down"),
        "{}",
        lab.log("cilium-peer")
    );
    // BFD back; the agent reconnects (at once here) and announces again.
    bfdd.run(&mut lab);
    lab.gobgp(&one, &["neighbor", "2001:db8:1::1", "reset"]);
    lab.wait_gobgp_established(&one);
    wait_for("node 1's leg to return", Duration::from_secs(30), || {
        (legs(&lab, LB).len() == 2).then_some(())
    });
    lab.wait_route(POD1);
    wait_for("BFD up again", Duration::from_secs(20), || {
        (peer(&lab.show("peers"), "2001:db8:1::11")["bfd"] == "up").then_some(())
    });
}

#[test]
fn probing_fifty_nodes_on_a_busy_bridge_never_flaps_a_healthy_node() {
    let Some(mut lab) = lab("fifty nodes", &["ping"]) else {
        return;
    };
    lab.start_cilium_peer(&host_config(
        &lab,
        &["[::]:179"],
        "2001:db8:1::/64",
        r#", "max_prefixes": 100"#,
    ));
    let nodes: Vec<String> = (1..=50u8)
        .map(|n| {
            let v6 = format!("2001:db8:1::2:{n:x}");
            let ns = lab.node(&format!("n{n}"), &[&format!("{v6}/64")]);
            let node = GoBgpNode::cilium(&format!("10.0.0.{n}"), "2001:db8:1::1", &v6);
            lab.start_gobgp(&ns, &node);
            ns
        })
        .collect();
    for (n, ns) in nodes.iter().enumerate() {
        lab.wait_gobgp_established(ns);
        lab.announce(ns, &format!("10.244.{}.0/24", n + 1));
        lab.announce(ns, LB);
    }
    wait_for("50 ECMP legs", Duration::from_secs(60), || {
        (legs(&lab, LB).len() == 50).then_some(())
    });
    // A busy bridge: ten nodes pinging the host at 500 packets a second each, 1200 bytes.
    for ns in &nodes[..10] {
        lab.spawn(
            ns,
            &format!("ping-{ns}"),
            &["ping", "-q", "-i", "0.002", "-s", "1200", "2001:db8:1::1"],
        );
    }
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        assert_eq!(legs(&lab, LB).len(), 50, "{}", lab.log("cilium-peer"));
        std::thread::sleep(Duration::from_millis(250));
    }
    let peers = lab.show("peers");
    let peers = peers.as_array().unwrap();
    assert_eq!(peers.len(), 50);
    assert!(
        peers.iter().all(|p| p["liveness"] == "reachable"),
        "{peers:?}"
    );
    let log = lab.log("cilium-peer");
    assert!(!log.contains("does not answer"), "{log}");
}

#[test]
fn a_hung_node_peering_over_ipv4_is_found_by_arp_and_loses_its_leg_until_it_answers_again() {
    let Some(mut lab) = lab("hung IPv4 node", &[]) else {
        return;
    };
    lab.start_cilium_peer(&host_config(&lab, &["[::]:179"], "192.0.2.0/24", ""));
    let mut nodes = Vec::new();
    for n in 1..=2u8 {
        let v4 = format!("192.0.2.1{n}");
        let ns = lab.node(&n.to_string(), &[&format!("{v4}/24")]);
        lab.start_gobgp(&ns, &GoBgpNode::cilium(&v4, "192.0.2.1", &v4));
        lab.wait_gobgp_established(&ns);
        lab.announce(&ns, LB);
        nodes.push(ns);
    }
    wait_for("both ECMP legs", Duration::from_secs(30), || {
        (legs(&lab, LB).len() == 2).then_some(())
    });
    wait_liveness(&lab, "192.0.2.11", "reachable");
    // The ARP reply's sender MAC, in the bridge's forwarding database, names its port.
    wait_for("node 1's bridge port", Duration::from_secs(10), || {
        (peer(&lab.show("peers"), "192.0.2.11")["port"] == port_of(&lab, 1)).then_some(())
    });
    let one = &nodes[0];
    let hung = Instant::now();
    lab.signal(&format!("gobgpd-{one}"), "STOP");
    lab.exec(one, &["ip", "link", "set", "eth0", "arp", "off"]);
    wait_for("node 1's leg to leave", Duration::from_secs(10), || {
        (legs(&lab, LB) == ["192.0.2.12"]).then_some(())
    });
    eprintln!("hung IPv4 node: leg gone after {:?}", hung.elapsed());
    wait_liveness(&lab, "192.0.2.11", "unreachable");
    lab.exec(one, &["ip", "link", "set", "eth0", "arp", "on"]);
    lab.signal(&format!("gobgpd-{one}"), "CONT");
    wait_for("node 1's leg to return", Duration::from_secs(20), || {
        (legs(&lab, LB).len() == 2).then_some(())
    });
    wait_liveness(&lab, "192.0.2.11", "reachable");
}
