//! The daemon's core on a virtual clock, without root: graceful restart, hard reset,
//! adoption, max_prefixes hold-down, half-open eviction, repairs, resynchronisation and
//! reloads, checked against the model table the core writes.

mod core_harness;

use std::collections::BTreeMap;
use std::time::Duration;

use cilium_peer::bgp::wire::Cease;
use cilium_peer::daemon::core::{Action, Event, PeerState, Refused};
use core_harness::*;

const NODE1: &str = "2001:db8:1::11";
const NODE2: &str = "2001:db8:1::12";
const POD1: &str = "10.244.1.0/24";
const LB: &str = "198.51.100.7/32";

fn ip(address: &str) -> std::net::IpAddr {
    address.parse().unwrap()
}

/// Nodes 1 and 2 (GR 120 s) both announce the LoadBalancer IP, node 1 its pod CIDR too.
fn two_nodes_sharing_lb(h: &mut Harness) -> (u64, u64) {
    let one = h.connect(NODE1, 1, Some(120));
    let two = h.connect(NODE2, 2, Some(120));
    h.announce(one, NODE1, &[POD1, LB]);
    h.announce(two, NODE2, &[LB]);
    (one, two)
}

fn state_of(h: &Harness, address: &str) -> Option<PeerState> {
    let address: std::net::IpAddr = address.parse().unwrap();
    h.core
        .peers()
        .into_iter()
        .find(|p| p.address == address)
        .map(|p| p.state())
}

#[test]
fn a_graceful_restart_helper_keeps_a_dropped_nodes_routes_then_sweeps_them_after_restart_time() {
    let mut h = Harness::new(config());
    let conn = h.connect(NODE1, 1, Some(120));
    h.announce(conn, NODE1, &[POD1, LB]);
    h.end_of_rib(conn);
    h.down(conn, true);
    assert_eq!(state_of(&h, NODE1), Some(PeerState::Stale));
    h.advance(Duration::from_secs(119));
    assert_eq!(h.table.gateways(POD1), vec![ip(NODE1)]);
    assert_eq!(h.table.gateways(LB), vec![ip(NODE1)]);
    h.advance(Duration::from_secs(2));
    assert!(h.table.routes.is_empty(), "{:?}", h.table.routes);
    assert_eq!(
        state_of(&h, NODE1),
        None,
        "an idle peer without routes is forgotten"
    );
}

#[test]
fn a_returning_node_keeps_what_it_announces_again_and_loses_the_rest_at_its_end_of_rib() {
    let mut h = Harness::new(config());
    let conn = h.connect(NODE1, 1, Some(120));
    h.announce(conn, NODE1, &[POD1, LB]);
    h.down(conn, true);
    h.advance(Duration::from_secs(5));
    let conn = h.connect(NODE1, 1, Some(120));
    h.announce(conn, NODE1, &[POD1]);
    assert!(
        h.table.routes.contains_key(&net(LB)),
        "stale until End-of-RIB"
    );
    h.end_of_rib(conn);
    assert!(h.table.routes.contains_key(&net(POD1)));
    assert!(!h.table.routes.contains_key(&net(LB)));
    assert_eq!(state_of(&h, NODE1), Some(PeerState::Established));
}

#[test]
fn a_session_that_ends_without_graceful_restart_takes_its_routes_at_once() {
    let mut h = Harness::new(config());
    let conn = h.connect(NODE1, 1, None);
    h.announce(conn, NODE1, &[POD1]);
    h.down(conn, true);
    assert!(h.table.routes.is_empty());
}

#[test]
fn an_rfc_8538_hard_reset_drops_the_nodes_routes_at_once_even_with_graceful_restart() {
    let mut h = Harness::new(config());
    let conn = h.connect(NODE1, 1, Some(120));
    let other = h.connect(NODE2, 2, Some(120));
    h.announce(conn, NODE1, &[POD1, LB]);
    h.announce(other, NODE2, &[LB]);
    h.hard_reset(conn);
    assert!(!h.table.routes.contains_key(&net(POD1)));
    assert_eq!(h.table.gateways(LB), vec![ip(NODE2)]);
}

