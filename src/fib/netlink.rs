//! The FIB writer: it writes our routes into the kernel table (replace, never
//! delete-then-add), keeps the books of which nexthop object each route uses, and dumps the
//! table to adopt what a previous run left. Routes of other protocols are never touched:
//! deletes carry our protocol number, which the kernel matches. The bytes are `route`'s and
//! `nexthop`'s, the sockets `socket`'s.
//!
//! How it is fast: where the kernel has nexthop objects (Linux 5.3+, detected at start),
//! every next hop (gateway and interface) is one object and every ECMP set a group of them
//! (see [`super::nexthop`]); routes carry only the object's id, so `ip route` still shows
//! `nhid N via inet6 ... dev ...`. When the last route using an object goes, the object is
//! deleted, and the kernel takes every route still using it along in the same request: a
//! lost session with 200,000 routes is one request. Route requests are encoded into one
//! buffer per family and sent many per `sendmsg`, without asking for acknowledgements (the
//! kernel reports failures anyway), IPv4 and IPv6 on their own [`Channel`]s, each with a
//! courier thread that sends one batch while the event loop encodes the next.
//!
//! On kernels without nexthop objects, or for a next hop without an interface (which an
//! object cannot express), routes carry their gateways themselves (RTA_GATEWAY, RTA_VIA for
//! an IPv4 route via IPv6, RTA_MULTIPATH for ECMP), batched the same way.
//!
//! Failures come back as [`FibError`]s naming the operation; the daemon then dumps the table
//! and reconciles. [`Fib::dump`] also rebuilds the books of objects and routes from what the
//! kernel holds, so whatever happened underneath (ENOBUFS, objects deleted by hand), the next
//! resync starts from the truth.

use std::collections::{BTreeMap, HashSet};
use std::io;

use ipnet::IpNet;

use super::diff::FibOp;
use super::installed::{Installed, Routes, representable};
use super::nexthop::{self, Object, Objects};
use super::nlmsg::{self, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, RTM_DELROUTE, RTM_NEWROUTE};
use super::route::{self, KernelRoute, Target};
use super::socket::{Channel, RawFailures};
use crate::rib::NextHop;

/// Socket buffers: room for big batches one way and for many failures the other.
const SOCKET_BUFFER: usize = 32 << 20;
/// Deferred deletes remembered by prefix; past this many, the flush looks through all the
/// books for them instead (a whole session's routes going at once).
const DEFERRED_LIST: usize = 4096;

/// A request the kernel refused, or (`op: None`) failures we could not attribute: a lost
/// batch, or failure reports lost to a full socket buffer (ENOBUFS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FibError {
    pub op: Option<FibOp>,
    pub errno: i32,
}

impl std::fmt::Display for FibError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.op {
            Some(FibOp::Replace { prefix, .. }) => format!("replace {prefix}"),
            Some(FibOp::Delete { prefix }) => format!("delete {prefix}"),
            None => "route changes".to_string(),
        };
        write!(f, "{what}: {}", io::Error::from_raw_os_error(self.errno))
    }
}

impl std::error::Error for FibError {}

/// How routes name their next hops.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Nexthop objects and groups, routes carry RTA_NH_ID.
    NexthopObjects,
    /// Gateways in each route (kernels before 5.3).
    PlainRoutes,
}

/// Writes one kernel table.
pub struct Fib {
    table: u32,
    protocol: u8,
    /// Other protocol numbers whose routes in our table the next dump adopts.
    adopt: Vec<u8>,
    mode: Mode,
    v4: Channel,
    v6: Channel,
    objects: Objects,
    /// With nexthop objects: what each of our routes uses. A delete of a route that names
    /// an object is held back until the flush: if nothing uses the object by then,
    /// deleting the object removes the route.
    installed: Routes,
    /// The prefixes of the held-back deletes, while there are few.
    deferred: Vec<IpNet>,
    /// More deletes were held back than `deferred` lists.
    deferred_overflow: bool,
    seq: u32,
    failures: Vec<FibError>,
    /// Counters for `show` and metrics.
    pub ops: u64,
    pub errors: u64,
}

