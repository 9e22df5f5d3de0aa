//! The daemon's wiring and its one event loop. It owns the config, the RIB and the FIB,
//! turns accepted connections into sessions (or refuses them), merges the sessions' route
//! batches, keeps a dropped graceful-restart peer's routes as stale, adopts the routes a
//! previous run left in the kernel, puts back what others change in its table, and handles
//! signals, sd-notify (with the watchdog), the control socket and metrics scrapes. SIGHUP's
//! reload is in `reload`, the answers to `show` and the metrics snapshot in `show`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use sd_notify::NotifyState;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};
use tracing_subscriber::filter::Targets;

use crate::bgp::admission::{Admission, Admitter};
use crate::bgp::listener;
use crate::bgp::peer::{self, ConnId, PeerCommand, PeerEvent, PeerSetup, RouteBatch};
use crate::bgp::session::{CloseReason, Negotiated, SessionConfig};
use crate::bgp::wire::{Family, Notification};
use crate::config::{Config, ListenAddr};
use crate::control;
use crate::fib::adopted::Adopted;
use crate::fib::diff::{FibOp, reconcile};
use crate::fib::monitor::{self, KernelEvent};
use crate::fib::netlink::{Fib, FibError};
use crate::metrics;
use crate::policy::{PeerLink, Rejection};
use crate::ra;
use crate::rib::{Afi, FibChange, NextHop, PeerId, PeerInfo, Rib};

mod reload;
mod show;

/// Route changes written to the FIB before the event loop flushes it even though it is busy.
const FIB_BATCH: u64 = 32_768;

/// Session events (mostly decoded UPDATEs, up to a few hundred routes each) waiting for the
/// event loop. When it is full, sessions stop reading and TCP holds their peers back, rather
/// than routes piling up here during a bulk load.
const EVENTS_QUEUE: usize = 32;

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(path: PathBuf, config: Config) -> ExitCode {
    init_logging();
    one_malloc_arena();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(async move { Daemon::start(path, config).await?.run().await }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "cilium-peer failed");
            ExitCode::from(1)
        }
    }
}

/// Writes a RIB result (with any adopted next hops of its prefix) to the FIB, which sends it
/// in its next batch; failures go to `failures` for the flush.
fn write_change(fib: &mut Fib, adopted: &Adopted, failures: &mut Vec<FibError>, change: FibChange) {
    let next_hops = adopted.desired(&change.prefix, &change.next_hops);
    let op = if next_hops.is_empty() {
        FibOp::Delete {
            prefix: change.prefix,
        }
    } else {
        FibOp::Replace {
            prefix: change.prefix,
            next_hops,
        }
    };
    failures.extend(fib.apply(op));
}

/// glibc gives every thread that allocates its own heap arena, and memory freed into one
/// arena is not reused by the others: with the runtime's worker threads building route
/// batches and the event loop freeing them, that kept a few MiB more resident during a bulk
/// load. The daemon allocates little concurrently, so one arena costs nothing measurable.
fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a glibc tunable; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Logs to stderr at `info`, or as `RUST_LOG` says (`debug`, or per module:
/// `cilium_peer::fib=debug,info`). An unreadable `RUST_LOG` is reported and ignored.
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = || Targets::new().with_default(tracing::Level::INFO);
    let (filter, unreadable) = match std::env::var("RUST_LOG") {
        Ok(directives) => match directives.parse::<Targets>() {
            Ok(filter) => (filter, None),
            Err(error) => (default(), Some((directives, error))),
        },
        Err(_) => (default(), None),
    };
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr),
        )
        .with(filter)
        .try_init();
    if let Some((directives, error)) = unreadable {
        tracing::warn!(%directives, %error, "RUST_LOG is not a list of target=level directives: logging at info");
    }
}

/// A neighbor, by address: it outlives its connections while its routes are kept.
struct Peer {
    id: PeerId,
    name: String,
    group: String,
    address: IpAddr,
    asn: u32,
    conn: Option<ConnId>,
    commands: Option<mpsc::UnboundedSender<PeerCommand>>,
    negotiated: Option<Negotiated>,
    /// Since when it is in its current state.
    since: Instant,
    /// Graceful restart: its routes are stale until this time (or its End-of-RIB).
    stale_until: Option<Instant>,
    /// Families whose stale routes wait for an End-of-RIB.
    stale_families: Vec<Afi>,
    end_of_rib: Vec<Family>,
    /// Kernel gateways its routes resolved to (to recognise adopted routes it owned).
    gateways: HashSet<IpAddr>,
    rejected: BTreeMap<Rejection, u64>,
    updates: u64,
    /// Prefixes announced in its UPDATEs, accepted or not.
    announced: u64,
}

impl Peer {
    fn state(&self) -> &'static str {
        match (&self.conn, &self.negotiated) {
            (Some(_), Some(_)) => "Established",
            (Some(_), None) => "OpenSent",
            (None, _) if self.stale_until.is_some() => "Stale",
            (None, _) => "Idle",
        }
    }
}

