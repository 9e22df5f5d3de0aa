//! Reload plans as data: for a running config, a new one and the peers, what a SIGHUP
//! changes (the shell carries it out; tests/netns_ops.rs does that against the kernel).

mod core_harness;

use cilium_peer::bgp::wire::Cease;
use cilium_peer::daemon::plan::{PeerView, Plan, SessionChange, TableMove, plan};
use core_harness::{config, parse};
use serde_json::{Value, json};

fn peer(address: &str, connected: bool) -> PeerView {
    PeerView {
        address: address.parse().unwrap(),
        group: "cilium".to_string(),
        connected,
    }
}

fn peers() -> Vec<PeerView> {
    vec![peer("2001:db8:1::11", true), peer("2001:db8:1::12", false)]
}

fn plan_for(change: impl FnOnce(&mut Value)) -> Plan {
    let mut new = config();
    change(&mut new);
    plan(&parse(config()), &parse(new), &peers())
}

fn sessions(plan: &Plan) -> Vec<(String, SessionChange)> {
    plan.sessions
        .iter()
        .map(|(address, change)| (address.to_string(), change.clone()))
        .collect()
}

#[test]
fn the_same_config_plans_nothing() {
    assert_eq!(plan_for(|_| {}), Plan::default());
}

#[test]
fn a_removed_group_resets_connected_sessions_as_deconfigured_and_forgets_stale_ones() {
    let plan = plan_for(|c| c["neighbors"] = json!([]));
    assert_eq!(
        sessions(&plan),
        vec![
            (
                "2001:db8:1::11".into(),
                SessionChange::Reset(Cease::PeerDeconfigured)
            ),
            ("2001:db8:1::12".into(), SessionChange::Forget),
        ]
    );
}

#[test]
fn every_session_term_change_resets_with_other_configuration_change() {
    let changes: [(&str, Value); 6] = [
        ("asn", json!(65101)),
        ("range", json!("2001:db8:1::/80")),
        ("hold_time", json!(30)),
        ("graceful_restart", json!(false)),
        ("ttl_security", json!(true)),
        ("password_file", json!("/run/keys/md5")),
    ];
    for (key, value) in changes {
        let plan = plan_for(|c| c["neighbors"][0][key] = value.clone());
        assert_eq!(
            sessions(&plan),
            vec![
                (
                    "2001:db8:1::11".into(),
                    SessionChange::Reset(Cease::OtherConfigurationChange)
                ),
                ("2001:db8:1::12".into(), SessionChange::Forget),
            ],
            "{key}"
        );
    }
}

#[test]
fn an_import_change_refreshes_connected_sessions_in_place() {
    let plan = plan_for(|c| {
        c["neighbors"][0]["import"] = json!([{ "prefix": "10.244.0.0/16", "max_length": 24 }])
    });
    let [(address, SessionChange::Refresh(import))] = &sessions(&plan)[..] else {
        panic!("{plan:?}");
    };
    assert_eq!(address, "2001:db8:1::11");
    assert_eq!(import.len(), 1);
}

#[test]
fn max_prefixes_and_its_hold_time_change_no_session_by_themselves() {
    let plan = plan_for(|c| {
        c["neighbors"][0]["max_prefixes"] = json!(5);
        c["neighbors"][0]["max_prefixes_hold_s"] = json!(10);
    });
    assert_eq!(plan, Plan::default());
}

#[test]
fn listen_addresses_open_and_close() {
    let mut old = config();
    old["listen"] = json!(["[::]:179", "0.0.0.0:1179"]);
    let mut new = config();
    new["listen"] = json!(["[::]:179", "[::]:1790"]);
    let plan = plan(&parse(old), &parse(new), &[]);
    let shown =
        |l: &[cilium_peer::config::ListenAddr]| l.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    assert_eq!(shown(&plan.listen_close), vec!["0.0.0.0:1179"]);
    assert_eq!(shown(&plan.listen_open), vec!["[::]:1790"]);
}

#[test]
fn a_new_table_or_protocol_moves_the_routes() {
    let plan = plan_for(|c| c["kernel"]["table"] = json!(1337));
    let from = (1336, plan.table.unwrap().from.1);
    assert_eq!(
        plan.table,
        Some(TableMove {
            from,
            to: (1337, from.1)
        })
    );
    let plan = plan_for(|c| c["kernel"]["protocol"] = json!(77));
    assert_eq!(plan.table.map(|m| m.to), Some((1336, 77)));
}

#[test]
fn multipath_ra_and_metrics_changes_are_named() {
    let plan = plan_for(|c| c["kernel"]["multipath"] = json!(false));
    assert!(plan.multipath);
    let plan =
        plan_for(|c| c["bridges"]["vmbr-dev"]["ra"] = json!({ "rdnss": ["2001:db8:1::53"] }));
    assert_eq!(plan.ra, vec!["vmbr-dev".to_string()]);
    let plan = plan_for(|c| c["bridges"]["vmbr-two"] = json!({ "prefixes": ["2001:db8:2::/64"] }));
    assert_eq!(plan.ra, vec!["vmbr-two".to_string()]);
    let plan = plan_for(|c| c["metrics"] = json!({ "listen": "127.0.0.1:9179" }));
    assert_eq!(plan.metrics, Some(Some("127.0.0.1:9179".parse().unwrap())));
}
