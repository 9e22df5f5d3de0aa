//! What the daemon tells: the answers to `show` over the control socket and the snapshot
//! behind the Prometheus metrics, read off the core (and the FIB's and RA's counters).

use std::time::Instant;

use serde_json::{Value, json};

use super::shell::Shell;
use crate::control;
use crate::metrics;

impl Shell {
    pub(super) fn answer(&self, request: &control::Request) -> Value {
        let now = Instant::now();
        match request {
            control::Request::Peers => Value::Array(
                self.core
                    .peers()
                    .into_iter()
                    .map(|p| {
                        let counts = self.core.rib().peer_counts(p.id);
                        let n = p.negotiated.as_ref();
                        json!({
                            "name": p.name,
                            "group": p.group,
                            "address": p.address.to_string(),
                            "asn": n.map_or(p.asn, |n| n.peer_as),
                            "router_id": n.map(|n| n.peer_router_id.to_string()),
                            "state": p.state().name(),
                            "uptime_s": now.saturating_duration_since(p.since).as_secs(),
                            "received": counts.received,
                            "installed": counts.installed,
                            "rejected": p.rejected.iter().map(|(k, v)| (k.name().to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                            "updates": p.updates,
                            "hold_time": n.map(|n| n.hold_time),
                            "families": n.map(|n| n.families.iter().map(|f| format!("{}/{}", f.afi, f.safi)).collect::<Vec<_>>()),
                            "extended_next_hop": n.map(|n| n.extended_next_hop),
                            "graceful_restart": n.map(|n| n.graceful_restart.is_some()),
                            "stale": p.stale_until.is_some(),
                        })
                    })
                    .collect(),
            ),
            control::Request::Routes => Value::Array(
                self.core
                    .kernel_routes()
                    .into_iter()
                    .map(|(prefix, (hops, adopted))| {
                        json!({
                            "prefix": prefix.to_string(),
                            "nexthops": hops.iter().map(|h| json!({
                                "gateway": h.gateway.to_string(),
                                "interface": h.ifindex.and_then(|i| nix::net::if_::if_indextoname(i).ok()).map(|n| n.to_string_lossy().into_owned()),
                                "ifindex": h.ifindex,
                            })).collect::<Vec<_>>(),
                            "adopted": adopted,
                            "table": self.core.config().kernel.table,
                        })
                    })
                    .collect(),
            ),
            control::Request::Bridges => {
                let ra_status = self.ra.snapshot();
                Value::Array(
                    self.core
                        .config()
                        .bridges
                        .iter()
                        .map(|(name, b)| {
                            json!({
                                "name": name,
                                "ifindex": self.core.bridges().get(name),
                                "prefixes": b.prefixes.iter().map(ToString::to_string).collect::<Vec<_>>(),
                                "ra": ra_status.iter().find(|s| s.ifname == *name),
                            })
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
