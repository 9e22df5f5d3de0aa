//! Kernel events that the daemon needs to keep its table right: route changes with our
//! protocol number made by anyone but our own FIB socket (RTNLGRP_IPV4_ROUTE,
//! RTNLGRP_IPV6_ROUTE), and moments when the table may need to be compared as a whole: a
//! link came back up or got an address (the kernel flushes the routes of a link that goes
//! down, IPv4 ones without telling anyone, and they can only come back once the link has
//! its addresses again), or events were lost to a socket overrun. It only listens; the
//! daemon decides what to put back.

use std::collections::HashMap;
use std::io;

use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};

use super::nlmsg::{self, RTM_DELLINK, RTM_DELROUTE, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE};
use super::route::{self, KernelRoute};
use super::socket::RouteSocket;

/// Room for a burst of events (some 200 bytes each) while the daemon is busy. Past it the
/// kernel drops events and says so (ENOBUFS), and the daemon compares the whole table: the
/// backlog lives in the kernel's bounded buffer, never in our memory.
const RECV_BUFFER: usize = 4 << 20;

const IFF_UP: u32 = 0x1;
const IFF_LOWER_UP: u32 = 0x1_0000;

/// Which route events matter: our protocol's, not caused by our own socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter {
    pub protocol: u8,
    /// The netlink ports of our FIB sockets: the kernel stamps them on the events our own
    /// requests cause.
    pub own_ports: [u32; 2],
}

#[derive(Debug)]
pub enum KernelEvent {
    /// Someone else added, changed (`deleted: false`) or removed a route of our protocol
    /// (in any table: [`super::netlink::Fib::ours`] says whether it is in ours).
    Route { route: KernelRoute, deleted: bool },
    /// The link with this index is up with carrier again.
    LinkUp(u32),
    /// The link with this index lost its carrier or was deleted.
    LinkDown(u32),
    /// The link with this index got an address.
    AddressAdded(u32),
    /// Events were lost (the socket's buffer overran).
    Overrun,
}

/// Starts listening; events go to `events` until the daemon drops its receiver. While the
/// daemon is busy, events wait in the socket's kernel buffer, not here.
pub fn spawn(filter: watch::Receiver<Filter>, events: mpsc::Sender<KernelEvent>) -> io::Result<()> {
    let socket = open()?;
    // Without the privilege to exceed rmem_max the buffer is what SO_RCVBUF gets.
    socket.set_buffer(false, RECV_BUFFER)?;
    drop_own_echoes(&socket, filter.borrow().own_ports)?;
    // SAFETY: the socket owns its descriptor (it closes it on drop), which stays open and
    // the same until the AsyncFd drops the socket.
    let fd = unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)?;
    let mut filter = filter;
    tokio::spawn(async move {
        // Whether each link was up with carrier at its last event.
        let mut links: HashMap<u32, bool> = HashMap::new();
        let mut buffer = vec![0u8; 64 << 10];
        loop {
            let received = tokio::select! {
                ready = fd.readable() => match ready {
                    Ok(mut guard) => match guard.try_io(|fd| fd.get_ref().recv(&mut buffer)) {
                        Ok(received) => received,
                        Err(_would_block) => continue,
                    },
                    Err(_) => break,
                },
                changed = filter.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    // The FIB was reopened: its sockets have new ports.
                    if let Err(error) = drop_own_echoes(fd.get_ref(), filter.borrow().own_ports) {
                        tracing::warn!(%error, "cannot filter our own route events");
                    }
                    continue;
                }
            };
            let received = match received {
                Ok(n) => n,
                Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                    if events.send(KernelEvent::Overrun).await.is_err() {
                        break;
                    }
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "netlink monitor stopped");
                    break;
                }
            };
            for nlmsg::Message {
                kind,
                port,
                payload,
            } in nlmsg::messages(&buffer[..received])
            {
                let event = match kind {
                    RTM_NEWROUTE | RTM_DELROUTE => route_event(&filter.borrow(), port, payload)
                        .map(|route| KernelEvent::Route {
                            route,
                            deleted: kind == RTM_DELROUTE,
                        }),
                    RTM_NEWLINK => link(payload).and_then(|(index, running)| {
                        match (links.insert(index, running), running) {
                            (Some(false), true) => Some(KernelEvent::LinkUp(index)),
                            (Some(true), false) => Some(KernelEvent::LinkDown(index)),
                            _ => None,
                        }
                    }),
                    RTM_DELLINK => link(payload).map(|(index, _)| {
                        links.remove(&index);
                        KernelEvent::LinkDown(index)
                    }),
                    RTM_NEWADDR => address_index(payload).map(KernelEvent::AddressAdded),
                    _ => None,
                };
                if let Some(event) = event
                    && events.send(event).await.is_err()
                {
                    return;
                }
            }
        }
    });
    Ok(())
}