#[test]
fn an_ecmp_route_keeps_the_leg_of_a_node_in_graceful_restart() {
    let mut h = Harness::new(config());
    let one = h.connect(NODE1, 1, Some(120));
    let two = h.connect(NODE2, 2, Some(120));
    h.announce(one, NODE1, &[LB]);
    h.announce(two, NODE2, &[LB]);
    assert_eq!(h.table.gateways(LB).len(), 2);
    h.down(one, true);
    assert_eq!(h.table.gateways(LB).len(), 2);
    h.advance(Duration::from_secs(121));
    assert_eq!(h.table.gateways(LB), vec![ip(NODE2)]);
}

fn left_by_a_previous_run() -> BTreeMap<ipnet::IpNet, Vec<cilium_peer::rib::NextHop>> {
    BTreeMap::from([
        (net(POD1), vec![hop(NODE1)]),
        (net(LB), vec![hop(NODE1), hop(NODE2)]),
    ])
}

#[test]
fn adopted_routes_stay_until_each_peers_end_of_rib() {
    let mut h = Harness::restarted(config(), left_by_a_previous_run());
    assert_eq!(h.core.adopted().len(), 2);
    let one = h.connect(NODE1, 1, Some(120));
    h.announce(one, NODE1, &[LB]);
    h.end_of_rib(one);
    // Node 1 did not announce its pod CIDR again: it goes; node 2's leg waits for node 2.
    assert!(!h.table.routes.contains_key(&net(POD1)));
    assert_eq!(h.table.gateways(LB).len(), 2);
    let two = h.connect(NODE2, 2, Some(120));
    h.end_of_rib(two);
    assert_eq!(h.table.gateways(LB), vec![ip(NODE1)]);
    assert_eq!(h.core.adopted().len(), 0);
    assert_eq!(h.core.poll_timeout(), None, "no adoption deadline is left");
}

#[test]
fn adopted_routes_leave_when_adopt_grace_s_ends_without_their_peers() {
    let mut h = Harness::restarted(config(), left_by_a_previous_run());
    h.advance(Duration::from_secs(299));
    assert_eq!(h.table.routes.len(), 2);
    h.advance(Duration::from_secs(2));
    assert!(h.table.routes.is_empty());
}

#[test]
fn a_route_of_ours_without_a_gateway_is_deleted_at_start() {
    let left = BTreeMap::from([(net(POD1), vec![])]);
    let h = Harness::restarted(config(), left);
    assert!(h.table.routes.is_empty());
    assert_eq!(h.core.adopted().len(), 0);
}

#[test]
fn a_daemon_restarted_with_adopted_routes_sets_the_restart_bit() {
    let mut h = Harness::restarted(config(), left_by_a_previous_run());
    let offer = cilium_peer::daemon::core::Offer {
        address: ip(NODE1),
        scope: None,
        local: None,
    };
    let setup = h.core.offer(h.now, offer, &mut h.table).unwrap();
    assert!(setup.session.restarting);
    let mut fresh = Harness::new(config());
    let offer = cilium_peer::daemon::core::Offer {
        address: ip(NODE1),
        scope: None,
        local: None,
    };
    let setup = fresh
        .core
        .offer(fresh.now, offer, &mut fresh.table)
        .unwrap();
    assert!(!setup.session.restarting);
    assert_eq!(setup.link.ifindex, Some(BRIDGE_INDEX));
}

