//! The Loc-RIB (RFC 4271 3.2): every path each peer announced, per prefix; the decision
//! process (RFC 4271 9.1.2) that picks the best path and, with multipath, the ECMP set; and
//! graceful-restart stale marks (RFC 4724). Its output is the desired kernel FIB, as
//! [`FibChange`]s. Pure: no IO, no clock; the caller resolves next hops and drives sessions.
//!
//! # Decision process
//!
//! RFC 4271 9.1.2.2, in the order BIRD and FRR use, as set eliminations (so the result never
//! depends on the order in which paths arrived):
//!
//! 1. highest LOCAL_PREF;
//! 2. shortest AS_PATH;
//! 3. lowest ORIGIN (IGP < EGP < INCOMPLETE);
//! 4. lowest MED, compared only among paths with the same neighbor AS (the RFC rule, BIRD's
//!    default). A path without a neighbor AS (empty AS_PATH: what Cilium's iBGP sends) counts
//!    as coming from the local AS, so such paths compare MED with each other;
//! 5. eBGP over iBGP;
//! 6. lowest BGP Identifier (router id) of the peer;
//! 7. lowest peer address (then lowest [`PeerId`], only for two sessions from one address).
//!
//! There is no IGP cost step: next hops are directly connected. Stale paths (graceful
//! restart) compete as equals with fresh ones, as RFC 4724 4.2 asks ("used as normal").
//!
//! # Multipath (ECMP)
//!
//! With multipath on, the installed set is every path equal to the best one on LOCAL_PREF,
//! AS_PATH length and kind (eBGP or iBGP). ORIGIN and MED do not take part: a LoadBalancer
//! IP that one Cilium node announces with ORIGIN INCOMPLETE and another with IGP is still
//! one ECMP route over both nodes. Two paths with the same gateway and interface give one
//! next hop. With multipath off, only the best path's next hop is installed.
//!
//! A [`FibChange`] is emitted only when the installed next-hop set of a prefix changes.
//!
//! # Memory and CPU
//!
//! Prefixes live in a `HashMap<IpNet, _>`: announce and withdraw, the hot path for 200,000+
//! prefixes, are O(1) lookups; only displays and bulk changes need an order, and those sort
//! what they return. Each prefix holds a `Vec` of its paths (one allocation of exactly one
//! path in the common case) and its installed next-hop set, interned and shared by every
//! prefix with the same set. Path attributes are interned too, so one `PathAttrs` is held
//! per distinct value however many UPDATEs carried it. Bulk operations (peer removal, stale
//! marking and sweeping) walk the table and stop as soon as the peer's paths are all seen.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::IpNet;

/// The caller's handle for a BGP session.
pub type PeerId = u32;

/// What the decision process needs to know about a peer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PeerInfo {
    pub id: PeerId,
    pub address: IpAddr,
    /// The peer's BGP Identifier.
    pub router_id: Ipv4Addr,
    pub ebgp: bool,
}

/// A kernel next hop: gateway address and output interface (ifindex), as resolved by the
/// caller.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct NextHop {
    pub gateway: IpAddr,
    pub ifindex: Option<u32>,
}

/// Attributes the decision process compares; shared by many prefixes.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct PathAttrs {
    /// LOCAL_PREF; the caller applies the default (100) when it is missing.
    pub local_pref: u32,
    /// AS_PATH length as RFC 4271 9.1.2.2 a) counts it (an AS_SET counts as one).
    pub as_path_len: u32,
    /// The first AS in AS_PATH; `None` for an empty AS_PATH (the local AS).
    pub neighbor_as: Option<u32>,
    /// ORIGIN: 0 IGP, 1 EGP, 2 INCOMPLETE.
    pub origin: u8,
    /// MULTI_EXIT_DISC; 0 when missing.
    pub med: u32,
}

impl Default for PathAttrs {
    /// What Cilium's iBGP sends: LOCAL_PREF 100, empty AS_PATH, ORIGIN IGP, no MED.
    fn default() -> Self {
        PathAttrs {
            local_pref: 100,
            as_path_len: 0,
            neighbor_as: None,
            origin: 0,
            med: 0,
        }
    }
}

/// One peer's path to a prefix.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Path {
    pub next_hop: NextHop,
    pub attrs: Arc<PathAttrs>,
}

/// Desired kernel state for one prefix after a change: empty `next_hops` removes the route.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FibChange {
    pub prefix: IpNet,
    /// Sorted, without duplicates.
    pub next_hops: Vec<NextHop>,
}

/// An address family, for graceful-restart End-of-RIB handling.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Afi {
    Ipv4,
    Ipv6,
}

impl Afi {
    /// The family of `prefix`.
    pub fn of(prefix: &IpNet) -> Afi {
        match prefix {
            IpNet::V4(_) => Afi::Ipv4,
            IpNet::V6(_) => Afi::Ipv6,
        }
    }

    fn index(self) -> usize {
        match self {
            Afi::Ipv4 => 0,
            Afi::Ipv6 => 1,
        }
    }
}

/// Per-peer route counts, for `show peers`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PeerCounts {
    /// Prefixes for which the peer has a path (stale ones included).
    pub received: usize,
    /// Paths of this peer in the selected set of their prefix (the best path, or the ECMP
    /// set with multipath on).
    pub installed: usize,
}

/// The Loc-RIB: see the module documentation.
#[derive(Debug)]
pub struct Rib {
    multipath: bool,
    prefixes: HashMap<IpNet, Entry>,
    peers: BTreeMap<PeerId, Peer>,
    attrs: AttrsInterner,
    next_hop_sets: NextHopSets,
    scratch: Scratch,
}

#[derive(Debug)]
struct Peer {
    info: PeerInfo,
    received: usize,
    installed: usize,
    /// Stale paths, per family (`Afi::index`).
    stale: [usize; 2],
}

/// A path as the RIB keeps it.
#[derive(Debug)]
struct RibPath {
    path: Path,
    peer: PeerId,
    stale: bool,
    /// In the installed set (the best path, or one of the ECMP set).
    selected: bool,
    /// Still in the running during the decision process; meaningless outside it.
    candidate: bool,
}

#[derive(Debug)]
struct Entry {
    /// At most one per peer, in no particular order.
    paths: Vec<RibPath>,
    /// `None` only while an entry is being created or emptied.
    installed: Option<Arc<[NextHop]>>,
}

/// Reused buffers, so that the decision process does not allocate.
#[derive(Debug, Default)]
struct Scratch {
    next_hops: Vec<NextHop>,
    /// Lowest MED per neighbor AS.
    lowest_med: Vec<(Option<u32>, u32)>,
}

