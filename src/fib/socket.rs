//! The netlink socket layer: rtnetlink sockets on `netlink_sys::Socket` with their options
//! set through nix and socket2 (no `unsafe` of our own), and [`Channel`], a socket with a
//! batch of requests waiting and a thread of its own (a courier) that sends one batch
//! while the caller encodes the next. Requests go out many per `sendmsg` without asking
//! for acknowledgements: rtnetlink handles requests synchronously in `sendmsg`, so once a
//! buffer is sent its failures are already queued on the socket and nothing waits for a
//! round trip. The writer (`netlink`) and the monitor use this; neither opens a socket
//! itself.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{setsockopt, sockopt};
use socket2::{SockFilter, SockRef};

use super::nlmsg::{self, NLM_F_ACK, NLMSG_DONE, NLMSG_ERROR};

/// Bytes of requests per `sendmsg` (about 4,000 routes); smaller if the kernel gives us a
/// smaller send buffer.
const CHUNK: usize = 256 << 10;
/// How long a request or a dump waits for each answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A non-blocking rtnetlink socket bound to a port the kernel chose.
pub struct RouteSocket {
    socket: Socket,
    port: u32,
}

impl RouteSocket {
    /// Opens one in the multicast `groups` (RTMGRP_* bits, 0 for none).
    pub fn open(groups: u32) -> io::Result<RouteSocket> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.set_non_blocking(true)?;
        socket.bind(&SocketAddr::new(0, groups))?;
        let mut address = SocketAddr::new(0, 0);
        socket.get_address(&mut address)?;
        Ok(RouteSocket {
            socket,
            port: address.port_number(),
        })
    }

    /// The netlink port the kernel gave the socket; it stamps it on the route events our
    /// own requests cause.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Sends `bytes` in one `sendmsg`.
    pub fn send(&self, bytes: &[u8]) -> io::Result<()> {
        self.socket.send(bytes, 0).map(drop)
    }

    /// One non-blocking receive into `buffer`: the bytes read, or the socket's error.
    pub fn recv(&self, buffer: &mut [u8]) -> io::Result<usize> {
        let length = buffer.len();
        let n = self.socket.recv(&mut &mut buffer[..], libc::MSG_DONTWAIT)?;
        Ok(n.min(length))
    }

    /// Waits until something can be read, for up to `timeout`; false if nothing came.
    pub fn readable(&self, timeout: Duration) -> io::Result<bool> {
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(millis)) {
            Ok(ready) => Ok(ready > 0),
            Err(nix::errno::Errno::EINTR) => Ok(true),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Sets the send (`send: true`) or receive buffer to `bytes`, past the system's limit
    /// where we may (SO_*BUFFORCE needs CAP_NET_ADMIN), else as far as it allows.
    pub fn set_buffer(&self, send: bool, bytes: usize) -> io::Result<()> {
        let fd = self.socket.as_fd();
        let forced = if send {
            setsockopt(&fd, sockopt::SndBufForce, &bytes)
        } else {
            setsockopt(&fd, sockopt::RcvBufForce, &bytes)
        };
        if forced.is_ok() {
            return Ok(());
        }
        let plain = if send {
            setsockopt(&fd, sockopt::SndBuf, &bytes)
        } else {
            setsockopt(&fd, sockopt::RcvBuf, &bytes)
        };
        plain.map_err(io::Error::from)
    }

    /// The send buffer the kernel gave us, in bytes.
    pub fn send_buffer(&self) -> io::Result<usize> {
        SockRef::from(&self.socket).send_buffer_size()
    }

    /// Asks for the kernel's reason with each failure (NETLINK_EXT_ACK), where supported.
    pub fn want_reasons(&self) {
        let _ = self.socket.set_ext_ack(true);
    }

    /// Attaches a classic BPF program, as (code, jt, jf, k) instructions, that the kernel
    /// runs on each message before queueing it.
    pub fn attach_filter(&self, program: &[(u16, u8, u8, u32)]) -> io::Result<()> {
        let program: Vec<SockFilter> = program
            .iter()
            .map(|&(code, jt, jf, k)| SockFilter::new(code, jt, jf, k))
            .collect();
        SockRef::from(&self.socket).attach_filter(&program)
    }
}

