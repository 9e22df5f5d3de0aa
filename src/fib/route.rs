//! Kernel routes as bytes: the route requests the writer sends (the short form, table +
//! destination + nexthop object id, written straight into a buffer for the hot path; plain
//! routes with their gateways through netlink-packet-route) and the routes dumps, echoes of
//! refused requests and events bring back, parsed into [`KernelRoute`]. Pure.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NetlinkMessage, Parseable};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteNextHop, RouteProtocol,
    RouteScope, RouteType, RouteVia,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::nlmsg::{self, NLM_F_DUMP, NLM_F_REQUEST};
use crate::rib::NextHop;

const RTA_DST: u16 = 1;
const RTA_TABLE: u16 = 15;
const RTA_NH_ID: u16 = 30;

/// A route as the kernel holds it, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    pub table: u32,
    pub protocol: u8,
    /// RTN_UNICAST (not blackhole, local, ...).
    pub unicast: bool,
    /// The nexthop object it uses, if any.
    pub object: Option<u32>,
    pub prefix: IpNet,
    /// Sorted, as the RIB keeps them; a route using an object has them spelled out in
    /// dumps and events too.
    pub next_hops: Vec<NextHop>,
}

/// Where a route request goes and how it is marked.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub table: u32,
    pub protocol: u8,
}

impl Target {
    /// A route message with only table, destination and (optionally) object id, written
    /// straight into `out`: the hot path, for every route of a bulk load, and deletes.
    pub fn encode_short(
        self,
        out: &mut Vec<u8>,
        kind: u16,
        flags: u16,
        seq: u32,
        prefix: &IpNet,
        object: Option<u32>,
    ) {
        let start = nlmsg::header(out, kind, flags, seq);
        let family = match prefix {
            IpNet::V4(_) => libc::AF_INET,
            IpNet::V6(_) => libc::AF_INET6,
        } as u8;
        let short_table = u8::try_from(self.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
        out.extend_from_slice(&[
            family,
            prefix.prefix_len(),
            0,
            0,
            short_table,
            self.protocol,
            0,
        ]);
        out.push(1); // RTN_UNICAST
        out.extend_from_slice(&0u32.to_ne_bytes());
        nlmsg::attr(out, RTA_TABLE, &self.table.to_ne_bytes());
        match prefix {
            IpNet::V4(p) => nlmsg::attr(out, RTA_DST, &p.network().octets()),
            IpNet::V6(p) => nlmsg::attr(out, RTA_DST, &p.network().octets()),
        }
        if let Some(id) = object {
            nlmsg::attr(out, RTA_NH_ID, &id.to_ne_bytes());
        }
        nlmsg::finish(out, start);
    }

    /// A route carrying its gateways itself (RTA_GATEWAY, RTA_VIA for an IPv4 route via
    /// IPv6, RTA_MULTIPATH for ECMP), appended to `out`.
    pub fn encode_plain(
        self,
        out: &mut Vec<u8>,
        flags: u16,
        seq: u32,
        prefix: &IpNet,
        next_hops: &[NextHop],
    ) {
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
        add_next_hops(&mut message, prefix, next_hops);
        append(out, RouteNetlinkMessage::NewRoute(message), flags, seq);
    }
}

/// A dump request for every route of `family` (`libc::AF_INET` or `AF_INET6`).
pub fn encode_dump(family: i32, seq: u32) -> Vec<u8> {
    let mut message = RouteMessage::default();
    message.header.address_family = if family == libc::AF_INET {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let mut out = Vec::new();
    append(
        &mut out,
        RouteNetlinkMessage::GetRoute(message),
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
    );
    out
}

fn append(out: &mut Vec<u8>, payload: RouteNetlinkMessage, flags: u16, seq: u32) {
    let mut request = NetlinkMessage::from(payload);
    request.header.flags = flags;
    request.header.sequence_number = seq;
    request.finalize();
    let start = out.len();
    out.resize(start + request.buffer_len(), 0);
    request.serialize(&mut out[start..]);
}

/// The protocol byte of a route message's payload (struct rtmsg), read without parsing.
pub fn protocol_of(payload: &[u8]) -> Option<u8> {
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, ...
    payload.get(5).copied()
}

/// A route message's payload (after the netlink header), parsed.
pub fn parse(payload: &[u8]) -> Option<KernelRoute> {
    let route = <RouteMessage as Parseable<[u8]>>::parse(payload).ok()?;
    let (prefix, next_hops) = prefix_and_next_hops(&route)?;
    let table = route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table));
    let object = route.attributes.iter().find_map(|a| match a {
        RouteAttribute::NhId(id) => Some(*id),
        _ => None,
    });
    Some(KernelRoute {
        table,
        protocol: u8::from(route.header.protocol),
        unicast: route.header.kind == RouteType::Unicast,
        object,
        prefix,
        next_hops,
    })
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
fn prefix_and_next_hops(route: &RouteMessage) -> Option<(IpNet, Vec<NextHop>)> {
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
    use crate::fib::nlmsg::{RTM_DELROUTE, RTM_NEWROUTE};

    const TARGET: Target = Target {
        table: 1336,
        protocol: 196,
    };

    fn only(out: &[u8]) -> (u16, KernelRoute) {
        let message = nlmsg::messages(out).next().unwrap();
        (message.kind, parse(message.payload).unwrap())
    }

    #[test]
    fn short_route_messages_parse_as_route_messages() {
        for prefix in ["10.1.2.0/24", "fd00:1:2::/64"] {
            let prefix: IpNet = prefix.parse().unwrap();
            let mut out = Vec::new();
            TARGET.encode_short(&mut out, RTM_NEWROUTE, NLM_F_REQUEST, 7, &prefix, Some(77));
            let (kind, route) = only(&out);
            assert_eq!(kind, RTM_NEWROUTE);
            assert_eq!(
                route,
                KernelRoute {
                    table: 1336,
                    protocol: 196,
                    unicast: true,
                    object: Some(77),
                    prefix,
                    next_hops: Vec::new(),
                }
            );
        }
    }

    #[test]
    fn plain_routes_carry_their_gateways_and_parse_back_sorted() {
        let hop = |gateway: &str, ifindex| NextHop {
            gateway: gateway.parse().unwrap(),
            ifindex: Some(ifindex),
        };
        let prefix: IpNet = "10.244.1.0/24".parse().unwrap();
        let hops = [hop("2001:db8:1::12", 3), hop("2001:db8:1::11", 3)];
        let mut out = Vec::new();
        TARGET.encode_plain(&mut out, NLM_F_REQUEST, 1, &prefix, &hops);
        let (kind, route) = only(&out);
        assert_eq!(kind, RTM_NEWROUTE);
        assert_eq!(route.prefix, prefix);
        assert_eq!(route.next_hops, vec![hops[1], hops[0]]);
        out.clear();
        TARGET.encode_plain(&mut out, NLM_F_REQUEST, 2, &prefix, &hops[..1]);
        assert_eq!(only(&out).1.next_hops, vec![hops[0]]);
        out.clear();
        TARGET.encode_short(&mut out, RTM_DELROUTE, NLM_F_REQUEST, 3, &prefix, None);
        assert_eq!(only(&out).0, RTM_DELROUTE);
        assert_eq!(
            protocol_of(nlmsg::messages(&out).next().unwrap().payload),
            Some(196)
        );
    }
}
