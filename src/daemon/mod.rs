//! The daemon: a pure core of decisions and a thin shell of IO around it.
//!
//! - `core`: the peer table, graceful restart, adoption, `max_prefixes`, reloads and the
//!   one rule for what the kernel table must hold. Events in with their time, table writes
//!   and actions out; no tokio, sockets or clock. Decisions go there, with virtual-clock
//!   tests (tests/daemon_core.rs, tests/daemon_simulation.rs).
//! - `plan`: a reload as data (old config, new config, peers → what changes).
//! - `shell`: the tokio event loop that feeds the core and carries out what it says:
//!   sockets, netlink, signals, sd-notify, the control socket and metrics.
//! - `show`: the answers to `show` and the metrics snapshot, read off the core.
//!
//! Threads and blocking: the event loop runs on the thread that calls `block_on`, and the
//! core runs inside it, one event at a time, so it needs no locks. Sessions run as tasks on
//! the runtime's worker threads: they decode UPDATEs and apply import policy in parallel and
//! send the event loop ready route batches over a short bounded queue (a full queue stops
//! their reads, so TCP holds peers back during a bulk load). Route writes are encoded into
//! netlink batches on the event loop's thread; two courier threads (one per family) send
//! each full batch while the loop encodes the next. The loop itself blocks on netlink in
//! three places only: the last batch of a flush, a table dump (start, resynchronisation,
//! table move) and the few request/response calls at start. That is right for this daemon:
//! the kernel answers in microseconds to milliseconds, nothing else waits on the loop
//! meanwhile but the sessions' queue (which TCP backs), and a loop that blocks instead of
//! juggling futures keeps the FIB's order of operations obvious.

pub mod core;
pub mod plan;
mod shell;
mod show;

pub use shell::run;
