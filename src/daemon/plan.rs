//! A reload as data: given the running config, the new one and the current peers, what
//! changes. Sessions whose terms changed are reset with the right Cease, policy-only
//! changes refresh in place, listeners open and close, the routes move to another table,
//! the bridges' RAs and the metrics listener change. Pure: the core applies the session
//! part and the shell carries out the rest.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use crate::bgp::wire::Cease;
use crate::config::{Config, ImportRule, ListenAddr, NeighborGroup};

/// What the plan needs to know of a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    pub address: IpAddr,
    /// Its neighbor group's name.
    pub group: String,
    /// It has a connection that is not already closing.
    pub connected: bool,
}

/// What happens to one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChange {
    /// Close its session with this Cease; its routes go.
    Reset(Cease),
    /// A peer without a session (kept under graceful restart) whose group changed or went:
    /// its routes go now.
    Forget,
    /// Only its import list changed: re-filter in place and ask for a route refresh.
    Refresh(Vec<ImportRule>),
}

/// Where the routes live, before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableMove {
    pub from: (u32, u8),
    pub to: (u32, u8),
}

/// Everything a reload changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// By peer address.
    pub sessions: Vec<(IpAddr, SessionChange)>,
    pub listen_close: Vec<ListenAddr>,
    pub listen_open: Vec<ListenAddr>,
    /// `kernel.table` or `kernel.protocol` changed: fill the new table, then empty the old.
    pub table: Option<TableMove>,
    /// `kernel.multipath` changed.
    pub multipath: bool,
    /// Bridges whose RA or prefixes changed, were added or removed.
    pub ra: Vec<String>,
    /// The metrics listener changed: the new one (`None`: stop serving).
    pub metrics: Option<Option<SocketAddr>>,
}

/// Plans the move from `old` to `new` for these peers.
pub fn plan(old: &Config, new: &Config, peers: &[PeerView]) -> Plan {
    let mut sessions: Vec<(IpAddr, SessionChange)> = peers
        .iter()
        .filter_map(|peer| {
            let before = old.neighbors.iter().find(|g| g.name == peer.group)?;
            let after = new.neighbors.iter().find(|g| g.name == peer.group);
            let change = match after {
                None if peer.connected => SessionChange::Reset(Cease::PeerDeconfigured),
                Some(after) if session_terms_differ(before, after) && peer.connected => {
                    SessionChange::Reset(Cease::OtherConfigurationChange)
                }
                None => SessionChange::Forget,
                Some(after) if session_terms_differ(before, after) => SessionChange::Forget,
                Some(after) if peer.connected && after.import != before.import => {
                    SessionChange::Refresh(after.import.clone())
                }
                Some(_) => return None,
            };
            Some((peer.address, change))
        })
        .collect();
    sessions.sort_by_key(|(address, _)| *address);
    let table = (old.kernel.table, old.kernel.protocol);
    let new_table = (new.kernel.table, new.kernel.protocol);
    let names: BTreeSet<&String> = old.bridges.keys().chain(new.bridges.keys()).collect();
    Plan {
        sessions,
        listen_close: old
            .listen
            .iter()
            .filter(|l| !new.listen.contains(l))
            .cloned()
            .collect(),
        listen_open: new
            .listen
            .iter()
            .filter(|l| !old.listen.contains(l))
            .cloned()
            .collect(),
        table: (table != new_table).then_some(TableMove {
            from: table,
            to: new_table,
        }),
        multipath: old.kernel.multipath != new.kernel.multipath,
        ra: names
            .into_iter()
            .filter(|name| old.bridges.get(*name) != new.bridges.get(*name))
            .cloned()
            .collect(),
        metrics: (old.metrics != new.metrics).then_some(new.metrics),
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
        liveness: _,
        bfd: _,
    } = old;
    *range != new.range
        || *asn != new.asn
        || *password_file != new.password_file
        || *ttl_security != new.ttl_security
        || *hold_time != new.hold_time
        || *graceful_restart != new.graceful_restart
}
