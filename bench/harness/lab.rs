//! The lab: two namespaces, `host` with the bridge (the receivers run here) and `inj`
//! with the BIRD injector on a veth port of it; the kernel's counters read through a
//! process in `host`; the injector's start; and clean-up, on drop and on SIGINT/SIGTERM.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bird::Bird;
use crate::configs::peer_address;
use crate::{BRIDGE, HOST_V6, INJECTOR_V6, TABLE};
use crate::{sh, wait};

/// Namespaces to remove if the run is interrupted.
pub(crate) static NAMESPACES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
/// The lab directory to remove then (unless --keep).
pub(crate) static LAB_DIR: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

pub(crate) fn remove_namespace(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", ns]).status();
}

/// On SIGINT or SIGTERM: remove the lab's namespaces (with what runs in them) and exit.
pub(crate) fn clean_up_on_signals() {
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

/// Two namespaces: `host` with the bridge (the receivers run here), `inj` with the BIRD
/// injector on a veth port of the bridge.
pub(crate) struct Lab {
    pub(crate) host: String,
    pub(crate) inj: String,
    pub(crate) dir: PathBuf,
    pub(crate) keep: bool,
    pub(crate) children: Vec<(String, Child)>,
    /// A process in `host`, whose /proc/PID/net shows the host namespace's counters.
    pub(crate) anchor: u32,
}

impl Lab {
    pub(crate) fn new(keep: bool, injector_addresses: u32) -> Result<Lab, String> {
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

    pub(crate) fn exec(&self, ns: &str, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(args);
        sh(&full)
    }

    pub(crate) fn write(&self, name: &str, text: &str) -> Result<PathBuf, String> {
        let path = self.dir.join(name);
        fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// Runs `ip -batch` in `ns`.
    pub(crate) fn batch(&self, ns: &str, name: &str, text: &str) -> Result<(), String> {
        let path = self.write(&format!("{name}.batch"), text)?;
        sh(&["ip", "-n", ns, "-batch", path.to_str().unwrap()]).map(|_| ())
    }

    /// Starts a process in `ns` (its output to `label.log`); returns its pid.
    pub(crate) fn spawn(&mut self, ns: &str, label: &str, args: &[&str]) -> Result<u32, String> {
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
    pub(crate) fn running(&mut self, label: &str) -> bool {
        self.children
            .iter_mut()
            .find(|(l, _)| l == label)
            .is_some_and(|(_, child)| matches!(child.try_wait(), Ok(None)))
    }

    /// Stops a process started by `spawn`: SIGTERM, then SIGKILL after 10 s.
    pub(crate) fn stop(&mut self, label: &str) {
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

    /// Kills a process started by `spawn` (SIGKILL, which also ends a stopped one) and
    /// reaps it.
    pub(crate) fn kill(&mut self, label: &str) {
        if let Some(i) = self.children.iter().position(|(l, _)| l == label) {
            let (_, mut child) = self.children.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` to a process started by `spawn` (`ip netns exec` execs the program,
    /// so the child's pid is the program's).
    pub(crate) fn signal(&self, label: &str, signal: nix::sys::signal::Signal) {
        if let Some((_, child)) = self.children.iter().find(|(l, _)| l == label) {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, signal);
        }
    }

    /// Our table's IPv4 prefixes and the namespace's IPv6 route entries (all tables).
    pub(crate) fn counters(&self) -> (u64, u64) {
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
    pub(crate) fn clear_table(&self) -> Result<(), String> {
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

    pub(crate) fn birdc(&self, socket: &Path, command: &[&str]) -> Result<String, String> {
        let mut args = vec!["birdc", "-s", socket.to_str().unwrap()];
        args.extend_from_slice(command);
        sh(&args)
    }

    /// Whether the host namespace has a TCP socket on local port 179 in `state` (hex, as
    /// /proc/net/tcp6 shows it: 0A listening, 01 established).
    pub(crate) fn bgp_socket(&self, state: &str) -> bool {
        let path = format!("/proc/{}/net/tcp6", self.anchor);
        fs::read_to_string(path).is_ok_and(|text| {
            text.lines().skip(1).any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1].ends_with(":00B3") && f[3] == state
            })
        })
    }

    /// Waits until something listens on TCP port 179 in the host namespace.
    pub(crate) fn wait_listening(&self) -> Result<(), String> {
        wait("a BGP listener", Duration::from_millis(10), || {
            self.bgp_socket("0A").then_some(())
        })
    }

    /// Waits for the injector's first connection to port 179; returns when it was seen.
    /// Measurements start there, so BIRD's connect delay is not counted against anyone.
    pub(crate) fn wait_connection(&self) -> Result<Instant, String> {
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
pub(crate) fn triestat_prefixes(text: &str, table: u32) -> u64 {
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
pub(crate) fn rt6_entries(text: &str) -> u64 {
    text.split_whitespace()
        .nth(3)
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or(0)
}

/// Starts the injector BIRD and waits until it holds `routes` static routes.
pub(crate) fn start_injector(lab: &mut Lab, name: &str, config: &str) -> Result<PathBuf, String> {
    lab.write(&format!("{name}.conf"), config)?;
    let bird = Bird::new(&lab.dir, name);
    let inj = lab.inj.clone();
    lab.spawn(&inj, name, &bird.command())?;
    Ok(PathBuf::from(bird.socket))
}

/// Waits until the injector behind `socket` holds `routes` static routes.
pub(crate) fn wait_injector(lab: &Lab, socket: &Path, routes: u64) -> Result<(), String> {
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
pub(crate) fn legs(lab: &Lab) -> (u64, u64) {
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