struct Daemon {
    path: PathBuf,
    config: Config,
    rib: Rib,
    fib: Fib,
    peers: HashMap<IpAddr, Peer>,
    conns: HashMap<ConnId, IpAddr>,
    next_conn: ConnId,
    next_peer_id: PeerId,
    /// Next hops of our routes found in the kernel at start whose peers have not yet sent
    /// End-of-RIB.
    adopted: Adopted,
    adopt_deadline: Option<Instant>,
    events: mpsc::Receiver<PeerEvent>,
    events_tx: mpsc::Sender<PeerEvent>,
    accepted: mpsc::Receiver<(TcpStream, SocketAddr)>,
    accepted_tx: mpsc::Sender<(TcpStream, SocketAddr)>,
    /// One task per `listen` address.
    listeners: Vec<(ListenAddr, tokio::task::JoinHandle<()>)>,
    control: mpsc::Receiver<(control::Request, oneshot::Sender<Value>)>,
    /// Route and link events from the kernel, and what they are filtered by.
    kernel: mpsc::Receiver<KernelEvent>,
    kernel_filter: watch::Sender<monitor::Filter>,
    /// Routes of ours put back after someone else changed them; the current minute of
    /// repair log lines and how many it had.
    repairs: u64,
    repair_log: (Instant, u32),
    refused_log: Option<Instant>,
    refused: u64,
    /// Prometheus scrapes, and the HTTP responder behind them (when `metrics` is set).
    metrics: mpsc::Receiver<oneshot::Sender<String>>,
    metrics_tx: mpsc::Sender<oneshot::Sender<String>>,
    metrics_server: Option<tokio::task::JoinHandle<()>>,
    /// SIGHUPs applied and refused, whether the last one was applied; resyncs done.
    reloads: (u64, u64),
    last_reload_ok: bool,
    resyncs: u64,
    resync_needed: bool,
    /// When to try a resynchronisation the kernel refused again, and how long the last
    /// wait was.
    resync_retry: Option<Instant>,
    resync_backoff: Duration,
    /// Failures the FIB reported since the last flush.
    fib_failures: Vec<FibError>,
    /// `fib.ops` at the last flush.
    flushed_ops: u64,
    started: Instant,
    last_status: Option<Instant>,
    /// systemd's watchdog: how often to send WATCHDOG=1 (half of WatchdogSec), and when next.
    watchdog: Option<(Duration, Instant)>,
    /// Router advertisements on the bridges.
    ra: ra::RaHandle,
    /// Per-source connect rates and the cap on sessions not yet Established.
    admission: Admitter,
    /// Addresses whose session was closed for `max_prefixes`, refused until then.
    held_down: HashMap<IpAddr, Instant>,
    /// TCP-MD5 keys and GTSM settings, published to the listening sockets.
    security: watch::Sender<Arc<listener::Security>>,
}

impl Daemon {
    async fn start(path: PathBuf, config: Config) -> Result<Daemon, String> {
        let started = Instant::now();
        // The TCP-MD5 keys, read before anything else is touched.
        let transport = listener::Security::load(&config)?;
        let mut fib = Fib::open(config.kernel.table, config.kernel.protocol)
            .map_err(|e| format!("netlink: {e}"))?;
        fib.adopt_protocols(&config.kernel.adopt_protocols);
        // Listen before reading the table, so that no change in between goes unseen.
        let (kernel_filter, filter) = watch::channel(monitor::Filter {
            protocol: config.kernel.protocol,
            own_ports: fib.ports(),
        });
        let (kernel_tx, kernel) = mpsc::channel(1024);
        monitor::spawn(filter, kernel_tx).map_err(|e| format!("netlink monitor: {e}"))?;
        let dumped = fib
            .dump()
            .map_err(|e| format!("reading kernel table {}: {e}", config.kernel.table))?;
        // A route of ours without a gateway is none that we install: it goes.
        let mut fib_failures = Vec::new();
        for (prefix, _) in dumped.iter().filter(|(_, hops)| hops.is_empty()) {
            fib_failures.extend(fib.apply(FibOp::Delete { prefix: *prefix }));
        }
        let adopted = Adopted::new(dumped);
        if !adopted.is_empty() {
            tracing::info!(
                routes = adopted.len(),
                table = config.kernel.table,
                grace_s = config.kernel.adopt_grace_s,
                "adopted routes left by a previous run; they stay until their peers re-announce them or the grace time ends"
            );
        }

        let (accepted_tx, accepted) = mpsc::channel(256);
        let (security, security_rx) = watch::channel(Arc::new(transport));
        let listeners = config
            .listen
            .iter()
            .map(|listen| {
                let task = start_listener(listen, &security_rx, &accepted_tx);
                (listen.clone(), task)
            })
            .collect();
        let (control_tx, control) = mpsc::channel(16);
        control::serve(
            &config.control_socket,
            config.control_socket_group.as_deref(),
            control_tx,
        )
        .map_err(|e| format!("control socket {}: {e}", config.control_socket.display()))?;

        let ra = ra::spawn(ra_bridges(&config));
        let (metrics_tx, metrics) = mpsc::channel(16);
        let metrics_server = serve_metrics(config.metrics, &metrics_tx);
        let (events_tx, events) = mpsc::channel(EVENTS_QUEUE);
        let adopt_deadline = (!adopted.is_empty())
            .then(|| started + Duration::from_secs(config.kernel.adopt_grace_s));
        Ok(Daemon {
            path,
            rib: {
                let mut rib = Rib::new(config.kernel.multipath);
                rib.set_max_paths(usize::from(config.kernel.max_paths));
                rib
            },
            fib,
            peers: HashMap::new(),
            conns: HashMap::new(),
            next_conn: 1,
            next_peer_id: 1,
            adopted,
            adopt_deadline,
            events,
            events_tx,
            accepted,
            accepted_tx,
            listeners,
            control,
            kernel,
            kernel_filter,
            repairs: 0,
            repair_log: (started, 0),
            refused_log: None,
            refused: 0,
            metrics,
            metrics_tx,
            metrics_server,
            reloads: (0, 0),
            last_reload_ok: true,
            resyncs: 0,
            resync_needed: false,
            resync_retry: None,
            resync_backoff: Duration::ZERO,
            fib_failures,
            flushed_ops: 0,
            started,
            last_status: None,
            watchdog: sd_notify::watchdog_enabled().map(|timeout| (timeout / 2, started)),
            ra,
            admission: Admitter::new(config.limits),
            held_down: HashMap::new(),
            security,
            config,
        })
    }

