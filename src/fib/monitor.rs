//! Kernel events that the daemon needs to keep its table right: route changes with our
//! protocol number made by anyone but our own FIB socket (RTNLGRP_IPV4_ROUTE,
//! RTNLGRP_IPV6_ROUTE), and moments when the table may need to be compared as a whole: a
//! link came back up or got an address (the kernel flushes the routes of a link that goes
//! down, IPv4 ones without telling anyone, and they can only come back once the link has
//! its addresses again), or events were lost to a socket overrun. It only listens; the
//! daemon decides what to put back.

use std::collections::HashMap;
use std::io;

use futures::StreamExt;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkFlags, LinkMessage};
use netlink_packet_route::route::RouteMessage;
use netlink_sys::AsyncSocket;
use rtnetlink::MulticastGroup;
use tokio::sync::{mpsc, watch};

/// Room for a burst of events (some 200 bytes each) while the daemon is busy.
const RECV_BUFFER: usize = 4 << 20;

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
    /// Someone else added, changed (`deleted: false`) or removed a route of our protocol.
    Route { route: RouteMessage, deleted: bool },
    /// The link with this index is up with carrier again.
    LinkUp(u32),
    /// The link with this index got an address.
    AddressAdded(u32),
    /// Events were lost (the socket's buffer overran).
    Overrun,
}

/// Starts listening; events go to `events` until the daemon drops its receiver.
pub fn spawn(filter: watch::Receiver<Filter>, events: mpsc::Sender<KernelEvent>) -> io::Result<()> {
    let (mut connection, _handle, mut messages) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
    ])?;
    connection
        .socket_mut()
        .socket_mut()
        .set_rx_buf_sz(RECV_BUFFER)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(connection.socket_mut().socket_mut());
    // Without the privilege to exceed rmem_max the buffer stays what set_rx_buf_sz got.
    let _ = set_int(fd, libc::SO_RCVBUFFORCE, RECV_BUFFER as libc::c_int);
    drop_own_echoes(fd, filter.borrow().own_ports)?;
    let mut filter = filter;
    let connection = tokio::spawn(connection);
    tokio::spawn(async move {
        // Whether each link was up with carrier at its last event.
        let mut links: HashMap<u32, bool> = HashMap::new();
        loop {
            let next = tokio::select! {
                message = messages.next() => message,
                changed = filter.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    // The FIB was reopened: its sockets have new ports. `fd` lives as
                    // long as the connection task, which this task aborts last.
                    if let Err(error) = drop_own_echoes(fd, filter.borrow().own_ports) {
                        tracing::warn!(%error, "cannot filter our own route events");
                    }
                    continue;
                }
            };
            let Some((message, _)) = next else {
                break;
            };
            let port = message.header.port_number;
            let event = match message.payload {
                NetlinkPayload::Overrun(_) => Some(KernelEvent::Overrun),
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(route)) => {
                    relevant(&filter.borrow(), port, &route).then_some(KernelEvent::Route {
                        route,
                        deleted: false,
                    })
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(route)) => {
                    relevant(&filter.borrow(), port, &route).then_some(KernelEvent::Route {
                        route,
                        deleted: true,
                    })
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                    let running = running(&link);
                    let was = links.insert(link.header.index, running);
                    (was == Some(false) && running)
                        .then_some(KernelEvent::LinkUp(link.header.index))
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(address)) => {
                    Some(KernelEvent::AddressAdded(address.header.index))
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                    links.remove(&link.header.index);
                    None
                }
                _ => None,
            };
            if let Some(event) = event
                && events.send(event).await.is_err()
            {
                break;
            }
        }
        connection.abort();
    });
    Ok(())
}

fn set_int(fd: std::os::fd::RawFd, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt with a c_int of the right size on a socket we own.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A socket filter that drops route events carrying one of `ports` (the ones our own FIB
/// requests cause: a bulk load is 200,000 of them) before the kernel queues them, so they
/// neither overrun the socket nor cost a parse.
fn echo_filter(ports: [u32; 2]) -> [libc::sock_filter; 8] {
    // Classic BPF loads in network byte order; netlink headers are in host order.
    let half = |v: u16| u32::from(u16::from_be_bytes(v.to_ne_bytes()));
    let word = |v: u32| u32::from_be_bytes(v.to_ne_bytes());
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
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

fn drop_own_echoes(fd: std::os::fd::RawFd, ports: [u32; 2]) -> io::Result<()> {
    let program = echo_filter(ports);
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: attaches a filter program that lives until the call returns (the kernel
    // copies it) to a socket we own.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn relevant(filter: &Filter, port: u32, route: &RouteMessage) -> bool {
    !filter.own_ports.contains(&port) && u8::from(route.header.protocol) == filter.protocol
}

fn running(link: &LinkMessage) -> bool {
    link.header
        .flags
        .contains(LinkFlags::Up | LinkFlags::LowerUp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::route::RouteProtocol;

    fn route(protocol: u8) -> RouteMessage {
        let mut route = RouteMessage::default();
        route.header.protocol = RouteProtocol::from(protocol);
        route
    }

    #[test]
    fn our_own_echo_and_other_protocols_are_ignored() {
        let filter = Filter {
            protocol: 196,
            own_ports: [4242, 4243],
        };
        assert!(relevant(&filter, 0, &route(196)), "the kernel's own change");
        assert!(
            relevant(&filter, 777, &route(196)),
            "`ip route` changed ours"
        );
        assert!(!relevant(&filter, 4242, &route(196)), "our own echo");
        assert!(!relevant(&filter, 777, &route(4)), "a static route");
    }

    /// Runs a classic BPF program of the kinds `echo_filter` uses over `packet`.
    fn run_filter(program: &[libc::sock_filter], packet: &[u8]) -> u32 {
        let mut a = 0u32;
        let mut pc = 0;
        loop {
            let op = program[pc];
            let code = u32::from(op.code);
            pc += 1;
            if code == libc::BPF_LD | libc::BPF_H | libc::BPF_ABS {
                let at = op.k as usize;
                a = u32::from(u16::from_be_bytes([packet[at], packet[at + 1]]));
            } else if code == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS {
                let at = op.k as usize;
                a = u32::from_be_bytes(packet[at..at + 4].try_into().unwrap());
            } else if code == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K {
                pc += usize::from(if a == op.k { op.jt } else { op.jf });
            } else if code == libc::BPF_RET | libc::BPF_K {
                return op.k;
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
        let mut link = LinkMessage::default();
        link.header.flags = LinkFlags::Up;
        assert!(!running(&link));
        link.header.flags = LinkFlags::Up | LinkFlags::LowerUp | LinkFlags::Running;
        assert!(running(&link));
    }
}