/// A non-blocking route socket in the link, address and route groups.
fn open() -> io::Result<RouteSocket> {
    let groups = libc::RTMGRP_LINK
        | libc::RTMGRP_IPV4_IFADDR
        | libc::RTMGRP_IPV6_IFADDR
        | libc::RTMGRP_IPV4_ROUTE
        | libc::RTMGRP_IPV6_ROUTE;
    RouteSocket::open(groups as u32)
}

/// A route event that matters (see [`Filter`]), parsed; the protocol is checked before
/// anything is parsed.
fn route_event(filter: &Filter, port: u32, payload: &[u8]) -> Option<KernelRoute> {
    if filter.own_ports.contains(&port) || route::protocol_of(payload)? != filter.protocol {
        return None;
    }
    route::parse(payload)
}

/// The index of a link event's link, and whether it is up with carrier.
fn link(payload: &[u8]) -> Option<(u32, bool)> {
    // struct ifinfomsg: family, pad, type (u16), index (i32), flags (u32), change (u32)
    let index = u32::from_ne_bytes(payload.get(4..8)?.try_into().ok()?);
    let flags = u32::from_ne_bytes(payload.get(8..12)?.try_into().ok()?);
    Some((
        index,
        flags & (IFF_UP | IFF_LOWER_UP) == IFF_UP | IFF_LOWER_UP,
    ))
}

/// The index of an address event's link.
fn address_index(payload: &[u8]) -> Option<u32> {
    // struct ifaddrmsg: family, prefixlen, flags, scope, index (u32)
    Some(u32::from_ne_bytes(payload.get(4..8)?.try_into().ok()?))
}

/// A socket filter that drops route events carrying one of `ports` (the ones our own FIB
/// requests cause: a bulk load is 200,000 of them) before the kernel queues them, so they
/// neither overrun the socket nor cost a parse.
fn echo_filter(ports: [u32; 2]) -> [(u16, u8, u8, u32); 8] {
    // Classic BPF loads in network byte order; netlink headers are in host order.
    let half = |v: u16| u32::from(u16::from_be_bytes(v.to_ne_bytes()));
    let word = |v: u32| u32::from_be_bytes(v.to_ne_bytes());
    let op = |code: u32, jt: u8, jf: u8, k: u32| (code as u16, jt, jf, k);
    let (ld_h, ld_w) = (
        libc::BPF_LD | libc::BPF_H | libc::BPF_ABS,
        libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
    );
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    [
        op(ld_h, 0, 0, 4),             // nlmsg_type
        op(jeq, 1, 0, half(24)),       // RTM_NEWROUTE: check the port
        op(jeq, 0, 4, half(25)),       // RTM_DELROUTE: check the port, else keep
        op(ld_w, 0, 0, 12),            // nlmsg_pid
        op(jeq, 1, 0, word(ports[0])), // ours: drop
        op(jeq, 0, 1, word(ports[1])), // ours: drop, else keep
        op(ret, 0, 0, 0),              // drop
        op(ret, 0, 0, u32::MAX),       // keep
    ]
}

