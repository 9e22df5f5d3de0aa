//! A scripted hostile peer, built on our own codec and raw TCP sockets opened inside a node
//! namespace, against the real daemon: malformed messages get the NOTIFICATION the RFCs
//! name (or, where RFC 7606 says so, their routes are treated as withdrawn and the session
//! stays up), looped AS_PATHs are not installed, and connect storms and peers that never
//! finish OPEN are held off, while a real GoBGP node's session stays up (its uptime never
//! resets) and its routes stay installed.

mod common;

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use cilium_peer::bgp::wire::{
    self, AsPath, Capability, Context, Family, Message, MpNextHop, MpReach, Open, Origin,
    PathAttributes, Update,
};
use common::*;
use serde_json::{Value, json};

const HOSTILE_AS: u32 = 65200;
const HOST: &str = "[2001:db8:1::1]:179";

/// The host config: the GoBGP nodes' iBGP group and an eBGP group for the hostile peer.
fn config(lab: &Lab, max_half_open: usize) -> String {
    merged(
        base_config(lab),
        json!({
            "kernel": { "persist": false },
            "neighbors": [
                group("cilium", "2001:db8:1::/120", json!({})),
                group("hostile", "2001:db8:1::100/120", json!({ "asn": HOSTILE_AS })),
            ],
            "limits": { "max_half_open": max_half_open },
        }),
    )
    .to_string()
}

/// A TCP connection from `source` inside namespace `ns`: a thread joins the namespace,
/// and the socket stays in it wherever it is used afterwards.
fn connect_from(
    ns: &str,
    source: IpAddr,
    to: SocketAddr,
    count: usize,
) -> Vec<io::Result<TcpStream>> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        let netns = File::open(format!("/run/netns/{ns}")).expect("namespace file");
        // SAFETY: setns on this thread only, with a namespace fd we own.
        let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", io::Error::last_os_error());
        (0..count)
            .map(|_| {
                let socket = socket2::Socket::new(
                    socket2::Domain::for_address(to),
                    socket2::Type::STREAM,
                    None,
                )?;
                socket.bind(&SocketAddr::new(source, 0).into())?;
                socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
                Ok(socket.into())
            })
            .collect()
    })
    .join()
    .expect("connect thread")
}

/// One hostile connection speaking BGP through our codec.
struct Peer {
    stream: TcpStream,
    address: Ipv6Addr,
    buffer: Vec<u8>,
    ctx: Context,
}

