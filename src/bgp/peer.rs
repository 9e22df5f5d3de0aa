//! Drives one accepted BGP connection: bytes to the codec, messages to the session state
//! machine, its outputs back to the socket. UPDATEs are turned into route batches here
//! (import policy and next hop resolution), so sessions work in parallel and the daemon
//! only merges their results. One task per connection; it ends when the session does.
//!
//! Memory per connection is bounded whatever the peer sends: reads land in a buffer shared
//! by the sessions of a runtime thread, a session keeps at most one incomplete message
//! (4096 bytes, RFC 4271) between reads and nothing when a read ends on a message boundary
//! (most of a session's life), decoded messages go out through a bounded channel, and a
//! peer that stops reading our messages is dropped after `WRITE_TIMEOUT` instead of
//! blocking its task forever.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;

use super::session::{Closed, Negotiated, Output, Session, SessionConfig};
use super::wire::{self, Cease, Family, Notification, Update};
use crate::config::ImportRule;
use crate::neighbor;
use crate::policy::{self, PeerLink, Rejection, Resolution};
use crate::rib::{NextHop, Path, PathAttrs};

/// How much one read may take from the socket.
const READ_WINDOW: usize = 64 * 1024;

thread_local! {
    /// Where each read lands, shared by the sessions of one runtime thread: a session keeps
    /// only the incomplete message left at the end of a read, so a thousand idle sessions
    /// hold no receive buffers and a thousand busy ones still share one per thread.
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(Vec::with_capacity(wire::MAX_MESSAGE_LEN + READ_WINDOW));
}

/// A write that cannot finish in this time means the peer stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// IPv4 nodes whose IPv6 link-local address is remembered per session.
const MAX_LINK_LOCALS: usize = 256;

/// Identifies one connection, so that events of a replaced connection are recognised.
pub type ConnId = u64;

/// Everything a connection needs to know, fixed when it is accepted.
#[derive(Debug, Clone)]
pub struct PeerSetup {
    pub conn: ConnId,
    pub name: String,
    pub link: PeerLink,
    pub session: SessionConfig,
    pub import: Vec<ImportRule>,
    /// Every bridge's prefixes (no learned route may overlap them).
    pub bridge_prefixes: Vec<IpNet>,
}

/// Routes learned from one UPDATE, after policy.
#[derive(Debug, Default)]
pub struct RouteBatch {
    pub announce: Vec<(IpNet, Path)>,
    /// Withdrawn, and refused prefixes (a refused announcement replaces any earlier path).
    pub withdraw: Vec<IpNet>,
    pub rejected: Vec<(IpNet, Rejection)>,
}

#[derive(Debug)]
pub enum PeerEvent {
    Up(ConnId, Negotiated),
    Routes(ConnId, RouteBatch),
    EndOfRib(ConnId, Family),
    Down(ConnId, Closed),
}

/// What the daemon may ask of a connection.
#[derive(Debug, Clone)]
pub enum PeerCommand {
    /// Send a Cease with this subcode and end; `keep_routes` as for `Session::close`.
    Close { cease: Cease, keep_routes: bool },
    /// The group's `import` list changed: apply it and ask the peer for its routes again
    /// (route refresh); a peer that cannot refresh is closed with Cease 6 instead.
    SetImport(Vec<ImportRule>),
}

/// Runs the connection until the session ends; reports to `events`.
pub async fn drive(
    stream: TcpStream,
    setup: PeerSetup,
    events: mpsc::Sender<PeerEvent>,
    mut commands: mpsc::UnboundedReceiver<PeerCommand>,
) {
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    let mut session = Session::accept(Instant::now(), setup.session.clone());
    let mut updates = UpdateImporter::new(&setup);
    // The incomplete message left by the last read (empty, unallocated, most of the time).
    let mut partial: Vec<u8> = Vec::new();
    let conn = setup.conn;
    let mut commands_open = true;

    loop {
        // Act on everything the session has to say before waiting again.
        while let Some(output) = session.poll_output() {
            match output {
                Output::Send(message) => {
                    let bytes = wire::encode(&message, &session.context());
                    let written =
                        tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&bytes)).await;
                    if !matches!(written, Ok(Ok(()))) {
                        session.handle_transport_closed();
                    }
                }
                Output::Established(negotiated) => {
                    let _ = events.send(PeerEvent::Up(conn, negotiated)).await;
                }
                Output::Update(update) => {
                    let batch = updates.import(update).await;
                    let _ = events.send(PeerEvent::Routes(conn, batch)).await;
                }
                Output::EndOfRib(family) => {
                    let _ = events.send(PeerEvent::EndOfRib(conn, family)).await;
                }
                Output::Closed(closed) => {
                    let _ = writer.shutdown().await;
                    let _ = events.send(PeerEvent::Down(conn, closed)).await;
                    return;
                }
            }
        }
        let deadline = session
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            ready = reader.readable() => match ready {
                Err(_) => session.handle_transport_closed(),
                Ok(()) => READ_BUFFER.with_borrow_mut(|buffer| {
                    read_messages(&reader, buffer, &mut partial, &mut session, &setup);
                }),
            },
            () = tokio::time::sleep_until(deadline) => session.handle_timeout(Instant::now()),
            command = commands.recv(), if commands_open => match command {
                Some(PeerCommand::Close { cease, keep_routes }) => {
                    session.close(cease.subcode(), keep_routes)
                }
                Some(PeerCommand::SetImport(import)) => {
                    updates.import = import;
                    if !session.request_route_refresh() {
                        session.close(Notification::CEASE_OTHER_CONFIGURATION_CHANGE, false);
                    }
                }
                None => commands_open = false,
            },
        }
    }
}