impl AsRawFd for RouteSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// Failures as the kernel reports them: errno and the request it echoes (empty when the
/// report itself was lost).
pub type RawFailures = Vec<(i32, Vec<u8>)>;

/// Sends `bytes` in one `sendmsg`; a refused send is one unattributed failure.
fn send_all(socket: &RouteSocket, bytes: &[u8], failures: &mut RawFailures) {
    if let Err(error) = socket.send(bytes) {
        failures.push((error.raw_os_error().unwrap_or(0), Vec::new()));
    }
}

/// Reads the failure reports already queued on the socket.
fn drain(socket: &RouteSocket, buffer: &mut [u8], failures: &mut RawFailures) {
    loop {
        let n = match socket.recv(buffer) {
            Ok(n) => n,
            Err(error) => match error.raw_os_error() {
                Some(libc::EAGAIN) => return,
                Some(libc::EINTR) => continue,
                // Reports were lost: say so, unattributed.
                errno => {
                    failures.push((errno.unwrap_or(libc::EIO), Vec::new()));
                    if errno != Some(libc::ENOBUFS) {
                        return;
                    }
                    continue;
                }
            },
        };
        for message in nlmsg::messages(&buffer[..n]) {
            if message.kind == NLMSG_ERROR
                && let Some((errno, echoed)) = nlmsg::error(message.payload)
                && errno != 0
            {
                failures.push((errno, echoed.to_vec()));
            }
        }
    }
}

/// The thread that sends a channel's batches: at most one batch is with it at a time.
struct Courier {
    batches: mpsc::Sender<Vec<u8>>,
    returned: mpsc::Receiver<(Vec<u8>, RawFailures)>,
    busy: bool,
}