impl Peer {
    fn connect(ns: &str, address: &str) -> Peer {
        let address: Ipv6Addr = address.parse().unwrap();
        let stream = connect_from(ns, IpAddr::V6(address), HOST.parse().unwrap(), 1)
            .pop()
            .unwrap()
            .unwrap_or_else(|e| panic!("connect from {address}: {e}"));
        Peer {
            stream,
            address,
            buffer: Vec::new(),
            ctx: Context::default(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    fn send_message(&mut self, message: &Message) {
        let bytes = wire::encode(message, &self.ctx);
        self.send(&bytes);
    }

    /// The next message from the daemon; `None` when the connection closed or nothing came
    /// within `within`.
    fn receive(&mut self, within: Duration) -> Option<Message> {
        let deadline = Instant::now() + within;
        loop {
            if let Some((message, used)) =
                wire::decode(&self.buffer, &self.ctx).expect("the daemon sends valid BGP")
            {
                self.buffer.drain(..used);
                return Some(message);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    /// OPEN both ways and KEEPALIVEs: the session is Established.
    fn establish(&mut self) {
        let Some(Message::Open(theirs)) = self.receive(Duration::from_secs(5)) else {
            panic!("no OPEN from the daemon");
        };
        assert_eq!(
            theirs.capabilities.iter().find_map(|c| match c {
                Capability::FourOctetAs(asn) => Some(*asn),
                _ => None,
            }),
            Some(65100)
        );
        let octets = self.address.octets();
        self.send_message(&Message::Open(Open {
            version: 4,
            my_as: Open::my_as_field(HOSTILE_AS),
            hold_time: 90,
            bgp_identifier: [198, 51, 100, octets[15]].into(),
            capabilities: vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::Multiprotocol(Family::IPV6_UNICAST),
                Capability::FourOctetAs(HOSTILE_AS),
            ],
        }));
        self.ctx = Context {
            four_octet_as: true,
        };
        self.send_message(&Message::Keepalive);
        while !matches!(
            self.receive(Duration::from_secs(5)),
            Some(Message::Keepalive)
        ) {}
    }

    /// A well-formed UPDATE announcing IPv6 prefixes with us as next hop.
    fn announce(&mut self, prefixes: &[&str], as_path: &[u32]) {
        let update = Update {
            attributes: PathAttributes {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::from_sequence(as_path.to_vec())),
                mp_reach: Some(MpReach {
                    family: Family::IPV6_UNICAST,
                    next_hop: MpNextHop {
                        address: IpAddr::V6(self.address),
                        link_local: None,
                    },
                    nlri: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
                }),
                ..PathAttributes::default()
            },
            ..Update::default()
        };
        self.send_message(&Message::Update(update));
    }

    /// Reads until a NOTIFICATION arrives: its code and subcode.
    fn notification(&mut self) -> (u8, u8) {
        loop {
            match self.receive(Duration::from_secs(5)) {
                Some(Message::Notification(n)) => return (n.code, n.subcode),
                Some(_) => {}
                None => panic!(
                    "the connection of {} ended without a NOTIFICATION",
                    self.address
                ),
            }
        }
    }

    /// No NOTIFICATION and no close: a KEEPALIVE sent now is simply taken.
    fn assert_up(&mut self) {
        self.send_message(&Message::Keepalive);
        let deadline = Instant::now() + Duration::from_millis(300);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.receive(left) {
                Some(Message::Notification(n)) => panic!("{} got {n}", self.address),
                Some(_) => {}
                None => {
                    let mut probe = [0u8; 1];
                    self.stream.set_nonblocking(true).unwrap();
                    let closed = matches!(self.stream.peek(&mut probe), Ok(0));
                    self.stream.set_nonblocking(false).unwrap();
                    assert!(!closed, "{}: the daemon closed the session", self.address);
                    return;
                }
            }
        }
    }
}

// Raw builders for what our encoder refuses to produce.

fn message(message_type: u8, body: &[u8]) -> Vec<u8> {
    let mut out = wire::MARKER.to_vec();
    out.extend_from_slice(&((wire::HEADER_LEN + body.len()) as u16).to_be_bytes());
    out.push(message_type);
    out.extend_from_slice(body);
    out
}

fn update(attributes: &[Vec<u8>]) -> Vec<u8> {
    let attributes = attributes.concat();
    let mut body = vec![0, 0];
    body.extend_from_slice(&(attributes.len() as u16).to_be_bytes());
    body.extend_from_slice(&attributes);
    message(wire::UPDATE, &body)
}

fn attribute(flags: u8, type_code: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![flags, type_code, value.len() as u8];
    out.extend_from_slice(value);
    out
}

fn origin() -> Vec<u8> {
    attribute(wire::FLAG_TRANSITIVE, wire::ORIGIN, &[0])
}

fn as_path(asns: &[u32]) -> Vec<u8> {
    let mut value = vec![2, asns.len() as u8];
    for asn in asns {
        value.extend_from_slice(&asn.to_be_bytes());
    }
    attribute(wire::FLAG_TRANSITIVE, wire::AS_PATH, &value)
}

/// The prefix in NLRI form: length, then the octets it needs.
fn nlri(prefix: &str) -> Vec<u8> {
    let net: ipnet::Ipv6Net = prefix.parse().unwrap();
    let len = net.prefix_len();
    let mut out = vec![len];
    out.extend_from_slice(&net.addr().octets()[..usize::from(len).div_ceil(8)]);
    out
}

fn mp_reach_value(next_hop: Ipv6Addr, nlri: &[u8]) -> Vec<u8> {
    let mut value = vec![0, 2, 1, 16];
    value.extend_from_slice(&next_hop.octets());
    value.push(0);
    value.extend_from_slice(nlri);
    value
}

fn mp_reach(next_hop: Ipv6Addr, prefix: &str) -> Vec<u8> {
    attribute(
        wire::FLAG_OPTIONAL,
        wire::MP_REACH_NLRI,
        &mp_reach_value(next_hop, &nlri(prefix)),
    )
}

/// The lab: the host, one GoBGP node with an IPv4 and an IPv6 pod CIDR installed, and a
/// hostile namespace owning `2001:db8:1::100` to `::1ff`.
struct Scene {
    lab: Lab,
    node: String,
    hostile: String,
    gobgp_uptime: Value,
    started: Instant,
}

impl Scene {
    fn new(test: &str, max_half_open: usize) -> Option<Scene> {
        let mut lab = lab_or_skip(test, &["gobgpd", "gobgp"])?;
        let node = lab.node("a", &["192.0.2.11/24", "2001:db8:1::11/64"]);
        let hostile = lab.node("h", &["2001:db8:1::100/64"]);
        let batch: String = (0x101..=0x1ff)
            .map(|i| format!("address add 2001:db8:1::{i:x}/64 dev eth0 nodad\n"))
            .collect();
        let batch = lab.write("hostile-addresses", &batch);
        lab.exec(&hostile, &["ip", "-batch", batch.to_str().unwrap()]);
        lab.start_cilium_peer(&config(&lab, max_half_open));
        lab.start_gobgp(
            &node,
            &GoBgpNode::cilium("192.0.2.11", "2001:db8:1::1", "2001:db8:1::11"),
        );
        lab.wait_gobgp_established(&node);
        for (family, prefix) in [("ipv4", "10.244.1.0/24"), ("ipv6", "fd00:ff00:1::/64")] {
            lab.gobgp(
                &node,
                &[
                    "global", "rib", "add", "-a", family, prefix, "origin", "igp",
                ],
            );
        }
        lab.wait_route("10.244.1.0/24");
        lab.wait_route("fd00:ff00:1::/64");
        // Let the hostile addresses finish appearing.
        std::thread::sleep(Duration::from_millis(200));
        let gobgp_uptime = gobgp_uptime(&lab, &node);
        Some(Scene {
            lab,
            node,
            hostile,
            gobgp_uptime,
            started: Instant::now(),
        })
    }

    fn peer(&self, address: &str) -> Peer {
        Peer::connect(&self.hostile, address)
    }

    /// The real node is untouched: same GoBGP session (uptime never reset), its routes
    /// installed, and our side of its session as old as the scene.
    fn assert_real_node_untouched(&self) {
        let lab = &self.lab;
        assert!(lab.gobgp(&self.node, &["neighbor"]).contains("Establ"));
        assert_eq!(
            gobgp_uptime(lab, &self.node),
            self.gobgp_uptime,
            "GoBGP's session was reset"
        );
        assert!(
            lab.route("10.244.1.0/24").is_some(),
            "the node's IPv4 route is gone"
        );
        assert!(
            lab.route("fd00:ff00:1::/64").is_some(),
            "the node's IPv6 route is gone"
        );
        let node = peer_entry(lab, "2001:db8:1::11").expect("the node's session");
        assert_eq!(node["state"], "Established");
        assert!(
            node["uptime_s"].as_u64().unwrap() >= self.started.elapsed().as_secs(),
            "our side of the node's session restarted: {node}"
        );
        assert_eq!(node["installed"], 2, "{node}");
    }
}

/// When GoBGP's session came up, as `gobgp neighbor -j` reports it.
fn gobgp_uptime(lab: &Lab, ns: &str) -> Value {
    let json: Value = serde_json::from_str(&lab.gobgp(ns, &["neighbor", "2001:db8:1::1", "-j"]))
        .expect("gobgp neighbor -j");
    let uptime = json["timers"]["state"]["uptime"].clone();
    assert!(!uptime.is_null(), "no uptime in {json}");
    uptime
}

/// Sessions that have not finished OPEN.
fn half_open(lab: &Lab) -> usize {
    lab.show("peers")
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "OpenSent")
        .count()
}

fn peer_entry(lab: &Lab, address: &str) -> Option<Value> {
    lab.show("peers")
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["address"] == address)
        .cloned()
}

#[test]
fn malformed_messages_get_their_notification_and_reset_only_their_own_session() {
    let Some(scene) = Scene::new("hostile malformed", 64) else {
        return;
    };
    let lab = &scene.lab;
    let nh = |i: u16| Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, i);
    let cases: Vec<(&str, Vec<u8>, (u8, u8))> = vec![
        (
            "a marker that is not all ones",
            {
                let mut m = message(wire::KEEPALIVE, &[]);
                m[3] = 0;
                m
            },
            (1, 1),
        ),
        (
            "a length above 4096",
            {
                let mut m = message(wire::KEEPALIVE, &[]);
                m[16..18].copy_from_slice(&4097u16.to_be_bytes());
                m
            },
            (1, 2),
        ),
        (
            "a length below the header's",
            {
                let mut m = message(wire::KEEPALIVE, &[]);
                m[16..18].copy_from_slice(&18u16.to_be_bytes());
                m
            },
            (1, 2),
        ),
        (
            "a KEEPALIVE with a body",
            message(wire::KEEPALIVE, &[0]),
            (1, 2),
        ),
        ("an unknown message type", message(9, &[]), (1, 3)),
        (
            "an OPEN once Established",
            wire::encode(
                &Message::Open(Open {
                    version: 4,
                    my_as: Open::my_as_field(HOSTILE_AS),
                    hold_time: 90,
                    bgp_identifier: [198, 51, 100, 1].into(),
                    capabilities: vec![],
                }),
                &Context::default(),
            ),
            (5, 3),
        ),
        (
            "MP_REACH_NLRI flagged transitive",
            update(&[
                origin(),
                as_path(&[HOSTILE_AS]),
                attribute(
                    wire::FLAG_OPTIONAL | wire::FLAG_TRANSITIVE,
                    wire::MP_REACH_NLRI,
                    &mp_reach_value(nh(0x1a0), &nlri("fd00:bad:1::/48")),
                ),
            ]),
            (3, 4),
        ),
        (
            "MP_REACH_NLRI shorter than its fixed fields",
            update(&[
                origin(),
                as_path(&[HOSTILE_AS]),
                attribute(wire::FLAG_OPTIONAL, wire::MP_REACH_NLRI, &[0, 2, 1]),
            ]),
            (3, 5),
        ),
        (
            "MP_REACH_NLRI truncated inside its next hop",
            update(&[
                origin(),
                as_path(&[HOSTILE_AS]),
                attribute(
                    wire::FLAG_OPTIONAL,
                    wire::MP_REACH_NLRI,
                    &mp_reach_value(nh(1), &[])[..14],
                ),
            ]),
            (3, 9),
        ),
        (
            "MP_REACH_NLRI truncated inside a prefix",
            update(&[
                origin(),
                as_path(&[HOSTILE_AS]),
                attribute(
                    wire::FLAG_OPTIONAL,
                    wire::MP_REACH_NLRI,
                    &mp_reach_value(nh(1), &[64, 0xfd, 0]),
                ),
            ]),
            (3, 10),
        ),
        (
            "MP_REACH_NLRI running past the attribute list",
            {
                let mut attrs = [
                    origin(),
                    as_path(&[HOSTILE_AS]),
                    mp_reach(nh(1), "fd00:bad:1::/48"),
                ]
                .concat();
                let at = attrs.len() - mp_reach(nh(1), "fd00:bad:1::/48").len() + 2;
                attrs[at] += 40;
                update(&[attrs])
            },
            (3, 1),
        ),
        (
            "MP_REACH_NLRI twice",
            update(&[
                origin(),
                as_path(&[HOSTILE_AS]),
                mp_reach(nh(1), "fd00:bad:1::/48"),
                mp_reach(nh(1), "fd00:bad:2::/48"),
            ]),
            (3, 1),
        ),
        (
            "an unrecognized well-known attribute",
            update(&[
                origin(),
                as_path(&[HOSTILE_AS]),
                mp_reach(nh(1), "fd00:bad:1::/48"),
                attribute(wire::FLAG_TRANSITIVE, 99, &[1, 2, 3]),
            ]),
            (3, 2),
        ),
        (
            "withdrawn routes running past the message",
            message(wire::UPDATE, &[1, 0, 0, 0]),
            (3, 1),
        ),
    ];
    for (i, (case, bytes, expected)) in cases.into_iter().enumerate() {
        let address = format!("2001:db8:1::{:x}", 0x110 + i);
        let mut peer = scene.peer(&address);
        peer.establish();
        // Its own route first: it must go with its session.
        let prefix = format!("fd00:bad:{:x}::/48", 0x100 + i);
        peer.announce(&[&prefix], &[HOSTILE_AS]);
        lab.wait_route(&prefix);
        peer.send(&bytes);
        assert_eq!(peer.notification(), expected, "{case}");
        lab.wait_no_route(&prefix);
        wait_for(
            &format!("{address} to leave show peers ({case})"),
            Duration::from_secs(5),
            || peer_entry(lab, &address).is_none().then_some(()),
        );
        scene.assert_real_node_untouched();
    }
    // The same bytes before OPEN: a bad marker is still 1/1.
    let mut early = scene.peer("2001:db8:1::1f0");
    assert!(matches!(
        early.receive(Duration::from_secs(5)),
        Some(Message::Open(_))
    ));
    early.send(&[0u8; 19]);
    assert_eq!(early.notification(), (1, 1));
    scene.assert_real_node_untouched();
}

