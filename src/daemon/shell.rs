//! The shell around the core: the tokio event loop, the listening sockets and session
//! tasks, the FIB's netlink sockets and the route monitor, signals (SIGHUP carries out a
//! reload plan), sd-notify with the watchdog, the control socket and metrics scrapes. It
//! decides nothing: it turns what happens into the core's events, with the time, and does
//! what the core answers.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio::net::TcpStream;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};
use tracing_subscriber::filter::Targets;

use super::core::{Action, BfdState, Core, Event, Offer, RouteTable};
use super::plan::Plan;
use crate::bfd;
use crate::bgp::listener;
use crate::bgp::peer::{self, ConnId, PeerCommand, PeerEvent};
use crate::config::{Config, ListenAddr};
use crate::control;
use crate::fib::diff::FibOp;
use crate::fib::monitor::{self, KernelEvent};
use crate::fib::netlink::{Fib, FibError};
use crate::liveness;
use crate::metrics;
use crate::ra;

/// Route changes written to the FIB before the event loop flushes it even though it is busy.
const FIB_BATCH: u64 = 32_768;

/// Session events (mostly decoded UPDATEs, up to a few hundred routes each) waiting for the
/// event loop. When it is full, sessions stop reading and TCP holds their peers back, rather
/// than routes piling up here during a bulk load.
const EVENTS_QUEUE: usize = 32;

/// Why the daemon could not start or went down.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Keys(#[from] listener::SecurityError),
    #[error("netlink: {0}")]
    Netlink(std::io::Error),
    #[error("netlink monitor: {0}")]
    Monitor(std::io::Error),
    #[error("reading kernel table {table}: {error}")]
    Dump { table: u32, error: std::io::Error },
    #[error("control socket {path}: {error}")]
    Control {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
    #[error("liveness probe socket: {0}")]
    Probes(std::io::Error),
}

/// Why a SIGHUP changed nothing.
#[derive(Debug, thiserror::Error)]
enum ReloadError {
    #[error("the config is invalid: {0}")]
    Config(crate::config::ConfigErrors),
    #[error(transparent)]
    Keys(#[from] listener::SecurityError),
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(path: PathBuf, config: Config) -> ExitCode {
    init_logging();
    one_malloc_arena();
    let outcome = tokio::runtime::Runtime::new()
        .map_err(DaemonError::Runtime)
        .and_then(|runtime| {
            runtime.block_on(async move { Shell::start(path, config)?.run().await })
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "cilium-peer failed");
            eprintln!("cilium-peer: {error}");
            ExitCode::from(1)
        }
    }
}

/// The FIB as the core's route table: a write joins the next netlink batch; what the kernel
/// refuses meanwhile is kept for the flush.
struct FibTable<'a> {
    fib: &'a mut Fib,
    failures: &'a mut Vec<FibError>,
}

impl RouteTable for FibTable<'_> {
    fn write(&mut self, op: FibOp) {
        self.failures.extend(self.fib.apply(op));
    }
}

pub(super) struct Shell {
    path: PathBuf,
    pub(super) core: Core,
    pub(super) fib: Fib,
    /// Failures the FIB reported since the last flush.
    fib_failures: Vec<FibError>,
    /// `fib.ops` at the last flush.
    flushed_ops: u64,
    /// The core asked for a table dump; done at the next flush.
    dump_wanted: bool,
    /// The command channel of each running session.
    sessions: HashMap<ConnId, mpsc::UnboundedSender<PeerCommand>>,
    events: mpsc::Receiver<PeerEvent>,
    events_tx: mpsc::Sender<PeerEvent>,
    accepted: mpsc::Receiver<(TcpStream, SocketAddr)>,
    accepted_tx: mpsc::Sender<(TcpStream, SocketAddr)>,
    /// One task per `listen` address.
    listeners: Vec<(ListenAddr, tokio::task::JoinHandle<()>)>,
    control: mpsc::Receiver<(control::Request, oneshot::Sender<control::Answer>)>,
    /// Route and link events from the kernel, and what they are filtered by.
    kernel: mpsc::Receiver<KernelEvent>,
    kernel_filter: watch::Sender<monitor::Filter>,
    /// Prometheus scrapes, and the HTTP responder behind them (when `metrics` is set).
    metrics: mpsc::Receiver<oneshot::Sender<String>>,
    metrics_tx: mpsc::Sender<oneshot::Sender<String>>,
    metrics_server: Option<tokio::task::JoinHandle<()>>,
    pub(super) started: Instant,
    last_status: Option<Instant>,
    /// systemd's watchdog: how often to send WATCHDOG=1 (half of WatchdogSec), and when next.
    watchdog: Option<(Duration, Instant)>,
    /// Router advertisements on the bridges.
    pub(super) ra: ra::RaHandle,
    /// Liveness probes, and the answers to them.
    prober: liveness::Prober,
    /// BFD, started when a group first needs it (it holds UDP port 3784), and its reports.
    bfd: Option<(bfd::Handle, mpsc::UnboundedReceiver<bfd::Report>)>,
    answers: mpsc::Receiver<(std::net::IpAddr, Option<u32>)>,
    /// TCP-MD5 keys and GTSM settings, published to the listening sockets.
    security: watch::Sender<Arc<listener::Security>>,
}