impl Fib {
    /// Opens the netlink sockets for `table`, marking routes with `protocol`, with nexthop
    /// objects where the kernel has them.
    pub fn open(table: u32, protocol: u8) -> io::Result<Fib> {
        let mut fib = Fib::open_with(table, protocol, Mode::NexthopObjects)?;
        let mut request = Vec::new();
        nexthop::encode_dump(&mut request, fib.next_seq());
        if let Err(error) = fib.v6.dump(&request, |_, _| {}) {
            tracing::info!(%error, "the kernel has no nexthop objects: installing plain routes");
            fib.mode = Mode::PlainRoutes;
        }
        Ok(fib)
    }

    /// Opens the netlink sockets with the given mode, as it is (no detection).
    pub fn open_with(table: u32, protocol: u8, mode: Mode) -> io::Result<Fib> {
        Ok(Fib {
            table,
            protocol,
            adopt: Vec::new(),
            mode,
            v4: Channel::open(SOCKET_BUFFER)?,
            v6: Channel::open(SOCKET_BUFFER)?,
            objects: Objects::new(),
            installed: Routes::default(),
            deferred: Vec::new(),
            deferred_overflow: false,
            seq: 0,
            failures: Vec::new(),
            ops: 0,
            errors: 0,
        })
    }

    pub fn table(&self) -> u32 {
        self.table
    }