/// Reads what the socket has into `buffer` (after the `partial` message left last time),
/// hands every complete message to the session, and keeps what is left in `partial`.
fn read_messages(
    reader: &OwnedReadHalf,
    buffer: &mut Vec<u8>,
    partial: &mut Vec<u8>,
    session: &mut Session,
    setup: &PeerSetup,
) {
    buffer.clear();
    buffer.extend_from_slice(partial);
    buffer.reserve(READ_WINDOW);
    match reader.try_read_buf(buffer) {
        Ok(0) => return session.handle_transport_closed(),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return,
        Err(_) => return session.handle_transport_closed(),
    }
    let mut consumed = 0;
    loop {
        match wire::decode(&buffer[consumed..], &session.context()) {
            Ok(Some((message, used))) => {
                consumed += used;
                session.handle_message(Instant::now(), message);
                if matches!(session.state(), super::session::State::Closed) {
                    break;
                }
            }
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(peer = %setup.name, address = %setup.link.address, %error, "malformed message");
                session.handle_decode_error(&error);
                break;
            }
        }
    }
    partial.clear();
    partial.extend_from_slice(&buffer[consumed..]);
    if partial.is_empty() {
        *partial = Vec::new();
    }
}

/// Turns UPDATEs into route batches for one connection.
struct UpdateImporter {
    name: String,
    link: PeerLink,
    import: Vec<ImportRule>,
    bridge_prefixes: Vec<IpNet>,
    local_as: u32,
    /// GoBGP sends one UPDATE per path with the same attributes: share them.
    last_attrs: Option<Arc<PathAttrs>>,
    /// IPv4 node address -> its IPv6 link-local address on our bridge.
    link_locals: Vec<(Ipv4Addr, Option<Ipv6Addr>)>,
    log: RateLimitedLog,
}

impl UpdateImporter {
    fn new(setup: &PeerSetup) -> Self {
        UpdateImporter {
            name: setup.name.clone(),
            link: setup.link.clone(),
            import: setup.import.clone(),
            bridge_prefixes: setup.bridge_prefixes.clone(),
            local_as: setup.session.local_as,
            last_attrs: None,
            link_locals: Vec::new(),
            log: RateLimitedLog::default(),
        }
    }

