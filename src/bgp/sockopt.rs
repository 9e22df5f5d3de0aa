//! Socket options behind the BGP transport defences: TCP-MD5 signatures for a whole address
//! range (RFC 2385, Linux `TCP_MD5SIG_EXT` with `TCP_MD5SIG_FLAG_PREFIX`), GTSM (RFC 5082:
//! a minimum TTL / hop limit, and sending with 255), and the saved SYN that tells an
//! accepted connection's TTL. Thin wrappers over setsockopt/getsockopt; which option goes
//! on which socket is `listener`'s business.

use std::io;
use std::mem;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use ipnet::IpNet;

/// The longest TCP-MD5 key the kernel takes.
pub const MAX_KEY_LEN: usize = libc::TCP_MD5SIG_MAXKEYLEN;

/// `tcpm_flags`: the key covers `tcpm_prefixlen` bits of `tcpm_addr` (linux/tcp.h).
const TCP_MD5SIG_FLAG_PREFIX: u8 = 0x1;

/// `struct tcp_md5sig` of linux/tcp.h (libc does not have it).
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; MAX_KEY_LEN],
}

/// Sets the TCP-MD5 key for every peer in `range` on a socket of the given family, or
/// removes it (`key: None`). Set on a listening socket, the key is copied into each
/// connection it accepts from that range; segments from the range without the right
/// signature are dropped by the kernel, SYNs included.
///
/// On an IPv6 socket an IPv4 range must be given as its IPv4-mapped address with the IPv4
/// prefix length (`::ffff:192.0.2.0` and 24, not 120: the kernel refuses more than 32
/// bits for a mapped address and files the key under IPv4). An IPv4 socket takes IPv4
/// ranges only.
pub fn set_md5_key(
    fd: BorrowedFd<'_>,
    socket_v6: bool,
    range: IpNet,
    key: Option<&[u8]>,
) -> io::Result<()> {
    let key = key.unwrap_or_default();
    if key.len() > MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TCP-MD5 keys are at most {MAX_KEY_LEN} bytes"),
        ));
    }
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut sig: TcpMd5Sig = unsafe { mem::zeroed() };
    let range = range.trunc();
    match (socket_v6, range.addr()) {
        (false, IpAddr::V4(v4)) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from(v4).to_be(),
                },
                sin_zero: [0; 8],
            };
            write_addr(&mut sig.addr, &sin);
        }
        (true, address) => {
            let v6 = match address {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.octets(),
                },
                sin6_scope_id: 0,
            };
            write_addr(&mut sig.addr, &sin6);
        }
        (false, IpAddr::V6(_)) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an IPv4 socket cannot take a key for an IPv6 range",
            ));
        }
    }
    sig.flags = TCP_MD5SIG_FLAG_PREFIX;
    sig.prefixlen = range.prefix_len();
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_MD5SIG_EXT, &sig)
}

fn write_addr<T>(storage: &mut libc::sockaddr_storage, addr: &T) {
    const { assert!(mem::size_of::<T>() <= mem::size_of::<libc::sockaddr_storage>()) };
    // SAFETY: `T` is a sockaddr that fits in the storage (checked above); both are plain data.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (addr as *const T).cast::<u8>(),
            (storage as *mut libc::sockaddr_storage).cast::<u8>(),
            mem::size_of::<T>(),
        );
    }
}

/// GTSM's receive check: segments with a lower TTL (IPv4, also IPv4-mapped traffic on an
/// IPv6 socket) or hop limit (IPv6) are dropped by the kernel. 0 turns it off.
pub fn set_min_ttl(fd: BorrowedFd<'_>, socket_v6: bool, min: u8) -> io::Result<()> {
    setsockopt(
        fd,
        libc::IPPROTO_IP,
        libc::IP_MINTTL,
        &libc::c_int::from(min),
    )?;
    if socket_v6 {
        setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MINHOPCOUNT,
            &libc::c_int::from(min),
        )?;
    }
    Ok(())
}

