//! Kernel neighbor tables, read to find a node's IPv6 link-local address from its IPv4
//! address on the same bridge (same MAC). Used for the `::ffff:<v4>` next hops Cilium sends
//! for IPv6 routes over an IPv4 session.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::time::Duration;

use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};

/// The link-local address of the node that has `v4` on interface `ifindex`, if the kernel
/// knows both. When the IPv6 entry is missing, solicits every node on the link (an echo
/// request to ff02::1 makes each one resolve us, which fills our neighbor table) and looks
/// again.
pub async fn link_local_of(ifindex: u32, v4: Ipv4Addr) -> Option<Ipv6Addr> {
    for attempt in 0..2 {
        let entries = dump(ifindex).await.ok()?;
        let mac = entries
            .iter()
            .find(|(ip, _)| *ip == IpAddr::V4(v4))
            .map(|(_, mac)| mac.clone())?;
        let found = entries.iter().find_map(|(ip, m)| match ip {
            IpAddr::V6(v6) if v6.is_unicast_link_local() && *m == mac => Some(*v6),
            _ => None,
        });
        if found.is_some() || attempt == 1 {
            return found;
        }
        solicit_all_nodes(ifindex);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

/// (address, link-layer address) of every resolved neighbor on `ifindex`.
async fn dump(ifindex: u32) -> std::io::Result<Vec<(IpAddr, Vec<u8>)>> {
    let (connection, handle, _) = rtnetlink::new_connection()?;
    let task = tokio::spawn(connection);
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut stream = handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute();
        while let Some(message) = stream
            .try_next()
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?
        {
            if message.header.ifindex == ifindex
                && let Some(entry) = entry(&message)
            {
                out.push(entry);
            }
        }
    }
    task.abort();
    Ok(out)
}

fn entry(message: &NeighbourMessage) -> Option<(IpAddr, Vec<u8>)> {
    let mut ip = None;
    let mut mac = None;
    for attribute in &message.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(IpAddr::V4(*a)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                ip = Some(IpAddr::V6(*a))
            }
            NeighbourAttribute::LinkLayerAddress(l) if !l.is_empty() => mac = Some(l.clone()),
            _ => {}
        }
    }
    Some((ip?, mac?))
}

/// One ICMPv6 echo request to all nodes on the link.
fn solicit_all_nodes(ifindex: u32) {
    use socket2::{Domain, Protocol, Socket, Type};
    let Ok(socket) = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)) else {
        return;
    };
    // Type 128 (echo request), code 0, checksum filled by the kernel, id, sequence.
    let echo = [128u8, 0, 0, 0, 0x63, 0x70, 0, 1];
    let _ = socket.set_multicast_if_v6(ifindex);
    let to = SocketAddrV6::new("ff02::1".parse().expect("constant"), 0, 0, ifindex);
    let _ = socket.send_to(&echo, &to.into());
}