impl Courier {
    fn start(socket: Arc<RouteSocket>) -> io::Result<Courier> {
        let (batches, to_send) = mpsc::channel::<Vec<u8>>();
        let (give_back, returned) = mpsc::channel();
        std::thread::Builder::new()
            .name("fib-courier".into())
            .spawn(move || {
                let mut buffer = vec![0u8; 64 << 10];
                for batch in to_send {
                    let mut failures = Vec::new();
                    send_all(&socket, &batch, &mut failures);
                    drain(&socket, &mut buffer, &mut failures);
                    if give_back.send((batch, failures)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Courier {
            batches,
            returned,
            busy: false,
        })
    }
}

/// A netlink socket with the requests waiting to go on it (`out`), and its courier.
pub struct Channel {
    socket: Arc<RouteSocket>,
    /// Requests waiting to be sent, encoded by the caller.
    pub out: Vec<u8>,
    chunk: usize,
    courier: Courier,
    /// The buffer the courier gave back, for the next batch.
    spare: Vec<u8>,
    /// Failures the courier reported, not yet taken.
    failures: RawFailures,
    /// Where failure reports are read on this thread (allocated on first use).
    inbox: Vec<u8>,
}

impl Channel {
    /// Opens a channel with `buffer` bytes of socket buffer each way: room for big batches
    /// one way and for many failures the other.
    pub fn open(buffer: usize) -> io::Result<Channel> {
        let socket = RouteSocket::open(0)?;
        let _ = socket.set_buffer(true, buffer);
        let _ = socket.set_buffer(false, buffer);
        socket.want_reasons();
        let sndbuf = socket.send_buffer().unwrap_or(0);
        // The kernel refuses a message longer than the send buffer less some overhead.
        let chunk = CHUNK.min(sndbuf.saturating_sub(4096).max(16 << 10));
        let socket = Arc::new(socket);
        Ok(Channel {
            courier: Courier::start(Arc::clone(&socket))?,
            socket,
            out: Vec::with_capacity(chunk + 4096),
            chunk,
            spare: Vec::new(),
            failures: Vec::new(),
            inbox: Vec::new(),
        })
    }

    /// The socket's netlink port (see [`RouteSocket::port`]).
    pub fn port(&self) -> u32 {
        self.socket.port()
    }

    /// Sets the socket's receive buffer (where failure reports queue up), in bytes.
    pub fn set_receive_buffer(&self, bytes: usize) -> io::Result<()> {
        self.socket.set_buffer(false, bytes.min(i32::MAX as usize))
    }

    /// Whether a batch's worth of requests is waiting.
    pub fn full(&self) -> bool {
        self.out.len() >= self.chunk
    }

    /// Gives what is waiting to the courier (after the batch it has, if any) and goes on.
    pub fn hand_over(&mut self) {
        if self.out.is_empty() {
            return;
        }
        self.wait();
        let batch = std::mem::replace(&mut self.out, std::mem::take(&mut self.spare));
        match self.courier.batches.send(batch) {
            Ok(()) => self.courier.busy = true,
            // The courier is gone (it never panics, but): send from here.
            Err(mpsc::SendError(batch)) => {
                self.out = batch;
                self.send_here();
            }
        }
    }

    /// Sends what is waiting from this thread (after the courier's batch, if any): for the
    /// small batches of a flush, cheaper than waking the courier.
    pub fn send_here(&mut self) {
        if self.out.is_empty() {
            return;
        }
        self.wait();
        send_all(&self.socket, &self.out, &mut self.failures);
        self.out.clear();
        let mut failures = std::mem::take(&mut self.failures);
        self.drain(&mut failures);
        self.failures = failures;
    }

    /// Waits until the courier has sent its batch, and keeps its failures.
    pub fn wait(&mut self) {
        if !std::mem::take(&mut self.courier.busy) {
            return;
        }
        if let Ok((mut buffer, failures)) = self.courier.returned.recv() {
            self.failures.extend(failures);
            buffer.clear();
            if buffer.capacity() > 2 * self.chunk + 8192 {
                buffer.shrink_to(self.chunk + 4096);
            }
            self.spare = buffer;
        }
    }

    /// The failures reported so far, taken.
    pub fn take_failures(&mut self) -> RawFailures {
        std::mem::take(&mut self.failures)
    }

    /// Reads the failure reports already queued on the socket.
    fn drain(&mut self, failures: &mut RawFailures) {
        if self.inbox.is_empty() {
            self.inbox = vec![0u8; 64 << 10];
        }
        drain(&self.socket, &mut self.inbox, failures);
    }

    /// Sends one request and waits for its acknowledgement; returns its errno (0 = done).
    /// Failures of earlier requests found on the way go to `failures`.
    pub fn request(&mut self, message: &[u8], failures: &mut RawFailures) -> io::Result<i32> {
        self.wait();
        failures.append(&mut self.failures);
        self.drain(failures);
        let mut with_ack = message.to_vec();
        nlmsg::set_flags(&mut with_ack, nlmsg::flags(message) | NLM_F_ACK);
        let seq = nlmsg::seq(message);
        self.socket.send(&with_ack)?;
        let mut answer = None;
        self.receive(|kind, payload| {
            if kind == NLMSG_ERROR
                && payload.len() >= 20
                && let Some((errno, echoed)) = nlmsg::error(payload)
                && nlmsg::seq(echoed) == seq
            {
                answer = Some(errno);
                return true;
            }
            false
        })?;
        answer.ok_or_else(|| io::Error::other("no acknowledgement"))
    }

    /// Receives (waiting up to 10 s for each read) until `each` returns true.
    fn receive(&self, mut each: impl FnMut(u16, &[u8]) -> bool) -> io::Result<()> {
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            if !self.socket.readable(ANSWER_TIMEOUT)? {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "netlink answer"));
            }
            let n = match self.socket.recv(&mut buffer) {
                Ok(n) => n,
                Err(error) => match error.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
                    _ => return Err(error),
                },
            };
            for message in nlmsg::messages(&buffer[..n]) {
                if each(message.kind, message.payload) {
                    return Ok(());
                }
            }
        }
    }

    /// Sends a dump request and hands each answer to `each` until the dump is done.
    pub fn dump(&mut self, request: &[u8], mut each: impl FnMut(u16, &[u8])) -> io::Result<()> {
        // Reports of earlier requests would be mistaken for the dump's: a caller that
        // dumps resynchronises anyway.
        let mut earlier = Vec::new();
        self.drain(&mut earlier);
        self.socket.send(request)?;
        let mut result = Ok(());
        self.receive(|kind, payload| match kind {
            NLMSG_DONE => true,
            NLMSG_ERROR => {
                let errno = nlmsg::error(payload).map_or(0, |(errno, _)| errno);
                if errno != 0 {
                    result = Err(io::Error::from_raw_os_error(errno));
                }
                true
            }
            _ => {
                each(kind, payload);
                false
            }
        })?;
        result
    }
}
