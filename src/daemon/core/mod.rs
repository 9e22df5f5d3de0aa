//! The daemon's decisions, without IO: the peer table (accept, evict, hold down, graceful
//! restart timers and sweeps), the routes adopted from a previous run until End-of-RIB,
//! `max_prefixes`, reloads, and the one rule for what the kernel table must hold for a
//! prefix. Events go in with the time they happened ([`Core::handle`], [`Core::offer`]);
//! kernel-table changes go out through a [`RouteTable`], everything else the shell must do
//! as [`Action`]s. No tokio, no sockets, no clock reads: tests drive it on a virtual clock.
//!
//! `kernel` holds the kernel table's rule and the repairs and resynchronisations,
//! `liveness` the nodes' liveness and BFD; the peer table and sessions are here.
//!
//! To add a decision: give it the event it reacts to (a variant of [`Event`]), keep its
//! state in [`Core`] or [`Peer`], and answer with table writes or actions; if it needs a
//! timer, fold its deadline into [`Core::poll_timeout`] and act in the `Timeout` arm.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

mod kernel;
mod liveness;

pub use liveness::{BfdState, Liveness, Watch};

use kernel::{KernelRule, route_op};

use super::plan::{self, Plan, SessionChange};
use crate::bgp::admission::{Admission, Admitter};
use crate::bgp::peer::{ConnId, PeerSetup, RouteBatch};
use crate::bgp::session::{CloseReason, Closed, Negotiated, SessionConfig};
use crate::bgp::wire::{Cease, Family};
use crate::config::{Config, ImportRule};
use crate::fib::adopted::Adopted;
use crate::fib::diff::FibOp;
use crate::fib::netlink::FibError;
use crate::policy::{PeerLink, Rejection};
use crate::rib::{Afi, FibChange, NextHop, NextHops, PeerId, PeerInfo, Rib};

/// Where the core's kernel-table changes go: the FIB's next batch in the daemon, a model
/// table in tests. Failures come back later as [`Event::Flushed`].
pub trait RouteTable {
    fn write(&mut self, op: FibOp);
}

/// What happened, as the shell saw it.
#[derive(Debug)]
pub enum Event {
    /// A session reached Established with these terms.
    SessionUp {
        conn: ConnId,
        negotiated: Negotiated,
    },
    /// Routes of one UPDATE, after import policy.
    Routes {
        conn: ConnId,
        batch: RouteBatch,
    },
    EndOfRib {
        conn: ConnId,
        family: Family,
    },
    /// A session ended (or its connection could not be set up).
    SessionDown {
        conn: ConnId,
        closed: Closed,
    },
    /// Someone else added, changed or (with no next hops) deleted a route of ours.
    KernelRoute {
        prefix: IpNet,
        next_hops: Vec<NextHop>,
    },
    /// Route events were lost: the whole table must be compared.
    KernelOverrun,
    /// The interface indexes of the configured bridges, as the kernel has them now.
    Interfaces(BTreeMap<String, u32>),
    /// A link came up or got an address.
    LinkChanged {
        ifindex: u32,
    },
    /// A node answered a liveness probe; `port` is the bridge port its answer came through,
    /// when the bridge's forwarding database says.
    ProbeAnswered {
        address: IpAddr,
        port: Option<u32>,
    },
    /// A bridge port was deleted or lost its carrier: the nodes behind it are gone.
    PortDown {
        ifindex: u32,
    },
    /// The BFD session with a node changed state.
    Bfd {
        address: IpAddr,
        state: BfdState,
    },
    /// The shell sent everything written so far; what the kernel refused.
    Flushed {
        failures: Vec<FibError>,
    },
    /// The table as the kernel has it, asked for by [`Action::DumpTable`] (or after a table
    /// move); the core writes the differences.
    Dumped(Result<BTreeMap<IpNet, Vec<NextHop>>, String>),
    /// A SIGHUP whose config (or key files) could not be read: nothing changes.
    ReloadRefused,
    /// The deadline of [`Core::poll_timeout`] has come.
    Timeout,
}

