//! The BGP half: wire codec, the per-session state machine, and the listener that drives
//! sessions over TCP.

pub mod wire;