#[test]
fn a_node_past_max_prefixes_is_closed_and_held_down_for_max_prefixes_hold_s() {
    let mut h = Harness::new(config());
    let conn = h.connect(NODE1, 1, Some(120));
    let prefixes: Vec<String> = (0..101).map(|i| format!("10.244.{i}.0/24")).collect();
    let prefixes: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    h.announce(conn, NODE1, &prefixes);
    assert_eq!(
        h.take_actions(),
        vec![Action::Close {
            conn,
            cease: Cease::MaximumPrefixesReached,
            keep_routes: false
        }]
    );
    // More routes before the session is gone: closed once only.
    h.announce(conn, NODE1, &["10.244.200.0/24"]);
    assert!(h.take_actions().is_empty());
    h.down(conn, false);
    assert!(h.table.routes.is_empty());
    h.advance(Duration::from_secs(59));
    assert_eq!(h.offer(NODE1), Err(Refused::HeldDown(2)));
    h.advance(Duration::from_secs(1));
    assert!(h.offer(NODE1).is_ok());
    assert_eq!(h.core.counters().refused, 1);
}

#[test]
fn a_connection_from_outside_every_range_is_refused() {
    let mut h = Harness::new(config());
    assert_eq!(h.offer("2001:db8:2::1"), Err(Refused::OutsideRanges));
    assert!(h.core.peers().is_empty());
}

#[test]
fn a_stalled_half_open_session_is_evicted_to_make_room_for_a_new_connection() {
    let mut config = config();
    config["limits"] = serde_json::json!({ "max_half_open": 1 });
    let mut h = Harness::new(config);
    let stalled = h.offer(NODE1).unwrap();
    h.advance(Duration::from_millis(500));
    assert!(matches!(h.offer(NODE2), Err(Refused::Admission(_))));
    h.advance(Duration::from_secs(2));
    let fresh = h.offer(NODE2).unwrap();
    assert_eq!(
        h.take_actions(),
        vec![Action::Close {
            conn: stalled,
            cease: Cease::OutOfResources,
            keep_routes: true
        }]
    );
    assert_eq!(state_of(&h, NODE1), None);
    assert_eq!(state_of(&h, NODE2), Some(PeerState::OpenSent));
    // The evicted connection's last words mean nothing any more.
    h.down(stalled, false);
    assert_eq!(state_of(&h, NODE2), Some(PeerState::OpenSent));
    h.handle(Event::SessionUp {
        conn: fresh,
        negotiated: negotiated(2, None),
    });
    assert_eq!(state_of(&h, NODE2), Some(PeerState::Established));
}

#[test]
fn a_reconnecting_node_replaces_its_old_connection_and_its_routes_stay_stale() {
    let mut h = Harness::new(config());
    let old = h.connect(NODE1, 1, Some(120));
    h.announce(old, NODE1, &[POD1]);
    let new = h.offer(NODE1).unwrap();
    assert_eq!(
        h.take_actions(),
        vec![Action::Close {
            conn: old,
            cease: Cease::ConnectionCollisionResolution,
            keep_routes: true
        }]
    );
    h.down(old, true);
    assert_eq!(h.table.gateways(POD1), vec![ip(NODE1)]);
    h.handle(Event::SessionUp {
        conn: new,
        negotiated: negotiated(1, Some(120)),
    });
    h.end_of_rib(new);
    assert!(h.table.routes.is_empty(), "not announced again: swept");
}

#[test]
fn a_route_changed_or_deleted_behind_our_back_is_put_back() {
    let mut h = Harness::new(config());
    let conn = h.connect(NODE1, 1, None);
    h.announce(conn, NODE1, &[POD1]);
    h.table.routes.remove(&net(POD1));
    h.handle(Event::KernelRoute {
        prefix: net(POD1),
        next_hops: vec![],
    });
    assert_eq!(h.table.gateways(POD1), vec![ip(NODE1)]);
    h.handle(Event::KernelRoute {
        prefix: net(POD1),
        next_hops: vec![hop(NODE1)],
    });
    assert_eq!(h.core.counters().repairs, 1, "as it should be: no repair");
    h.handle(Event::KernelRoute {
        prefix: net("10.244.9.0/24"),
        next_hops: vec![hop(NODE2)],
    });
    assert!(!h.table.routes.contains_key(&net("10.244.9.0/24")));
    assert_eq!(h.core.counters().repairs, 2);
}

