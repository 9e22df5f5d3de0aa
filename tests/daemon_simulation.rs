//! A deterministic simulation of the daemon's core against a model kernel table, in the
//! manner of FoundationDB's and TigerBeetle's simulation testing: seeded random runs of
//! nodes connecting and dropping with and without graceful restart, announcing and
//! withdrawing pod CIDRs and shared LoadBalancer IPs, flooding past `max_prefixes`,
//! reloads that change ranges, imports, `max_paths`, multipath and the table, daemon
//! restarts that adopt the table, routes changed behind the daemon's back, and kernel
//! requests that fail (ENOBUFS, EEXIST, ENODEV).
//!
//! The simulator plays the shell and the sessions (a GoBGP-like node sends its routes and
//! End-of-RIB when Established; a closed session reports Down). Beside the core it keeps
//! its own model of what each node has announced, what is stale until when, what was
//! adopted, and after every step checks that the kernel table holds exactly what that
//! model says, that `show` (the core's view) agrees with the table, that no route is left
//! in a table we moved away from, and that sessions are in the states the model expects.
//!
//! A failure prints its seed and a shortened list of steps that replays it. Runs:
//! `CILIUM_PEER_SIM_SEEDS` seeds (default 100) of `CILIUM_PEER_SIM_STEPS` steps (default
//! 1000); `CILIUM_PEER_SIM_SEED` runs one seed.

mod core_harness;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use cilium_peer::bgp::peer::RouteBatch;
use cilium_peer::bgp::session::{CloseReason, Closed};
use cilium_peer::bgp::wire::{Cease, Family, Notification};
use cilium_peer::daemon::core::{Action, Core, Event, Offer, PeerState, RouteTable};
use cilium_peer::fib::diff::FibOp;
use cilium_peer::rib::NextHop;
use core_harness::{ModelTable, announce, hop, negotiated, net, parse};
use ipnet::IpNet;
use serde_json::{Value, json};

const NODES: usize = 6;
const RESTART_TIME_S: u16 = 5;
const ADOPT_GRACE_S: u64 = 10;
const MAX_PREFIXES: usize = 40;
const HOLD_S: u64 = 3;
const MULTIPLIER: u8 = 3;

/// The bridge port node `node` is behind.
fn port(node: usize) -> u32 {
    100 + node as u32
}

/// One thing that happens. Steps name nodes and prefixes by number and do nothing when they
/// do not apply (a withdraw from a node that is not connected), so that any subsequence of
/// a run is a run too: that is what lets a failure shrink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The node connects (replacing its connection if it has one) with or without GR.
    Connect {
        node: usize,
        gr: bool,
    },
    /// The node starts announcing route `route` of its list (pod CIDRs, shared LB IPs).
    Announce {
        node: usize,
        route: usize,
    },
    Withdraw {
        node: usize,
        route: usize,
    },
    /// The session ends; with `keep` as a session reports it (GR applies when negotiated).
    Drop {
        node: usize,
        keep: bool,
    },
    /// The node sends Cease/Hard Reset (RFC 8538): its routes go at once.
    HardReset {
        node: usize,
    },
    /// The node announces more than `max_prefixes` at once.
    Flood {
        node: usize,
    },
    /// A SIGHUP with one of the configs of `config_variant`.
    Reload {
        variant: usize,
    },
    /// The daemon restarts (SIGUSR2): it adopts the table and the nodes must reconnect.
    Restart,
    /// Someone deletes (or changes) one of the table's routes, or adds one of our protocol.
    Meddle {
        route: usize,
        how: usize,
    },
    /// The kernel refuses the next `count` requests with ENOBUFS, EEXIST or ENODEV.
    Refuse {
        errno: usize,
        count: usize,
    },
    Advance {
        ms: u64,
    },
    /// The node hangs (or wakes up): it stops (or starts again) answering liveness probes.
    Hang {
        node: usize,
        silent: bool,
    },
    /// The node's VM stops: its bridge port goes and it answers nothing.
    PortGone {
        node: usize,
    },
    /// Not generated: a route of ours vanishes without the kernel telling anyone, which no
    /// daemon can notice. Shows that the checks can fail and that failures shrink.
    Sabotage,
}