fn drop_own_echoes(socket: &RouteSocket, ports: [u32; 2]) -> io::Result<()> {
    socket.attach_filter(&echo_filter(ports))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::nlmsg::messages;
    use netlink_packet_core::Emitable;
    use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};

    fn route(protocol: u8) -> Vec<u8> {
        let mut route = RouteMessage::default();
        route.header.address_family = netlink_packet_route::AddressFamily::Inet;
        route.header.protocol = RouteProtocol::from(protocol);
        route.header.destination_prefix_length = 24;
        route
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                "10.1.2.0".parse().unwrap(),
            )));
        let mut bytes = vec![0; route.buffer_len()];
        route.emit(&mut bytes);
        bytes
    }

    #[test]
    fn our_own_echo_and_other_protocols_are_ignored() {
        let filter = Filter {
            protocol: 196,
            own_ports: [4242, 4243],
        };
        let parsed = route_event(&filter, 0, &route(196)).expect("the kernel's own change");
        assert_eq!(
            parsed.prefix,
            "10.1.2.0/24".parse::<ipnet::IpNet>().unwrap()
        );
        assert!(
            route_event(&filter, 777, &route(196)).is_some(),
            "`ip route` changed ours"
        );
        assert!(
            route_event(&filter, 4242, &route(196)).is_none(),
            "our own echo"
        );
        assert!(
            route_event(&filter, 777, &route(4)).is_none(),
            "a static route"
        );
        assert!(
            route_event(&filter, 777, &[0; 3]).is_none(),
            "a truncated message"
        );
    }

    #[test]
    fn messages_in_a_datagram_come_with_their_type_and_port() {
        let mut datagram = event(24, 777);
        datagram.extend(event(16, 0));
        let found: Vec<(u16, u32, usize)> = messages(&datagram)
            .map(|m| (m.kind, m.port, m.payload.len()))
            .collect();
        assert_eq!(found, vec![(24, 777, 20), (16, 0, 20)]);
        assert_eq!(
            messages(&datagram[..40]).count(),
            1,
            "a cut message is not read"
        );
    }

    /// Runs a classic BPF program of the kinds `echo_filter` uses over `packet`.
    fn run_filter(program: &[(u16, u8, u8, u32)], packet: &[u8]) -> u32 {
        let mut a = 0u32;
        let mut pc = 0;
        loop {
            let (code, jt, jf, k) = program[pc];
            let code = u32::from(code);
            pc += 1;
            if code == libc::BPF_LD | libc::BPF_H | libc::BPF_ABS {
                let at = k as usize;
                a = u32::from(u16::from_be_bytes([packet[at], packet[at + 1]]));
            } else if code == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS {
                let at = k as usize;
                a = u32::from_be_bytes(packet[at..at + 4].try_into().unwrap());
            } else if code == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K {
                pc += usize::from(if a == k { jt } else { jf });
            } else if code == libc::BPF_RET | libc::BPF_K {
                return k;
            } else {
                panic!("unexpected BPF instruction {code:#x}");
            }
        }
    }

    fn event(kind: u16, port: u32) -> Vec<u8> {
        let mut packet = Vec::new();
        packet.extend_from_slice(&36u32.to_ne_bytes());
        packet.extend_from_slice(&kind.to_ne_bytes());
        packet.extend_from_slice(&0u16.to_ne_bytes());
        packet.extend_from_slice(&0u32.to_ne_bytes());
        packet.extend_from_slice(&port.to_ne_bytes());
        packet.extend_from_slice(&[0; 20]);
        packet
    }

    #[test]
    fn the_socket_filter_drops_only_the_route_events_of_our_own_ports() {
        let program = echo_filter([4242, 4243]);
        for kind in [24, 25] {
            assert_eq!(run_filter(&program, &event(kind, 4242)), 0);
            assert_eq!(run_filter(&program, &event(kind, 4243)), 0);
            assert_eq!(run_filter(&program, &event(kind, 777)), u32::MAX);
            assert_eq!(run_filter(&program, &event(kind, 0)), u32::MAX);
        }
        // A link or address event from our port (never happens, but) is kept.
        assert_eq!(run_filter(&program, &event(16, 4242)), u32::MAX);
        assert_eq!(run_filter(&program, &event(20, 4243)), u32::MAX);
    }

    #[test]
    fn a_link_counts_as_running_only_when_up_with_carrier() {
        let ifinfomsg = |index: u32, flags: u32| {
            let mut bytes = vec![0u8; 4];
            bytes.extend_from_slice(&index.to_ne_bytes());
            bytes.extend_from_slice(&flags.to_ne_bytes());
            bytes.extend_from_slice(&0u32.to_ne_bytes());
            bytes
        };
        assert_eq!(link(&ifinfomsg(7, IFF_UP)), Some((7, false)));
        assert_eq!(link(&ifinfomsg(7, IFF_LOWER_UP)), Some((7, false)));
        assert_eq!(
            link(&ifinfomsg(7, IFF_UP | IFF_LOWER_UP | 0x40)),
            Some((7, true))
        );
        assert_eq!(link(&[0; 6]), None);
        assert_eq!(
            address_index(&[10, 64, 0, 0, 9, 0, 0, 0]),
            Some(u32::from_ne_bytes([9, 0, 0, 0]))
        );
    }
}
