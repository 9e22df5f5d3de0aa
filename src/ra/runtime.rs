//! The tokio side of RA: one task per bridge with RA enabled, each driving its pure
//! `Scheduler` with a raw socket, the link monitor's state and the configuration; a
//! supervisor that starts, reconfigures and stops them; and the status behind
//! `show bridges`. All protocol decisions are in `scheduler` and `advert`.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ipnet::Ipv6Net;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::advert::{self, LinkFacts, Renumbering};
use super::config::RaConfig;
use super::monitor::{self, LinkState, Links};
use super::packet::{ICMPV6_ROUTER_ADVERTISEMENT, ICMPV6_ROUTER_SOLICITATION};
use super::packet::{PrefixInformation, RouterSolicitation, validate_received_ra};
use super::scheduler::{Destination, MAX_FINAL_RTR_ADVERTISEMENTS, Scheduler, Transmit};
use super::sender::{self, ALL_NODES, RaSocket};

/// One bridge as the configuration gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Bridge {
    pub ifname: String,
    /// The bridge's IPv6 prefixes (`bridges.<ifname>.prefixes`, IPv4 left out).
    pub prefixes: Vec<Ipv6Net>,
    pub ra: RaConfig,
}

impl Bridge {
    /// The bridge `ifname` as the validated config has it: its prefixes (IPv4 ones are
    /// left out) and its RA settings.
    pub fn from_config(ifname: &str, prefixes: &[ipnet::IpNet], ra: &super::RaConfig) -> Bridge {
        Bridge {
            ifname: ifname.to_string(),
            prefixes: prefixes
                .iter()
                .filter_map(|p| match p {
                    ipnet::IpNet::V6(v6) => Some(v6.trunc()),
                    ipnet::IpNet::V4(_) => None,
                })
                .collect(),
            ra: ra.clone(),
        }
    }

    fn enabled(&self) -> bool {
        self.ra.enabled(!self.prefixes.is_empty())
    }
}

/// How advertising stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// The daemon stops: one final RA (router lifetime 0) per bridge, so guests drop the
    /// default route through us at once.
    Final,
    /// The daemon restarts: nothing is sent, guests keep their default route until the new
    /// process advertises again.
    Restart,
}

/// Where a bridge's RA stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RaState {
    /// Waiting for the bridge to exist, be up, have carrier and a link-local address.
    Waiting,
    Advertising,
    /// RA is off for this bridge.
    Disabled,
}

impl std::fmt::Display for RaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RaState::Waiting => "waiting",
            RaState::Advertising => "advertising",
            RaState::Disabled => "disabled",
        })
    }
}

/// A bridge's RA status, for `show bridges --json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BridgeStatus {
    pub ifname: String,
    pub state: RaState,
    pub ifindex: Option<u32>,
    /// The source address of our RAs.
    pub link_local: Option<Ipv6Addr>,
    /// Prefixes in the Prefix Information options (deprecated ones included).
    pub prefixes: Vec<Ipv6Net>,
    /// Prefixes being deprecated after their removal from the configuration.
    pub deprecated: Vec<Ipv6Net>,
    pub ras_sent: u64,
    pub rs_received: u64,
    /// Solicitations dropped as invalid (hop limit, code, options).
    pub rs_invalid: u64,
    /// RAs received from other routers on the bridge.
    pub ras_received: u64,
    /// Of those, how many disagreed with ours (RFC 4861 6.2.7; logged, never acted on).
    pub ras_inconsistent: u64,
    /// Seconds since the last RA we sent.
    pub last_ra_s_ago: Option<f64>,
    /// Seconds until the next RA is due.
    pub next_ra_in_s: Option<f64>,
}

#[derive(Debug, Clone)]
struct Status {
    state: RaState,
    ifindex: Option<u32>,
    link_local: Option<Ipv6Addr>,
    prefixes: Vec<Ipv6Net>,
    deprecated: Vec<Ipv6Net>,
    ras_sent: u64,
    rs_received: u64,
    rs_invalid: u64,
    ras_received: u64,
    ras_inconsistent: u64,
    last_ra: Option<SystemTime>,
    next_ra: Option<SystemTime>,
}

