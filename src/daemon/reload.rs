//! SIGHUP: reading the config again and applying what changed without dropping what did
//! not. An unreadable or invalid file changes nothing; sessions whose terms changed are
//! closed with the right Cease, policy changes are applied in place (ROUTE-REFRESH), a
//! kernel table move fills the new table before emptying the old one, and listening
//! addresses start and stop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use super::{Daemon, monotonic_usec, ra_bridges, serve_metrics, start_listener};
use crate::bgp::listener;
use crate::bgp::peer::PeerCommand;
use crate::bgp::wire::Notification;
use crate::config::{Config, NeighborGroup};
use crate::fib::diff::FibOp;
use crate::fib::monitor;
use crate::fib::netlink::Fib;

impl Daemon {
    pub(super) async fn reload(&mut self) {
        let _ = sd_notify::notify(&[NotifyState::Reloading, monotonic_usec()]);
        let config = match Config::load(&self.path) {
            Ok(c) => c,
            Err(errors) => {
                tracing::error!(path = %self.path.display(), %errors, "reload refused: the config is invalid; nothing changed");
                self.reloads.1 += 1;
                self.last_reload_ok = false;
                let _ = sd_notify::notify(&[NotifyState::Ready]);
                return;
            }
        };
        let transport = match listener::Security::load(&config) {
            Ok(t) => t,
            Err(error) => {
                tracing::error!(%error, "reload refused: nothing changed");
                let _ = sd_notify::notify(&[NotifyState::Ready]);
                return;
            }
        };
        // Sessions whose neighbor group is gone or changed are closed.
        let groups: HashMap<&str, &NeighborGroup> = config
            .neighbors
            .iter()
            .map(|g| (g.name.as_str(), g))
            .collect();
        let mut forgotten = Vec::new();
        let mut held_down = Vec::new();
        for peer in self.peers.values() {
            let old = self.config.neighbors.iter().find(|g| g.name == peer.group);
            let subcode = match (old, groups.get(peer.group.as_str())) {
                (_, None) => Notification::CEASE_PEER_DECONFIGURED,
                (Some(old), Some(new)) if session_terms_differ(old, new) => {
                    Notification::CEASE_OTHER_CONFIGURATION_CHANGE
                }
                (Some(old), Some(new)) => {
                    // Policy only: the session stays.
                    let Some(commands) = &peer.commands else {
                        continue;
                    };
                    if old.import != new.import {
                        tracing::info!(peer = %peer.name, "import list changed: asking for a route refresh");
                        let _ = commands.send(PeerCommand::SetImport(new.import.clone()));
                    }
                    if new
                        .max_prefixes
                        .is_some_and(|max| self.rib.peer_counts(peer.id).received > max as usize)
                    {
                        tracing::warn!(
                            peer = %peer.name, hold_s = new.max_prefixes_hold_s,
                            "over its new max_prefixes: closing with Cease 1, refusing its connections for hold_s"
                        );
                        held_down.push((peer.address, new.max_prefixes_hold_s));
                        let _ = commands.send(PeerCommand::Close {
                            subcode: Notification::CEASE_MAXIMUM_PREFIXES_REACHED,
                            keep_routes: false,
                        });
                    }
                    continue;
                }
                _ => continue,
            };
            match &peer.commands {
                Some(commands) => {
                    tracing::info!(peer = %peer.name, subcode, "closing: its neighbor group changed");
                    let _ = commands.send(PeerCommand::Close {
                        subcode,
                        keep_routes: false,
                    });
                }
                // A graceful-restart peer away: its kept routes go now.
                None => forgotten.push((peer.address, peer.id)),
            }
        }
        for (address, hold_s) in held_down {
            let until = Instant::now() + Duration::from_secs(u64::from(hold_s));
            self.held_down.insert(address, until);
        }
        for (address, id) in forgotten {
            if let Some(peer) = self.peers.remove(&address) {
                tracing::info!(peer = %peer.name, "its neighbor group changed: its stale routes go");
            }
            self.remove_peer_routes(id);
        }
        if config.kernel.multipath != self.config.kernel.multipath {
            let changes = self.rib.set_multipath(config.kernel.multipath);
            self.pending_changes(changes);
        }
        let changes = self.rib.set_max_paths(usize::from(config.kernel.max_paths));
        self.pending_changes(changes);
        if config.kernel.table != self.config.kernel.table
            || config.kernel.protocol != self.config.kernel.protocol
        {
            match Fib::open(config.kernel.table, config.kernel.protocol) {
                Ok(mut new_fib) => {
                    // Routes left under the number in use until now, or an older default,
                    // in the new table: ours, moved to the new number in place.
                    new_fib.adopt_protocols(
                        &[
                            &config.kernel.adopt_protocols[..],
                            &[self.config.kernel.protocol],
                        ]
                        .concat(),
                    );
                    // Into the new table first, then out of the old one.
                    let mut old_fib = std::mem::replace(&mut self.fib, new_fib);
                    self.kernel_filter.send_replace(monitor::Filter {
                        protocol: config.kernel.protocol,
                        own_ports: self.fib.ports(),
                    });
                    self.resync().await;
                    for prefix in self.ours() {
                        let _ = old_fib.apply(FibOp::Delete { prefix });
                    }
                    let _ = old_fib.flush();
                    self.fib.ops += old_fib.ops;
                    self.fib.errors += old_fib.errors;
                }
                Err(error) => tracing::error!(%error, "cannot open the new kernel table"),
            }
        }
        self.ra.reload(ra_bridges(&config));
        if config.metrics != self.config.metrics {
            if let Some(server) = self.metrics_server.take() {
                server.abort();
            }
            self.metrics_server = serve_metrics(config.metrics, &self.metrics_tx);
        }
        self.reloads.0 += 1;
        self.last_reload_ok = true;
        self.admission.set_limits(config.limits);
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
            let keep = config.listen.contains(listen);
            if !keep {
                task.abort();
                tracing::info!(%listen, "no longer listening for BGP");
            }
            keep
        });
        for listen in &config.listen {
            if !self.listeners.iter().any(|(l, _)| l == listen) {
                let security = self.security.subscribe();
                let task = start_listener(listen, &security, &self.accepted_tx);
                self.listeners.push((listen.clone(), task));
            }
        }
        self.config = config;
        tracing::info!(path = %self.path.display(), "config reloaded");
        let _ = sd_notify::notify(&[NotifyState::Ready]);
    }
}

/// Whether a neighbor group changed in a way the running sessions cannot take without
/// reconnecting: who may peer, as which AS, with which key, or what goes into OPEN.
fn session_terms_differ(old: &NeighborGroup, new: &NeighborGroup) -> bool {
    // Named field by field so that a new key has to be placed on one side or the other.
    let NeighborGroup {
        name: _,
        range,
        asn,
        password_file,
        max_prefixes: _,
        max_prefixes_hold_s: _,
        ttl_security,
        import: _,
        hold_time,
        graceful_restart,
    } = old;
    *range != new.range
        || *asn != new.asn
        || *password_file != new.password_file
        || *ttl_security != new.ttl_security
        || *hold_time != new.hold_time
        || *graceful_restart != new.graceful_restart
}
