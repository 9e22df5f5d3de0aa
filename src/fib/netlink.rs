//! The only code that talks rtnetlink routes. It writes our routes into the kernel table
//! (replace, never delete-then-add; IPv4 via IPv6 gateways as RTA_VIA; ECMP as
//! RTA_MULTIPATH), pipelines requests without waiting for each acknowledgement, and dumps
//! the table to adopt what a previous run left. Routes of other protocols are never touched:
//! deletes carry our protocol number, which the kernel matches.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;

use futures::stream::{FuturesUnordered, StreamExt};
use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteNextHop, RouteProtocol,
    RouteScope, RouteType, RouteVia,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::AsyncSocket;

use super::diff::FibOp;
use crate::rib::NextHop;

/// Requests in flight before we wait for acknowledgements. Enough to keep the kernel busy,
/// few enough that the acks fit in the socket's receive buffer.
const MAX_IN_FLIGHT: usize = 2048;
/// Receive buffer for acknowledgements and dumps.
const RECV_BUFFER: usize = 8 << 20;

/// A request the kernel refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FibError {
    pub op: FibOp,
    pub errno: i32,
}

impl std::fmt::Display for FibError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.op {
            FibOp::Replace { prefix, .. } => format!("replace {prefix}"),
            FibOp::Delete { prefix } => format!("delete {prefix}"),
        };
        write!(f, "{what}: {}", io::Error::from_raw_os_error(self.errno))
    }
}

type Pending = Pin<Box<dyn Future<Output = Option<FibError>> + Send>>;

/// Writes one kernel table.
pub struct Fib {
    handle: rtnetlink::Handle,
    table: u32,
    protocol: u8,
    /// Our socket's netlink port: route events our requests cause carry it.
    port: u32,
    in_flight: FuturesUnordered<Pending>,
    /// Counters for `show` and metrics.
    pub ops: u64,
    pub errors: u64,
}

impl Fib {
    /// Opens a netlink connection for `table`, marking routes with `protocol`.
    pub fn open(table: u32, protocol: u8) -> io::Result<Fib> {
        let (mut connection, handle, _) = rtnetlink::new_connection()?;
        let socket = connection.socket_mut().socket_mut();
        socket.set_rx_buf_sz(RECV_BUFFER)?;
        // Ask for the kernel's reason (extended ack); harmless where unsupported.
        let _ = socket.set_ext_ack(true);
        let port = socket.bind_auto()?.port_number();
        tokio::spawn(connection);
        Ok(Fib {
            handle,
            table,
            protocol,
            port,
            in_flight: FuturesUnordered::new(),
            ops: 0,
            errors: 0,
        })
    }

    pub fn table(&self) -> u32 {
        self.table
    }

    /// The netlink port of our socket, which the kernel puts on the route events that our
    /// own requests cause.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Sends one operation; its acknowledgement is collected later by `flush` (or by a
    /// later `apply` once too many are in flight). Returns errors collected meanwhile.
    pub async fn apply(&mut self, op: FibOp) -> Vec<FibError> {
        let mut errors = Vec::new();
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            if let Some(Some(e)) = self.in_flight.next().await {
                errors.push(e);
            }
        }
        let request = self.request(&op);
        self.ops += 1;
        match self.handle.request(request) {
            Ok(mut response) => self.in_flight.push(Box::pin(async move {
                while let Some(message) = response.next().await {
                    if let NetlinkPayload::Error(e) = message.payload
                        && let Some(code) = e.code
                    {
                        return Some(FibError {
                            op,
                            errno: -code.get(),
                        });
                    }
                }
                None
            })),
            Err(_) => errors.push(FibError {
                op,
                errno: libc::ENOTCONN,
            }),
        }
        self.errors += errors.len() as u64;
        errors
    }

    /// Waits for every acknowledgement still outstanding.
    pub async fn flush(&mut self) -> Vec<FibError> {
        let mut errors = Vec::new();
        while let Some(result) = self.in_flight.next().await {
            errors.extend(result);
        }
        self.errors += errors.len() as u64;
        errors
    }

    /// Our routes currently in the table (other protocols' routes are skipped).
    pub async fn dump(&mut self) -> io::Result<BTreeMap<IpNet, Vec<NextHop>>> {
        let mut routes = BTreeMap::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut message = RouteMessage::default();
            message.header.address_family = family;
            let mut request = NetlinkMessage::from(RouteNetlinkMessage::GetRoute(message));
            request.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
            let mut response = self
                .handle
                .request(request)
                .map_err(|e| io::Error::other(e.to_string()))?;
            while let Some(message) = response.next().await {
                match message.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(route)) => {
                        if let Some((prefix, next_hops)) = self.ours(&route) {
                            routes.insert(prefix, next_hops);
                        }
                    }
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        return Err(io::Error::from_raw_os_error(-e.code.map_or(0, |c| c.get())));
                    }
                    _ => {}
                }
            }
        }
        Ok(routes)
    }

    /// A dumped or monitored route, if it is one of ours in our table.
    pub fn ours(&self, route: &RouteMessage) -> Option<(IpNet, Vec<NextHop>)> {
        if u8::from(route.header.protocol) != self.protocol {
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
        if table != self.table {
            return None;
        }
        parse_route(route)
    }

    fn request(&self, op: &FibOp) -> NetlinkMessage<RouteNetlinkMessage> {
        let (prefix, next_hops) = match op {
            FibOp::Replace { prefix, next_hops } => (prefix, next_hops.as_slice()),
            FibOp::Delete { prefix } => (prefix, &[][..]),
        };
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
        match next_hops {
            [] => {}
            [one] => message.attributes.extend(next_hop_attributes(prefix, one)),
            many => message.attributes.push(RouteAttribute::MultiPath(
                many.iter()
                    .map(|nh| {
                        let mut hop = RouteNextHop::default();
                        hop.interface_index = nh.ifindex.unwrap_or(0);
                        hop.attributes =
                            gateway_attribute(prefix, nh.gateway).into_iter().collect();
                        hop
                    })
                    .collect(),
            )),
        }
        let (payload, flags) = match op {
            FibOp::Replace { .. } => (
                RouteNetlinkMessage::NewRoute(message),
                NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            ),
            FibOp::Delete { .. } => (
                RouteNetlinkMessage::DelRoute(message),
                NLM_F_REQUEST | NLM_F_ACK,
            ),
        };
        let mut request = NetlinkMessage::from(payload);
        request.header.flags = flags;
        request
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

/// A kernel route as prefix and next hops (sorted, as the RIB keeps them).
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