    async fn run(mut self) -> Result<(), String> {
        let mut sigterm = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut sigint = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
        let mut sighup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
        // The restart signal (the unit's RestartKillSignal): stop without final RAs, so
        // guests keep their default route through us until the new process advertises.
        let mut sigusr2 = signal(SignalKind::user_defined2()).map_err(|e| e.to_string())?;
        let _ = sd_notify::notify(&[NotifyState::Ready]);
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            startup_ms = self.started.elapsed().as_millis() as u64,
            "ready"
        );
        if let Some((interval, _)) = self.watchdog {
            tracing::info!(
                interval_ms = interval.as_millis() as u64,
                "systemd watchdog on: WATCHDOG=1 from the event loop"
            );
        }
        let mode = loop {
            let deadline = self.next_deadline();
            tokio::select! {
                Some((stream, remote)) = self.accepted.recv() => self.on_accept(stream, remote),
                Some(event) = self.events.recv() => self.on_peer_event(event).await,
                Some((request, reply)) = self.control.recv() => {
                    let _ = reply.send(self.answer(&request));
                }
                Some(event) = self.kernel.recv() => self.on_kernel_event(event),
                Some(reply) = self.metrics.recv() => {
                    let _ = reply.send(metrics::render(&self.metrics_snapshot()));
                }
                () = sleep_until(deadline) => self.on_timer().await,
                _ = sighup.recv() => self.reload().await,
                _ = sigterm.recv() => break ra::StopMode::Final,
                _ = sigint.recv() => break ra::StopMode::Final,
                _ = sigusr2.recv() => break ra::StopMode::Restart,
            }
            // Flush when idle, or in the middle of a bulk load once enough has been written.
            if self.events.is_empty() || self.fib.ops - self.flushed_ops >= FIB_BATCH {
                self.flush_fib().await;
                self.notify_status();
            }
            self.pet_watchdog();
        };
        self.shutdown(mode).await;
        Ok(())
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|p| p.stale_until)
            .chain(self.adopt_deadline)
            .chain(self.resync_retry)
            .chain(self.watchdog.map(|(_, next)| next))
            .min()
    }

    fn on_accept(&mut self, stream: TcpStream, remote: SocketAddr) {
        let address = canonical(remote.ip());
        let Some(group) = self.config.neighbor_group_of(address).cloned() else {
            self.refuse(
                address,
                "connection from outside every neighbor range: closed",
            );
            return;
        };
        let now = Instant::now();
        self.held_down.retain(|_, until| *until > now);
        if let Some(until) = self.held_down.get(&address) {
            let left_s = until.duration_since(now).as_secs() + 1;
            self.refuse(
                address,
                &format!("connection refused: the node passed max_prefixes, held down for {left_s} s more"),
            );
            return;
        }
        let half_open = self
            .peers
            .values()
            .filter(|p| p.conn.is_some() && p.negotiated.is_none())
            .map(|p| (p.address, p.since));
        match self.admission.admit(Instant::now(), address, half_open) {
            Admission::Admit => {}
            Admission::AdmitEvicting(stalled) => self.evict(stalled),
            Admission::Refuse(why) => {
                self.refuse(address, &why.to_string());
                return;
            }
        }
        if let Err(why) = listener::secure_accepted(&stream, group.ttl_security) {
            self.refuse(address, &why);
            return;
        }
        let scope = match remote {
            SocketAddr::V6(v6) if v6.ip().is_unicast_link_local() => Some(v6.scope_id()),
            _ => None,
        };
        let link = self.peer_link(address, scope);
        let conn = self.next_conn;
        self.next_conn += 1;

        if let Some(peer) = self.peers.get_mut(&address)
            && let Some(old) = peer.conn.take()
        {
            // The node reconnected: its old connection is dead (RFC 4724 4.2).
            tracing::info!(peer = %peer.name, "new connection replaces the old one");
            if let Some(commands) = peer.commands.take() {
                let _ = commands.send(PeerCommand::Close {
                    subcode: Notification::CEASE_CONNECTION_COLLISION_RESOLUTION,
                    keep_routes: true,
                });
            }
            self.conns.remove(&old);
            let keep = peer
                .negotiated
                .as_ref()
                .and_then(|n| n.graceful_restart.as_ref())
                .map(|gr| gr.restart_time);
            let id = peer.id;
            peer.negotiated = None;
            match keep {
                Some(restart_time) => self.begin_stale(address, restart_time),
                None => {
                    self.remove_peer_routes(id);
                }
            }
        }
        let name = match self.peers.get(&address) {
            Some(p) => p.name.clone(),
            None => self.free_name(&group.name),
        };
        let id = match self.peers.get(&address) {
            Some(p) => p.id,
            None => {
                self.next_peer_id += 1;
                self.next_peer_id - 1
            }
        };
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let setup = PeerSetup {
            conn,
            name: name.clone(),
            link,
            session: SessionConfig {
                local_as: self.config.asn,
                router_id: self.config.router_id,
                peer_as: group.asn,
                hold_time: group.hold_time,
                graceful_restart: group.graceful_restart,
                forwarding_preserved: self.config.kernel.persist,
                // RFC 4724 4.1: we restarted, and still hold routes of the previous run.
                restarting: self.adopt_deadline.is_some(),
            },
            import: group.import.clone(),
            bridge_prefixes: self.bridge_prefixes(),
        };
        let now = Instant::now();
        let peer = self.peers.entry(address).or_insert_with(|| Peer {
            id,
            name: name.clone(),
            group: group.name.clone(),
            address,
            asn: group.asn,
            conn: None,
            commands: None,
            negotiated: None,
            since: now,
            stale_until: None,
            stale_families: Vec::new(),
            end_of_rib: Vec::new(),
            gateways: HashSet::new(),
            rejected: BTreeMap::new(),
            updates: 0,
            announced: 0,
        });
        peer.conn = Some(conn);
        peer.commands = Some(commands_tx);
        peer.since = now;
        peer.end_of_rib.clear();
        self.conns.insert(conn, address);
        tracing::info!(peer = %name, %address, "connection accepted");
        tokio::spawn(peer::drive(
            stream,
            setup,
            self.events_tx.clone(),
            commands_rx,
        ));
    }

    /// A connection that gets no session: closed, and logged at most every 10 s.
    fn refuse(&mut self, address: IpAddr, why: &str) {
        self.refused += 1;
        let now = Instant::now();
        if self
            .refused_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
        {
            tracing::warn!(%address, refused_total = self.refused, "{why}");
            self.refused_log = Some(now);
        }
    }

    /// Closes a session that has not finished OPEN, to give its slot to a new connection.
    fn evict(&mut self, address: IpAddr) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(conn) = peer.conn.take() else {
            return;
        };
        if let Some(commands) = peer.commands.take() {
            let _ = commands.send(PeerCommand::Close {
                subcode: Notification::CEASE_OUT_OF_RESOURCES,
                keep_routes: true,
            });
        }
        self.conns.remove(&conn);
        self.refuse(
            address,
            "closed a session that had not finished OPEN to make room (limits.max_half_open)",
        );
        self.forget_if_idle(address);
    }

    fn free_name(&self, prefix: &str) -> String {
        (1..)
            .map(|n| format!("{prefix}{n}"))
            .find(|name| !self.peers.values().any(|p| &p.name == name))
            .expect("some number is free")
    }

    fn bridge_prefixes(&self) -> Vec<IpNet> {
        self.config
            .bridges
            .values()
            .flat_map(|b| b.prefixes.iter().copied())
            .collect()
    }

    /// Where a peer sits: its bridge (by prefix) or, for a link-local session, the
    /// interface the connection arrived on.
    fn peer_link(&self, address: IpAddr, scope: Option<u32>) -> PeerLink {
        let by_prefix = self.config.bridge_of(address).map(str::to_string);
        let bridge = by_prefix.or_else(|| {
            let ifindex = scope?;
            let name = nix::net::if_::if_indextoname(ifindex).ok()?;
            Some(name.to_string_lossy().into_owned())
        });
        let ifindex = scope.or_else(|| {
            bridge
                .as_deref()
                .and_then(|b| nix::net::if_::if_nametoindex(b).ok())
        });
        let on_link = bridge
            .as_deref()
            .and_then(|b| self.config.bridges.get(b))
            .map(|b| b.prefixes.clone())
            .unwrap_or_default();
        PeerLink {
            address,
            ifindex,
            on_link,
        }
    }

    async fn on_peer_event(&mut self, event: PeerEvent) {
        let conn = match &event {
            PeerEvent::Up(c, _)
            | PeerEvent::Routes(c, _)
            | PeerEvent::EndOfRib(c, _)
            | PeerEvent::Down(c, _) => *c,
        };
        // Events of a connection that was replaced mean nothing any more.
        let Some(&address) = self.conns.get(&conn) else {
            return;
        };
        match event {
            PeerEvent::Up(_, negotiated) => self.on_established(address, negotiated),
            PeerEvent::Routes(_, batch) => self.on_routes(address, batch),
            PeerEvent::EndOfRib(_, family) => self.on_end_of_rib(address, family),
            PeerEvent::Down(_, closed) => {
                self.conns.remove(&conn);
                let Some(peer) = self.peers.get_mut(&address) else {
                    return;
                };
                let reason = match &closed.reason {
                    CloseReason::NotificationSent(n) => format!("sent {n}"),
                    CloseReason::NotificationReceived(n) => format!("received {n}"),
                    CloseReason::TransportClosed => "connection closed".to_string(),
                };
                tracing::info!(peer = %peer.name, %address, %reason, keep_routes = closed.keep_routes, "session down");
                peer.conn = None;
                peer.commands = None;
                peer.since = Instant::now();
                let restart_time = peer
                    .negotiated
                    .take()
                    .and_then(|n| n.graceful_restart)
                    .map(|gr| gr.restart_time);
                let id = peer.id;
                match (closed.keep_routes, restart_time) {
                    (true, Some(t)) if t > 0 => self.begin_stale(address, t),
                    _ => {
                        self.remove_peer_routes(id);
                        self.forget_if_idle(address);
                    }
                }
            }
        }
    }

    fn on_established(&mut self, address: IpAddr, negotiated: Negotiated) {
        let local_as = self.config.asn;
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let families: Vec<&str> = negotiated
            .families
            .iter()
            .map(|f| match *f {
                Family::IPV4_UNICAST => "ipv4-unicast",
                Family::IPV6_UNICAST => "ipv6-unicast",
                _ => "other",
            })
            .collect();
        tracing::info!(
            peer = %peer.name, %address, asn = negotiated.peer_as, router_id = %negotiated.peer_router_id,
            hold_time = negotiated.hold_time, families = ?families,
            extended_next_hop = negotiated.extended_next_hop,
            graceful_restart = negotiated.graceful_restart.is_some(),
            "session established"
        );
        let changes = self.rib.add_peer(PeerInfo {
            id: peer.id,
            address,
            router_id: negotiated.peer_router_id,
            ebgp: negotiated.peer_as != local_as,
        });
        peer.since = Instant::now();
        let id = peer.id;
        // RFC 4724 4.2: stale routes of families the peer no longer preserves go now.
        let mut sweep = Vec::new();
        if peer.stale_until.is_some() {
            for afi in peer.stale_families.clone() {
                let family = afi_family(afi);
                let preserved = negotiated.graceful_restart.as_ref().is_some_and(|gr| {
                    gr.families
                        .iter()
                        .any(|f| f.family == family && f.forwarding_preserved)
                });
                if !preserved {
                    sweep.push(afi);
                }
            }
            if let Some(gr) = &negotiated.graceful_restart {
                // Wait for its End-of-RIB, but not forever.
                peer.stale_until =
                    Some(Instant::now() + Duration::from_secs(u64::from(gr.restart_time.max(1))));
            }
        }
        peer.negotiated = Some(negotiated);
        self.pending_changes(changes);
        for afi in sweep {
            self.sweep(address, id, afi);
        }
    }

    fn on_routes(&mut self, address: IpAddr, batch: RouteBatch) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        peer.updates += 1;
        peer.announced += (batch.announce.len() + batch.rejected.len()) as u64;
        for (_, why) in &batch.rejected {
            *peer.rejected.entry(*why).or_default() += 1;
        }
        let id = peer.id;
        let mut changes = Vec::new();
        for prefix in batch.withdraw {
            changes.extend(self.rib.withdraw(id, prefix));
        }
        let mut last_gateway = None;
        for (prefix, path) in batch.announce {
            // An UPDATE's routes mostly share one next hop: hash it once.
            if last_gateway != Some(path.next_hop.gateway) {
                last_gateway = Some(path.next_hop.gateway);
                peer.gateways.insert(path.next_hop.gateway);
            }
            changes.extend(self.rib.announce(id, prefix, path));
        }
        let group = self.config.neighbors.iter().find(|g| g.name == peer.group);
        if let Some(group) = group
            && let Some(max) = group.max_prefixes
            && self.rib.peer_counts(id).received > max as usize
            && let Some(commands) = peer.commands.take()
        {
            let hold = Duration::from_secs(u64::from(group.max_prefixes_hold_s));
            tracing::warn!(
                peer = %peer.name, max_prefixes = max, hold_s = hold.as_secs(),
                "maximum number of prefixes reached: closing with Cease 1, refusing its connections for hold_s"
            );
            self.held_down.insert(address, Instant::now() + hold);
            let _ = commands.send(PeerCommand::Close {
                subcode: Notification::CEASE_MAXIMUM_PREFIXES_REACHED,
                keep_routes: false,
            });
        }
        self.pending_changes(changes);
    }

    fn on_end_of_rib(&mut self, address: IpAddr, family: Family) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        if !peer.end_of_rib.contains(&family) {
            peer.end_of_rib.push(family);
            tracing::info!(
                peer = %peer.name, %family, received = self.rib.peer_counts(peer.id).received,
                "End-of-RIB: the peer has sent its routes"
            );
        }
        let id = peer.id;
        if let Some(afi) = family_afi(family) {
            self.sweep(address, id, afi);
            self.drop_adopted_after_end_of_rib(afi);
        }
    }

    /// The peer's connection is gone but its routes stay, stale, for `restart_time`.
    fn begin_stale(&mut self, address: IpAddr, restart_time: u16) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        self.rib.mark_stale(peer.id);
        peer.stale_until = Some(Instant::now() + Duration::from_secs(u64::from(restart_time)));
        peer.stale_families = vec![Afi::Ipv4, Afi::Ipv6];
        tracing::info!(peer = %peer.name, restart_time, "graceful restart: keeping its routes as stale");
    }

    /// Removes what is still stale of `afi` for a peer.
    fn sweep(&mut self, address: IpAddr, id: PeerId, afi: Afi) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        if !peer.stale_families.contains(&afi) {
            return;
        }
        peer.stale_families.retain(|a| *a != afi);
        if peer.stale_families.is_empty() {
            peer.stale_until = None;
        }
        let name = peer.name.clone();
        let mut removed = 0;
        let (fib, adopted, failures) = (&mut self.fib, &self.adopted, &mut self.fib_failures);
        self.rib.sweep_stale(id, Some(afi), |change| {
            removed += 1;
            write_change(fib, adopted, failures, change);
        });
        if removed > 0 {
            tracing::info!(peer = %name, afi = ?afi, removed, "stale routes removed");
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        let expired: Vec<(IpAddr, PeerId)> = self
            .peers
            .values()
            .filter(|p| p.stale_until.is_some_and(|t| t <= now))
            .map(|p| (p.address, p.id))
            .collect();
        for (address, id) in expired {
            tracing::info!(%address, "graceful restart time over: removing stale routes");
            for afi in [Afi::Ipv4, Afi::Ipv6] {
                self.sweep(address, id, afi);
            }
            if let Some(peer) = self.peers.get_mut(&address) {
                peer.stale_until = None;
                peer.stale_families.clear();
            }
            self.forget_if_idle(address);
        }
        if self.resync_retry.is_some_and(|t| t <= now) {
            self.resync_retry = None;
            self.resync_needed = true;
        }
        if self.adopt_deadline.is_some_and(|t| t <= now) {
            self.adopt_deadline = None;
            let leftover = self.adopted.expire();
            if !leftover.is_empty() {
                tracing::info!(
                    routes = leftover.len(),
                    "adopted routes not re-announced within the grace time: removing"
                );
            }
            self.refresh(leftover);
        }
    }

    /// The adopted next hops of every peer that has sent End-of-RIB for `afi` go: what
    /// the peer still wants, it has announced again by now.
    fn drop_adopted_after_end_of_rib(&mut self, afi: Afi) {
        if self.adopted.is_empty() {
            return;
        }
        let family = afi_family(afi);
        let done: HashSet<IpAddr> = self
            .peers
            .values()
            .filter(|p| p.end_of_rib.contains(&family))
            .flat_map(|p| p.gateways.iter().copied().chain([p.address]))
            .collect();
        let changed = self.adopted.end_of_rib(afi, &done);
        if !changed.is_empty() {
            tracing::info!(
                ?afi,
                routes = changed.len(),
                left = self.adopted.len(),
                "End-of-RIB: adopted next hops released"
            );
        }
        self.refresh(changed);
        if self.adopted.is_empty() && self.adopt_deadline.take().is_some() {
            tracing::info!("every adopted route is confirmed or gone");
        }
    }

    /// Queues what the kernel should now hold for `prefixes` (RIB and adopted next hops).
    fn refresh(&mut self, prefixes: Vec<IpNet>) {
        let changes = prefixes
            .into_iter()
            .map(|prefix| FibChange {
                next_hops: self.rib.next_hops(&prefix),
                prefix,
            })
            .collect();
        self.pending_changes(changes);
    }

    fn forget_if_idle(&mut self, address: IpAddr) {
        if let Some(peer) = self.peers.get(&address)
            && peer.conn.is_none()
            && peer.stale_until.is_none()
        {
            self.peers.remove(&address);
        }
    }

    /// Queues RIB results (with any adopted next hops of their prefixes) for the kernel;
    /// the event loop flushes when it is idle.
    fn pending_changes(&mut self, changes: Vec<FibChange>) {
        for change in changes {
            write_change(&mut self.fib, &self.adopted, &mut self.fib_failures, change);
        }
    }

    /// A session is gone without graceful restart: its routes leave the RIB and the FIB.
    fn remove_peer_routes(&mut self, id: PeerId) {
        let (fib, adopted, failures) = (&mut self.fib, &self.adopted, &mut self.fib_failures);
        self.rib
            .remove_peer(id, |change| write_change(fib, adopted, failures, change));
    }

    async fn flush_fib(&mut self) {
        let mut errors = std::mem::take(&mut self.fib_failures);
        errors.extend(self.fib.flush());
        self.flushed_ops = self.fib.ops;
        let errors = real_errors(errors);
        if let Some(first) = errors.first() {
            tracing::warn!(error = %first, refused = errors.len(), "kernel refused route changes; resynchronising the table");
            self.resync_needed = true;
        }
        if self.resync_needed {
            self.resync_needed = false;
            self.resync().await;
        }
    }

    /// Someone else changed our table: what they changed of ours is put back.
    fn on_kernel_event(&mut self, event: KernelEvent) {
        let (route, deleted) = match event {
            KernelEvent::Route { route, deleted } => (route, deleted),
            KernelEvent::Overrun => {
                tracing::warn!("netlink route events were lost: comparing the whole table");
                self.resync_needed = true;
                return;
            }
            // A bridge back up, or with an address again: the routes the kernel flushed
            // when it went down can go back now.
            KernelEvent::LinkUp(ifindex) | KernelEvent::AddressAdded(ifindex) => {
                if self.config.bridges.keys().any(|name| {
                    nix::net::if_::if_nametoindex(name.as_str()).is_ok_and(|i| i == ifindex)
                }) {
                    self.resync_needed = true;
                }
                return;
            }
        };
        // Foreign routes, and routes in other tables, are none of our business.
        let Some((prefix, found)) = self.fib.ours(&route) else {
            return;
        };
        let found = if deleted { Vec::new() } else { found };
        let want = self.adopted.desired(&prefix, &self.rib.next_hops(&prefix));
        if *found == *want {
            return;
        }
        self.repairs += 1;
        // One line per repair, at most 20 a minute (someone fighting us would flood the log).
        let now = Instant::now();
        if now.duration_since(self.repair_log.0) >= Duration::from_secs(60) {
            self.repair_log = (now, 0);
        }
        self.repair_log.1 += 1;
        if self.repair_log.1 <= 20 {
            tracing::warn!(
                %prefix, deleted, found = ?found.iter().map(|h| h.gateway).collect::<Vec<_>>(),
                repairs_total = self.repairs,
                "a route of ours was changed behind our back: putting it back"
            );
        }
        let op = if want.is_empty() {
            FibOp::Delete { prefix }
        } else {
            FibOp::Replace {
                prefix,
                next_hops: want,
            }
        };
        let failures = self.fib.apply(op);
        self.fib_failures.extend(failures);
    }

    /// Puts the kernel table back in line with the RIB (and the adopted routes).
    async fn resync(&mut self) {
        self.resyncs += 1;
        let kernel = match self.fib.dump() {
            Ok(k) => k,
            Err(error) => {
                tracing::warn!(%error, "cannot dump the kernel table");
                return;
            }
        };
        let desired: Vec<(IpNet, Vec<NextHop>)> = self
            .rib
            .installed()
            .map(|(p, h)| (p, h.to_vec()))
            .chain(self.adopted.iter().map(|(p, h)| (*p, h.to_vec())))
            .collect();
        let mut errors = Vec::new();
        for op in reconcile(desired, kernel) {
            errors.extend(self.fib.apply(op));
        }
        errors.extend(self.fib.flush());
        let errors = real_errors(errors);
        match errors.first() {
            None => self.resync_backoff = Duration::ZERO,
            // Say a bridge lost its addresses: the routes can go back once it has them.
            Some(first) => {
                self.resync_backoff = (self.resync_backoff * 2)
                    .clamp(Duration::from_secs(1), Duration::from_secs(30));
                tracing::warn!(
                    error = %first, refused = errors.len(), retry_in_s = self.resync_backoff.as_secs(),
                    "kernel refused routes while resynchronising; trying again later"
                );
                self.resync_retry = Some(Instant::now() + self.resync_backoff);
            }
        }
    }

    /// Every prefix we have in the kernel.
    fn ours(&self) -> BTreeSet<IpNet> {
        self.rib
            .installed()
            .map(|(p, _)| p)
            .chain(self.adopted.iter().map(|(p, _)| *p))
            .collect()
    }

    async fn shutdown(mut self, mode: ra::StopMode) {
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
        tracing::info!(?mode, "stopping");
        let ours = self.ours();
        self.ra.stop(mode).await;
        let mut open = 0;
        for peer in self.peers.values() {
            if let Some(commands) = &peer.commands {
                open += 1;
                let _ = commands.send(PeerCommand::Close {
                    subcode: Notification::CEASE_ADMINISTRATIVE_SHUTDOWN,
                    keep_routes: true,
                });
            }
        }
        // Give sessions a moment to send their Cease.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while open > 0 {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(PeerEvent::Down(..))) => open -= 1,
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        // A restart keeps the routes whatever `kernel.persist` says: the next process adopts
        // them.
        if !self.config.kernel.persist && mode == ra::StopMode::Final {
            tracing::info!(
                routes = ours.len(),
                "kernel.persist is off: removing our routes"
            );
            for prefix in ours {
                let _ = self.fib.apply(FibOp::Delete { prefix });
            }
            let _ = self.fib.flush();
        }
    }

    /// WATCHDOG=1, sent from the event loop itself: if the loop hangs, the pings stop and
    /// systemd restarts us.
    fn pet_watchdog(&mut self) {
        let now = Instant::now();
        if let Some((interval, next)) = &mut self.watchdog
            && *next <= now
        {
            let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            *next = now + *interval;
        }
    }

    fn notify_status(&mut self) {
        let now = Instant::now();
        if self
            .last_status
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_status = Some(now);
        let established = self
            .peers
            .values()
            .filter(|p| p.negotiated.is_some())
            .count();
        let status = format!(
            "{established} sessions established, {} routes installed",
            self.rib.len()
        );
        let _ = sd_notify::notify(&[NotifyState::Status(&status)]);
    }
}