#[test]
fn rfc_7606_cases_and_as_path_loops_withdraw_their_routes_and_keep_the_session() {
    let Some(scene) = Scene::new("hostile treat-as-withdraw", 64) else {
        return;
    };
    let lab = &scene.lab;
    let address = "2001:db8:1::120";
    let me: Ipv6Addr = address.parse().unwrap();
    let mut peer = scene.peer(address);
    peer.establish();
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "ORIGIN flagged optional",
            vec![
                attribute(
                    wire::FLAG_OPTIONAL | wire::FLAG_TRANSITIVE,
                    wire::ORIGIN,
                    &[0],
                ),
                as_path(&[HOSTILE_AS]),
            ],
        ),
        (
            "ORIGIN of two octets",
            vec![
                attribute(wire::FLAG_TRANSITIVE, wire::ORIGIN, &[0, 0]),
                as_path(&[HOSTILE_AS]),
            ],
        ),
        (
            "an AS_PATH segment running past the attribute",
            vec![
                origin(),
                attribute(
                    wire::FLAG_TRANSITIVE,
                    wire::AS_PATH,
                    &[2, 5, 0, 0, 0xfe, 0x50],
                ),
            ],
        ),
        ("no AS_PATH at all", vec![origin()]),
        (
            "MULTI_EXIT_DISC of three octets",
            vec![
                origin(),
                as_path(&[HOSTILE_AS]),
                attribute(wire::FLAG_OPTIONAL, wire::MULTI_EXIT_DISC, &[0, 0, 1]),
            ],
        ),
        (
            "COMMUNITIES flagged non-transitive and cut short",
            vec![
                origin(),
                as_path(&[HOSTILE_AS]),
                attribute(wire::FLAG_OPTIONAL, wire::COMMUNITIES, &[0, 1]),
            ],
        ),
        (
            "our own AS in the AS_PATH",
            vec![origin(), as_path(&[HOSTILE_AS, 65100])],
        ),
    ];
    for (i, (case, attributes)) in cases.iter().enumerate() {
        // A route announced well, then again with the malformed attributes along with a
        // new one: both must end up withdrawn, and the session must stay.
        let old = format!("fd00:bad:{:x}::/48", 0x200 + 2 * i);
        let new = format!("fd00:bad:{:x}::/48", 0x201 + 2 * i);
        peer.announce(&[&old], &[HOSTILE_AS]);
        lab.wait_route(&old);
        let mut attributes = attributes.clone();
        let mut prefixes = nlri(&old);
        prefixes.extend(nlri(&new));
        attributes.push(attribute(
            wire::FLAG_OPTIONAL,
            wire::MP_REACH_NLRI,
            &mp_reach_value(me, &prefixes),
        ));
        peer.send(&update(&attributes));
        // A well-formed UPDATE behind it: once its route is in, the malformed one is done.
        let barrier = format!("fd00:bad:{:x}::/48", 0x300 + i);
        peer.announce(&[&barrier], &[HOSTILE_AS]);
        lab.wait_route(&barrier);
        lab.wait_no_route(&old);
        assert!(lab.route(&new).is_none(), "{case}: {new} was installed");
        peer.assert_up();
    }
    // A duplicate ORIGIN is discarded and the UPDATE used (RFC 7606 3 g).
    let dup = "fd00:bad:400::/48";
    peer.send(&update(&[
        origin(),
        origin(),
        as_path(&[HOSTILE_AS]),
        mp_reach(me, dup),
    ]));
    lab.wait_route(dup);
    peer.assert_up();

    let entry = peer_entry(lab, address).unwrap();
    assert_eq!(entry["state"], "Established", "{entry}");
    assert_eq!(
        entry["rejected"]["treat_as_withdraw"],
        2 * (cases.len() - 1),
        "{entry}"
    );
    assert_eq!(entry["rejected"]["as_path_loop"], 2, "{entry}");
    assert!(lab.log("cilium-peer").contains("as_path_loop"));
    scene.assert_real_node_untouched();
}