#[test]
fn a_refused_kernel_request_leads_to_a_resync_that_backs_off_while_refused() {
    let mut h = Harness::new(config());
    let conn = h.connect(NODE1, 1, None);
    h.table.refuse = vec![libc::ENOBUFS];
    h.announce(conn, NODE1, &[POD1]);
    assert!(h.table.routes.is_empty());
    // The resync's own write is refused too (ENODEV: the bridge is gone).
    h.table.refuse = vec![libc::ENODEV];
    h.flush();
    assert_eq!(h.core.counters().resyncs, 1);
    assert!(h.table.routes.is_empty());
    let retry = h.core.poll_timeout().expect("a retry is due");
    assert_eq!(retry - h.now, Duration::from_secs(1));
    h.advance(Duration::from_secs(1));
    h.flush();
    assert_eq!(h.core.counters().resyncs, 2);
    assert_eq!(h.table.gateways(POD1), vec![ip(NODE1)]);
}

#[test]
fn a_delete_of_what_is_already_gone_is_no_failure() {
    let mut h = Harness::new(config());
    let conn = h.connect(NODE1, 1, None);
    h.announce(conn, NODE1, &[POD1]);
    h.table.routes.clear();
    h.withdraw(conn, &[POD1]);
    h.flush();
    assert_eq!(h.core.counters().resyncs, 0);
}

#[test]
fn a_bridge_coming_back_asks_for_a_resync_and_another_link_does_not() {
    let mut h = Harness::new(config());
    h.handle(Event::LinkChanged { ifindex: 99 });
    h.flush();
    assert_eq!(h.core.counters().resyncs, 0);
    h.handle(Event::LinkChanged {
        ifindex: BRIDGE_INDEX,
    });
    h.flush();
    assert_eq!(h.core.counters().resyncs, 1);
}

#[test]
fn a_reload_that_removes_a_group_resets_its_sessions_and_forgets_its_stale_nodes() {
    let mut h = Harness::new(config());
    let one = h.connect(NODE1, 1, Some(120));
    let two = h.connect(NODE2, 2, Some(120));
    h.announce(one, NODE1, &[POD1]);
    h.announce(two, NODE2, &[LB]);
    h.down(two, true);
    let mut new = config();
    new["neighbors"][0]["name"] = "other".into();
    let plan = h.reload(new);
    assert_eq!(plan.sessions.len(), 2);
    assert_eq!(
        h.take_actions(),
        vec![Action::Close {
            conn: one,
            cease: Cease::PeerDeconfigured,
            keep_routes: false
        }]
    );
    assert!(
        !h.table.routes.contains_key(&net(LB)),
        "node 2's stale routes went"
    );
    assert_eq!(state_of(&h, NODE2), None);
    h.down(one, false);
    assert!(h.table.routes.is_empty());
    assert_eq!(h.core.counters().reloads_applied, 1);
}

#[test]
fn a_reload_that_lowers_max_prefixes_closes_the_nodes_now_over_it() {
    let mut h = Harness::new(config());
    let conn = h.connect(NODE1, 1, Some(120));
    h.announce(conn, NODE1, &[POD1, LB]);
    let mut new = config();
    new["neighbors"][0]["max_prefixes"] = 1.into();
    h.reload(new);
    assert_eq!(
        h.take_actions(),
        vec![Action::Close {
            conn,
            cease: Cease::MaximumPrefixesReached,
            keep_routes: false
        }]
    );
    h.down(conn, false);
    assert_eq!(h.offer(NODE1), Err(Refused::HeldDown(61)));
}

#[test]
fn a_reload_that_lowers_max_paths_shrinks_the_ecmp_route_to_the_lowest_router_ids() {
    let mut h = Harness::new(config());
    for (i, node) in ["2001:db8:1::13", NODE2, NODE1].iter().enumerate() {
        let conn = h.connect(node, 3 - i as u8, None);
        h.announce(conn, node, &[LB]);
    }
    assert_eq!(h.table.gateways(LB).len(), 3);
    let mut new = config();
    new["kernel"]["max_paths"] = 2.into();
    h.reload(new);
    let mut gateways = h.table.gateways(LB);
    gateways.sort();
    assert_eq!(gateways, vec![ip(NODE1), ip(NODE2)]);
}

