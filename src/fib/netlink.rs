//! The only code that talks rtnetlink routes. It writes our routes into the kernel table
//! (replace, never delete-then-add) and dumps the table to adopt what a previous run left.
//! Routes of other protocols are never touched: deletes carry our protocol number, which the
//! kernel matches.
//!
//! How it is fast: where the kernel has nexthop objects (Linux 5.3+, detected at start),
//! every next hop (gateway and interface) is one object and every ECMP set a group of them
//! (see [`super::nexthop`]); routes carry only the object's id, so `ip route` still shows
//! `nhid N via inet6 ... dev ...`. When the last route using an object goes, the object is
//! deleted, and the kernel takes every route still using it along in the same request: a
//! lost session with 200,000 routes is one request. Route requests are encoded into one
//! buffer per family and sent many per `sendmsg`, without asking for acknowledgements (the
//! kernel reports failures anyway), IPv4 and IPv6 on their own sockets, each with a thread
//! of its own (a courier) that sends one batch while the event loop encodes the next.
//! rtnetlink handles requests synchronously in `sendmsg`, so once a buffer is sent its
//! failures are already queued on the socket: nothing waits for a round trip.
//!
//! On kernels without nexthop objects, or for a next hop without an interface (which an
//! object cannot express), routes carry their gateways themselves (RTA_GATEWAY, RTA_VIA for
//! an IPv4 route via IPv6, RTA_MULTIPATH for ECMP), batched the same way.
//!
//! Failures come back as [`FibError`]s naming the operation; the daemon then dumps the table
//! and reconciles. [`Fib::dump`] also rebuilds the books of objects and routes from what the
//! kernel holds, so whatever happened underneath (ENOBUFS, objects deleted by hand), the next
//! resync starts from the truth.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, mpsc};

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteNextHop, RouteProtocol,
    RouteScope, RouteType, RouteVia,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::diff::FibOp;
use super::installed::{Installed, Routes, representable};
use super::nexthop::{self, Object, Objects};
use crate::rib::NextHop;

/// Socket buffers: room for big batches one way and for many failures the other.
const SOCKET_BUFFER: usize = 32 << 20;
/// Bytes of requests per `sendmsg` (about 4,000 routes); smaller if the kernel gives us a
/// smaller send buffer.
const CHUNK: usize = 256 << 10;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTA_DST: u16 = 1;
const RTA_TABLE: u16 = 15;
const RTA_NH_ID: u16 = 30;
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

/// Failures as the kernel reports them: errno and the request it echoes (empty when the
/// report itself was lost).
type RawFailures = Vec<(i32, Vec<u8>)>;

/// A netlink socket with the requests waiting to go on it.
struct Channel {
    fd: Arc<OwnedFd>,
    out: Vec<u8>,
    chunk: usize,
    /// The netlink port the kernel gave the socket; it stamps it on the route events our
    /// own requests cause.
    port: u32,
    courier: Courier,
    /// The buffer the courier gave back, for the next batch.
    spare: Vec<u8>,
    /// Failures the courier reported, not yet taken.
    failures: RawFailures,
    /// Where failure reports are read on this thread (allocated on first use).
    inbox: Vec<u8>,
}

/// The thread that sends a channel's batches: at most one batch is with it at a time.
struct Courier {
    batches: mpsc::Sender<Vec<u8>>,
    returned: mpsc::Receiver<(Vec<u8>, RawFailures)>,
    busy: bool,
}

