//! The benchmark behind `bench/run`: cilium-peer against BIRD 2 and the kernel's own limits,
//! side by side in one run, in network namespaces it makes and removes.
//!
//! - ingest: a BIRD 2 injector exports N IPv4 + N IPv6 static routes over one IPv6 iBGP
//!   session with extended next hop; time from enabling the session to all 2N routes in the
//!   receiver's kernel table. The kernel's limits: one `ip -batch` of the same routes, and
//!   the best path (a nexthop object, IPv4 and IPv6 batches on two netlink sockets at once).
//! - withdraw: time from the injector dropping the session to the table being empty; the
//!   kernel's limit is deleting the one nexthop object the routes use.
//! - memory: each daemon's peak RSS (VmHWM) once it holds the 2N routes.
//! - many peers: P sessions from one injector (P addresses), each with its own IPv4 and IPv6
//!   pod CIDR, plus L LoadBalancer IPs announced by all of them (ECMP over P next hops).
//!
//! Progress is read from the kernel's own counters (/proc/net/fib_triestat per table,
//! /proc/net/rt6_stats), never from route dumps, except in the many-peers case, whose few
//! hundred routes are dumped to count their ECMP legs.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const TABLE: u32 = 1336;
const PROTO: u8 = cilium_peer::config::DEFAULT_KERNEL_PROTOCOL;
const BRIDGE: &str = "vmbr-bench";
const HOST_V6: &str = "2001:db8:1::1";
const INJECTOR_V6: &str = "2001:db8:1::2";
const ASN: u32 = 65100;
/// Longest wait for any one step; a liveness bound, never a result.
const LIMIT: Duration = Duration::from_secs(300);

struct Options {
    n: u32,
    peers: u32,
    lbs: u32,
    runs: u32,
    daemon: PathBuf,
    ingest: bool,
    many: bool,
    keep: bool,
}

fn usage() -> &'static str {
    "usage: bench [--n N] [--quick] [--peers P] [--lbs L] [--runs R] [--only ingest|many] [--keep] --daemon PATH\n\
     \n\
     --n N        IPv4 and IPv6 routes each for ingest/withdraw (default 100000)\n\
     --quick      N = 10000, P = 20, one run\n\
     --peers P    sessions in the many-peers case (default 200)\n\
     --lbs L      LoadBalancer IPs per family announced by every peer (default 50)\n\
     --runs R     repeat each measurement, report the median (default 1)\n\
     --only X     run only the ingest/withdraw/memory part or only the many-peers part\n\
     --keep       keep the lab directory (configs, logs) after the run\n\
     --daemon P   the cilium-peer binary (release build)"
}

/// Namespaces to remove if the run is interrupted.
static NAMESPACES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
/// The lab directory to remove then (unless --keep).
static LAB_DIR: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

fn remove_namespace(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", ns]).status();
}

