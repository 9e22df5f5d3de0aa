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
//! next hop. An ECMP set takes at most `max_paths` paths (`kernel.max_paths`, like BIRD's
//! `merge paths limit` and FRR's `maximum-paths`): the best path, then the lowest router
//! ids (then addresses). With multipath off, only the best path's next hop is installed.
//!
//! A [`FibChange`] is emitted only when the installed next-hop set of a prefix changes.
//!
//! # Memory and CPU
//!
//! A pod CIDR has one path (its node's), and the RIB is laid out for that: one hash table
//! per family, keyed by the prefix, whose 16-byte entry holds the single path inline (peer,
//! next hop and attributes as `u32` handles, flags); only a prefix with several paths (a
//! LoadBalancer IP) gets a heap allocation. Next-hop sets and attribute sets are interned
//! with reference counts, so each distinct value is held once and leaves when the last path
//! using it goes; a single next hop is itself a set, so a path's next hop is also its
//! prefix's installed set and [`FibChange`]s share it instead of copying. Announce and
//! withdraw, the hot path for 200,000+ prefixes, are O(1); displays and bulk changes sort
//! what they return. The tables hash with foldhash, seeded per process.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::collections::hash_map::{Entry as MapEntry, HashMap};
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use foldhash::fast::RandomState;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

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

/// A set of next hops, sorted, without duplicates; shared, so passing it on is cheap.
pub type NextHops = Arc<[NextHop]>;

/// Desired kernel state for one prefix after a change: empty `next_hops` removes the route.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FibChange {
    pub prefix: IpNet,
    pub next_hops: NextHops,
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

type Table<K> = HashMap<K, Entry, RandomState>;

/// The Loc-RIB: see the module documentation.
#[derive(Debug)]
pub struct Rib {
    v4: Table<Ipv4Net>,
    v6: Table<Ipv6Net>,
    shared: Shared,
}

/// Everything but the prefix tables: what the decision process and the bookkeeping of
/// every entry need.
#[derive(Debug)]
struct Shared {
    multipath: bool,
    /// The most paths an ECMP route gets (`kernel.max_paths`).
    max_paths: usize,
    peers: BTreeMap<PeerId, Peer>,
    /// Next-hop sets: every path's next hop (as a set of one) and every installed ECMP set.
    sets: Interner<NextHops>,
    attrs: Interner<PathAttrs>,
    scratch: Scratch,
    empty: NextHops,
}

#[derive(Debug)]
struct Peer {
    info: PeerInfo,
    received: usize,
    installed: usize,
    /// Stale paths, per family (`Afi::index`).
    stale: [usize; 2],
}

/// A handle to an interned value.
type Handle = u32;

/// A path as the RIB keeps it: 16 bytes.
#[derive(Clone, Copy, Debug)]
struct RibPath {
    peer: PeerId,
    /// The next hop, as a set of one in `Shared::sets`.
    next_hop: Handle,
    attrs: Handle,
    stale: bool,
    /// In the installed set (the best path, or one of the ECMP set).
    selected: bool,
    /// Still in the running during the decision process; meaningless outside it.
    candidate: bool,
}

/// A prefix's paths: inline when there is one (it is then selected, and its next hop is the
/// installed set), on the heap when there are more.
#[derive(Debug)]
enum Entry {
    One(RibPath),
    Many(Box<Many>),
}

#[derive(Debug)]
struct Many {
    /// At least two, at most one per peer, in no particular order.
    paths: Vec<RibPath>,
    /// The installed set, in `Shared::sets`.
    installed: Handle,
}

/// Reused buffers, so that the decision process does not allocate.
#[derive(Debug, Default)]
struct Scratch {
    next_hops: Vec<NextHop>,
    /// Lowest MED per neighbor AS.
    lowest_med: Vec<(Option<u32>, u32)>,
}

/// Values held once each, with a count of their users; a value leaves when its last user
/// releases it, and its handle is reused.
#[derive(Debug)]
struct Interner<T> {
    handles: HashMap<T, Handle, RandomState>,
    slots: Vec<(T, u32)>,
    free: Vec<Handle>,
}

impl<T: Hash + Eq + Clone> Interner<T> {
    fn new() -> Self {
        Interner {
            handles: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    /// The handle of `value` (made with `make` if it is new), with one more user.
    fn hold<Q>(&mut self, value: &Q, make: impl FnOnce(&Q) -> T) -> Handle
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(&handle) = self.handles.get(value) {
            self.slots[handle as usize].1 += 1;
            return handle;
        }
        let value = make(value);
        let handle = match self.free.pop() {
            Some(handle) => {
                self.slots[handle as usize] = (value.clone(), 1);
                handle
            }
            None => {
                self.slots.push((value.clone(), 1));
                Handle::try_from(self.slots.len() - 1).expect("fewer than 2^32 interned values")
            }
        };
        self.handles.insert(value, handle);
        handle
    }

    /// One more user for `handle`.
    fn hold_again(&mut self, handle: Handle) {
        self.slots[handle as usize].1 += 1;
    }

    /// One user fewer for `handle`.
    fn release(&mut self, handle: Handle) {
        let (value, users) = &mut self.slots[handle as usize];
        *users -= 1;
        if *users == 0 {
            self.handles.remove(value);
            self.free.push(handle);
        }
    }

    fn get(&self, handle: Handle) -> &T {
        &self.slots[handle as usize].0
    }

    /// Distinct values held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.handles.len()
    }
}