impl Status {
    fn new(state: RaState) -> Self {
        Status {
            state,
            ifindex: None,
            link_local: None,
            prefixes: Vec::new(),
            deprecated: Vec::new(),
            ras_sent: 0,
            rs_received: 0,
            rs_invalid: 0,
            ras_received: 0,
            ras_inconsistent: 0,
            last_ra: None,
            next_ra: None,
        }
    }
}

type StatusTable = Arc<Mutex<BTreeMap<String, Status>>>;

enum Command {
    Reload(Vec<Bridge>),
    Stop(StopMode, oneshot::Sender<()>),
}

/// The running RA service.
#[derive(Debug)]
pub struct RaHandle {
    commands: mpsc::UnboundedSender<Command>,
    status: StatusTable,
    supervisor: JoinHandle<()>,
}

/// Starts advertising on every bridge with RA enabled; bridges that are missing, down or
/// without carrier are waited for. Must be called inside a tokio runtime.
pub fn spawn(bridges: Vec<Bridge>) -> RaHandle {
    let (commands, rx) = mpsc::unbounded_channel();
    let status = StatusTable::default();
    // The status is there from the start, before the supervisor first runs.
    status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(bridges.iter().map(|b| {
            let state = if b.enabled() {
                RaState::Waiting
            } else {
                RaState::Disabled
            };
            (b.ifname.clone(), Status::new(state))
        }));
    let supervisor = tokio::spawn(supervise(bridges, rx, status.clone()));
    RaHandle {
        commands,
        status,
        supervisor,
    }
}

impl RaHandle {
    /// Applies a new configuration: new bridges start, removed or disabled ones send final
    /// RAs and stop, changed ones advertise the change (removed prefixes deprecated).
    pub fn reload(&self, bridges: Vec<Bridge>) {
        // The supervisor only ends after `stop`, which consumes the handle.
        let _ = self.commands.send(Command::Reload(bridges));
    }

    /// Stops every bridge as `mode` says and waits until it is done.
    pub async fn stop(self, mode: StopMode) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Stop(mode, done)).is_ok() {
            let _ = wait.await;
        }
        let _ = self.supervisor.await;
    }

    /// Every configured bridge's RA status, by interface name.
    pub fn snapshot(&self) -> Vec<BridgeStatus> {
        let now = SystemTime::now();
        let table = self.status.lock().unwrap_or_else(|e| e.into_inner());
        table
            .iter()
            .map(|(ifname, s)| BridgeStatus {
                ifname: ifname.clone(),
                state: s.state,
                ifindex: s.ifindex,
                link_local: s.link_local,
                prefixes: s.prefixes.clone(),
                deprecated: s.deprecated.clone(),
                ras_sent: s.ras_sent,
                rs_received: s.rs_received,
                rs_invalid: s.rs_invalid,
                ras_received: s.ras_received,
                ras_inconsistent: s.ras_inconsistent,
                last_ra_s_ago: s
                    .last_ra
                    .map(|t| now.duration_since(t).unwrap_or_default().as_secs_f64()),
                next_ra_in_s: s
                    .next_ra
                    .map(|t| t.duration_since(now).unwrap_or_default().as_secs_f64()),
            })
            .collect()
    }
}

/// Messages from the supervisor to a bridge task.
enum TaskCommand {
    Stop { finals: u32 },
}

struct Task {
    config: watch::Sender<Bridge>,
    commands: mpsc::UnboundedSender<TaskCommand>,
    join: JoinHandle<()>,
}

async fn supervise(
    bridges: Vec<Bridge>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    status: StatusTable,
) {
    let (links_tx, links) = watch::channel(Links::new());
    let monitor = tokio::spawn(async move {
        if let Err(e) = monitor::run(links_tx).await {
            tracing::error!("RA: netlink link monitor failed, bridges will not be seen: {e}");
        }
    });
    let mut tasks: BTreeMap<String, Task> = BTreeMap::new();
    // Tasks sending their final RAs after their bridge left the configuration.
    let mut retiring: BTreeMap<String, JoinHandle<()>> = BTreeMap::new();
    apply(bridges, &mut tasks, &mut retiring, &links, &status);
    while let Some(command) = commands.recv().await {
        match command {
            Command::Reload(bridges) => apply(bridges, &mut tasks, &mut retiring, &links, &status),
            Command::Stop(mode, done) => {
                let finals = match mode {
                    StopMode::Final => 1,
                    StopMode::Restart => 0,
                };
                for task in tasks.values() {
                    let _ = task.commands.send(TaskCommand::Stop { finals });
                }
                for (_, task) in std::mem::take(&mut tasks) {
                    let _ = task.join.await;
                }
                for (_, join) in std::mem::take(&mut retiring) {
                    join.abort();
                }
                monitor.abort();
                let _ = done.send(());
                return;
            }
        }
    }
}

