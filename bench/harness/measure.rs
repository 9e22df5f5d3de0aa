//! The receivers (cilium-peer, BIRD) and what is measured of them: time to a table
//! size (read from the kernel's counters while the injector is kept awake), peak RSS, and
//! the median and spread of runs.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::Options;
use crate::bird::Bird;
use crate::configs::{bird_host_config, cilium_peer_config};
use crate::lab::Lab;
use crate::wait;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Receiver {
    CiliumPeer,
    Bird,
}

impl Receiver {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Receiver::CiliumPeer => "cilium-peer",
            Receiver::Bird => "BIRD",
        }
    }

    /// Starts the receiver in the host namespace; returns its pid once it listens.
    pub(crate) fn start(
        self,
        lab: &mut Lab,
        options: &Options,
        merge_paths: bool,
    ) -> Result<u32, String> {
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
                lab.write("bird-host.conf", &bird_host_config(&log, merge_paths))?;
                let bird = Bird::new(&lab.dir, "bird-host");
                lab.spawn(&host, "receiver", &bird.command())?
            }
        };
        lab.wait_listening()?;
        Ok(pid)
    }
}

/// Peak and current RSS of a process, and the current RSS's anonymous and file-backed
/// parts (heap and stacks; the binary's and libraries' pages), in KiB.
pub(crate) fn rss_kib(pid: u32) -> (u64, u64, u64, u64) {
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
pub(crate) struct Daemon {
    pub(crate) ingest: f64,
    pub(crate) withdraw: f64,
    pub(crate) hwm_kib: u64,
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub(crate) fn spread(v: &[f64]) -> String {
    if v.len() < 2 {
        return String::new();
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    format!(" ({min:.2}-{max:.2})")
}

pub(crate) struct Poller<'a> {
    pub(crate) lab: &'a Lab,
    pub(crate) base6: u64,
    /// The injector's control socket, poked at every poll (see [`Waker`]).
    pub(crate) waker: Option<Waker>,
}

/// Keeps the injector BIRD's event loop turning. BIRD 2.0 sometimes leaves the last
/// UPDATEs of a burst unsent until its poll() times out, 3 s later; it happens when the
/// receiver drains the session faster than BIRD fills it (so with cilium-peer, not with BIRD
/// as the receiver). A command on its control socket every poll wakes the loop, for every
/// receiver alike.
pub(crate) struct Waker(std::os::unix::net::UnixStream);

impl Waker {
    pub(crate) fn connect(socket: &Path) -> Result<Waker, String> {
        let stream = std::os::unix::net::UnixStream::connect(socket).map_err(|e| e.to_string())?;
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(Waker(stream))
    }

    pub(crate) fn poke(&mut self) {
        use std::io::Read;
        let mut sink = [0u8; 4096];
        while matches!(self.0.read(&mut sink), Ok(n) if n > 0) {}
        let _ = self.0.write_all(b"show status\n");
    }
}

impl Poller<'_> {
    /// Waits until the table holds `v4` IPv4 prefixes and `v6` IPv6 routes above the
    /// baseline; returns the time since `start`.
    pub(crate) fn until(
        &mut self,
        what: &str,
        start: Instant,
        v4: u64,
        v6: u64,
    ) -> Result<f64, String> {
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
