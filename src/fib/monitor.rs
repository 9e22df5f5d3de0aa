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
    let connection = tokio::spawn(connection);
    tokio::spawn(async move {
        // Whether each link was up with carrier at its last event.
        let mut links: HashMap<u32, bool> = HashMap::new();
        while let Some((message, _)) = messages.next().await {
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

    #[test]
    fn a_link_counts_as_running_only_when_up_with_carrier() {
        let mut link = LinkMessage::default();
        link.header.flags = LinkFlags::Up;
        assert!(!running(&link));
        link.header.flags = LinkFlags::Up | LinkFlags::LowerUp | LinkFlags::Running;
        assert!(running(&link));
    }
}