fn apply(
    bridges: Vec<Bridge>,
    tasks: &mut BTreeMap<String, Task>,
    retiring: &mut BTreeMap<String, JoinHandle<()>>,
    links: &watch::Receiver<Links>,
    status: &StatusTable,
) {
    retiring.retain(|_, join| !join.is_finished());
    let wanted: BTreeMap<String, Bridge> =
        bridges.into_iter().map(|b| (b.ifname.clone(), b)).collect();
    // Bridges gone from the configuration, or with RA now off: final RAs, then stop.
    let stopping: Vec<String> = tasks
        .keys()
        .filter(|name| !wanted.get(*name).is_some_and(Bridge::enabled))
        .cloned()
        .collect();
    for name in stopping {
        if let Some(task) = tasks.remove(&name) {
            tracing::info!("RA: stopping on {name}");
            let _ = task.commands.send(TaskCommand::Stop {
                finals: MAX_FINAL_RTR_ADVERTISEMENTS,
            });
            retiring.insert(name, task.join);
        }
    }
    let mut table = status.lock().unwrap_or_else(|e| e.into_inner());
    table.retain(|name, _| wanted.contains_key(name));
    for (name, bridge) in wanted {
        if !bridge.enabled() {
            table.insert(name, Status::new(RaState::Disabled));
            continue;
        }
        if let Some(task) = tasks.get(&name) {
            task.config.send_if_modified(|current| {
                let changed = *current != bridge;
                *current = bridge;
                changed
            });
            continue;
        }
        // A bridge back in the configuration before its final RAs went: they must not
        // follow the new task's RAs.
        if let Some(join) = retiring.remove(&name) {
            join.abort();
        }
        tracing::info!("RA: advertising on {name} when it is up");
        table.insert(name.clone(), Status::new(RaState::Waiting));
        let (config, config_rx) = watch::channel(bridge);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let join = tokio::spawn(run_bridge(
            config_rx,
            links.clone(),
            commands_rx,
            status.clone(),
        ));
        tasks.insert(
            name,
            Task {
                config,
                commands,
                join,
            },
        );
    }
}

/// The per-bridge state kept across link flaps.
struct BridgeRun {
    bridge: Bridge,
    pios: Vec<PrefixInformation>,
    renumbering: Renumbering,
    status: StatusTable,
    forwarding_warned: bool,
}

impl BridgeRun {
    fn update_status(&self, f: impl FnOnce(&mut Status)) {
        let mut table = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(status) = table.get_mut(&self.bridge.ifname) {
            f(status);
        }
    }

    /// The current and deprecated prefixes to advertise.
    fn prefixes(&mut self, now: Instant) -> Vec<PrefixInformation> {
        let mut all = self.pios.clone();
        all.extend(self.renumbering.options(now));
        all
    }

    fn reconfigure(&mut self, now: Instant, bridge: Bridge) {
        let pios = advert::prefix_information(&bridge.ra, &bridge.prefixes);
        self.renumbering.update(now, &self.pios, &pios);
        self.pios = pios;
        self.bridge = bridge;
    }
}