impl Shell {
    fn start(path: PathBuf, config: Config) -> Result<Shell, DaemonError> {
        let started = Instant::now();
        // The TCP-MD5 keys, read before anything else is touched.
        let transport = listener::Security::load(&config).map_err(DaemonError::Keys)?;
        let mut fib =
            Fib::open(config.kernel.table, config.kernel.protocol).map_err(DaemonError::Netlink)?;
        fib.adopt_protocols(&config.kernel.adopt_protocols);
        // Listen before reading the table, so that no change in between goes unseen.
        let (kernel_filter, filter) = watch::channel(monitor::Filter {
            protocol: config.kernel.protocol,
            own_ports: fib.ports(),
        });
        let (kernel_tx, kernel) = mpsc::channel(1024);
        monitor::spawn(filter, kernel_tx).map_err(DaemonError::Monitor)?;
        let dumped = fib.dump().map_err(|error| DaemonError::Dump {
            table: config.kernel.table,
            error,
        })?;
        let mut fib_failures = Vec::new();
        let bridges = bridge_indexes(&config);
        let mut core = Core::new(
            started,
            config,
            dumped,
            &mut FibTable {
                fib: &mut fib,
                failures: &mut fib_failures,
            },
        );
        core.handle(
            started,
            Event::Interfaces(bridges),
            &mut FibTable {
                fib: &mut fib,
                failures: &mut fib_failures,
            },
        );
        let config = core.config();

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
        .map_err(|error| DaemonError::Control {
            path: config.control_socket.clone(),
            error,
        })?;

        let ra = ra::spawn(ra_bridges(config));
        let (answers_tx, answers) = mpsc::channel(256);
        let prober = liveness::spawn(answers_tx).map_err(DaemonError::Probes)?;
        let (metrics_tx, metrics) = mpsc::channel(16);
        let metrics_server = serve_metrics(config.metrics, &metrics_tx);
        let (events_tx, events) = mpsc::channel(EVENTS_QUEUE);
        Ok(Shell {
            path,
            core,
            fib,
            fib_failures,
            flushed_ops: 0,
            dump_wanted: false,
            sessions: HashMap::new(),
            events,
            events_tx,
            accepted,
            accepted_tx,
            listeners,
            control,
            kernel,
            kernel_filter,
            metrics,
            metrics_tx,
            metrics_server,
            started,
            last_status: None,
            watchdog: sd_notify::watchdog_enabled().map(|timeout| (timeout / 2, started)),
            ra,
            prober,
            answers,
            bfd: None,
            security,
        })
    }