/// The configs a reload picks from: the base, a narrower range, a range that excludes every
/// node, an import list without the LB IPs, `max_paths` 2, multipath off, another table,
/// another protocol, and a lower `max_prefixes`.
fn config_variant(variant: usize) -> Value {
    let mut config = json!({
        "router_id": "192.0.2.1",
        "asn": 65100,
        "kernel": { "table": 1336, "adopt_grace_s": ADOPT_GRACE_S },
        "limits": { "source_burst": 1000, "source_per_minute": 1000 },
        "bridges": { "vmbr-dev": { "prefixes": ["192.0.2.0/24", "2001:db8:1::/64"] } },
        "neighbors": [ {
            "name": "cilium",
            "range": "2001:db8:1::/64",
            "asn": 65100,
            "max_prefixes": MAX_PREFIXES,
            "max_prefixes_hold_s": HOLD_S,
            "liveness": { "interval_ms": 400, "multiplier": MULTIPLIER }
        } ]
    });
    match variant % 10 {
        0 => {}
        1 => config["neighbors"][0]["range"] = json!("2001:db8:1::/120"),
        2 => config["neighbors"][0]["range"] = json!("2001:db8:1::/125"),
        3 => {
            config["neighbors"][0]["import"] = json!([
                { "prefix": "10.244.0.0/16", "max_length": 24 },
                { "prefix": "fd00:ff00::/32", "max_length": 64 }
            ])
        }
        4 => config["kernel"]["max_paths"] = json!(2),
        5 => config["kernel"]["multipath"] = json!(false),
        6 => config["kernel"]["table"] = json!(1337),
        7 => config["kernel"]["protocol"] = json!(77),
        8 => config["neighbors"][0]["max_prefixes"] = json!(3),
        _ => config["neighbors"][0]["liveness"] = json!({ "enable": false }),
    }
    config
}

fn address(node: usize) -> IpAddr {
    format!("2001:db8:1::{:x}", 0x11 + node).parse().unwrap()
}

/// The routes a node may announce: its own pod CIDRs (IPv4 and IPv6) and three
/// LoadBalancer IPs every node may share.
fn route(node: usize, route: usize) -> IpNet {
    match route % 5 {
        0 => net(&format!("10.244.{node}.0/24")),
        1 => net(&format!("fd00:ff00:{node}::/64")),
        k => net(&format!("198.51.100.{k}/32")),
    }
}

/// What the simulator knows of a node.
#[derive(Debug, Default, Clone)]
struct Node {
    /// Its current connection, once the core accepted it.
    conn: Option<u64>,
    /// Graceful restart negotiated on the current (or last) session.
    gr: bool,
    /// The routes it wants to announce.
    wants: BTreeSet<IpNet>,
    /// What the daemon should hold from it: prefix → stale.
    held: BTreeMap<IpNet, bool>,
    stale_until: Option<Instant>,
    held_down_until: Option<Instant>,
    /// Hung or gone: it answers no liveness probe.
    silent: bool,
    /// The daemon's liveness watch of it, by the model.
    watch: Option<ModelWatch>,
}

/// The liveness rule, by the model: probes answered at once by a node that is not silent;
/// `MULTIPLIER` unanswered in a row, or its port gone once known, make it unreachable.
#[derive(Debug, Default, Clone, Copy)]
struct ModelWatch {
    answered: bool,
    missed: u8,
    unreachable: bool,
    port_known: bool,
}

/// The simulator: the core, the kernel's tables, and the model it checks them against.
struct World {
    core: Core,
    now: Instant,
    tables: HashMap<u32, ModelTable>,
    table: u32,
    nodes: Vec<Node>,
    /// Next hops adopted at the last restart, until their node's End-of-RIB or the deadline.
    adopted: BTreeMap<IpNet, BTreeSet<NextHop>>,
    adopt_until: Option<Instant>,
    config: Value,
}

impl World {
    fn new() -> World {
        let now = Instant::now();
        let config = config_variant(0);
        let mut table = ModelTable::default();
        let mut core = Core::new(now, parse(config.clone()), BTreeMap::new(), &mut table);
        core.handle(
            now,
            Event::Interfaces(BTreeMap::from([(
                core_harness::BRIDGE.to_string(),
                core_harness::BRIDGE_INDEX,
            )])),
            &mut table,
        );
        World {
            core,
            now,
            tables: HashMap::from([(1336, table)]),
            table: 1336,
            nodes: vec![Node::default(); NODES],
            adopted: BTreeMap::new(),
            adopt_until: None,
            config,
        }
    }