#[test]
fn a_refused_reload_is_counted_and_changes_nothing() {
    let mut h = Harness::new(config());
    h.handle(Event::ReloadRefused);
    assert_eq!(h.core.counters().reloads_refused, 1);
    assert!(!h.core.last_reload_ok());
    assert_eq!(h.core.config(), &parse(config()));
}

#[test]
fn stopping_closes_every_session_keeping_routes_and_removes_them_only_when_asked() {
    let mut h = Harness::new(config());
    let conn = h.connect(NODE1, 1, Some(120));
    h.announce(conn, NODE1, &[POD1]);
    let mut kept = ModelTable {
        routes: h.table.routes.clone(),
        ..ModelTable::default()
    };
    assert_eq!(h.core.stop(false, &mut kept), 1);
    assert_eq!(kept.routes.len(), 1);
    assert_eq!(
        h.core.poll_action(),
        Some(Action::Close {
            conn,
            cease: Cease::AdministrativeShutdown,
            keep_routes: true
        })
    );
    assert_eq!(h.core.stop(true, &mut h.table), 0, "already closing");
    assert!(h.table.routes.is_empty());
}

fn with_liveness() -> serde_json::Value {
    let mut config = config();
    config["neighbors"][0]["liveness"] =
        serde_json::json!({ "enable": true, "interval_ms": 400, "multiplier": 3 });
    config
}

/// Answers every probe due now for the nodes in `answering`, through bridge port 100 + n.
fn answer_probes(h: &mut Harness, answering: &[&str]) -> usize {
    let probes: Vec<std::net::IpAddr> = h
        .take_actions()
        .into_iter()
        .filter_map(|a| match a {
            Action::Probe { address, ifindex } => {
                assert_eq!(ifindex, BRIDGE_INDEX, "probes go out on the node's bridge");
                Some(address)
            }
            _ => None,
        })
        .collect();
    for address in &probes {
        if answering.iter().any(|a| ip(a) == *address) {
            let port = Some(100 + u32::from(address.to_string().ends_with("12")));
            h.handle(Event::ProbeAnswered {
                address: *address,
                port,
            });
        }
    }
    probes.len()
}

/// Moves the clock in probe intervals, answering for `answering`.
fn run_probes(h: &mut Harness, intervals: u32, answering: &[&str]) {
    for _ in 0..intervals {
        answer_probes(h, answering);
        h.advance(Duration::from_millis(400));
    }
    answer_probes(h, answering);
}

fn liveness_of(h: &Harness, address: &str) -> Option<cilium_peer::daemon::core::Liveness> {
    h.core
        .peers()
        .into_iter()
        .find(|p| p.address == ip(address))
        .and_then(|p| p.watch.as_ref().map(|w| w.state))
}

#[test]
fn a_node_that_stops_answering_loses_its_ecmp_leg_and_pod_route_after_multiplier_probes() {
    use cilium_peer::daemon::core::Liveness;
    let mut h = Harness::new(with_liveness());
    two_nodes_sharing_lb(&mut h);
    run_probes(&mut h, 5, &[NODE1, NODE2]);
    assert_eq!(liveness_of(&h, NODE1), Some(Liveness::Reachable));
    // Node 1 hangs: two probes missed is not enough (the first interval sends the first
    // probe it leaves unanswered)...
    run_probes(&mut h, 3, &[NODE2]);
    assert_eq!(liveness_of(&h, NODE1), Some(Liveness::Probing));
    assert_eq!(h.table.gateways(LB).len(), 2);
    // ...the third is.
    run_probes(&mut h, 1, &[NODE2]);
    assert_eq!(liveness_of(&h, NODE1), Some(Liveness::Unreachable));
    assert_eq!(h.table.gateways(LB), vec![ip(NODE2)]);
    assert!(!h.table.routes.contains_key(&net(POD1)));
    assert_eq!(
        state_of(&h, NODE1),
        Some(PeerState::Established),
        "BGP has not noticed"
    );
    // It answers again: its routes come back from the RIB.
    run_probes(&mut h, 1, &[NODE1, NODE2]);
    assert_eq!(liveness_of(&h, NODE1), Some(Liveness::Reachable));
    assert_eq!(h.table.gateways(LB).len(), 2);
    assert_eq!(h.table.gateways(POD1), vec![ip(NODE1)]);
}

