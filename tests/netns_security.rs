//! The transport defences against real GoBGP peers in network namespaces: TCP-MD5 keys for
//! whole neighbor ranges (IPv4 and IPv6 on one `[::]` socket, changed by reload on the live
//! socket) and GTSM per neighbor group. A refused peer must leave nothing behind: no
//! session in `show peers`, no half-open connection in the kernel.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// A host config listening on `[::]:179` with these neighbor groups (see `group`).
fn config_json(lab: &Lab, groups: &[Value]) -> Value {
    merged(
        base_config(lab),
        json!({ "kernel": { "persist": false }, "neighbors": groups }),
    )
}

fn config(lab: &Lab, groups: &[Value]) -> String {
    config_json(lab, groups).to_string()
}

/// Addresses of the sessions `show peers` lists, with their state.
fn peers(lab: &Lab) -> Vec<(String, String)> {
    let mut peers: Vec<(String, String)> = lab
        .show("peers")
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["address"].as_str().unwrap().to_string(),
                p["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    peers.sort();
    peers
}

/// One kernel counter of the host namespace (`nstat`, absolute, history untouched).
fn counter(lab: &Lab, name: &str) -> u64 {
    let out = lab.exec(&lab.host, &["nstat", "-asz", name]);
    out.lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(name)).then(|| words.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {name} in {out}"))
}

/// Waits until the kernel counter `name` of the host passes `above`: the refused peer's
/// packets did arrive, and were dropped for the reason the counter names.
fn wait_counter(lab: &Lab, name: &str, above: u64) -> u64 {
    wait_for(
        &format!("{name} to pass {above}"),
        Duration::from_secs(15),
        || {
            let now = counter(lab, name);
            (now > above).then_some(now)
        },
    )
}

/// Waits until the node in `ns` has a connection to port 179 stuck in SYN-SENT: it tried,
/// and the host did not answer.
fn wait_syn_sent(lab: &Lab, ns: &str) {
    wait_for(
        &format!("{ns} to send a SYN that gets no answer"),
        Duration::from_secs(15),
        || {
            let out = lab.exec(ns, &["ss", "-Htn", "state", "syn-sent"]);
            out.contains(":179").then_some(())
        },
    );
}

/// Neither a session nor any TCP state in the host for these peer addresses.
fn assert_nothing_from(lab: &Lab, addresses: &[&str]) {
    let sockets = lab.exec(&lab.host, &["ss", "-Htna"]);
    let peers = peers(lab);
    for address in addresses {
        assert!(
            !peers.iter().any(|(a, _)| a == address),
            "{address} has a session: {peers:?}"
        );
        let mapped = format!("::ffff:{address}");
        assert!(
            !sockets.lines().any(|l| l
                .split_whitespace()
                .any(|w| w.starts_with(&format!("{address}:"))
                    || w.starts_with(&format!("[{address}]:"))
                    || w.starts_with(&format!("[{mapped}]:")))),
            "{address} left TCP state in the host:\n{sockets}"
        );
    }
}

fn gobgp_established(lab: &Lab, ns: &str) -> bool {
    lab.gobgp(ns, &["neighbor"]).contains("Establ")
}

fn node(
    router_id: &'static str,
    neighbor: &'static str,
    local: &'static str,
    key: Option<&'static str>,
) -> GoBgpNode {
    GoBgpNode {
        auth_password: key,
        ..GoBgpNode::cilium(router_id, neighbor, local)
    }
}

#[test]
fn tcp_md5_keys_cover_whole_ipv6_and_ipv4_ranges_and_wrong_or_missing_keys_get_nothing() {
    let Some(mut lab) = lab_or_skip("tcp-md5 ranges", &["gobgpd", "gobgp", "nstat", "ss"]) else {
        return;
    };
    let key = lab.write("md5.key", "s3cret-key\n");
    let key = key.display().to_string();
    let v6 = lab.node("a", &["2001:db8:1::11/64"]);
    let v4 = lab.node("b", &["192.0.2.12/24"]);
    let v6_wrong = lab.node("c", &["2001:db8:1::13/64"]);
    let v4_none = lab.node("d", &["192.0.2.14/24"]);
    let v4_wrong = lab.node("e", &["192.0.2.15/24"]);
    let groups = [
        group("six", "2001:db8:1::/64", json!({ "password_file": key })),
        group("four", "192.0.2.0/24", json!({ "password_file": key })),
    ];
    lab.start_cilium_peer(&config(&lab, &groups));
    assert!(
        !lab.log("cilium-peer").contains("s3cret"),
        "the key shows in the log"
    );

    let failures = counter(&lab, "TcpExtTCPMD5Failure");
    let not_found = counter(&lab, "TcpExtTCPMD5NotFound");
    // The right key, over IPv6 and over IPv4 (an IPv4 range on the `[::]` socket); a wrong
    // key over IPv6 and IPv4, and none at all over IPv4.
    let nodes = [
        (
            &v6,
            node(
                "192.0.2.11",
                "2001:db8:1::1",
                "2001:db8:1::11",
                Some("s3cret-key"),
            ),
        ),
        (
            &v4,
            node("192.0.2.12", "192.0.2.1", "192.0.2.12", Some("s3cret-key")),
        ),
        (
            &v6_wrong,
            node(
                "192.0.2.13",
                "2001:db8:1::1",
                "2001:db8:1::13",
                Some("guess"),
            ),
        ),
        (
            &v4_none,
            node("192.0.2.14", "192.0.2.1", "192.0.2.14", None),
        ),
        (
            &v4_wrong,
            node("192.0.2.15", "192.0.2.1", "192.0.2.15", Some("s3cret-kez")),
        ),
    ];
    for (ns, gobgp) in &nodes {
        lab.start_gobgp(ns, gobgp);
    }
    lab.wait_gobgp_established(&v6);
    lab.wait_gobgp_established(&v4);
    lab.gobgp(
        &v4,
        &[
            "global",
            "rib",
            "add",
            "-a",
            "ipv4",
            "10.244.2.0/24",
            "origin",
            "igp",
        ],
    );
    lab.wait_route("10.244.2.0/24");

    // Each refused node did try: its SYN went out and got no answer at all, and the host's
    // kernel counted signatures that failed and signatures that were missing.
    for ns in [&v6_wrong, &v4_none, &v4_wrong] {
        wait_syn_sent(&lab, ns);
    }
    wait_counter(&lab, "TcpExtTCPMD5Failure", failures);
    wait_counter(&lab, "TcpExtTCPMD5NotFound", not_found);
    assert_eq!(
        peers(&lab),
        [
            ("192.0.2.12".to_string(), "Established".to_string()),
            ("2001:db8:1::11".to_string(), "Established".to_string()),
        ]
    );
    assert_nothing_from(&lab, &["2001:db8:1::13", "192.0.2.14", "192.0.2.15"]);
    for ns in [&v6_wrong, &v4_none, &v4_wrong] {
        assert!(!gobgp_established(&lab, ns), "{ns} got a session");
    }
    assert!(!lab.log("cilium-peer").contains("s3cret"));
}

#[test]
fn a_reload_changes_and_removes_keys_on_the_live_listening_socket() {
    let Some(mut lab) = lab_or_skip("tcp-md5 reload", &["gobgpd", "gobgp", "nstat", "ss"]) else {
        return;
    };
    let key = lab.write("md5.key", "old-key");
    let keyed = [group(
        "cilium",
        "2001:db8:1::/64",
        json!({ "password_file": key }),
    )];
    let a = lab.node("a", &["2001:db8:1::11/64"]);
    let b = lab.node("b", &["2001:db8:1::12/64"]);
    lab.start_cilium_peer(&config(&lab, &keyed));
    let failures = counter(&lab, "TcpExtTCPMD5Failure");
    let not_found = counter(&lab, "TcpExtTCPMD5NotFound");
    lab.start_gobgp(
        &a,
        &node(
            "192.0.2.11",
            "2001:db8:1::1",
            "2001:db8:1::11",
            Some("new-key"),
        ),
    );
    lab.start_gobgp(
        &b,
        &node("192.0.2.12", "2001:db8:1::1", "2001:db8:1::12", None),
    );
    wait_counter(&lab, "TcpExtTCPMD5Failure", failures);
    wait_counter(&lab, "TcpExtTCPMD5NotFound", not_found);
    assert!(peers(&lab).is_empty(), "{:?}", peers(&lab));

    // The file gets the node's key: same config, new key on the live socket.
    lab.write("md5.key", "new-key\n");
    lab.reload_cilium_peer(&config(&lab, &keyed));
    lab.wait_gobgp_established(&a);
    assert_eq!(
        peers(&lab),
        [("2001:db8:1::11".to_string(), "Established".to_string())]
    );
    assert_nothing_from(&lab, &["2001:db8:1::12"]);

    // No password_file any more: the key goes, and the node without one gets in.
    lab.reload_cilium_peer(&config(
        &lab,
        &[group("cilium", "2001:db8:1::/64", json!({}))],
    ));
    lab.wait_gobgp_established(&b);
    assert!(
        peers(&lab).contains(&("2001:db8:1::12".to_string(), "Established".to_string())),
        "{:?}",
        peers(&lab)
    );
}

#[test]
fn an_unreadable_password_file_stops_the_start_naming_the_file() {
    let Some(lab) = lab_or_skip("tcp-md5 missing key file", &[]) else {
        return;
    };
    let groups = [group(
        "cilium",
        "2001:db8:1::/64",
        json!({ "password_file": "/nonexistent/cilium-peer.key" }),
    )];
    let path = lab.write("config.json", &config(&lab, &groups));
    let out = lab.try_exec(
        &lab.host,
        &[
            env!("CARGO_BIN_EXE_cilium-peer"),
            "run",
            "--config",
            path.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("neighbors[0].password_file: cannot read /nonexistent/cilium-peer.key"),
        "{stderr}"
    );
    // `check` validates the path only: the file need not exist where the config is built.
    let check = lab.try_exec(
        &lab.host,
        &[
            env!("CARGO_BIN_EXE_cilium-peer"),
            "check",
            "--config",
            path.to_str().unwrap(),
        ],
    );
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

fn gtsm_node(router_id: &'static str, neighbor: &'static str, local: &'static str) -> GoBgpNode {
    GoBgpNode {
        ttl_security: true,
        ..GoBgpNode::cilium(router_id, neighbor, local)
    }
}

fn established(address: &str) -> (String, String) {
    (address.to_string(), "Established".to_string())
}

#[test]
fn gtsm_on_every_group_lets_in_only_peers_sending_with_ttl_255_over_ipv6_and_ipv4() {
    let Some(mut lab) = lab_or_skip("gtsm on the listener", &["gobgpd", "gobgp", "nstat", "ss"])
    else {
        return;
    };
    let gtsm = || json!({ "ttl_security": true });
    let groups = [
        group("six", "2001:db8:1::/64", gtsm()),
        group("four", "192.0.2.0/24", gtsm()),
    ];
    let v6 = lab.node("a", &["2001:db8:1::11/64"]);
    let v4 = lab.node("b", &["192.0.2.12/24"]);
    let v6_plain = lab.node("c", &["2001:db8:1::13/64"]);
    let v4_plain = lab.node("d", &["192.0.2.14/24"]);
    lab.start_cilium_peer(&config(&lab, &groups));
    let drops = counter(&lab, "TcpExtTCPMinTTLDrop");
    lab.start_gobgp(
        &v6,
        &gtsm_node("192.0.2.11", "2001:db8:1::1", "2001:db8:1::11"),
    );
    lab.start_gobgp(&v4, &gtsm_node("192.0.2.12", "192.0.2.1", "192.0.2.12"));
    // Cilium's GoBGP as it is: the kernel's default TTL (64) and hop limit.
    lab.start_gobgp(
        &v6_plain,
        &GoBgpNode::cilium("192.0.2.13", "2001:db8:1::1", "2001:db8:1::13"),
    );
    lab.start_gobgp(
        &v4_plain,
        &GoBgpNode::cilium("192.0.2.14", "192.0.2.1", "192.0.2.14"),
    );
    // The GTSM nodes drop anything below 255 themselves: their sessions prove that we
    // send with 255, SYN-ACK included.
    lab.wait_gobgp_established(&v6);
    lab.wait_gobgp_established(&v4);
    lab.gobgp(
        &v4,
        &[
            "global",
            "rib",
            "add",
            "-a",
            "ipv4",
            "10.244.2.0/24",
            "origin",
            "igp",
        ],
    );
    lab.wait_route("10.244.2.0/24");
    // The others' SYNs never get an answer: the kernel drops them for their TTL.
    wait_syn_sent(&lab, &v6_plain);
    wait_syn_sent(&lab, &v4_plain);
    wait_counter(&lab, "TcpExtTCPMinTTLDrop", drops);
    assert_eq!(
        peers(&lab),
        [established("192.0.2.12"), established("2001:db8:1::11")]
    );
    assert_nothing_from(&lab, &["2001:db8:1::13", "192.0.2.14"]);
}

#[test]
fn gtsm_on_one_group_refuses_its_peers_whose_syn_came_with_a_lower_ttl() {
    let Some(mut lab) = lab_or_skip("gtsm per group", &["gobgpd", "gobgp", "ss"]) else {
        return;
    };
    // One socket serves both groups, so the kernel cannot filter by TTL for us: the
    // daemon checks the saved SYN of each connection of the GTSM group.
    let groups = [
        group("gtsm", "2001:db8:1::/64", json!({ "ttl_security": true })),
        group("plain", "192.0.2.0/24", json!({})),
    ];
    let gtsm = lab.node("a", &["2001:db8:1::11/64"]);
    let gtsm_plain = lab.node("b", &["2001:db8:1::12/64"]);
    let plain = lab.node("c", &["192.0.2.13/24"]);
    lab.start_cilium_peer(&config(&lab, &groups));
    lab.start_gobgp(
        &gtsm,
        &gtsm_node("192.0.2.11", "2001:db8:1::1", "2001:db8:1::11"),
    );
    lab.start_gobgp(
        &gtsm_plain,
        &GoBgpNode::cilium("192.0.2.12", "2001:db8:1::1", "2001:db8:1::12"),
    );
    lab.start_gobgp(
        &plain,
        &GoBgpNode::cilium("192.0.2.13", "192.0.2.1", "192.0.2.13"),
    );
    lab.wait_gobgp_established(&gtsm);
    lab.wait_gobgp_established(&plain);
    wait_for(
        "the GTSM group's peer with TTL 64 to be refused",
        Duration::from_secs(15),
        || {
            lab.log("cilium-peer")
                .contains("GTSM: its SYN arrived with TTL 64")
                .then_some(())
        },
    );
    assert_eq!(
        peers(&lab),
        [established("192.0.2.13"), established("2001:db8:1::11")]
    );
    assert!(!gobgp_established(&lab, &gtsm_plain));
    // Refused at once: no session, and the connection closed.
    wait_for(
        "the refused connection to close",
        Duration::from_secs(5),
        || {
            let sockets = lab.exec(&lab.host, &["ss", "-Htn", "state", "established"]);
            (!sockets.contains("2001:db8:1::12")).then_some(())
        },
    );
}

/// The capability bits of CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_NET_RAW (13).
const THREE_CAPABILITIES: u64 = 1 << 10 | 1 << 12 | 1 << 13;

#[test]
fn the_daemon_runs_as_nobody_with_only_net_admin_net_raw_and_net_bind_service() {
    let Some(mut lab) = lab_or_skip("unprivileged daemon", &["gobgpd", "gobgp", "setpriv"]) else {
        return;
    };
    // What systemd's RuntimeDirectory and LoadCredential give the service: a directory it
    // owns for the control socket, and a key file it may read.
    let run = lab.dir.join("run");
    std::fs::create_dir(&run).unwrap();
    sh(&["chown", "nobody:nogroup", run.to_str().unwrap()]);
    let key = lab.write("md5.key", "s3cret\n");
    sh(&["chown", "nobody:nogroup", key.to_str().unwrap()]);
    sh(&["chmod", "0400", key.to_str().unwrap()]);
    let socket = run.join("control.sock");
    let mut config = config_json(
        &lab,
        &[group(
            "cilium",
            "2001:db8:1::/64",
            json!({ "password_file": key }),
        )],
    );
    config["control_socket"] = json!(socket);
    let path = lab.write("config.json", &config.to_string());
    let ns = lab.node("a", &["2001:db8:1::11/64"]);
    let caps = "+net_admin,+net_raw,+net_bind_service";
    let host = lab.host.clone();
    lab.spawn(
        &host,
        "cilium-peer",
        &[
            "setpriv",
            "--reuid",
            "nobody",
            "--regid",
            "nogroup",
            "--clear-groups",
            "--inh-caps",
            caps,
            "--ambient-caps",
            caps,
            env!("CARGO_BIN_EXE_cilium-peer"),
            "run",
            "--config",
            path.to_str().unwrap(),
        ],
    );
    let show = |what: &str| {
        let request = cilium_peer::control::Request::parse(what).expect("a request");
        cilium_peer::control::query(&socket, request)
    };
    wait_for(
        &format!(
            "the unprivileged daemon's control socket\n{}",
            lab.log("cilium-peer")
        ),
        Duration::from_secs(10),
        || show("peers").ok(),
    );

    // It is nobody, with these three capabilities and no others.
    let pids = sh(&["ip", "netns", "pids", &lab.host]);
    let status = pids
        .split_whitespace()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .find(|s| s.starts_with("Name:\tcilium-peer"))
        .expect("the daemon's /proc status");
    let field = |name: &str| -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:\t")))
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .to_string()
    };
    assert_eq!(field("Uid").split_whitespace().next(), Some("65534"));
    assert_eq!(field("Gid").split_whitespace().next(), Some("65534"));
    for set in ["CapEff", "CapPrm", "CapAmb"] {
        assert_eq!(
            u64::from_str_radix(&field(set), 16).unwrap(),
            THREE_CAPABILITIES,
            "{set}"
        );
    }

    // Port 179 with a TCP-MD5 key (CAP_NET_BIND_SERVICE), routes in the kernel
    // (CAP_NET_ADMIN), router advertisements on the bridge (CAP_NET_RAW).
    lab.start_gobgp(
        &ns,
        &node(
            "192.0.2.11",
            "2001:db8:1::1",
            "2001:db8:1::11",
            Some("s3cret"),
        ),
    );
    lab.wait_gobgp_established(&ns);
    for (family, prefix) in [("ipv4", "10.244.1.0/24"), ("ipv6", "fd00:ff00:1::/64")] {
        lab.gobgp(
            &ns,
            &[
                "global", "rib", "add", "-a", family, prefix, "origin", "igp",
            ],
        );
    }
    let v4 = lab.wait_route("10.244.1.0/24");
    assert_eq!(v4["via"]["host"], "2001:db8:1::11", "{v4}");
    lab.wait_route("fd00:ff00:1::/64");
    wait_for(
        "a router advertisement sent",
        Duration::from_secs(10),
        || {
            let bridges = show("bridges").ok()?;
            (bridges[0]["ra"]["ras_sent"].as_u64()? > 0).then_some(())
        },
    );
    let peers = show("peers").unwrap();
    assert_eq!(peers[0]["state"], "Established", "{peers}");
    assert_eq!(peers[0]["installed"], 2, "{peers}");
    assert!(
        !lab.log("cilium-peer").contains("ermission denied"),
        "{}",
        lab.log("cilium-peer")
    );
}