#[test]
fn updates_trickled_a_few_bytes_at_a_time_by_two_sessions_are_put_back_together() {
    let Some(scene) = Scene::new("hostile trickle", 64) else {
        return;
    };
    let lab = &scene.lab;
    let mut peers = Vec::new();
    let mut streams = Vec::new();
    for (i, address) in ["2001:db8:1::130", "2001:db8:1::131"]
        .into_iter()
        .enumerate()
    {
        let me: Ipv6Addr = address.parse().unwrap();
        let mut peer = scene.peer(address);
        peer.establish();
        peer.stream.set_nodelay(true).unwrap();
        // Three UPDATEs back to back, each with its own route.
        let mut bytes = Vec::new();
        for j in 0..3 {
            let prefix = format!("fd00:7{i}:{}::/48", j + 1);
            bytes.extend(update(&[
                origin(),
                as_path(&[HOSTILE_AS]),
                mp_reach(me, &prefix),
            ]));
        }
        streams.push(bytes);
        peers.push(peer);
    }
    // Seven bytes at a time, the two sessions taking turns, so every read ends inside a
    // message and the reads of both sessions interleave.
    let mut at = 0;
    while at < streams[0].len().max(streams[1].len()) {
        for (peer, bytes) in peers.iter_mut().zip(&streams) {
            if let Some(chunk) = bytes.get(at..(at + 7).min(bytes.len())) {
                peer.send(chunk);
            }
        }
        at += 7;
        std::thread::sleep(Duration::from_millis(2));
    }
    for i in 0..2 {
        for j in 0..3 {
            lab.wait_route(&format!("fd00:7{i}:{}::/48", j + 1));
        }
    }
    for peer in &mut peers {
        peer.assert_up();
    }
    scene.assert_real_node_untouched();
}

