//! Liveness probes on the bridges, the IO half of `neighbors[].liveness` (the daemon's core
//! decides when to probe and what a silence means). An IPv6 node gets a Neighbor
//! Solicitation (RFC 4861 7.2.2) for its address, sent with hop limit 255 on its bridge,
//! and answers with a Neighbor Advertisement; an IPv4 node gets an ARP request (RFC 826,
//! unicast to its MAC once known, as RFC 1122 2.3.2.1 polls) and answers with an ARP reply.
//! These are the messages every host must answer, which no host firewall blocks and which
//! never leave the link. The answer's link-layer address, looked up in the bridge's
//! forwarding database, says which bridge port the node is behind, so that the port's
//! removal can take it out at once.
//!
//! Own probes rather than the kernel's neighbor states: the kernel probes a stale entry only
//! after `delay_first_probe_time` (5 s) and gives up after `ucast_solicit` × `retrans_time`,
//! per interface and for every neighbor of the bridge, where each node group needs its own
//! interval.

use std::collections::HashMap;
use std::io;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

const NEIGHBOR_SOLICITATION: u8 = 135;
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
const SOURCE_LINK_LAYER_ADDRESS: u8 = 1;
const TARGET_LINK_LAYER_ADDRESS: u8 = 2;
const ETH_P_ARP: u16 = 0x0806;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
const BROADCAST: [u8; 6] = [0xff; 6];

/// How long a node's bridge port, once found, is trusted before it is looked up again.
const PORT_TTL: Duration = Duration::from_secs(30);

/// Sends probes for the daemon and reports the answers.
#[derive(Debug)]
pub struct Prober {
    probes: mpsc::UnboundedSender<(IpAddr, u32)>,
}

impl Prober {
    /// Asks `address` on interface `ifindex` whether it is there.
    pub fn probe(&self, address: IpAddr, ifindex: u32) {
        let _ = self.probes.send((address, ifindex));
    }
}

