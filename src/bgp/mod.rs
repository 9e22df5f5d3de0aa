//! The BGP half: wire codec, the per-session state machine, the driver that runs a session
//! over its TCP connection, and the listening sockets with their TCP-MD5 and GTSM options.

pub mod admission;
pub mod listener;
pub mod peer;
pub mod session;
pub mod sockopt;
pub mod wire;