impl Courier {
    fn start(fd: Arc<OwnedFd>) -> io::Result<Courier> {
        let (batches, to_send) = mpsc::channel::<Vec<u8>>();
        let (give_back, returned) = mpsc::channel();
        std::thread::Builder::new()
            .name("fib-courier".into())
            .spawn(move || {
                let mut buffer = vec![0u8; 64 << 10];
                for batch in to_send {
                    let mut failures = Vec::new();
                    send_all(&fd, &batch, &mut failures);
                    drain(&fd, &mut buffer, &mut failures);
                    if give_back.send((batch, failures)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Courier {
            batches,
            returned,
            busy: false,
        })
    }
}

/// Sends `bytes` in one `sendmsg`; a refused send is one unattributed failure.
fn send_all(fd: &OwnedFd, bytes: &[u8], failures: &mut RawFailures) {
    // SAFETY: sends from a buffer we own to the kernel (the default destination).
    let sent = unsafe { libc::send(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
    if sent < 0 {
        failures.push((
            io::Error::last_os_error().raw_os_error().unwrap_or(0),
            Vec::new(),
        ));
    }
}

/// One non-blocking receive into `buffer`: the bytes read, or the socket's error.
pub(super) fn recv(fd: &OwnedFd, buffer: &mut [u8]) -> io::Result<usize> {
    // SAFETY: receives into a buffer we own, at most its length.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Reads the failure reports already queued on the socket.
fn drain(fd: &OwnedFd, buffer: &mut [u8], failures: &mut RawFailures) {
    loop {
        let n = match recv(fd, buffer) {
            Ok(n) => n,
            Err(error) => match error.raw_os_error() {
                Some(libc::EAGAIN) => return,
                Some(libc::EINTR) => continue,
                // Reports were lost: say so, unattributed.
                errno => {
                    failures.push((errno.unwrap_or(libc::EIO), Vec::new()));
                    if errno != Some(libc::ENOBUFS) {
                        return;
                    }
                    continue;
                }
            },
        };
        for (kind, payload) in messages(&buffer[..n]) {
            if kind == NLMSG_ERROR && payload.len() >= 4 {
                let code = i32::from_ne_bytes(payload[..4].try_into().unwrap());
                if code != 0 {
                    failures.push((-code, payload[4..].to_vec()));
                }
            }
        }
    }
}

/// A non-blocking rtnetlink socket.
pub(super) fn route_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the descriptor is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Binds a netlink socket to a kernel-chosen port, in the multicast `groups` (RTMGRP_*
/// bits, 0 for none), and returns that port.
pub(super) fn bind_port(fd: &OwnedFd, groups: u32) -> io::Result<u32> {
    // SAFETY: sockaddr_nl is plain old data; all zero is a valid value (port chosen by the
    // kernel, no groups).
    let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    address.nl_groups = groups;
    let size = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: bind(2) and getsockname(2) with a pointer to and the size of our own
    // sockaddr_nl.
    unsafe {
        if libc::bind(fd.as_raw_fd(), (&raw const address).cast(), size) < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut length = size;
        if libc::getsockname(fd.as_raw_fd(), (&raw mut address).cast(), &mut length) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(address.nl_pid)
}

impl Channel {
    fn open() -> io::Result<Channel> {
        let fd = route_socket()?;
        for (force, plain) in [
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        ] {
            if setsockopt(&fd, libc::SOL_SOCKET, force, SOCKET_BUFFER as libc::c_int).is_err() {
                let _ = setsockopt(&fd, libc::SOL_SOCKET, plain, SOCKET_BUFFER as libc::c_int);
            }
        }
        // The kernel's reason with each failure, where supported.
        let _ = setsockopt(&fd, libc::SOL_NETLINK, libc::NETLINK_EXT_ACK, 1);
        let sndbuf = getsockopt(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF).unwrap_or(0);
        let port = bind_port(&fd, 0)?;
        // The kernel refuses a message longer than the send buffer less some overhead.
        let chunk = CHUNK.min((sndbuf as usize).saturating_sub(4096).max(16 << 10));
        let fd = Arc::new(fd);
        Ok(Channel {
            courier: Courier::start(Arc::clone(&fd))?,
            fd,
            out: Vec::with_capacity(chunk + 4096),
            chunk,
            port,
            spare: Vec::new(),
            failures: Vec::new(),
            inbox: Vec::new(),
        })
    }

    fn full(&self) -> bool {
        self.out.len() >= self.chunk
    }

    /// Gives what is waiting to the courier (after the batch it has, if any) and goes on.
    fn hand_over(&mut self) {
        if self.out.is_empty() {
            return;
        }
        self.wait();
        let batch = std::mem::replace(&mut self.out, std::mem::take(&mut self.spare));
        match self.courier.batches.send(batch) {
            Ok(()) => self.courier.busy = true,
            // The courier is gone (it never panics, but): send from here.
            Err(mpsc::SendError(batch)) => {
                self.out = batch;
                self.send_here();
            }
        }
    }

    /// Sends what is waiting from this thread (after the courier's batch, if any): for the
    /// small batches of a flush, cheaper than waking the courier.
    fn send_here(&mut self) {
        if self.out.is_empty() {
            return;
        }
        self.wait();
        send_all(&self.fd, &self.out, &mut self.failures);
        self.out.clear();
        let mut failures = std::mem::take(&mut self.failures);
        self.drain(&mut failures);
        self.failures = failures;
    }

    /// Waits until the courier has sent its batch, and keeps its failures.
    fn wait(&mut self) {
        if !std::mem::take(&mut self.courier.busy) {
            return;
        }
        if let Ok((mut buffer, failures)) = self.courier.returned.recv() {
            self.failures.extend(failures);
            buffer.clear();
            if buffer.capacity() > 2 * self.chunk + 8192 {
                buffer.shrink_to(self.chunk + 4096);
            }
            self.spare = buffer;
        }
    }

    /// One non-blocking receive into `buffer`: the bytes read, or the socket's error.
    fn recv(&self, buffer: &mut [u8]) -> io::Result<usize> {
        recv(&self.fd, buffer)
    }

    /// Reads the failure reports already queued on the socket.
    fn drain(&mut self, failures: &mut RawFailures) {
        if self.inbox.is_empty() {
            self.inbox = vec![0u8; 64 << 10];
        }
        drain(&self.fd, &mut self.inbox, failures);
    }

    /// Sends one request and waits for its acknowledgement; returns its errno (0 = done).
    fn request(&mut self, message: &[u8], failures: &mut RawFailures) -> io::Result<i32> {
        self.wait();
        failures.append(&mut self.failures);
        self.drain(failures);
        let mut with_ack = message.to_vec();
        let flags = u16::from_ne_bytes([with_ack[6], with_ack[7]]) | 0x4; // NLM_F_ACK
        with_ack[6..8].copy_from_slice(&flags.to_ne_bytes());
        self.out = with_ack;
        let seq = u32::from_ne_bytes(message[8..12].try_into().unwrap());
        // SAFETY: as in `send`.
        let sent = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                self.out.as_ptr().cast(),
                self.out.len(),
                0,
            )
        };
        self.out.clear();
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut answer = None;
        self.receive(|kind, payload| {
            if kind == NLMSG_ERROR && payload.len() >= 20 {
                let echoed = u32::from_ne_bytes(payload[12..16].try_into().unwrap());
                if echoed == seq {
                    answer = Some(-i32::from_ne_bytes(payload[..4].try_into().unwrap()));
                    return true;
                }
            }
            false
        })?;
        answer.ok_or_else(|| io::Error::other("no acknowledgement"))
    }

    /// Receives (waiting up to 10 s for each read) until `each` returns true.
    fn receive(&self, mut each: impl FnMut(u16, &[u8]) -> bool) -> io::Result<()> {
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let mut poll = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: polls one descriptor we own.
            let ready = unsafe { libc::poll(&mut poll, 1, 10_000) };
            if ready == 0 {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "netlink answer"));
            }
            let n = match self.recv(&mut buffer) {
                Ok(n) => n,
                Err(error) => match error.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
                    _ => return Err(error),
                },
            };
            for (kind, payload) in messages(&buffer[..n]) {
                if each(kind, payload) {
                    return Ok(());
                }
            }
        }
    }

    /// Sends a dump request and hands each answer to `each` until the dump is done.
    fn dump(&mut self, request: &[u8], mut each: impl FnMut(u16, &[u8])) -> io::Result<()> {
        // Reports of earlier requests would be mistaken for the dump's: a caller that
        // dumps resynchronises anyway.
        let mut earlier = Vec::new();
        self.drain(&mut earlier);
        // SAFETY: as in `send`.
        let sent = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut result = Ok(());
        self.receive(|kind, payload| match kind {
            NLMSG_DONE => true,
            NLMSG_ERROR => {
                let code = payload
                    .get(..4)
                    .map_or(0, |c| i32::from_ne_bytes(c.try_into().unwrap()));
                if code != 0 {
                    result = Err(io::Error::from_raw_os_error(-code));
                }
                true
            }
            _ => {
                each(kind, payload);
                false
            }
        })?;
        result
    }
}

fn setsockopt(fd: &OwnedFd, level: i32, option: i32, value: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt with a c_int of the right size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn getsockopt(fd: &OwnedFd, level: i32, option: i32) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into a c_int we own, with its size.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            option,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// The netlink messages in `bytes`, as (type, payload after the header).
fn messages(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if bytes.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes(bytes[..4].try_into().unwrap()) as usize;
        if len < 16 || len > bytes.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([bytes[4], bytes[5]]);
        let payload = &bytes[16..len];
        bytes = &bytes[len.next_multiple_of(4).min(bytes.len())..];
        Some((kind, payload))
    })
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
            v4: Channel::open()?,
            v6: Channel::open()?,
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
        [self.v4.port, self.v6.port]
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
                let mut message = self.route_message(&prefix);
                add_next_hops(&mut message, &prefix, next_hops);
                self.encode(&prefix, RouteNetlinkMessage::NewRoute(message), flags);
            }
        }
    }

    /// A route message with only table, destination and (optionally) object id, written
    /// straight into the family's buffer: the hot path, for every route of a bulk load.
    fn encode_short(&mut self, kind: u16, flags: u16, prefix: &IpNet, object: Option<u32>) {
        let seq = self.next_seq();
        let (table, protocol) = (self.table, self.protocol);
        let out = match prefix {
            IpNet::V4(_) => &mut self.v4.out,
            IpNet::V6(_) => &mut self.v6.out,
        };
        let start = nexthop::header(out, kind, flags, seq);
        let family = match prefix {
            IpNet::V4(_) => libc::AF_INET,
            IpNet::V6(_) => libc::AF_INET6,
        } as u8;
        let short_table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
        out.extend_from_slice(&[family, prefix.prefix_len(), 0, 0, short_table, protocol, 0]);
        out.push(1); // RTN_UNICAST
        out.extend_from_slice(&0u32.to_ne_bytes());
        nexthop::attr(out, RTA_TABLE, &table.to_ne_bytes());
        match prefix {
            IpNet::V4(p) => nexthop::attr(out, RTA_DST, &p.network().octets()),
            IpNet::V6(p) => nexthop::attr(out, RTA_DST, &p.network().octets()),
        }
        if let Some(id) = object {
            nexthop::attr(out, RTA_NH_ID, &id.to_ne_bytes());
        }
        nexthop::finish(out, start);
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

    fn route_message(&self, prefix: &IpNet) -> RouteMessage {
        let mut message = RouteMessage::default();
        message.header = RouteHeader {
            address_family: match prefix {
                IpNet::V4(_) => AddressFamily::Inet,
                IpNet::V6(_) => AddressFamily::Inet6,
            },
            destination_prefix_length: prefix.prefix_len(),
            table: u8::try_from(self.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC),
            protocol: RouteProtocol::from(self.protocol),
            scope: RouteScope::Universe,
            kind: RouteType::Unicast,
            ..RouteHeader::default()
        };
        message.attributes.push(RouteAttribute::Table(self.table));
        message
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::from(
                prefix.network(),
            )));
        message
    }

    fn encode(&mut self, prefix: &IpNet, payload: RouteNetlinkMessage, flags: u16) {
        let seq = self.next_seq();
        let mut request = NetlinkMessage::from(payload);
        request.header.flags = flags;
        request.header.sequence_number = seq;
        request.finalize();
        let out = match prefix {
            IpNet::V4(_) => &mut self.v4.out,
            IpNet::V6(_) => &mut self.v6.out,
        };
        let start = out.len();
        out.resize(start + request.buffer_len(), 0);
        request.serialize(&mut out[start..]);
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
        let failures = [&mut self.v4, &mut self.v6].map(|c| std::mem::take(&mut c.failures));
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
            let size = bytes.min(i32::MAX as usize) as libc::c_int;
            if setsockopt(&channel.fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_err() {
                setsockopt(&channel.fd, libc::SOL_SOCKET, libc::SO_RCVBUF, size)?;
            }
        }
        Ok(())
    }

    /// The operation of a refused request, from the request the kernel echoed back.
    fn failed_op(&self, echoed: &[u8]) -> Option<FibOp> {
        let (kind, payload) = messages(echoed).next()?;
        let route = netlink_packet_core::Parseable::<[u8]>::parse(payload).ok()?;
        let route: RouteMessage = route;
        let (prefix, mut next_hops) = parse_route(&route)?;
        match kind {
            RTM_NEWROUTE => {
                if let Some(id) = route.attributes.iter().find_map(|a| match a {
                    RouteAttribute::NhId(id) => Some(*id),
                    _ => None,
                }) {
                    next_hops = self.objects.next_hops(id);
                }
                Some(FibOp::Replace {
                    prefix,
                    next_hops: next_hops.into(),
                })
            }
            RTM_DELROUTE => Some(FibOp::Delete { prefix }),
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
        let legacy_objects: std::collections::HashSet<u32> =
            self.objects.legacy_ids().into_iter().collect();
        let mut routes = BTreeMap::new();
        let mut moved = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut message = RouteMessage::default();
            message.header.address_family = family;
            let mut request = NetlinkMessage::from(RouteNetlinkMessage::GetRoute(message));
            request.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
            request.header.sequence_number = self.next_seq();
            request.finalize();
            let mut bytes = vec![0; request.buffer_len()];
            request.serialize(&mut bytes);
            let mut uses = Vec::new();
            // Legacy objects used by routes that stay someone else's: never deleted.
            let mut elsewhere = Vec::new();
            let (table, protocol) = (self.table, self.protocol);
            let channel = match family {
                AddressFamily::Inet => &mut self.v4,
                _ => &mut self.v6,
            };
            channel.dump(&bytes, |kind, payload| {
                if kind != RTM_NEWROUTE {
                    return;
                }
                let Ok(route) =
                    <RouteMessage as netlink_packet_core::Parseable<[u8]>>::parse(payload)
                else {
                    return;
                };
                let id = route.attributes.iter().find_map(|a| match a {
                    RouteAttribute::NhId(id) => Some(*id),
                    _ => None,
                });
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
    pub fn ours(&self, route: &RouteMessage) -> Option<(IpNet, Vec<NextHop>)> {
        ours(self.table, self.protocol, route)
    }
}

/// `route`, if it has `protocol` and is in `table`.
fn ours(table_id: u32, protocol: u8, route: &RouteMessage) -> Option<(IpNet, Vec<NextHop>)> {
    {
        if u8::from(route.header.protocol) != protocol {
            return None;
        }
        let table = route
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Table(t) => Some(*t),
                _ => None,
            })
            .unwrap_or(u32::from(route.header.table));
        if table != table_id {
            return None;
        }
        parse_route(route)
    }
}

/// `route`, if it is one a previous run of ours left in `table` under one of the
/// `protocols` (see [`Fib::dump`]): a unicast route with gateways, and if it names a nexthop
/// object, one of the `objects` a previous run of ours made (another program's routes with
/// that number use objects of their own, or none, or no gateway).
fn adoptable(
    table: u32,
    protocols: &[u8],
    objects: &std::collections::HashSet<u32>,
    route: &RouteMessage,
) -> Option<(IpNet, Vec<NextHop>)> {
    let protocol = u8::from(route.header.protocol);
    if !protocols.contains(&protocol) || route.header.kind != RouteType::Unicast {
        return None;
    }
    let id = route.attributes.iter().find_map(|a| match a {
        RouteAttribute::NhId(id) => Some(*id),
        _ => None,
    });
    if id.is_some_and(|id| !objects.contains(&id)) {
        return None;
    }
    ours(table, protocol, route).filter(|(_, next_hops)| !next_hops.is_empty())
}

/// The gateways of a plain route: one as RTA_GATEWAY/RTA_VIA and RTA_OIF, several as
/// RTA_MULTIPATH.
fn add_next_hops(message: &mut RouteMessage, prefix: &IpNet, next_hops: &[NextHop]) {
    match next_hops {
        [] => {}
        [one] => message.attributes.extend(next_hop_attributes(prefix, one)),
        many => message.attributes.push(RouteAttribute::MultiPath(
            many.iter()
                .map(|nh| {
                    let mut hop = RouteNextHop::default();
                    hop.interface_index = nh.ifindex.unwrap_or(0);
                    hop.attributes = gateway_attribute(prefix, nh.gateway).into_iter().collect();
                    hop
                })
                .collect(),
        )),
    }
}

/// RTA_GATEWAY for a gateway of the prefix's own family, RTA_VIA for an IPv6 gateway of an
/// IPv4 prefix (RFC 8950 next hops; `ip route` shows `via inet6`).
fn gateway_attribute(prefix: &IpNet, gateway: IpAddr) -> Option<RouteAttribute> {
    match (prefix, gateway) {
        (IpNet::V4(_), IpAddr::V6(v6)) => Some(RouteAttribute::Via(RouteVia::Inet6(v6))),
        (_, gw) if gw.is_unspecified() => None,
        (_, gw) => Some(RouteAttribute::Gateway(RouteAddress::from(gw))),
    }
}

fn next_hop_attributes(prefix: &IpNet, nh: &NextHop) -> Vec<RouteAttribute> {
    let mut attributes: Vec<RouteAttribute> =
        gateway_attribute(prefix, nh.gateway).into_iter().collect();
    if let Some(ifindex) = nh.ifindex {
        attributes.push(RouteAttribute::Oif(ifindex));
    }
    attributes
}

fn route_address(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

fn gateway_of(attributes: &[RouteAttribute]) -> Option<IpAddr> {
    attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(g) => route_address(g),
        RouteAttribute::Via(RouteVia::Inet(v4)) => Some(IpAddr::V4(*v4)),
        RouteAttribute::Via(RouteVia::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    })
}

/// A kernel route as prefix and next hops (sorted, as the RIB keeps them). Routes using
/// nexthop objects are dumped with their gateways spelled out, so they parse the same.
fn parse_route(route: &RouteMessage) -> Option<(IpNet, Vec<NextHop>)> {
    let length = route.header.destination_prefix_length;
    let destination = route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Destination(d) => route_address(d),
            _ => None,
        })
        .or(match route.header.address_family {
            AddressFamily::Inet => Some(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            AddressFamily::Inet6 => Some(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)),
            _ => None,
        })?;
    let prefix = IpNet::new(destination, length).ok()?;
    let mut next_hops: Vec<NextHop> = match route.attributes.iter().find_map(|a| match a {
        RouteAttribute::MultiPath(hops) => Some(hops),
        _ => None,
    }) {
        Some(hops) => hops
            .iter()
            .filter_map(|hop| {
                Some(NextHop {
                    gateway: gateway_of(&hop.attributes)?,
                    ifindex: (hop.interface_index != 0).then_some(hop.interface_index),
                })
            })
            .collect(),
        None => {
            let oif = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            });
            gateway_of(&route.attributes)
                .map(|gateway| NextHop {
                    gateway,
                    ifindex: oif,
                })
                .into_iter()
                .collect()
        }
    };
    next_hops.sort();
    Some((prefix, next_hops))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_split_at_their_aligned_lengths() {
        let mut bytes = Vec::new();
        let a = nexthop::header(&mut bytes, 2, 0, 1);
        bytes.extend_from_slice(&[1, 2, 3]);
        nexthop::finish(&mut bytes, a);
        bytes.push(0); // padding
        let b = nexthop::header(&mut bytes, 3, 0, 2);
        nexthop::finish(&mut bytes, b);
        let got: Vec<(u16, Vec<u8>)> = messages(&bytes).map(|(k, p)| (k, p.to_vec())).collect();
        assert_eq!(got, vec![(2, vec![1, 2, 3]), (3, vec![])]);
    }

    #[test]
    fn short_route_messages_parse_as_route_messages() {
        let mut fib = Fib::open_with(1336, 196, Mode::NexthopObjects).unwrap();
        for prefix in ["10.1.2.0/24", "fd00:1:2::/64"] {
            let prefix: IpNet = prefix.parse().unwrap();
            fib.encode_short(RTM_NEWROUTE, NLM_F_REQUEST, &prefix, Some(77));
            let out = match prefix {
                IpNet::V4(_) => std::mem::take(&mut fib.v4.out),
                IpNet::V6(_) => std::mem::take(&mut fib.v6.out),
            };
            let (kind, payload) = messages(&out).next().unwrap();
            assert_eq!(kind, RTM_NEWROUTE);
            let route: RouteMessage =
                netlink_packet_core::Parseable::<[u8]>::parse(payload).unwrap();
            assert_eq!(u8::from(route.header.protocol), 196);
            assert_eq!(route.header.kind, RouteType::Unicast);
            assert!(route.attributes.contains(&RouteAttribute::Table(1336)));
            assert!(route.attributes.contains(&RouteAttribute::NhId(77)));
            assert_eq!(parse_route(&route).map(|(p, _)| p), Some(prefix));
        }
    }

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