/// Opens the probe socket (needs CAP_NET_RAW) and serves it from a task; answers go to
/// `answers` as (node address, bridge port).
pub fn spawn(answers: mpsc::Sender<(IpAddr, Option<u32>)>) -> io::Result<Prober> {
    let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    socket.set_unicast_hops_v6(255)?;
    socket.set_multicast_hops_v6(255)?;
    crate::ra::sender::set_icmp6_filter(&socket, &[NEIGHBOR_ADVERTISEMENT])?;
    socket.set_nonblocking(true)?;
    // SAFETY: the socket owns its descriptor, which stays open until the AsyncFd drops it.
    let socket = unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)?;
    // ARP on every interface: the kernel adds and strips the Ethernet header.
    let arp = Socket::new(
        Domain::PACKET,
        Type::DGRAM,
        Some(Protocol::from(i32::from(ETH_P_ARP.to_be()))),
    )?;
    arp.set_nonblocking(true)?;
    // SAFETY: as above.
    let arp = unsafe { AsyncFd::register(arp) }.map_err(io::Error::from)?;
    let (probes, mut requests) = mpsc::unbounded_channel::<(IpAddr, u32)>();
    tokio::spawn(async move {
        let mut ports = Ports::default();
        // The bridge each probed node was asked on, and the link-layer address it last
        // answered with.
        let mut asked: HashMap<IpAddr, u32> = HashMap::new();
        let mut macs: HashMap<IpAddr, ([u8; 6], Instant)> = HashMap::new();
        let mut arp_buffer = [0u8; 128];
        let mut buffer = [0u8; 1500];
        loop {
            tokio::select! {
                request = requests.recv() => {
                    let Some((address, ifindex)) = request else { return };
                    asked.insert(address, ifindex);
                    let known = macs
                        .get(&address)
                        .filter(|(_, when)| when.elapsed() < PORT_TTL)
                        .map(|(mac, _)| *mac);
                    let _ = match address {
                        // A unicast solicitation gets an answer without the node's
                        // link-layer address (RFC 4861 7.2.4): ask the solicited-node
                        // group while we do not know it, or not for long.
                        IpAddr::V6(target) => {
                            solicit(socket.get_ref(), target, ifindex, known.is_none())
                        }
                        IpAddr::V4(target) => {
                            ask_arp(arp.get_ref(), target, ifindex, known.unwrap_or(BROADCAST))
                        }
                    };
                }
                ready = socket.readable() => {
                    let Ok(mut guard) = ready else { return };
                    let Ok(Ok(len)) = guard.try_io(|s| s.get_ref().read(&mut buffer)) else {
                        continue;
                    };
                    let Some((target, mac)) = advertisement(&buffer[..len]) else { continue };
                    let target = IpAddr::V6(target);
                    // Only what we asked: other advertisements on the link are not ours.
                    let Some(&bridge) = asked.get(&target) else { continue };
                    if let Some(mac) = mac {
                        macs.insert(target, (mac, Instant::now()));
                    }
                    let port = mac.and_then(|mac| ports.of(bridge, mac));
                    if answers.send((target, port)).await.is_err() {
                        return;
                    }
                }
                ready = arp.readable() => {
                    let Ok(mut guard) = ready else { return };
                    let Ok(Ok(len)) = guard.try_io(|s| s.get_ref().read(&mut arp_buffer)) else {
                        continue;
                    };
                    let Some((sender, mac)) = arp_reply(&arp_buffer[..len]) else { continue };
                    let sender = IpAddr::V4(sender);
                    let Some(&bridge) = asked.get(&sender) else { continue };
                    macs.insert(sender, (mac, Instant::now()));
                    let port = ports.of(bridge, mac);
                    if answers.send((sender, port)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok(Prober { probes })
}

/// One Neighbor Solicitation for `target` on `ifindex`, unicast to it or to its
/// solicited-node multicast group, with our link-layer address so it can answer without
/// resolving us first.
fn solicit(socket: &Socket, target: Ipv6Addr, ifindex: u32, multicast: bool) -> io::Result<usize> {
    let mut message = vec![NEIGHBOR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0];
    message.extend_from_slice(&target.octets());
    if let Some(mac) = mac_of(ifindex) {
        message.extend_from_slice(&[SOURCE_LINK_LAYER_ADDRESS, 1]);
        message.extend_from_slice(&mac);
    }
    // The node is on-link on its bridge (its address is in a bridge prefix, or link-local
    // with the bridge as scope); a router on the way would lower the hop limit from 255 and
    // the node would drop the probe (RFC 4861 7.1.1).
    if multicast {
        socket.set_multicast_if_v6(ifindex)?;
        let to = SocketAddrV6::new(solicited_node(target), 0, 0, ifindex);
        return socket.send_to(&message, &to.into());
    }
    let scope = if target.is_unicast_link_local() {
        ifindex
    } else {
        0
    };
    let to = SocketAddrV6::new(target, 0, 0, scope);
    socket.send_to(&message, &to.into())
}

/// The solicited-node multicast address of `target` (RFC 4291 2.7.1).
fn solicited_node(target: Ipv6Addr) -> Ipv6Addr {
    let t = target.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from(t[14]) << 8 | u16::from(t[15]),
    )
}

/// One ARP request for `target` on `ifindex`, to `to` (its MAC, or broadcast while unknown),
/// from our MAC and our IPv4 address on that interface.
fn ask_arp(socket: &Socket, target: Ipv4Addr, ifindex: u32, to: [u8; 6]) -> io::Result<usize> {
    let (Some(mac), Some(source)) = (mac_of(ifindex), ipv4_of(ifindex, target)) else {
        return Err(io::Error::other("no MAC or IPv4 address to send ARP from"));
    };
    socket.send_to(
        &arp_request(mac, source, target),
        &link_address(ifindex, to),
    )
}

/// The body of an ARP request (RFC 826) for Ethernet and IPv4.
fn arp_request(mac: [u8; 6], source: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut body = Vec::with_capacity(28);
    body.extend_from_slice(&1u16.to_be_bytes()); // Ethernet
    body.extend_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    body.extend_from_slice(&[6, 4]);
    body.extend_from_slice(&ARP_REQUEST.to_be_bytes());
    body.extend_from_slice(&mac);
    body.extend_from_slice(&source.octets());
    body.extend_from_slice(&[0; 6]);
    body.extend_from_slice(&target.octets());
    body
}

/// The sender of an ARP reply for Ethernet and IPv4, with its MAC.
fn arp_reply(bytes: &[u8]) -> Option<(Ipv4Addr, [u8; 6])> {
    if bytes.len() < 28 || bytes[..6] != [0, 1, 8, 0, 6, 4] {
        return None;
    }
    if u16::from_be_bytes([bytes[6], bytes[7]]) != ARP_REPLY {
        return None;
    }
    let mac = <[u8; 6]>::try_from(&bytes[8..14]).ok()?;
    let sender = Ipv4Addr::from(<[u8; 4]>::try_from(&bytes[14..18]).ok()?);
    Some((sender, mac))
}

/// A packet-socket address: ARP to `mac` on interface `ifindex`.
fn link_address(ifindex: u32, mac: [u8; 6]) -> socket2::SockAddr {
    let mut storage = socket2::SockAddrStorage::zeroed();
    // SAFETY: sockaddr_ll is one of this platform's sockaddr types and fits the storage.
    let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = ETH_P_ARP.to_be();
    ll.sll_ifindex = ifindex as i32;
    ll.sll_halen = 6;
    ll.sll_addr[..6].copy_from_slice(&mac);
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the storage holds an initialised sockaddr_ll of that length.
    unsafe { socket2::SockAddr::new(storage, len) }
}

/// Our IPv4 address on `ifindex`: the one whose subnet holds `target`, else the first.
fn ipv4_of(ifindex: u32, target: Ipv4Addr) -> Option<Ipv4Addr> {
    let name = nix::net::if_::if_indextoname(ifindex).ok()?;
    let name = name.to_string_lossy();
    let mut first = None;
    for entry in nix::ifaddrs::getifaddrs().ok()? {
        if entry.interface_name != name {
            continue;
        }
        let Some(address) = entry.address.as_ref().and_then(|a| a.as_sockaddr_in()) else {
            continue;
        };
        let address = address.ip();
        let mask = entry
            .netmask
            .as_ref()
            .and_then(|m| m.as_sockaddr_in())
            .map_or(0, |m| u32::from(m.ip()));
        if u32::from(address) & mask == u32::from(target) & mask {
            return Some(address);
        }
        first.get_or_insert(address);
    }
    first
}

/// The target and target link-layer address of a Neighbor Advertisement.
fn advertisement(bytes: &[u8]) -> Option<(Ipv6Addr, Option<[u8; 6]>)> {
    if bytes.len() < 24 || bytes[0] != NEIGHBOR_ADVERTISEMENT || bytes[1] != 0 {
        return None;
    }
    let target = Ipv6Addr::from(<[u8; 16]>::try_from(&bytes[8..24]).ok()?);
    let mut options = &bytes[24..];
    let mut mac = None;
    while options.len() >= 8 {
        let len = usize::from(options[1]) * 8;
        if len == 0 || len > options.len() {
            break;
        }
        if options[0] == TARGET_LINK_LAYER_ADDRESS && len == 8 {
            mac = <[u8; 6]>::try_from(&options[2..8]).ok();
        }
        options = &options[len..];
    }
    Some((target, mac))
}

/// The MAC address of an interface.
fn mac_of(ifindex: u32) -> Option<[u8; 6]> {
    let name = nix::net::if_::if_indextoname(ifindex).ok()?;
    let text =
        std::fs::read_to_string(format!("/sys/class/net/{}/address", name.to_string_lossy()))
            .ok()?;
    parse_mac(text.trim())
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Which bridge port each MAC is behind, from the bridge's forwarding database.
#[derive(Default)]
struct Ports {
    known: HashMap<[u8; 6], (u32, Instant)>,
}

impl Ports {
    fn of(&mut self, bridge: u32, mac: [u8; 6]) -> Option<u32> {
        if let Some((port, when)) = self.known.get(&mac)
            && when.elapsed() < PORT_TTL
            && nix::net::if_::if_indextoname(*port).is_ok()
        {
            return Some(*port);
        }
        let port = port_of(bridge, mac)?;
        self.known.insert(mac, (port, Instant::now()));
        Some(port)
    }
}

/// The interface index of the port of bridge `bridge` that `mac` was learned on, from
/// `/sys/class/net/<bridge>/brforward` (struct __fdb_entry, 16 bytes each) and the ports'
/// `brport/port_no`.
fn port_of(bridge: u32, mac: [u8; 6]) -> Option<u32> {
    let name = nix::net::if_::if_indextoname(bridge).ok()?;
    let name = name.to_string_lossy();
    let table = std::fs::read(format!("/sys/class/net/{name}/brforward")).ok()?;
    let port_no = table.chunks_exact(16).find_map(|entry| {
        let is_local = entry[7] != 0;
        (entry[..6] == mac && !is_local).then(|| u16::from(entry[8]) << 8 | u16::from(entry[6]))
    })?;
    let ports = std::fs::read_dir(format!("/sys/class/net/{name}/brif")).ok()?;
    for port in ports.flatten() {
        let number = std::fs::read_to_string(port.path().join("port_no")).ok()?;
        let number = u16::from_str_radix(number.trim().trim_start_matches("0x"), 16).ok()?;
        if number == port_no {
            let port_name = port.file_name();
            return nix::net::if_::if_nametoindex(port_name.as_os_str()).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_advertisement_gives_its_target_and_link_layer_address() {
        let mut na = vec![NEIGHBOR_ADVERTISEMENT, 0, 0, 0, 0x60, 0, 0, 0];
        let target: Ipv6Addr = "2001:db8:1::11".parse().unwrap();
        na.extend_from_slice(&target.octets());
        na.extend_from_slice(&[TARGET_LINK_LAYER_ADDRESS, 1, 2, 0, 0, 0, 0, 0x11]);
        assert_eq!(
            advertisement(&na),
            Some((target, Some([2, 0, 0, 0, 0, 0x11])))
        );
        na[0] = NEIGHBOR_SOLICITATION;
        assert_eq!(advertisement(&na), None);
    }

    #[test]
    fn an_advertisement_with_a_zero_length_option_stops_at_it() {
        let mut na = vec![NEIGHBOR_ADVERTISEMENT, 0, 0, 0, 0x60, 0, 0, 0];
        na.extend_from_slice(&[0; 16]);
        na.extend_from_slice(&[TARGET_LINK_LAYER_ADDRESS, 0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(advertisement(&na), Some((Ipv6Addr::UNSPECIFIED, None)));
    }

    #[test]
    fn the_solicited_node_group_takes_the_last_24_bits() {
        let target: Ipv6Addr = "2001:db8:1::4:5611".parse().unwrap();
        assert_eq!(
            solicited_node(target),
            "ff02::1:ff04:5611".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn an_arp_request_is_what_rfc_826_says_and_only_replies_are_answers() {
        let mac = [2, 0, 0, 0, 0, 1];
        let request = arp_request(
            mac,
            "192.0.2.1".parse().unwrap(),
            "192.0.2.11".parse().unwrap(),
        );
        assert_eq!(
            request,
            [
                0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 192, 0,
                2, 11
            ]
        );
        assert_eq!(arp_reply(&request), None);
        let mut reply = request.clone();
        reply[7] = 2;
        reply[8..14].copy_from_slice(&[2, 0, 0, 0, 0, 0x11]);
        reply[14..18].copy_from_slice(&[192, 0, 2, 11]);
        assert_eq!(
            arp_reply(&reply),
            Some(("192.0.2.11".parse().unwrap(), [2, 0, 0, 0, 0, 0x11]))
        );
        assert_eq!(arp_reply(&reply[..27]), None);
    }

    #[test]
    fn macs_parse_as_sysfs_writes_them() {
        assert_eq!(
            parse_mac("02:00:5e:00:53:01"),
            Some([2, 0, 0x5e, 0, 0x53, 1])
        );
        assert_eq!(parse_mac("02:00:5e:00:53"), None);
        assert_eq!(parse_mac("02:00:5e:00:53:01:02"), None);
    }
}
