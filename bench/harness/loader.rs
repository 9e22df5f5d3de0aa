//! The kernel's limits, run inside the lab's host namespace by the harness itself
//! (`bench load N`, `bench legs TABLE`): N IPv4 and N IPv6 routes on one nexthop object,
//! the two families on two sockets at once; and the ECMP legs in a table. Sockets and
//! message framing are the daemon's own (`cilium_peer::fib::socket`, `fib::nlmsg`); the
//! requests are written here, the kernel's best path for the same routes.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;
use std::time::Duration;

use cilium_peer::fib::nlmsg::{
    self, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST, NLMSG_DONE,
    NLMSG_ERROR, RTM_NEWNEXTHOP, RTM_NEWROUTE, attr, attributes, finish, header,
};
use cilium_peer::fib::route::Target;
use cilium_peer::fib::socket::RouteSocket;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::{BRIDGE, INJECTOR_V6, PROTO, TABLE};

pub const NH_ID: u32 = 4242;
/// Our table and protocol number, as the daemon marks its routes.
const TARGET: Target = Target {
    table: TABLE,
    protocol: PROTO,
};
const RTM_GETROUTE: u16 = 26;
const RTA_DST: u16 = 1;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const NHA_ID: u16 = 1;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;
/// Bytes per sendmsg.
const CHUNK: usize = 256 * 1024;

pub fn main(args: &[String]) -> ExitCode {
    let n: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(0);
    match load(n) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(errors) => {
            eprintln!("load: the kernel refused {errors} requests");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::from(1)
        }
    }
}

fn socket() -> io::Result<RouteSocket> {
    let socket = RouteSocket::open(0)?;
    for send in [true, false] {
        socket.set_buffer(send, 32 << 20)?;
    }
    Ok(socket)
}

/// Waits for the next datagram into `buffer`.
fn receive(socket: &RouteSocket, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        socket.readable(Duration::from_secs(60))?;
        match socket.recv(buffer) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// Reads error messages until the acknowledgement of `last_seq` (errno 0); returns how
/// many requests failed.
fn collect(socket: &RouteSocket, last_seq: u32) -> io::Result<u64> {
    let mut buffer = vec![0u8; 1 << 20];
    let mut errors = 0;
    loop {
        let n = receive(socket, &mut buffer)?;
        for message in nlmsg::messages(&buffer[..n]) {
            if message.kind == NLMSG_ERROR
                && let Some((errno, echoed)) = nlmsg::error(message.payload)
            {
                if errno != 0 {
                    errors += 1;
                }
                if echoed.len() >= 12 && nlmsg::seq(echoed) == last_seq {
                    return Ok(errors);
                }
            }
        }
    }
}

/// Sends `n` routes of one family on their own socket; returns refused requests.
fn family(n: u32, v6: bool) -> io::Result<u64> {
    let socket = socket()?;
    let mut out = Vec::with_capacity(CHUNK + 256);
    for i in 0..n {
        let last = i + 1 == n;
        let flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE | if last { NLM_F_ACK } else { 0 };
        // The `i`th /26 in 10.0.0.0/8 or /64 in fd00:1::/32 (configs::bulk_v4, bulk_v6).
        let prefix = if v6 {
            let address = Ipv6Addr::new(0xfd00, 1, (i >> 16) as u16, i as u16, 0, 0, 0, 0);
            IpNet::V6(Ipv6Net::new(address, 64).unwrap())
        } else {
            let address = Ipv4Addr::from((10u32 << 24) | (i << 6));
            IpNet::V4(Ipv4Net::new(address, 26).unwrap())
        };
        TARGET.encode_short(&mut out, RTM_NEWROUTE, flags, i + 1, &prefix, Some(NH_ID));
        if out.len() >= CHUNK || last {
            socket.send(&out)?;
            out.clear();
        }
    }
    collect(&socket, n)
}

/// `bench legs TABLE`: prints the IPv4 and IPv6 ECMP legs in TABLE.
pub fn legs_main(args: &[String]) -> ExitCode {
    let table: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(TABLE);
    match (
        count_legs(table, libc::AF_INET as u8),
        count_legs(table, libc::AF_INET6 as u8),
    ) {
        (Ok(a), Ok(b)) => {
            println!("{a} {b}");
            ExitCode::SUCCESS
        }
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("legs: {e}");
            ExitCode::from(1)
        }
    }
}

