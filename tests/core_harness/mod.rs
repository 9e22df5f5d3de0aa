//! What the daemon-core tests share: a model kernel table that can refuse requests, a
//! virtual clock, and builders for configs, negotiated sessions and route batches.

#![allow(dead_code)] // each test binary uses its own part

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cilium_peer::bgp::peer::RouteBatch;
use cilium_peer::bgp::session::{CloseReason, Closed, Negotiated};
use cilium_peer::bgp::wire::{Family, GracefulRestart, GracefulRestartFamily, Notification};
use cilium_peer::config::Config;
use cilium_peer::daemon::core::{Action, Core, Event, RouteTable};
use cilium_peer::daemon::plan::Plan;
use cilium_peer::fib::diff::FibOp;
use cilium_peer::fib::netlink::FibError;
use cilium_peer::rib::{NextHop, Path, PathAttrs};
use ipnet::IpNet;
use serde_json::Value;

/// The bridge every test node sits on, and its interface index.
pub const BRIDGE: &str = "vmbr-dev";
pub const BRIDGE_INDEX: u32 = 7;

/// A kernel table as the core sees it: routes by prefix. A request can be made to fail
/// the way the kernel refuses them; refusals come back at the next flush.
#[derive(Debug, Default, Clone)]
pub struct ModelTable {
    pub routes: BTreeMap<IpNet, Vec<NextHop>>,
    /// Errno for the next requests, one per write, while any are left.
    pub refuse: Vec<i32>,
    pub failures: Vec<FibError>,
    pub writes: u64,
}

impl RouteTable for ModelTable {
    fn write(&mut self, op: FibOp) {
        self.writes += 1;
        if let Some(errno) = self.refuse.pop() {
            self.failures.push(FibError {
                op: Some(op),
                errno,
            });
            return;
        }
        match op {
            FibOp::Replace { prefix, next_hops } => {
                self.routes.insert(prefix, next_hops.to_vec());
            }
            FibOp::Delete { prefix } => {
                if self.routes.remove(&prefix).is_none() {
                    self.failures.push(FibError {
                        op: Some(FibOp::Delete { prefix }),
                        errno: libc::ESRCH,
                    });
                }
            }
        }
    }
}

impl ModelTable {
    pub fn gateways(&self, prefix: &str) -> Vec<IpAddr> {
        self.routes
            .get(&net(prefix))
            .map(|hops| hops.iter().map(|h| h.gateway).collect())
            .unwrap_or_default()
    }
}

/// The core with its clock, table and the actions it asked for, driven like the shell does.
pub struct Harness {
    pub core: Core,
    pub table: ModelTable,
    pub now: Instant,
    pub actions: Vec<Action>,
}

impl Harness {
    pub fn new(config: Value) -> Harness {
        Harness::restarted(config, BTreeMap::new())
    }

    /// A daemon that finds `left` in its table at start.
    pub fn restarted(config: Value, left: BTreeMap<IpNet, Vec<NextHop>>) -> Harness {
        let now = Instant::now();
        let mut table = ModelTable {
            routes: left.clone(),
            ..ModelTable::default()
        };
        let mut core = Core::new(now, parse(config), left, &mut table);
        let bridges = BTreeMap::from([(BRIDGE.to_string(), BRIDGE_INDEX)]);
        core.handle(now, Event::Interfaces(bridges), &mut table);
        Harness {
            core,
            table,
            now,
            actions: Vec::new(),
        }
    }

    pub fn handle(&mut self, event: Event) {
        self.core.handle(self.now, event, &mut self.table);
        self.drain();
    }

    /// Applies a new config as SIGHUP does; returns the plan for the shell's part.
    pub fn reload(&mut self, config: Value) -> Plan {
        let plan = self.core.reload(self.now, parse(config), &mut self.table);
        self.drain();
        plan
    }

