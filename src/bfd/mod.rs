//! BFD (RFC 5880 asynchronous mode, RFC 5881 single hop over IPv4 and IPv6): whether a
//! node's forwarding plane still answers, in about a second. It owns the control packet
//! codec (`packet`, pure), one session's state machine and timers (`session`, sans IO,
//! virtual-clock tests), the per-group settings from the config (`Settings`, below), and
//! a thin tokio driver (`socket`: the UDP sockets, TTL 255 both ways, demultiplexing, and
//! the `Runtime` task the daemon talks to). It decides nothing about routes or BGP: it
//! reports `(peer, Event)` and the daemon's core decides (BFD Down from a failure takes
//! the node's routes out; AdminDown from the peer does not, RFC 5882 3.2).
//!
//! Left out, on purpose: authentication (packets with the A bit are discarded, RFC 5880
//! 6.8.6 when none is configured), Demand mode (we never ask for it; a peer asking for it
//! is honoured by not sending periodic packets, as 6.8.7 says), the Echo function (we
//! advertise a Required Min Echo RX Interval of 0), multihop (RFC 5883).

pub mod packet;
pub mod session;
pub mod socket;

use serde::{Deserialize, Serialize};

pub use packet::{Diag, Packet, State};
pub use session::{Event, Session};
pub use socket::{Command, Handle, Report, Runtime, SessionStatus, Status};

/// The shortest interval we take (`min_tx_ms`, `min_rx_ms`), as FRR's bfdd does: a value
/// valid on one side of a session is valid on the other. Below about 100 ms a userspace
/// daemon on a busy host risks false Downs from its own scheduling delays.
pub const MIN_INTERVAL_MS: u32 = 10;
/// The longest interval we take: bfdd's limit too. Longer makes BFD slower than it is
/// worth next to BGP's own hold timer.
pub const MAX_INTERVAL_MS: u32 = 60_000;
/// The smallest detect multiplier we take (bfdd's too). RFC 5880 allows 1, but then a
/// single lost or late packet takes a node's routes out.
pub const MIN_MULTIPLIER: u8 = 2;

/// BFD with one neighbor group's nodes: `neighbors[].bfd` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Run BFD with the group's nodes.
    pub enable: bool,
    /// Desired Min TX Interval (ms) once Up; 1 s is advertised while not Up (RFC 5880 6.8.3).
    pub min_tx_ms: u32,
    /// Required Min RX Interval (ms): how fast we are willing to receive.
    pub min_rx_ms: u32,
    /// Detect Mult: the peer declares us down after this many of our intervals of silence.
    pub multiplier: u8,
    /// Do not send until the peer has sent (RFC 5880 6.1 passive role).
    pub passive: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enable: false,
            min_tx_ms: 300,
            min_rx_ms: 300,
            multiplier: 3,
            passive: false,
        }
    }
}

impl Settings {
    /// Every problem with these settings, as (JSON path, message naming the value). `path`
    /// is this object's own path, such as `neighbors[0].bfd`. Checked whether or not
    /// `enable` is set, so that turning it on later cannot surprise.
    pub fn validate(&self, path: &str) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        for (key, value) in [("min_tx_ms", self.min_tx_ms), ("min_rx_ms", self.min_rx_ms)] {
            if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&value) {
                errors.push((
                    format!("{path}.{key}"),
                    format!(
                        "{value} is not between {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS} milliseconds"
                    ),
                ));
            }
        }
        if self.multiplier < MIN_MULTIPLIER {
            errors.push((
                format!("{path}.multiplier"),
                format!(
                    "{} is not between {MIN_MULTIPLIER} and 255",
                    self.multiplier
                ),
            ));
        }
        errors
    }

    /// bfd.DesiredMinTxInterval once Up, in microseconds.
    pub fn desired_min_tx_us(&self) -> u32 {
        self.min_tx_ms.saturating_mul(1000)
    }

    /// bfd.RequiredMinRxInterval, in microseconds.
    pub fn required_min_rx_us(&self) -> u32 {
        self.min_rx_ms.saturating_mul(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_to_off_with_300_ms_times_3() {
        let s: Settings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, Settings::default());
        assert!(!s.enable && !s.passive);
        assert_eq!((s.min_tx_ms, s.min_rx_ms, s.multiplier), (300, 300, 3));
        assert!(s.validate("bfd").is_empty());
    }

    #[test]
    fn settings_reject_unknown_keys() {
        let e = serde_json::from_str::<Settings>(r#"{"enable": true, "interval": 5}"#);
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("unknown field `interval`")
        );
    }

    #[test]
    fn zero_intervals_and_a_multiplier_below_two_are_errors_naming_their_path() {
        let s: Settings =
            serde_json::from_str(r#"{"min_tx_ms": 0, "min_rx_ms": 60001, "multiplier": 0}"#)
                .unwrap();
        let errors = s.validate("neighbors[0].bfd");
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "neighbors[0].bfd.min_tx_ms",
                "neighbors[0].bfd.min_rx_ms",
                "neighbors[0].bfd.multiplier"
            ]
        );
        assert!(errors[0].1.starts_with("0 is not between 10 and 60000"));
        let one = Settings {
            multiplier: 1,
            ..Settings::default()
        };
        assert_eq!(one.validate("b").len(), 1);
    }

    #[test]
    fn the_limits_themselves_are_valid() {
        for (tx, rx, mult) in [(10, 10, 2), (60_000, 60_000, 255)] {
            let s = Settings {
                enable: true,
                min_tx_ms: tx,
                min_rx_ms: rx,
                multiplier: mult,
                passive: false,
            };
            assert!(s.validate("b").is_empty(), "{s:?}");
        }
    }
}
