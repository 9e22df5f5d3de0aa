//! Liveness and BFD in the core: whether each node still answers on its bridge (its own
//! probes, its bridge port) and what its BFD session says, and what that does to the
//! kernel table: an unreachable node's next hops leave every route; BFD Down takes its
//! routes and session down at once.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::{Action, Core, RouteTable, route_op};
use crate::bgp::wire::Cease;
use crate::rib::NextHop;

/// Whether the host reaches a node on its bridge, by its own probes (`neighbors[].liveness`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    /// It answered the last probe.
    Reachable,
    /// It missed a probe or more, fewer than the multiplier.
    Probing,
    /// It missed `multiplier` probes in a row, or its bridge port went: its routes are out.
    Unreachable,
}

impl Liveness {
    pub const ALL: [Liveness; 3] = [
        Liveness::Reachable,
        Liveness::Probing,
        Liveness::Unreachable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Liveness::Reachable => "reachable",
            Liveness::Probing => "probing",
            Liveness::Unreachable => "unreachable",
        }
    }
}

/// A node's BFD session as the core sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BfdState {
    /// Not (or no longer) Up.
    Down,
    Up,
    /// The node took it down on purpose: not a forwarding failure (RFC 5882 3.2).
    AdminDown,
}

impl BfdState {
    pub const ALL: [BfdState; 3] = [BfdState::Down, BfdState::Up, BfdState::AdminDown];

    pub fn name(self) -> &'static str {
        match self {
            BfdState::Down => "down",
            BfdState::Up => "up",
            BfdState::AdminDown => "admin_down",
        }
    }
}

/// One node's liveness probing.
#[derive(Debug, Clone)]
pub struct Watch {
    pub state: Liveness,
    /// The interface probes go out on (its bridge).
    pub(super) ifindex: u32,
    pub(super) interval: Duration,
    pub(super) multiplier: u8,
    pub(super) next_probe: Instant,
    /// An answer came since the last probe.
    pub(super) answered: bool,
    pub(super) missed: u8,
    /// The bridge port it answered through last.
    pub port: Option<u32>,
    /// Changes of `state`.
    pub transitions: u64,
}

impl Watch {
    pub(super) fn new(now: Instant, ifindex: u32, settings: &crate::config::Liveness) -> Watch {
        Watch {
            state: Liveness::Reachable,
            ifindex,
            interval: settings.interval(),
            multiplier: settings.multiplier,
            // The first probe at once: it finds the node's bridge port.
            next_probe: now,
            answered: true,
            missed: 0,
            port: None,
            transitions: 0,
        }
    }

    fn set(&mut self, state: Liveness) -> bool {
        if self.state == state {
            return false;
        }
        self.state = state;
        self.transitions += 1;
        true
    }
}

impl Core {
    /// Every node whose probe is due: a probe not answered since the last one counts as
    /// missed; `multiplier` in a row make it unreachable. Then the next probe.
    pub(super) fn probe(&mut self, now: Instant, table: &mut impl RouteTable) {
        let mut changed = false;
        for peer in self.peers.values_mut() {
            let Some(watch) = &mut peer.watch else {
                continue;
            };
            if watch.next_probe > now {
                continue;
            }
            if std::mem::replace(&mut watch.answered, false) {
                watch.missed = 0;
            } else {
                watch.missed = watch.missed.saturating_add(1);
                let state = if watch.missed >= watch.multiplier {
                    Liveness::Unreachable
                } else {
                    Liveness::Probing
                };
                if watch.set(state) && state == Liveness::Unreachable {
                    tracing::warn!(
                        peer = %peer.name, address = %peer.address, missed = watch.missed,
                        "the node does not answer on its bridge: its routes leave the table"
                    );
                    changed = true;
                }
            }
            self.actions.push_back(Action::Probe {
                address: peer.address,
                ifindex: watch.ifindex,
            });
            watch.next_probe = now + watch.interval;
        }
        if changed {
            self.refresh_unreachable(table);
        }
    }

    pub(super) fn on_answer(
        &mut self,
        address: IpAddr,
        port: Option<u32>,
        table: &mut impl RouteTable,
    ) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(watch) = &mut peer.watch else {
            return;
        };
        watch.answered = true;
        watch.missed = 0;
        if port.is_some() {
            watch.port = port;
        }
        let was = watch.state;
        if watch.set(Liveness::Reachable) && was == Liveness::Unreachable {
            tracing::info!(peer = %peer.name, %address, "the node answers again: its routes return");
            self.refresh_unreachable(table);
        }
    }

    pub(super) fn on_port_down(&mut self, ifindex: u32, table: &mut impl RouteTable) {
        let mut changed = false;
        for peer in self.peers.values_mut() {
            if let Some(watch) = &mut peer.watch
                && watch.port == Some(ifindex)
            {
                watch.missed = watch.multiplier;
                watch.answered = false;
                if watch.set(Liveness::Unreachable) {
                    tracing::warn!(
                        peer = %peer.name, address = %peer.address, port = ifindex,
                        "the node's bridge port is gone: its routes leave the table"
                    );
                    changed = true;
                }
            }
        }
        if changed {
            self.refresh_unreachable(table);
        }
    }

    /// BFD Down from a failure: the node's forwarding plane is gone, so its routes leave at
    /// once, graceful restart or not (RFC 5882 4.3.1), and its session is closed with Cease
    /// 10. AdminDown from the node is not a failure (RFC 5882 3.2): nothing changes.
    pub(super) fn on_bfd(
        &mut self,
        now: Instant,
        address: IpAddr,
        state: BfdState,
        table: &mut impl RouteTable,
    ) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(was) = peer.bfd else {
            return;
        };
        if was != state {
            peer.bfd = Some(state);
            peer.bfd_transitions += 1;
        }
        if state != BfdState::Down || was != BfdState::Up {
            return;
        }
        tracing::warn!(
            peer = %peer.name, %address,
            "BFD down: the node's routes leave the table and its session closes with Cease 10"
        );
        let id = peer.id;
        peer.stale_until = None;
        peer.stale_families.clear();
        if let Some(conn) = peer.open() {
            peer.closing = true;
            self.actions.push_back(Action::Close {
                conn,
                cease: Cease::BfdDown,
                keep_routes: false,
            });
        }
        peer.since = now;
        self.remove_peer_routes(id, table);
        self.forget_if_idle(address, table);
    }

    /// Works out the unreachable gateways again and rewrites every route that has one of
    /// those that changed.
    pub(super) fn refresh_unreachable(&mut self, table: &mut impl RouteTable) {
        let now: HashSet<IpAddr> = self
            .peers
            .values()
            .filter(|p| {
                p.watch
                    .as_ref()
                    .is_some_and(|w| w.state == Liveness::Unreachable)
            })
            .flat_map(|p| p.gateways.iter().copied().chain([p.address]))
            .collect();
        let changed: HashSet<IpAddr> = now
            .symmetric_difference(&self.unreachable)
            .copied()
            .collect();
        if changed.is_empty() {
            return;
        }
        self.unreachable = now;
        let touched = |hops: &[NextHop]| hops.iter().any(|h| changed.contains(&h.gateway));
        let prefixes: BTreeSet<IpNet> = self
            .rib
            .installed()
            .filter(|(_, hops)| touched(hops))
            .map(|(prefix, _)| prefix)
            .chain(
                self.adopted
                    .iter()
                    .filter(|(_, hops)| touched(hops))
                    .map(|(prefix, _)| *prefix),
            )
            .collect();
        for prefix in prefixes {
            table.write(route_op(prefix, self.kernel_route(&prefix)));
        }
    }
}