    fn kernel(&mut self) -> &mut ModelTable {
        self.tables.get_mut(&self.table).expect("the current table")
    }

    fn handle(&mut self, event: Event) -> Result<(), String> {
        let table = self.tables.get_mut(&self.table).expect("the current table");
        self.core.handle(self.now, event, table);
        self.carry_out_actions()
    }

    /// Does what the core asks, as the shell and the sessions would.
    fn carry_out_actions(&mut self) -> Result<(), String> {
        let mut dump = false;
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::DumpTable => dump = true,
                Action::Close {
                    conn,
                    cease,
                    keep_routes,
                } => {
                    let Some(node) = self.nodes.iter().position(|n| n.conn == Some(conn)) else {
                        // A connection already replaced: its Down means nothing.
                        continue;
                    };
                    if cease == Cease::MaximumPrefixesReached {
                        if self.nodes[node].held.len() <= self.max_prefixes() {
                            return Err(format!(
                                "node {node} closed for max_prefixes with {} routes",
                                self.nodes[node].held.len()
                            ));
                        }
                        self.nodes[node].held_down_until =
                            Some(self.now + Duration::from_secs(HOLD_S));
                    }
                    self.session_down(node, keep_routes)?;
                }
                Action::SetImport { conn, import: _ } => {
                    if let Some(node) = self.nodes.iter().position(|n| n.conn == Some(conn)) {
                        self.send_routes(node)?;
                    }
                }
                Action::BfdAdd { .. } | Action::BfdRemove { .. } => {
                    return Err("BFD is off in the simulation's configs".to_string());
                }
                Action::Probe {
                    address: to,
                    ifindex,
                } => {
                    let node = (0..NODES)
                        .find(|&n| address(n) == to)
                        .ok_or("a probe to no node")?;
                    if ifindex != core_harness::BRIDGE_INDEX {
                        return Err(format!("node {node} probed on interface {ifindex}"));
                    }
                    let n = &mut self.nodes[node];
                    let watch = n
                        .watch
                        .as_mut()
                        .ok_or(format!("node {node} probed unwatched"))?;
                    if std::mem::take(&mut watch.answered) {
                        watch.missed = 0;
                    } else {
                        watch.missed += 1;
                        watch.unreachable |= watch.missed >= MULTIPLIER;
                    }
                    if !n.silent {
                        *watch = ModelWatch {
                            answered: true,
                            missed: 0,
                            unreachable: false,
                            port_known: true,
                        };
                        self.handle(Event::ProbeAnswered {
                            address: to,
                            port: Some(port(node)),
                        })?;
                    }
                }
            }
        }
        if dump {
            self.flush_after_dump()?;
        }
        Ok(())
    }

    fn max_prefixes(&self) -> usize {
        self.config["neighbors"][0]["max_prefixes"]
            .as_u64()
            .unwrap() as usize
    }

    /// A flush: refusals back to the core, and a dump when it asks for one.
    fn flush(&mut self) -> Result<(), String> {
        let failures = std::mem::take(&mut self.kernel().failures);
        self.handle(Event::Flushed { failures })
    }

    fn flush_after_dump(&mut self) -> Result<(), String> {
        let dumped = Ok(self.kernel().routes.clone());
        self.handle(Event::Dumped(dumped))?;
        self.flush()
    }

    fn accepts(&self, prefix: &IpNet) -> bool {
        let import = &self.core.config().neighbors[0].import;
        import.is_empty() || import.iter().any(|rule| rule.accepts(prefix))
    }

    /// The node (Established) sends every route it wants, as import policy leaves them.
    fn send_routes(&mut self, node: usize) -> Result<(), String> {
        let Some(conn) = self.nodes[node].conn else {
            return Ok(());
        };
        let wants: Vec<IpNet> = self.nodes[node].wants.iter().copied().collect();
        let (accepted, refused): (Vec<IpNet>, Vec<IpNet>) =
            wants.into_iter().partition(|p| self.accepts(p));
        for prefix in &accepted {
            self.nodes[node].held.insert(*prefix, false);
        }
        for prefix in &refused {
            self.nodes[node].held.remove(prefix);
        }
        let texts: Vec<String> = accepted.iter().map(ToString::to_string).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let mut batch = announce(&address(node).to_string(), &texts);
        batch.withdraw = refused;
        self.routes(node, conn, batch)
    }

    fn routes(&mut self, node: usize, conn: u64, batch: RouteBatch) -> Result<(), String> {
        self.handle(Event::Routes { conn, batch })?;
        let over = self.nodes[node].held.len() > self.max_prefixes();
        if over && self.nodes[node].conn == Some(conn) {
            return Err(format!(
                "node {node} is past max_prefixes and still connected"
            ));
        }
        Ok(())
    }

    fn session_down(&mut self, node: usize, keep: bool) -> Result<(), String> {
        let conn = self.nodes[node].conn.take().expect("connected");
        self.handle(Event::SessionDown {
            conn,
            closed: Closed {
                reason: CloseReason::TransportClosed,
                keep_routes: keep,
            },
        })?;
        self.lose_session(node, keep);
        Ok(())
    }

    /// The model's side of a session ending: stale under GR, else gone.
    fn lose_session(&mut self, node: usize, keep: bool) {
        let n = &mut self.nodes[node];
        if keep && n.gr {
            for stale in n.held.values_mut() {
                *stale = true;
            }
            n.stale_until = Some(self.now + Duration::from_secs(u64::from(RESTART_TIME_S)));
        } else {
            n.held.clear();
            n.stale_until = None;
        }
    }

    fn step(&mut self, step: Step) -> Result<(), String> {
        match step {
            Step::Connect { node, gr } => {
                let in_range = self.core.config().neighbors[0]
                    .range
                    .contains(&address(node));
                let held_down = self.nodes[node]
                    .held_down_until
                    .is_some_and(|until| until > self.now);
                let table = self.tables.get_mut(&self.table).unwrap();
                let offer = Offer {
                    address: address(node),
                    scope: None,
                    local: None,
                };
                let offered = self.core.offer(self.now, offer, table);
                if offered.is_ok() != (in_range && !held_down) {
                    return Err(format!(
                        "node {node}: {offered:?} (in range {in_range}, held down {held_down})"
                    ));
                }
                let Ok(setup) = offered else {
                    return self.carry_out_actions();
                };
                if self.nodes[node].conn.is_some() {
                    // The old connection is replaced (RFC 4724 4.2).
                    self.nodes[node].conn = None;
                    self.lose_session(node, true);
                }
                self.carry_out_actions()?;
                self.nodes[node].conn = Some(setup.conn);
                // A connection proves the node is there: probing starts afresh.
                let watched = self.core.config().neighbors[0].liveness.enable;
                self.nodes[node].watch = watched.then_some(ModelWatch {
                    answered: true,
                    ..ModelWatch::default()
                });
                self.nodes[node].gr = gr;
                self.handle(Event::SessionUp {
                    conn: setup.conn,
                    negotiated: negotiated(node as u8 + 1, gr.then_some(RESTART_TIME_S)),
                })?;
                let n = &mut self.nodes[node];
                if n.stale_until.is_some() {
                    if gr {
                        n.stale_until =
                            Some(self.now + Duration::from_secs(u64::from(RESTART_TIME_S)));
                    } else {
                        n.held.retain(|_, stale| !*stale);
                        n.stale_until = None;
                    }
                }
                self.send_routes(node)?;
                if self.nodes[node].conn.is_none() {
                    // Closed for max_prefixes before its End-of-RIB.
                    return self.settle();
                }
                for family in [Family::IPV4_UNICAST, Family::IPV6_UNICAST] {
                    self.handle(Event::EndOfRib {
                        conn: setup.conn,
                        family,
                    })?;
                }
                let n = &mut self.nodes[node];
                n.held.retain(|_, stale| !*stale);
                n.stale_until = None;
                let gateway = address(node);
                for hops in self.adopted.values_mut() {
                    hops.retain(|h| h.gateway != gateway);
                }
                self.adopted.retain(|_, hops| !hops.is_empty());
            }
            Step::Announce { node, route: r } => {
                let prefix = route(node, r);
                self.nodes[node].wants.insert(prefix);
                if let Some(conn) = self.nodes[node].conn {
                    // A refused announcement withdraws what the node had (the session does it).
                    let batch = if self.accepts(&prefix) {
                        self.nodes[node].held.insert(prefix, false);
                        announce(&address(node).to_string(), &[&prefix.to_string()])
                    } else {
                        self.nodes[node].held.remove(&prefix);
                        RouteBatch {
                            withdraw: vec![prefix],
                            ..RouteBatch::default()
                        }
                    };
                    self.routes(node, conn, batch)?;
                }
            }
            Step::Withdraw { node, route: r } => {
                let prefix = route(node, r);
                self.nodes[node].wants.remove(&prefix);
                if let Some(conn) = self.nodes[node].conn {
                    self.nodes[node].held.remove(&prefix);
                    let batch = RouteBatch {
                        withdraw: vec![prefix],
                        ..RouteBatch::default()
                    };
                    self.routes(node, conn, batch)?;
                }
            }
            Step::Drop { node, keep } => {
                if self.nodes[node].conn.is_some() {
                    self.session_down(node, keep)?;
                }
            }
            Step::HardReset { node } => {
                if let Some(conn) = self.nodes[node].conn.take() {
                    let hard = Notification::hard_reset(&Notification::cease(
                        Notification::CEASE_ADMINISTRATIVE_RESET,
                    ));
                    self.handle(Event::SessionDown {
                        conn,
                        closed: Closed {
                            reason: CloseReason::NotificationReceived(hard),
                            keep_routes: false,
                        },
                    })?;
                    self.lose_session(node, false);
                }
            }
            Step::Flood { node } => {
                if let Some(conn) = self.nodes[node].conn {
                    let flood: Vec<String> = (0..=MAX_PREFIXES)
                        .map(|k| format!("10.250.{node}.{k}/32"))
                        .collect();
                    let flood: Vec<&str> = flood.iter().map(String::as_str).collect();
                    let batch = announce(&address(node).to_string(), &flood);
                    let accepted: Vec<IpNet> = batch
                        .announce
                        .iter()
                        .map(|(p, _)| *p)
                        .filter(|p| self.accepts(p))
                        .collect();
                    for prefix in &accepted {
                        self.nodes[node].held.insert(*prefix, false);
                    }
                    let batch = RouteBatch {
                        announce: batch
                            .announce
                            .into_iter()
                            .filter(|(p, _)| accepted.contains(p))
                            .collect(),
                        ..batch
                    };
                    self.routes(node, conn, batch)?;
                }
            }
            Step::Reload { variant } => self.reload(config_variant(variant))?,
            Step::Restart => self.restart()?,
            Step::Meddle { route: r, how } => {
                let routes: Vec<IpNet> = self.kernel().routes.keys().copied().collect();
                let prefix = match (how % 3, routes.is_empty()) {
                    (2, _) | (_, true) => net("10.99.0.0/24"),
                    _ => routes[r % routes.len()],
                };
                let next_hops = match how % 3 {
                    0 => Vec::new(),
                    _ => vec![hop("2001:db8:1::99")],
                };
                let kernel = self.kernel();
                if next_hops.is_empty() {
                    kernel.routes.remove(&prefix);
                } else {
                    kernel.routes.insert(prefix, next_hops.clone());
                }
                self.handle(Event::KernelRoute { prefix, next_hops })?;
            }
            Step::Refuse { errno, count } => {
                let errno = [libc::ENOBUFS, libc::EEXIST, libc::ENODEV][errno % 3];
                self.kernel().refuse = vec![errno; count % 3 + 1];
            }
            Step::Advance { ms } => self.advance(Duration::from_millis(ms))?,
            Step::Hang { node, silent } => self.nodes[node].silent = silent,
            Step::PortGone { node } => {
                self.nodes[node].silent = true;
                if let Some(watch) = &mut self.nodes[node].watch
                    && watch.port_known
                {
                    watch.unreachable = true;
                    watch.missed = MULTIPLIER;
                }
                self.handle(Event::PortDown {
                    ifindex: port(node),
                })?;
            }
            Step::Sabotage => {
                let first = self.kernel().routes.keys().next().copied();
                if let Some(prefix) = first {
                    self.kernel().routes.remove(&prefix);
                }
            }
        }
        self.settle()
    }

    fn reload(&mut self, config: Value) -> Result<(), String> {
        let table = self.tables.get_mut(&self.table).unwrap();
        let plan = self.core.reload(self.now, parse(config.clone()), table);
        self.config = config;
        // Nodes the plan forgets (no session, GR routes kept) lose their routes now.
        for (address, change) in &plan.sessions {
            let node = (0..NODES).find(|&n| self::address(n) == *address).unwrap();
            if *change == cilium_peer::daemon::plan::SessionChange::Forget {
                self.lose_session(node, false);
            }
        }
        self.carry_out_actions()?;
        if let Some(table_move) = plan.table {
            let (old, new) = (self.table, table_move.to.0);
            if old != new {
                // The kernel's refusals go with the requests, whichever table they are for.
                let pending = std::mem::take(&mut self.kernel().refuse);
                self.table = new;
                self.tables.entry(new).or_default().refuse = pending;
                self.flush_after_dump()?;
                let pending = std::mem::take(&mut self.kernel().refuse);
                // As the shell does: delete what the old table holds, again while refused.
                let old = self.tables.get_mut(&old).unwrap();
                old.refuse = pending;
                for _ in 0..3 {
                    let left: Vec<IpNet> = old.routes.keys().copied().collect();
                    for prefix in left {
                        old.write(FibOp::Delete { prefix });
                    }
                    old.failures.clear();
                }
                let pending = std::mem::take(&mut old.refuse);
                self.kernel().refuse = pending;
            } else {
                self.flush_after_dump()?;
            }
        }
        Ok(())
    }

    fn restart(&mut self) -> Result<(), String> {
        let table = self.tables.get_mut(&self.table).unwrap();
        self.core.stop(false, table);
        while self.core.poll_action().is_some() {}
        let left = self.kernel().routes.clone();
        let (now, config) = (self.now, parse(self.config.clone()));
        let kernel = self.tables.get_mut(&self.table).unwrap();
        let mut core = Core::new(now, config, left.clone(), kernel);
        core.handle(
            now,
            Event::Interfaces(BTreeMap::from([(
                core_harness::BRIDGE.to_string(),
                core_harness::BRIDGE_INDEX,
            )])),
            kernel,
        );
        self.core = core;
        for node in &mut self.nodes {
            node.conn = None;
            node.held.clear();
            node.stale_until = None;
            node.held_down_until = None;
            node.watch = None;
        }
        self.adopted = left
            .into_iter()
            .filter(|(_, hops)| !hops.is_empty())
            .map(|(p, hops)| (p, hops.into_iter().collect()))
            .collect();
        self.adopt_until =
            (!self.adopted.is_empty()).then(|| self.now + Duration::from_secs(ADOPT_GRACE_S));
        Ok(())
    }

    /// Moves the clock, firing the core's and the model's timers in time order.
    fn advance(&mut self, by: Duration) -> Result<(), String> {
        let end = self.now + by;
        loop {
            let model_next = self
                .nodes
                .iter()
                .filter_map(|n| n.stale_until)
                .chain(self.adopt_until)
                .min();
            let next = self.core.poll_timeout().into_iter().chain(model_next).min();
            let Some(next) = next.filter(|t| *t <= end) else {
                break;
            };
            self.now = self.now.max(next);
            for node in &mut self.nodes {
                if node.stale_until.is_some_and(|t| t <= self.now) {
                    node.held.retain(|_, stale| !*stale);
                    node.stale_until = None;
                }
            }
            if self.adopt_until.is_some_and(|t| t <= self.now) {
                self.adopted.clear();
                self.adopt_until = None;
            }
            if self.core.poll_timeout().is_some_and(|t| t <= self.now) {
                self.handle(Event::Timeout)?;
            }
        }
        self.now = end;
        Ok(())
    }

    /// Flushes until the kernel has taken everything; a refused resynchronisation is
    /// retried when the core says.
    fn settle(&mut self) -> Result<(), String> {
        self.flush()?;
        // Resynchronisations back off up to 30 s; liveness probes fire in between.
        let give_up = self.now + Duration::from_secs(90);
        while self.now < give_up {
            if self.in_sync() {
                return Ok(());
            }
            let Some(retry) = self.core.poll_timeout() else {
                break;
            };
            let wait = retry.saturating_duration_since(self.now);
            self.advance(wait)?;
            self.flush()?;
        }
        Ok(())
    }

    fn in_sync(&mut self) -> bool {
        let shown: BTreeMap<IpNet, Vec<NextHop>> = self
            .core
            .kernel_routes()
            .into_iter()
            .map(|(p, (hops, _))| (p, hops.to_vec()))
            .collect();
        shown == self.kernel().routes
    }

    /// What the table must hold by the model: per prefix, the nodes that hold it (stale or
    /// not) in the decision's order, as many as multipath and `max_paths` allow, and the
    /// adopted next hops.
    fn expected(&self) -> BTreeMap<IpNet, Vec<NextHop>> {
        let kernel = &self.core.config().kernel;
        let ways = if kernel.multipath {
            usize::from(kernel.max_paths)
        } else {
            1
        };
        let mut expected: BTreeMap<IpNet, BTreeSet<NextHop>> = BTreeMap::new();
        let prefixes: BTreeSet<IpNet> = self
            .nodes
            .iter()
            .flat_map(|n| n.held.keys().copied())
            .collect();
        for prefix in prefixes {
            // Router ids rise with the node number, as do addresses.
            let hops = (0..NODES)
                .filter(|&n| self.nodes[n].held.contains_key(&prefix))
                .take(ways)
                .map(|n| hop(&address(n).to_string()));
            expected.entry(prefix).or_default().extend(hops);
        }
        for (prefix, hops) in &self.adopted {
            expected
                .entry(*prefix)
                .or_default()
                .extend(hops.iter().copied());
        }
        // The next hops of nodes that do not answer are left out, wherever they came from.
        let unreachable: BTreeSet<IpAddr> = (0..NODES)
            .filter(|&n| self.nodes[n].watch.is_some_and(|w| w.unreachable))
            .map(address)
            .collect();
        expected
            .into_iter()
            .map(|(p, hops)| {
                let hops: Vec<NextHop> = hops
                    .into_iter()
                    .filter(|h| !unreachable.contains(&h.gateway))
                    .collect();
                (p, hops)
            })
            .filter(|(_, hops)| !hops.is_empty())
            .collect()
    }

    fn check(&mut self) -> Result<(), String> {
        // A node the daemon forgot is not watched any more.
        let liveness = self.core.config().neighbors[0].liveness.enable;
        for node in &mut self.nodes {
            if (node.conn.is_none() && node.stale_until.is_none()) || !liveness {
                node.watch = None;
            }
        }
        let expected = self.expected();
        let table = self.kernel().routes.clone();
        if table != expected {
            return Err(format!(
                "the table differs from the model:\n{}",
                diff(&expected, &table)
            ));
        }
        if !self.in_sync() {
            return Err("show routes differs from the table".to_string());
        }
        for (id, other) in &self.tables {
            if *id != self.table && !other.routes.is_empty() {
                return Err(format!(
                    "table {id}, moved away from, still holds {:?}",
                    other.routes
                ));
            }
        }
        for (n, node) in self.nodes.iter().enumerate() {
            let state = self
                .core
                .peers()
                .into_iter()
                .find(|p| p.address == address(n))
                .map(|p| p.state());
            let want = match (node.conn, node.stale_until) {
                (Some(_), _) => Some(PeerState::Established),
                (None, Some(_)) => Some(PeerState::Stale),
                (None, None) => None,
            };
            if state != want {
                return Err(format!("node {n}: show says {state:?}, the model {want:?}"));
            }
        }
        Ok(())
    }
}