/// On SIGINT or SIGTERM: remove the lab's namespaces (with what runs in them) and exit.
fn clean_up_on_signals() {
    use nix::sys::signal::{SigSet, Signal};
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    let _ = signals.thread_block();
    std::thread::spawn(move || {
        if let Ok(signal) = signals.wait() {
            eprintln!("bench: {signal}: removing the lab");
            for ns in NAMESPACES.lock().unwrap().iter() {
                remove_namespace(ns);
            }
            if let Some(dir) = LAB_DIR.lock().unwrap().as_ref() {
                let _ = fs::remove_dir_all(dir);
            }
            std::process::exit(130);
        }
    });
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("load") {
        return loader::main(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("legs") {
        return loader::legs_main(&args[1..]);
    }
    clean_up_on_signals();
    let options = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}\n{}", usage());
            return ExitCode::from(2);
        }
    };
    if !nix::unistd::geteuid().is_root() {
        eprintln!("bench: needs root (network namespaces, routing tables)");
        return ExitCode::from(1);
    }
    for program in ["ip", "bird", "birdc"] {
        if !have(program) {
            eprintln!("bench: {program} is not installed (apt-get install iproute2 bird2)");
            return ExitCode::from(1);
        }
    }
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::from(1)
        }
    }
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        n: 100_000,
        peers: 200,
        lbs: 50,
        runs: 1,
        daemon: PathBuf::new(),
        ingest: true,
        many: true,
        keep: false,
    };
    let mut i = 0;
    let value = |i: usize| -> Result<&String, String> {
        args.get(i + 1)
            .ok_or_else(|| format!("{} needs a value", args[i]))
    };
    let number = |i: usize| -> Result<u32, String> {
        value(i)?
            .parse()
            .map_err(|_| format!("{}: not a number", args[i]))
    };
    while i < args.len() {
        match args[i].as_str() {
            "--n" => o.n = number(i)?,
            "--peers" => o.peers = number(i)?,
            "--lbs" => o.lbs = number(i)?,
            "--runs" => o.runs = number(i)?.max(1),
            "--daemon" => o.daemon = PathBuf::from(value(i)?),
            "--only" => match value(i)?.as_str() {
                "ingest" => o.many = false,
                "many" => o.ingest = false,
                other => return Err(format!("--only {other}: ingest or many")),
            },
            "--quick" => {
                o.n = 10_000;
                o.peers = 20;
                o.runs = 1;
                i += 1;
                continue;
            }
            "--keep" => {
                o.keep = true;
                i += 1;
                continue;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
        i += 2;
    }
    if o.daemon.as_os_str().is_empty() {
        return Err("--daemon is required".into());
    }
    if o.n == 0 || o.n > 1 << 18 {
        return Err("--n must be 1..262144".into());
    }
    if o.peers == 0 || o.peers > 250 || o.lbs > 250 {
        return Err("--peers must be 1..250 and --lbs at most 250".into());
    }
    Ok(o)
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits until `check` gives a value, polling every `every`.
fn wait<T>(what: &str, every: Duration, mut check: impl FnMut() -> Option<T>) -> Result<T, String> {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if start.elapsed() > LIMIT {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(every);
    }
}

/// Two namespaces: `host` with the bridge (the receivers run here), `inj` with the BIRD
/// injector on a veth port of the bridge.
struct Lab {
    host: String,
    inj: String,
    dir: PathBuf,
    keep: bool,
    children: Vec<(String, Child)>,
    /// A process in `host`, whose /proc/PID/net shows the host namespace's counters.
    anchor: u32,
}

impl Lab {
    fn new(keep: bool, injector_addresses: u32) -> Result<Lab, String> {
        let id = std::process::id() % 100_000;
        let dir = std::env::temp_dir().join(format!("cilium-peer-bench-{id}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if !keep {
            *LAB_DIR.lock().unwrap() = Some(dir.clone());
        }
        let mut lab = Lab {
            host: format!("cpbh{id}"),
            inj: format!("cpbi{id}"),
            dir,
            keep,
            children: Vec::new(),
            anchor: 0,
        };
        for ns in [lab.host.clone(), lab.inj.clone()] {
            sh(&["ip", "netns", "add", &ns])?;
            NAMESPACES.lock().unwrap().push(ns.clone());
            lab.exec(&ns, &["ip", "link", "set", "lo", "up"])?;
            // No duplicate address detection: the set of local routes is final at once.
            lab.exec(
                &ns,
                &["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"],
            )?;
            lab.exec(&ns, &["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"])?;
        }
        let (host, inj) = (lab.host.clone(), lab.inj.clone());
        lab.exec(&host, &["ip", "link", "add", BRIDGE, "type", "bridge"])?;
        lab.exec(&host, &["ip", "link", "set", BRIDGE, "up"])?;
        lab.exec(&host, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        lab.exec(&host, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])?;
        let port = format!("vbi{id}");
        sh(&[
            "ip", "link", "add", &port, "netns", &host, "type", "veth", "peer", "name", "eth0",
            "netns", &inj,
        ])?;
        lab.exec(&host, &["ip", "link", "set", &port, "master", BRIDGE, "up"])?;
        lab.exec(&inj, &["sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"])?;
        lab.exec(&inj, &["ip", "link", "set", "eth0", "up"])?;
        let mut batch = String::new();
        for a in ["192.0.2.1/24", &format!("{HOST_V6}/64")] {
            writeln!(batch, "address add {a} dev {BRIDGE} nodad").unwrap();
        }
        lab.batch(&host, "host-addresses", &batch)?;
        let mut batch = format!(
            "address add 192.0.2.2/24 dev eth0\naddress add {INJECTOR_V6}/64 dev eth0 nodad\n"
        );
        for i in 0..injector_addresses {
            writeln!(batch, "address add {}/64 dev eth0 nodad", peer_address(i)).unwrap();
        }
        lab.batch(&inj, "injector-addresses", &batch)?;
        let child = lab.spawn(&host, "anchor", &["sleep", "1000000"])?;
        lab.anchor = child;
        // Link-local addresses and their routes come a moment after the links are up.
        let mut last = (lab.counters().1, Instant::now());
        wait(
            "the host's IPv6 routes to settle",
            Duration::from_millis(50),
            || {
                let now = lab.counters().1;
                if now != last.0 {
                    last = (now, Instant::now());
                }
                (last.1.elapsed() > Duration::from_secs(1)).then_some(())
            },
        )?;
        Ok(lab)
    }

    fn exec(&self, ns: &str, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(args);
        sh(&full)
    }

    fn write(&self, name: &str, text: &str) -> Result<PathBuf, String> {
        let path = self.dir.join(name);
        fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// Runs `ip -batch` in `ns`.
    fn batch(&self, ns: &str, name: &str, text: &str) -> Result<(), String> {
        let path = self.write(&format!("{name}.batch"), text)?;
        sh(&["ip", "-n", ns, "-batch", path.to_str().unwrap()]).map(|_| ())
    }

    /// Starts a process in `ns` (its output to `label.log`); returns its pid.
    fn spawn(&mut self, ns: &str, label: &str, args: &[&str]) -> Result<u32, String> {
        let log =
            fs::File::create(self.dir.join(format!("{label}.log"))).map_err(|e| e.to_string())?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {args:?}: {e}"))?;
        // `ip netns exec` execs the program: the pid is the program's.
        let pid = child.id();
        self.children.push((label.to_string(), child));
        Ok(pid)
    }

    /// Whether a process started by `spawn` still runs.
    fn running(&mut self, label: &str) -> bool {
        self.children
            .iter_mut()
            .find(|(l, _)| l == label)
            .is_some_and(|(_, child)| matches!(child.try_wait(), Ok(None)))
    }

    /// Stops a process started by `spawn`: SIGTERM, then SIGKILL after 10 s.
    fn stop(&mut self, label: &str) {
        if let Some(i) = self.children.iter().position(|(l, _)| l == label) {
            let (_, mut child) = self.children.remove(i);
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Our table's IPv4 prefixes and the namespace's IPv6 route entries (all tables).
    fn counters(&self) -> (u64, u64) {
        let proc_net = format!("/proc/{}/net", self.anchor);
        let v4 = fs::read_to_string(format!("{proc_net}/fib_triestat"))
            .map(|s| triestat_prefixes(&s, TABLE))
            .unwrap_or(0);
        let v6 = fs::read_to_string(format!("{proc_net}/rt6_stats"))
            .map(|s| rt6_entries(&s))
            .unwrap_or(0);
        (v4, v6)
    }

    /// Removes every route from our table and every nexthop object.
    fn clear_table(&self) -> Result<(), String> {
        let table = TABLE.to_string();
        for family in ["-4", "-6"] {
            let _ = self.exec(
                &self.host,
                &["ip", family, "route", "flush", "table", &table],
            );
        }
        let _ = self.exec(&self.host, &["ip", "nexthop", "flush"]);
        Ok(())
    }

    fn birdc(&self, socket: &Path, command: &[&str]) -> Result<String, String> {
        let mut args = vec!["birdc", "-s", socket.to_str().unwrap()];
        args.extend_from_slice(command);
        sh(&args)
    }

    /// Whether the host namespace has a TCP socket on local port 179 in `state` (hex, as
    /// /proc/net/tcp6 shows it: 0A listening, 01 established).
    fn bgp_socket(&self, state: &str) -> bool {
        let path = format!("/proc/{}/net/tcp6", self.anchor);
        fs::read_to_string(path).is_ok_and(|text| {
            text.lines().skip(1).any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1].ends_with(":00B3") && f[3] == state
            })
        })
    }

    /// Waits until something listens on TCP port 179 in the host namespace.
    fn wait_listening(&self) -> Result<(), String> {
        wait("a BGP listener", Duration::from_millis(10), || {
            self.bgp_socket("0A").then_some(())
        })
    }

    /// Waits for the injector's first connection to port 179; returns when it was seen.
    /// Measurements start there, so BIRD's connect delay is not counted against anyone.
    fn wait_connection(&self) -> Result<Instant, String> {
        wait("a BGP connection", Duration::from_millis(1), || {
            self.bgp_socket("01").then(Instant::now)
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.host, &self.inj] {
            remove_namespace(ns);
            NAMESPACES.lock().unwrap().retain(|n| n != ns);
        }
        if self.keep {
            eprintln!("lab files kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The "Prefixes:" count of table `table` in /proc/net/fib_triestat (0 if it has none).
fn triestat_prefixes(text: &str, table: u32) -> u64 {
    let header = match table {
        254 => "Main:".to_string(),
        255 => "Local:".to_string(),
        t => format!("Id {t}:"),
    };
    let mut lines = text.lines().skip_while(|l| l.trim() != header).skip(1);
    lines
        .find_map(|l| l.trim().strip_prefix("Prefixes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// fib_rt_entries, the fourth (hexadecimal) field of /proc/net/rt6_stats.
fn rt6_entries(text: &str) -> u64 {
    text.split_whitespace()
        .nth(3)
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or(0)
}

/// The injector's address for session `i` of the many-peers case.
fn peer_address(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 1, i as u16)
}

/// The `i`th IPv4 and IPv6 prefix of the bulk set: /26s in 10.0.0.0/8, /64s in fd00:1::/32.
fn bulk_v4(i: u32) -> String {
    let a = i << 6;
    format!("10.{}.{}.{}/26", (a >> 16) & 255, (a >> 8) & 255, a & 255)
}

fn bulk_v6(i: u32) -> String {
    format!("fd00:1:{:x}:{:x}::/64", i >> 16, i & 0xffff)
}

/// The injector: static routes exported over iBGP with extended next hop, sessions
/// disabled until the measurement enables them. `sessions` are (name, local address,
/// router id, IPv4 export filter, IPv6 export filter).
fn injector_config(
    log: &Path,
    statics4: &str,
    statics6: &str,
    sessions: &[(String, String, String, String, String)],
) -> String {
    let mut c = format!(
        "log \"{}\" {{ info, warning, error, fatal }};\nrouter id 192.0.2.2;\nprotocol device {{}}\n\
         protocol static s4 {{ ipv4;\n{statics4}}}\nprotocol static s6 {{ ipv6;\n{statics6}}}\n",
        log.display()
    );
    for (name, local, router_id, filter4, filter6) in sessions {
        writeln!(
            c,
            "protocol bgp {name} {{\n  disabled;\n  router id {router_id};\n  local {local} as {ASN};\n  \
             neighbor {HOST_V6} as {ASN};\n  direct;\n  strict bind on;\n  graceful restart off;\n  connect delay time 1;\n  connect retry time 1;\n  \
             ipv4 {{ extended next hop on; next hop self; import none; export {filter4}; }};\n  \
             ipv6 {{ next hop self; import none; export {filter6}; }};\n}}"
        )
        .unwrap();
    }
    c
}

/// BIRD 2 as the seed's host: passive, a dynamic neighbor range, extended next hop,
/// kernel protocols exporting to the table (with `merge paths` for ECMP).
fn bird_host_config(log: &Path, merge_paths: bool) -> String {
    let merge = if merge_paths {
        "  merge paths on limit 255;\n"
    } else {
        ""
    };
    format!(
        "log \"{log}\" {{ info, warning, error, fatal }};\nrouter id 192.0.2.1;\nprotocol device {{}}\n\
         protocol kernel {{\n  kernel table {TABLE};\n{merge}  ipv4 {{ export all; }};\n}}\n\
         protocol kernel {{\n  kernel table {TABLE};\n{merge}  ipv6 {{ export filter {{ if source = RTS_STATIC then reject; accept; }}; }};\n}}\n\
         protocol static {{ ipv6; route 2001:db8:1::/64 via \"{BRIDGE}\"; }}\n\
         protocol bgp {{\n  local {HOST_V6} port 179 as {ASN};\n  neighbor range 2001:db8:1::/64 port 179 as {ASN} internal;\n  \
         dynamic name \"GW6_\";\n  direct;\n  passive;\n  ipv4 {{ extended next hop yes; import all; }};\n  ipv6 {{ import all; }};\n}}\n",
        log = log.display()
    )
}

fn cilium_peer_config(lab: &Lab) -> String {
    format!(
        r#"{{
  "router_id": "192.0.2.1",
  "asn": {ASN},
  "listen": ["[::]:179"],
  "kernel": {{ "table": {TABLE}, "persist": false, "multipath": true, "max_paths": 255 }},
  "bridges": {{ "{BRIDGE}": {{ "prefixes": ["192.0.2.0/24", "2001:db8:1::/64"], "ra": {{ "enable": false }} }} }},
  "neighbors": [ {{ "name": "node", "range": "2001:db8:1::/64", "asn": {ASN}, "graceful_restart": false }} ],
  "control_socket": "{}"
}}"#,
        lab.dir.join("control.sock").display()
    )
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Receiver {
    CiliumPeer,
    Bird,
}

impl Receiver {
    fn name(self) -> &'static str {
        match self {
            Receiver::CiliumPeer => "cilium-peer",
            Receiver::Bird => "BIRD",
        }
    }

    /// Starts the receiver in the host namespace; returns its pid once it listens.
    fn start(self, lab: &mut Lab, options: &Options, merge_paths: bool) -> Result<u32, String> {
        let host = lab.host.clone();
        let pid = match self {
            Receiver::CiliumPeer => {
                let config = lab.write("cilium-peer.json", &cilium_peer_config(lab))?;
                lab.spawn(
                    &host,
                    "receiver",
                    &[
                        options.daemon.to_str().unwrap(),
                        "run",
                        "--config",
                        config.to_str().unwrap(),
                    ],
                )?
            }
            Receiver::Bird => {
                let log = lab.dir.join("bird-host.log");
                let config = lab.write("bird-host.conf", &bird_host_config(&log, merge_paths))?;
                let socket = lab.dir.join("bird-host.ctl");
                let pidfile = lab.dir.join("bird-host.pid");
                lab.spawn(
                    &host,
                    "receiver",
                    &[
                        "bird",
                        "-f",
                        "-c",
                        config.to_str().unwrap(),
                        "-s",
                        socket.to_str().unwrap(),
                        "-P",
                        pidfile.to_str().unwrap(),
                    ],
                )?
            }
        };
        lab.wait_listening()?;
        Ok(pid)
    }
}

/// Peak and current RSS of a process, and the current RSS's anonymous and file-backed
/// parts (heap and stacks; the binary's and libraries' pages), in KiB.
fn rss_kib(pid: u32) -> (u64, u64, u64, u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (
        field("VmHWM:"),
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:"),
    )
}

/// One daemon's ingest/withdraw/memory figures.
#[derive(Default, Clone, Copy)]
struct Daemon {
    ingest: f64,
    withdraw: f64,
    hwm_kib: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn spread(v: &[f64]) -> String {
    if v.len() < 2 {
        return String::new();
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    format!(" ({min:.2}-{max:.2})")
}

struct Poller<'a> {
    lab: &'a Lab,
    base6: u64,
    /// The injector's control socket, poked at every poll (see [`Waker`]).
    waker: Option<Waker>,
}

/// Keeps the injector BIRD's event loop turning. BIRD 2.0 sometimes leaves the last
/// UPDATEs of a burst unsent until its poll() times out, 3 s later; it happens when the
/// receiver drains the session faster than BIRD fills it (so with cilium-peer, not with BIRD
/// as the receiver). A command on its control socket every poll wakes the loop, for every
/// receiver alike.
struct Waker(std::os::unix::net::UnixStream);

impl Waker {
    fn connect(socket: &Path) -> Result<Waker, String> {
        let stream = std::os::unix::net::UnixStream::connect(socket).map_err(|e| e.to_string())?;
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(Waker(stream))
    }

    fn poke(&mut self) {
        use std::io::Read;
        let mut sink = [0u8; 4096];
        while matches!(self.0.read(&mut sink), Ok(n) if n > 0) {}
        let _ = self.0.write_all(b"show status\n");
    }
}

impl Poller<'_> {
    /// Waits until the table holds `v4` IPv4 prefixes and `v6` IPv6 routes above the
    /// baseline; returns the time since `start`.
    fn until(&mut self, what: &str, start: Instant, v4: u64, v6: u64) -> Result<f64, String> {
        let mut waker = self.waker.take();
        let mut last = (0, 0);
        let mut first: Option<f64> = None;
        let initial = self.lab.counters();
        let result = wait(what, Duration::from_millis(20), || {
            if let Some(w) = waker.as_mut() {
                w.poke();
            }
            let (a, b) = self.lab.counters();
            if first.is_none() && (a, b) != initial {
                first = Some(start.elapsed().as_secs_f64());
            }
            if (a, b) != last && std::env::var_os("BENCH_TRACE").is_some() {
                eprintln!("    {:.3} s: {a} {b}", start.elapsed().as_secs_f64());
            }
            last = (a, b);
            (a == v4 && b == self.base6 + v6).then(|| start.elapsed().as_secs_f64())
        })
        .map_err(|e| {
            format!(
                "{e}: want {v4} IPv4 and {} IPv6 entries, have {} and {}",
                self.base6 + v6,
                last.0,
                last.1
            )
        });
        if std::env::var_os("BENCH_DEBUG").is_some() {
            eprintln!(
                "    {what}: first change after {:.3} s",
                first.unwrap_or(0.0)
            );
        }
        self.waker = waker;
        result
    }
}

fn run(options: &Options) -> Result<(), String> {
    let machine = machine();
    println!("{machine}");
    let mut report = String::new();
    if options.ingest {
        report.push_str(&ingest(options)?);
    }
    if options.many {
        report.push_str(&many_peers(options)?);
    }
    println!("\n{machine}\n{report}");
    Ok(())
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0);
    let kernel = sh(&["uname", "-r"]).unwrap_or_default();
    let bird = Command::new("bird")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stderr).trim().to_string()
                + String::from_utf8_lossy(&o.stdout).trim()
        })
        .unwrap_or_default();
    format!(
        "machine: {cpu}, {cores} cores, {:.1} GiB; kernel {}; {bird}",
        mem as f64 / (1 << 20) as f64,
        kernel.trim()
    )
}

fn ingest(options: &Options) -> Result<String, String> {
    let n = options.n;
    let mut lab = Lab::new(options.keep, 0)?;
    println!(
        "ingest: {n} IPv4 + {n} IPv6 routes, {} run(s) each",
        options.runs
    );

    // The injector, loaded once; its session is enabled and disabled per run.
    let mut s4 = String::with_capacity(n as usize * 40);
    let mut s6 = String::with_capacity(n as usize * 40);
    for i in 0..n {
        writeln!(s4, "route {} blackhole;", bulk_v4(i)).unwrap();
        writeln!(s6, "route {} blackhole;", bulk_v6(i)).unwrap();
    }
    let inj_log = lab.dir.join("injector.log");
    let config = injector_config(
        &inj_log,
        &s4,
        &s6,
        &[(
            "bulk".into(),
            INJECTOR_V6.into(),
            "192.0.2.2".into(),
            "all".into(),
            "all".into(),
        )],
    );
    let inj_socket = start_injector(&mut lab, "injector", &config)?;
    wait_injector(&lab, &inj_socket, 2 * u64::from(n))?;

    // The kernel's limits.
    let mut batch_times = Vec::new();
    let mut best_times = Vec::new();
    let mut delete_times = Vec::new();
    let mut file = String::with_capacity(n as usize * 160);
    for i in 0..n {
        writeln!(
            file,
            "route add {} via inet6 {INJECTOR_V6} dev {BRIDGE} table {TABLE} proto {PROTO}",
            bulk_v4(i)
        )
        .unwrap();
        writeln!(
            file,
            "route add {} via {INJECTOR_V6} dev {BRIDGE} table {TABLE} proto {PROTO}",
            bulk_v6(i)
        )
        .unwrap();
    }
    let batch_file = lab.write("kernel.batch", &file)?;
    drop(file);
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    for run in 0..options.runs {
        lab.clear_table()?;
        let mut poller = Poller {
            lab: &lab,
            base6: lab.counters().1,
            waker: None,
        };
        let start = Instant::now();
        sh(&[
            "ip",
            "-n",
            &lab.host,
            "-batch",
            batch_file.to_str().unwrap(),
        ])?;
        let t = poller.until("ip -batch routes", start, n.into(), n.into())?;
        println!("  run {run}: kernel, one ip -batch: {t:.2} s");
        batch_times.push(t);
        lab.clear_table()?;

        let start = Instant::now();
        sh(&[
            "ip",
            "netns",
            "exec",
            &lab.host,
            me.to_str().unwrap(),
            "load",
            &n.to_string(),
        ])?;
        let t = poller.until("best-path routes", start, n.into(), n.into())?;
        println!("  run {run}: kernel, best path: {t:.2} s");
        best_times.push(t);
        let start = Instant::now();
        sh(&[
            "ip",
            "-n",
            &lab.host,
            "nexthop",
            "del",
            "id",
            &loader::NH_ID.to_string(),
        ])?;
        let t = poller.until("best-path routes to go", start, 0, 0)?;
        println!("  run {run}: kernel, delete the nexthop object: {t:.2} s");
        delete_times.push(t);
    }

    let mut daemons = Vec::new();
    for receiver in [Receiver::Bird, Receiver::CiliumPeer] {
        let mut runs = Vec::new();
        for run in 0..options.runs {
            lab.clear_table()?;
            let pid = receiver.start(&mut lab, options, false)?;
            let mut poller = Poller {
                lab: &lab,
                base6: lab.counters().1,
                waker: Some(Waker::connect(&inj_socket)?),
            };
            lab.birdc(&inj_socket, &["enable", "bulk"])?;
            let start = lab.wait_connection()?;
            let ingest = poller.until("routes from the injector", start, n.into(), n.into())?;
            let (hwm_kib, rss, anon, file) = rss_kib(pid);
            let start = Instant::now();
            lab.birdc(&inj_socket, &["disable", "bulk"])?;
            let withdraw = poller.until("routes to go", start, 0, 0)?;
            let mib = |kib: u64| kib as f64 / 1024.0;
            println!(
                "  run {run}: {}: ingest {ingest:.2} s, withdraw {withdraw:.2} s, peak RSS {:.1} MiB \
                 (now {:.1} MiB: {:.1} anonymous, {:.1} file-backed; peak after the withdraw {:.1} MiB)",
                receiver.name(),
                mib(hwm_kib),
                mib(rss),
                mib(anon),
                mib(file),
                mib(rss_kib(pid).0),
            );
            lab.stop("receiver");
            runs.push(Daemon {
                ingest,
                withdraw,
                hwm_kib,
            });
        }
        daemons.push((receiver, runs));
    }
    drop(lab);

    let best = median(best_times.clone());
    let delete = median(delete_times.clone());
    let bird = &daemons[0].1;
    let bird_ingest = median(bird.iter().map(|d| d.ingest).collect());
    let bird_withdraw = median(bird.iter().map(|d| d.withdraw).collect());
    let bird_hwm = median(bird.iter().map(|d| d.hwm_kib as f64).collect());
    let mut t = format!(
        "\nIngest and withdraw, N = {n} (2N = {} routes), median of {} run(s)\n\n\
         | who | ingest s | vs kernel best | vs BIRD | withdraw s | vs kernel | vs BIRD | peak RSS MiB | vs BIRD |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        2 * n,
        options.runs
    );
    let batch = median(batch_times.clone());
    writeln!(
        t,
        "| kernel, one `ip -batch` | {batch:.2}{} | {:.2}x | {:.2}x | | | | | |",
        spread(&batch_times),
        batch / best,
        batch / bird_ingest
    )
    .unwrap();
    writeln!(
        t,
        "| kernel, best path | {best:.2}{} | 1.00x | {:.2}x | {delete:.2}{} | 1.00x | {:.2}x | | |",
        spread(&best_times),
        best / bird_ingest,
        spread(&delete_times),
        delete / bird_withdraw
    )
    .unwrap();
    for (receiver, runs) in &daemons {
        let ingest: Vec<f64> = runs.iter().map(|d| d.ingest).collect();
        let withdraw: Vec<f64> = runs.iter().map(|d| d.withdraw).collect();
        let (i, w) = (median(ingest.clone()), median(withdraw.clone()));
        let hwm = median(runs.iter().map(|d| d.hwm_kib as f64).collect());
        writeln!(
            t,
            "| {} | {i:.2}{} | {:.2}x | {:.2}x | {w:.2}{} | {:.2}x | {:.2}x | {:.1} | {:.2}x |",
            receiver.name(),
            spread(&ingest),
            i / best,
            i / bird_ingest,
            spread(&withdraw),
            w / delete,
            w / bird_withdraw,
            hwm / 1024.0,
            hwm / bird_hwm
        )
        .unwrap();
    }
    Ok(t)
}

/// Starts the injector BIRD and waits until it holds `routes` static routes.
fn start_injector(lab: &mut Lab, name: &str, config: &str) -> Result<PathBuf, String> {
    let config = lab.write(&format!("{name}.conf"), config)?;
    let socket = lab.dir.join(format!("{name}.ctl"));
    let pidfile = lab.dir.join(format!("{name}.pid"));
    let inj = lab.inj.clone();
    lab.spawn(
        &inj,
        name,
        &[
            "bird",
            "-f",
            "-c",
            config.to_str().unwrap(),
            "-s",
            socket.to_str().unwrap(),
            "-P",
            pidfile.to_str().unwrap(),
        ],
    )?;
    Ok(socket)
}

/// Waits until the injector behind `socket` holds `routes` static routes.
fn wait_injector(lab: &Lab, socket: &Path, routes: u64) -> Result<(), String> {
    wait(
        "the injector's static routes",
        Duration::from_millis(100),
        || {
            let out = lab.birdc(socket, &["show", "route", "count"]).ok()?;
            let total: u64 = out
                .lines()
                .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
                .sum();
            (total == routes).then_some(())
        },
    )
}

/// ECMP legs per family in our table: routes, each counted once per next hop. Read with a
/// netlink dump of our own: `ip -6 route` shows nothing at all once one IPv6 route has
/// more than about 130 next hops (the kernel's first dump buffer is sized by the socket's
/// earlier reads, and iproute2's socket is fresh), so the socket reads once with a large
/// buffer before dumping.
fn legs(lab: &Lab) -> (u64, u64) {
    let me = std::env::current_exe().expect("own path");
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.host])
        .arg(me)
        .args(["legs", &TABLE.to_string()])
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut numbers = text.split_whitespace().filter_map(|w| w.parse().ok());
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
}

fn many_peers(options: &Options) -> Result<String, String> {
    let (p, l) = (options.peers, options.lbs);
    println!(
        "many peers: {p} sessions, each with an IPv4 and an IPv6 pod CIDR, plus {l} LoadBalancer IPs per family from all"
    );
    let mut lab = Lab::new(options.keep, p)?;
    // One BIRD per session: BIRD runs only one session at a time to the same neighbor
    // address (its neighbor lock), and every node peers with the same host address.
    let mut sockets = Vec::new();
    for i in 0..p {
        let mut s4 = format!("route 10.200.{i}.0/24 blackhole;\n");
        let mut s6 = format!("route fd00:200:0:{i:x}::/64 blackhole;\n");
        for j in 1..=l {
            writeln!(s4, "route 198.51.100.{j}/32 blackhole;").unwrap();
            writeln!(s6, "route 2001:db8:ff::{j:x}/128 blackhole;").unwrap();
        }
        let session = (
            "node".to_string(),
            peer_address(i).to_string(),
            format!("10.255.{}.{}", i / 250, i % 250 + 1),
            "all".to_string(),
            "all".to_string(),
        );
        let log = lab.dir.join(format!("node{i}.log"));
        let config = injector_config(&log, &s4, &s6, &[session]);
        sockets.push(start_injector(&mut lab, &format!("node{i}"), &config)?);
    }
    for socket in &sockets {
        wait_injector(&lab, socket, 2 * u64::from(1 + l))?;
    }
    let birdc_all = |command: &str| -> Result<(), String> {
        let mut children = Vec::new();
        for socket in &sockets {
            children.push(
                Command::new("birdc")
                    .args(["-s", socket.to_str().unwrap(), command, "node"])
                    .stdout(Stdio::null())
                    .spawn()
                    .map_err(|e| e.to_string())?,
            );
        }
        for mut child in children {
            child.wait().map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    let want = u64::from(p) + u64::from(l) * u64::from(p);
    let mut results = Vec::new();
    for receiver in [Receiver::Bird, Receiver::CiliumPeer] {
        // Per run: convergence time (or what went wrong) and peak RSS.
        let mut runs: Vec<(Result<f64, String>, f64)> = Vec::new();
        for run in 0..options.runs {
            lab.clear_table()?;
            let pid = receiver.start(&mut lab, options, true)?;
            birdc_all("enable")?;
            let start = lab.wait_connection()?;
            let mut wakers = sockets
                .iter()
                .map(|s| Waker::connect(s))
                .collect::<Result<Vec<_>, _>>()?;
            let mut hwm = 0;
            let mut seen = (0, 0);
            let outcome = wait("ECMP convergence", Duration::from_millis(100), || {
                if !lab.running("receiver") {
                    return Some(Err(format!(
                        "exited after {:.1} s with {} + {} of {want} + {want} legs",
                        start.elapsed().as_secs_f64(),
                        seen.0,
                        seen.1
                    )));
                }
                for waker in &mut wakers {
                    waker.poke();
                }
                hwm = hwm.max(rss_kib(pid).0);
                seen = legs(&lab);
                (seen == (want, want)).then(|| Ok(start.elapsed().as_secs_f64()))
            })
            .unwrap_or_else(Err);
            hwm = hwm.max(rss_kib(pid).0);
            match &outcome {
                Ok(t) => println!(
                    "  run {run}: {}: converged in {t:.2} s, peak RSS {:.1} MiB",
                    receiver.name(),
                    hwm as f64 / 1024.0
                ),
                Err(e) => println!("  run {run}: {}: {e}", receiver.name()),
            }
            birdc_all("disable")?;
            if lab.running("receiver") {
                wait("routes to go", Duration::from_millis(100), || {
                    (legs(&lab) == (0, 0)).then_some(())
                })?;
            }
            lab.stop("receiver");
            runs.push((outcome, hwm as f64));
        }
        results.push((receiver, runs));
    }
    let summary = |runs: &[(Result<f64, String>, f64)]| {
        let times: Vec<f64> = runs
            .iter()
            .filter_map(|(t, _)| t.as_ref().ok().copied())
            .collect();
        let failure = runs.iter().find_map(|(t, _)| t.as_ref().err().cloned());
        let hwm = median(runs.iter().map(|(_, m)| *m).collect());
        (times, failure, hwm)
    };
    let (bird_times, _, bird_m) = summary(&results[0].1);
    let bird_t = (!bird_times.is_empty()).then(|| median(bird_times.clone()));
    let mut t = format!(
        "\nMany peers: {p} sessions, {p} IPv4 + {p} IPv6 pod CIDRs, {l} + {l} LoadBalancer IPs with {p} next hops each; median of {} run(s)\n\n\
         | who | convergence s | vs BIRD | peak RSS MiB | vs BIRD |\n|---|---|---|---|---|\n",
        options.runs
    );
    for (receiver, runs) in &results {
        let (times, failure, m) = summary(runs);
        let label = match receiver {
            Receiver::Bird => "BIRD, merge paths",
            Receiver::CiliumPeer => "cilium-peer",
        };
        let time = match (times.is_empty(), &failure) {
            (false, None) => format!("{:.2}{}", median(times.clone()), spread(&times)),
            (false, Some(f)) => format!(
                "{:.2}{} ({} failed: {f})",
                median(times.clone()),
                spread(&times),
                runs.len() - times.len()
            ),
            (true, f) => format!("failed: {}", f.clone().unwrap_or_default()),
        };
        let ratio = match (times.is_empty(), bird_t) {
            (false, Some(b)) => format!("{:.2}x", median(times.clone()) / b),
            _ => "-".to_string(),
        };
        writeln!(
            t,
            "| {label} | {time} | {ratio} | {:.1} | {:.2}x |",
            m / 1024.0,
            m / bird_m
        )
        .unwrap();
    }
    let _ = io::stdout().flush();
    Ok(t)
}

/// The kernel's best path: one nexthop object, then IPv4 and IPv6 routes using it, sent
/// in large batches without acknowledgements on two netlink sockets in parallel. Runs
/// inside the host namespace (`bench load N`).
mod loader {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    pub const NH_ID: u32 = 4242;
    const RTM_NEWROUTE: u16 = 24;
    const RTM_NEWNEXTHOP: u16 = 104;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const NLM_F_REPLACE: u16 = 0x100;
    const NLM_F_CREATE: u16 = 0x400;
    const NLMSG_ERROR: u16 = 2;
    const RTA_DST: u16 = 1;
    const RTA_TABLE: u16 = 15;
    const RTA_NH_ID: u16 = 30;
    const NHA_ID: u16 = 1;
    const NHA_OIF: u16 = 5;
    const NHA_GATEWAY: u16 = 6;
    /// Bytes per sendmsg.
    const CHUNK: usize = 256 * 1024;

    pub fn main(args: &[String]) -> ExitCode {
        let n: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(0);
        match load(n) {
            Ok(0) => ExitCode::SUCCESS,
            Ok(errors) => {
                eprintln!("load: the kernel refused {errors} requests");
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("load: {e}");
                ExitCode::from(1)
            }
        }
    }

    fn socket() -> io::Result<OwnedFd> {
        // SAFETY: plain socket(2); the fd is owned by the OwnedFd.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let size: libc::c_int = 32 << 20;
        for option in [libc::SO_SNDBUFFORCE, libc::SO_RCVBUFFORCE] {
            // SAFETY: setsockopt with a c_int value of the right size.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    option,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as u32,
                );
            }
        }
        Ok(fd)
    }

    fn send(fd: &OwnedFd, bytes: &[u8]) -> io::Result<()> {
        // SAFETY: sends from a slice we own; the kernel is the default destination.
        let sent = unsafe { libc::send(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads error messages until the acknowledgement of `last_seq` (errno 0); returns how
    /// many requests failed.
    fn collect(fd: &OwnedFd, last_seq: u32) -> io::Result<u64> {
        let mut buffer = vec![0u8; 1 << 20];
        let mut errors = 0;
        loop {
            // SAFETY: receives into a buffer we own.
            let n =
                unsafe { libc::recv(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut at = 0;
            let n = n as usize;
            while at + 16 <= n {
                let len = u32::from_ne_bytes(buffer[at..at + 4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes(buffer[at + 4..at + 6].try_into().unwrap());
                let seq = u32::from_ne_bytes(buffer[at + 8..at + 12].try_into().unwrap());
                if kind == NLMSG_ERROR {
                    let code = i32::from_ne_bytes(buffer[at + 16..at + 20].try_into().unwrap());
                    if code != 0 {
                        errors += 1;
                    }
                    if seq == last_seq {
                        return Ok(errors);
                    }
                }
                at += (len + 3) & !3;
                if len == 0 {
                    break;
                }
            }
        }
    }

    fn header(out: &mut Vec<u8>, kind: u16, flags: u16, seq: u32) -> usize {
        let start = out.len();
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        start
    }

    fn attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
        out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }

    fn finish(out: &mut [u8], start: usize) {
        let len = (out.len() - start) as u32;
        out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn route(out: &mut Vec<u8>, seq: u32, flags: u16, family: u8, dst: &[u8], len: u8) {
        let start = header(out, RTM_NEWROUTE, flags, seq);
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
        out.extend_from_slice(&[family, len, 0, 0, 0, PROTO, 0, 1]);
        out.extend_from_slice(&0u32.to_ne_bytes());
        attr(out, RTA_TABLE, &TABLE.to_ne_bytes());
        attr(out, RTA_DST, dst);
        attr(out, RTA_NH_ID, &NH_ID.to_ne_bytes());
        finish(out, start);
    }

    /// Sends `n` routes of one family on their own socket; returns refused requests.
    fn family(n: u32, v6: bool) -> io::Result<u64> {
        let fd = socket()?;
        let mut out = Vec::with_capacity(CHUNK + 256);
        for i in 0..n {
            let last = i + 1 == n;
            let flags =
                NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE | if last { NLM_F_ACK } else { 0 };
            if v6 {
                let mut dst = [0u8; 16];
                dst[..2].copy_from_slice(&0xfd00u16.to_be_bytes());
                dst[2..4].copy_from_slice(&1u16.to_be_bytes());
                dst[4..6].copy_from_slice(&((i >> 16) as u16).to_be_bytes());
                dst[6..8].copy_from_slice(&(i as u16).to_be_bytes());
                route(&mut out, i + 1, flags, libc::AF_INET6 as u8, &dst, 64);
            } else {
                let a = (10u32 << 24) | (i << 6);
                route(
                    &mut out,
                    i + 1,
                    flags,
                    libc::AF_INET as u8,
                    &a.to_be_bytes(),
                    26,
                );
            }
            if out.len() >= CHUNK || last {
                send(&fd, &out)?;
                out.clear();
            }
        }
        collect(&fd, n)
    }

    /// `bench legs TABLE`: prints the IPv4 and IPv6 ECMP legs in TABLE.
    pub fn legs_main(args: &[String]) -> ExitCode {
        let table: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(TABLE);
        match (
            count_legs(table, libc::AF_INET as u8),
            count_legs(table, libc::AF_INET6 as u8),
        ) {
            (Ok(a), Ok(b)) => {
                println!("{a} {b}");
                ExitCode::SUCCESS
            }
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("legs: {e}");
                ExitCode::from(1)
            }
        }
    }

    fn count_legs(table: u32, family: u8) -> io::Result<u64> {
        const RTM_GETROUTE: u16 = 26;
        const NLM_F_DUMP: u16 = 0x300;
        const NLMSG_DONE: u16 = 3;
        const RTA_MULTIPATH: u16 = 9;
        let fd = socket()?;
        let mut buffer = vec![0u8; 64 << 10];
        // A first read with a large buffer, so that the kernel sizes dump buffers to it.
        let mut out = Vec::new();
        let start = header(&mut out, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_ACK, 1);
        out.extend_from_slice(&[family, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        attr(&mut out, RTA_DST, &[192, 0, 2, 1]);
        finish(&mut out, start);
        if family == libc::AF_INET as u8 {
            send(&fd, &out)?;
            // SAFETY: receives into a buffer we own.
            unsafe { libc::recv(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0) };
        } else {
            let mut out = Vec::new();
            let start = header(&mut out, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_ACK, 1);
            out.extend_from_slice(&[family, 128, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            attr(&mut out, RTA_DST, &Ipv6Addr::LOCALHOST.octets());
            finish(&mut out, start);
            send(&fd, &out)?;
            // SAFETY: as above.
            unsafe { libc::recv(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0) };
        }
        let mut out = Vec::new();
        let start = header(&mut out, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, 2);
        out.extend_from_slice(&[family, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        finish(&mut out, start);
        send(&fd, &out)?;
        let mut legs = 0;
        loop {
            // SAFETY: receives into a buffer we own.
            let n =
                unsafe { libc::recv(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut at = 0;
            let n = n as usize;
            while at + 16 <= n {
                let len = u32::from_ne_bytes(buffer[at..at + 4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes(buffer[at + 4..at + 6].try_into().unwrap());
                let seq = u32::from_ne_bytes(buffer[at + 8..at + 12].try_into().unwrap());
                if len < 16 || at + len > n {
                    break;
                }
                if seq == 2 && (kind == NLMSG_DONE || kind == NLMSG_ERROR) {
                    return Ok(legs);
                }
                if seq == 2 && kind == RTM_NEWROUTE && len >= 28 {
                    let message = &buffer[at + 16..at + len];
                    let mut route_table = u32::from(message[4]);
                    let mut hops = 1;
                    let mut attrs = &message[12..];
                    while attrs.len() >= 4 {
                        let alen = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
                        let akind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
                        if alen < 4 || alen > attrs.len() {
                            break;
                        }
                        let value = &attrs[4..alen];
                        if akind == RTA_TABLE && value.len() == 4 {
                            route_table = u32::from_ne_bytes(value.try_into().unwrap());
                        }
                        if akind == RTA_MULTIPATH {
                            let mut count = 0;
                            let mut rest = value;
                            while rest.len() >= 8 {
                                let hlen = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
                                if hlen < 8 {
                                    break;
                                }
                                count += 1;
                                rest = &rest[((hlen + 3) & !3).min(rest.len())..];
                            }
                            hops = count;
                        }
                        attrs = &attrs[((alen + 3) & !3).min(attrs.len())..];
                    }
                    if route_table == table {
                        legs += hops;
                    }
                }
                at += (len + 3) & !3;
            }
        }
    }

    fn load(n: u32) -> io::Result<u64> {
        let ifindex = nix::net::if_::if_nametoindex(BRIDGE).map_err(io::Error::from)?;
        let fd = socket()?;
        let mut out = Vec::new();
        let start = header(
            &mut out,
            RTM_NEWNEXTHOP,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            1,
        );
        // struct nhmsg: family, scope, protocol, reserved, flags
        out.extend_from_slice(&[libc::AF_INET6 as u8, 0, PROTO, 0]);
        out.extend_from_slice(&0u32.to_ne_bytes());
        attr(&mut out, NHA_ID, &NH_ID.to_ne_bytes());
        attr(&mut out, NHA_OIF, &ifindex.to_ne_bytes());
        let gateway: Ipv6Addr = INJECTOR_V6.parse().unwrap();
        attr(&mut out, NHA_GATEWAY, &gateway.octets());
        finish(&mut out, start);
        send(&fd, &out)?;
        if collect(&fd, 1)? != 0 {
            return Err(io::Error::other("nexthop object refused"));
        }
        let v4 = std::thread::spawn(move || family(n, false));
        let v6 = family(n, true)?;
        let v4 = v4
            .join()
            .map_err(|_| io::Error::other("IPv4 thread panicked"))??;
        Ok(v4 + v6)
    }
}