/// Binds `listen` now where it can, so that READY=1 (or a reload's) means listening with
/// the keys in place, and serves it from a task of its own (which keeps trying to bind).
fn start_listener(
    listen: &ListenAddr,
    security: &watch::Receiver<Arc<listener::Security>>,
    accepted: &mpsc::Sender<(TcpStream, SocketAddr)>,
) -> tokio::task::JoinHandle<()> {
    let bound = match listener::bind(listen, &security.borrow()) {
        Ok(l) => {
            tracing::info!(%listen, "listening for BGP");
            Some(l)
        }
        Err(error) => {
            tracing::warn!(%listen, %error, "cannot listen yet; will retry");
            None
        }
    };
    tokio::spawn(listener::serve(
        listen.clone(),
        bound,
        security.clone(),
        accepted.clone(),
    ))
}

/// Starts the metrics responder when `listen` is set; a failure is logged, not fatal.
fn serve_metrics(
    listen: Option<SocketAddr>,
    daemon: &mpsc::Sender<oneshot::Sender<String>>,
) -> Option<tokio::task::JoinHandle<()>> {
    let listen = listen?;
    match metrics::serve(listen, daemon.clone()) {
        Ok(server) => {
            tracing::info!(%listen, "serving Prometheus metrics at /metrics");
            Some(server)
        }
        Err(error) => {
            tracing::error!(%listen, %error, "cannot serve metrics");
            None
        }
    }
}

