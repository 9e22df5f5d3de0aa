//! Failover: how fast a dead node's routes leave the kernel table, and that a restarting
//! agent's do not, for cilium-peer and for BIRD 2 as the seed configures it, against real
//! GoBGP "Cilium nodes" (hold 90 s, keepalive 30 s, graceful restart 120 s with the N bit)
//! and FRR's bfdd. The faults are those of tests/netns_liveness.rs:
//!
//! - port gone: node 1's bridge port (the veth's host end, a VM's tap) is deleted;
//! - hung guest: node 1's gobgpd is stopped (SIGSTOP) and IPv6 disabled on its eth0;
//! - BFD peer down: node 1's bfdd (300 ms x 3, peering with the host) is killed;
//! - agent restart: node 1's gobgpd is killed (-9) and started again 2 s later; the node
//!   answers throughout. Counted: route and nexthop-object changes (`ip monitor route
//!   nexthop`) in the window, 20 s from the kill (GoBGP 3.10 reconnects 5-10 s after its
//!   start, then announces again, then End-of-RIB ends graceful restart).
//!
//! Two nodes announce one LoadBalancer IP (ECMP over both), node 1 its pod CIDR too. The
//! table is read with a netlink dump of our own every 5 ms, on a thread in the host
//! namespace; times are from the monotonic clock, from just before the fault is injected to
//! the first dump without node 1's next hop.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cilium_peer::control::Request;
use cilium_peer::fib::nlmsg::{
    self, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, RTM_NEWROUTE, attributes, finish,
    header,
};
use cilium_peer::fib::socket::RouteSocket;
use serde_json::json;

use crate::bird::Bird;
use crate::lab::{Lab, NAMESPACES, remove_namespace};
use crate::measure::median;
use crate::{ASN, BRIDGE, HOST_V6, Options, TABLE, sh, shell};

const LB: &str = "198.51.100.7/32";
const POD1: &str = "10.244.1.0/24";
const BFDD: &str = "/usr/lib/frr/bfdd";
/// How long the agent stays away in the restart case (a Cilium agent restart takes
/// seconds; Debian's GoBGP 3.10 then connects 5 to 10 s after its start).
const AGENT_AWAY: Duration = Duration::from_secs(2);

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Case {
    /// node 1's bridge port deleted
    Port,
    /// node 1 hung: gobgpd stopped, IPv6 off
    Hung,
    /// node 1's bfdd killed
    Bfd,
    /// node 1's gobgpd killed and restarted (graceful restart)
    Restart,
}

impl Case {
    pub(crate) const ALL: [Case; 4] = [Case::Port, Case::Hung, Case::Bfd, Case::Restart];

    fn label(self) -> &'static str {
        match self {
            Case::Port => "port gone",
            Case::Hung => "hung guest",
            Case::Bfd => "BFD peer down",
            Case::Restart => "agent restart under GR",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Case::Port => "port",
            Case::Hung => "hung",
            Case::Bfd => "bfd",
            Case::Restart => "restart",
        }
    }

    fn target(self) -> &'static str {
        match self {
            Case::Port => "≤ 0.2 s",
            Case::Hung => "≤ 2 s",
            Case::Bfd => "≤ 1.2 s",
            Case::Restart => "0 changes",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    CiliumPeer,
    Bird,
}

impl Who {
    fn name(self) -> &'static str {
        match self {
            Who::CiliumPeer => "cilium-peer",
            Who::Bird => "BIRD",
        }
    }
}

/// One measurement: seconds to the leg leaving (or changes counted), none within the cap,
/// or what went wrong.
#[derive(Clone, Debug)]
enum Outcome {
    Value(f64),
    Over,
    Failed(String),
}

/// Node `n` (1 or 2) of one measurement.
struct Node {
    ns: String,
    port: String,
    v6: String,
    gobgpd: String,
    toml: String,
}

// ---------------------------------------------------------------------------------------
// The kernel table, read with netlink dumps from a thread in the host namespace.

/// Our table's IPv4 routes: (destination, gateways).
type Routes = Vec<(String, Vec<IpAddr>)>;

const RTM_GETROUTE: u16 = 26;
const RTA_DST: u16 = 1;
const RTA_GATEWAY: u16 = 5;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RTA_VIA: u16 = 18;

