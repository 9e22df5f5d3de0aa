//! BFD against FRR's bfdd (Debian's `frr`) in network namespaces: our `bfd::Runtime` runs
//! in the lab's host namespace (on the bridge), bfdd in a node namespace. Needs root and
//! frr; without them each test prints SKIP and returns, unless `CI` is set, where it fails.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cilium_peer::bfd::socket::CONTROL_PORT;
use cilium_peer::bfd::{Diag, Event, Handle, Packet, Report, Runtime, Settings, State, Status};
use common::bfdd::Bfdd;
use common::{BRIDGE, Lab, wait_for};

const HOST_V6: &str = "2001:db8:1::1";
const HOST_V4: &str = "192.0.2.1";
const NODE_V6: &str = "2001:db8:1::11";
const NODE_V4: &str = "192.0.2.11";

fn lab_or_skip(test: &str) -> Option<Lab> {
    common::bfdd::lab_with_bfdd(test, &[])
}

fn settings() -> Settings {
    Settings {
        enable: true,
        ..Settings::default()
    }
}

/// Our runtime, on its own thread inside the lab's host namespace (a current-thread tokio
/// runtime, so that every socket it opens is in that namespace). Reports come with the
/// time they were sent.
struct Ours {
    handle: Handle,
    reports: mpsc::Receiver<(Instant, Report)>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Ours {
    fn start(lab: &Lab) -> Ours {
        Self::start_in(&lab.host)
    }

    fn start_in(ns: &str) -> Ours {
        let path = format!("/run/netns/{ns}");
        let (ready_tx, ready_rx) = mpsc::channel();
        let (report_tx, reports) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (handle, mut rx) = Runtime::spawn().expect("UDP 3784 in the namespace");
                ready_tx.send(handle).unwrap();
                tokio::spawn(async move {
                    while let Some(r) = rx.recv().await {
                        let _ = report_tx.send((Instant::now(), r));
                    }
                });
                let _ = stopped.await;
            });
        });
        Ours {
            handle: ready_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            reports,
            _stop: stop,
        }
    }

    fn next(&self, limit: Duration) -> (Instant, Report) {
        self.reports
            .recv_timeout(limit)
            .unwrap_or_else(|_| panic!("no BFD report within {limit:?}: {:#?}", self.status()))
    }

    fn status(&self) -> Status {
        futures::executor::block_on(self.handle.status())
    }

    fn state_of(&self, peer: &str) -> Option<State> {
        let peer: IpAddr = peer.parse().unwrap();
        self.status()
            .sessions
            .iter()
            .find(|s| s.peer == peer)
            .map(|s| s.state)
    }
}

fn bridge_ifindex(lab: &Lab) -> u32 {
    ifindex(lab, &lab.host, BRIDGE)
}