    async fn run(mut self) -> Result<(), DaemonError> {
        let signals = |kind| signal(kind).map_err(DaemonError::Signal);
        let mut sigterm = signals(SignalKind::terminate())?;
        let mut sigint = signals(SignalKind::interrupt())?;
        let mut sighup = signals(SignalKind::hangup())?;
        // The restart signal (the unit's RestartKillSignal): stop without final RAs, so
        // guests keep their default route through us until the new process advertises.
        let mut sigusr2 = signals(SignalKind::user_defined2())?;
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
            let deadline = self
                .core
                .poll_timeout()
                .into_iter()
                .chain(self.watchdog.map(|(_, next)| next))
                .min();
            tokio::select! {
                Some((stream, remote)) = self.accepted.recv() => self.on_accept(stream, remote),
                Some(event) = self.events.recv() => self.on_peer_event(event),
                Some((request, reply)) = self.control.recv() => {
                    let _ = reply.send(self.answer(&request));
                }
                Some(event) = self.kernel.recv() => self.on_kernel_event(event),
                Some(report) = bfd_report(&mut self.bfd) => self.on_bfd_report(report),
                Some((address, port)) = self.answers.recv() => {
                    self.handle(Instant::now(), Event::ProbeAnswered { address, port });
                }
                Some(reply) = self.metrics.recv() => {
                    let _ = reply.send(metrics::render(&self.metrics_snapshot()));
                }
                () = sleep_until(deadline) => {
                    let now = Instant::now();
                    if self.core.poll_timeout().is_some_and(|t| t <= now) {
                        self.handle(now, Event::Timeout);
                    }
                }
                _ = sighup.recv() => self.reload(),
                _ = sigterm.recv() => break ra::StopMode::Final,
                _ = sigint.recv() => break ra::StopMode::Final,
                _ = sigusr2.recv() => break ra::StopMode::Restart,
            }
            // Flush when idle, or in the middle of a bulk load once enough has been written.
            if self.events.is_empty() || self.fib.ops - self.flushed_ops >= FIB_BATCH {
                self.flush_fib();
                self.notify_status();
            }
            self.pet_watchdog();
        };
        self.shutdown(mode).await;
        Ok(())
    }

    /// Hands one event to the core, then does what it asks.
    fn handle(&mut self, now: Instant, event: Event) {
        let mut table = FibTable {
            fib: &mut self.fib,
            failures: &mut self.fib_failures,
        };
        self.core.handle(now, event, &mut table);
        self.do_actions();
    }

    fn do_actions(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Close {
                    conn,
                    cease,
                    keep_routes,
                } => {
                    if let Some(commands) = self.sessions.remove(&conn) {
                        let _ = commands.send(PeerCommand::Close { cease, keep_routes });
                    }
                }
                Action::SetImport { conn, import } => {
                    if let Some(commands) = self.sessions.get(&conn) {
                        let _ = commands.send(PeerCommand::SetImport(import));
                    }
                }
                // Not in the middle of a bulk load: at the next flush.
                Action::DumpTable => self.dump_wanted = true,
                Action::Probe { address, ifindex } => self.prober.probe(address, ifindex),
                Action::BfdAdd {
                    address,
                    ifindex,
                    local,
                    settings,
                } => {
                    if let Some(bfd) = self.bfd() {
                        bfd.add(address, ifindex, local, settings);
                    }
                }
                Action::BfdRemove { address, ifindex } => {
                    if let Some((bfd, _)) = &self.bfd {
                        bfd.remove(address, ifindex);
                    }
                }
            }
        }
    }

    fn on_accept(&mut self, stream: TcpStream, remote: SocketAddr) {
        let now = Instant::now();
        let address = remote.ip().to_canonical();
        // GTSM first: a socket whose options cannot be set gets no session.
        let ttl_security = self
            .core
            .config()
            .neighbor_group_of(address)
            .is_some_and(|g| g.ttl_security);
        if let Err(why) = listener::secure_accepted(&stream, ttl_security) {
            self.core.refused(now, address, &why.to_string());
            return;
        }
        let scope = match remote {
            SocketAddr::V6(v6) if v6.ip().is_unicast_link_local() => Some(v6.scope_id()),
            _ => None,
        };
        // A bridge may have been created again since we last looked.
        if scope.is_some() || self.core.bridges().len() < self.core.config().bridges.len() {
            let bridges = bridge_indexes(self.core.config());
            self.handle(now, Event::Interfaces(bridges));
        }
        let mut table = FibTable {
            fib: &mut self.fib,
            failures: &mut self.fib_failures,
        };
        let local = stream.local_addr().ok().map(|a| a.ip().to_canonical());
        let offer = Offer {
            address,
            scope,
            local,
        };
        let offered = self.core.offer(now, offer, &mut table);
        self.do_actions();
        if let Ok(setup) = offered {
            let (commands_tx, commands_rx) = mpsc::unbounded_channel();
            self.sessions.insert(setup.conn, commands_tx);
            tokio::spawn(peer::drive(
                stream,
                setup,
                self.events_tx.clone(),
                commands_rx,
            ));
        }
    }

    /// The BFD runtime, started on first use; `None` (logged) when it cannot start.
    fn bfd(&mut self) -> Option<&bfd::Handle> {
        if self.bfd.is_none() {
            match bfd::Runtime::spawn() {
                Ok(started) => self.bfd = Some(started),
                Err(error) => {
                    tracing::error!(%error, "cannot start BFD (UDP 3784): BFD sessions stay down");
                    return None;
                }
            }
        }
        self.bfd.as_ref().map(|(handle, _)| handle)
    }

    fn on_bfd_report(&mut self, report: bfd::Report) {
        let state = match report.event {
            bfd::Event::Up => BfdState::Up,
            bfd::Event::Down {
                peer_admin_down: true,
                ..
            } => BfdState::AdminDown,
            bfd::Event::Down { .. } => BfdState::Down,
        };
        let address = report.peer;
        self.handle(Instant::now(), Event::Bfd { address, state });
    }

    fn on_peer_event(&mut self, event: PeerEvent) {
        let event = match event {
            PeerEvent::Up(conn, negotiated) => Event::SessionUp { conn, negotiated },
            PeerEvent::Routes(conn, batch) => Event::Routes { conn, batch },
            PeerEvent::EndOfRib(conn, family) => Event::EndOfRib { conn, family },
            PeerEvent::Down(conn, closed) => {
                self.sessions.remove(&conn);
                Event::SessionDown { conn, closed }
            }
        };
        self.handle(Instant::now(), event);
    }

    fn on_kernel_event(&mut self, event: KernelEvent) {
        let now = Instant::now();
        match event {
            KernelEvent::Route { route, deleted } => {
                // Foreign routes, and routes in other tables, are none of our business.
                if let Some((prefix, found)) = self.fib.ours(&route) {
                    let next_hops = if deleted { Vec::new() } else { found };
                    self.handle(now, Event::KernelRoute { prefix, next_hops });
                }
            }
            KernelEvent::Overrun => self.handle(now, Event::KernelOverrun),
            KernelEvent::LinkDown(ifindex) => self.handle(now, Event::PortDown { ifindex }),
            KernelEvent::LinkUp(ifindex) | KernelEvent::AddressAdded(ifindex) => {
                let bridges = bridge_indexes(self.core.config());
                self.handle(now, Event::Interfaces(bridges));
                self.handle(now, Event::LinkChanged { ifindex });
            }
        }
    }

    /// Sends what is queued and tells the core what the kernel refused; then a table dump
    /// if the core asked for one (a resynchronisation), and its flush.
    fn flush_fib(&mut self) {
        let mut failures = std::mem::take(&mut self.fib_failures);
        failures.extend(self.fib.flush());
        self.flushed_ops = self.fib.ops;
        self.handle(Instant::now(), Event::Flushed { failures });
        if std::mem::take(&mut self.dump_wanted) {
            self.dump_and_flush();
        }
    }

    /// The core compares the kernel table with what it must hold and writes the difference.
    fn dump_and_flush(&mut self) {
        let dumped = self.fib.dump().map_err(|e| e.to_string());
        self.handle(Instant::now(), Event::Dumped(dumped));
        let mut failures = std::mem::take(&mut self.fib_failures);
        failures.extend(self.fib.flush());
        self.flushed_ops = self.fib.ops;
        self.handle(Instant::now(), Event::Flushed { failures });
    }

    /// SIGHUP: an unreadable or invalid config (or key file) changes nothing; otherwise the
    /// core applies the plan's session part and the rest is carried out here.
    fn reload(&mut self) {
        // RELOADING=1 wants the monotonic time with it (systemd.service, Type=notify-reload).
        match NotifyState::monotonic_usec_now() {
            Ok(time) => drop(sd_notify::notify(&[NotifyState::Reloading, time])),
            Err(_) => drop(sd_notify::notify(&[NotifyState::Reloading])),
        }
        let now = Instant::now();
        let loaded = Config::load(&self.path)
            .map_err(ReloadError::Config)
            .and_then(|config| {
                let transport = listener::Security::load(&config)?;
                Ok((config, transport))
            });
        let (config, transport) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::error!(path = %self.path.display(), %error, "reload refused: nothing changed");
                self.handle(now, Event::ReloadRefused);
                let _ = sd_notify::notify(&[NotifyState::Ready]);
                return;
            }
        };
        let mut table = FibTable {
            fib: &mut self.fib,
            failures: &mut self.fib_failures,
        };
        let plan = self.core.reload(now, config, &mut table);
        self.do_actions();
        self.carry_out(&plan);
        // New keys and GTSM settings go onto the live listening sockets.
        self.security.send_if_modified(|current| {
            let changed = **current != transport;
            if changed {
                *current = Arc::new(transport);
            }
            changed
        });
        // Listening addresses: the ones gone stop (established sessions stay), new ones
        // start with the keys above.
        self.listeners.retain(|(listen, task)| {
            let keep = !plan.listen_close.contains(listen);
            if !keep {
                task.abort();
                tracing::info!(%listen, "no longer listening for BGP");
            }
            keep
        });
        for listen in &plan.listen_open {
            let security = self.security.subscribe();
            let task = start_listener(listen, &security, &self.accepted_tx);
            self.listeners.push((listen.clone(), task));
        }
        tracing::info!(path = %self.path.display(), "config reloaded");
        let _ = sd_notify::notify(&[NotifyState::Ready]);
    }

    /// The IO of a reload plan: the table move, the bridges' RAs, the metrics listener.
    fn carry_out(&mut self, plan: &Plan) {
        let config = self.core.config();
        let bridges = bridge_indexes(config);
        if !plan.ra.is_empty() {
            tracing::info!(bridges = ?plan.ra, "router advertisement settings changed");
            self.ra.reload(ra_bridges(config));
        }
        if let Some(listen) = plan.metrics {
            if let Some(server) = self.metrics_server.take() {
                server.abort();
            }
            self.metrics_server = serve_metrics(listen, &self.metrics_tx);
        }
        self.handle(Instant::now(), Event::Interfaces(bridges));
        let Some(table_move) = plan.table else {
            return;
        };
        let (table, protocol) = table_move.to;
        match Fib::open(table, protocol) {
            Ok(mut new_fib) => {
                // Routes left under the number in use until now, or an older default, in
                // the new table: ours, moved to the new number in place.
                let previous = [table_move.from.1];
                new_fib.adopt_protocols(
                    &[&self.core.config().kernel.adopt_protocols[..], &previous].concat(),
                );
                // Into the new table first, then out of the old one.
                let mut old_fib = std::mem::replace(&mut self.fib, new_fib);
                self.kernel_filter.send_replace(monitor::Filter {
                    protocol,
                    own_ports: self.fib.ports(),
                });
                self.dump_and_flush();
                empty_table(&mut old_fib);
                self.fib.ops += old_fib.ops;
                self.fib.errors += old_fib.errors;
            }
            Err(error) => tracing::error!(%error, "cannot open the new kernel table"),
        }
    }

    async fn shutdown(mut self, mode: ra::StopMode) {
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
        tracing::info!(?mode, "stopping");
        // A restart keeps the routes whatever `kernel.persist` says: the next process adopts
        // them.
        let remove_routes = !self.core.config().kernel.persist && mode == ra::StopMode::Final;
        let mut table = FibTable {
            fib: &mut self.fib,
            failures: &mut self.fib_failures,
        };
        let mut open = self.core.stop(remove_routes, &mut table);
        self.do_actions();
        self.ra.stop(mode).await;
        // Give sessions a moment to send their Cease.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while open > 0 {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(PeerEvent::Down(..))) => open -= 1,
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        let _ = self.fib.flush();
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
            .core
            .peers()
            .iter()
            .filter(|p| p.negotiated.is_some())
            .count();
        let status = format!(
            "{established} sessions established, {} routes installed",
            self.core.rib().len()
        );
        let _ = sd_notify::notify(&[NotifyState::Status(&status)]);
    }
}