/// What the shell must do for the core, besides writing routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a Cease with this subcode on the connection and end it; `keep_routes` as for
    /// `Session::close`.
    Close {
        conn: ConnId,
        cease: Cease,
        keep_routes: bool,
    },
    /// The group's import list changed: re-filter and ask the peer for a route refresh.
    SetImport {
        conn: ConnId,
        import: Vec<ImportRule>,
    },
    /// Read the kernel table and answer with [`Event::Dumped`]: a resynchronisation.
    DumpTable,
    /// Send one liveness probe (ARP request or Neighbor Solicitation) to the node at
    /// `address` on interface `ifindex`; an answer comes back as [`Event::ProbeAnswered`].
    Probe { address: IpAddr, ifindex: u32 },
    /// Run BFD with the node (again: with new settings).
    BfdAdd {
        address: IpAddr,
        ifindex: u32,
        local: Option<IpAddr>,
        settings: crate::bfd::Settings,
    },
    /// End BFD with the node.
    BfdRemove { address: IpAddr, ifindex: u32 },
}

/// A connection offered by the listener.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    /// The remote address, IPv4-mapped addresses already made IPv4.
    pub address: IpAddr,
    /// The interface a link-local peer connected on.
    pub scope: Option<u32>,
    /// Our address of the connection (BFD sends from it).
    pub local: Option<IpAddr>,
}

/// Why a connection gets no session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    OutsideRanges,
    /// The node passed `max_prefixes`; seconds of hold-down left.
    HeldDown(u64),
    Admission(crate::bgp::admission::Refusal),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::OutsideRanges => {
                f.write_str("connection from outside every neighbor range: closed")
            }
            Refused::HeldDown(left_s) => write!(
                f,
                "connection refused: the node passed max_prefixes, held down for {left_s} s more"
            ),
            Refused::Admission(why) => write!(f, "{why}"),
        }
    }
}

/// A session's state as `show` and the metrics name it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum PeerState {
    /// No connection and no routes kept.
    #[default]
    Idle,
    /// Connected, OPEN not yet done.
    OpenSent,
    Established,
    /// No connection; routes kept under graceful restart.
    Stale,
}

impl PeerState {
    pub const ALL: [PeerState; 4] = [
        PeerState::Idle,
        PeerState::OpenSent,
        PeerState::Established,
        PeerState::Stale,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PeerState::Idle => "Idle",
            PeerState::OpenSent => "OpenSent",
            PeerState::Established => "Established",
            PeerState::Stale => "Stale",
        }
    }
}

impl std::fmt::Display for PeerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A neighbor, by address: it outlives its connections while its routes are kept.
#[derive(Debug)]
pub struct Peer {
    pub id: PeerId,
    pub name: String,
    pub group: String,
    pub address: IpAddr,
    pub asn: u32,
    pub conn: Option<ConnId>,
    /// We asked its connection to close; it is going.
    pub closing: bool,
    pub negotiated: Option<Negotiated>,
    /// Since when it is in its current state.
    pub since: Instant,
    /// Graceful restart: its routes are stale until this time (or its End-of-RIB).
    pub stale_until: Option<Instant>,
    /// Families whose stale routes wait for an End-of-RIB.
    stale_families: Vec<Afi>,
    end_of_rib: Vec<Family>,
    /// Kernel gateways its routes resolved to (to recognise adopted routes it owned).
    gateways: HashSet<IpAddr>,
    pub rejected: BTreeMap<Rejection, u64>,
    pub updates: u64,
    /// Prefixes announced in its UPDATEs, accepted or not.
    pub announced: u64,
    /// Liveness probing, when its group has it and it sits on a bridge.
    pub watch: Option<Watch>,
    /// The interface it sits on (its bridge, or a link-local session's scope).
    ifindex: Option<u32>,
    /// Our address of its connection.
    local: Option<IpAddr>,
    /// Its BFD session, when its group runs BFD; with the changes of state seen.
    pub bfd: Option<BfdState>,
    pub bfd_transitions: u64,
}

impl Peer {
    pub fn state(&self) -> PeerState {
        match (&self.conn, &self.negotiated) {
            (Some(_), Some(_)) => PeerState::Established,
            (Some(_), None) => PeerState::OpenSent,
            (None, _) if self.stale_until.is_some() => PeerState::Stale,
            (None, _) => PeerState::Idle,
        }
    }

    /// Connected, and not already told to close.
    fn open(&self) -> Option<ConnId> {
        self.conn.filter(|_| !self.closing)
    }
}

/// Where a resynchronisation of the table stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resync {
    Idle,
    /// Wanted: the next `poll_action` asks for a dump.
    Wanted,
    Dumping,
    /// The differences are written; the next flush says whether the kernel took them.
    Writing,
}

/// Counters for `show` and the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections that got no session.
    pub refused: u64,
    /// Routes of ours put back after someone else changed them.
    pub repairs: u64,
    pub resyncs: u64,
    pub reloads_applied: u64,
    pub reloads_refused: u64,
}