fn diff(expected: &BTreeMap<IpNet, Vec<NextHop>>, table: &BTreeMap<IpNet, Vec<NextHop>>) -> String {
    let prefixes: BTreeSet<&IpNet> = expected.keys().chain(table.keys()).collect();
    prefixes
        .into_iter()
        .filter(|p| expected.get(p) != table.get(p))
        .map(|p| {
            let show = |hops: Option<&Vec<NextHop>>| {
                hops.map(|h| h.iter().map(|h| h.gateway.to_string()).collect::<Vec<_>>())
            };
            format!(
                "  {p}: model {:?}, table {:?}",
                show(expected.get(p)),
                show(table.get(p))
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// splitmix64: small, seedable, the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }
}

/// The steps of one seed: mostly routes and sessions, sometimes the rarer faults.
fn steps(seed: u64, count: usize) -> Vec<Step> {
    let mut rng = Rng(seed);
    (0..count)
        .map(|_| {
            let node = rng.below(NODES as u64);
            match rng.below(100) {
                0..=19 => Step::Connect {
                    node,
                    gr: rng.below(4) != 0,
                },
                20..=44 => Step::Announce {
                    node,
                    route: rng.below(5),
                },
                45..=54 => Step::Withdraw {
                    node,
                    route: rng.below(5),
                },
                55..=64 => Step::Drop {
                    node,
                    keep: rng.below(4) != 0,
                },
                65..=67 => Step::HardReset { node },
                68..=69 => Step::Flood { node },
                70..=74 => Step::Reload {
                    variant: if rng.below(2) == 0 { 0 } else { rng.below(10) },
                },
                75..=76 => Step::Restart,
                77..=81 => Step::Meddle {
                    route: rng.below(64),
                    how: rng.below(3),
                },
                82..=85 => Step::Refuse {
                    errno: rng.below(3),
                    count: rng.below(3),
                },
                86..=89 => Step::Hang {
                    node,
                    silent: rng.below(2) == 0,
                },
                90 => Step::PortGone { node },
                _ => Step::Advance {
                    ms: rng.below(4000) as u64,
                },
            }
        })
        .collect()
}

/// Runs the steps from a fresh world; the first failure, with the step it came at.
fn run(steps: &[Step]) -> Result<(), (usize, String)> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut world = World::new();
        for (i, step) in steps.iter().enumerate() {
            world
                .step(*step)
                .and_then(|()| world.check())
                .map_err(|e| (i, e))?;
        }
        Ok(())
    }));
    match outcome {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err((usize::MAX, format!("panicked: {message}")))
        }
    }
}