#[test]
fn a_node_whose_bridge_port_goes_leaves_at_once_and_one_whose_agent_restarts_keeps_everything() {
    use cilium_peer::daemon::core::Liveness;
    let mut h = Harness::new(with_liveness());
    let (_, two) = two_nodes_sharing_lb(&mut h);
    run_probes(&mut h, 1, &[NODE1, NODE2]);
    // Node 2's agent restarts: the session drops, the node still answers.
    h.down(two, true);
    let before = h.table.routes.clone();
    let writes = h.table.writes;
    run_probes(&mut h, 10, &[NODE1, NODE2]);
    assert_eq!(h.table.routes, before);
    assert_eq!(h.table.writes, writes, "not one route change");
    assert_eq!(liveness_of(&h, NODE2), Some(Liveness::Reachable));
    // Node 1's VM stops: its port (100, learned from its answers) is deleted.
    h.handle(Event::PortDown { ifindex: 100 });
    assert_eq!(liveness_of(&h, NODE1), Some(Liveness::Unreachable));
    assert!(!h.table.routes.contains_key(&net(POD1)));
    assert_eq!(h.table.gateways(LB), vec![ip(NODE2)]);
    // Another port going changes nothing.
    h.handle(Event::PortDown { ifindex: 555 });
    assert_eq!(liveness_of(&h, NODE2), Some(Liveness::Reachable));
}

#[test]
fn an_unreachable_node_in_graceful_restart_keeps_no_routes_and_returns_with_its_new_session() {
    use cilium_peer::daemon::core::Liveness;
    let mut h = Harness::new(with_liveness());
    let conn = h.connect(NODE1, 1, Some(120));
    h.announce(conn, NODE1, &[POD1]);
    run_probes(&mut h, 1, &[NODE1]);
    h.down(conn, true);
    run_probes(&mut h, 4, &[]);
    assert_eq!(state_of(&h, NODE1), Some(PeerState::Stale));
    assert_eq!(liveness_of(&h, NODE1), Some(Liveness::Unreachable));
    assert!(
        h.table.routes.is_empty(),
        "GR keeps nothing of a node that is gone"
    );
    let conn = h.connect(NODE1, 1, Some(120));
    assert_eq!(liveness_of(&h, NODE1), Some(Liveness::Reachable));
    h.announce(conn, NODE1, &[POD1]);
    assert_eq!(h.table.gateways(POD1), vec![ip(NODE1)]);
}

#[test]
fn one_probe_per_node_per_interval_and_none_with_liveness_off() {
    let mut h = Harness::new(with_liveness());
    h.connect(NODE1, 1, None);
    h.connect(NODE2, 2, None);
    let mut probes = 0;
    for _ in 0..10 {
        probes += answer_probes(&mut h, &[NODE1, NODE2]);
        h.advance(Duration::from_millis(400));
    }
    assert_eq!(probes, 2 * 10);
    let mut off = Harness::new(config());
    off.connect(NODE1, 1, None);
    off.advance(Duration::from_secs(10));
    assert_eq!(answer_probes(&mut off, &[NODE1]), 0);
}