/// The daemon's state and decisions.
pub struct Core {
    config: Config,
    rib: Rib,
    peers: HashMap<IpAddr, Peer>,
    conns: HashMap<ConnId, IpAddr>,
    next_conn: ConnId,
    next_peer_id: PeerId,
    /// Next hops of our routes found in the kernel at start whose peers have not yet sent
    /// End-of-RIB.
    adopted: Adopted,
    adopt_deadline: Option<Instant>,
    /// Per-source connect rates and the cap on sessions not yet Established.
    admission: Admitter,
    /// Addresses whose session was closed for `max_prefixes`, refused until then.
    held_down: HashMap<IpAddr, Instant>,
    /// The configured bridges' interface indexes.
    bridges: BTreeMap<String, u32>,
    /// Gateways of the nodes liveness found unreachable: the kernel rule leaves them out.
    unreachable: HashSet<IpAddr>,
    resync: Resync,
    /// When to try a resynchronisation the kernel refused again, and the last wait.
    resync_retry: Option<Instant>,
    resync_backoff: Duration,
    actions: VecDeque<Action>,
    counters: Counters,
    last_reload_ok: bool,
    /// Log lines limited per time: the last refusal logged; the current minute of repairs.
    refused_log: Option<Instant>,
    repair_log: (Instant, u32),
}

impl Core {
    /// Starts from the routes of our protocol found in the kernel table: those without a
    /// gateway (none we install) are deleted, the others adopted until their peers'
    /// End-of-RIB or `kernel.adopt_grace_s`.
    pub fn new(
        now: Instant,
        config: Config,
        dumped: BTreeMap<IpNet, Vec<NextHop>>,
        table: &mut impl RouteTable,
    ) -> Core {
        for prefix in dumped
            .iter()
            .filter(|(_, hops)| hops.is_empty())
            .map(|(p, _)| p)
        {
            table.write(FibOp::Delete { prefix: *prefix });
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
        let adopt_deadline =
            (!adopted.is_empty()).then(|| now + Duration::from_secs(config.kernel.adopt_grace_s));
        let mut rib = Rib::new(config.kernel.multipath);
        rib.set_max_paths(usize::from(config.kernel.max_paths));
        Core {
            rib,
            peers: HashMap::new(),
            conns: HashMap::new(),
            next_conn: 1,
            next_peer_id: 1,
            adopted,
            adopt_deadline,
            admission: Admitter::new(config.limits),
            held_down: HashMap::new(),
            bridges: BTreeMap::new(),
            unreachable: HashSet::new(),
            resync: Resync::Idle,
            resync_retry: None,
            resync_backoff: Duration::ZERO,
            actions: VecDeque::new(),
            counters: Counters::default(),
            last_reload_ok: true,
            refused_log: None,
            repair_log: (now, 0),
            config,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn rib(&self) -> &Rib {
        &self.rib
    }

    pub fn adopted(&self) -> &Adopted {
        &self.adopted
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn last_reload_ok(&self) -> bool {
        self.last_reload_ok
    }

    /// The peers, by name.
    pub fn peers(&self) -> Vec<&Peer> {
        let mut peers: Vec<&Peer> = self.peers.values().collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        peers
    }

    /// The configured bridges' interface indexes, as last told.
    pub fn bridges(&self) -> &BTreeMap<String, u32> {
        &self.bridges
    }

    /// The next thing the shell must do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        if self.resync == Resync::Wanted {
            self.resync = Resync::Dumping;
            self.counters.resyncs += 1;
            self.actions.push_back(Action::DumpTable);
        }
        self.actions.pop_front()
    }

    /// When the core next wants an [`Event::Timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|p| p.stale_until)
            .chain(
                self.peers
                    .values()
                    .filter_map(|p| Some(p.watch.as_ref()?.next_probe)),
            )
            .chain(self.adopt_deadline)
            .chain(self.resync_retry)
            .min()
    }

    // ---- the kernel table ---------------------------------------------------------------

    fn rule(&self) -> KernelRule<'_> {
        KernelRule {
            adopted: &self.adopted,
            unreachable: &self.unreachable,
        }
    }

    /// What the kernel table must hold for `prefix` (see [`KernelRule`]). Empty means no
    /// route.
    pub fn kernel_route(&self, prefix: &IpNet) -> NextHops {
        self.rule().route(prefix, &self.rib.next_hops(prefix))
    }