/// A prefix table's key: one family's prefixes.
trait Key: Copy + Eq + Hash + Into<IpNet> {}
impl Key for Ipv4Net {}
impl Key for Ipv6Net {}

impl Shared {
    fn attrs_of(&self, path: &RibPath) -> &PathAttrs {
        self.attrs.get(path.attrs)
    }

    fn ebgp(&self, peer: PeerId) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.info.ebgp)
    }

    fn change(&self, prefix: IpNet, set: Handle) -> FibChange {
        FibChange {
            prefix,
            next_hops: Arc::clone(self.sets.get(set)),
        }
    }

    fn removal(&self, prefix: IpNet) -> FibChange {
        FibChange {
            prefix,
            next_hops: Arc::clone(&self.empty),
        }
    }

    /// The installed set of `entry`.
    fn installed(&self, entry: &Entry) -> &NextHops {
        match entry {
            Entry::One(path) => self.sets.get(path.next_hop),
            Entry::Many(many) => self.sets.get(many.installed),
        }
    }

    /// Takes a path that left the RIB off its peer's counts and its values' users.
    fn forget(&mut self, afi: Afi, path: RibPath) {
        if let Some(state) = self.peers.get_mut(&path.peer) {
            state.received -= 1;
            if path.selected {
                state.installed -= 1;
            }
            if path.stale {
                state.stale[afi.index()] -= 1;
            }
        }
        self.sets.release(path.next_hop);
        self.attrs.release(path.attrs);
    }

    /// Marks `path` selected or not, keeping its peer's installed count.
    fn select(&mut self, path: &mut RibPath, selected: bool) {
        if path.selected != selected {
            path.selected = selected;
            if let Some(peer) = self.peers.get_mut(&path.peer) {
                if selected {
                    peer.installed += 1;
                } else {
                    peer.installed -= 1;
                }
            }
        }
    }

    /// Brings `entry` (not empty) in line after its paths changed: back to one inline path
    /// when one is left, otherwise the decision process is run again. Returns the change of
    /// its installed set.
    fn settle(&mut self, prefix: IpNet, entry: &mut Entry) -> Option<FibChange> {
        let Entry::Many(many) = entry else {
            return None;
        };
        if many.paths.len() > 1 {
            return self.decide(prefix, many);
        }
        let mut last = many.paths[0];
        let old = many.installed;
        self.select(&mut last, true);
        *entry = Entry::One(last);
        self.sets.release(old);
        (old != last.next_hop).then(|| self.change(prefix, last.next_hop))
    }

    /// Runs the decision process for a prefix with several paths, updates the selected
    /// marks and per-peer installed counts, and returns the change of its installed set.
    fn decide(&mut self, prefix: IpNet, many: &mut Many) -> Option<FibChange> {
        let mut lowest_med = std::mem::take(&mut self.scratch.lowest_med);
        let best = best_path(&mut many.paths, self, &mut lowest_med);
        self.scratch.lowest_med = lowest_med;
        self.mark_ecmp_set(&mut many.paths, best);
        let mut next_hops = std::mem::take(&mut self.scratch.next_hops);
        next_hops.clear();
        for i in 0..many.paths.len() {
            let p = many.paths[i];
            self.select(&mut many.paths[i], p.candidate);
            if p.candidate {
                next_hops.extend_from_slice(self.sets.get(p.next_hop));
            }
        }
        next_hops.sort_unstable();
        next_hops.dedup();
        let change = if **self.sets.get(many.installed) == next_hops[..] {
            None
        } else {
            let new = self.sets.hold(&next_hops[..], |s| Arc::from(s));
            self.sets
                .release(std::mem::replace(&mut many.installed, new));
            Some(self.change(prefix, new))
        };
        self.scratch.next_hops = next_hops;
        change
    }

    /// Marks (`candidate`) the paths to install with `paths[best]`, the best path: with
    /// multipath, every path equal to it on LOCAL_PREF, AS_PATH length and kind, at most
    /// `max_paths` of them (the best path, then the lowest router ids and addresses, as the
    /// decision process breaks ties); without, the best path alone.
    fn mark_ecmp_set(&self, paths: &mut [RibPath], best: usize) {
        let best_path = paths[best];
        let best_attrs = self.attrs_of(&best_path);
        let (best_pref, best_len) = (best_attrs.local_pref, best_attrs.as_path_len);
        let best_ebgp = self.ebgp(best_path.peer);
        let mut count = 0;
        for (i, p) in paths.iter_mut().enumerate() {
            p.candidate = i == best
                || self.multipath && {
                    let a = self.attrs_of(p);
                    a.local_pref == best_pref
                        && a.as_path_len == best_len
                        && self.ebgp(p.peer) == best_ebgp
                };
            count += usize::from(p.candidate);
        }
        if count <= self.max_paths {
            return;
        }
        let mut others: Vec<usize> = (0..paths.len())
            .filter(|&i| i != best && paths[i].candidate)
            .collect();
        let info = |i: &usize| self.peers.get(&paths[*i].peer).map(|p| p.info);
        others.sort_by_key(|i| info(i).map(|p| (p.router_id, p.address, p.id)));
        for i in others.into_iter().skip(self.max_paths.saturating_sub(1)) {
            paths[i].candidate = false;
        }
    }

    /// `peer` (known) announces the path (`next_hop`, `attrs`: handles this call owns) to
    /// `key` in `table`.
    fn announce<K: Key>(
        &mut self,
        table: &mut Table<K>,
        key: K,
        new: RibPath,
    ) -> Option<FibChange> {
        let prefix: IpNet = key.into();
        let afi = Afi::of(&prefix);
        let entry = match table.entry(key) {
            MapEntry::Vacant(vacant) => {
                let peer = self.peers.get_mut(&new.peer)?;
                peer.received += 1;
                peer.installed += 1;
                vacant.insert(Entry::One(RibPath {
                    selected: true,
                    ..new
                }));
                return Some(self.change(prefix, new.next_hop));
            }
            MapEntry::Occupied(occupied) => occupied.into_mut(),
        };
        let known = match entry {
            Entry::One(path) if path.peer == new.peer => Some(path),
            Entry::One(_) => None,
            Entry::Many(many) => many.paths.iter_mut().find(|p| p.peer == new.peer),
        };
        match known {
            Some(known) => {
                let was_stale = std::mem::replace(&mut known.stale, false);
                let same = known.next_hop == new.next_hop && known.attrs == new.attrs;
                let old_next_hop = std::mem::replace(&mut known.next_hop, new.next_hop);
                let old_attrs = std::mem::replace(&mut known.attrs, new.attrs);
                self.sets.release(old_next_hop);
                self.attrs.release(old_attrs);
                if was_stale && let Some(peer) = self.peers.get_mut(&new.peer) {
                    peer.stale[afi.index()] -= 1;
                }
                if same && !was_stale {
                    return None;
                }
                match entry {
                    Entry::One(_) => {
                        (old_next_hop != new.next_hop).then(|| self.change(prefix, new.next_hop))
                    }
                    Entry::Many(many) => self.decide(prefix, many),
                }
            }
            None => {
                if let Some(peer) = self.peers.get_mut(&new.peer) {
                    peer.received += 1;
                }
                if let Entry::One(first) = *entry {
                    self.sets.hold_again(first.next_hop);
                    *entry = Entry::Many(Box::new(Many {
                        paths: Vec::with_capacity(2),
                        installed: first.next_hop,
                    }));
                    if let Entry::Many(many) = entry {
                        many.paths.push(first);
                    }
                }
                let Entry::Many(many) = entry else {
                    unreachable!("the entry has just become one of several paths")
                };
                many.paths.push(new);
                self.decide(prefix, many)
            }
        }
    }

    /// `peer` withdraws its path to `key` in `table`.
    fn withdraw<K: Key>(
        &mut self,
        table: &mut Table<K>,
        key: K,
        peer: PeerId,
    ) -> Option<FibChange> {
        let prefix: IpNet = key.into();
        let afi = Afi::of(&prefix);
        let MapEntry::Occupied(mut occupied) = table.entry(key) else {
            return None;
        };
        match occupied.get_mut() {
            Entry::One(path) if path.peer == peer => {
                let path = *path;
                occupied.remove();
                self.forget(afi, path);
                Some(self.removal(prefix))
            }
            Entry::One(_) => None,
            Entry::Many(many) => {
                let i = many.paths.iter().position(|p| p.peer == peer)?;
                let gone = many.paths.swap_remove(i);
                self.forget(afi, gone);
                self.settle(prefix, occupied.get_mut())
            }
        }
    }

    /// Removes `peer`'s paths in `table` that `stale_only` names (all, or the stale ones),
    /// at most `left` of them, passing each change to `each`.
    fn remove_paths<K: Key>(
        &mut self,
        table: &mut Table<K>,
        peer: PeerId,
        stale_only: bool,
        mut left: usize,
        each: &mut impl FnMut(FibChange),
    ) {
        let goes = |p: &RibPath| p.peer == peer && (p.stale || !stale_only);
        table.retain(|key, entry| {
            if left == 0 {
                return true;
            }
            let prefix: IpNet = (*key).into();
            let afi = Afi::of(&prefix);
            match entry {
                Entry::One(path) => {
                    if !goes(path) {
                        return true;
                    }
                    left -= 1;
                    self.forget(afi, *path);
                    each(self.removal(prefix));
                    false
                }
                Entry::Many(many) => {
                    if let Some(i) = many.paths.iter().position(goes) {
                        left -= 1;
                        let gone = many.paths.swap_remove(i);
                        self.forget(afi, gone);
                        if let Some(change) = self.settle(prefix, entry) {
                            each(change);
                        }
                    }
                    true
                }
            }
        });
    }

    /// Runs the decision again for every prefix with several paths that `which` accepts.
    fn decide_again<K: Key>(
        &mut self,
        table: &mut Table<K>,
        which: impl Fn(&Many) -> bool,
        changes: &mut Vec<FibChange>,
    ) {
        for (key, entry) in table.iter_mut() {
            if let Entry::Many(many) = entry
                && which(many)
            {
                changes.extend(self.decide((*key).into(), many));
            }
        }
    }
}