#[test]
fn a_reload_turning_liveness_off_brings_back_the_routes_of_an_unreachable_node() {
    let mut h = Harness::new(with_liveness());
    let conn = h.connect(NODE1, 1, None);
    h.announce(conn, NODE1, &[POD1]);
    run_probes(&mut h, 4, &[]);
    assert!(h.table.routes.is_empty());
    h.reload(config());
    assert_eq!(h.table.gateways(POD1), vec![ip(NODE1)]);
    assert_eq!(liveness_of(&h, NODE1), None);
}

fn with_bfd() -> serde_json::Value {
    let mut config = config();
    config["neighbors"][0]["bfd"] = serde_json::json!({ "enable": true });
    config
}

fn bfd(h: &mut Harness, address: &str, state: cilium_peer::daemon::core::BfdState) {
    h.handle(Event::Bfd {
        address: ip(address),
        state,
    });
}

#[test]
fn an_established_node_gets_a_bfd_session_on_its_bridge_which_goes_when_the_node_is_forgotten() {
    let mut h = Harness::new(with_bfd());
    let conn = h.connect(NODE1, 1, None);
    let added = h.take_actions();
    assert!(
        matches!(added[..], [Action::BfdAdd { address, ifindex: BRIDGE_INDEX, settings, .. }]
            if address == ip(NODE1) && settings.min_tx_ms == 300 && settings.multiplier == 3),
        "{added:?}"
    );
    h.down(conn, false);
    assert_eq!(
        h.take_actions(),
        vec![Action::BfdRemove {
            address: ip(NODE1),
            ifindex: BRIDGE_INDEX
        }]
    );
    let mut off = Harness::new(config());
    off.connect(NODE1, 1, None);
    assert!(off.take_actions().is_empty());
}

#[test]
fn bfd_down_closes_the_session_with_cease_10_and_its_routes_leave_at_once_despite_graceful_restart()
{
    use cilium_peer::daemon::core::BfdState;
    let mut h = Harness::new(with_bfd());
    let (one, _) = two_nodes_sharing_lb(&mut h);
    bfd(&mut h, NODE1, BfdState::Up);
    h.take_actions();
    bfd(&mut h, NODE1, BfdState::Down);
    assert!(!h.table.routes.contains_key(&net(POD1)));
    assert_eq!(h.table.gateways(LB), vec![ip(NODE2)]);
    assert_eq!(
        h.take_actions(),
        vec![Action::Close {
            conn: one,
            cease: Cease::BfdDown,
            keep_routes: false
        }]
    );
    h.down(one, false);
    assert_eq!(state_of(&h, NODE1), None);
}

#[test]
fn bfd_admin_down_from_the_node_takes_nothing_down() {
    use cilium_peer::daemon::core::BfdState;
    let mut h = Harness::new(with_bfd());
    let conn = h.connect(NODE1, 1, Some(120));
    h.announce(conn, NODE1, &[POD1]);
    bfd(&mut h, NODE1, BfdState::Up);
    h.take_actions();
    bfd(&mut h, NODE1, BfdState::AdminDown);
    assert_eq!(h.table.gateways(POD1), vec![ip(NODE1)]);
    assert!(h.take_actions().is_empty());
    // Down after AdminDown is no failure either: it was never Up in between.
    bfd(&mut h, NODE1, BfdState::Down);
    assert_eq!(h.table.gateways(POD1), vec![ip(NODE1)]);
}

#[test]
fn a_node_kept_under_graceful_restart_loses_its_routes_when_bfd_goes_down() {
    use cilium_peer::daemon::core::BfdState;
    let mut h = Harness::new(with_bfd());
    let conn = h.connect(NODE1, 1, Some(120));
    h.announce(conn, NODE1, &[POD1]);
    bfd(&mut h, NODE1, BfdState::Up);
    h.down(conn, true);
    assert_eq!(state_of(&h, NODE1), Some(PeerState::Stale));
    assert_eq!(h.table.gateways(POD1), vec![ip(NODE1)]);
    bfd(&mut h, NODE1, BfdState::Down);
    assert!(h.table.routes.is_empty());
    assert_eq!(state_of(&h, NODE1), None);
}