fn address(family: u8, bytes: &[u8]) -> Option<IpAddr> {
    match (family as i32, bytes.len()) {
        (libc::AF_INET, 4) => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        (libc::AF_INET6, 16) => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).ok()?,
        ))),
        _ => None,
    }
}

/// The gateway of one next hop's attributes (RTA_GATEWAY of the route's family, or RTA_VIA).
fn gateway(family: u8, attrs: &[u8]) -> Option<IpAddr> {
    attributes(attrs).find_map(|(kind, value)| match kind {
        RTA_GATEWAY => address(family, value),
        RTA_VIA if value.len() >= 2 => {
            address(u16::from_ne_bytes([value[0], value[1]]) as u8, &value[2..])
        }
        _ => None,
    })
}

/// One dump of the IPv4 routes of [`TABLE`].
fn dump(socket: &RouteSocket, buffer: &mut [u8]) -> io::Result<Routes> {
    let mut out = Vec::new();
    let start = header(&mut out, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, 1);
    out.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    finish(&mut out, start);
    socket.send(&out)?;
    let mut routes = Routes::new();
    loop {
        if !socket.readable(Duration::from_secs(5))? {
            return Err(io::Error::other("no answer to a route dump"));
        }
        let n = match socket.recv(buffer) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => other?,
        };
        for message in nlmsg::messages(&buffer[..n]) {
            if message.kind == NLMSG_DONE || message.kind == NLMSG_ERROR {
                return Ok(routes);
            }
            let p = message.payload;
            if message.kind != RTM_NEWROUTE || p.len() < 12 {
                continue;
            }
            let (family, length) = (p[0], p[1]);
            let mut table = u32::from(p[4]);
            let mut dst = None;
            let mut gateways = Vec::new();
            for (kind, value) in attributes(&p[12..]) {
                match kind {
                    RTA_TABLE if value.len() == 4 => {
                        table = u32::from_ne_bytes(value.try_into().unwrap());
                    }
                    RTA_DST => dst = address(family, value),
                    RTA_MULTIPATH => {
                        // struct rtnexthop: len (u16), flags, hops, ifindex, attributes
                        let mut rest = value;
                        while rest.len() >= 8 {
                            let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
                            if len < 8 || len > rest.len() {
                                break;
                            }
                            gateways.extend(gateway(family, &rest[8..len]));
                            rest = &rest[len.next_multiple_of(4).min(rest.len())..];
                        }
                    }
                    _ => {}
                }
            }
            gateways.extend(gateway(family, &p[12..]));
            if table == TABLE {
                let dst = dst.map_or_else(|| "0.0.0.0".to_string(), |d| d.to_string());
                routes.push((format!("{dst}/{length}"), gateways));
            }
        }
    }
}

/// Dumps the table every `every` on a thread in `ns` until `done` says so (or `limit`);
/// returns when, and the last dump. `done` sees each dump and the time since `start`.
fn watch(
    ns: &str,
    every: Duration,
    limit: Duration,
    start: Instant,
    mut done: impl FnMut(&Routes, Duration) -> bool + Send + 'static,
) -> Result<(Option<Instant>, Routes), String> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || -> Result<(Option<Instant>, Routes), String> {
        let file = fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns {path}: {e}"))?;
        let socket = RouteSocket::open(0).map_err(|e| e.to_string())?;
        let mut buffer = vec![0u8; 64 << 10];
        let mut last;
        loop {
            last = dump(&socket, &mut buffer).map_err(|e| e.to_string())?;
            let now = Instant::now();
            if done(&last, now - start) {
                return Ok((Some(now), last));
            }
            if now - start >= limit {
                return Ok((None, last));
            }
            std::thread::sleep(every);
        }
    })
    .join()
    .map_err(|_| "the table watcher panicked".to_string())?
}

fn gateways<'a>(routes: &'a Routes, prefix: &str) -> Option<&'a [IpAddr]> {
    routes
        .iter()
        .find(|(dst, _)| dst == prefix)
        .map(|(_, g)| g.as_slice())
}

fn uses(routes: &Routes, hop: IpAddr) -> bool {
    routes.iter().any(|(_, g)| g.contains(&hop))
}

// ---------------------------------------------------------------------------------------
// What the programs read.

