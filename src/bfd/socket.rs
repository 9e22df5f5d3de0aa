//! The tokio side of BFD (RFC 5881 single hop): the receive sockets on UDP 3784 (one IPv4,
//! one IPv6), one send socket per session bound to its own source port in 49152-65535,
//! TTL / hop limit 255 on everything sent and required on everything received (read from
//! IP_RECVTTL / IPV6_RECVHOPLIMIT control messages), and the `Runtime` task that owns the
//! sessions: it demultiplexes packets by Your Discriminator (by source address and
//! interface when that is 0), drives each `Session`'s timers, and reports state changes.
//! It moves bytes and time; every protocol decision is `session`'s.
//!
//! One send socket per session because RFC 5881 4 asks that the source port "SHOULD be
//! unique among all BFD sessions on the system" (bfdd shares one, 49152, for all). A
//! socket per node costs one descriptor, and binding it to the session's local address
//! fixes the source address the peer expects.

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::Settings;
use super::packet::{Packet, State};
use super::session::{Event, Session};

/// RFC 5881 4: Control packets go to this port.
pub const CONTROL_PORT: u16 = 3784;
/// RFC 5881 4: the source ports a session may send from.
pub const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;
/// RFC 5881 5: sent with, and required on receipt (single hop, no authentication).
pub const TTL: u8 = 255;
/// How long a removed session keeps saying AdminDown so the peer knows it is no failure.
const ADMIN_DOWN_LINGER: Duration = Duration::from_secs(2);

/// What the daemon asks of the runtime.
#[derive(Debug)]
pub enum Command {
    /// Runs a session with `peer` on interface `ifindex` (0: any interface), sending from
    /// `local` when given (else the kernel picks the source address). Adding a session
    /// that exists takes the new settings (a Poll Sequence when intervals change).
    /// `settings.enable` is not looked at: the daemon adds only what is enabled.
    Add {
        peer: IpAddr,
        ifindex: u32,
        local: Option<IpAddr>,
        settings: Settings,
    },
    /// Ends the session: it says AdminDown for a moment, then goes. No event follows.
    Remove { peer: IpAddr, ifindex: u32 },
    /// Answers with every session's status and the runtime's counters.
    Status(oneshot::Sender<Status>),
}

/// A session's state change, for the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub peer: IpAddr,
    pub ifindex: u32,
    pub event: Event,
}

/// One session as `show` would print it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionStatus {
    pub peer: IpAddr,
    pub ifindex: u32,
    pub state: State,
    pub remote_state: State,
    /// bfd.LocalDiag, the RFC 5880 code.
    pub diag: u8,
    pub local_discriminator: u32,
    pub remote_discriminator: u32,
    /// The source port, once the send socket is open.
    pub source_port: Option<u16>,
    pub transmit_interval_ms: Option<u64>,
    pub detection_time_ms: Option<u64>,
    /// Times the session reached Up.
    pub ups: u64,
    /// Times it left Up (the peer's AdminDown included).
    pub downs: u64,
}

/// Packets the runtime threw away, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub received: u64,
    /// TTL / hop limit not 255 (or unknown): not from a neighbor on the link.
    pub bad_ttl: u64,
    /// Failed RFC 5880 6.8.6's checks on the packet itself.
    pub invalid: u64,
    /// No session for its discriminator, or its source and interface.
    pub no_session: u64,
    pub send_errors: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    pub sessions: Vec<SessionStatus>,
    pub counters: Counters,
}

/// The daemon's side of the runtime. Dropping every clone stops the task (sending
/// nothing more: peers see the sessions time out).
#[derive(Debug, Clone)]
pub struct Handle {
    commands: mpsc::UnboundedSender<Command>,
}

impl Handle {
    pub fn send(&self, command: Command) {
        // The task only ends when every handle is gone, so this cannot fail while we exist.
        let _ = self.commands.send(command);
    }

    pub fn add(&self, peer: IpAddr, ifindex: u32, local: Option<IpAddr>, settings: Settings) {
        self.send(Command::Add {
            peer,
            ifindex,
            local,
            settings,
        });
    }

    pub fn remove(&self, peer: IpAddr, ifindex: u32) {
        self.send(Command::Remove { peer, ifindex });
    }