/// RFC 4271 9.1.2.2 as eliminations over `paths` (at least two); returns the index of the
/// best path. Uses and clobbers the `candidate` marks.
fn best_path(
    paths: &mut [RibPath],
    shared: &Shared,
    lowest_med: &mut Vec<(Option<u32>, u32)>,
) -> usize {
    for p in paths.iter_mut() {
        p.candidate = true;
    }
    let attrs = |p: &RibPath| shared.attrs_of(p);
    keep_lowest(paths, |p| std::cmp::Reverse(attrs(p).local_pref));
    keep_lowest(paths, |p| attrs(p).as_path_len);
    keep_lowest(paths, |p| attrs(p).origin);
    keep_lowest_med_per_neighbor_as(paths, shared, lowest_med);
    keep_lowest(paths, |p| !shared.ebgp(p.peer));
    let info = |p: &RibPath| shared.peers.get(&p.peer).map(|peer| peer.info);
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
fn keep_lowest_med_per_neighbor_as(
    paths: &mut [RibPath],
    shared: &Shared,
    lowest: &mut Vec<(Option<u32>, u32)>,
) {
    lowest.clear();
    for p in paths.iter().filter(|p| p.candidate) {
        let a = shared.attrs_of(p);
        match lowest.iter_mut().find(|(asn, _)| *asn == a.neighbor_as) {
            Some((_, m)) => *m = (*m).min(a.med),
            None => lowest.push((a.neighbor_as, a.med)),
        }
    }
    for p in paths.iter_mut().filter(|p| p.candidate) {
        let a = shared.attrs_of(p);
        if lowest
            .iter()
            .any(|&(asn, m)| asn == a.neighbor_as && m < a.med)
        {
            p.candidate = false;
        }
    }
}

impl Rib {
    pub fn new(multipath: bool) -> Self {
        Rib {
            v4: Table::default(),
            v6: Table::default(),
            shared: Shared {
                multipath,
                max_paths: usize::MAX,
                peers: BTreeMap::new(),
                sets: Interner::new(),
                attrs: Interner::new(),
                scratch: Scratch::default(),
                empty: Arc::from([]),
            },
        }
    }

    /// Turns multipath on or off; returns the resulting changes, by prefix.
    pub fn set_multipath(&mut self, on: bool) -> Vec<FibChange> {
        if self.shared.multipath == on {
            return Vec::new();
        }
        self.shared.multipath = on;
        self.decide_all_again()
    }

    /// Caps ECMP routes at `max` paths (at least 1); returns the resulting changes, by
    /// prefix.
    pub fn set_max_paths(&mut self, max: usize) -> Vec<FibChange> {
        let max = max.max(1);
        if self.shared.max_paths == max {
            return Vec::new();
        }
        self.shared.max_paths = max;
        self.decide_all_again()
    }

    /// Runs the decision again for every prefix with several paths; the changes by prefix.
    fn decide_all_again(&mut self) -> Vec<FibChange> {
        let mut changes = Vec::new();
        self.shared
            .decide_again(&mut self.v4, |_| true, &mut changes);
        self.shared
            .decide_again(&mut self.v6, |_| true, &mut changes);
        changes.sort_unstable_by_key(|c| c.prefix);
        changes
    }

    /// A session came up. If `peer.id` is already known (a graceful restart: the same
    /// neighbor is back while its paths are stale), its paths are kept, and the decision is
    /// run again for them if what the decision uses (address, router id, kind) changed.
    pub fn add_peer(&mut self, peer: PeerInfo) -> Vec<FibChange> {
        match self.shared.peers.get_mut(&peer.id) {
            None => {
                self.shared.peers.insert(
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
                // A prefix with one path keeps it whatever its peer is like.
                let has = |many: &Many| many.paths.iter().any(|p| p.peer == peer.id);
                let mut changes = Vec::new();
                self.shared.decide_again(&mut self.v4, has, &mut changes);
                self.shared.decide_again(&mut self.v6, has, &mut changes);
                changes.sort_unstable_by_key(|c| c.prefix);
                changes
            }
        }
    }

    /// `peer` announces `path` to `prefix`, replacing its previous path there (and making it
    /// fresh if it was stale). Announcements from a peer that was not added are ignored.
    pub fn announce(&mut self, peer: PeerId, prefix: IpNet, path: Path) -> Option<FibChange> {
        if !self.shared.peers.contains_key(&peer) {
            return None;
        }
        let shared = &mut self.shared;
        let new = RibPath {
            peer,
            next_hop: shared
                .sets
                .hold(std::slice::from_ref(&path.next_hop), |s| Arc::from(s)),
            attrs: shared.attrs.hold(&*path.attrs, PathAttrs::clone),
            stale: false,
            selected: false,
            candidate: false,
        };
        match prefix.trunc() {
            IpNet::V4(key) => shared.announce(&mut self.v4, key, new),
            IpNet::V6(key) => shared.announce(&mut self.v6, key, new),
        }
    }

    /// `peer` withdraws its path to `prefix`.
    pub fn withdraw(&mut self, peer: PeerId, prefix: IpNet) -> Option<FibChange> {
        match prefix.trunc() {
            IpNet::V4(key) => self.shared.withdraw(&mut self.v4, key, peer),
            IpNet::V6(key) => self.shared.withdraw(&mut self.v6, key, peer),
        }
    }

    /// The session is gone without graceful restart: all its paths go, and the id is
    /// forgotten (a later `add_peer` with it starts from nothing). Each change goes to
    /// `each` as it is made, in no particular order: a session's worth of changes is never
    /// held in memory at once.
    pub fn remove_peer(&mut self, peer: PeerId, mut each: impl FnMut(FibChange)) {
        self.remove_paths(peer, Removal::All, &mut each);
        self.shared.peers.remove(&peer);
    }

    /// Graceful restart (RFC 4724 4.2): the session is gone but its paths stay, marked
    /// stale, until it re-announces them or [`Rib::sweep_stale`] removes them. The installed
    /// routes do not change: stale paths compete as equals.
    pub fn mark_stale(&mut self, peer: PeerId) {
        let Some(state) = self.shared.peers.get_mut(&peer) else {
            return;
        };
        let left = state.received - state.stale.iter().sum::<usize>();
        let v4 = mark_stale_in(&mut self.v4, peer, left);
        let v6 = mark_stale_in(&mut self.v6, peer, left - v4);
        state.stale[Afi::Ipv4.index()] += v4;
        state.stale[Afi::Ipv6.index()] += v6;
    }

    /// Removes `peer`'s paths that are still stale, in one family (End-of-RIB for it) or in
    /// both (`None`: the restart or stale timer ran out). Each change goes to `each`, in no
    /// particular order.
    pub fn sweep_stale(&mut self, peer: PeerId, afi: Option<Afi>, mut each: impl FnMut(FibChange)) {
        self.remove_paths(peer, Removal::Stale(afi), &mut each);
    }

    /// Removes `peer`'s paths that `which` names.
    fn remove_paths(&mut self, peer: PeerId, which: Removal, each: &mut impl FnMut(FibChange)) {
        let Some(&Peer {
            received, stale, ..
        }) = self.shared.peers.get(&peer)
        else {
            return;
        };
        for afi in [Afi::Ipv4, Afi::Ipv6] {
            let (stale_only, left) = match which {
                Removal::All => (false, received),
                Removal::Stale(None) => (true, stale[afi.index()]),
                Removal::Stale(Some(only)) if only == afi => (true, stale[afi.index()]),
                Removal::Stale(Some(_)) => continue,
            };
            match afi {
                Afi::Ipv4 => self
                    .shared
                    .remove_paths(&mut self.v4, peer, stale_only, left, each),
                Afi::Ipv6 => self
                    .shared
                    .remove_paths(&mut self.v6, peer, stale_only, left, each),
            }
        }
    }

    /// The next hops installed for `prefix`, if any.
    pub fn best(&self, prefix: &IpNet) -> Option<&NextHops> {
        let entry = match prefix.trunc() {
            IpNet::V4(key) => self.v4.get(&key),
            IpNet::V6(key) => self.v6.get(&key),
        }?;
        Some(self.shared.installed(entry))
    }

    /// The next hops installed for `prefix`, empty when there is no route (the RIB's one
    /// shared empty set).
    pub fn next_hops(&self, prefix: &IpNet) -> NextHops {
        self.best(prefix).unwrap_or(&self.shared.empty).clone()
    }

    /// The desired FIB: every prefix with its installed next hops, in no particular order.
    pub fn installed(&self) -> impl Iterator<Item = (IpNet, &NextHops)> {
        let v4 = self.v4.iter().map(|(k, e)| (IpNet::V4(*k), e));
        let v6 = self.v6.iter().map(|(k, e)| (IpNet::V6(*k), e));
        v4.chain(v6)
            .map(|(prefix, entry)| (prefix, self.shared.installed(entry)))
    }

    /// Route counts for `peer`; zeros for an unknown peer.
    pub fn peer_counts(&self, peer: PeerId) -> PeerCounts {
        self.shared
            .peers
            .get(&peer)
            .map(|p| PeerCounts {
                received: p.received,
                installed: p.installed,
            })
            .unwrap_or_default()
    }

    /// Prefixes with at least one path.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which of a peer's paths [`Rib::remove_paths`] removes.
#[derive(Clone, Copy)]
enum Removal {
    All,
    /// The stale ones, in one family or (`None`) both.
    Stale(Option<Afi>),
}

/// Marks up to `left` of `peer`'s fresh paths in `table` stale; returns how many it marked.
fn mark_stale_in<K>(table: &mut Table<K>, peer: PeerId, left: usize) -> usize {
    let mut marked = 0;
    for entry in table.values_mut() {
        if marked == left {
            break;
        }
        let path = match entry {
            Entry::One(path) => Some(path).filter(|p| p.peer == peer && !p.stale),
            Entry::Many(many) => many.paths.iter_mut().find(|p| p.peer == peer && !p.stale),
        };
        if let Some(path) = path {
            path.stale = true;
            marked += 1;
        }
    }
    marked
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::{hop, net};

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

    /// `Rib::remove_peer`'s changes, by prefix.
    fn removed(rib: &mut Rib, peer: PeerId) -> Vec<FibChange> {
        let mut changes = Vec::new();
        rib.remove_peer(peer, |c| changes.push(c));
        changes.sort_unstable_by_key(|c| c.prefix);
        changes
    }

    /// `Rib::sweep_stale`'s changes, by prefix.
    fn swept(rib: &mut Rib, peer: PeerId, afi: Option<Afi>) -> Vec<FibChange> {
        let mut changes = Vec::new();
        rib.sweep_stale(peer, afi, |c| changes.push(c));
        changes.sort_unstable_by_key(|c| c.prefix);
        changes
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
                let best = rib.best(&net("10.0.0.0/24")).map(|h| &h[..]).unwrap();
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
            rib.best(&net("10.0.0.0/24")).map(|h| &h[..]),
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
            assert_eq!(rib.best(&p).map(|h| &h[..]), Some(&hops(&[a, b, c])[..]));
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
            assert_eq!(
                rib.best(&p).map(|h| &h[..]),
                Some(&expected[..]),
                "multipath {multipath}"
            );
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
        assert_eq!(rib.best(&p).map(|h| &h[..]), Some(&hops(&["fe80::1"])[..]));
        let other_link = Path {
            next_hop: NextHop {
                gateway: "fe80::1".parse().unwrap(),
                ifindex: Some(8),
            },
            attrs: Arc::new(PathAttrs::default()),
        };
        let change = rib.announce(3, p, other_link.clone()).unwrap();
        assert_eq!(*change.next_hops, [hop("fe80::1"), other_link.next_hop]);
    }

    #[test]
    fn an_ecmp_set_keeps_the_best_path_and_the_lowest_router_ids_up_to_max_paths() {
        let mut rib = Rib::new(true);
        assert_eq!(rib.set_max_paths(3), vec![]);
        // Node 5 wins on MED, so it is the best path although its router id is the highest.
        let lower_med = PathAttrs {
            med: 0,
            ..PathAttrs::default()
        };
        let higher_med = PathAttrs {
            med: 10,
            ..PathAttrs::default()
        };
        for id in 1..=5 {
            rib.add_peer(node(id));
            let attrs = if id == 5 { &lower_med } else { &higher_med };
            rib.announce(
                id,
                net("198.51.100.7/32"),
                path(&format!("192.0.2.{id}"), attrs.clone()),
            );
        }
        let p = net("198.51.100.7/32");
        assert_eq!(
            rib.best(&p).map(|h| &h[..]),
            Some(&hops(&["192.0.2.1", "192.0.2.2", "192.0.2.5"])[..])
        );
        assert_eq!(rib.peer_counts(3).installed, 0);
        assert_eq!(rib.peer_counts(5).installed, 1);
        // Node 1 goes: node 3 takes its place.
        assert_eq!(
            removed(&mut rib, 1),
            vec![change(
                "198.51.100.7/32",
                &["192.0.2.2", "192.0.2.3", "192.0.2.5"]
            )]
        );
        // A wider cap takes node 4 too; a cap of one is the best path alone.
        assert_eq!(
            rib.set_max_paths(8),
            vec![change(
                "198.51.100.7/32",
                &["192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"]
            )]
        );
        assert_eq!(
            rib.set_max_paths(1),
            vec![change("198.51.100.7/32", &["192.0.2.5"])]
        );
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
            rib.best(&net("10.0.2.0/24")).map(|h| &h[..]),
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
        assert_eq!(
            rib.best(&p).map(|h| &h[..]),
            Some(&hops(&["192.0.2.1"])[..])
        );
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
        assert_eq!(rib.best(&net("10.0.1.0/24")).map(|h| &h[..]), None);
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
        assert!(rib.best(&net("10.0.1.0/24")).map(|h| &h[..]).is_some());
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
            rib.installed().map(|(p, h)| (p, h.to_vec())).collect();
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
            removed(&mut rib, 1),
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
        assert_eq!(removed(&mut rib, 1), vec![]);
    }

    #[test]
    fn a_removed_peer_id_starts_from_nothing_when_added_again() {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        rib.announce(1, net("10.0.1.0/24"), cilium("192.0.2.1"));
        removed(&mut rib, 1);
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
            rib.best(&net("10.0.1.0/24")).map(|h| &h[..]),
            Some(&hops(&["192.0.2.1"])[..])
        );
        assert_eq!(
            swept(&mut rib, 1, None),
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
            swept(&mut rib, 1, Some(Afi::Ipv4)),
            vec![change("10.0.1.0/24", &[]), change("10.0.2.0/24", &[])]
        );
        assert_eq!(rib.len(), 2);
        assert_eq!(
            swept(&mut rib, 1, Some(Afi::Ipv6)),
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
            swept(&mut rib, 1, None),
            vec![change("10.0.2.0/24", &[]), change("2001:db8:1::/64", &[])]
        );
        assert_eq!(
            rib.peer_counts(1),
            PeerCounts {
                received: 2,
                installed: 2
            }
        );
        assert_eq!(swept(&mut rib, 1, None), vec![]);
    }

    #[test]
    fn sweeping_a_peer_without_stale_paths_changes_nothing() {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        rib.announce(1, net("10.0.1.0/24"), cilium("192.0.2.1"));
        assert_eq!(swept(&mut rib, 1, None), vec![]);
        assert_eq!(swept(&mut rib, 9, None), vec![]);
        assert_eq!(rib.len(), 1);
    }

    #[test]
    fn marking_stale_twice_marks_each_path_once() {
        let mut rib = restarting_rib();
        rib.mark_stale(1);
        assert_eq!(rib.shared.peers[&1].stale, [2, 2]);
        rib.announce(1, net("10.0.1.0/24"), cilium("192.0.2.1"));
        rib.withdraw(1, net("2001:db8:1::/64"));
        assert_eq!(rib.shared.peers[&1].stale, [1, 1]);
        assert_eq!(swept(&mut rib, 1, None).len(), 2);
        assert_eq!(rib.shared.peers[&1].stale, [0, 0]);
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

    // Sharing and memory.

    #[test]
    fn a_prefix_with_one_path_takes_sixteen_bytes_without_a_heap_allocation() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
        assert_eq!(std::mem::size_of::<(Ipv4Net, Entry)>(), 24);
        assert_eq!(std::mem::size_of::<(Ipv6Net, Entry)>(), 40);
    }

    #[test]
    fn prefixes_with_the_same_next_hops_share_one_set_until_the_last_goes() {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        rib.add_peer(node(2));
        for prefix in ["10.0.1.0/24", "10.0.2.0/24", "2001:db8:3::/64"] {
            rib.announce(1, net(prefix), cilium("192.0.2.1"));
            rib.announce(2, net(prefix), cilium("192.0.2.2"));
        }
        // Each node's next hop, and the ECMP set of both.
        assert_eq!(rib.shared.sets.len(), 3);
        let first = rib.best(&net("10.0.1.0/24")).unwrap();
        let third = rib.best(&net("2001:db8:3::/64")).unwrap();
        assert!(Arc::ptr_eq(first, third));
        assert_eq!(**first, hops(&["192.0.2.1", "192.0.2.2"]));
        removed(&mut rib, 2);
        assert_eq!(rib.shared.sets.len(), 1);
        let first = rib.best(&net("10.0.1.0/24")).unwrap();
        let third = rib.best(&net("2001:db8:3::/64")).unwrap();
        assert!(Arc::ptr_eq(first, third));
        removed(&mut rib, 1);
        assert_eq!(rib.shared.sets.len(), 0);
    }

    #[test]
    fn a_change_hands_out_the_set_the_rib_holds() {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        let change = rib
            .announce(1, net("10.0.1.0/24"), cilium("192.0.2.1"))
            .unwrap();
        assert!(Arc::ptr_eq(
            &change.next_hops,
            rib.best(&net("10.0.1.0/24")).unwrap()
        ));
    }

    #[test]
    fn equal_attributes_from_separate_updates_are_held_once() {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        for i in 0..10u8 {
            let prefix = IpNet::new(IpAddr::from([10, 0, i, 0]), 24).unwrap();
            rib.announce(1, prefix, cilium("192.0.2.1"));
        }
        assert_eq!(rib.shared.attrs.len(), 1);
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
        assert_eq!(rib.shared.attrs.len(), 1);
        let Some(Entry::One(in_use)) = rib.v4.get(&"10.0.1.0/24".parse().unwrap()) else {
            panic!("one path expected");
        };
        assert_eq!(rib.shared.attrs_of(in_use).med, 2999);
        rib.withdraw(1, net("10.0.1.0/24"));
        assert_eq!(rib.shared.attrs.len(), 0);
        assert_eq!(rib.shared.sets.len(), 0);
    }

    #[test]
    fn a_prefix_goes_back_to_one_inline_path_when_the_others_leave() {
        let mut rib = Rib::new(true);
        rib.add_peer(node(1));
        rib.add_peer(node(2));
        let p = net("2001:db8:4::/64");
        rib.announce(1, p, cilium("2001:db8::1"));
        rib.announce(2, p, cilium("2001:db8::2"));
        assert!(matches!(rib.v6.values().next(), Some(Entry::Many(_))));
        let change = rib.withdraw(2, p).unwrap();
        assert_eq!(*change.next_hops, hops(&["2001:db8::1"]));
        assert!(matches!(rib.v6.values().next(), Some(Entry::One(_))));
        assert_eq!(
            rib.peer_counts(1),
            PeerCounts {
                received: 1,
                installed: 1
            }
        );
        assert_eq!(rib.shared.sets.len(), 1);
    }

    /// Every count and interned value the RIB keeps, recounted from its paths.
    fn assert_books_balance(rib: &Rib) {
        let mut received: BTreeMap<PeerId, usize> = BTreeMap::new();
        let mut installed: BTreeMap<PeerId, usize> = BTreeMap::new();
        let mut sets = std::collections::HashSet::new();
        let mut attrs = std::collections::HashSet::new();
        for entry in rib.v4.values().chain(rib.v6.values()) {
            let paths = match entry {
                Entry::One(path) => std::slice::from_ref(path),
                Entry::Many(many) => {
                    assert!(many.paths.len() > 1);
                    sets.insert(many.installed);
                    &many.paths[..]
                }
            };
            for p in paths {
                *received.entry(p.peer).or_default() += 1;
                *installed.entry(p.peer).or_default() += usize::from(p.selected);
                sets.insert(p.next_hop);
                attrs.insert(p.attrs);
            }
        }
        for (id, peer) in &rib.shared.peers {
            assert_eq!(peer.received, received.get(id).copied().unwrap_or(0));
            assert_eq!(peer.installed, installed.get(id).copied().unwrap_or(0));
        }
        assert_eq!(rib.shared.sets.len(), sets.len());
        assert_eq!(rib.shared.attrs.len(), attrs.len());
    }

    #[test]
    fn random_churn_keeps_the_changes_the_books_and_a_fresh_rib_in_agreement() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let prefixes = [
            "10.0.1.0/24",
            "10.0.2.0/24",
            "2001:db8:1::/64",
            "2001:db8:2::/64",
        ];
        let gateways = ["192.0.2.1", "192.0.2.2", "192.0.2.3"];
        let mut rib = Rib::new(true);
        let mut fib: BTreeMap<IpNet, Vec<NextHop>> = BTreeMap::new();
        let mut paths: BTreeMap<(PeerId, IpNet), (Path, bool)> = BTreeMap::new();
        for step in 0..20_000 {
            let id = rng.random_range(1..=4);
            let prefix = net(prefixes[rng.random_range(0..prefixes.len())]);
            let changes = match rng.random_range(0..20) {
                0 => {
                    paths.retain(|(p, _), _| *p != id);
                    removed(&mut rib, id)
                }
                1 if rng.random_bool(0.5) => rib.set_multipath(!rib.shared.multipath),
                1 => rib.set_max_paths(rng.random_range(1..=3)),
                _ if !rib.shared.peers.contains_key(&id) => rib.add_peer(node(id)),
                2 => {
                    rib.mark_stale(id);
                    for ((p, _), (_, stale)) in paths.iter_mut() {
                        *stale |= *p == id;
                    }
                    Vec::new()
                }
                3 => {
                    let afi = [None, Some(Afi::Ipv4), Some(Afi::Ipv6)][rng.random_range(0..3)];
                    paths.retain(|(p, prefix), (_, stale)| {
                        !(*p == id && *stale && afi.is_none_or(|a| a == Afi::of(prefix)))
                    });
                    swept(&mut rib, id, afi)
                }
                4..=9 => {
                    paths.remove(&(id, prefix));
                    rib.withdraw(id, prefix).into_iter().collect()
                }
                _ => {
                    let attrs = PathAttrs {
                        local_pref: 100 + rng.random_range(0..2),
                        med: rng.random_range(0..2),
                        ..PathAttrs::default()
                    };
                    let p = path(gateways[rng.random_range(0..gateways.len())], attrs);
                    paths.insert((id, prefix), (p.clone(), false));
                    rib.announce(id, prefix, p).into_iter().collect()
                }
            };
            for change in changes {
                if change.next_hops.is_empty() {
                    assert!(fib.remove(&change.prefix).is_some(), "step {step}");
                } else {
                    fib.insert(change.prefix, change.next_hops.to_vec());
                }
            }
            let installed: BTreeMap<IpNet, Vec<NextHop>> =
                rib.installed().map(|(p, h)| (p, h.to_vec())).collect();
            assert_eq!(installed, fib, "step {step}");
            assert_books_balance(&rib);
            let mut fresh = Rib::new(rib.shared.multipath);
            fresh.set_max_paths(rib.shared.max_paths);
            for id in rib.shared.peers.keys() {
                fresh.add_peer(node(*id));
            }
            for ((id, prefix), (p, _)) in &paths {
                fresh.announce(*id, *prefix, p.clone());
            }
            for (id, peer) in &rib.shared.peers {
                let stale = |afi: Afi| {
                    paths
                        .iter()
                        .filter(|((p, prefix), (_, stale))| {
                            p == id && *stale && Afi::of(prefix) == afi
                        })
                        .count()
                };
                assert_eq!(
                    peer.stale,
                    [stale(Afi::Ipv4), stale(Afi::Ipv6)],
                    "step {step}"
                );
            }
            let rebuilt: BTreeMap<IpNet, Vec<NextHop>> =
                fresh.installed().map(|(p, h)| (p, h.to_vec())).collect();
            assert_eq!(rebuilt, fib, "step {step}");
        }
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
        assert_eq!(rib.shared.attrs.len(), 1);
        assert_eq!(rib.shared.sets.len(), 3);

        let gone = removed(&mut rib, 2);
        assert_eq!(gone.len(), 50_000);
        assert!(gone.iter().all(|c| *c.next_hops == hops(&["192.0.2.1"])));
        assert_eq!(rib.shared.sets.len(), 1);
        rib.mark_stale(1);
        assert_eq!(swept(&mut rib, 1, Some(Afi::Ipv6)), vec![]);
        let gone = swept(&mut rib, 1, Some(Afi::Ipv4));
        assert_eq!(gone.len(), 100_000);
        assert!(gone.iter().all(|c| c.next_hops.is_empty()));
        assert!(rib.is_empty());
        assert_eq!(rib.shared.sets.len(), 0);
        assert_eq!(rib.shared.attrs.len(), 0);
        assert_eq!(rib.peer_counts(1), PeerCounts::default());
    }
}