/// Interned `PathAttrs`. Values no path uses any more are dropped by a sweep whenever the
/// set has doubled since the last one, so the set stays within twice what is in use.
#[derive(Debug)]
struct AttrsInterner {
    set: HashSet<Arc<PathAttrs>>,
    sweep_at: usize,
}

const ATTRS_MIN_SWEEP: usize = 1024;

impl AttrsInterner {
    fn new() -> Self {
        AttrsInterner {
            set: HashSet::new(),
            sweep_at: ATTRS_MIN_SWEEP,
        }
    }

    fn intern(&mut self, attrs: Arc<PathAttrs>) -> Arc<PathAttrs> {
        if let Some(known) = self.set.get(&*attrs) {
            return Arc::clone(known);
        }
        if self.set.len() >= self.sweep_at {
            self.set.retain(|a| Arc::strong_count(a) > 1);
            self.sweep_at = (2 * self.set.len()).max(ATTRS_MIN_SWEEP);
        }
        self.set.insert(Arc::clone(&attrs));
        attrs
    }
}

/// Interned installed next-hop sets. Only the RIB holds them, so a set leaves the interner
/// as soon as the last prefix using it lets go.
#[derive(Debug, Default)]
struct NextHopSets(HashSet<Arc<[NextHop]>>);

impl NextHopSets {
    fn intern(&mut self, next_hops: &[NextHop]) -> Arc<[NextHop]> {
        if let Some(known) = self.0.get(next_hops) {
            return Arc::clone(known);
        }
        let set: Arc<[NextHop]> = Arc::from(next_hops);
        self.0.insert(Arc::clone(&set));
        set
    }

    fn release(&mut self, set: Arc<[NextHop]>) {
        // One reference in the interner, one here: nobody else uses it.
        if Arc::strong_count(&set) == 2 {
            self.0.remove(&*set);
        }
    }
}

/// Everything the decision process needs besides the entry itself.
struct Decider<'a> {
    peers: &'a mut BTreeMap<PeerId, Peer>,
    next_hop_sets: &'a mut NextHopSets,
    scratch: &'a mut Scratch,
    multipath: bool,
}

impl Decider<'_> {
    /// Runs the decision process for `prefix` after its paths changed, updates the selected
    /// marks and per-peer installed counts, and returns the change of its installed set.
    fn update(&mut self, prefix: IpNet, entry: &mut Entry) -> Option<FibChange> {
        if entry.paths.is_empty() {
            let old = entry.installed.take()?;
            self.next_hop_sets.release(old);
            return Some(FibChange {
                prefix,
                next_hops: Vec::new(),
            });
        }
        let best = decide(&mut entry.paths, self.peers, &mut self.scratch.lowest_med);
        let best = &entry.paths[best];
        let (best_pref, best_len) = (best.path.attrs.local_pref, best.path.attrs.as_path_len);
        let (best_peer, best_ebgp) = (best.peer, ebgp_of(self.peers, best.peer));
        let next_hops = &mut self.scratch.next_hops;
        next_hops.clear();
        for p in entry.paths.iter_mut() {
            let selected = if self.multipath {
                let a = &p.path.attrs;
                a.local_pref == best_pref
                    && a.as_path_len == best_len
                    && ebgp_of(self.peers, p.peer) == best_ebgp
            } else {
                p.peer == best_peer
            };
            if selected != p.selected {
                p.selected = selected;
                if let Some(peer) = self.peers.get_mut(&p.peer) {
                    if selected {
                        peer.installed += 1;
                    } else {
                        peer.installed -= 1;
                    }
                }
            }
            if selected {
                next_hops.push(p.path.next_hop);
            }
        }
        next_hops.sort_unstable();
        next_hops.dedup();
        if entry.installed.as_deref() == Some(&next_hops[..]) {
            return None;
        }
        let new = self.next_hop_sets.intern(next_hops);
        if let Some(old) = entry.installed.replace(new) {
            self.next_hop_sets.release(old);
        }
        Some(FibChange {
            prefix,
            next_hops: next_hops.clone(),
        })
    }
}

fn ebgp_of(peers: &BTreeMap<PeerId, Peer>, peer: PeerId) -> bool {
    peers.get(&peer).is_some_and(|p| p.info.ebgp)
}

/// RFC 4271 9.1.2.2 as eliminations over `paths` (not empty); returns the index of the
/// best path. Uses and clobbers the `candidate` marks.
fn decide(
    paths: &mut [RibPath],
    peers: &BTreeMap<PeerId, Peer>,
    lowest_med: &mut Vec<(Option<u32>, u32)>,
) -> usize {
    if paths.len() == 1 {
        return 0;
    }
    for p in paths.iter_mut() {
        p.candidate = true;
    }
    keep_lowest(paths, |p| std::cmp::Reverse(p.path.attrs.local_pref));
    keep_lowest(paths, |p| p.path.attrs.as_path_len);
    keep_lowest(paths, |p| p.path.attrs.origin);
    keep_lowest_med_per_neighbor_as(paths, lowest_med);
    keep_lowest(paths, |p| !ebgp_of(peers, p.peer));
    let info = |p: &RibPath| peers.get(&p.peer).map(|peer| peer.info);
    keep_lowest(paths, |p| info(p).map(|i| i.router_id));
    keep_lowest(paths, |p| info(p).map(|i| (i.address, i.id)));
    paths
        .iter()
        .position(|p| p.candidate)
        .expect("the decision process always keeps one candidate")
}

/// Keeps the candidates whose `key` is the lowest among candidates.
fn keep_lowest<K: Ord>(paths: &mut [RibPath], key: impl Fn(&RibPath) -> K) {
    let Some(lowest) = paths.iter().filter(|p| p.candidate).map(&key).min() else {
        return;
    };
    for p in paths.iter_mut().filter(|p| p.candidate) {
        if key(p) != lowest {
            p.candidate = false;
        }
    }
}

/// RFC 4271 9.1.2.2 c): removes candidates whose MED is higher than the lowest MED among
/// candidates with the same neighbor AS.
fn keep_lowest_med_per_neighbor_as(paths: &mut [RibPath], lowest: &mut Vec<(Option<u32>, u32)>) {
    lowest.clear();
    for p in paths.iter().filter(|p| p.candidate) {
        let (asn, med) = (p.path.attrs.neighbor_as, p.path.attrs.med);
        match lowest.iter_mut().find(|(a, _)| *a == asn) {
            Some((_, m)) => *m = (*m).min(med),
            None => lowest.push((asn, med)),
        }
    }
    for p in paths.iter_mut().filter(|p| p.candidate) {
        let asn = p.path.attrs.neighbor_as;
        if lowest
            .iter()
            .any(|&(a, m)| a == asn && m < p.path.attrs.med)
        {
            p.candidate = false;
        }
    }
}

