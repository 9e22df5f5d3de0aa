//! RA end to end in network namespaces: a host namespace with a hyphenated bridge, a guest
//! namespace behind a veth port, the kernel's own SLAAC and rdisc6 as receivers, radvd as
//! the reference. The daemon binary runs in the host namespace (`cilium-peer run`), is
//! reloaded with SIGHUP, stopped with SIGTERM or restarted with SIGUSR2, and its RA status
//! read with `cilium-peer show bridges --json`. Needs root, `ip`,
//! `rdisc6` (ndisc6) and, for the parity test, `radvd`; skips with a message otherwise.

mod common;

use std::net::{Ipv6Addr, SocketAddrV6};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use cilium_peer::ra::{Bridge, RaConfig, StopMode};

const BRIDGE: &str = "vmbr-dev";

/// Skips the running test (see tests/common/skip.rs) unless root and `tools` are here.
fn skip(tools: &[&str]) -> bool {
    let test = std::thread::current()
        .name()
        .unwrap_or("ra_netns")
        .to_string();
    common::skip_unless(&test, tools)
}

fn sh(args: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sh_output(args: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(args).output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// A host and a guest namespace, removed on drop.
struct Net {
    host: String,
    guest: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Net {
    /// Namespaces only; the bridge is made by `bridge()`. The guest takes RAs like a VM
    /// with forwarding on (accept_ra=2), SLAAC and Route Information up to /64.
    fn new() -> Net {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}-{n}", std::process::id());
        let net = Net {
            host: format!("ra-h-{id}"),
            guest: format!("ra-g-{id}"),
        };
        sh(&format!(
            "ip netns add {}; ip netns add {}",
            net.host, net.guest
        ));
        sh(&format!(
            "ip netns exec {h} sysctl -qw net.ipv6.conf.all.forwarding=1 net.ipv6.conf.default.accept_dad=0",
            h = net.host
        ));
        sh(&format!(
            "ip netns exec {g} sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.default.accept_ra=2 \
             net.ipv6.conf.default.autoconf=1 net.ipv6.conf.default.accept_ra_rt_info_max_plen=64",
            g = net.guest
        ));
        net
    }

    /// The bridge with a port whose peer is the guest's eth0, all up.
    fn bridge(&self) {
        sh(&format!(
            "ip -n {h} link add {BRIDGE} type bridge && \
             ip -n {h} link add port0 type veth peer name eth0 netns {g} && \
             ip -n {h} link set port0 master {BRIDGE} && \
             ip -n {h} link set port0 up && ip -n {h} link set {BRIDGE} up && ip -n {g} link set eth0 up",
            h = self.host,
            g = self.guest
        ));
    }

    fn host_link_local(&self) -> Ipv6Addr {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = sh(&format!(
                "ip -n {} -6 -o addr show dev {BRIDGE} scope link",
                self.host
            ));
            if let Some(addr) = out.split_whitespace().skip_while(|w| *w != "inet6").nth(1) {
                return addr.split('/').next().unwrap().parse().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "the bridge has no link-local address"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn guest(&self, cmd: &str) -> String {
        sh_output(&format!("ip netns exec {} {cmd}", self.guest))
    }

    /// Waits until `check` holds on `cmd`'s output in the guest; returns the last output.
    fn wait_guest(&self, cmd: &str, secs: u64, check: impl Fn(&str) -> bool) -> (bool, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let out = self.guest(cmd);
            if check(&out) {
                return (true, out);
            }
            if Instant::now() > deadline {
                return (false, out);
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn default_route(&self) -> String {
        self.guest("ip -6 route show default dev eth0")
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.host])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.guest])
            .status();
    }
}

/// A bridge's RA status as `cilium-peer show bridges --json` prints it.
#[derive(Debug, serde::Deserialize)]
struct Status {
    state: String,
    link_local: Option<Ipv6Addr>,
    ras_sent: u64,
    rs_received: u64,
    rs_invalid: u64,
    deprecated: Vec<ipnet::Ipv6Net>,
}

/// The daemon, `cilium-peer run`, inside the host namespace with a config of only
/// `router_id`, `asn`, `bridges` and a control socket of its own.
struct Service {
    child: Option<std::process::Child>,
    config: std::path::PathBuf,
    socket: std::path::PathBuf,
}

fn write_config(path: &std::path::Path, socket: &std::path::Path, bridges: &[Bridge]) {
    let bridges: serde_json::Map<String, serde_json::Value> = bridges
        .iter()
        .map(|b| {
            let prefixes: Vec<String> = b.prefixes.iter().map(ToString::to_string).collect();
            (
                b.ifname.clone(),
                serde_json::json!({ "prefixes": prefixes, "ra": b.ra }),
            )
        })
        .collect();
    let config = serde_json::json!({
        "router_id": "192.0.2.1",
        "asn": 65100,
        "bridges": bridges,
        "control_socket": socket,
    });
    std::fs::write(path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}

impl Service {
    fn start(netns: &str, bridges: Vec<Bridge>) -> Service {
        let dir = std::env::temp_dir();
        let config = dir.join(format!("{netns}.json"));
        let socket = dir.join(format!("{netns}.sock"));
        write_config(&config, &socket, &bridges);
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                netns,
                env!("CARGO_BIN_EXE_cilium-peer"),
                "run",
                "--config",
            ])
            .arg(&config)
            .env("RUST_LOG", "info")
            .spawn()
            .unwrap();
        let service = Service {
            child: Some(child),
            config,
            socket,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !service.socket.exists() {
            assert!(
                Instant::now() < deadline,
                "the daemon never opened its control socket"
            );
            thread::sleep(Duration::from_millis(50));
        }
        service
    }

    fn snapshot(&self) -> Vec<Status> {
        let out = Command::new(env!("CARGO_BIN_EXE_cilium-peer"))
            .args(["show", "bridges", "--json", "--socket"])
            .arg(&self.socket)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "show bridges: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bridges: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        bridges
            .into_iter()
            .map(|b| serde_json::from_value(b["ra"].clone()).unwrap())
            .collect()
    }

    /// A new config file, then SIGHUP.
    fn reload(&self, bridges: Vec<Bridge>) {
        write_config(&self.config, &self.socket, &bridges);
        self.signal("HUP");
        thread::sleep(Duration::from_millis(300));
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().unwrap().id();
        // `ip netns exec` execs the daemon, so the child's pid is the daemon's.
        assert!(
            Command::new("kill")
                .args(["-s", name, &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
    }

    /// SIGTERM (final RAs) or SIGUSR2 (the restart signal: none), then waits for the exit.
    fn stop(mut self, mode: StopMode) {
        self.signal(match mode {
            StopMode::Final => "TERM",
            StopMode::Restart => "USR2",
        });
        let status = self.child.take().unwrap().wait().unwrap();
        assert!(status.success(), "the daemon exited with {status}");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.config);
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn bridge(ra: &str) -> Bridge {
    Bridge {
        ifname: BRIDGE.into(),
        prefixes: vec!["2001:db8:1::/64".parse().unwrap()],
        ra: serde_json::from_str(ra).unwrap(),
    }
}

const SETTINGS: &str = r#"{
    "min_interval": 3, "max_interval": 10, "mtu": 1400,
    "routes": [ { "prefix": "2001:db8:ff::/48", "preference": "low" } ],
    "rdnss": ["2001:db8:1::53"], "dnssl": ["cluster.internal"]
}"#;

fn has_slaac_address(out: &str) -> bool {
    out.contains("inet6 2001:db8:1:") && out.contains("dynamic")
}

#[test]
fn a_guest_behind_a_hyphenated_bridge_gets_a_slaac_address_a_default_route_and_a_route_via_the_hosts_link_local()
 {
    if skip(&["ip"]) {
        return;
    }
    let net = Net::new();
    net.bridge();
    let service = Service::start(&net.host, vec![bridge(SETTINGS)]);
    let ll = net.host_link_local();
    let (ok, out) = net.wait_guest("ip -6 addr show dev eth0", 15, has_slaac_address);
    assert!(ok, "no SLAAC address in 2001:db8:1::/64:\n{out}");
    let (ok, out) = net.wait_guest("ip -6 route show default dev eth0", 5, |o| {
        o.contains(&format!("via {ll} "))
    });
    assert!(ok, "no default route via {ll}:\n{out}");
    let (ok, out) = net.wait_guest("ip -6 route show 2001:db8:ff::/48", 5, |o| {
        o.contains(&format!("via {ll} "))
    });
    assert!(
        ok,
        "the Route Information option did not become a route via {ll}:\n{out}"
    );
    let status = &service.snapshot()[0];
    assert_eq!(status.state, "advertising");
    assert_eq!(status.link_local, Some(ll));
    assert!(status.ras_sent >= 1);
    service.stop(StopMode::Restart);
}

#[test]
fn rdisc6_shows_the_configured_options() {
    if skip(&["ip", "rdisc6"]) {
        return;
    }
    let net = Net::new();
    net.bridge();
    let service = Service::start(&net.host, vec![bridge(SETTINGS)]);
    let ll = net.host_link_local();
    let (ok, out) = net.wait_guest("rdisc6 -1 -w 2000 eth0", 10, |o| o.contains("Prefix"));
    assert!(ok, "rdisc6 saw no RA:\n{out}");
    for expected in [
        "Router lifetime           :           30 (0x0000001e) seconds",
        " Prefix                   : 2001:db8:1::/64",
        " Route                    : 2001:db8:ff::/48",
        "  Route preference        :          low",
        " Recursive DNS server     : 2001:db8:1::53",
        "  DNS server lifetime     :           30 (0x0000001e) seconds",
        " DNS search list          : cluster.internal",
        " MTU                      :         1400 bytes (valid)",
        &format!(" from {ll}"),
    ] {
        assert!(
            out.contains(expected),
            "rdisc6 output lacks {expected:?}:\n{out}"
        );
    }
    let status = &service.snapshot()[0];
    assert!(status.rs_received >= 1, "{status:?}");
    service.stop(StopMode::Restart);
}

/// The RA fields rdisc6 prints, one solicitation's worth.
fn rdisc6_fields(net: &Net) -> String {
    let (ok, out) = net.wait_guest("rdisc6 -1 -w 2000 eth0", 10, |o| o.contains("Prefix"));
    assert!(ok, "rdisc6 saw no RA:\n{out}");
    out
}

#[test]
fn a_guest_sees_the_same_ra_fields_from_cilium_peer_as_from_radvd_for_the_same_settings() {
    if skip(&["ip", "rdisc6", "radvd"]) {
        return;
    }
    let net = Net::new();
    net.bridge();
    net.host_link_local();
    let conf = std::env::temp_dir().join(format!("{}.radvd.conf", net.host));
    std::fs::write(
        &conf,
        format!(
            "interface {BRIDGE} {{ AdvSendAdvert on; MinRtrAdvInterval 3; MaxRtrAdvInterval 10; AdvLinkMTU 1400;
               AdvManagedFlag on; AdvDefaultPreference high; AdvReachableTime 30000;
               prefix 2001:db8:1::/64 {{ }};
               route 2001:db8:ff::/48 {{ AdvRoutePreference low; }};
               RDNSS 2001:db8:1::53 {{ AdvRDNSSLifetime 30; }};
               DNSSL cluster.internal {{ AdvDNSSLLifetime 30; }}; }};"
        ),
    )
    .unwrap();
    let pid = std::env::temp_dir().join(format!("{}.radvd.pid", net.host));
    let mut radvd = Command::new("ip")
        .args([
            "netns", "exec", &net.host, "radvd", "-n", "-m", "stderr", "-C",
        ])
        .arg(&conf)
        .arg("-p")
        .arg(&pid)
        .spawn()
        .unwrap();
    let from_radvd = rdisc6_fields(&net);
    let _ = Command::new("kill").arg(radvd.id().to_string()).status();
    radvd.wait().unwrap();
    std::fs::remove_file(&conf).unwrap();
    let service = Service::start(
        &net.host,
        vec![bridge(
            r#"{ "min_interval": 3, "max_interval": 10, "mtu": 1400, "managed": true,
                 "router_preference": "high", "reachable_time": 30000,
                 "routes": [ { "prefix": "2001:db8:ff::/48", "preference": "low" } ],
                 "rdnss": ["2001:db8:1::53"], "rdnss_lifetime": 30,
                 "dnssl": ["cluster.internal"], "dnssl_lifetime": 30 }"#,
        )],
    );
    let from_us = rdisc6_fields(&net);
    assert_eq!(from_us, from_radvd);
    service.stop(StopMode::Restart);
}

#[test]
fn a_bridge_created_after_the_start_gets_ras() {
    if skip(&["ip"]) {
        return;
    }
    let net = Net::new();
    let service = Service::start(&net.host, vec![bridge(SETTINGS)]);
    thread::sleep(Duration::from_millis(500));
    assert_eq!(service.snapshot()[0].state, "waiting");
    net.bridge();
    let ll = net.host_link_local();
    let (ok, out) = net.wait_guest("ip -6 route show default dev eth0", 15, |o| {
        o.contains(&format!("via {ll} "))
    });
    assert!(
        ok,
        "no default route via {ll} after the bridge appeared:\n{out}"
    );
    assert_eq!(service.snapshot()[0].state, "advertising");
    service.stop(StopMode::Restart);
}

#[test]
fn stopping_sends_a_final_ra_and_the_guest_drops_its_default_route() {
    if skip(&["ip"]) {
        return;
    }
    let net = Net::new();
    net.bridge();
    let service = Service::start(&net.host, vec![bridge(SETTINGS)]);
    let (ok, out) = net.wait_guest("ip -6 route show default dev eth0", 15, |o| {
        o.contains("via fe80::")
    });
    assert!(ok, "no default route:\n{out}");
    service.stop(StopMode::Final);
    let (ok, out) = net.wait_guest("ip -6 route show default dev eth0", 5, str::is_empty);
    assert!(ok, "the default route stayed after the final RA:\n{out}");
}

#[test]
fn a_restart_sends_nothing_and_the_guest_keeps_its_default_route() {
    if skip(&["ip"]) {
        return;
    }
    let net = Net::new();
    net.bridge();
    let service = Service::start(&net.host, vec![bridge(SETTINGS)]);
    let (ok, out) = net.wait_guest("ip -6 route show default dev eth0", 15, |o| {
        o.contains("via fe80::")
    });
    assert!(ok, "no default route:\n{out}");
    service.stop(StopMode::Restart);
    thread::sleep(Duration::from_secs(2));
    assert!(
        net.default_route().contains("via fe80::"),
        "the default route went on restart"
    );
}

#[test]
fn removing_the_bridge_from_the_configuration_sends_a_final_ra() {
    if skip(&["ip"]) {
        return;
    }
    let net = Net::new();
    net.bridge();
    let service = Service::start(&net.host, vec![bridge(SETTINGS)]);
    let (ok, out) = net.wait_guest("ip -6 route show default dev eth0", 15, |o| {
        o.contains("via fe80::")
    });
    assert!(ok, "no default route:\n{out}");
    service.reload(vec![]);
    let (ok, out) = net.wait_guest("ip -6 route show default dev eth0", 5, str::is_empty);
    assert!(
        ok,
        "the default route stayed after the bridge left the configuration:\n{out}"
    );
    assert!(service.snapshot().is_empty());
    service.stop(StopMode::Restart);
}

#[test]
fn a_prefix_removed_on_reload_is_deprecated_in_the_guest() {
    if skip(&["ip"]) {
        return;
    }
    let net = Net::new();
    net.bridge();
    let mut two = bridge(SETTINGS);
    two.prefixes.push("2001:db8:2::/64".parse().unwrap());
    let service = Service::start(&net.host, vec![two]);
    let (ok, out) = net.wait_guest("ip -6 addr show dev eth0", 15, |o| {
        o.contains("inet6 2001:db8:2:")
    });
    assert!(ok, "no SLAAC address in 2001:db8:2::/64:\n{out}");
    service.reload(vec![bridge(SETTINGS)]);
    let (ok, out) = net.wait_guest("ip -6 addr show dev eth0", 10, |o| {
        o.lines()
            .any(|l| l.contains("inet6 2001:db8:2:") && l.contains("deprecated"))
    });
    assert!(
        ok,
        "the removed prefix's address was not deprecated:\n{out}"
    );
    let status = &service.snapshot()[0];
    assert_eq!(
        status.deprecated,
        ["2001:db8:2::/64".parse::<ipnet::Ipv6Net>().unwrap()]
    );
    service.stop(StopMode::Restart);
}

/// Sends a Router Solicitation from the guest with `hop_limit` and reports whether a
/// unicast RA came back within 1.5 s.
fn solicit_from_guest(net: &Net, hop_limit: u32) -> bool {
    let path = format!("/var/run/netns/{}", net.guest);
    thread::spawn(move || {
        let ns = std::fs::File::open(path).unwrap();
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let socket = socket2::Socket::new(
            socket2::Domain::IPV6,
            socket2::Type::RAW,
            Some(socket2::Protocol::ICMPV6),
        )
        .unwrap();
        socket.bind_device(Some(b"eth0")).unwrap();
        socket.set_multicast_hops_v6(hop_limit).unwrap();
        nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::Ipv6RecvPacketInfo,
            &true,
        )
        .unwrap();
        let index = nix::net::if_::if_nametoindex("eth0").unwrap();
        let to = SocketAddrV6::new("ff02::2".parse().unwrap(), 0, 0, index);
        socket
            .send_to(&[133, 0, 0, 0, 0, 0, 0, 0], &to.into())
            .unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < deadline {
            let mut buf = [0u8; 1500];
            let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo);
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            use std::os::fd::AsRawFd;
            let Ok(msg) = nix::sys::socket::recvmsg::<nix::sys::socket::SockaddrIn6>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                nix::sys::socket::MsgFlags::empty(),
            ) else {
                continue;
            };
            let unicast = msg.cmsgs().unwrap().any(|c| {
                matches!(c, nix::sys::socket::ControlMessageOwned::Ipv6PacketInfo(info)
                    if !Ipv6Addr::from(info.ipi6_addr.s6_addr).is_multicast())
            });
            if msg.bytes > 0 && buf[0] == 134 && unicast {
                return true;
            }
        }
        false
    })
    .join()
    .unwrap()
}