fn cilium_peer_config(lab: &Lab, case: Case) -> String {
    let mut neighbor = json!({ "name": "cilium", "range": "2001:db8:1::/64", "asn": ASN });
    if case == Case::Bfd {
        neighbor["liveness"] = json!({ "enable": false });
        neighbor["bfd"] =
            json!({ "enable": true, "min_tx_ms": 300, "min_rx_ms": 300, "multiplier": 3 });
    }
    json!({
        "router_id": "192.0.2.1",
        "asn": ASN,
        "listen": ["[::]:179"],
        "kernel": { "table": TABLE, "persist": false, "multipath": true },
        "bridges": {
            BRIDGE: { "prefixes": ["192.0.2.0/24", "2001:db8:1::/64"], "ra": { "enable": false } },
        },
        "neighbors": [neighbor],
        "control_socket": lab.dir.join("control.sock"),
    })
    .to_string()
}

/// BIRD 2 as the seed's host: `bfd; direct; passive;` with a BFD protocol, a dynamic
/// neighbor range, extended next hop, graceful restart as BIRD's default (aware: a helper),
/// kernel protocols exporting to the table with `merge paths` for ECMP.
fn bird_config(log: &Path) -> String {
    format!(
        "log \"{log}\" {{ info, warning, error, fatal }};\nrouter id 192.0.2.1;\nprotocol device {{}}\n\
         protocol bfd {{}}\n\
         protocol kernel {{\n  kernel table {TABLE};\n  merge paths on;\n  ipv4 {{ export all; }};\n}}\n\
         protocol kernel {{\n  kernel table {TABLE};\n  merge paths on;\n  ipv6 {{ export filter {{ if source = RTS_STATIC then reject; accept; }}; }};\n}}\n\
         protocol static {{ ipv6; route 2001:db8:1::/64 via \"{BRIDGE}\"; }}\n\
         protocol bgp {{\n  local {HOST_V6} port 179 as {ASN};\n  neighbor range 2001:db8:1::/64 port 179 as {ASN} internal;\n  \
         dynamic name \"GW6_\";\n  bfd;\n  direct;\n  passive;\n  ipv4 {{ extended next hop yes; import all; }};\n  ipv6 {{ import all; }};\n}}\n",
        log = log.display()
    )
}

fn bfdd_config(local: &str) -> String {
    format!(
        "bfd\n peer {HOST_V6} local-address {local}\n  receive-interval 300\n  transmit-interval 300\n  detect-multiplier 3\n !\n!\n"
    )
}

// ---------------------------------------------------------------------------------------
// Nodes and processes.

fn gobgp(lab: &Lab, ns: &str, args: &[&str]) -> Result<String, String> {
    let mut full = vec!["gobgp", "-p", "50061"];
    full.extend_from_slice(args);
    lab.exec(ns, &full)
}

fn start_gobgpd(lab: &mut Lab, node: &Node) -> Result<(), String> {
    let toml = lab.dir.join(&node.toml);
    let args = [
        "gobgpd",
        "-f",
        toml.to_str().unwrap(),
        "-r",
        "-p",
        "--api-hosts",
        "127.0.0.1:50061",
        "--pprof-disable",
    ];
    lab.spawn(&node.ns, &node.gobgpd, &args)?;
    shell::wait_until(
        "gobgpd's API",
        Duration::from_millis(50),
        Duration::from_secs(10),
        || gobgp(lab, &node.ns, &["global"]).ok(),
    )?;
    Ok(())
}

fn announce(lab: &Lab, node: &Node, prefix: &str) -> Result<(), String> {
    gobgp(
        lab,
        &node.ns,
        &[
            "global", "rib", "add", "-a", "ipv4", prefix, "origin", "igp",
        ],
    )
    .map(drop)
}

/// Bridge ports made so far: each node's gets a new name (a deleted port's name may linger
/// while its namespace is torn down).
static PORTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Node `n` of measurement `tag` on the bridge, `192.0.2.1n` and `2001:db8:1::1n`, with its
/// gobgpd started.
fn add_node(lab: &mut Lab, tag: &str, n: u8) -> Result<Node, String> {
    let id = lab.host.trim_start_matches("cpbh").to_string();
    let k = tag.to_string();
    let node = Node {
        ns: format!("cpbf{id}{k}n{n}"),
        // At most 15 characters: "vf", the lab's id (up to 5 digits), "_", a serial.
        port: format!("vf{id}_{}", PORTS.fetch_add(1, Ordering::Relaxed)),
        v6: format!("2001:db8:1::1{n}"),
        gobgpd: format!("gobgpd-{k}-{n}"),
        toml: format!("node-{k}-{n}.toml"),
    };
    sh(&["ip", "netns", "add", &node.ns])?;
    NAMESPACES.lock().unwrap().push(node.ns.clone());
    set_up_node(lab, &node, n).inspect_err(|_| remove_node(lab, &node))?;
    Ok(node)
}