impl Rib {
    pub fn new(multipath: bool) -> Self {
        Rib {
            multipath,
            prefixes: HashMap::new(),
            peers: BTreeMap::new(),
            attrs: AttrsInterner::new(),
            next_hop_sets: NextHopSets::default(),
            scratch: Scratch::default(),
        }
    }

    fn split(&mut self) -> (&mut HashMap<IpNet, Entry>, Decider<'_>) {
        (
            &mut self.prefixes,
            Decider {
                peers: &mut self.peers,
                next_hop_sets: &mut self.next_hop_sets,
                scratch: &mut self.scratch,
                multipath: self.multipath,
            },
        )
    }

    /// Turns multipath on or off; returns the resulting changes, by prefix.
    pub fn set_multipath(&mut self, on: bool) -> Vec<FibChange> {
        if self.multipath == on {
            return Vec::new();
        }
        self.multipath = on;
        let (prefixes, mut decider) = self.split();
        let mut changes: Vec<FibChange> = prefixes
            .iter_mut()
            .filter(|(_, entry)| entry.paths.len() > 1)
            .filter_map(|(prefix, entry)| decider.update(*prefix, entry))
            .collect();
        changes.sort_unstable_by_key(|c| c.prefix);
        changes
    }

    /// A session came up. If `peer.id` is already known (a graceful restart: the same
    /// neighbor is back while its paths are stale), its paths are kept, and the decision is
    /// run again for them if what the decision uses (address, router id, kind) changed.
    pub fn add_peer(&mut self, peer: PeerInfo) -> Vec<FibChange> {
        match self.peers.get_mut(&peer.id) {
            None => {
                self.peers.insert(
                    peer.id,
                    Peer {
                        info: peer,
                        received: 0,
                        installed: 0,
                        stale: [0; 2],
                    },
                );
                Vec::new()
            }
            Some(known) if known.info == peer => Vec::new(),
            Some(known) => {
                known.info = peer;
                let mut left = known.received;
                let (prefixes, mut decider) = self.split();
                let mut changes = Vec::new();
                for (prefix, entry) in prefixes.iter_mut() {
                    if left == 0 {
                        break;
                    }
                    if entry.paths.iter().any(|p| p.peer == peer.id) {
                        left -= 1;
                        changes.extend(decider.update(*prefix, entry));
                    }
                }
                changes.sort_unstable_by_key(|c| c.prefix);
                changes
            }
        }
    }

    /// `peer` announces `path` to `prefix`, replacing its previous path there (and making it
    /// fresh if it was stale). Announcements from a peer that was not added are ignored.
    pub fn announce(&mut self, peer: PeerId, prefix: IpNet, path: Path) -> Option<FibChange> {
        let prefix = prefix.trunc();
        let state = self.peers.get_mut(&peer)?;
        let path = Path {
            next_hop: path.next_hop,
            attrs: self.attrs.intern(path.attrs),
        };
        let entry = self.prefixes.entry(prefix).or_insert_with(|| Entry {
            paths: Vec::with_capacity(1),
            installed: None,
        });
        match entry.paths.iter_mut().find(|p| p.peer == peer) {
            Some(known) => {
                if known.stale {
                    known.stale = false;
                    state.stale[Afi::of(&prefix).index()] -= 1;
                } else if known.path == path {
                    return None;
                }
                known.path = path;
            }
            None => {
                entry.paths.push(RibPath {
                    path,
                    peer,
                    stale: false,
                    selected: false,
                    candidate: false,
                });
                state.received += 1;
            }
        }
        let mut decider = Decider {
            peers: &mut self.peers,
            next_hop_sets: &mut self.next_hop_sets,
            scratch: &mut self.scratch,
            multipath: self.multipath,
        };
        decider.update(prefix, entry)
    }

    /// `peer` withdraws its path to `prefix`.
    pub fn withdraw(&mut self, peer: PeerId, prefix: IpNet) -> Option<FibChange> {
        let prefix = prefix.trunc();
        let (prefixes, mut decider) = self.split();
        let entry = prefixes.get_mut(&prefix)?;
        let i = entry.paths.iter().position(|p| p.peer == peer)?;
        forget(decider.peers, prefix, entry.paths.swap_remove(i));
        if entry.paths.capacity() > 4 && entry.paths.len() <= entry.paths.capacity() / 4 {
            entry.paths.shrink_to_fit();
        }
        let change = decider.update(prefix, entry);
        if entry.paths.is_empty() {
            prefixes.remove(&prefix);
        }
        change
    }

    /// The session is gone without graceful restart: all its paths go, and the id is
    /// forgotten (a later `add_peer` with it starts from nothing). Changes come by prefix.
    pub fn remove_peer(&mut self, peer: PeerId) -> Vec<FibChange> {
        let changes = self.remove_paths(peer, Removal::All);
        self.peers.remove(&peer);
        changes
    }

    /// Graceful restart (RFC 4724 4.2): the session is gone but its paths stay, marked
    /// stale, until it re-announces them or [`Rib::sweep_stale`] removes them. The installed
    /// routes do not change: stale paths compete as equals.
    pub fn mark_stale(&mut self, peer: PeerId) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let mut left = state.received - state.stale.iter().sum::<usize>();
        for (prefix, entry) in self.prefixes.iter_mut() {
            if left == 0 {
                break;
            }
            if let Some(p) = entry.paths.iter_mut().find(|p| p.peer == peer && !p.stale) {
                p.stale = true;
                state.stale[Afi::of(prefix).index()] += 1;
                left -= 1;
            }
        }
    }

    /// Removes `peer`'s paths that are still stale, in one family (End-of-RIB for it) or in
    /// both (`None`: the restart or stale timer ran out). Changes come by prefix.
    pub fn sweep_stale(&mut self, peer: PeerId, afi: Option<Afi>) -> Vec<FibChange> {
        self.remove_paths(peer, Removal::Stale(afi))
    }

    /// Removes `peer`'s paths that `which` names.
    fn remove_paths(&mut self, peer: PeerId, which: Removal) -> Vec<FibChange> {
        let Some(state) = self.peers.get(&peer) else {
            return Vec::new();
        };
        let (stale_only, afi) = match which {
            Removal::All => (false, None),
            Removal::Stale(afi) => (true, afi),
        };
        let in_family = |a: Afi| afi.is_none_or(|f| f == a);
        let mut left = match which {
            Removal::All => state.received,
            Removal::Stale(_) => [Afi::Ipv4, Afi::Ipv6]
                .into_iter()
                .filter(|a| in_family(*a))
                .map(|a| state.stale[a.index()])
                .sum(),
        };
        let (prefixes, mut decider) = self.split();
        let mut changes = Vec::new();
        let mut emptied = Vec::new();
        for (prefix, entry) in prefixes.iter_mut() {
            if left == 0 {
                break;
            }
            if !in_family(Afi::of(prefix)) {
                continue;
            }
            let Some(i) = entry
                .paths
                .iter()
                .position(|p| p.peer == peer && (p.stale || !stale_only))
            else {
                continue;
            };
            left -= 1;
            forget(decider.peers, *prefix, entry.paths.swap_remove(i));
            changes.extend(decider.update(*prefix, entry));
            if entry.paths.is_empty() {
                emptied.push(*prefix);
            }
        }
        for prefix in emptied {
            prefixes.remove(&prefix);
        }
        changes.sort_unstable_by_key(|c| c.prefix);
        changes
    }

    /// The next hops installed for `prefix`, if any.
    pub fn best(&self, prefix: &IpNet) -> Option<&[NextHop]> {
        self.prefixes.get(&prefix.trunc())?.installed.as_deref()
    }

    /// The desired FIB: every prefix with its installed next hops, in no particular order.
    pub fn installed(&self) -> impl Iterator<Item = (&IpNet, &[NextHop])> {
        self.prefixes
            .iter()
            .filter_map(|(prefix, entry)| Some((prefix, entry.installed.as_deref()?)))
    }

    /// Route counts for `peer`; zeros for an unknown peer.
    pub fn peer_counts(&self, peer: PeerId) -> PeerCounts {
        self.peers
            .get(&peer)
            .map(|p| PeerCounts {
                received: p.received,
                installed: p.installed,
            })
            .unwrap_or_default()
    }

    /// Prefixes with at least one path.
    pub fn len(&self) -> usize {
        self.prefixes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }
}