    pub async fn status(&self) -> Status {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Status(tx));
        rx.await.unwrap_or(Status {
            sessions: Vec::new(),
            counters: Counters::default(),
        })
    }
}

/// The BFD task: sockets, sessions, timers.
pub struct Runtime {
    v4: Option<RecvSocket>,
    v6: Option<RecvSocket>,
    commands: mpsc::UnboundedReceiver<Command>,
    reports: mpsc::UnboundedSender<Report>,
    /// Sessions by local discriminator.
    sessions: HashMap<u32, Entry>,
    /// Local discriminator by (peer, ifindex).
    by_peer: HashMap<(IpAddr, u32), u32>,
    counters: Counters,
    next_port: u16,
}

struct Entry {
    peer: IpAddr,
    ifindex: u32,
    local: Option<IpAddr>,
    session: Session,
    tx: Option<(Socket, u16)>,
    /// Removed: it says AdminDown until then, and reports nothing.
    leaving: Option<Instant>,
    ups: u64,
    downs: u64,
}

impl Runtime {
    /// Opens UDP 3784 for IPv4 and IPv6 (one may be missing, not both; binding 3784 needs
    /// CAP_NET_BIND_SERVICE) and spawns the task on the current tokio runtime. Reports
    /// come on the returned receiver.
    pub fn spawn() -> io::Result<(Handle, mpsc::UnboundedReceiver<Report>)> {
        let v4 = RecvSocket::open(false);
        let v6 = RecvSocket::open(true);
        let (v4, v6) = match (v4, v6) {
            (Err(e), Err(_)) => return Err(e),
            (v4, v6) => {
                if let Err(e) = &v4 {
                    tracing::warn!("BFD over IPv4 is off: UDP {CONTROL_PORT}: {e}");
                }
                if let Err(e) = &v6 {
                    tracing::warn!("BFD over IPv6 is off: UDP {CONTROL_PORT}: {e}");
                }
                (v4.ok(), v6.ok())
            }
        };
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (reports, reports_rx) = mpsc::unbounded_channel();
        let runtime = Runtime {
            v4,
            v6,
            commands,
            reports,
            sessions: HashMap::new(),
            by_peer: HashMap::new(),
            counters: Counters::default(),
            next_port: *SOURCE_PORTS.start(),
        };
        tokio::spawn(runtime.run());
        Ok((
            Handle {
                commands: commands_tx,
            },
            reports_rx,
        ))
    }

    async fn run(mut self) {
        loop {
            let deadline = self
                .sessions
                .values()
                .filter_map(|e| {
                    [e.session.poll_timeout(), e.leaving]
                        .into_iter()
                        .flatten()
                        .min()
                })
                .min();
            let sleep = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            let wake = tokio::select! {
                command = self.commands.recv() => match command {
                    Some(c) => Wake::Command(c),
                    None => break,
                },
                r = recv_from(self.v4.as_ref()) => Wake::Received(r),
                r = recv_from(self.v6.as_ref()) => Wake::Received(r),
                () = sleep => Wake::Timer,
            };
            let now = Instant::now();
            match wake {
                Wake::Command(c) => self.command(now, c),
                Wake::Received(Ok(r)) => self.received(now, r),
                Wake::Received(Err(e)) => {
                    tracing::warn!("BFD receive: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Wake::Timer => {}
            }
            self.tick(now);
        }
    }

    fn command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Add {
                peer,
                ifindex,
                local,
                settings,
            } => {
                let peer = peer.to_canonical();
                if let Some(&discr) = self.by_peer.get(&(peer, ifindex)) {
                    let entry = self.sessions.get_mut(&discr).expect("indexed session");
                    if entry.leaving.is_none() {
                        entry.session.set_settings(now, &settings);
                        if entry.local != local {
                            entry.local = local;
                            entry.tx = None;
                        }
                        return;
                    }
                    // Re-added while saying goodbye: start afresh.
                    self.sessions.remove(&discr);
                }
                let discr = loop {
                    let d = random() as u32;
                    if d != 0 && !self.sessions.contains_key(&d) {
                        break d;
                    }
                };
                let session = Session::new(now, discr, &settings, random());
                tracing::debug!(%peer, ifindex, discr, "BFD session added");
                self.sessions.insert(
                    discr,
                    Entry {
                        peer,
                        ifindex,
                        local,
                        session,
                        tx: None,
                        leaving: None,
                        ups: 0,
                        downs: 0,
                    },
                );
                self.by_peer.insert((peer, ifindex), discr);
            }
            Command::Remove { peer, ifindex } => {
                let peer = peer.to_canonical();
                if let Some(discr) = self.by_peer.remove(&(peer, ifindex))
                    && let Some(entry) = self.sessions.get_mut(&discr)
                {
                    entry.session.set_admin_down(now, true);
                    entry.leaving = Some(now + ADMIN_DOWN_LINGER);
                }
            }
            Command::Status(answer) => {
                let mut sessions: Vec<SessionStatus> = self
                    .sessions
                    .values()
                    .filter(|e| e.leaving.is_none())
                    .map(Entry::status)
                    .collect();
                sessions.sort_by_key(|s| (s.peer, s.ifindex));
                let _ = answer.send(Status {
                    sessions,
                    counters: self.counters,
                });
            }
        }
    }

