//! Listening sockets: one per `listen` address (`[::]` takes IPv4 too), bound with
//! IP_FREEBIND so an address or bridge that appears later still works. Accepted
//! connections go to the daemon, which decides whether they get a session.

use std::io;
use std::net::{SocketAddr, SocketAddrV6};
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::config::ListenAddr;

/// Binds `listen`, retrying every second while its interface does not exist yet, then
/// accepts forever, handing each connection to `accepted`.
pub async fn serve(listen: ListenAddr, accepted: mpsc::Sender<(TcpStream, SocketAddr)>) {
    let listener = loop {
        match bind(&listen) {
            Ok(l) => break l,
            Err(error) => {
                tracing::warn!(%listen, %error, "cannot listen yet; retrying every second");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    tracing::info!(%listen, "listening for BGP");
    accept_loop(listener, accepted).await;
}

/// Accepts forever on a bound socket, handing each connection to `accepted`.
pub async fn accept_loop(listener: TcpListener, accepted: mpsc::Sender<(TcpStream, SocketAddr)>) {
    loop {
        match listener.accept().await {
            Ok(connection) => {
                if accepted.send(connection).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                // EMFILE and friends: back off rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Binds one listening socket right now (used at start so that READY=1 means listening).
pub fn bind(listen: &ListenAddr) -> io::Result<TcpListener> {
    let mut addr = listen.addr;
    if let (SocketAddr::V6(v6), Some(ifname)) = (&listen.addr, &listen.interface) {
        let ifindex = nix::net::if_::if_nametoindex(ifname.as_str())
            .map_err(|e| io::Error::other(format!("interface {ifname}: {e}")))?;
        addr = SocketAddr::V6(SocketAddrV6::new(*v6.ip(), v6.port(), 0, ifindex));
    }
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    match addr {
        SocketAddr::V6(v6) => {
            // `[::]` takes IPv4 too (as mapped addresses); a specific address only itself.
            socket.set_only_v6(!v6.ip().is_unspecified())?;
            socket.set_freebind_v6(true)?;
        }
        SocketAddr::V4(_) => socket.set_freebind_v4(true)?,
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}