fn set_up_node(lab: &mut Lab, node: &Node, n: u8) -> Result<(), String> {
    let host = lab.host.clone();
    lab.exec(&node.ns, &["ip", "link", "set", "lo", "up"])?;
    sh(&[
        "ip", "link", "add", &node.port, "netns", &host, "type", "veth", "peer", "name", "eth0",
        "netns", &node.ns,
    ])?;
    lab.exec(
        &host,
        &["ip", "link", "set", &node.port, "master", BRIDGE, "up"],
    )?;
    lab.exec(
        &node.ns,
        &["sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"],
    )?;
    lab.exec(&node.ns, &["ip", "link", "set", "eth0", "up"])?;
    let v4 = format!("192.0.2.1{n}");
    for a in [format!("{v4}/24"), format!("{}/64", node.v6)] {
        lab.exec(&node.ns, &["ip", "addr", "add", &a, "dev", "eth0", "nodad"])?;
    }
    let speaker = crate::gobgp::GoBgpNode::cilium(&v4, HOST_V6, &node.v6);
    lab.write(&node.toml, &speaker.toml())?;
    start_gobgpd(lab, node)
}

fn remove_node(lab: &mut Lab, node: &Node) {
    lab.kill(&node.gobgpd);
    let _ = lab.exec(&lab.host, &["ip", "link", "del", &node.port]);
    remove_namespace(&node.ns);
    NAMESPACES.lock().unwrap().retain(|n| n != &node.ns);
}

fn start_receiver(
    lab: &mut Lab,
    options: &Options,
    who: Who,
    case: Case,
    tag: &str,
) -> Result<String, String> {
    let host = lab.host.clone();
    let label = format!("receiver-{tag}");
    match who {
        Who::CiliumPeer => {
            let _ = fs::remove_file(lab.dir.join("control.sock"));
            let config = lab.write(
                &format!("cilium-peer-{tag}.json"),
                &cilium_peer_config(lab, case),
            )?;
            lab.spawn(
                &host,
                &label,
                &[
                    options.daemon.to_str().unwrap(),
                    "run",
                    "--config",
                    config.to_str().unwrap(),
                ],
            )?;
        }
        Who::Bird => {
            let name = format!("bird-{tag}");
            let log = lab.dir.join(format!("{name}.log.bird"));
            lab.write(&format!("{name}.conf"), &bird_config(&log))?;
            let bird = Bird::new(&lab.dir, &name);
            lab.spawn(&host, &label, &bird.command())?;
        }
    }
    lab.wait_listening()?;
    Ok(label)
}

/// cilium-peer's view of node `address` (`show peers`), if it runs.
fn peer_field(lab: &Lab, address: &str, field: &str) -> Option<String> {
    let peers = cilium_peer::control::query(&lab.dir.join("control.sock"), Request::Peers).ok()?;
    peers
        .as_array()?
        .iter()
        .find(|p| p["address"] == address)
        .and_then(|p| p[field].as_str().map(str::to_string))
}

fn bfdd_status(lab: &Lab, ns: &str, dir: &Path) -> Option<String> {
    let out = lab
        .exec(
            ns,
            &[
                "vtysh",
                "--vty_socket",
                dir.to_str().unwrap(),
                "-c",
                "show bfd peers brief",
            ],
        )
        .ok()?;
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.len() >= 4 && w[2] == HOST_V6)
        .map(|w| w[3].to_string())
}

