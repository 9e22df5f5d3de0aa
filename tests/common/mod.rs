//! Test lab: network namespaces joined by a hyphenated bridge, real GoBGP and BIRD peers,
//! and the cilium-peer binary, all torn down on drop. Tests that need root or a package
//! call `lab_or_skip` (or `skip`, see skip.rs): they return early with a printed, counted
//! reason when they cannot run, and fail instead under CI.

#![allow(dead_code)] // each test binary uses its own part of the lab

pub mod bfdd;
mod bird;
mod gobgp;
mod net;
mod shell;
mod skip;
#[allow(unused_imports)] // each test binary uses its own part of the lab
pub use bird::Bird;
#[allow(unused_imports)]
pub use gobgp::GoBgpNode;
#[allow(unused_imports)]
pub use net::net;
#[allow(unused_imports)]
pub use shell::{have, run, wait_until};
#[allow(unused_imports)]
pub use skip::*;

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use cilium_peer::control::Request;
use serde_json::{Value, json};

pub const BRIDGE: &str = "vmbr-dev";
pub const TABLE: u32 = 1336;
/// Our kernel protocol number (config default, `DEFAULT_KERNEL_PROTOCOL`).
pub const PROTO: u32 = cilium_peer::config::DEFAULT_KERNEL_PROTOCOL as u32;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs a command, panicking with its output when it fails.
pub fn sh(args: &[&str]) -> String {
    run(args).unwrap_or_else(|e| panic!("{e}"))
}