#[test]
fn a_solicitation_with_hop_limit_254_gets_no_answer_and_one_with_255_does() {
    if skip(&["ip"]) {
        return;
    }
    let net = Net::new();
    // The guest's own solicitations would draw unicast answers too: keep it quiet.
    sh(&format!(
        "ip netns exec {} sysctl -qw net.ipv6.conf.default.router_solicitations=0 net.ipv6.conf.default.accept_ra=0",
        net.guest
    ));
    net.bridge();
    let service = Service::start(&net.host, vec![bridge(SETTINGS)]);
    net.host_link_local();
    let deadline = Instant::now() + Duration::from_secs(10);
    while service.snapshot()[0].state != "advertising" {
        assert!(Instant::now() < deadline, "never advertising");
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !solicit_from_guest(&net, 254),
        "a solicitation with hop limit 254 was answered"
    );
    let status = &service.snapshot()[0];
    assert_eq!((status.rs_received, status.rs_invalid), (0, 1));
    assert!(
        solicit_from_guest(&net, 255),
        "a valid solicitation was not answered by unicast"
    );
    assert_eq!(service.snapshot()[0].rs_received, 1);
    service.stop(StopMode::Restart);
}

#[test]
fn the_status_of_a_disabled_bridge_says_so() {
    if skip(&["ip"]) {
        return;
    }
    let net = Net::new();
    let mut off: Bridge = bridge("{}");
    off.ra = RaConfig {
        enable: Some(false),
        ..RaConfig::default()
    };
    let service = Service::start(&net.host, vec![off]);
    let status = service.snapshot();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].state, "disabled");
    service.stop(StopMode::Final);
}