    /// Every route the kernel table must hold, with whether it holds adopted next hops.
    pub fn kernel_routes(&self) -> BTreeMap<IpNet, (NextHops, bool)> {
        let rule = self.rule();
        let none = NextHops::from(Vec::new());
        let mut routes: BTreeMap<IpNet, (NextHops, bool)> = self
            .rib
            .installed()
            .map(|(prefix, hops)| (prefix, (rule.route(&prefix, hops), false)))
            .collect();
        for (prefix, _) in self.adopted.iter() {
            let route = routes
                .entry(*prefix)
                .or_insert_with(|| (rule.route(prefix, &none), true));
            route.1 = true;
        }
        routes.retain(|_, (hops, _)| !hops.is_empty());
        routes
    }

    /// Every prefix the kernel table must hold.
    fn prefixes(&self) -> Vec<IpNet> {
        self.kernel_routes().into_keys().collect()
    }

    // ---- events ------------------------------------------------------------------------

    /// Decides on a new connection: a session (the shell drives it with this setup), or no.
    /// A node that reconnects replaces its old connection (RFC 4724 4.2); a stalled half-open
    /// session may be closed to make room.
    pub fn offer(
        &mut self,
        now: Instant,
        offer: Offer,
        table: &mut impl RouteTable,
    ) -> Result<PeerSetup, Refused> {
        let address = offer.address;
        let Some(group) = self.config.neighbor_group_of(address).cloned() else {
            return Err(self.refuse(now, address, Refused::OutsideRanges));
        };
        self.held_down.retain(|_, until| *until > now);
        if let Some(until) = self.held_down.get(&address) {
            let left_s = until.duration_since(now).as_secs() + 1;
            return Err(self.refuse(now, address, Refused::HeldDown(left_s)));
        }
        let half_open = self
            .peers
            .values()
            .filter(|p| p.conn.is_some() && p.negotiated.is_none())
            .map(|p| (p.address, p.since));
        match self.admission.admit(now, address, half_open) {
            Admission::Admit => {}
            Admission::AdmitEvicting(stalled) => self.evict(now, stalled, table),
            Admission::Refuse(why) => {
                return Err(self.refuse(now, address, Refused::Admission(why)));
            }
        }
        let link = self.peer_link(address, offer.scope);
        let conn = self.next_conn;
        self.next_conn += 1;

        if let Some(peer) = self.peers.get_mut(&address)
            && let Some(old) = peer.conn.take()
        {
            // The node reconnected: its old connection is dead (RFC 4724 4.2).
            tracing::info!(peer = %peer.name, "new connection replaces the old one");
            if !std::mem::take(&mut peer.closing) {
                self.actions.push_back(Action::Close {
                    conn: old,
                    cease: Cease::ConnectionCollisionResolution,
                    keep_routes: true,
                });
            }
            self.conns.remove(&old);
            let keep = peer
                .negotiated
                .take()
                .and_then(|n| n.graceful_restart)
                .map(|gr| gr.restart_time);
            let id = peer.id;
            match keep {
                Some(restart_time) => self.begin_stale(now, address, restart_time),
                None => self.remove_peer_routes(id, table),
            }
        }
        let (id, name) = match self.peers.get(&address) {
            Some(p) => (p.id, p.name.clone()),
            None => {
                self.next_peer_id += 1;
                (self.next_peer_id - 1, self.free_name(&group.name))
            }
        };
        let peer = self.peers.entry(address).or_insert_with(|| Peer {
            id,
            name: name.clone(),
            group: group.name.clone(),
            address,
            asn: group.asn,
            conn: None,
            closing: false,
            negotiated: None,
            since: now,
            stale_until: None,
            stale_families: Vec::new(),
            end_of_rib: Vec::new(),
            gateways: HashSet::new(),
            rejected: BTreeMap::new(),
            updates: 0,
            announced: 0,
            watch: None,
            ifindex: None,
            local: None,
            bfd: None,
            bfd_transitions: 0,
        });
        peer.ifindex = link.ifindex;
        peer.local = offer.local;
        peer.conn = Some(conn);
        peer.since = now;
        peer.end_of_rib.clear();
        // A connection proves the node is there: probing starts afresh.
        let was_unreachable = peer
            .watch
            .as_ref()
            .is_some_and(|w| w.state == Liveness::Unreachable);
        let transitions = peer.watch.as_ref().map_or(0, |w| w.transitions);
        peer.watch = match (group.liveness.enable, link.ifindex) {
            (true, Some(ifindex)) => Some(Watch {
                transitions: transitions + u64::from(was_unreachable),
                ..Watch::new(now, ifindex, &group.liveness)
            }),
            _ => None,
        };
        if was_unreachable {
            self.refresh_unreachable(table);
        }
        self.conns.insert(conn, address);
        tracing::info!(peer = %name, %address, "connection accepted");
        Ok(PeerSetup {
            conn,
            name,
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
            bridge_prefixes: self
                .config
                .bridges
                .values()
                .flat_map(|b| b.prefixes.iter().copied())
                .collect(),
        })
    }