async fn run_bridge(
    mut config: watch::Receiver<Bridge>,
    mut links: watch::Receiver<Links>,
    mut commands: mpsc::UnboundedReceiver<TaskCommand>,
    status: StatusTable,
) {
    let bridge = config.borrow_and_update().clone();
    let mut run = BridgeRun {
        pios: advert::prefix_information(&bridge.ra, &bridge.prefixes),
        bridge,
        renumbering: Renumbering::default(),
        status,
        forwarding_warned: false,
    };
    loop {
        // Waiting: until the bridge can carry RAs.
        let link = loop {
            let current = links.borrow_and_update().get(&run.bridge.ifname).cloned();
            run.update_status(|s| {
                s.state = RaState::Waiting;
                s.ifindex = current.as_ref().map(|l| l.ifindex);
                s.link_local = current.as_ref().and_then(|l| l.link_local);
                s.next_ra = None;
            });
            if let Some(link) = current.filter(LinkState::usable) {
                break link;
            }
            tokio::select! {
                changed = links.changed() => if changed.is_err() {
                    // The monitor is gone; only a stop can come now.
                    let _ = commands.recv().await;
                    return;
                },
                changed = config.changed() => if changed.is_ok() {
                    let bridge = config.borrow_and_update().clone();
                    run.reconfigure(Instant::now(), bridge);
                },
                _ = commands.recv() => return,
            }
        };
        match advertise(&mut run, link, &mut config, &mut links, &mut commands).await {
            Outcome::Stopped => return,
            Outcome::LinkLost => {
                tracing::info!(
                    "RA: {} is gone, down or without carrier; waiting for it",
                    run.bridge.ifname
                );
            }
        }
    }
}

enum Outcome {
    Stopped,
    LinkLost,
}

async fn advertise(
    run: &mut BridgeRun,
    mut link: LinkState,
    config: &mut watch::Receiver<Bridge>,
    links: &mut watch::Receiver<Links>,
    commands: &mut mpsc::UnboundedReceiver<TaskCommand>,
) -> Outcome {
    let ifname = run.bridge.ifname.clone();
    let socket = match RaSocket::open(&ifname, link.ifindex) {
        Ok(socket) => socket,
        Err(e) => {
            tracing::warn!("RA: cannot open the ICMPv6 socket on {ifname}: {e}");
            return Outcome::LinkLost;
        }
    };
    tracing::info!(
        "RA: advertising on {ifname} from {}",
        link.link_local.unwrap_or(Ipv6Addr::UNSPECIFIED)
    );
    run.update_status(|s| s.state = RaState::Advertising);
    let mut scheduler = Scheduler::new(Instant::now(), run.bridge.ra.intervals());
    let mut buf = vec![0u8; 65536];
    loop {
        let now = Instant::now();
        while let Some(transmit) = scheduler.poll_transmit(now, jitter()) {
            send(run, &socket, &link, transmit).await;
        }
        if scheduler.is_finished() {
            return Outcome::Stopped;
        }
        let deadline = scheduler
            .poll_timeout()
            .unwrap_or(now + Duration::from_secs(3600));
        run.update_status(|s| {
            s.next_ra = Some(SystemTime::now() + deadline.saturating_duration_since(now))
        });
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.into()) => {}
            received = socket.recv(&mut buf) => match received {
                Ok(r) => handle_received(run, &mut scheduler, &link, &buf[..r.len], r.source, r.hop_limit),
                Err(e) => {
                    tracing::warn!("RA: receive on {ifname} failed: {e}");
                    return Outcome::LinkLost;
                }
            },
            changed = links.changed() => {
                let current = if changed.is_ok() { links.borrow_and_update().get(&ifname).cloned() } else { None };
                match current {
                    Some(new) if new.usable() && new.ifindex == link.ifindex => {
                        run.update_status(|s| s.link_local = new.link_local);
                        link = new;
                    }
                    _ => return Outcome::LinkLost,
                }
            },
            changed = config.changed() => if changed.is_ok() {
                let bridge = config.borrow_and_update().clone();
                let now = Instant::now();
                let link_facts = facts(&socket, &ifname);
                let prefixes = run.prefixes(now);
                let before = advert::build(&run.bridge.ra, &prefixes, &link_facts);
                run.reconfigure(now, bridge);
                scheduler.set_intervals(now, run.bridge.ra.intervals());
                let prefixes = run.prefixes(now);
                let after = advert::build(&run.bridge.ra, &prefixes, &link_facts);
                if before != after {
                    tracing::info!("RA: the advertisement on {ifname} changed; sending it now");
                    scheduler.restart_initial(now);
                }
            },
            command = commands.recv() => {
                let finals = match command {
                    Some(TaskCommand::Stop { finals }) => finals,
                    None => 0,
                };
                scheduler.stop(Instant::now(), finals);
            },
        }
    }
}

fn facts(socket: &RaSocket, ifname: &str) -> LinkFacts {
    LinkFacts {
        mac: socket.mac().ok(),
        forwarding: sender::forwarding(ifname),
    }
}