    async fn import(&mut self, update: Update) -> RouteBatch {
        let mut batch = RouteBatch::default();
        let attributes = &update.attributes;
        batch
            .withdraw
            .extend(update.withdrawn_routes.iter().copied().map(IpNet::V4));
        if let Some(unreach) = &attributes.mp_unreach {
            batch.withdraw.extend(unreach.withdrawn.iter().copied());
        }
        let mut reachable: Vec<(IpNet, IpAddr, Option<Ipv6Addr>)> = Vec::new();
        if let Some(next_hop) = attributes.next_hop {
            reachable.extend(
                update
                    .nlri
                    .iter()
                    .map(|p| (IpNet::V4(*p), IpAddr::V4(next_hop), None)),
            );
        }
        if let Some(reach) = &attributes.mp_reach {
            reachable.extend(
                reach
                    .nlri
                    .iter()
                    .map(|p| (*p, reach.next_hop.address, reach.next_hop.link_local)),
            );
        }
        if let Some(error) = &update.treat_as_withdraw {
            tracing::warn!(
                peer = %self.name, attribute = error.type_code, reason = %error.reason,
                routes = reachable.len(), "malformed attribute: routes of this UPDATE treated as withdrawn (RFC 7606)"
            );
            for (prefix, _, _) in reachable {
                batch.withdraw.push(prefix);
                batch.rejected.push((prefix, Rejection::TreatAsWithdraw));
            }
            return batch;
        }
        if reachable.is_empty() {
            return batch;
        }
        if let Err(why) = policy::check_as_path(attributes.as_path.as_ref(), self.local_as) {
            for (prefix, announced, _) in reachable {
                self.log.rejected(&self.name, &prefix, announced, why);
                batch.withdraw.push(prefix);
                batch.rejected.push((prefix, why));
            }
            return batch;
        }
        let attrs = self.path_attrs(&update);
        for (prefix, announced, link_local) in reachable {
            match self.next_hop_for(&prefix, announced, link_local).await {
                Ok(next_hop) => batch.announce.push((
                    prefix,
                    Path {
                        next_hop,
                        attrs: attrs.clone(),
                    },
                )),
                Err(why) => {
                    self.log.rejected(&self.name, &prefix, announced, why);
                    batch.withdraw.push(prefix);
                    batch.rejected.push((prefix, why));
                }
            }
        }
        batch
    }

    /// Policy for one announced prefix: the kernel next hop, or why not.
    async fn next_hop_for(
        &mut self,
        prefix: &IpNet,
        announced: IpAddr,
        link_local: Option<Ipv6Addr>,
    ) -> Result<NextHop, Rejection> {
        policy::check_prefix(prefix, &self.bridge_prefixes, &self.import)?;
        let resolution = match policy::resolve_next_hop(&self.link, prefix, announced, link_local) {
            Resolution::NeedsLinkLocalOf(v4) => {
                let ll = self.link_local_of(v4).await;
                policy::resolve_link_local(&self.link, ll)
            }
            other => other,
        };
        match resolution {
            Resolution::Ready(next_hop) => Ok(next_hop),
            Resolution::Rejected(why) => Err(why),
            Resolution::NeedsLinkLocalOf(_) => Err(Rejection::MappedNextHopUnresolved),
        }
    }

    fn path_attrs(&mut self, update: &Update) -> Arc<PathAttrs> {
        let a = &update.attributes;
        let as_path = a.as_path.clone().unwrap_or_default();
        let attrs = PathAttrs {
            local_pref: a.local_pref.unwrap_or(100),
            as_path_len: u32::try_from(as_path.length()).unwrap_or(u32::MAX),
            neighbor_as: as_path.neighbor_as(),
            origin: a.origin.map_or(2, |o| o as u8),
            med: a.multi_exit_disc.unwrap_or(0),
        };
        match &self.last_attrs {
            Some(last) if **last == attrs => last.clone(),
            _ => {
                let shared = Arc::new(attrs);
                self.last_attrs = Some(shared.clone());
                shared
            }
        }
    }

    async fn link_local_of(&mut self, v4: Ipv4Addr) -> Option<Ipv6Addr> {
        if let Some((_, known)) = self.link_locals.iter().find(|(a, _)| *a == v4)
            && known.is_some()
        {
            return *known;
        }
        let ifindex = self.link.ifindex?;
        let found = neighbor::link_local_of(ifindex, v4).await;
        self.link_locals.retain(|(a, _)| *a != v4);
        if self.link_locals.len() >= MAX_LINK_LOCALS {
            self.link_locals.remove(0);
        }
        self.link_locals.push((v4, found));
        if found.is_none() {
            tracing::warn!(
                peer = %self.name, node = %v4,
                "IPv6 routes arrive with next hop ::ffff:{v4}, and the node's IPv6 link-local address \
                 is not in the neighbor table of its bridge: treating them as withdrawn. Fix: peer over \
                 IPv6 (the node's global or link-local address), or make sure the node answers IPv6 \
                 neighbor discovery on the bridge"
            );
        }
        found
    }
}

/// Logs refused prefixes, at most one line every 10 seconds per session.
#[derive(Default)]
struct RateLimitedLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    const INTERVAL: Duration = Duration::from_secs(10);

    fn rejected(&mut self, peer: &str, prefix: &IpNet, next_hop: IpAddr, why: Rejection) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Self::INTERVAL)
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            peer, %prefix, %next_hop, reason = %why, suppressed = self.suppressed,
            "route refused by import policy"
        );
        self.last = Some(now);
        self.suppressed = 0;
    }
}