fn count_legs(table: u32, family: u8) -> io::Result<u64> {
    let socket = socket()?;
    let mut buffer = vec![0u8; 64 << 10];
    // A first read with a large buffer, so that the kernel sizes dump buffers to it.
    let mut out = Vec::new();
    let start = header(&mut out, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_ACK, 1);
    if family == libc::AF_INET as u8 {
        out.extend_from_slice(&[family, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        attr(&mut out, RTA_DST, &[192, 0, 2, 1]);
    } else {
        out.extend_from_slice(&[family, 128, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        attr(&mut out, RTA_DST, &Ipv6Addr::LOCALHOST.octets());
    }
    finish(&mut out, start);
    socket.send(&out)?;
    receive(&socket, &mut buffer)?;
    let mut out = Vec::new();
    let start = header(&mut out, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, 2);
    out.extend_from_slice(&[family, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    finish(&mut out, start);
    socket.send(&out)?;
    let mut legs = 0;
    loop {
        let n = receive(&socket, &mut buffer)?;
        let mut at = 0;
        for message in nlmsg::messages(&buffer[..n]) {
            // The sequence number of this message (the priming answer's is 1).
            let seq = nlmsg::seq(&buffer[at..]);
            at += (nlmsg::HEADER + message.payload.len()).next_multiple_of(4);
            if seq != 2 {
                continue;
            }
            if message.kind == NLMSG_DONE || message.kind == NLMSG_ERROR {
                return Ok(legs);
            }
            if message.kind == RTM_NEWROUTE && message.payload.len() >= 12 {
                let mut route_table = u32::from(message.payload[4]);
                let mut hops = 1;
                for (kind, value) in attributes(&message.payload[12..]) {
                    if kind == RTA_TABLE && value.len() == 4 {
                        route_table = u32::from_ne_bytes(value.try_into().unwrap());
                    }
                    if kind == RTA_MULTIPATH {
                        // struct rtnexthop: len (u16), flags, hops, ifindex, attributes
                        let mut count = 0;
                        let mut rest = value;
                        while rest.len() >= 8 {
                            let length = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
                            if length < 8 {
                                break;
                            }
                            count += 1;
                            rest = &rest[length.next_multiple_of(4).min(rest.len())..];
                        }
                        hops = count;
                    }
                }
                if route_table == table {
                    legs += hops;
                }
            }
        }
    }
}

fn load(n: u32) -> io::Result<u64> {
    let ifindex = nix::net::if_::if_nametoindex(BRIDGE).map_err(io::Error::from)?;
    let socket = socket()?;
    let mut out = Vec::new();
    let start = header(
        &mut out,
        RTM_NEWNEXTHOP,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        1,
    );
    // struct nhmsg: family, scope, protocol, reserved, flags
    out.extend_from_slice(&[libc::AF_INET6 as u8, 0, PROTO, 0]);
    out.extend_from_slice(&0u32.to_ne_bytes());
    attr(&mut out, NHA_ID, &NH_ID.to_ne_bytes());
    attr(&mut out, NHA_OIF, &ifindex.to_ne_bytes());
    let gateway: Ipv6Addr = INJECTOR_V6.parse().unwrap();
    attr(&mut out, NHA_GATEWAY, &gateway.octets());
    finish(&mut out, start);
    socket.send(&out)?;
    if collect(&socket, 1)? != 0 {
        return Err(io::Error::other("nexthop object refused"));
    }
    let v4 = std::thread::spawn(move || family(n, false));
    let v6 = family(n, true)?;
    let v4 = v4
        .join()
        .map_err(|_| io::Error::other("IPv4 thread panicked"))??;
    Ok(v4 + v6)
}