#[test]
fn connect_storms_and_peers_that_never_send_open_do_not_starve_real_peers() {
    let max_half_open = 8;
    let Some(mut scene) = Scene::new("hostile storms", max_half_open) else {
        return;
    };
    // Two thousand connects in a burst from one address: it gets its burst of sessions
    // (each replacing the last) and then is refused, with a few log lines at most.
    let storm: Ipv6Addr = "2001:db8:1::150".parse().unwrap();
    let begun = Instant::now();
    let connects = connect_from(
        &scene.hostile,
        IpAddr::V6(storm),
        HOST.parse().unwrap(),
        2000,
    );
    let took = begun.elapsed();
    assert!(
        connects.iter().filter(|c| c.is_ok()).count() > 1000,
        "the storm did not happen"
    );
    drop(connects);
    let log = scene.lab.log("cilium-peer");
    let accepted = log
        .lines()
        .filter(|l| l.contains("connection accepted") && l.contains("address=2001:db8:1::150"))
        .count();
    let limits_default_burst = 10;
    let allowed = limits_default_burst + (took.as_secs_f64() / 2.0).ceil() as usize;
    assert!(
        (1..=allowed).contains(&accepted),
        "{accepted} sessions from the storm in {took:?}"
    );
    let refusals = log
        .lines()
        .filter(|l| l.contains("connects too often"))
        .count();
    assert!(
        (1..=1 + took.as_secs() as usize / 10).contains(&refusals),
        "{refusals} refusal lines"
    );
    scene.assert_real_node_untouched();
    wait_for(
        "the storm's last session to end",
        Duration::from_secs(5),
        || {
            peer_entry(&scene.lab, "2001:db8:1::150")
                .is_none()
                .then_some(())
        },
    );

    // Silent connections from many addresses: they fill the half-open slots, and the rest
    // are refused at once.
    let silent: Vec<Peer> = (0..20)
        .map(|i| scene.peer(&format!("2001:db8:1::{:x}", 0x160 + i)))
        .collect();
    wait_for(
        "the half-open slots to fill",
        Duration::from_secs(5),
        || (half_open(&scene.lab) == max_half_open).then_some(()),
    );
    let mut silent = silent;
    let mut refused = 0;
    for peer in &mut silent[max_half_open..] {
        // Closed without our OPEN.
        if peer.receive(Duration::from_secs(2)).is_none() {
            refused += 1;
        }
    }
    assert_eq!(refused, 20 - max_half_open);
    scene.assert_real_node_untouched();

    // A real node connecting now takes the slot of the oldest silent one, which gets
    // Cease / Out of Resources.
    std::thread::sleep(cilium_peer::bgp::admission::EVICT_AFTER);
    let second = scene.lab.node("b", &["2001:db8:1::12/64"]);
    scene.lab.start_gobgp(
        &second,
        &GoBgpNode::cilium("192.0.2.12", "2001:db8:1::1", "2001:db8:1::12"),
    );
    scene.lab.wait_gobgp_established(&second);
    let evicted = silent[..max_half_open]
        .iter_mut()
        .filter_map(|p| match p.receive(Duration::from_millis(200)) {
            Some(Message::Open(_)) => match p.receive(Duration::from_millis(300)) {
                Some(Message::Notification(n)) => Some((n.code, n.subcode)),
                _ => None,
            },
            _ => None,
        })
        .collect::<Vec<_>>();
    assert!(
        !evicted.is_empty(),
        "no silent session was closed to make room"
    );
    assert!(evicted.iter().all(|e| *e == (6, 8)), "{evicted:?}");
    assert!(half_open(&scene.lab) <= max_half_open);
    scene.assert_real_node_untouched();
}