    fn received(&mut self, now: Instant, r: Received) {
        self.counters.received += 1;
        // RFC 5881 5: anything but 255 did not come from a neighbor on the link.
        if r.ttl != Some(TTL) {
            self.counters.bad_ttl += 1;
            tracing::trace!(source = %r.source, ttl = ?r.ttl, "BFD packet dropped: TTL");
            return;
        }
        let packet = match Packet::decode(&r.data) {
            Ok(p) => p,
            Err(e) => {
                self.counters.invalid += 1;
                tracing::trace!(source = %r.source, "BFD packet dropped: {e}");
                return;
            }
        };
        let discr = if packet.your_discriminator != 0 {
            Some(packet.your_discriminator)
        } else {
            self.by_peer
                .get(&(r.source, r.ifindex))
                .or_else(|| self.by_peer.get(&(r.source, 0)))
                .copied()
        };
        // A discriminator also names the peer: a packet with ours from elsewhere is not
        // this session's.
        let entry = discr
            .and_then(|d| self.sessions.get_mut(&d))
            .filter(|e| e.peer == r.source && (e.ifindex == 0 || e.ifindex == r.ifindex));
        match entry {
            Some(entry) => {
                if entry.session.handle_packet(now, &packet).is_err() {
                    self.counters.no_session += 1;
                }
            }
            None => self.counters.no_session += 1,
        }
    }

    /// Runs due timers, sends what is due, reports what happened, lets removed sessions go.
    fn tick(&mut self, now: Instant) {
        let mut gone = Vec::new();
        for (&discr, entry) in &mut self.sessions {
            if entry.session.poll_timeout().is_some_and(|t| t <= now) {
                entry.session.handle_timeout(now);
            }
            while let Some(packet) = entry.session.poll_transmit() {
                if let Err(e) = entry.send(&packet, &mut self.next_port) {
                    self.counters.send_errors += 1;
                    tracing::trace!(peer = %entry.peer, "BFD send: {e}");
                }
            }
            while let Some(event) = entry.session.poll_event() {
                match event {
                    Event::Up => entry.ups += 1,
                    Event::Down { .. } => entry.downs += 1,
                }
                if entry.leaving.is_some() {
                    continue;
                }
                log_event(entry.peer, entry.ifindex, event);
                let _ = self.reports.send(Report {
                    peer: entry.peer,
                    ifindex: entry.ifindex,
                    event,
                });
            }
            if entry.leaving.is_some_and(|t| t <= now) {
                gone.push(discr);
            }
        }
        for discr in gone {
            self.sessions.remove(&discr);
        }
    }
}

fn log_event(peer: IpAddr, ifindex: u32, event: Event) {
    match event {
        Event::Up => tracing::info!(%peer, ifindex, "BFD session up"),
        Event::Down {
            diag,
            peer_admin_down: true,
        } => {
            tracing::info!(%peer, ifindex, %diag, "BFD session down: the peer took it down (AdminDown)")
        }
        Event::Down { diag, .. } => tracing::warn!(%peer, ifindex, %diag, "BFD session down"),
    }
}