/// The TTL / hop limit of what the socket sends (SYN-ACKs of a listening socket included);
/// `None` is the kernel's default.
pub fn set_ttl(fd: BorrowedFd<'_>, socket_v6: bool, ttl: Option<u8>) -> io::Result<()> {
    let value = ttl.map_or(-1, libc::c_int::from);
    setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &value)?;
    if socket_v6 {
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &value)?;
    }
    Ok(())
}

/// Makes a listening socket keep each connection's SYN (its IP and TCP headers) for
/// `saved_syn_ttl`.
pub fn set_save_syn(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    setsockopt(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_SAVE_SYN,
        &libc::c_int::from(on),
    )
}

/// The TTL (IPv4) or hop limit (IPv6) the SYN of an accepted connection arrived with, when
/// its listening socket saved it. The kernel hands the SYN out once.
pub fn saved_syn_ttl(fd: BorrowedFd<'_>) -> io::Result<Option<u8>> {
    let mut buffer = [0u8; 512];
    let mut len = buffer.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `buffer` and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_SAVED_SYN,
            buffer.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ttl_of_ip_header(&buffer[..len as usize]))
}

/// The TTL of an IPv4 header or the hop limit of an IPv6 header.
fn ttl_of_ip_header(header: &[u8]) -> Option<u8> {
    match header.first()? >> 4 {
        4 => header.get(8).copied(),
        6 => header.get(7).copied(),
        _ => None,
    }
}