fn start_bfdd(lab: &mut Lab, node: &Node, tag: &str) -> Result<String, String> {
    let dir = lab.dir.join(format!("bfdd-{tag}"));
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    fs::write(dir.join("bfdd.conf"), bfdd_config(&node.v6)).map_err(|e| e.to_string())?;
    sh(&["chown", "-R", "frr:frr", dir.to_str().unwrap()])?;
    let label = format!("bfdd-{tag}");
    let (conf, pid) = (dir.join("bfdd.conf"), dir.join("bfdd.pid"));
    lab.spawn(
        &node.ns,
        &label,
        &[
            BFDD,
            "-f",
            conf.to_str().unwrap(),
            "-i",
            pid.to_str().unwrap(),
            "--vty_socket",
            dir.to_str().unwrap(),
            "-u",
            "frr",
            "-g",
            "frr",
        ],
    )?;
    shell::wait_until(
        "bfdd's session with the host to come up",
        Duration::from_millis(100),
        Duration::from_secs(20),
        || (bfdd_status(lab, &node.ns, &dir).as_deref() == Some("up")).then_some(()),
    )?;
    Ok(label)
}

// ---------------------------------------------------------------------------------------
// One measurement.

fn measure(
    lab: &mut Lab,
    options: &Options,
    case: Case,
    who: Who,
    tag: &str,
) -> Result<Outcome, String> {
    lab.clear_table()?;
    let receiver = start_receiver(lab, options, who, case, tag)?;
    let mut nodes = Vec::new();
    let result = (|| {
        for n in 1..=2 {
            nodes.push(add_node(lab, tag, n)?);
        }
        run_case(lab, options, case, who, tag, &nodes)
    })();
    for node in &nodes {
        remove_node(lab, node);
    }
    for label in [format!("bfdd-{tag}"), format!("monitor-{tag}")] {
        lab.kill(&label);
    }
    lab.stop(&receiver);
    lab.clear_table()?;
    result
}

