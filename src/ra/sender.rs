//! The raw ICMPv6 socket of one bridge: bound to the device, hop limit 255 both ways, joined
//! to ff02::2, filtered to Router Solicitations and Advertisements, sending from a chosen
//! link-local address (IPV6_PKTINFO) and reporting each received message's hop limit
//! (IPV6_RECVHOPLIMIT) so solicitations from off the link can be dropped. Also reads the
//! link facts an RA needs (MAC address, MTU, IPv6 forwarding) at the moment of sending.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn6, recvmsg, sendmsg, setsockopt,
    sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::packet::{ICMPV6_ROUTER_ADVERTISEMENT, ICMPV6_ROUTER_SOLICITATION};
use crate::bgp::sockopt::setsockopt as set_option;

/// ff02::1, all nodes.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ff02::2, all routers.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// ICMP6_FILTER (linux/icmpv6.h), at level IPPROTO_ICMPV6.
const ICMP6_FILTER: libc::c_int = 1;

/// One received ICMPv6 message.
#[derive(Debug, Clone)]
pub struct Received {
    pub len: usize,
    pub source: Ipv6Addr,
    pub hop_limit: u8,
}

/// A bridge's raw ICMPv6 socket.
#[derive(Debug)]
pub struct RaSocket {
    fd: AsyncFd<Socket>,
    ifname: String,
    ifindex: u32,
}

impl RaSocket {
    /// Opens the socket on `ifname` (index `ifindex`). Needs CAP_NET_RAW.
    pub fn open(ifname: &str, ifindex: u32) -> io::Result<RaSocket> {
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
        socket.bind_device(Some(ifname.as_bytes()))?;
        socket.set_multicast_hops_v6(255)?;
        socket.set_unicast_hops_v6(255)?;
        socket.set_multicast_if_v6(ifindex)?;
        socket.set_multicast_loop_v6(false)?;
        socket.join_multicast_v6(&ALL_ROUTERS, ifindex)?;
        socket.set_recv_hoplimit_v6(true)?;
        setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true).map_err(io::Error::from)?;
        set_icmp6_filter(
            &socket,
            &[ICMPV6_ROUTER_SOLICITATION, ICMPV6_ROUTER_ADVERTISEMENT],
        )?;
        socket.set_nonblocking(true)?;
        // SAFETY: the socket owns its descriptor, which stays open until the AsyncFd drops it.
        let fd = unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)?;
        Ok(RaSocket {
            fd,
            ifname: ifname.to_string(),
            ifindex,
        })
    }

    /// Sends one ICMPv6 message (checksum left to the kernel) from `source` to `destination`.
    pub async fn send(
        &self,
        msg: &[u8],
        source: Ipv6Addr,
        destination: Ipv6Addr,
    ) -> io::Result<()> {
        let to = SockaddrIn6::from(SocketAddrV6::new(destination, 0, 0, self.ifindex));
        let info = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: source.octets(),
            },
            ipi6_ifindex: self.ifindex,
        };
        loop {
            let mut guard = self.fd.writable().await?;
            let sent = guard.try_io(|fd| {
                sendmsg(
                    fd.get_ref().as_raw_fd(),
                    &[IoSlice::new(msg)],
                    &[ControlMessage::Ipv6PacketInfo(&info)],
                    MsgFlags::empty(),
                    Some(&to),
                )
                .map_err(io::Error::from)
            });
            match sent {
                Ok(result) => return result.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }

    /// Receives one message into `buf`; messages that arrived on another interface are
    /// skipped.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            let result = guard.try_io(|fd| {
                let mut cmsg = nix::cmsg_space!(libc::c_int, libc::in6_pktinfo);
                let mut iov = [IoSliceMut::new(buf)];
                let msg = recvmsg::<SockaddrIn6>(
                    fd.get_ref().as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::empty(),
                )
                .map_err(io::Error::from)?;
                let mut hop_limit = None;
                let mut ifindex = None;
                for c in msg.cmsgs().map_err(io::Error::from)? {
                    match c {
                        ControlMessageOwned::Ipv6HopLimit(h) => hop_limit = u8::try_from(h).ok(),
                        ControlMessageOwned::Ipv6PacketInfo(info) => {
                            ifindex = Some(info.ipi6_ifindex)
                        }
                        _ => {}
                    }
                }
                let source = msg.address.map_or(Ipv6Addr::UNSPECIFIED, |a| a.ip());
                Ok((msg.bytes, source, hop_limit, ifindex))
            });
            match result {
                Ok(Ok((len, source, hop_limit, ifindex))) => {
                    if ifindex.is_some_and(|i| i != self.ifindex) {
                        continue;
                    }
                    return Ok(Received {
                        len,
                        source,
                        // Without the control message the hop limit is unknown: treat it as
                        // not 255, so the message is dropped.
                        hop_limit: hop_limit.unwrap_or(0),
                    });
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// The bridge's MAC address right now (SIOCGIFHWADDR).
    pub fn mac(&self) -> io::Result<Vec<u8>> {
        let req = self.ifreq(libc::SIOCGIFHWADDR)?;
        // SAFETY: SIOCGIFHWADDR filled in the ifru_hwaddr member of the union.
        let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
        Ok(data[..6].iter().map(|&b| b as u8).collect())
    }

    /// The bridge's MTU right now (SIOCGIFMTU).
    pub fn mtu(&self) -> io::Result<usize> {
        let req = self.ifreq(libc::SIOCGIFMTU)?;
        // SAFETY: SIOCGIFMTU filled in the ifru_mtu member of the union.
        let mtu = unsafe { req.ifr_ifru.ifru_mtu };
        usize::try_from(mtu).map_err(|_| io::Error::other(format!("MTU {mtu}")))
    }

    fn ifreq(&self, request: libc::Ioctl) -> io::Result<libc::ifreq> {
        // SAFETY: ifreq is plain old data; all zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        let name = self.ifname.as_bytes();
        if name.len() >= req.ifr_name.len() {
            return Err(io::Error::other(format!(
                "interface name {} is too long",
                self.ifname
            )));
        }
        for (dst, &src) in req.ifr_name.iter_mut().zip(name) {
            *dst = src as libc::c_char;
        }
        // SAFETY: the request reads the NUL-terminated name and writes into `req`, which
        // lives for the whole call.
        let rc = unsafe { libc::ioctl(self.fd.get_ref().as_raw_fd(), request, &mut req) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(req)
    }
}

/// Whether IPv6 forwarding is on for `ifname` in this network namespace.
pub fn forwarding(ifname: &str) -> bool {
    std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{ifname}/forwarding"))
        .is_ok_and(|v| v.trim() != "0")
}

/// Lets only the given ICMPv6 types through (struct icmp6_filter: a set bit blocks a type).
pub(crate) fn set_icmp6_filter(socket: &Socket, pass: &[u8]) -> io::Result<()> {
    let mut filter = [u32::MAX; 8];
    for &kind in pass {
        filter[usize::from(kind >> 5)] &= !(1u32 << (kind & 31));
    }
    // `filter` is the 32-byte struct icmp6_filter the option expects.
    set_option(socket.as_fd(), libc::IPPROTO_ICMPV6, ICMP6_FILTER, &filter)
}