/// setsockopt(2) with a `T` as the option's value: the crate's one wrapper, for the
/// options nix and socket2 do not cover (also RA's ICMPv6 filter).
pub(crate) fn setsockopt<T>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    use socket2::{Domain, Socket, Type};

    fn socket(v6: bool) -> Socket {
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        Socket::new(domain, Type::STREAM, None).expect("a TCP socket")
    }

    fn getsockopt_int(socket: &Socket, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = 0;
        let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the kernel writes one int.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                level,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        value
    }

    use crate::testing::net;

    #[test]
    fn an_ipv6_socket_takes_keys_for_ipv4_and_ipv6_ranges_and_lets_them_go() {
        let s = socket(true);
        for range in ["192.0.2.0/24", "2001:db8:1::/64", "fe80::/64"] {
            set_md5_key(s.as_fd(), true, net(range), Some(b"secret"))
                .unwrap_or_else(|e| panic!("{range}: {e}"));
            // Setting again replaces the key of the same range.
            set_md5_key(s.as_fd(), true, net(range), Some(b"other")).unwrap();
            set_md5_key(s.as_fd(), true, net(range), None).unwrap();
            // Gone: removing it again finds nothing.
            let again = set_md5_key(s.as_fd(), true, net(range), None).unwrap_err();
            assert_eq!(again.raw_os_error(), Some(libc::ENOENT), "{range}");
        }
    }

    #[test]
    fn the_kernel_wants_an_ipv4_prefix_length_for_a_mapped_address() {
        let s = socket(true);
        // What `set_md5_key` avoids: the IPv6 length of the mapped prefix is refused.
        let mut sig: TcpMd5Sig = unsafe { mem::zeroed() };
        let sin6 = libc::sockaddr_in6 {
            sin6_family: libc::AF_INET6 as libc::sa_family_t,
            sin6_port: 0,
            sin6_flowinfo: 0,
            sin6_addr: libc::in6_addr {
                s6_addr: "::ffff:192.0.2.0"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            },
            sin6_scope_id: 0,
        };
        write_addr(&mut sig.addr, &sin6);
        sig.flags = TCP_MD5SIG_FLAG_PREFIX;
        sig.prefixlen = 96 + 24;
        sig.keylen = 6;
        sig.key[..6].copy_from_slice(b"secret");
        let refused = setsockopt(s.as_fd(), libc::IPPROTO_TCP, libc::TCP_MD5SIG_EXT, &sig);
        assert_eq!(refused.unwrap_err().raw_os_error(), Some(libc::EINVAL));
        sig.prefixlen = 24;
        setsockopt(s.as_fd(), libc::IPPROTO_TCP, libc::TCP_MD5SIG_EXT, &sig).unwrap();
    }

    #[test]
    fn an_ipv4_socket_takes_ipv4_ranges_only() {
        let s = socket(false);
        set_md5_key(s.as_fd(), false, net("198.51.100.0/24"), Some(b"k")).unwrap();
        assert!(set_md5_key(s.as_fd(), false, net("2001:db8::/32"), Some(b"k")).is_err());
    }

    #[test]
    fn a_key_longer_than_the_kernel_takes_is_refused() {
        let s = socket(true);
        let long = [b'x'; MAX_KEY_LEN + 1];
        let error = set_md5_key(s.as_fd(), true, net("2001:db8::/32"), Some(&long)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        let longest = [b'x'; MAX_KEY_LEN];
        set_md5_key(s.as_fd(), true, net("2001:db8::/32"), Some(&longest)).unwrap();
    }

    #[test]
    fn gtsm_options_cover_ipv4_and_ipv6_on_a_dual_stack_socket() {
        let s = socket(true);
        set_min_ttl(s.as_fd(), true, 255).unwrap();
        set_ttl(s.as_fd(), true, Some(255)).unwrap();
        assert_eq!(getsockopt_int(&s, libc::IPPROTO_IP, libc::IP_MINTTL), 255);
        assert_eq!(
            getsockopt_int(&s, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT),
            255
        );
        assert_eq!(getsockopt_int(&s, libc::IPPROTO_IP, libc::IP_TTL), 255);
        assert_eq!(
            getsockopt_int(&s, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS),
            255
        );
        set_min_ttl(s.as_fd(), true, 0).unwrap();
        set_ttl(s.as_fd(), true, None).unwrap();
        assert_eq!(getsockopt_int(&s, libc::IPPROTO_IP, libc::IP_MINTTL), 0);
        assert_ne!(getsockopt_int(&s, libc::IPPROTO_IP, libc::IP_TTL), 255);
        assert_ne!(
            getsockopt_int(&s, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS),
            255
        );
    }

    #[test]
    fn an_ipv4_socket_gets_only_the_ipv4_gtsm_options() {
        let s = socket(false);
        set_min_ttl(s.as_fd(), false, 255).unwrap();
        set_ttl(s.as_fd(), false, Some(255)).unwrap();
        assert_eq!(getsockopt_int(&s, libc::IPPROTO_IP, libc::IP_MINTTL), 255);
        assert_eq!(getsockopt_int(&s, libc::IPPROTO_IP, libc::IP_TTL), 255);
    }

    #[test]
    fn the_ttl_is_read_from_an_ipv4_or_ipv6_header() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[8] = 255;
        assert_eq!(ttl_of_ip_header(&v4), Some(255));
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[7] = 64;
        assert_eq!(ttl_of_ip_header(&v6), Some(64));
        assert_eq!(ttl_of_ip_header(&[0x45, 0, 0]), None);
        assert_eq!(ttl_of_ip_header(&[]), None);
        assert_eq!(ttl_of_ip_header(&[0x10; 40]), None);
    }

    #[test]
    fn an_accepted_connection_tells_the_ttl_of_its_syn() {
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        set_save_syn(listener.as_fd(), true).unwrap();
        let client = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        set_ttl(client.as_fd(), false, Some(77)).unwrap();
        client
            .connect(&listener.local_addr().unwrap().into())
            .unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert_eq!(saved_syn_ttl(accepted.as_fd()).unwrap(), Some(77));
        // Handed out once.
        assert!(!matches!(saved_syn_ttl(accepted.as_fd()), Ok(Some(_))));
        drop(TcpStream::from(client));
    }
}