    /// The netlink ports of our sockets, which the kernel puts on the route events that
    /// our own requests cause.
    pub fn ports(&self) -> [u32; 2] {
        [self.v4.port(), self.v6.port()]
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Nexthop objects we hold in the kernel.
    pub fn objects(&self) -> usize {
        self.objects.len()
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Queues one operation; requests go to the kernel in batches, the last of them at
    /// `flush`. Returns failures collected meanwhile.
    pub fn apply(&mut self, op: FibOp) -> Vec<FibError> {
        self.ops += 1;
        match op {
            FibOp::Replace { prefix, next_hops } => self.replace(prefix, &next_hops),
            FibOp::Delete { prefix } => self.delete(prefix),
        }
        if self.v4.full() || self.v6.full() {
            for channel in [&mut self.v4, &mut self.v6] {
                if channel.full() {
                    channel.hand_over();
                }
            }
            self.collect_failures();
        }
        self.take_failures()
    }

    /// Sends everything queued, removes the objects no route uses any more, and returns
    /// the failures.
    pub fn flush(&mut self) -> Vec<FibError> {
        // A held-back delete whose object is still in use goes out on its own; otherwise
        // deleting the object below removes the route.
        let mut explicit = Vec::new();
        if std::mem::take(&mut self.deferred_overflow) {
            self.deferred.clear();
            let objects = &self.objects;
            self.installed.retain(|prefix, state| match state {
                Installed::Deleting(id) => {
                    if objects.users(id) > 0 {
                        explicit.push(prefix);
                    }
                    false
                }
                _ => true,
            });
        } else {
            for prefix in std::mem::take(&mut self.deferred) {
                // Not `Deleting` any more: installed again since, the replace took care of it.
                if let Some(Installed::Deleting(id)) = self.installed.get(&prefix) {
                    self.installed.remove(&prefix);
                    if self.objects.users(id) > 0 {
                        explicit.push(prefix);
                    }
                }
            }
        }
        for prefix in explicit {
            self.encode_delete(prefix);
        }
        self.installed.shrink();
        self.send_batches();
        let unused = self.objects.take_unused();
        if !unused.is_empty() {
            for id in unused {
                let seq = self.next_seq();
                nexthop::encode_delete(&mut self.v6.out, seq, id);
                if self.v6.full() {
                    self.send_batches();
                }
            }
            self.send_batches();
        }
        self.take_failures()
    }

    fn take_failures(&mut self) -> Vec<FibError> {
        self.errors += self.failures.len() as u64;
        std::mem::take(&mut self.failures)
    }

    fn replace(&mut self, prefix: IpNet, next_hops: &[NextHop]) {
        let object = match self.mode {
            Mode::NexthopObjects => self.object_for(&prefix, next_hops),
            Mode::PlainRoutes => None,
        };
        if self.mode == Mode::NexthopObjects {
            if let Some(id) = object {
                self.objects.hold(id);
            }
            let state = object.map_or(Installed::Plain, Installed::Object);
            if let Some(Installed::Object(old)) = self.installed.insert(prefix, state) {
                self.objects.release(old);
            }
        }
        let flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE;
        match object {
            Some(id) => self.encode_short(RTM_NEWROUTE, flags, &prefix, Some(id)),
            None => {
                let (seq, target) = (self.next_seq(), self.target());
                let out = self.out(&prefix);
                target.encode_plain(out, flags, seq, &prefix, next_hops);
            }
        }
    }

    fn target(&self) -> Target {
        Target {
            table: self.table,
            protocol: self.protocol,
        }
    }

    /// The buffer of requests for `prefix`'s family.
    fn out(&mut self, prefix: &IpNet) -> &mut Vec<u8> {
        match prefix {
            IpNet::V4(_) => &mut self.v4.out,
            IpNet::V6(_) => &mut self.v6.out,
        }
    }

    /// A route request with only table, destination and (optionally) object id: the hot
    /// path (see [`Target::encode_short`]).
    fn encode_short(&mut self, kind: u16, flags: u16, prefix: &IpNet, object: Option<u32>) {
        let (seq, target) = (self.next_seq(), self.target());
        target.encode_short(self.out(prefix), kind, flags, seq, prefix, object);
    }

    fn delete(&mut self, prefix: IpNet) {
        match self.installed.get(&prefix) {
            Some(Installed::Deleting(_)) => {}
            Some(Installed::Object(id)) => {
                self.objects.release(id);
                self.installed.insert(prefix, Installed::Deleting(id));
                if self.deferred.len() < DEFERRED_LIST {
                    self.deferred.push(prefix);
                } else {
                    self.deferred_overflow = true;
                }
            }
            Some(Installed::Plain) => {
                self.installed.remove(&prefix);
                self.encode_delete(prefix);
            }
            None => self.encode_delete(prefix),
        }
    }

    fn encode_delete(&mut self, prefix: IpNet) {
        self.encode_short(RTM_DELROUTE, NLM_F_REQUEST, &prefix, None);
    }

    /// The object for `next_hops` as the route to `prefix` would use it, created if need
    /// be; `None` where the route must carry its gateways itself.
    fn object_for(&mut self, prefix: &IpNet, next_hops: &[NextHop]) -> Option<u32> {
        let usable = |h: &NextHop| {
            nexthop::objectable(h) && (prefix.addr().is_ipv4() || h.gateway.is_ipv6())
        };
        if next_hops.is_empty() || !next_hops.iter().all(usable) {
            return None;
        }
        let mut members = Vec::with_capacity(next_hops.len());
        for hop in next_hops {
            members.push(self.object(Object::Single(*hop))?);
        }
        if members.len() == 1 {
            return Some(members[0]);
        }
        members.sort_unstable();
        members.dedup();
        self.object(Object::Group(members))
    }

    /// The id of `object`, created in the kernel now if we do not have it.
    fn object(&mut self, object: Object) -> Option<u32> {
        if let Some(id) = self.objects.id_of(&object) {
            return Some(id);
        }
        // Objects must exist before routes name them: send what is queued first, so
        // that failures keep their order, then create this one and wait for the answer.
        self.send_batches();
        for _ in 0..64 {
            let id = self.objects.fresh_id();
            let mut message = Vec::new();
            let seq = self.next_seq();
            nexthop::encode_new(&mut message, seq, id, self.protocol, &object);
            let mut earlier = Vec::new();
            let answer = self.v6.request(&message, &mut earlier);
            self.record(earlier);
            match answer {
                Ok(0) => {
                    self.objects.insert(id, object);
                    return Some(id);
                }
                // Someone else's object has this id: take the next.
                Ok(libc::EEXIST) => continue,
                Ok(errno) => {
                    tracing::debug!(?object, error = %io::Error::from_raw_os_error(errno), "nexthop object refused: plain route instead");
                    return None;
                }
                Err(error) => {
                    tracing::warn!(%error, "nexthop object request failed: plain route instead");
                    return None;
                }
            }
        }
        None
    }

    /// Sends both families' queued requests and waits until they are through: with both,
    /// the IPv4 courier sends its family while this thread sends IPv6.
    fn send_batches(&mut self) {
        if !self.v4.out.is_empty() && !self.v6.out.is_empty() {
            self.v4.hand_over();
        }
        self.v6.send_here();
        self.v4.send_here();
        for channel in [&mut self.v4, &mut self.v6] {
            channel.wait();
        }
        self.collect_failures();
    }

    /// Takes the failures both channels have collected into our own.
    fn collect_failures(&mut self) {
        let failures = [&mut self.v4, &mut self.v6].map(Channel::take_failures);
        for failures in failures {
            self.record(failures);
        }
    }

    fn record(&mut self, failures: RawFailures) {
        for (errno, echoed) in failures {
            let op = self.failed_op(&echoed);
            self.failures.push(FibError { op, errno });
        }
    }

    /// Sets both sockets' receive buffers (where failure reports queue up), in bytes.
    pub fn set_receive_buffer(&mut self, bytes: usize) -> io::Result<()> {
        for channel in [&self.v4, &self.v6] {
            channel.set_receive_buffer(bytes)?;
        }
        Ok(())
    }

    /// The operation of a refused request, from the request the kernel echoed back.
    fn failed_op(&self, echoed: &[u8]) -> Option<FibOp> {
        let message = nlmsg::messages(echoed).next()?;
        let route = route::parse(message.payload)?;
        match message.kind {
            RTM_NEWROUTE => {
                let next_hops = match route.object {
                    Some(id) => self.objects.next_hops(id),
                    None => route.next_hops,
                };
                Some(FibOp::Replace {
                    prefix: route.prefix,
                    next_hops: next_hops.into(),
                })
            }
            RTM_DELROUTE => Some(FibOp::Delete {
                prefix: route.prefix,
            }),
            _ => None,
        }
    }

    /// Our routes currently in the table (other protocols' routes are skipped). Also
    /// rebuilds the books of objects and of which route uses which from the kernel, and
    /// removes our objects no route uses.
    ///
    /// Routes in our table under one of the protocol numbers given to
    /// [`Fib::adopt_protocols`] (what a previous run used) count as ours too: each is
    /// replaced in place, same next hops, under our number (the kernel swaps the route, it
    /// never goes missing), and comes back among ours. Their nexthop objects go once no
    /// route anywhere uses them. Once that went through, later dumps look for our number
    /// only.
    pub fn dump(&mut self) -> io::Result<BTreeMap<IpNet, Vec<NextHop>>> {
        self.send_batches();
        let mut lost = self.take_failures();
        self.deferred.clear();
        self.deferred_overflow = false;
        self.installed.clear();
        self.objects.clear();
        let adopt = self.adopt.clone();
        if self.mode == Mode::NexthopObjects {
            let mut request = Vec::new();
            nexthop::encode_dump(&mut request, self.next_seq());
            let protocol = self.protocol;
            let mut found = Vec::new();
            self.v6.dump(&request, |_, payload| {
                // An object outside our ids is none we made: left alone.
                if let Some((id, p, Some(object))) = nexthop::parse(payload)
                    && (p == protocol || adopt.contains(&p))
                    && representable(id)
                {
                    found.push((id, p != protocol, object));
                }
            })?;
            // Members before their groups.
            found.sort_by_key(|(_, _, o)| matches!(o, Object::Group(_)));
            for (id, legacy, object) in found {
                if legacy {
                    self.objects.insert_legacy(id, object);
                } else {
                    self.objects.insert(id, object);
                }
            }
        }
        let legacy_objects: HashSet<u32> = self.objects.legacy_ids().into_iter().collect();
        let mut routes = BTreeMap::new();
        let mut moved = Vec::new();
        for family in [libc::AF_INET, libc::AF_INET6] {
            let request = route::encode_dump(family, self.next_seq());
            let mut uses = Vec::new();
            // Legacy objects used by routes that stay someone else's: never deleted.
            let mut elsewhere = Vec::new();
            let (table, protocol) = (self.table, self.protocol);
            let channel = match family {
                libc::AF_INET => &mut self.v4,
                _ => &mut self.v6,
            };
            channel.dump(&request, |kind, payload| {
                if kind != RTM_NEWROUTE {
                    return;
                }
                let Some(route) = route::parse(payload) else {
                    return;
                };
                let id = route.object;
                let found = ours(table, protocol, &route).or_else(|| {
                    let found = adoptable(table, &adopt, &legacy_objects, &route)?;
                    moved.push(found.0);
                    Some(found)
                });
                match found {
                    Some((prefix, next_hops)) => {
                        uses.push((prefix, id));
                        routes
                            .entry(prefix)
                            .or_insert_with(Vec::new)
                            .extend(next_hops);
                    }
                    None => elsewhere.extend(id.filter(|id| legacy_objects.contains(id))),
                }
            })?;
            if self.mode == Mode::NexthopObjects {
                for (prefix, id) in uses {
                    let id = id.filter(|id| self.objects.get(*id).is_some());
                    if let Some(id) = id {
                        self.objects.hold(id);
                    }
                    self.installed
                        .insert(prefix, id.map_or(Installed::Plain, Installed::Object));
                }
            }
            for id in elsewhere {
                self.objects.hold(id);
            }
        }
        for next_hops in routes.values_mut() {
            next_hops.sort_unstable();
            next_hops.dedup();
        }
        if !moved.is_empty() {
            moved.sort_unstable();
            moved.dedup();
            tracing::info!(
                routes = moved.len(),
                from = ?adopt,
                to = self.protocol,
                table = self.table,
                "routes a previous run left under another protocol number: adopted, now under ours"
            );
            lost.extend(self.take_failures());
            for prefix in &moved {
                self.replace(*prefix, &routes[prefix]);
                if self.v4.full() || self.v6.full() {
                    self.send_batches();
                }
            }
            self.send_batches();
            let refused = self.take_failures();
            if refused.is_empty() {
                self.adopt.clear();
            } else {
                // Whatever still names an old object keeps it: the next dump tries again.
                for id in legacy_objects {
                    self.objects.hold(id);
                }
                tracing::warn!(error = %refused[0], refused = refused.len(), "moving adopted routes to our protocol number failed");
                self.failures.extend(refused);
            }
        } else {
            self.adopt.clear();
        }
        // Objects of ours that no route uses (left by a crash, or emptied underneath).
        lost.extend(self.flush());
        if let Some(error) = lost.first() {
            tracing::debug!(%error, "failures before the dump");
        }
        Ok(routes)
    }

    /// Protocol numbers whose routes in our table the next dump adopts as ours and moves
    /// to our own number (see [`Fib::dump`]): the old default, or the number in use before
    /// a reload changed it. Our own number is left out.
    pub fn adopt_protocols(&mut self, protocols: &[u8]) {
        let mut adopt: Vec<u8> = protocols
            .iter()
            .copied()
            .filter(|p| *p != self.protocol)
            .collect();
        adopt.sort_unstable();
        adopt.dedup();
        self.adopt = adopt;
    }

    /// A dumped or monitored route, if it is one of ours in our table.
    pub fn ours(&self, route: &KernelRoute) -> Option<(IpNet, Vec<NextHop>)> {
        ours(self.table, self.protocol, route)
    }
}

/// `route`, if it has `protocol` and is in `table`.
fn ours(table: u32, protocol: u8, route: &KernelRoute) -> Option<(IpNet, Vec<NextHop>)> {
    (route.protocol == protocol && route.table == table)
        .then(|| (route.prefix, route.next_hops.clone()))
}

/// `route`, if it is one a previous run of ours left in `table` under one of the
/// `protocols` (see [`Fib::dump`]): a unicast route with gateways, and if it names a nexthop
/// object, one of the `objects` a previous run of ours made (another program's routes with
/// that number use objects of their own, or none, or no gateway).
fn adoptable(
    table: u32,
    protocols: &[u8],
    objects: &HashSet<u32>,
    route: &KernelRoute,
) -> Option<(IpNet, Vec<NextHop>)> {
    if !protocols.contains(&route.protocol) || !route.unicast {
        return None;
    }
    if route.object.is_some_and(|id| !objects.contains(&id)) {
        return None;
    }
    ours(table, route.protocol, route).filter(|(_, next_hops)| !next_hops.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_the_operation_or_says_it_could_not() {
        let prefix: IpNet = "10.0.0.0/26".parse().unwrap();
        let error = FibError {
            op: Some(FibOp::Delete { prefix }),
            errno: libc::ESRCH,
        };
        assert!(error.to_string().starts_with("delete 10.0.0.0/26: "));
        let lost = FibError {
            op: None,
            errno: libc::ENOBUFS,
        };
        assert!(lost.to_string().starts_with("route changes: "));
    }
}