/// Drops steps one at a time while the run still fails.
fn shrink(mut steps: Vec<Step>) -> Vec<Step> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    loop {
        let before = steps.len();
        let mut i = steps.len();
        while i > 0 {
            i -= 1;
            let mut shorter = steps.clone();
            shorter.remove(i);
            if run(&shorter).is_err() {
                steps = shorter;
            }
        }
        if steps.len() == before {
            break;
        }
    }
    std::panic::set_hook(hook);
    steps
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn the_kernel_table_always_holds_what_the_nodes_announced_kept_and_adopted() {
    let count = env("CILIUM_PEER_SIM_STEPS").unwrap_or(1000) as usize;
    let seeds: Vec<u64> = match env("CILIUM_PEER_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env("CILIUM_PEER_SIM_SEEDS").unwrap_or(100)).collect(),
    };
    for seed in seeds {
        let steps = steps(seed, count);
        if let Err((at, error)) = run(&steps) {
            let until = steps.len().min(at.saturating_add(1));
            let short = shrink(steps[..until].to_vec());
            let replay = run(&short).err().map(|(_, e)| e).unwrap_or(error.clone());
            panic!(
                "seed {seed} failed at step {at}: {error}\n\
                 replay with CILIUM_PEER_SIM_SEED={seed}; shortened to {} steps:\n{}\nwhich fails with: {replay}",
                short.len(),
                short
                    .iter()
                    .map(|s| format!("  {s:?}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

#[test]
fn a_route_lost_behind_the_daemons_back_without_an_event_fails_the_run_and_shrinks_to_its_cause() {
    let mut steps = steps(7, 200);
    // Whatever the random steps left: the base config, node 0 answering and not held down.
    steps.extend([
        Step::Reload { variant: 0 },
        Step::Hang {
            node: 0,
            silent: false,
        },
        Step::Advance { ms: 4000 },
        Step::Connect { node: 0, gr: true },
        Step::Announce { node: 0, route: 0 },
        Step::Sabotage,
    ]);
    let Err((at, error)) = run(&steps) else {
        panic!("a silently lost route must fail the run");
    };
    assert!(error.contains("differs"), "{error}");
    let short = shrink(steps[..=at].to_vec());
    assert!(run(&short).is_err());
    // A node that connects and announces, and the sabotage: nothing else is needed.
    assert_eq!(short.len(), 3, "{short:?}");
    assert!(
        short.iter().any(|s| matches!(s, Step::Connect { .. })),
        "{short:?}"
    );
    assert!(
        short.iter().any(|s| matches!(s, Step::Announce { .. })),
        "{short:?}"
    );
    assert_eq!(short[2], Step::Sabotage);
}