    /// A connection that gets no session, for a reason the shell found (say its socket
    /// options could not be set): counted and logged like the core's own refusals.
    pub fn refused(&mut self, now: Instant, address: IpAddr, why: &str) {
        self.counters.refused += 1;
        self.log_refusal(now, address, why);
    }

    /// Handles one event.
    pub fn handle(&mut self, now: Instant, event: Event, table: &mut impl RouteTable) {
        match event {
            Event::SessionUp { conn, negotiated } => {
                if let Some(address) = self.conns.get(&conn).copied() {
                    self.on_established(now, address, negotiated, table);
                }
            }
            Event::Routes { conn, batch } => {
                if let Some(address) = self.conns.get(&conn).copied() {
                    self.on_routes(now, address, batch, table);
                }
            }
            Event::EndOfRib { conn, family } => {
                if let Some(address) = self.conns.get(&conn).copied() {
                    self.on_end_of_rib(address, family, table);
                }
            }
            Event::SessionDown { conn, closed } => {
                // Events of a connection that was replaced mean nothing any more.
                if let Some(address) = self.conns.remove(&conn) {
                    self.on_down(now, address, closed, table);
                }
            }
            Event::KernelRoute { prefix, next_hops } => {
                self.on_kernel_route(now, prefix, next_hops, table);
            }
            Event::KernelOverrun => {
                tracing::warn!("netlink route events were lost: comparing the whole table");
                self.want_resync();
            }
            Event::Interfaces(bridges) => self.bridges = bridges,
            // A bridge back up, or with an address again: the routes the kernel flushed when
            // it went down can go back now.
            Event::LinkChanged { ifindex } => {
                if self.bridges.values().any(|&i| i == ifindex) {
                    self.want_resync();
                }
            }
            Event::ProbeAnswered { address, port } => self.on_answer(address, port, table),
            Event::PortDown { ifindex } => self.on_port_down(ifindex, table),
            Event::Bfd { address, state } => self.on_bfd(now, address, state, table),
            Event::Flushed { failures } => self.on_flushed(now, failures),
            Event::Dumped(dumped) => self.on_dumped(dumped, table),
            Event::ReloadRefused => {
                self.counters.reloads_refused += 1;
                self.last_reload_ok = false;
            }
            Event::Timeout => self.on_timeout(now, table),
        }
    }

    /// Stops: every session is closed with Administrative Shutdown, its routes kept for
    /// the next run; with `remove_routes` (a final stop with `kernel.persist` off) our
    /// routes leave the table.
    pub fn stop(&mut self, remove_routes: bool, table: &mut impl RouteTable) -> usize {
        let mut open = 0;
        for peer in self.peers.values_mut() {
            if let Some(conn) = peer.open() {
                open += 1;
                peer.closing = true;
                self.actions.push_back(Action::Close {
                    conn,
                    cease: Cease::AdministrativeShutdown,
                    keep_routes: true,
                });
            }
        }
        if remove_routes {
            let prefixes = self.prefixes();
            tracing::info!(
                routes = prefixes.len(),
                "kernel.persist is off: removing our routes"
            );
            for prefix in prefixes {
                table.write(FibOp::Delete { prefix });
            }
        }
        open
    }