impl Entry {
    fn status(&self) -> SessionStatus {
        let s = &self.session;
        SessionStatus {
            peer: self.peer,
            ifindex: self.ifindex,
            state: s.state(),
            remote_state: s.remote_state(),
            diag: s.local_diag().0,
            local_discriminator: s.local_discriminator(),
            remote_discriminator: s.remote_discriminator(),
            source_port: self.tx.as_ref().map(|(_, port)| *port),
            transmit_interval_ms: s.transmit_interval().map(|d| d.as_millis() as u64),
            detection_time_ms: s.detection_time().map(|d| d.as_millis() as u64),
            ups: self.ups,
            downs: self.downs,
        }
    }

    /// Sends one packet, opening the send socket first when needed (again after a failure
    /// to open, say before the local address exists).
    fn send(&mut self, packet: &Packet, next_port: &mut u16) -> io::Result<()> {
        if self.tx.is_none() {
            self.tx = Some(open_send_socket(self.peer, self.local, next_port)?);
        }
        let (socket, _) = self.tx.as_ref().expect("opened above");
        let to: SocketAddr = match self.peer {
            IpAddr::V4(v4) => (v4, CONTROL_PORT).into(),
            IpAddr::V6(v6) => {
                let scope = if is_link_local(v6) { self.ifindex } else { 0 };
                SocketAddrV6::new(v6, CONTROL_PORT, 0, scope).into()
            }
        };
        socket.send_to(&packet.encode(), &SockAddr::from(to))?;
        Ok(())
    }
}

fn is_link_local(v6: Ipv6Addr) -> bool {
    v6.segments()[0] & 0xffc0 == 0xfe80
}