/// Which of a peer's paths [`Rib::remove_paths`] removes.
#[derive(Clone, Copy)]
enum Removal {
    All,
    /// The stale ones, in one family or (`None`) both.
    Stale(Option<Afi>),
}

/// Takes a path that left the RIB off its peer's counts.
fn forget(peers: &mut BTreeMap<PeerId, Peer>, prefix: IpNet, path: RibPath) {
    if let Some(state) = peers.get_mut(&path.peer) {
        state.received -= 1;
        if path.selected {
            state.installed -= 1;
        }
        if path.stale {
            state.stale[Afi::of(&prefix).index()] -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn hop(gateway: &str) -> NextHop {
        NextHop {
            gateway: gateway.parse().unwrap(),
            ifindex: Some(7),
        }
    }

    fn peer(id: PeerId, address: &str, router_id: &str, ebgp: bool) -> PeerInfo {
        PeerInfo {
            id,
            address: address.parse().unwrap(),
            router_id: router_id.parse().unwrap(),
            ebgp,
        }
    }

    /// An iBGP Cilium node whose router id and address both grow with `id`.
    fn node(id: PeerId) -> PeerInfo {
        peer(
            id,
            &format!("192.0.2.{id}"),
            &format!("198.51.100.{id}"),
            false,
        )
    }

    fn path(gateway: &str, attrs: PathAttrs) -> Path {
        Path {
            next_hop: hop(gateway),
            attrs: Arc::new(attrs),
        }
    }

    /// What a Cilium node sends over iBGP, via `gateway`.
    fn cilium(gateway: &str) -> Path {
        path(gateway, PathAttrs::default())
    }

    fn change(prefix: &str, gateways: &[&str]) -> FibChange {
        FibChange {
            prefix: net(prefix),
            next_hops: gateways.iter().map(|g| hop(g)).collect(),
        }
    }

    fn hops(gateways: &[&str]) -> Vec<NextHop> {
        gateways.iter().map(|g| hop(g)).collect()
    }

    /// The best path's next hop for one prefix announced by `candidates` (multipath off),
    /// checked to be the same for every arrival order.
    fn winner(candidates: &[(PeerInfo, Path)]) -> NextHop {
        let n = candidates.len();
        let mut winners = Vec::new();
        // Rotations and their reversals: every order for up to three candidates.
        for rotation in 0..n {
            for reversed in [false, true] {
                let mut order: Vec<usize> = (0..n).map(|i| (i + rotation) % n).collect();
                if reversed {
                    order.reverse();
                }
                let mut rib = Rib::new(false);
                for &i in &order {
                    rib.add_peer(candidates[i].0);
                    rib.announce(
                        candidates[i].0.id,
                        net("10.0.0.0/24"),
                        candidates[i].1.clone(),
                    );
                }
                let best = rib.best(&net("10.0.0.0/24")).unwrap();
                assert_eq!(best.len(), 1);
                winners.push(best[0]);
            }
        }
        assert!(
            winners.iter().all(|w| *w == winners[0]),
            "arrival order changed the best path: {winners:?}"
        );
        winners[0]
    }

    // The decision process, one step at a time. In each test the path that should win
    // loses every later step, so the step under test is the one deciding.

    #[test]
    fn higher_local_pref_wins_before_every_other_step() {
        let worse_later = PathAttrs {
            local_pref: 200,
            as_path_len: 3,
            neighbor_as: Some(65001),
            origin: 2,
            med: 100,
        };
        let best = winner(&[
            (
                peer(1, "192.0.2.1", "198.51.100.1", true),
                path("192.0.2.1", PathAttrs::default()),
            ),
            (
                peer(2, "192.0.2.2", "198.51.100.2", false),
                path("192.0.2.2", worse_later),
            ),
        ]);
        assert_eq!(best, hop("192.0.2.2"));
    }

    #[test]
    fn shorter_as_path_wins_when_local_pref_ties() {
        let long = PathAttrs {
            as_path_len: 2,
            neighbor_as: Some(65001),
            ..PathAttrs::default()
        };
        let short = PathAttrs {
            as_path_len: 1,
            neighbor_as: Some(65001),
            origin: 2,
            med: 100,
            ..PathAttrs::default()
        };
        let best = winner(&[
            (
                peer(1, "192.0.2.1", "198.51.100.1", true),
                path("192.0.2.1", long),
            ),
            (
                peer(2, "192.0.2.2", "198.51.100.2", false),
                path("192.0.2.2", short),
            ),
        ]);
        assert_eq!(best, hop("192.0.2.2"));
    }

    #[test]
    fn lower_origin_wins_when_as_path_length_ties() {
        let incomplete = PathAttrs {
            origin: 2,
            ..PathAttrs::default()
        };
        let egp = PathAttrs {
            origin: 1,
            med: 100,
            ..PathAttrs::default()
        };
        let best = winner(&[
            (
                peer(1, "192.0.2.1", "198.51.100.1", true),
                path("192.0.2.1", incomplete),
            ),
            (
                peer(2, "192.0.2.2", "198.51.100.2", false),
                path("192.0.2.2", egp),
            ),
        ]);
        assert_eq!(best, hop("192.0.2.2"));
    }

    #[test]
    fn lower_med_wins_among_paths_from_the_same_neighbor_as() {
        let med = |med| PathAttrs {
            as_path_len: 1,
            neighbor_as: Some(65001),
            med,
            ..PathAttrs::default()
        };
        let best = winner(&[
            (
                peer(1, "192.0.2.1", "198.51.100.1", true),
                path("192.0.2.1", med(10)),
            ),
            (
                peer(2, "192.0.2.2", "198.51.100.2", false),
                path("192.0.2.2", med(5)),
            ),
        ]);
        assert_eq!(best, hop("192.0.2.2"));
    }

    #[test]
    fn med_is_not_compared_between_different_neighbor_as() {
        let from = |asn, med| PathAttrs {
            as_path_len: 1,
            neighbor_as: Some(asn),
            med,
            ..PathAttrs::default()
        };
        let best = winner(&[
            (
                peer(1, "192.0.2.1", "198.51.100.1", true),
                path("192.0.2.1", from(65001, 10)),
            ),
            (
                peer(2, "192.0.2.2", "198.51.100.2", true),
                path("192.0.2.2", from(65002, 5)),
            ),
        ]);
        assert_eq!(best, hop("192.0.2.1"), "the router id decides, not MED");
    }

    #[test]
    fn paths_with_an_empty_as_path_compare_med_as_from_the_local_as() {
        let med = |med| PathAttrs {
            med,
            ..PathAttrs::default()
        };
        let best = winner(&[
            (node(1), path("192.0.2.1", med(10))),
            (node(2), path("192.0.2.2", med(5))),
        ]);
        assert_eq!(best, hop("192.0.2.2"));
    }

    #[test]
    fn ebgp_wins_over_ibgp_when_med_ties() {
        let attrs = PathAttrs {
            as_path_len: 1,
            neighbor_as: Some(65001),
            ..PathAttrs::default()
        };
        let best = winner(&[
            (
                peer(1, "192.0.2.1", "198.51.100.1", false),
                path("192.0.2.1", attrs.clone()),
            ),
            (
                peer(2, "192.0.2.2", "198.51.100.2", true),
                path("192.0.2.2", attrs),
            ),
        ]);
        assert_eq!(best, hop("192.0.2.2"));
    }

    #[test]
    fn lowest_router_id_wins_when_the_kind_ties() {
        let best = winner(&[
            (
                peer(1, "192.0.2.1", "198.51.100.9", false),
                cilium("192.0.2.1"),
            ),
            (
                peer(2, "192.0.2.2", "198.51.100.2", false),
                cilium("192.0.2.2"),
            ),
        ]);
        assert_eq!(best, hop("192.0.2.2"));
    }

    #[test]
    fn lowest_peer_address_breaks_a_router_id_tie() {
        let best = winner(&[
            (
                peer(1, "192.0.2.9", "198.51.100.1", false),
                cilium("192.0.2.9"),
            ),
            (
                peer(2, "192.0.2.2", "198.51.100.1", false),
                cilium("192.0.2.2"),
            ),
        ]);
        assert_eq!(best, hop("192.0.2.2"));
    }

    #[test]
    fn the_best_path_does_not_depend_on_arrival_order_when_med_comparisons_cycle() {
        // Pairwise, a beats b (router id), b beats c (router id), c beats a (MED, same AS):
        // compared one pair at a time the result would depend on the order. RFC 4271's
        // elimination drops a on MED first, then b wins on router id.
        let from = |asn, med| PathAttrs {
            as_path_len: 1,
            neighbor_as: Some(asn),
            med,
            ..PathAttrs::default()
        };
        let best = winner(&[
            (
                peer(1, "192.0.2.1", "198.51.100.1", true),
                path("192.0.2.1", from(65001, 20)),
            ),
            (
                peer(2, "192.0.2.2", "198.51.100.2", true),
                path("192.0.2.2", from(65002, 10)),
            ),
            (
                peer(3, "192.0.2.3", "198.51.100.3", true),
                path("192.0.2.3", from(65001, 10)),
            ),
        ]);
        assert_eq!(best, hop("192.0.2.2"));
    }

    #[test]
    fn stale_paths_compete_as_equals_with_fresh_ones() {
        let mut rib = Rib::new(false);
        rib.add_peer(node(1));
        rib.add_peer(node(2));
        rib.announce(1, net("10.0.0.0/24"), cilium("192.0.2.1"));
        rib.mark_stale(1);
        assert_eq!(
            rib.announce(2, net("10.0.0.0/24"), cilium("192.0.2.2")),
            None
        );
        assert_eq!(
            rib.best(&net("10.0.0.0/24")),
            Some(&hops(&["192.0.2.1"])[..])
        );
    }

    // ECMP.

    #[test]
    fn nodes_announcing_a_host_route_give_one_next_hop_each_as_they_come_and_go() {
        for (prefix, [a, b, c]) in [
            ("198.51.100.80/32", ["192.0.2.1", "192.0.2.2", "192.0.2.3"]),
            (
                "2001:db8:ff::80/128",
                ["2001:db8::1", "2001:db8::2", "2001:db8::3"],
            ),
        ] {
            let mut rib = Rib::new(true);
            for (id, address) in [(1, a), (2, b), (3, c)] {
                rib.add_peer(peer(id, address, &format!("198.51.100.{id}"), false));
            }
            let p = net(prefix);
            assert_eq!(rib.announce(1, p, cilium(a)), Some(change(prefix, &[a])));
            assert_eq!(rib.announce(2, p, cilium(b)), Some(change(prefix, &[a, b])));
            assert_eq!(rib.withdraw(2, p), Some(change(prefix, &[a])));
            assert_eq!(rib.announce(3, p, cilium(c)), Some(change(prefix, &[a, c])));
            assert_eq!(
                rib.announce(2, p, cilium(b)),
                Some(change(prefix, &[a, b, c]))
            );
            assert_eq!(rib.best(&p), Some(&hops(&[a, b, c])[..]));
        }
    }

    #[test]
    fn origin_and_med_differences_do_not_break_ecmp() {
        let p = net("198.51.100.80/32");
        let incomplete = PathAttrs {
            origin: 2,
            med: 50,
            ..PathAttrs::default()
        };
        for multipath in [true, false] {
            let mut rib = Rib::new(multipath);
            rib.add_peer(node(1));
            rib.add_peer(node(2));
            rib.announce(1, p, path("192.0.2.1", incomplete.clone()));
            rib.announce(2, p, cilium("192.0.2.2"));
            let expected = if multipath {
                hops(&["192.0.2.1", "192.0.2.2"])
            } else {
                hops(&["192.0.2.2"])
            };
            assert_eq!(rib.best(&p), Some(&expected[..]), "multipath {multipath}");
        }
    }

    #[test]
    fn local_pref_as_path_length_or_kind_differences_leave_a_path_out_of_ecmp() {
        let p = net("10.0.0.0/24");
        let base = PathAttrs {
            as_path_len: 1,
            neighbor_as: Some(65001),
            ..PathAttrs::default()
        };
        let lower_pref = PathAttrs {
            local_pref: 50,
            ..base.clone()
        };
        let longer = PathAttrs {
            as_path_len: 2,
            ..base.clone()
        };
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        rib.add_peer(node(2));
        rib.add_peer(node(3));
        rib.add_peer(peer(4, "192.0.2.4", "198.51.100.4", true));
        rib.announce(1, p, path("192.0.2.1", base.clone()));
        assert_eq!(rib.announce(2, p, path("192.0.2.2", lower_pref)), None);
        assert_eq!(rib.announce(3, p, path("192.0.2.3", longer)), None);
        assert_eq!(
            rib.announce(4, p, path("192.0.2.4", base)),
            Some(change("10.0.0.0/24", &["192.0.2.4"])),
            "the eBGP path wins and the iBGP one is not its equal"
        );
    }

    #[test]
    fn peers_with_the_same_next_hop_give_one_next_hop() {
        let p = net("198.51.100.80/32");
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        rib.add_peer(node(2));
        rib.add_peer(node(3));
        rib.announce(1, p, cilium("fe80::1"));
        assert_eq!(rib.announce(2, p, cilium("fe80::1")), None);
        assert_eq!(rib.best(&p), Some(&hops(&["fe80::1"])[..]));
        let other_link = Path {
            next_hop: NextHop {
                gateway: "fe80::1".parse().unwrap(),
                ifindex: Some(8),
            },
            attrs: Arc::new(PathAttrs::default()),
        };
        let change = rib.announce(3, p, other_link.clone()).unwrap();
        assert_eq!(change.next_hops, vec![hop("fe80::1"), other_link.next_hop]);
    }

    #[test]
    fn multipath_off_installs_only_the_best_next_hop() {
        let p = net("198.51.100.80/32");
        let mut rib = Rib::new(false);
        for id in [3, 1, 2] {
            rib.add_peer(node(id));
        }
        assert_eq!(
            rib.announce(3, p, cilium("192.0.2.3")),
            Some(change("198.51.100.80/32", &["192.0.2.3"]))
        );
        assert_eq!(
            rib.announce(1, p, cilium("192.0.2.1")),
            Some(change("198.51.100.80/32", &["192.0.2.1"]))
        );
        assert_eq!(rib.announce(2, p, cilium("192.0.2.2")), None);
        assert_eq!(
            rib.withdraw(1, p),
            Some(change("198.51.100.80/32", &["192.0.2.2"]))
        );
    }

    #[test]
    fn toggling_multipath_changes_only_prefixes_with_several_paths() {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        rib.add_peer(node(2));
        for prefix in ["198.51.100.80/32", "2001:db8:ff::80/128"] {
            rib.announce(1, net(prefix), cilium("192.0.2.1"));
            rib.announce(2, net(prefix), cilium("192.0.2.2"));
        }
        rib.announce(2, net("10.0.2.0/24"), cilium("192.0.2.2"));
        assert_eq!(
            rib.set_multipath(false),
            vec![
                change("198.51.100.80/32", &["192.0.2.1"]),
                change("2001:db8:ff::80/128", &["192.0.2.1"]),
            ]
        );
        assert_eq!(rib.set_multipath(false), vec![]);
        assert_eq!(
            rib.set_multipath(true),
            vec![
                change("198.51.100.80/32", &["192.0.2.1", "192.0.2.2"]),
                change("2001:db8:ff::80/128", &["192.0.2.1", "192.0.2.2"]),
            ]
        );
        assert_eq!(
            rib.best(&net("10.0.2.0/24")),
            Some(&hops(&["192.0.2.2"])[..])
        );
    }

    // Incremental output.

    #[test]
    fn re_announcing_the_same_path_changes_nothing() {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        let p = net("10.0.1.0/24");
        assert!(rib.announce(1, p, cilium("192.0.2.1")).is_some());
        assert_eq!(rib.announce(1, p, cilium("192.0.2.1")), None);
        let same_next_hop_other_med = path(
            "192.0.2.1",
            PathAttrs {
                med: 7,
                ..PathAttrs::default()
            },
        );
        assert_eq!(rib.announce(1, p, same_next_hop_other_med), None);
        assert_eq!(rib.peer_counts(1).received, 1);
    }

    #[test]
    fn a_path_that_loses_the_decision_changes_nothing() {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        rib.add_peer(node(2));
        let p = net("10.0.1.0/24");
        rib.announce(1, p, cilium("192.0.2.1"));
        let lower_pref = PathAttrs {
            local_pref: 50,
            ..PathAttrs::default()
        };
        assert_eq!(rib.announce(2, p, path("192.0.2.2", lower_pref)), None);
        assert_eq!(rib.withdraw(2, p), None);
        assert_eq!(rib.best(&p), Some(&hops(&["192.0.2.1"])[..]));
    }

    #[test]
    fn withdrawing_what_was_never_announced_changes_nothing() {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        rib.add_peer(node(2));
        rib.announce(1, net("10.0.1.0/24"), cilium("192.0.2.1"));
        assert_eq!(rib.withdraw(1, net("10.0.9.0/24")), None);
        assert_eq!(rib.withdraw(2, net("10.0.1.0/24")), None);
        assert_eq!(rib.withdraw(9, net("10.0.1.0/24")), None);
        assert_eq!(rib.len(), 1);
    }

    #[test]
    fn withdrawing_the_last_path_removes_the_route() {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        rib.announce(1, net("10.0.1.0/24"), cilium("192.0.2.1"));
        assert_eq!(
            rib.withdraw(1, net("10.0.1.0/24")),
            Some(change("10.0.1.0/24", &[]))
        );
        assert_eq!(rib.best(&net("10.0.1.0/24")), None);
        assert!(rib.is_empty());
        assert_eq!(rib.installed().count(), 0);
    }

    #[test]
    fn a_new_announcement_replaces_the_peers_previous_path() {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        rib.announce(1, net("10.0.1.0/24"), cilium("192.0.2.1"));
        assert_eq!(
            rib.announce(1, net("10.0.1.0/24"), cilium("192.0.2.101")),
            Some(change("10.0.1.0/24", &["192.0.2.101"]))
        );
        assert_eq!(
            rib.peer_counts(1),
            PeerCounts {
                received: 1,
                installed: 1
            }
        );
    }

    #[test]
    fn announcements_from_a_peer_that_was_not_added_are_ignored() {
        let mut rib = Rib::new(true);
        assert_eq!(
            rib.announce(1, net("10.0.1.0/24"), cilium("192.0.2.1")),
            None
        );
        assert!(rib.is_empty());
    }

    #[test]
    fn prefixes_are_kept_without_host_bits() {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        assert_eq!(
            rib.announce(1, net("10.0.1.7/24"), cilium("192.0.2.1")),
            Some(change("10.0.1.0/24", &["192.0.2.1"]))
        );
        assert!(rib.best(&net("10.0.1.0/24")).is_some());
        assert_eq!(
            rib.withdraw(1, net("10.0.1.9/24")),
            Some(change("10.0.1.0/24", &[]))
        );
    }

    #[test]
    fn installed_lists_the_desired_fib() {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        rib.add_peer(node(2));
        rib.announce(1, net("10.0.1.0/24"), cilium("192.0.2.1"));
        rib.announce(2, net("10.0.1.0/24"), cilium("192.0.2.2"));
        rib.announce(2, net("2001:db8:2::/64"), cilium("2001:db8::2"));
        let mut fib: Vec<(IpNet, Vec<NextHop>)> =
            rib.installed().map(|(p, h)| (*p, h.to_vec())).collect();
        fib.sort();
        assert_eq!(
            fib,
            vec![
                (net("10.0.1.0/24"), hops(&["192.0.2.1", "192.0.2.2"])),
                (net("2001:db8:2::/64"), hops(&["2001:db8::2"])),
            ]
        );
    }

    // Sessions going away.

    #[test]
    fn removing_a_peer_removes_its_paths_and_falls_back_to_the_others() {
        let mut rib = Rib::new(false);
        rib.add_peer(node(1));
        rib.add_peer(node(2));
        rib.announce(1, net("10.0.1.0/24"), cilium("192.0.2.1"));
        rib.announce(2, net("10.0.1.0/24"), cilium("192.0.2.2"));
        rib.announce(1, net("2001:db8:1::/64"), cilium("2001:db8::1"));
        rib.announce(2, net("10.0.2.0/24"), cilium("192.0.2.2"));
        assert_eq!(
            rib.remove_peer(1),
            vec![
                change("10.0.1.0/24", &["192.0.2.2"]),
                change("2001:db8:1::/64", &[]),
            ]
        );
        assert_eq!(rib.len(), 2);
        assert_eq!(rib.peer_counts(1), PeerCounts::default());
        assert_eq!(
            rib.peer_counts(2),
            PeerCounts {
                received: 2,
                installed: 2
            }
        );
        assert_eq!(rib.remove_peer(1), vec![]);
    }

    #[test]
    fn a_removed_peer_id_starts_from_nothing_when_added_again() {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        rib.announce(1, net("10.0.1.0/24"), cilium("192.0.2.1"));
        rib.remove_peer(1);
        assert_eq!(
            rib.announce(1, net("10.0.2.0/24"), cilium("192.0.2.1")),
            None
        );
        assert_eq!(rib.add_peer(node(1)), vec![]);
        assert_eq!(rib.withdraw(1, net("10.0.1.0/24")), None);
        assert!(
            rib.announce(1, net("10.0.2.0/24"), cilium("192.0.2.1"))
                .is_some()
        );
        assert_eq!(
            rib.peer_counts(1),
            PeerCounts {
                received: 1,
                installed: 1
            }
        );
    }

    // Graceful restart.

    fn restarting_rib() -> Rib {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        rib.announce(1, net("10.0.1.0/24"), cilium("192.0.2.1"));
        rib.announce(1, net("10.0.2.0/24"), cilium("192.0.2.1"));
        rib.announce(1, net("2001:db8:1::/64"), cilium("2001:db8::1"));
        rib.announce(1, net("2001:db8:2::/64"), cilium("2001:db8::1"));
        rib.mark_stale(1);
        rib
    }

    #[test]
    fn stale_paths_stay_installed_until_swept() {
        let mut rib = restarting_rib();
        assert_eq!(rib.len(), 4);
        assert_eq!(
            rib.peer_counts(1),
            PeerCounts {
                received: 4,
                installed: 4
            }
        );
        assert_eq!(
            rib.best(&net("10.0.1.0/24")),
            Some(&hops(&["192.0.2.1"])[..])
        );
        assert_eq!(
            rib.sweep_stale(1, None),
            vec![
                change("10.0.1.0/24", &[]),
                change("10.0.2.0/24", &[]),
                change("2001:db8:1::/64", &[]),
                change("2001:db8:2::/64", &[]),
            ]
        );
        assert!(rib.is_empty());
        assert_eq!(rib.peer_counts(1), PeerCounts::default());
    }

    #[test]
    fn end_of_rib_sweeps_only_its_family() {
        let mut rib = restarting_rib();
        assert_eq!(
            rib.sweep_stale(1, Some(Afi::Ipv4)),
            vec![change("10.0.1.0/24", &[]), change("10.0.2.0/24", &[])]
        );
        assert_eq!(rib.len(), 2);
        assert_eq!(
            rib.sweep_stale(1, Some(Afi::Ipv6)),
            vec![
                change("2001:db8:1::/64", &[]),
                change("2001:db8:2::/64", &[])
            ]
        );
        assert!(rib.is_empty());
    }

    #[test]
    fn re_announced_paths_survive_the_sweep() {
        let mut rib = restarting_rib();
        assert_eq!(rib.add_peer(node(1)), vec![]);
        assert_eq!(
            rib.announce(1, net("10.0.1.0/24"), cilium("192.0.2.1")),
            None
        );
        assert_eq!(
            rib.announce(1, net("2001:db8:2::/64"), cilium("2001:db8::101")),
            Some(change("2001:db8:2::/64", &["2001:db8::101"]))
        );
        assert_eq!(
            rib.sweep_stale(1, None),
            vec![change("10.0.2.0/24", &[]), change("2001:db8:1::/64", &[])]
        );
        assert_eq!(
            rib.peer_counts(1),
            PeerCounts {
                received: 2,
                installed: 2
            }
        );
        assert_eq!(rib.sweep_stale(1, None), vec![]);
    }

    #[test]
    fn sweeping_a_peer_without_stale_paths_changes_nothing() {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        rib.announce(1, net("10.0.1.0/24"), cilium("192.0.2.1"));
        assert_eq!(rib.sweep_stale(1, None), vec![]);
        assert_eq!(rib.sweep_stale(9, None), vec![]);
        assert_eq!(rib.len(), 1);
    }

    #[test]
    fn marking_stale_twice_marks_each_path_once() {
        let mut rib = restarting_rib();
        rib.mark_stale(1);
        assert_eq!(rib.peers[&1].stale, [2, 2]);
        rib.announce(1, net("10.0.1.0/24"), cilium("192.0.2.1"));
        rib.withdraw(1, net("2001:db8:1::/64"));
        assert_eq!(rib.peers[&1].stale, [1, 1]);
        assert_eq!(rib.sweep_stale(1, None).len(), 2);
        assert_eq!(rib.peers[&1].stale, [0, 0]);
    }

    #[test]
    fn a_returning_peer_with_another_router_id_is_decided_again() {
        let mut rib = Rib::new(false);
        rib.add_peer(node(1));
        rib.add_peer(node(2));
        rib.announce(1, net("10.0.1.0/24"), cilium("192.0.2.1"));
        rib.announce(2, net("10.0.1.0/24"), cilium("192.0.2.2"));
        rib.announce(1, net("10.0.3.0/24"), cilium("192.0.2.1"));
        rib.mark_stale(1);
        let higher_router_id = peer(1, "192.0.2.1", "198.51.100.9", false);
        assert_eq!(
            rib.add_peer(higher_router_id),
            vec![change("10.0.1.0/24", &["192.0.2.2"])]
        );
        assert_eq!(
            rib.peer_counts(1),
            PeerCounts {
                received: 2,
                installed: 1
            }
        );
    }

    // Counts.

    #[test]
    fn peer_counts_follow_received_and_selected_paths() {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        rib.add_peer(node(2));
        rib.add_peer(node(3));
        rib.announce(1, net("10.0.1.0/24"), cilium("192.0.2.1"));
        rib.announce(2, net("10.0.1.0/24"), cilium("192.0.2.2"));
        rib.announce(3, net("10.0.1.0/24"), cilium("192.0.2.2"));
        rib.announce(1, net("10.0.2.0/24"), cilium("192.0.2.1"));
        assert_eq!(
            rib.peer_counts(1),
            PeerCounts {
                received: 2,
                installed: 2
            }
        );
        assert_eq!(
            rib.peer_counts(2),
            PeerCounts {
                received: 1,
                installed: 1
            }
        );
        assert_eq!(
            rib.peer_counts(3),
            PeerCounts {
                received: 1,
                installed: 1
            }
        );
        rib.set_multipath(false);
        assert_eq!(
            rib.peer_counts(1),
            PeerCounts {
                received: 2,
                installed: 2
            }
        );
        assert_eq!(
            rib.peer_counts(2),
            PeerCounts {
                received: 1,
                installed: 0
            }
        );
        rib.withdraw(1, net("10.0.1.0/24"));
        assert_eq!(
            rib.peer_counts(1),
            PeerCounts {
                received: 1,
                installed: 1
            }
        );
        assert_eq!(
            rib.peer_counts(2),
            PeerCounts {
                received: 1,
                installed: 1
            }
        );
        assert_eq!(
            rib.peer_counts(3),
            PeerCounts {
                received: 1,
                installed: 0
            }
        );
        assert_eq!(rib.peer_counts(9), PeerCounts::default());
    }

    // Sharing.

    #[test]
    fn prefixes_with_the_same_next_hops_share_one_set_until_the_last_goes() {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        rib.add_peer(node(2));
        for prefix in ["10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"] {
            rib.announce(1, net(prefix), cilium("192.0.2.1"));
            rib.announce(2, net(prefix), cilium("192.0.2.2"));
        }
        assert_eq!(rib.next_hop_sets.0.len(), 1);
        let first = rib.prefixes[&net("10.0.1.0/24")].installed.clone().unwrap();
        let third = rib.prefixes[&net("10.0.3.0/24")].installed.clone().unwrap();
        assert!(Arc::ptr_eq(&first, &third));
        drop((first, third));
        rib.remove_peer(2);
        assert_eq!(rib.next_hop_sets.0.len(), 1);
        rib.remove_peer(1);
        assert!(rib.next_hop_sets.0.is_empty());
    }

    #[test]
    fn equal_attributes_from_separate_updates_are_held_once() {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        for i in 0..10u8 {
            let prefix = IpNet::new(IpAddr::from([10, 0, i, 0]), 24).unwrap();
            rib.announce(1, prefix, cilium("192.0.2.1"));
        }
        assert_eq!(rib.attrs.set.len(), 1);
    }

    #[test]
    fn attribute_values_no_path_uses_are_dropped_from_the_interner() {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        for med in 0..3000 {
            let attrs = PathAttrs {
                med,
                ..PathAttrs::default()
            };
            rib.announce(1, net("10.0.1.0/24"), path("192.0.2.1", attrs));
        }
        assert!(
            rib.attrs.set.len() <= ATTRS_MIN_SWEEP,
            "{}",
            rib.attrs.set.len()
        );
        let in_use = &rib.prefixes[&net("10.0.1.0/24")].paths[0].path.attrs;
        assert_eq!(in_use.med, 2999);
        assert!(rib.attrs.set.contains(&**in_use));
    }

    #[test]
    fn a_hundred_thousand_prefixes_from_two_peers_keep_consistent_counts() {
        const N: u32 = 100_000;
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        rib.add_peer(node(2));
        let prefix = |i: u32| IpNet::new(IpAddr::from((10 << 24 | i).to_be_bytes()), 32).unwrap();
        let mut changes = 0;
        for i in 0..N {
            changes += usize::from(rib.announce(1, prefix(i), cilium("192.0.2.1")).is_some());
        }
        for i in (0..N).step_by(2) {
            changes += usize::from(rib.announce(2, prefix(i), cilium("192.0.2.2")).is_some());
        }
        assert_eq!(changes, 150_000);
        assert_eq!(rib.len(), N as usize);
        assert_eq!(
            rib.peer_counts(1),
            PeerCounts {
                received: 100_000,
                installed: 100_000
            }
        );
        assert_eq!(
            rib.peer_counts(2),
            PeerCounts {
                received: 50_000,
                installed: 50_000
            }
        );
        assert_eq!(
            rib.installed().filter(|(_, h)| h.len() == 2).count(),
            50_000
        );
        assert_eq!(rib.attrs.set.len(), 1);
        assert_eq!(rib.next_hop_sets.0.len(), 2);

        let gone = rib.remove_peer(2);
        assert_eq!(gone.len(), 50_000);
        assert!(gone.iter().all(|c| c.next_hops == hops(&["192.0.2.1"])));
        assert_eq!(rib.next_hop_sets.0.len(), 1);
        rib.mark_stale(1);
        assert_eq!(rib.sweep_stale(1, Some(Afi::Ipv6)), vec![]);
        let swept = rib.sweep_stale(1, Some(Afi::Ipv4));
        assert_eq!(swept.len(), 100_000);
        assert!(swept.windows(2).all(|w| w[0].prefix < w[1].prefix));
        assert!(rib.is_empty());
        assert!(rib.next_hop_sets.0.is_empty());
        assert_eq!(rib.peer_counts(1), PeerCounts::default());
    }
}