async fn send(run: &mut BridgeRun, socket: &RaSocket, link: &LinkState, transmit: Transmit) {
    let ifname = run.bridge.ifname.clone();
    let now = Instant::now();
    let facts = facts(socket, &ifname);
    if !facts.forwarding && !run.forwarding_warned && run.bridge.ra.router_lifetime() != 0 {
        tracing::warn!(
            "RA: IPv6 forwarding is off on {ifname}; advertising router lifetime 0 (not a default router) until it is on"
        );
    }
    run.forwarding_warned = !facts.forwarding;
    let prefixes = run.prefixes(now);
    let destination = match transmit {
        Transmit::Advertisement(Destination::Unicast(to)) => to,
        Transmit::Advertisement(Destination::AllNodes) | Transmit::Final => ALL_NODES,
    };
    let Some(source) = link.link_local else {
        return;
    };
    let mtu = socket.mtu().unwrap_or(1280);
    let mut sent = 0;
    for part in advert::burst(&run.bridge.ra, &prefixes, &facts, transmit, mtu) {
        match socket.send(&part.encode(), source, destination).await {
            Ok(()) => sent += 1,
            Err(e) => tracing::warn!("RA: sending to {destination} on {ifname} failed: {e}"),
        }
    }
    let advertised: Vec<Ipv6Net> = prefixes.iter().map(|p| p.prefix).collect();
    let deprecated: Vec<Ipv6Net> = prefixes
        .iter()
        .filter(|p| p.preferred_lifetime == 0)
        .map(|p| p.prefix)
        .collect();
    run.update_status(|s| {
        s.ras_sent += sent;
        if sent > 0 {
            s.last_ra = Some(SystemTime::now());
        }
        s.prefixes = advertised;
        s.deprecated = deprecated;
    });
}

fn handle_received(
    run: &mut BridgeRun,
    scheduler: &mut Scheduler,
    link: &LinkState,
    msg: &[u8],
    source: Ipv6Addr,
    hop_limit: u8,
) {
    let ifname = run.bridge.ifname.clone();
    match msg.first() {
        Some(&ICMPV6_ROUTER_SOLICITATION) => {
            match RouterSolicitation::decode(msg, source, hop_limit) {
                Ok(_) => {
                    run.update_status(|s| s.rs_received += 1);
                    scheduler.handle_solicitation(Instant::now(), source, jitter());
                }
                Err(e) => {
                    tracing::debug!(
                        "RA: dropped a router solicitation from {source} on {ifname}: {e}"
                    );
                    run.update_status(|s| s.rs_invalid += 1);
                }
            }
        }
        Some(&ICMPV6_ROUTER_ADVERTISEMENT) if Some(source) != link.link_local => {
            match validate_received_ra(msg, source, hop_limit) {
                Ok(theirs) => {
                    let prefixes = run.prefixes(Instant::now());
                    let ours = advert::build(
                        &run.bridge.ra,
                        &prefixes,
                        &LinkFacts {
                            mac: None,
                            forwarding: true,
                        },
                    );
                    let found = advert::inconsistencies(&ours, &theirs);
                    for what in &found {
                        tracing::warn!("RA: router {source} on {ifname} disagrees with us: {what}");
                    }
                    run.update_status(|s| {
                        s.ras_received += 1;
                        s.ras_inconsistent += u64::from(!found.is_empty());
                    });
                }
                Err(e) => tracing::debug!("RA: ignored an RA from {source} on {ifname}: {e}"),
            }
        }
        _ => {}
    }
}

/// A uniform draw from [0, 1) for the scheduler's RA jitter, which needs no more than that
/// (RFC 4861 6.2.4: "uniformly-distributed random value"): std's randomly keyed SipHash,
/// a new key each call, so no random number crate.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    let bits = RandomState::new().hash_one(());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::jitter;

    #[test]
    fn jitter_draws_differ_and_stay_in_the_unit_interval() {
        let draws: Vec<f64> = (0..1000).map(|_| jitter()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let low = draws.iter().filter(|d| **d < 0.5).count();
        // Not a statistical test: only that the draws are not stuck on one side.
        assert!((300..700).contains(&low), "{low} of 1000 below 0.5");
    }
}
