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
        let best_attrs = Arc::clone(&entry.paths[best].path.attrs);
        let best_ebgp = self.ebgp(entry.paths[best].peer);
        let next_hops = &mut self.scratch.next_hops;
        next_hops.clear();
        for (i, p) in entry.paths.iter_mut().enumerate() {
            let selected = if self.multipath {
                let a = &p.path.attrs;
                a.local_pref == best_attrs.local_pref
                    && a.as_path_len == best_attrs.as_path_len
                    && ebgp_of(self.peers, p.peer) == best_ebgp
            } else {
                i == best
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

    fn ebgp(&self, peer: PeerId) -> bool {
        ebgp_of(self.peers, peer)
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