pub fn try_sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// `None` (after `skip` says why) when this machine cannot run namespace tests with
/// `needs`; under CI that fails the test instead.
pub fn lab_or_skip(test: &str, needs: &[&str]) -> Option<Lab> {
    let programs: Vec<&str> = ["ip"].iter().chain(needs).copied().collect();
    if skip_unless(test, &programs) {
        return None;
    }
    Some(Lab::new())
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `limit` saying
/// what was awaited. (A liveness bound, not a performance assertion.)
pub fn wait_for<T>(what: &str, limit: Duration, check: impl FnMut() -> Option<T>) -> T {
    wait_until(what, Duration::from_millis(50), limit, check).unwrap_or_else(|e| panic!("{e}"))
}

/// A set of namespaces: `host` has the bridge; nodes hang off it by veth pairs.
pub struct Lab {
    pub id: String,
    pub host: String,
    pub dir: PathBuf,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
}

impl Lab {
    fn new() -> Lab {
        let id = format!(
            "{}{}",
            std::process::id() % 100_000,
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(format!("cilium-peer-test-{id}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut lab = Lab {
            host: format!("cph{id}"),
            id,
            dir,
            namespaces: Vec::new(),
            children: Vec::new(),
        };
        let host = lab.host.clone();
        lab.add_namespace(&host);
        lab.exec(&host, &["ip", "link", "add", BRIDGE, "type", "bridge"]);
        lab.exec(&host, &["ip", "link", "set", BRIDGE, "up"]);
        lab.exec(&host, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        lab.exec(&host, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        lab.addr(&host, BRIDGE, "192.0.2.1/24");
        lab.addr(&host, BRIDGE, "2001:db8:1::1/64");
        lab.addr(&host, BRIDGE, "fe80::1/64");
        lab
    }

    fn add_namespace(&mut self, name: &str) {
        sh(&["ip", "netns", "add", name]);
        self.namespaces.push(name.to_string());
        self.exec(name, &["ip", "link", "set", "lo", "up"]);
    }

    pub fn exec(&self, ns: &str, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(args);
        sh(&full)
    }

    pub fn try_exec(&self, ns: &str, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(args);
        try_sh(&full)
    }

    /// Runs `f` on a thread that has entered network namespace `ns` (for sockets the test
    /// opens itself).
    pub fn in_namespace<T: Send + 'static>(
        &self,
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: setns on a namespace file we opened, for this thread only.
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }

    pub fn addr(&self, ns: &str, dev: &str, cidr: &str) {
        self.exec(ns, &["ip", "addr", "add", cidr, "dev", dev, "nodad"]);
    }

    /// A node namespace with `eth0` on the host bridge and these addresses.
    pub fn node(&mut self, name: &str, addresses: &[&str]) -> String {
        let ns = format!("cpn{}{name}", self.id);
        self.add_namespace(&ns);
        let host_end = format!("v{}{name}", self.id);
        let host_end = &host_end[..host_end.len().min(15)];
        sh(&[
            "ip", "link", "add", host_end, "netns", &self.host, "type", "veth", "peer", "name",
            "eth0", "netns", &ns,
        ]);
        self.exec(
            &self.host,
            &["ip", "link", "set", host_end, "master", BRIDGE, "up"],
        );
        self.exec(&ns, &["sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"]);
        self.exec(&ns, &["ip", "link", "set", "eth0", "up"]);
        for a in addresses {
            self.addr(&ns, "eth0", a);
        }
        ns
    }

    pub fn spawn(&mut self, ns: &str, label: &str, args: &[&str]) {
        // Appended to, so that a process started again under the same label keeps the
        // earlier run's lines.
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{label}.log")))
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
        self.children.push((label.to_string(), child));
    }

    /// Sends a signal to a spawned process by label and waits for it to exit.
    pub fn stop(&mut self, label: &str, signal: &str) {
        if let Some(i) = self.children.iter().position(|(l, _)| l == label) {
            let (_, mut child) = self.children.remove(i);
            sh(&["kill", &format!("-{signal}"), &child.id().to_string()]);
            let _ = child.wait();
        }
    }

    /// Sends a signal to a spawned process by label (`ip netns exec` execs it, so the
    /// child's pid is the process's own).
    pub fn signal(&self, label: &str, signal: &str) {
        let (_, child) = self
            .children
            .iter()
            .find(|(l, _)| l == label)
            .unwrap_or_else(|| panic!("no process {label}"));
        sh(&["kill", &format!("-{signal}"), &child.id().to_string()]);
    }

    /// Whether the process spawned under `label` still runs.
    pub fn running(&mut self, label: &str) -> bool {
        self.children
            .iter_mut()
            .find(|(l, _)| l == label)
            .is_some_and(|(_, child)| child.try_wait().is_ok_and(|s| s.is_none()))
    }

    /// Rewrites cilium-peer's config file and makes it reload (SIGHUP), waiting until the
    /// log says the new config is in place.
    pub fn reload_cilium_peer(&self, config: &str) {
        let reloads = |log: String| log.matches("config reloaded").count();
        let before = reloads(self.log("cilium-peer"));
        self.write("config.json", config);
        self.signal("cilium-peer", "HUP");
        wait_for(
            &format!("cilium-peer to reload\n{}", self.log("cilium-peer")),
            Duration::from_secs(10),
            || (reloads(self.log("cilium-peer")) > before).then_some(()),
        );
    }

    pub fn log(&self, label: &str) -> String {
        fs::read_to_string(self.dir.join(format!("{label}.log"))).unwrap_or_default()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    /// Starts cilium-peer in the host namespace with this config (control socket in the
    /// lab dir) and waits until it answers `show peers`.
    pub fn start_cilium_peer(&mut self, config: &str) {
        self.start_cilium_peer_with_env(config, &[]);
    }

    /// As `start_cilium_peer`, with these `NAME=value` environment variables.
    pub fn start_cilium_peer_with_env(&mut self, config: &str, env: &[&str]) {
        let path = self.write("config.json", config);
        let bin = env!("CARGO_BIN_EXE_cilium-peer");
        let host = self.host.clone();
        let mut args = vec!["env"];
        args.extend_from_slice(env);
        args.extend_from_slice(&[bin, "run", "--config", path.to_str().unwrap()]);
        self.spawn(&host, "cilium-peer", &args);
        let socket = self.socket();
        wait_for(
            "cilium-peer's control socket",
            Duration::from_secs(10),
            || cilium_peer::control::query(&socket, Request::Peers).ok(),
        );
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    pub fn show(&self, what: &str) -> Value {
        let request = Request::parse(what).expect("peers, routes or bridges");
        cilium_peer::control::query(&self.socket(), request).expect("control socket answers")
    }

    /// `ip -j route show table TABLE proto PROTO` for one family, as JSON.
    pub fn routes(&self, family: &str) -> Vec<Value> {
        // A table with no routes yet "does not exist": that is an empty answer.
        let out = self.try_exec(
            &self.host,
            &[
                "ip",
                "-j",
                family,
                "route",
                "show",
                "table",
                &TABLE.to_string(),
                "proto",
                &PROTO.to_string(),
            ],
        );
        let out = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str::<Value>(&out)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    pub fn route(&self, prefix: &str) -> Option<Value> {
        let family = if prefix.contains(':') { "-6" } else { "-4" };
        self.routes(family).into_iter().find(|r| {
            r["dst"].as_str() == Some(prefix.trim_end_matches("/32").trim_end_matches("/128"))
                || r["dst"].as_str() == Some(prefix)
        })
    }

    pub fn wait_route(&self, prefix: &str) -> Value {
        wait_for(
            &format!(
                "route {prefix} in table {TABLE}\n{}",
                self.log("cilium-peer")
            ),
            Duration::from_secs(30),
            || self.route(prefix),
        )
    }

    /// Waits until `show routes` lists no route as adopted (each re-announced by its peer).
    pub fn wait_none_adopted(&self, limit: Duration) {
        wait_for("every route re-announced", limit, || {
            let routes = self.show("routes");
            routes
                .as_array()?
                .iter()
                .all(|r| r["adopted"] == false)
                .then_some(())
        });
    }

    pub fn wait_no_route(&self, prefix: &str) {
        wait_for(
            &format!("route {prefix} to leave table {TABLE}"),
            Duration::from_secs(30),
            || self.route(prefix).is_none().then_some(()),
        );
    }

    /// Starts gobgpd in `ns` configured as Cilium's embedded GoBGP, peering with `host`.
    pub fn start_gobgp(&mut self, ns: &str, node: &GoBgpNode) {
        let label = format!("gobgpd-{ns}");
        let path = self.write(&format!("{ns}.toml"), &node.toml());
        let mut args = vec![
            "gobgpd",
            "-f",
            path.to_str().unwrap(),
            "-p",
            "--api-hosts",
            "127.0.0.1:50061",
            "--pprof-disable",
        ];
        if node.graceful_restart {
            args.push("-r");
        }
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn(ns, &label, &args);
        wait_for("gobgpd's API", Duration::from_secs(10), || {
            self.try_exec(ns, &["gobgp", "-p", "50061", "global"])
                .status
                .success()
                .then_some(())
        });
    }

    pub fn gobgp(&self, ns: &str, args: &[&str]) -> String {
        let mut full = vec!["gobgp", "-p", "50061"];
        full.extend_from_slice(args);
        self.exec(ns, &full)
    }

    /// Waits until GoBGP in `ns` reports its session Established.
    pub fn wait_gobgp_established(&self, ns: &str) {
        wait_for(
            &format!(
                "GoBGP in {ns} to reach Established\n{}",
                self.log("cilium-peer")
            ),
            Duration::from_secs(30),
            || {
                self.gobgp(ns, &["neighbor"])
                    .contains("Establ")
                    .then_some(())
            },
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("lab files kept in {}", self.dir.display());
        }
    }
}

/// The lab host's config as cilium-peer reads it: router id and AS 65100, listening on
/// `[::]:179`, our table, the bridge's prefixes, the control socket in the lab directory,
/// and no neighbors yet. Tests add theirs with [`merge`] (or `config["neighbors"] = ...`).
pub fn base_config(lab: &Lab) -> Value {
    json!({
        "router_id": "192.0.2.1",
        "asn": 65100,
        "listen": ["[::]:179"],
        "kernel": { "table": TABLE },
        "bridges": { BRIDGE: { "prefixes": ["192.0.2.0/24", "2001:db8:1::/64"] } },
        "neighbors": [],
        "control_socket": lab.socket(),
    })
}

/// Merges `extra` into `config`: objects key by key, recursively; anything else replaces.
pub fn merge(config: &mut Value, extra: Value) {
    match (config, extra) {
        (Value::Object(config), Value::Object(extra)) => {
            for (key, value) in extra {
                merge(config.entry(key).or_insert(Value::Null), value);
            }
        }
        (config, extra) => *config = extra,
    }
}

/// `config` with `extra` merged in (see [`merge`]).
pub fn merged(mut config: Value, extra: Value) -> Value {
    merge(&mut config, extra);
    config
}

/// A neighbor group of AS 65100 over `range`, with `extra` keys merged in.
pub fn group(name: &str, range: &str, extra: Value) -> Value {
    merged(json!({ "name": name, "range": range, "asn": 65100 }), extra)
}

/// The lab host's config with these listen addresses and one group, `cilium` over `range`
/// with `extra_group` keys: persist off, multipath on.
pub fn host_config_json(lab: &Lab, listen: &[&str], range: &str, extra_group: Value) -> Value {
    merged(
        base_config(lab),
        json!({
            "listen": listen,
            "kernel": { "persist": false, "multipath": true },
            "neighbors": [group("cilium", range, extra_group)],
        }),
    )
}

/// As [`host_config_json`], as text, with `extra_group` the group's further members as
/// JSON text (`, "key": value, ...`, or empty): the older form, kept for its callers.
pub fn host_config(lab: &Lab, listen: &[&str], range: &str, extra_group: &str) -> String {
    let members = extra_group.trim().trim_start_matches(',');
    let extra = serde_json::from_str(&["{", members, "}"].concat())
        .unwrap_or_else(|e| panic!("extra group members {extra_group:?}: {e}"));
    host_config_json(lab, listen, range, extra).to_string()
}

/// A destination as `ip route` prints it (host routes without their length), with its
/// length.
pub fn full_prefix(dst: &str) -> String {
    match (dst.contains('/'), dst.contains(':')) {
        (true, _) => dst.to_string(),
        (false, true) => format!("{dst}/128"),
        (false, false) => format!("{dst}/32"),
    }
}

pub fn gateway(route: &Value) -> String {
    route["gateway"]
        .as_str()
        .map(str::to_string)
        .or_else(|| route["via"]["host"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The node's kernel-made IPv6 link-local address on `dev`.
pub fn link_local(lab: &Lab, ns: &str, dev: &str) -> String {
    let out = lab.exec(ns, &["ip", "-6", "addr", "show", "dev", dev]);
    let words: Vec<&str> = out.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "inet6" && w[1].starts_with("fe80"))
        .find_map(|w| w[1].split('/').next())
        .unwrap_or_else(|| panic!("no link-local address on {dev} in {ns}: {out}"))
        .to_string()
}

impl Lab {
    /// Starts BIRD 2 in the foreground in `ns` with this config; `birdc(ns, ...)` talks to it.
    pub fn start_bird(&mut self, ns: &str, config: &str) {
        let bird = Bird::new(&self.dir, &format!("{ns}-bird"));
        self.write(&format!("{ns}-bird.conf"), config);
        self.spawn(ns, &format!("bird-{ns}"), &bird.command());
        wait_for("BIRD's control socket", Duration::from_secs(10), || {
            self.try_exec(ns, &bird.birdc(&["show", "status"]))
                .status
                .success()
                .then_some(())
        });
    }

    pub fn birdc(&self, ns: &str, args: &[&str]) -> String {
        let bird = Bird::new(&self.dir, &format!("{ns}-bird"));
        self.exec(ns, &bird.birdc(args))
    }
}

impl Lab {
    /// Node `n` (1..=9) on the bridge, `192.0.2.1n` and `2001:db8:1::1n`, with GoBGP
    /// configured as Cilium's speaker peering with the host over IPv6; waits until its
    /// session is Established when cilium-peer already runs.
    pub fn cilium_node(&mut self, n: u8, graceful_restart: bool) -> String {
        let v4 = format!("192.0.2.1{n}");
        let v6 = format!("2001:db8:1::1{n}");
        let ns = self.node(&n.to_string(), &[&format!("{v4}/24"), &format!("{v6}/64")]);
        let mut gobgp = GoBgpNode::cilium(&v4, "2001:db8:1::1", &v6);
        gobgp.graceful_restart = graceful_restart;
        self.start_gobgp(&ns, &gobgp);
        if self.socket().exists() {
            self.wait_gobgp_established(&ns);
        }
        ns
    }

    /// `gobgp global rib add` as Cilium does it (next hop left to GoBGP: the session's
    /// own address).
    pub fn announce(&self, ns: &str, prefix: &str) {
        let family = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        self.gobgp(
            ns,
            &[
                "global", "rib", "add", "-a", family, prefix, "origin", "igp",
            ],
        );
    }

    pub fn withdraw(&self, ns: &str, prefix: &str) {
        let family = if prefix.contains(':') { "ipv6" } else { "ipv4" };
        self.gobgp(ns, &["global", "rib", "del", "-a", family, prefix]);
    }
}

/// Takes a sample every `every` in the background (say, of the kernel table); `stop`
/// returns them all.
pub struct Sampler<T> {
    running: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<T>>>,
    thread: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> Sampler<T> {
    pub fn start(every: Duration, mut sample: impl FnMut() -> Option<T> + Send + 'static) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let running = running.clone();
            let samples = samples.clone();
            std::thread::spawn(move || {
                while running.load(Ordering::SeqCst) {
                    if let Some(taken) = sample() {
                        samples.lock().unwrap().push(taken);
                    }
                    std::thread::sleep(every);
                }
            })
        };
        Sampler {
            running,
            samples,
            thread: Some(thread),
        }
    }

    /// Waits until `more` samples beyond those taken so far are in (however slowly the
    /// sampled command answers on a loaded machine).
    pub fn wait_more(&self, more: usize) {
        let goal = self.samples.lock().unwrap().len() + more;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.samples.lock().unwrap().len() < goal {
            assert!(std::time::Instant::now() < deadline, "the sampler is stuck");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn stop(mut self) -> Vec<T> {
        self.running.store(false, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut self.samples.lock().unwrap())
    }
}