    /// Moves the clock, firing the core's timers on the way as the shell would.
    pub fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while let Some(deadline) = self.core.poll_timeout().filter(|d| *d <= end) {
            self.now = self.now.max(deadline);
            self.handle(Event::Timeout);
        }
        self.now = end;
    }

    /// What the shell does at a flush: hand over the refusals, and carry out a dump.
    pub fn flush(&mut self) {
        let failures = std::mem::take(&mut self.table.failures);
        self.handle(Event::Flushed { failures });
        while self.actions.contains(&Action::DumpTable) {
            self.actions.retain(|a| *a != Action::DumpTable);
            let dumped = Ok(self.table.routes.clone());
            self.handle(Event::Dumped(dumped));
            let failures = std::mem::take(&mut self.table.failures);
            self.handle(Event::Flushed { failures });
        }
    }

    fn drain(&mut self) {
        while let Some(action) = self.core.poll_action() {
            self.actions.push(action);
        }
    }

    /// Takes the actions asked for so far.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// A node connects and reaches Established; returns its connection.
    pub fn connect(&mut self, address: &str, router_id: u8, gr: Option<u16>) -> u64 {
        let conn = self.offer(address).expect("the connection is accepted");
        self.handle(Event::SessionUp {
            conn,
            negotiated: negotiated(router_id, gr),
        });
        conn
    }

    pub fn offer(&mut self, address: &str) -> Result<u64, cilium_peer::daemon::core::Refused> {
        let offer = cilium_peer::daemon::core::Offer {
            address: address.parse().unwrap(),
            scope: None,
            local: None,
        };
        let result = self.core.offer(self.now, offer, &mut self.table);
        self.drain();
        result.map(|setup| setup.conn)
    }

    pub fn announce(&mut self, conn: u64, gateway: &str, prefixes: &[&str]) {
        self.handle(Event::Routes {
            conn,
            batch: announce(gateway, prefixes),
        });
    }

    pub fn withdraw(&mut self, conn: u64, prefixes: &[&str]) {
        self.handle(Event::Routes {
            conn,
            batch: RouteBatch {
                withdraw: prefixes.iter().map(|p| net(p)).collect(),
                ..RouteBatch::default()
            },
        });
    }

    pub fn end_of_rib(&mut self, conn: u64) {
        for family in [Family::IPV4_UNICAST, Family::IPV6_UNICAST] {
            self.handle(Event::EndOfRib { conn, family });
        }
    }

    pub fn down(&mut self, conn: u64, keep_routes: bool) {
        self.handle(Event::SessionDown {
            conn,
            closed: Closed {
                reason: CloseReason::TransportClosed,
                keep_routes,
            },
        });
    }

    /// The session ended after the peer's Cease/Hard Reset (RFC 8538): routes go.
    pub fn hard_reset(&mut self, conn: u64) {
        self.handle(Event::SessionDown {
            conn,
            closed: Closed {
                reason: CloseReason::NotificationReceived(Notification::hard_reset(
                    &Notification::cease(Notification::CEASE_ADMINISTRATIVE_RESET),
                )),
                keep_routes: false,
            },
        });
    }
}

pub fn parse(config: Value) -> Config {
    Config::parse(&config.to_string()).unwrap_or_else(|e| panic!("test config: {e}"))
}

/// One bridge with an IPv4 and an IPv6 prefix, one neighbor group over IPv6, GR on,
/// liveness off (the liveness tests turn it on).
pub fn config() -> Value {
    serde_json::json!({
        "router_id": "192.0.2.1",
        "asn": 65100,
        "kernel": { "table": 1336, "adopt_grace_s": 300 },
        "bridges": { BRIDGE: { "prefixes": ["192.0.2.0/24", "2001:db8:1::/64"] } },
        "neighbors": [ {
            "name": "cilium",
            "range": "2001:db8:1::/64",
            "asn": 65100,
            "max_prefixes": 100,
            "max_prefixes_hold_s": 60,
            "liveness": { "enable": false }
        } ]
    })
}

#[path = "../common/net.rs"]
mod literals;
pub use literals::net;

pub fn hop(gateway: &str) -> NextHop {
    NextHop {
        gateway: gateway.parse().unwrap(),
        ifindex: Some(BRIDGE_INDEX),
    }
}

pub fn negotiated(router_id: u8, gr: Option<u16>) -> Negotiated {
    let families = vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST];
    Negotiated {
        peer_as: 65100,
        peer_router_id: Ipv4Addr::new(10, 0, 0, router_id),
        hold_time: 90,
        four_octet_as: true,
        families: families.clone(),
        extended_next_hop: true,
        route_refresh: true,
        graceful_restart: gr.map(|restart_time| GracefulRestart {
            restart_state: false,
            notification: true,
            restart_time,
            families: families
                .iter()
                .map(|&family| GracefulRestartFamily {
                    family,
                    forwarding_preserved: true,
                })
                .collect(),
        }),
    }
}

pub fn announce(gateway: &str, prefixes: &[&str]) -> RouteBatch {
    let attrs = Arc::new(PathAttrs::default());
    RouteBatch {
        announce: prefixes
            .iter()
            .map(|p| {
                let path = Path {
                    next_hop: hop(gateway),
                    attrs: attrs.clone(),
                };
                (net(p), path)
            })
            .collect(),
        ..RouteBatch::default()
    }
}
