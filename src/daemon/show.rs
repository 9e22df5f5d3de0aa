//! What the daemon tells: the answers to `show` over the control socket and the snapshot
//! behind the Prometheus metrics, built from the event loop's state.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde_json::{Value, json};

use super::{Daemon, Peer};
use crate::control;
use crate::metrics;
use crate::rib::NextHop;

impl Daemon {
    pub(super) fn answer(&self, request: &control::Request) -> Value {
        match request {
            control::Request::Peers => Value::Array(
                self.sorted_peers()
                    .into_iter()
                    .map(|p| {
                        let counts = self.rib.peer_counts(p.id);
                        let n = p.negotiated.as_ref();
                        json!({
                            "name": p.name,
                            "group": p.group,
                            "address": p.address.to_string(),
                            "asn": n.map_or(p.asn, |n| n.peer_as),
                            "router_id": n.map(|n| n.peer_router_id.to_string()),
                            "state": p.state(),
                            "uptime_s": p.since.elapsed().as_secs(),
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
                self.sorted_routes()
                    .into_iter()
                    .map(|(prefix, hops, adopted)| {
                        let hops = &hops;
                        json!({
                            "prefix": prefix.to_string(),
                            "nexthops": hops.iter().map(|h| json!({
                                "gateway": h.gateway.to_string(),
                                "interface": h.ifindex.and_then(|i| nix::net::if_::if_indextoname(i).ok()).map(|n| n.to_string_lossy().into_owned()),
                                "ifindex": h.ifindex,
                            })).collect::<Vec<_>>(),
                            "adopted": adopted,
                            "table": self.config.kernel.table,
                        })
                    })
                    .collect(),
            ),
            control::Request::Bridges => {
                let ra_status = self.ra.snapshot();
                Value::Array(
                self.config
                    .bridges
                    .iter()
                    .map(|(name, b)| {
                        json!({
                            "name": name,
                            "ifindex": nix::net::if_::if_nametoindex(name.as_str()).ok(),
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
        metrics::Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            start_time_s: start
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            sessions: self
                .sorted_peers()
                .into_iter()
                .map(|p| {
                    let counts = self.rib.peer_counts(p.id);
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
            connections_refused: self.refused,
            routes: self.ours().len(),
            routes_adopted: self.adopted.len(),
            fib_operations: self.fib.ops,
            fib_errors: self.fib.errors,
            fib_repairs: self.repairs,
            fib_resyncs: self.resyncs,
            bridges: self.ra.snapshot(),
            reloads_applied: self.reloads.0,
            reloads_refused: self.reloads.1,
            last_reload_ok: self.last_reload_ok,
        }
    }

    /// What we want in the kernel, IPv4 first, by prefix; routes that still hold next hops
    /// adopted from a previous run flagged.
    fn sorted_routes(&self) -> Vec<(IpNet, Vec<NextHop>, bool)> {
        let mut routes: BTreeMap<IpNet, Vec<NextHop>> = self
            .rib
            .installed()
            .map(|(p, h)| (p, self.adopted.desired(&p, h).to_vec()))
            .collect();
        for (prefix, hops) in self.adopted.iter() {
            routes.entry(*prefix).or_insert_with(|| hops.to_vec());
        }
        routes
            .into_iter()
            .map(|(p, h)| (p, h, !self.adopted.get(&p).is_empty()))
            .collect()
    }

    fn sorted_peers(&self) -> Vec<&Peer> {
        let mut peers: Vec<&Peer> = self.peers.values().collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        peers
    }
}
