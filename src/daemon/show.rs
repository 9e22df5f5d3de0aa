//! What the daemon tells: the answers to `show` over the control socket and the snapshot
//! behind the Prometheus metrics, read off the core (and the FIB's and RA's counters).

use std::time::Instant;

use super::shell::Shell;
use crate::control;
use crate::metrics;

impl Shell {
    pub(super) fn answer(&self, request: &control::Request) -> control::Answer {
        let now = Instant::now();
        match request {
            control::Request::Peers => control::Answer::Peers(
                self.core
                    .peers()
                    .into_iter()
                    .map(|p| {
                        let counts = self.core.rib().peer_counts(p.id);
                        let n = p.negotiated.as_ref();
                        control::PeerRow {
                            name: p.name.clone(),
                            group: p.group.clone(),
                            address: p.address,
                            asn: n.map_or(p.asn, |n| n.peer_as),
                            router_id: n.map(|n| n.peer_router_id),
                            state: p.state(),
                            uptime_s: now.saturating_duration_since(p.since).as_secs(),
                            received: counts.received,
                            installed: counts.installed,
                            rejected: p
                                .rejected
                                .iter()
                                .map(|(why, n)| (why.name().to_string(), *n))
                                .collect(),
                            updates: p.updates,
                            hold_time: n.map(|n| n.hold_time),
                            families: n.map(|n| {
                                n.families
                                    .iter()
                                    .map(|f| format!("{}/{}", f.afi, f.safi))
                                    .collect()
                            }),
                            extended_next_hop: n.map(|n| n.extended_next_hop),
                            graceful_restart: n.map(|n| n.graceful_restart.is_some()),
                            stale: p.stale_until.is_some(),
                            liveness: p.watch.as_ref().map(|w| w.state),
                            port: p
                                .watch
                                .as_ref()
                                .and_then(|w| w.port)
                                .and_then(interface_name),
                            bfd: p.bfd,
                        }
                    })
                    .collect(),
            ),
            control::Request::Routes => control::Answer::Routes(
                self.core
                    .kernel_routes()
                    .into_iter()
                    .map(|(prefix, (hops, adopted))| control::RouteRow {
                        prefix,
                        nexthops: hops
                            .iter()
                            .map(|h| control::HopRow {
                                gateway: h.gateway,
                                interface: h.ifindex.and_then(interface_name),
                                ifindex: h.ifindex,
                            })
                            .collect(),
                        adopted,
                        table: self.core.config().kernel.table,
                    })
                    .collect(),
            ),
            control::Request::Bridges => {
                let ra = self.ra.snapshot();
                control::Answer::Bridges(
                    self.core
                        .config()
                        .bridges
                        .iter()
                        .map(|(name, b)| control::BridgeRow {
                            name: name.clone(),
                            ifindex: self.core.bridges().get(name).copied(),
                            prefixes: b.prefixes.clone(),
                            ra: ra.iter().find(|s| s.ifname == *name).cloned(),
                        })
                        .collect(),
                )
            }
        }
    }

    pub(super) fn metrics_snapshot(&self) -> metrics::Snapshot {
        let start = std::time::SystemTime::now() - self.started.elapsed();
        let counters = self.core.counters();
        metrics::Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            start_time_s: start
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            sessions: self
                .core
                .peers()
                .into_iter()
                .map(|p| {
                    let counts = self.core.rib().peer_counts(p.id);
                    metrics::Session {
                        name: p.name.clone(),
                        address: p.address.to_string(),
                        state: p.state(),
                        liveness: p.watch.as_ref().map(|w| w.state),
                        liveness_transitions: p.watch.as_ref().map_or(0, |w| w.transitions),
                        bfd: p.bfd,
                        bfd_transitions: p.bfd_transitions,
                        prefixes_received: p.announced,
                        prefixes_accepted: counts.received,
                        prefixes_installed: counts.installed,
                        rejected: p.rejected.iter().map(|(r, n)| (*r, *n)).collect(),
                        updates: p.updates,
                    }
                })
                .collect(),
            connections_refused: counters.refused,
            routes: self.core.kernel_routes().len(),
            routes_adopted: self.core.adopted().len(),
            fib_operations: self.fib.ops,
            fib_errors: self.fib.errors,
            fib_repairs: counters.repairs,
            fib_resyncs: counters.resyncs,
            bridges: self.ra.snapshot(),
            reloads_applied: counters.reloads_applied,
            reloads_refused: counters.reloads_refused,
            last_reload_ok: self.core.last_reload_ok(),
        }
    }
}

/// The name of an interface, for people reading `show routes`.
fn interface_name(ifindex: u32) -> Option<String> {
    let name = nix::net::if_::if_indextoname(ifindex).ok()?;
    Some(name.to_string_lossy().into_owned())
}