fn ifindex(lab: &Lab, ns: &str, dev: &str) -> u32 {
    let out = lab.exec(ns, &["ip", "-j", "link", "show", dev]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["ifindex"].as_u64().unwrap() as u32
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn our_runtime_and_bfdd_reach_up_over_ipv6_and_over_ipv4() {
    let Some(mut lab) = lab_or_skip("our_runtime_and_bfdd_reach_up_over_ipv6_and_over_ipv4") else {
        return;
    };
    let node = lab.node("1", &[&format!("{NODE_V4}/24"), &format!("{NODE_V6}/64")]);
    let bfdd = Bfdd::start(&mut lab, &node, &[(HOST_V6, NODE_V6), (HOST_V4, NODE_V4)]);
    let ours = Ours::start(&lab);
    let ifindex = bridge_ifindex(&lab);
    let start = Instant::now();
    ours.handle
        .add(ip(NODE_V6), ifindex, Some(ip(HOST_V6)), settings());
    ours.handle
        .add(ip(NODE_V4), ifindex, Some(ip(HOST_V4)), settings());
    let mut up = Vec::new();
    while up.len() < 2 {
        let (at, report) = ours.next(Duration::from_secs(10));
        assert_eq!(report.event, Event::Up, "{report:?}");
        assert_eq!(report.ifindex, ifindex);
        eprintln!("{} Up after {:?}", report.peer, at - start);
        up.push(report.peer);
    }
    up.sort();
    assert_eq!(up, [ip(NODE_V4), ip(NODE_V6)]);
    for peer in [HOST_V6, HOST_V4] {
        wait_for(
            &format!("bfdd to see {peer} up"),
            Duration::from_secs(5),
            || (bfdd.status_of(&lab, peer).as_deref() == Some("up")).then_some(()),
        );
    }
    // Once Up, both sides run at 300 ms and we detect in 3 x 300 ms.
    let status = ours.status();
    for s in &status.sessions {
        assert_eq!(s.state, State::Up);
        assert_eq!(s.transmit_interval_ms, Some(300), "{s:?}");
        assert_eq!(s.detection_time_ms, Some(900), "{s:?}");
        assert!((49152..=65535).contains(&s.source_port.unwrap()));
    }
    assert_eq!(status.counters.bad_ttl, 0);
    assert_eq!(status.counters.invalid, 0);
}

#[test]
fn killing_bfdd_takes_the_session_down_as_a_failure_and_bfdd_coming_back_brings_it_up() {
    let test = "killing_bfdd_takes_the_session_down_as_a_failure_and_bfdd_coming_back_brings_it_up";
    let Some(mut lab) = lab_or_skip(test) else {
        return;
    };
    let node = lab.node("1", &[&format!("{NODE_V4}/24"), &format!("{NODE_V6}/64")]);
    let bfdd = Bfdd::start(&mut lab, &node, &[(HOST_V6, NODE_V6)]);
    let ours = Ours::start(&lab);
    let ifindex = bridge_ifindex(&lab);
    ours.handle
        .add(ip(NODE_V6), ifindex, Some(ip(HOST_V6)), settings());
    assert_eq!(ours.next(Duration::from_secs(10)).1.event, Event::Up);
    // Let the Poll Sequence settle to 300 ms on both sides.
    std::thread::sleep(Duration::from_secs(1));

    let mut detections = Vec::new();
    for round in 0..3 {
        let killed = Instant::now();
        lab.stop("bfdd", "KILL");
        let (at, report) = ours.next(Duration::from_secs(10));
        assert_eq!(
            report.event,
            Event::Down {
                diag: Diag::CONTROL_DETECTION_TIME_EXPIRED,
                peer_admin_down: false
            }
        );
        assert!(report.event.is_failure());
        detections.push(at - killed);
        eprintln!("round {round}: bfdd killed, Down after {:?}", at - killed);

        let restarted = Instant::now();
        bfdd.run(&mut lab);
        let (at, report) = ours.next(Duration::from_secs(10));
        assert_eq!(report.event, Event::Up);
        eprintln!(
            "round {round}: bfdd restarted, Up after {:?}",
            at - restarted
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!("detection times after kill (300 ms x 3): {detections:?}");
}

#[test]
fn bfdd_shutdown_is_reported_as_admin_down_and_not_as_a_failure() {
    let Some(mut lab) = lab_or_skip("bfdd_shutdown_is_reported_as_admin_down_and_not_as_a_failure")
    else {
        return;
    };
    let node = lab.node("1", &[&format!("{NODE_V4}/24"), &format!("{NODE_V6}/64")]);
    let bfdd = Bfdd::start(&mut lab, &node, &[(HOST_V4, NODE_V4)]);
    let ours = Ours::start(&lab);
    let ifindex = bridge_ifindex(&lab);
    ours.handle
        .add(ip(NODE_V4), ifindex, Some(ip(HOST_V4)), settings());
    assert_eq!(ours.next(Duration::from_secs(10)).1.event, Event::Up);

    bfdd.peer_command(&lab, HOST_V4, NODE_V4, "shutdown");
    let (_, report) = ours.next(Duration::from_secs(10));
    assert_eq!(
        report.event,
        Event::Down {
            diag: Diag::NEIGHBOR_SIGNALED_SESSION_DOWN,
            peer_admin_down: true
        }
    );
    assert!(!report.event.is_failure());
    // It stays down without another report while bfdd keeps it shut down.
    assert!(
        ours.reports.recv_timeout(Duration::from_secs(3)).is_err(),
        "no flapping while the peer is AdminDown"
    );
    assert_eq!(ours.state_of(NODE_V4), Some(State::Down));

    bfdd.peer_command(&lab, HOST_V4, NODE_V4, "no shutdown");
    assert_eq!(ours.next(Duration::from_secs(10)).1.event, Event::Up);
    wait_for("bfdd to see us up again", Duration::from_secs(5), || {
        (bfdd.status_of(&lab, HOST_V4).as_deref() == Some("up")).then_some(())
    });

    // Our side going away says AdminDown too: bfdd shows it down, not failed.
    ours.handle.remove(ip(NODE_V4), ifindex);
    let out = wait_for("bfdd to see our AdminDown", Duration::from_secs(5), || {
        let out = bfdd.vtysh(&lab, &["show bfd peers"]);
        out.contains("Diagnostics: neighbor signaled session down")
            .then_some(out)
    });
    assert!(
        out.contains("Remote diagnostics: administratively down"),
        "{out}"
    );
}

/// A valid Down packet from the node, as a node with discriminator 0x5eed would send it.
fn down_packet() -> [u8; 24] {
    Packet {
        diag: Diag::NONE,
        state: State::Down,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: 0x5eed,
        your_discriminator: 0,
        desired_min_tx_us: 1_000_000,
        required_min_rx_us: 300_000,
        required_min_echo_rx_us: 0,
    }
    .encode()
}

/// Sends `down_packet` from `source` in `ns` to the host with this TTL / hop limit.
fn send_with_ttl(lab: &Lab, ns: &str, source: &str, destination: &str, ttl: u32) {
    let (source, destination) = (ip(source), ip(destination));
    lab.in_namespace(ns, move || {
        use socket2::{Domain, Protocol, SockAddr, Socket, Type};
        let v6 = source.is_ipv6();
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        if v6 {
            socket.set_unicast_hops_v6(ttl).unwrap();
        } else {
            socket.set_ttl_v4(ttl).unwrap();
        }
        socket
            .bind(&SockAddr::from(SocketAddr::new(source, 49999)))
            .unwrap();
        let to = SockAddr::from(SocketAddr::new(destination, CONTROL_PORT));
        socket.send_to(&down_packet(), &to).unwrap();
    });
}

#[test]
fn a_packet_with_a_ttl_below_255_is_dropped_and_the_same_with_255_is_taken() {
    let test = "a_packet_with_a_ttl_below_255_is_dropped_and_the_same_with_255_is_taken";
    let Some(mut lab) = lab_or_skip(test) else {
        return;
    };
    let node = lab.node("1", &[&format!("{NODE_V4}/24"), &format!("{NODE_V6}/64")]);
    let ours = Ours::start(&lab);
    let ifindex = bridge_ifindex(&lab);
    // Passive: we stay quiet, so only the test's packets move the sessions.
    let passive = Settings {
        passive: true,
        ..settings()
    };
    ours.handle
        .add(ip(NODE_V6), ifindex, Some(ip(HOST_V6)), passive);
    ours.handle
        .add(ip(NODE_V4), ifindex, Some(ip(HOST_V4)), passive);
    for (node_addr, host_addr) in [(NODE_V6, HOST_V6), (NODE_V4, HOST_V4)] {
        let before = ours.status().counters;
        send_with_ttl(&lab, &node, node_addr, host_addr, 254);
        send_with_ttl(&lab, &node, node_addr, host_addr, 64);
        wait_for(
            "two packets dropped for their TTL",
            Duration::from_secs(5),
            || (ours.status().counters.bad_ttl == before.bad_ttl + 2).then_some(()),
        );
        assert_eq!(ours.state_of(node_addr), Some(State::Down), "{node_addr}");

        send_with_ttl(&lab, &node, node_addr, host_addr, 255);
        wait_for(
            &format!("{node_addr}'s TTL 255 packet to move the session to Init"),
            Duration::from_secs(5),
            || (ours.state_of(node_addr) == Some(State::Init)).then_some(()),
        );
        let after = ours.status().counters;
        assert_eq!(after.received, before.received + 3);
        assert_eq!(after.invalid + after.no_session, 0);
    }
}

#[test]
fn two_of_our_runtimes_reach_up_over_ipv6_link_local_addresses() {
    // bfdd cannot take part here: a link-local peer needs `interface`, which waits for zebra.
    let test = "two_of_our_runtimes_reach_up_over_ipv6_link_local_addresses";
    let Some(mut lab) = lab_or_skip(test) else {
        return;
    };
    let node = lab.node("1", &[&format!("{NODE_V6}/64")]);
    let node_ll = common::link_local(&lab, &node, "eth0");
    let host = Ours::start(&lab);
    let guest = Ours::start_in(&node);
    // No local address given: the kernel picks the link-local source for the scope.
    host.handle
        .add(ip(&node_ll), bridge_ifindex(&lab), None, settings());
    guest.handle.add(
        ip("fe80::1"),
        ifindex(&lab, &node, "eth0"),
        None,
        settings(),
    );
    assert_eq!(host.next(Duration::from_secs(10)).1.event, Event::Up);
    assert_eq!(guest.next(Duration::from_secs(10)).1.event, Event::Up);
    std::thread::sleep(Duration::from_millis(500));
    let status = host.status();
    assert_eq!(status.sessions[0].state, State::Up);
    assert_eq!(status.sessions[0].transmit_interval_ms, Some(300));

    // The guest's session goes: it says AdminDown, which the host reports as such.
    guest
        .handle
        .remove(ip("fe80::1"), ifindex(&lab, &node, "eth0"));
    let (_, report) = host.next(Duration::from_secs(5));
    assert_eq!(
        report.event,
        Event::Down {
            diag: Diag::NEIGHBOR_SIGNALED_SESSION_DOWN,
            peer_admin_down: true
        }
    );
}