/// A UDP socket of the peer's family sending with TTL 255 from a free port in 49152-65535
/// (tried in turn from `next_port`) on `local` (any address when `None`; an address not
/// yet configured is accepted, IP_FREEBIND).
fn open_send_socket(
    peer: IpAddr,
    local: Option<IpAddr>,
    next_port: &mut u16,
) -> io::Result<(Socket, u16)> {
    let v6 = peer.is_ipv6();
    let socket = Socket::new(
        if v6 { Domain::IPV6 } else { Domain::IPV4 },
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if v6 {
        socket.set_only_v6(true)?;
        socket.set_unicast_hops_v6(u32::from(TTL))?;
        socket.set_freebind_v6(true)?;
    } else {
        socket.set_ttl_v4(u32::from(TTL))?;
        socket.set_freebind_v4(true)?;
    }
    socket.set_nonblocking(true)?;
    let local = local.map(|a| a.to_canonical()).unwrap_or(if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    });
    let ports = usize::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    for _ in 0..ports {
        let port = *next_port;
        *next_port = if port == *SOURCE_PORTS.end() {
            *SOURCE_PORTS.start()
        } else {
            port + 1
        };
        match socket.bind(&SockAddr::from(SocketAddr::new(local, port))) {
            Ok(()) => return Ok((socket, port)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free UDP source port in 49152-65535",
    ))
}

enum Wake {
    Command(Command),
    Received(io::Result<Received>),
    Timer,
}

/// One datagram to port 3784.
#[derive(Debug)]
struct Received {
    data: Vec<u8>,
    source: IpAddr,
    ifindex: u32,
    /// The TTL or hop limit it arrived with; `None` when the kernel did not say.
    ttl: Option<u8>,
}

async fn recv_from(socket: Option<&RecvSocket>) -> io::Result<Received> {
    match socket {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// UDP 3784 of one family, reporting each datagram's TTL / hop limit and interface.
struct RecvSocket {
    socket: UdpSocket,
}

impl RecvSocket {
    fn open(v6: bool) -> io::Result<RecvSocket> {
        let socket = Socket::new(
            if v6 { Domain::IPV6 } else { Domain::IPV4 },
            Type::DGRAM,
            Some(Protocol::UDP),
        )?;
        let any: SocketAddr = if v6 {
            socket.set_only_v6(true)?;
            socket.set_recv_hoplimit_v6(true)?;
            setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true).map_err(io::Error::from)?;
            (Ipv6Addr::UNSPECIFIED, CONTROL_PORT).into()
        } else {
            setsockopt(&socket, sockopt::Ipv4RecvTtl, &true).map_err(io::Error::from)?;
            setsockopt(&socket, sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)?;
            (Ipv4Addr::UNSPECIFIED, CONTROL_PORT).into()
        };
        // No SO_REUSEADDR: another BFD daemon on this host must be an error, not a thief
        // of half our packets.
        socket.set_nonblocking(true)?;
        socket.bind(&SockAddr::from(any))?;
        Ok(RecvSocket {
            socket: UdpSocket::from_std(socket.into())?,
        })
    }

    async fn recv(&self) -> io::Result<Received> {
        self.socket
            .async_io(Interest::READABLE, || {
                let mut buf = [0u8; 256];
                let mut cmsg = nix::cmsg_space!(libc::c_int, libc::in6_pktinfo);
                let mut iov = [IoSliceMut::new(&mut buf)];
                let msg = recvmsg::<SockaddrStorage>(
                    self.socket.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::empty(),
                )
                .map_err(io::Error::from)?;
                let mut ttl = None;
                let mut ifindex = 0;
                for c in msg.cmsgs().map_err(io::Error::from)? {
                    match c {
                        ControlMessageOwned::Ipv4Ttl(t) | ControlMessageOwned::Ipv6HopLimit(t) => {
                            ttl = u8::try_from(t).ok()
                        }
                        ControlMessageOwned::Ipv4PacketInfo(info) => {
                            ifindex = u32::try_from(info.ipi_ifindex).unwrap_or(0)
                        }
                        ControlMessageOwned::Ipv6PacketInfo(info) => ifindex = info.ipi6_ifindex,
                        _ => {}
                    }
                }
                let source = msg
                    .address
                    .as_ref()
                    .and_then(source_ip)
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                let len = msg.bytes;
                Ok(Received {
                    data: buf[..len].to_vec(),
                    source,
                    ifindex,
                    ttl,
                })
            })
            .await
    }
}

fn source_ip(address: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| IpAddr::V6(v6.ip()).to_canonical())
}

/// 64 unpredictable bits for discriminators and the jitter seed: std's randomly keyed
/// SipHash, a fresh key each call (RFC 5880 6.8.1 wants discriminators chosen at random).
fn random() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn send_sockets_take_their_own_source_port_in_49152_to_65535_and_send_with_ttl_255() {
        let mut next = *SOURCE_PORTS.start();
        let (a, port_a) =
            open_send_socket(ip("127.0.0.1"), Some(ip("127.0.0.1")), &mut next).unwrap();
        let (b, port_b) =
            open_send_socket(ip("127.0.0.1"), Some(ip("127.0.0.1")), &mut next).unwrap();
        assert_ne!(port_a, port_b);
        assert!(SOURCE_PORTS.contains(&port_a) && SOURCE_PORTS.contains(&port_b));
        assert_eq!(a.ttl_v4().unwrap(), 255);
        assert_eq!(b.ttl_v4().unwrap(), 255);
        let (c, port_c) = open_send_socket(ip("::1"), Some(ip("::1")), &mut next).unwrap();
        assert!(SOURCE_PORTS.contains(&port_c));
        assert_eq!(c.unicast_hops_v6().unwrap(), 255);
        assert!(c.only_v6().unwrap());
    }

    #[test]
    fn the_port_cursor_wraps_around_to_49152() {
        let mut next = *SOURCE_PORTS.end();
        let result = open_send_socket(ip("127.0.0.1"), Some(ip("127.0.0.1")), &mut next);
        if let Ok((_, port)) = result {
            assert!(SOURCE_PORTS.contains(&port));
        }
        assert!(SOURCE_PORTS.contains(&next));
        assert!(next < *SOURCE_PORTS.end());
    }

    #[test]
    fn a_local_address_that_does_not_exist_yet_can_be_bound() {
        // IP_FREEBIND: the session's socket opens before the bridge has its address.
        let mut next = *SOURCE_PORTS.start();
        open_send_socket(ip("192.0.2.254"), Some(ip("198.51.100.77")), &mut next).unwrap();
        open_send_socket(ip("2001:db8::2"), Some(ip("2001:db8:ffff::77")), &mut next).unwrap();
    }

    #[test]
    fn link_local_is_fe80_slash_10() {
        assert!(is_link_local("fe80::1".parse().unwrap()));
        assert!(is_link_local("febf::1".parse().unwrap()));
        assert!(!is_link_local("fec0::1".parse().unwrap()));
        assert!(!is_link_local("2001:db8::1".parse().unwrap()));
    }
}
