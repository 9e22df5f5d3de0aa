//! Listening sockets: one per `listen` address (`[::]` takes IPv4 too), bound with
//! IP_FREEBIND so an address or bridge that appears later still works. Accepted
//! connections go to the daemon, which decides whether they get a session.
//!
//! Each socket also carries the transport defences of the neighbor groups it serves
//! (`Security`): a TCP-MD5 key per keyed range, and for GTSM groups sending with TTL 255
//! plus either a minimum TTL of 255 on the listening socket (when every group it serves
//! wants GTSM) or a saved SYN whose TTL `secure_accepted` checks. They are applied before
//! the socket listens and updated in place when the daemon publishes new settings.

use std::fmt;
use std::io;
use std::net::{SocketAddr, SocketAddrV6};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::sockopt;
use crate::config::{Config, ListenAddr};

/// A TCP-MD5 key, as read from a `password_file`. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Md5Key(Vec<u8>);

impl fmt::Debug for Md5Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Md5Key(<{} bytes>)", self.0.len())
    }
}

/// Why a key file gives no key. It names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {}: {error}", path.display())]
    Unreadable { path: PathBuf, error: io::Error },
    #[error("{} holds no key", path.display())]
    Empty { path: PathBuf },
    #[error("{}: the key is {len} bytes, TCP-MD5 takes at most {}", path.display(), sockopt::MAX_KEY_LEN)]
    TooLong { path: PathBuf, len: usize },
}

/// A neighbor group whose key file gives no key.
#[derive(Debug, thiserror::Error)]
#[error("neighbors[{group}].password_file: {error}")]
pub struct SecurityError {
    /// The group's index in `neighbors`.
    pub group: usize,
    pub error: KeyError,
}

/// Why an accepted connection gets no session from the transport's side.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("socket options: {0}")]
    Socket(#[from] io::Error),
    #[error(
        "GTSM: its SYN arrived with TTL {0}, not 255 (not directly connected, or not sending with 255)"
    )]
    LowTtl(u8),
    #[error("GTSM: no saved SYN to check its TTL")]
    NoSavedSyn,
}

impl Md5Key {
    /// Reads a key file: its bytes with trailing newlines (`\n`, `\r\n`) stripped; empty or
    /// longer than the kernel takes is an error.
    pub fn read(path: &Path) -> Result<Md5Key, KeyError> {
        let mut bytes = std::fs::read(path).map_err(|error| KeyError::Unreadable {
            path: path.to_path_buf(),
            error,
        })?;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        if bytes.is_empty() {
            return Err(KeyError::Empty {
                path: path.to_path_buf(),
            });
        }
        if bytes.len() > sockopt::MAX_KEY_LEN {
            return Err(KeyError::TooLong {
                path: path.to_path_buf(),
                len: bytes.len(),
            });
        }
        Ok(Md5Key(bytes))
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// What one neighbor group asks of the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSecurity {
    pub range: IpNet,
    pub md5_key: Option<Md5Key>,
    pub ttl_security: bool,
}

/// The transport defences of every neighbor group, keys read from their files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    pub groups: Vec<GroupSecurity>,
}

impl Security {
    /// Reads every group's `password_file` (at start and on reload; `check` does not, so
    /// that it works where the files are absent). The error names the JSON path and file.
    pub fn load(config: &Config) -> Result<Security, SecurityError> {
        let groups = config
            .neighbors
            .iter()
            .enumerate()
            .map(|(i, group)| {
                let md5_key = match &group.password_file {
                    Some(path) => Some(
                        Md5Key::read(path).map_err(|error| SecurityError { group: i, error })?,
                    ),
                    None => None,
                };
                Ok(GroupSecurity {
                    range: group.range,
                    md5_key,
                    ttl_security: group.ttl_security,
                })
            })
            .collect::<Result<_, SecurityError>>()?;
        Ok(Security { groups })
    }