    /// Applies a new config: sessions whose terms changed are closed with the plan's
    /// Cease, policy changes apply in place, `max_prefixes` is enforced anew. Returns the
    /// plan, whose IO (listeners, table move, RA, metrics) the shell carries out.
    pub fn reload(&mut self, now: Instant, config: Config, table: &mut impl RouteTable) -> Plan {
        let peers: Vec<plan::PeerView> = self
            .peers
            .values()
            .map(|p| plan::PeerView {
                address: p.address,
                group: p.group.clone(),
                connected: p.open().is_some(),
            })
            .collect();
        let plan = plan::plan(&self.config, &config, &peers);
        self.config = config;
        for (address, change) in &plan.sessions {
            let Some(peer) = self.peers.get_mut(address) else {
                continue;
            };
            match change {
                SessionChange::Reset(cease) => {
                    tracing::info!(peer = %peer.name, cease = %cease, "closing: its neighbor group changed");
                    if let Some(conn) = peer.open() {
                        peer.closing = true;
                        self.actions.push_back(Action::Close {
                            conn,
                            cease: *cease,
                            keep_routes: false,
                        });
                    }
                }
                SessionChange::Forget => {
                    tracing::info!(peer = %peer.name, "its neighbor group changed: its stale routes go");
                    let id = peer.id;
                    if let Some(conn) = peer.conn {
                        self.conns.remove(&conn);
                    }
                    if let Some(peer) = self.peers.remove(address) {
                        self.forgotten(&peer, table);
                    }
                    self.remove_peer_routes(id, table);
                }
                SessionChange::Refresh(import) => {
                    tracing::info!(peer = %peer.name, "import list changed: asking for a route refresh");
                    if let Some(conn) = peer.open() {
                        self.actions.push_back(Action::SetImport {
                            conn,
                            import: import.clone(),
                        });
                    }
                }
            }
        }
        let addresses: Vec<IpAddr> = self.peers.keys().copied().collect();
        for address in addresses {
            self.enforce_max_prefixes(now, address);
        }
        // Liveness settings apply to the nodes being watched; turned off, they are not.
        for peer in self.peers.values_mut() {
            let group = self.config.neighbors.iter().find(|g| g.name == peer.group);
            match (group.map(|g| g.liveness), &mut peer.watch) {
                (Some(settings), Some(watch)) if settings.enable => {
                    watch.interval = settings.interval();
                    watch.multiplier = settings.multiplier;
                }
                _ => peer.watch = None,
            }
            // BFD: new settings to the running sessions, off where it was turned off.
            let (Some(bfd), Some(ifindex)) = (peer.bfd, peer.ifindex) else {
                continue;
            };
            match group.map(|g| g.bfd) {
                Some(settings) if settings.enable => {
                    if peer.negotiated.is_some() {
                        self.actions.push_back(Action::BfdAdd {
                            address: peer.address,
                            ifindex,
                            local: peer.local,
                            settings,
                        });
                    }
                    peer.bfd = Some(bfd);
                }
                _ => {
                    peer.bfd = None;
                    self.actions.push_back(Action::BfdRemove {
                        address: peer.address,
                        ifindex,
                    });
                }
            }
        }
        self.refresh_unreachable(table);
        if plan.multipath {
            let changes = self.rib.set_multipath(self.config.kernel.multipath);
            self.write_changes(changes, table);
        }
        let changes = self
            .rib
            .set_max_paths(usize::from(self.config.kernel.max_paths));
        self.write_changes(changes, table);
        self.admission.set_limits(self.config.limits);
        self.counters.reloads_applied += 1;
        self.last_reload_ok = true;
        plan
    }

    // ---- sessions ----------------------------------------------------------------------