fn run_case(
    lab: &mut Lab,
    options: &Options,
    case: Case,
    who: Who,
    tag: &str,
    nodes: &[Node],
) -> Result<Outcome, String> {
    let (one, two) = (&nodes[0], &nodes[1]);
    let hop1: IpAddr = one.v6.parse().unwrap();
    let hop2: IpAddr = two.v6.parse().unwrap();
    for node in nodes {
        shell::wait_until(
            "GoBGP's session to reach Established",
            Duration::from_millis(50),
            Duration::from_secs(30),
            || {
                gobgp(lab, &node.ns, &["neighbor"])
                    .ok()?
                    .contains("Establ")
                    .then_some(())
            },
        )?;
    }
    announce(lab, one, LB)?;
    announce(lab, one, POD1)?;
    announce(lab, two, LB)?;
    let (seen, routes) = watch(
        &lab.host,
        Duration::from_millis(20),
        Duration::from_secs(30),
        Instant::now(),
        move |routes, _| {
            gateways(routes, LB)
                .is_some_and(|g| g.len() == 2 && g.contains(&hop1) && g.contains(&hop2))
                && gateways(routes, POD1) == Some(&[hop1][..])
        },
    )?;
    if seen.is_none() {
        return Err(format!("both nodes' routes never arrived: {routes:?}"));
    }
    if case == Case::Bfd {
        start_bfdd(lab, one, tag)?;
    }
    // Steady state: cilium-peer knows node 1 (its port, its BFD); the rest settle a second.
    if who == Who::CiliumPeer {
        let want = match case {
            Case::Bfd => ("bfd", "up"),
            _ => ("liveness", "reachable"),
        };
        shell::wait_until(
            &format!("cilium-peer: node 1 {} {}", want.0, want.1),
            Duration::from_millis(50),
            Duration::from_secs(20),
            || (peer_field(lab, &one.v6, want.0).as_deref() == Some(want.1)).then_some(()),
        )?;
        if case == Case::Port {
            shell::wait_until(
                "cilium-peer: node 1's bridge port",
                Duration::from_millis(50),
                Duration::from_secs(20),
                || peer_field(lab, &one.v6, "port"),
            )?;
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    if who == Who::Bird && std::env::var_os("BENCH_DEBUG").is_some() {
        let bird = Bird::new(&lab.dir, &format!("bird-{tag}"));
        for command in [&["show", "bfd", "sessions"][..], &["show", "protocols"]] {
            let out = sh(&bird.birdc(command)).unwrap_or_else(|e| e);
            eprintln!("    birdc {}:\n{out}", command.join(" "));
        }
    }

    let cap = Duration::from_secs(u64::from(options.cap_s));
    if case == Case::Restart {
        let window = Duration::from_secs(u64::from(options.window_s));
        return restart(lab, tag, one, window);
    }
    let start = Instant::now();
    match case {
        Case::Port => {
            lab.exec(&lab.host, &["ip", "link", "del", &one.port])?;
        }
        Case::Hung => {
            lab.signal(&one.gobgpd, nix::sys::signal::Signal::SIGSTOP);
            lab.exec(
                &one.ns,
                &["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"],
            )?;
        }
        Case::Bfd => lab.kill(&format!("bfdd-{tag}")),
        Case::Restart => unreachable!(),
    }
    let (seen, _) = watch(
        &lab.host,
        Duration::from_millis(5),
        cap,
        start,
        move |routes, _| !uses(routes, hop1),
    )?;
    Ok(match seen {
        Some(at) => Outcome::Value((at - start).as_secs_f64()),
        None => Outcome::Over,
    })
}

/// The agent restart: gobgpd killed, started again after [`AGENT_AWAY`], its routes
/// announced again; the route and nexthop-object changes `ip monitor` reports in the
/// window (`--window-s` from the kill), and whether node 1's next hop ever left.
fn restart(lab: &mut Lab, tag: &str, one: &Node, window: Duration) -> Result<Outcome, String> {
    let host = lab.host.clone();
    let monitor = format!("monitor-{tag}");
    lab.spawn(&host, &monitor, &["ip", "monitor", "route", "nexthop"])?;
    std::thread::sleep(Duration::from_millis(300));
    let hop1: IpAddr = one.v6.parse().unwrap();
    let left = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    lab.kill(&one.gobgpd);
    let sampler = {
        let (host, left) = (host.clone(), left.clone());
        std::thread::spawn(move || {
            watch(
                &host,
                Duration::from_millis(5),
                window,
                start,
                move |routes, _| {
                    if !uses(routes, hop1) {
                        left.store(true, Ordering::SeqCst);
                    }
                    false
                },
            )
        })
    };
    std::thread::sleep(AGENT_AWAY.saturating_sub(start.elapsed()));
    start_gobgpd(lab, one)?;
    announce(lab, one, LB)?;
    announce(lab, one, POD1)?;
    let back = shell::wait_until(
        "GoBGP's session to come back",
        Duration::from_millis(50),
        window.saturating_sub(start.elapsed()),
        || {
            gobgp(lab, &one.ns, &["neighbor"])
                .ok()?
                .contains("Establ")
                .then(|| start.elapsed())
        },
    );
    match back {
        Ok(t) => println!(
            "    (node 1's session back {:.1} s after the kill)",
            t.as_secs_f64()
        ),
        Err(_) => println!("    (node 1's session not back within the window)"),
    }
    let _ = sampler.join();
    lab.kill(&monitor);
    let log = fs::read_to_string(lab.dir.join(format!("{monitor}.log"))).unwrap_or_default();
    let changes: Vec<&str> = log
        .lines()
        .filter(|l| !l.starts_with(char::is_whitespace))
        .filter(|l| {
            l.contains(&format!("table {TABLE}"))
                || l.starts_with("id ")
                || l.starts_with("Deleted id ")
        })
        .collect();
    if std::env::var_os("BENCH_DEBUG").is_some() {
        eprintln!("    changes: {changes:#?}");
    }
    if left.load(Ordering::SeqCst) {
        println!("    (node 1's next hop left the table during the window)");
    }
    Ok(Outcome::Value(changes.len() as f64))
}

// ---------------------------------------------------------------------------------------
// The part: every case, every receiver, every run; then the table.

fn show(case: Case, outcome: &Outcome, cap: u32) -> String {
    match (case, outcome) {
        (Case::Restart, Outcome::Value(v)) => format!("{v:.0} changes"),
        (_, Outcome::Value(v)) => format!("{v:.3} s"),
        (_, Outcome::Over) => format!("> {cap} s"),
        (_, Outcome::Failed(e)) => format!("failed: {e}"),
    }
}

/// Median (min-max) of the runs; over-the-cap runs count as the cap.
fn summary(case: Case, outcomes: &[Outcome], cap: u32) -> (String, Option<f64>, bool) {
    let values: Vec<f64> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Value(v) => Some(*v),
            Outcome::Over => Some(f64::INFINITY),
            Outcome::Failed(_) => None,
        })
        .collect();
    let failed = outcomes.len() - values.len();
    if values.is_empty() {
        let why = outcomes
            .iter()
            .find_map(|o| match o {
                Outcome::Failed(e) => Some(e.clone()),
                _ => None,
            })
            .unwrap_or_default();
        return (format!("failed: {why}"), None, false);
    }
    let m = median(values.clone());
    let over = m.is_infinite();
    let text = if case == Case::Restart {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(0.0, f64::max);
        if values.len() > 1 {
            format!("{m:.0} changes ({min:.0}-{max:.0})")
        } else {
            format!("{m:.0} changes")
        }
    } else if over {
        format!("> {cap} s")
    } else if values.iter().any(|v| v.is_infinite()) {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        format!("{m:.3} s ({min:.3} to > {cap})")
    } else {
        format!("{m:.3} s{}", spread3(&values))
    };
    let text = if failed > 0 {
        format!("{text}, {failed} failed")
    } else {
        text
    };
    (text, (!over).then_some(m), over)
}