/// Refusals that matter: deleting what is already gone is the outcome we wanted.
fn real_errors(mut errors: Vec<FibError>) -> Vec<FibError> {
    errors.retain(|e| !(matches!(e.op, Some(FibOp::Delete { .. })) && e.errno == libc::ESRCH));
    errors
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// IPv4 peers reach `[::]` as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn afi_family(afi: Afi) -> Family {
    match afi {
        Afi::Ipv4 => Family::IPV4_UNICAST,
        Afi::Ipv6 => Family::IPV6_UNICAST,
    }
}

fn family_afi(family: Family) -> Option<Afi> {
    match family {
        Family::IPV4_UNICAST => Some(Afi::Ipv4),
        Family::IPV6_UNICAST => Some(Afi::Ipv6),
        _ => None,
    }
}

fn monotonic_usec() -> NotifyState<'static> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    NotifyState::MonotonicUsec(ts.tv_sec as i128 * 1_000_000 + ts.tv_nsec as i128 / 1000)
}

/// Every configured bridge with its (validated) RA settings.
fn ra_bridges(config: &Config) -> Vec<ra::Bridge> {
    config
        .bridges
        .iter()
        .map(|(name, bridge)| ra::Bridge::from_config(name, &bridge.prefixes, &bridge.ra))
        .collect()
}