/// Deletes every route of ours from a table we moved away from; what the kernel refuses
/// is tried again, a few times.
fn empty_table(fib: &mut Fib) {
    for _ in 0..3 {
        let left = match fib.dump() {
            Ok(left) if left.is_empty() => return,
            Ok(left) => left,
            Err(error) => {
                tracing::warn!(table = fib.table(), %error, "cannot read the old table to empty it");
                return;
            }
        };
        for prefix in left.into_keys() {
            let _ = fib.apply(FibOp::Delete { prefix });
        }
        let _ = fib.flush();
    }
    tracing::warn!(
        table = fib.table(),
        "the kernel refused to empty the old table: routes of ours are left there"
    );
}

/// The configured bridges' interface indexes, for those that exist now.
fn bridge_indexes(config: &Config) -> BTreeMap<String, u32> {
    config
        .bridges
        .keys()
        .filter_map(|name| {
            let index = nix::net::if_::if_nametoindex(name.as_str()).ok()?;
            Some((name.clone(), index))
        })
        .collect()
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

/// The next BFD report, if BFD runs.
async fn bfd_report(
    bfd: &mut Option<(bfd::Handle, mpsc::UnboundedReceiver<bfd::Report>)>,
) -> Option<bfd::Report> {
    match bfd {
        Some((_, reports)) => reports.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// Every configured bridge with its (validated) RA settings.
fn ra_bridges(config: &Config) -> Vec<ra::Bridge> {
    config
        .bridges
        .iter()
        .map(|(name, bridge)| ra::Bridge::from_config(name, &bridge.prefixes, &bridge.ra))
        .collect()
}