    fn on_established(
        &mut self,
        now: Instant,
        address: IpAddr,
        negotiated: Negotiated,
        table: &mut impl RouteTable,
    ) {
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
        peer.since = now;
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
                    Some(now + Duration::from_secs(u64::from(gr.restart_time.max(1))));
            }
        }
        peer.negotiated = Some(negotiated);
        let group = self.config.neighbors.iter().find(|g| g.name == peer.group);
        if let Some(group) = group
            && group.bfd.enable
            && let Some(ifindex) = peer.ifindex
        {
            if peer.bfd.is_none() {
                peer.bfd = Some(BfdState::Down);
            }
            self.actions.push_back(Action::BfdAdd {
                address,
                ifindex,
                local: peer.local,
                settings: group.bfd,
            });
        }
        self.write_changes(changes, table);
        for afi in sweep {
            self.sweep(address, id, afi, table);
        }
    }

    fn on_routes(
        &mut self,
        now: Instant,
        address: IpAddr,
        batch: RouteBatch,
        table: &mut impl RouteTable,
    ) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        peer.updates += 1;
        peer.announced += (batch.announce.len() + batch.rejected.len()) as u64;
        for (_, why) in &batch.rejected {
            *peer.rejected.entry(*why).or_default() += 1;
        }
        let id = peer.id;
        let rule = KernelRule {
            adopted: &self.adopted,
            unreachable: &self.unreachable,
        };
        for prefix in batch.withdraw {
            if let Some(change) = self.rib.withdraw(id, prefix) {
                rule.write(table, change);
            }
        }
        let mut last_gateway = None;
        for (prefix, path) in batch.announce {
            // An UPDATE's routes mostly share one next hop: hash it once.
            if last_gateway != Some(path.next_hop.gateway) {
                last_gateway = Some(path.next_hop.gateway);
                peer.gateways.insert(path.next_hop.gateway);
            }
            if let Some(change) = self.rib.announce(id, prefix, path) {
                rule.write(table, change);
            }
        }
        self.enforce_max_prefixes(now, address);
    }

    /// A session past its group's `max_prefixes` is closed with Cease 1 and its node
    /// refused for `max_prefixes_hold_s`, so it cannot flap the table.
    fn enforce_max_prefixes(&mut self, now: Instant, address: IpAddr) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(group) = self.config.neighbors.iter().find(|g| g.name == peer.group) else {
            return;
        };
        let Some(max) = group.max_prefixes else {
            return;
        };
        if self.rib.peer_counts(peer.id).received <= max as usize {
            return;
        }
        let Some(conn) = peer.open() else {
            return;
        };
        let hold = Duration::from_secs(u64::from(group.max_prefixes_hold_s));
        tracing::warn!(
            peer = %peer.name, max_prefixes = max, hold_s = hold.as_secs(),
            "maximum number of prefixes reached: closing with Cease 1, refusing its connections for hold_s"
        );
        peer.closing = true;
        self.held_down.insert(address, now + hold);
        self.actions.push_back(Action::Close {
            conn,
            cease: Cease::MaximumPrefixesReached,
            keep_routes: false,
        });
    }

    fn on_end_of_rib(&mut self, address: IpAddr, family: Family, table: &mut impl RouteTable) {
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
            self.sweep(address, id, afi, table);
            self.drop_adopted_after_end_of_rib(afi, table);
        }
    }

    fn on_down(
        &mut self,
        now: Instant,
        address: IpAddr,
        closed: Closed,
        table: &mut impl RouteTable,
    ) {
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
        peer.closing = false;
        peer.since = now;
        let restart_time = peer
            .negotiated
            .take()
            .and_then(|n| n.graceful_restart)
            .map(|gr| gr.restart_time);
        let id = peer.id;
        match (closed.keep_routes, restart_time) {
            (true, Some(t)) if t > 0 => self.begin_stale(now, address, t),
            _ => {
                // Stale routes of an earlier restart go too: nothing is kept.
                peer.stale_until = None;
                peer.stale_families.clear();
                self.remove_peer_routes(id, table);
                self.forget_if_idle(address, table);
            }
        }
    }

    /// The peer's connection is gone but its routes stay, stale, for `restart_time`.
    fn begin_stale(&mut self, now: Instant, address: IpAddr, restart_time: u16) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        self.rib.mark_stale(peer.id);
        peer.stale_until = Some(now + Duration::from_secs(u64::from(restart_time)));
        peer.stale_families = vec![Afi::Ipv4, Afi::Ipv6];
        tracing::info!(peer = %peer.name, restart_time, "graceful restart: keeping its routes as stale");
    }

    /// Removes what is still stale of `afi` for a peer.
    fn sweep(&mut self, address: IpAddr, id: PeerId, afi: Afi, table: &mut impl RouteTable) {
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
        let mut removed = 0;
        let rule = KernelRule {
            adopted: &self.adopted,
            unreachable: &self.unreachable,
        };
        self.rib.sweep_stale(id, Some(afi), |change| {
            removed += 1;
            rule.write(table, change);
        });
        if removed > 0 {
            tracing::info!(peer = %peer.name, afi = ?afi, removed, "stale routes removed");
        }
    }

    /// A session is gone without graceful restart: its routes leave the RIB and the table.
    fn remove_peer_routes(&mut self, id: PeerId, table: &mut impl RouteTable) {
        let rule = KernelRule {
            adopted: &self.adopted,
            unreachable: &self.unreachable,
        };
        self.rib.remove_peer(id, |change| rule.write(table, change));
    }

    /// A peer without a connection or kept routes is forgotten (with its liveness watch).
    fn forget_if_idle(&mut self, address: IpAddr, table: &mut impl RouteTable) {
        if self
            .peers
            .get(&address)
            .is_some_and(|p| p.conn.is_none() && p.stale_until.is_none())
            && let Some(peer) = self.peers.remove(&address)
        {
            self.forgotten(&peer, table);
        }
    }

    /// What goes with a peer that leaves the table: its BFD session, its liveness watch.
    fn forgotten(&mut self, peer: &Peer, table: &mut impl RouteTable) {
        if peer.bfd.is_some()
            && let Some(ifindex) = peer.ifindex
        {
            self.actions.push_back(Action::BfdRemove {
                address: peer.address,
                ifindex,
            });
        }
        if peer
            .watch
            .as_ref()
            .is_some_and(|w| w.state == Liveness::Unreachable)
        {
            self.refresh_unreachable(table);
        }
    }

    /// Closes a session that has not finished OPEN, to give its slot to a new connection.
    fn evict(&mut self, now: Instant, address: IpAddr, table: &mut impl RouteTable) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(conn) = peer.conn.take() else {
            return;
        };
        if !std::mem::take(&mut peer.closing) {
            self.actions.push_back(Action::Close {
                conn,
                cease: Cease::OutOfResources,
                keep_routes: true,
            });
        }
        self.conns.remove(&conn);
        self.refused(
            now,
            address,
            "closed a session that had not finished OPEN to make room (limits.max_half_open)",
        );
        self.forget_if_idle(address, table);
    }

    fn refuse(&mut self, now: Instant, address: IpAddr, why: Refused) -> Refused {
        self.refused(now, address, &why.to_string());
        why
    }

    /// Refusals are logged at most every 10 s: a flood would drown the log.
    fn log_refusal(&mut self, now: Instant, address: IpAddr, why: &str) {
        if self
            .refused_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
        {
            tracing::warn!(%address, refused_total = self.counters.refused, "{why}");
            self.refused_log = Some(now);
        }
    }

    fn free_name(&self, prefix: &str) -> String {
        (1..)
            .map(|n| format!("{prefix}{n}"))
            .find(|name| !self.peers.values().any(|p| &p.name == name))
            .expect("some number is free")
    }

    /// Where a peer sits: its bridge (by prefix) or, for a link-local session, the
    /// interface the connection arrived on.
    fn peer_link(&self, address: IpAddr, scope: Option<u32>) -> PeerLink {
        let bridge = self.config.bridge_of(address).or_else(|| {
            let ifindex = scope?;
            self.bridges
                .iter()
                .find(|(_, i)| **i == ifindex)
                .map(|(name, _)| name.as_str())
        });
        let ifindex = scope.or_else(|| self.bridges.get(bridge?).copied());
        let on_link = bridge
            .and_then(|b| self.config.bridges.get(b))
            .map(|b| b.prefixes.clone())
            .unwrap_or_default();
        PeerLink {
            address,
            ifindex,
            on_link,
        }
    }

    // ---- time --------------------------------------------------------------------------

    fn on_timeout(&mut self, now: Instant, table: &mut impl RouteTable) {
        self.probe(now, table);
        let expired: Vec<(IpAddr, PeerId)> = self
            .peers
            .values()
            .filter(|p| p.stale_until.is_some_and(|t| t <= now))
            .map(|p| (p.address, p.id))
            .collect();
        for (address, id) in expired {
            tracing::info!(%address, "graceful restart time over: removing stale routes");
            for afi in [Afi::Ipv4, Afi::Ipv6] {
                self.sweep(address, id, afi, table);
            }
            if let Some(peer) = self.peers.get_mut(&address) {
                peer.stale_until = None;
                peer.stale_families.clear();
            }
            self.forget_if_idle(address, table);
        }
        if self.resync_retry.is_some_and(|t| t <= now) {
            self.resync_retry = None;
            self.want_resync();
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
            self.refresh(leftover, table);
        }
    }

    // ---- adoption ----------------------------------------------------------------------

    /// The adopted next hops of every peer that has sent End-of-RIB for `afi` go: what
    /// the peer still wants, it has announced again by now.
    fn drop_adopted_after_end_of_rib(&mut self, afi: Afi, table: &mut impl RouteTable) {
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
        self.refresh(changed, table);
        if self.adopted.is_empty() && self.adopt_deadline.take().is_some() {
            tracing::info!("every adopted route is confirmed or gone");
        }
    }

    /// Writes what the kernel must now hold for `prefixes`.
    fn refresh(&mut self, prefixes: Vec<IpNet>, table: &mut impl RouteTable) {
        for prefix in prefixes {
            table.write(route_op(prefix, self.kernel_route(&prefix)));
        }
    }

    fn write_changes(&self, changes: Vec<FibChange>, table: &mut impl RouteTable) {
        for change in changes {
            self.rule().write(table, change);
        }
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