pub(crate) fn failover(options: &Options) -> Result<String, String> {
    let cap = options.cap_s;
    for program in ["gobgpd", "gobgp"] {
        if !shell::have(program) {
            return Err(format!(
                "{program} is not installed (apt-get install gobgpd)"
            ));
        }
    }
    let bfdd = Path::new(BFDD).exists() && shell::have("vtysh");
    let cases: Vec<Case> = options
        .cases
        .iter()
        .copied()
        .filter(|c| {
            let ok = *c != Case::Bfd || bfdd;
            if !ok {
                println!("failover: skipping the BFD case: {BFDD} (Debian's frr) is not installed");
            }
            ok
        })
        .collect();
    println!(
        "failover: two GoBGP nodes (hold 90 s, GR 120 s), one LoadBalancer IP over both; {} run(s) each, waits capped at {cap} s",
        options.runs
    );
    let mut lab = Lab::new(options.keep, 0)?;
    let mut results: Vec<(Case, Vec<Outcome>, Vec<Outcome>)> = Vec::new();
    let mut k = 0;
    for &case in &cases {
        let mut per = (Vec::new(), Vec::new());
        for run in 0..options.runs {
            for who in [Who::CiliumPeer, Who::Bird] {
                k += 1;
                let tag = format!("{}{k}", case.slug());
                let outcome =
                    measure(&mut lab, options, case, who, &tag).unwrap_or_else(Outcome::Failed);
                println!(
                    "  run {run}: {}: {}: {}",
                    case.label(),
                    who.name(),
                    show(case, &outcome, cap)
                );
                match who {
                    Who::CiliumPeer => per.0.push(outcome),
                    Who::Bird => per.1.push(outcome),
                }
            }
        }
        results.push((case, per.0, per.1));
    }
    drop(lab);

    let mut t = format!(
        "\nFailover: time from the fault to node 1's next hop leaving the table (agent restart: \
         route and nexthop changes in {}s), median of {} run(s) (min-max); waits capped at {cap} s\n\n\
         | case | cilium-peer | BIRD | ratio | target |\n|---|---|---|---|---|\n",
        options.window_s, options.runs
    );
    for (case, ours, birds) in &results {
        let (ours_text, ours_m, _) = summary(*case, ours, cap);
        let (bird_text, bird_m, bird_over) = summary(*case, birds, cap);
        let ratio = match (case, ours_m, bird_m, bird_over) {
            (Case::Restart, ..) => "-".to_string(),
            (_, Some(a), Some(b), _) if b > 0.0 => format!("{:.2}x", a / b),
            (_, Some(a), None, true) => format!("< {:.3}x", a / f64::from(cap)),
            _ => "-".to_string(),
        };
        let label = match case {
            Case::Restart => format!(
                "agent restart (kill -9, back after {} s)",
                AGENT_AWAY.as_secs()
            ),
            c => c.label().to_string(),
        };
        writeln!(
            t,
            "| {label} | {ours_text} | {bird_text} | {ratio} | {} |",
            case.target()
        )
        .unwrap();
    }
    t.push_str(&format!(
        "\nBIRD without BFD from the node notices a dead node only when its hold timer (90 s) expires; \
         waiting for that is not done here (cap {cap} s).\n"
    ));
    Ok(t)
}

/// " (min-max)" with three decimals, for more than one run.
fn spread3(v: &[f64]) -> String {
    if v.len() < 2 {
        return String::new();
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    format!(" ({min:.3}-{max:.3})")
}
