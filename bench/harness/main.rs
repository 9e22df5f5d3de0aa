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
//! - failover (only with `--only failover`): GoBGP nodes with Cilium's timers and a node
//!   that dies (bridge port deleted, guest hung, bfdd killed) or whose agent restarts; time
//!   to its next hop leaving the table, or the table's changes (see failover.rs).
//!
//! Progress is read from the kernel's own counters (/proc/net/fib_triestat per table,
//! /proc/net/rt6_stats), never from route dumps, except in the many-peers case, whose few
//! hundred routes are dumped to count their ECMP legs.
//!
//! Modules: `lab` (namespaces, processes, counters), `configs` (what the programs read),
//! `measure` (the receivers and their figures), `ingest`, `many` and `failover` (the parts),
//! `loader` (the kernel's limits, run by this binary inside the lab); running programs and
//! waiting come from tests/common/shell.rs, BIRD's command lines from tests/common/bird.rs and
//! GoBGP's config from tests/common/gobgp.rs, shared with the tests.

#[allow(dead_code)] // `birdc` is the tests'; the bench keeps its injectors' sockets
#[path = "../../tests/common/bird.rs"]
mod bird;
mod configs;
mod failover;
#[allow(dead_code)] // the tests' knobs (MD5, GTSM, admin down) the bench does not turn
#[path = "../../tests/common/gobgp.rs"]
mod gobgp;
mod ingest;
mod lab;
mod loader;
mod many;
mod measure;
#[path = "../../tests/common/shell.rs"]
mod shell;

use std::fs;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::Parser;

use crate::failover::{Case, failover};
use crate::ingest::ingest;
use crate::many::many_peers;

pub(crate) const TABLE: u32 = 1336;
pub(crate) const PROTO: u8 = cilium_peer::config::DEFAULT_KERNEL_PROTOCOL;
pub(crate) const BRIDGE: &str = "vmbr-bench";
pub(crate) const HOST_V6: &str = "2001:db8:1::1";
pub(crate) const INJECTOR_V6: &str = "2001:db8:1::2";
pub(crate) const ASN: u32 = 65100;
/// Longest wait for any one step; a liveness bound, never a result.
pub(crate) const LIMIT: Duration = Duration::from_secs(300);

/// cilium-peer against BIRD 2 and the kernel's own limits (see bench/README.md).
#[derive(Parser, Debug)]
#[command(name = "bench")]
struct Cli {
    /// IPv4 and IPv6 routes each for ingest/withdraw [default: 100000; --quick: 10000]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1 << 18))]
    n: Option<u32>,
    /// N = 10000, P = 20, one run (unless given)
    #[arg(long)]
    quick: bool,
    /// Sessions in the many-peers case [default: 200; --quick: 20]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=250))]
    peers: Option<u32>,
    /// LoadBalancer IPs per family announced by every peer
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=250))]
    lbs: u32,
    /// Repeat each measurement, report the median [default: 1]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    runs: Option<u32>,
    /// Run only one part: ingest/withdraw/memory, many peers, or failover (dead nodes);
    /// failover runs only when asked for
    #[arg(long, value_enum)]
    only: Option<Part>,
    /// Failover: the cases to run [default: all]
    #[arg(long, value_enum, value_delimiter = ',')]
    cases: Vec<Case>,
    /// Failover: longest wait for a dead node's next hop to leave, in seconds
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=600))]
    cap_s: u32,
    /// Failover: the agent-restart case's window, in seconds from the kill
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(4..=600))]
    window_s: u32,
    /// Keep the lab directory (configs, logs) after the run
    #[arg(long)]
    keep: bool,
    /// The cilium-peer binary (release build)
    #[arg(long)]
    daemon: PathBuf,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Ingest,
    Many,
    Failover,
}

/// What to run, resolved from the command line.
pub(crate) struct Options {
    pub(crate) n: u32,
    pub(crate) peers: u32,
    pub(crate) lbs: u32,
    pub(crate) runs: u32,
    pub(crate) daemon: PathBuf,
    pub(crate) ingest: bool,
    pub(crate) many: bool,
    pub(crate) failover: bool,
    pub(crate) cases: Vec<Case>,
    pub(crate) cap_s: u32,
    pub(crate) window_s: u32,
    pub(crate) keep: bool,
}

impl From<Cli> for Options {
    fn from(cli: Cli) -> Options {
        let (n, peers, runs) = if cli.quick {
            (10_000, 20, 1)
        } else {
            (100_000, 200, 1)
        };
        Options {
            n: cli.n.unwrap_or(n),
            peers: cli.peers.unwrap_or(peers),
            lbs: cli.lbs,
            runs: cli.runs.unwrap_or(runs),
            daemon: cli.daemon,
            ingest: matches!(cli.only, None | Some(Part::Ingest)),
            many: matches!(cli.only, None | Some(Part::Many)),
            failover: cli.only == Some(Part::Failover),
            cases: if cli.cases.is_empty() {
                Case::ALL.to_vec()
            } else {
                cli.cases
            },
            cap_s: cli.cap_s,
            window_s: cli.window_s,
            keep: cli.keep,
        }
    }
}

/// Runs a command: its output, or why it failed.
pub(crate) fn sh(args: &[&str]) -> Result<String, String> {
    shell::run(args)
}

/// Waits until `check` gives a value, polling every `every`, for up to [`LIMIT`].
pub(crate) fn wait<T>(
    what: &str,
    every: Duration,
    check: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    shell::wait_until(what, every, LIMIT, check)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The harness's own helpers, run inside the lab's host namespace.
    if args.first().map(String::as_str) == Some("load") {
        return loader::main(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("legs") {
        return loader::legs_main(&args[1..]);
    }
    let options = Options::from(Cli::parse());
    lab::clean_up_on_signals();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("bench: needs root (network namespaces, routing tables)");
        return ExitCode::from(1);
    }
    for program in ["ip", "bird", "birdc"] {
        if !shell::have(program) {
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
    if options.failover {
        report.push_str(&failover(options)?);
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