    /// The groups whose peers can reach a socket of this kind.
    fn served_by(&self, kind: SocketKind) -> impl Iterator<Item = &GroupSecurity> {
        self.groups.iter().filter(move |g| match kind {
            SocketKind::V4 => g.range.addr().is_ipv4(),
            SocketKind::V6Only => g.range.addr().is_ipv6(),
            SocketKind::DualStack => true,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SocketKind {
    V4,
    V6Only,
    /// `[::]`: IPv6, and IPv4 as mapped addresses.
    DualStack,
}

impl SocketKind {
    fn of(addr: &SocketAddr) -> SocketKind {
        match addr {
            SocketAddr::V4(_) => SocketKind::V4,
            SocketAddr::V6(v6) if v6.ip().is_unspecified() => SocketKind::DualStack,
            SocketAddr::V6(_) => SocketKind::V6Only,
        }
    }

    fn is_v6(self) -> bool {
        self != SocketKind::V4
    }
}

/// A bound, listening socket and the keys it carries.
pub struct Listener {
    listen: ListenAddr,
    socket: TcpListener,
    kind: SocketKind,
    /// Ranges that have a key on this socket.
    keyed: Vec<IpNet>,
}

impl Listener {
    /// Brings the socket's keys and GTSM options in line with `security`.
    fn apply(&mut self, security: &Security) -> io::Result<()> {
        apply(self.socket.as_fd(), self.kind, &mut self.keyed, security)
    }
}

/// Sets the keys (removing those of `keyed` no longer wanted) and GTSM options that the
/// groups served by a socket of `kind` ask for.
fn apply(
    fd: BorrowedFd<'_>,
    kind: SocketKind,
    keyed: &mut Vec<IpNet>,
    security: &Security,
) -> io::Result<()> {
    let v6 = kind.is_v6();
    let served: Vec<&GroupSecurity> = security.served_by(kind).collect();
    let wanted: Vec<(IpNet, &Md5Key)> = served
        .iter()
        .filter_map(|g| Some((g.range, g.md5_key.as_ref()?)))
        .collect();
    for range in keyed.iter() {
        if !wanted.iter().any(|(r, _)| r == range) {
            sockopt::set_md5_key(fd, v6, *range, None)?;
        }
    }
    keyed.retain(|range| wanted.iter().any(|(r, _)| r == range));
    for (range, key) in &wanted {
        // Setting a key again replaces it in place.
        sockopt::set_md5_key(fd, v6, *range, Some(key.bytes()))?;
        if !keyed.contains(range) {
            keyed.push(*range);
        }
    }
    let any_gtsm = served.iter().any(|g| g.ttl_security);
    let all_gtsm = !served.is_empty() && served.iter().all(|g| g.ttl_security);
    sockopt::set_ttl(fd, v6, any_gtsm.then_some(255))?;
    sockopt::set_min_ttl(fd, v6, if all_gtsm { 255 } else { 0 })?;
    sockopt::set_save_syn(fd, any_gtsm)?;
    Ok(())
}

/// Binds one listening socket right now, with `security` applied before it listens (used
/// at start so that READY=1 means listening, keys in place).
pub fn bind(listen: &ListenAddr, security: &Security) -> io::Result<Listener> {
    let mut addr = listen.addr;
    if let (SocketAddr::V6(v6), Some(ifname)) = (&listen.addr, &listen.interface) {
        let ifindex = nix::net::if_::if_nametoindex(ifname.as_str())
            .map_err(|e| io::Error::other(format!("interface {ifname}: {e}")))?;
        addr = SocketAddr::V6(SocketAddrV6::new(*v6.ip(), v6.port(), 0, ifindex));
    }
    let kind = SocketKind::of(&addr);
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    match kind {
        SocketKind::V4 => socket.set_freebind_v4(true)?,
        _ => {
            socket.set_only_v6(kind == SocketKind::V6Only)?;
            socket.set_freebind_v6(true)?;
        }
    }
    socket.bind(&addr.into())?;
    let mut keyed = Vec::new();
    apply(socket.as_fd(), kind, &mut keyed, security)
        .map_err(|e| io::Error::new(e.kind(), format!("TCP-MD5/GTSM socket options: {e}")))?;
    socket.listen(1024)?;
    Ok(Listener {
        listen: listen.clone(),
        socket: TcpListener::from_std(socket.into())?,
        kind,
        keyed,
    })
}

/// Accepts forever on `bound` (or binds `listen` first, retrying every second while its
/// interface does not exist yet), handing each connection to `accepted` and applying new
/// `security` settings to the live socket as they are published.
pub async fn serve(
    listen: ListenAddr,
    bound: Option<Listener>,
    mut security: watch::Receiver<Arc<Security>>,
    accepted: mpsc::Sender<(TcpStream, SocketAddr)>,
) {
    let mut listener = match bound {
        Some(l) => l,
        None => loop {
            let current = security.borrow_and_update().clone();
            match bind(&listen, &current) {
                Ok(l) => {
                    tracing::info!(%listen, "listening for BGP");
                    break l;
                }
                Err(error) => {
                    tracing::warn!(%listen, %error, "cannot listen yet; retrying every second");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        },
    };
    let mut watching = true;
    loop {
        tokio::select! {
            connection = listener.socket.accept() => match connection {
                Ok(connection) => {
                    if accepted.send(connection).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    // EMFILE and friends: back off rather than spin.
                    tracing::warn!(%listen, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            changed = security.changed(), if watching => match changed {
                Ok(()) => {
                    let current = security.borrow_and_update().clone();
                    match listener.apply(&current) {
                        Ok(()) => tracing::info!(listen = %listener.listen, "TCP-MD5 and GTSM settings updated"),
                        Err(error) => tracing::error!(
                            listen = %listener.listen, %error,
                            "cannot update the TCP-MD5/GTSM settings of a listening socket"
                        ),
                    }
                }
                Err(_) => watching = false,
            },
        }
    }
}

/// Sets up an accepted connection for its neighbor group: with GTSM, the minimum TTL and
/// sending with 255, and the SYN must have arrived with TTL (hop limit) 255 — which closes
/// the window between the handshake and these options on a socket that also serves groups
/// without GTSM. Without GTSM, the kernel's default TTL. The error says why to refuse it.
pub fn secure_accepted(stream: &TcpStream, ttl_security: bool) -> Result<(), AcceptError> {
    let v6 = stream.local_addr()?.is_ipv6();
    let fd = stream.as_fd();
    if !ttl_security {
        return Ok(sockopt::set_ttl(fd, v6, None)?);
    }
    sockopt::set_min_ttl(fd, v6, 255)?;
    sockopt::set_ttl(fd, v6, Some(255))?;
    match sockopt::saved_syn_ttl(fd) {
        Ok(Some(255)) => Ok(()),
        Ok(Some(ttl)) => Err(AcceptError::LowTtl(ttl)),
        Ok(None) | Err(_) => Err(AcceptError::NoSavedSyn),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(range: &str, key: Option<&[u8]>, ttl_security: bool) -> GroupSecurity {
        GroupSecurity {
            range: range.parse().unwrap(),
            md5_key: key.map(|k| Md5Key(k.to_vec())),
            ttl_security,
        }
    }

    fn temp_file(name: &str, content: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "cilium-peer-listener-{}-{name}",
            std::process::id()
        ));
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn a_key_file_loses_its_trailing_newline_and_nothing_else() {
        let path = temp_file("newline", b" s3cret \r\n");
        assert_eq!(Md5Key::read(&path).unwrap(), Md5Key(b" s3cret ".to_vec()));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_missing_empty_or_overlong_key_file_is_an_error_naming_the_file() {
        let missing = std::path::Path::new("/nonexistent/cilium-peer/key");
        let error = Md5Key::read(missing).unwrap_err().to_string();
        assert!(
            error.starts_with("cannot read /nonexistent/cilium-peer/key:"),
            "{error}"
        );
        let empty = temp_file("empty", b"\n");
        let error = Md5Key::read(&empty).unwrap_err().to_string();
        assert!(error.contains("holds no key"), "{error}");
        let long = temp_file("long", &[b'k'; sockopt::MAX_KEY_LEN + 1]);
        let error = Md5Key::read(&long).unwrap_err().to_string();
        assert!(error.contains("at most 80"), "{error}");
        std::fs::remove_file(empty).unwrap();
        std::fs::remove_file(long).unwrap();
    }

    #[test]
    fn a_key_never_shows_in_debug_output() {
        let security = Security {
            groups: vec![group("2001:db8:1::/64", Some(b"hunter2"), false)],
        };
        let shown = format!("{security:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<7 bytes>"), "{shown}");
    }

    #[test]
    fn load_reports_an_unreadable_password_file_with_its_json_path() {
        let config = Config::parse(
            r#"{ "router_id": "192.0.2.1", "asn": 65100, "neighbors": [
                 { "name": "a", "range": "2001:db8:1::/64", "asn": 65100 },
                 { "name": "b", "range": "192.0.2.0/24", "asn": 65100,
                   "password_file": "/nonexistent/cilium-peer/b.key" } ] }"#,
        )
        .unwrap();
        let error = Security::load(&config).unwrap_err().to_string();
        assert!(
            error.starts_with(
                "neighbors[1].password_file: cannot read /nonexistent/cilium-peer/b.key"
            ),
            "{error}"
        );
    }

    #[test]
    fn a_socket_serves_the_groups_of_its_address_family() {
        let security = Security {
            groups: vec![
                group("192.0.2.0/24", None, false),
                group("2001:db8:1::/64", None, true),
            ],
        };
        let ranges = |kind| -> Vec<String> {
            security
                .served_by(kind)
                .map(|g| g.range.to_string())
                .collect()
        };
        assert_eq!(ranges(SocketKind::V4), ["192.0.2.0/24"]);
        assert_eq!(ranges(SocketKind::V6Only), ["2001:db8:1::/64"]);
        assert_eq!(ranges(SocketKind::DualStack).len(), 2);
    }

    fn listen(addr: &str) -> ListenAddr {
        ListenAddr {
            addr: addr.parse().unwrap(),
            interface: None,
        }
    }

    use crate::testing::net;

    #[tokio::test]
    async fn keys_follow_the_published_settings_on_a_live_socket() {
        let with_keys = Security {
            groups: vec![
                group("192.0.2.0/24", Some(b"one"), false),
                group("2001:db8:1::/64", Some(b"two"), false),
            ],
        };
        let mut l = bind(&listen("[::1]:0"), &with_keys).unwrap();
        // A v6-only socket keys its IPv6 range alone.
        assert_eq!(l.keyed, [net("2001:db8:1::/64")]);
        let fd = l.socket.as_fd();
        // The key is there: removing it by hand succeeds (then it goes back).
        sockopt::set_md5_key(fd, true, net("2001:db8:1::/64"), None).unwrap();
        sockopt::set_md5_key(fd, true, net("2001:db8:1::/64"), Some(b"two")).unwrap();
        l.apply(&Security::default()).unwrap();
        assert!(l.keyed.is_empty());
        let gone = sockopt::set_md5_key(l.socket.as_fd(), true, net("2001:db8:1::/64"), None);
        assert_eq!(gone.unwrap_err().raw_os_error(), Some(libc::ENOENT));
    }

    #[tokio::test]
    async fn a_dual_stack_socket_keys_ipv4_ranges_too() {
        let security = Security {
            groups: vec![group("192.0.2.0/24", Some(b"one"), false)],
        };
        // Port 0 on [::]: any free port, dual stack.
        let l = bind(&listen("[::]:0"), &security).unwrap();
        assert_eq!(l.keyed, [net("192.0.2.0/24")]);
        sockopt::set_md5_key(l.socket.as_fd(), true, net("192.0.2.0/24"), None)
            .expect("the IPv4 range's key is on the IPv6 socket");
    }
}
