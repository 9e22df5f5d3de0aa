//! Admission of accepted connections, before a byte of them is read: a token bucket of
//! connects per source address, and a cap on sessions that have not reached Established,
//! where a new connection may take the place of the oldest one stalled for a while (a
//! real peer finishes OPEN in milliseconds; a peer that never does should not hold a slot
//! against it). Pure: the daemon passes the time and its half-open sessions.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::Limits;

/// A half-open session older than this may be closed to make room for a new connection.
pub const EVICT_AFTER: Duration = Duration::from_secs(2);

/// At most this many source addresses are remembered; full buckets are forgotten first.
pub const MAX_SOURCES: usize = 16_384;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// Admit, after closing the half-open session of this address (Cease, Out of Resources).
    AdmitEvicting(IpAddr),
    Refuse(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source used up its connects.
    SourceRate,
    /// Every half-open slot is taken by a session younger than `EVICT_AFTER`.
    HalfOpen,
    /// Too many distinct sources connected recently.
    Sources,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::SourceRate => "connection refused: this address connects too often (limits.source_burst, limits.source_per_minute)",
            Refusal::HalfOpen => "connection refused: too many sessions have not finished OPEN (limits.max_half_open)",
            Refusal::Sources => "connection refused: too many addresses connected recently",
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug)]
pub struct Admitter {
    limits: Limits,
    buckets: HashMap<IpAddr, Bucket>,
}

impl Admitter {
    pub fn new(limits: Limits) -> Admitter {
        Admitter {
            limits,
            buckets: HashMap::new(),
        }
    }

    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Decides on a connection from `source`. `half_open` lists every session that has not
    /// reached Established (address, since when); the source's own does not count, as a new
    /// connection replaces it.
    pub fn admit(
        &mut self,
        now: Instant,
        source: IpAddr,
        half_open: impl IntoIterator<Item = (IpAddr, Instant)>,
    ) -> Admission {
        if !self.take_token(now, source) {
            return Admission::Refuse(if self.buckets.contains_key(&source) {
                Refusal::SourceRate
            } else {
                Refusal::Sources
            });
        }
        let mut count = 0;
        let mut oldest: Option<(IpAddr, Instant)> = None;
        for (address, since) in half_open {
            if address == source {
                continue;
            }
            count += 1;
            if oldest.is_none_or(|(_, t)| since < t) {
                oldest = Some((address, since));
            }
        }
        if count < self.limits.max_half_open {
            return Admission::Admit;
        }
        match oldest {
            Some((address, since)) if now.duration_since(since) >= EVICT_AFTER => {
                Admission::AdmitEvicting(address)
            }
            _ => Admission::Refuse(Refusal::HalfOpen),
        }
    }

    fn take_token(&mut self, now: Instant, source: IpAddr) -> bool {
        let burst = f64::from(self.limits.source_burst);
        let rate = f64::from(self.limits.source_per_minute) / 60.0;
        let refill =
            |b: &Bucket| (b.tokens + now.duration_since(b.updated).as_secs_f64() * rate).min(burst);
        if !self.buckets.contains_key(&source) && self.buckets.len() >= MAX_SOURCES {
            self.buckets.retain(|_, b| refill(b) < burst);
            if self.buckets.len() >= MAX_SOURCES {
                return false;
            }
        }
        let bucket = self.buckets.entry(source).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        bucket.tokens = refill(bucket);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limits(max_half_open: usize, source_burst: u32, source_per_minute: u32) -> Limits {
        Limits {
            max_half_open,
            source_burst,
            source_per_minute,
        }
    }

    #[test]
    fn a_source_gets_its_burst_then_one_connect_per_refill_interval() {
        let t0 = Instant::now();
        let mut a = Admitter::new(limits(64, 3, 60));
        let node = ip("2001:db8:1::11");
        for _ in 0..3 {
            assert_eq!(a.admit(t0, node, []), Admission::Admit);
        }
        assert_eq!(
            a.admit(t0, node, []),
            Admission::Refuse(Refusal::SourceRate)
        );
        // Another source is not affected.
        assert_eq!(a.admit(t0, ip("2001:db8:1::12"), []), Admission::Admit);
        // 60 per minute: one more after a second, not before.
        assert_eq!(
            a.admit(t0 + S / 2, node, []),
            Admission::Refuse(Refusal::SourceRate)
        );
        assert_eq!(a.admit(t0 + S, node, []), Admission::Admit);
        assert_eq!(
            a.admit(t0 + S, node, []),
            Admission::Refuse(Refusal::SourceRate)
        );
    }

    #[test]
    fn a_refused_attempt_spends_nothing_and_the_bucket_refills_to_its_burst_only() {
        let t0 = Instant::now();
        let mut a = Admitter::new(limits(64, 2, 60));
        let node = ip("192.0.2.11");
        assert_eq!(a.admit(t0, node, []), Admission::Admit);
        assert_eq!(a.admit(t0, node, []), Admission::Admit);
        for _ in 0..100 {
            assert_eq!(
                a.admit(t0, node, []),
                Admission::Refuse(Refusal::SourceRate)
            );
        }
        let later = t0 + 3600 * S;
        assert_eq!(a.admit(later, node, []), Admission::Admit);
        assert_eq!(a.admit(later, node, []), Admission::Admit);
        assert_eq!(
            a.admit(later, node, []),
            Admission::Refuse(Refusal::SourceRate)
        );
    }

    #[test]
    fn a_full_half_open_table_refuses_while_every_slot_is_young() {
        let t0 = Instant::now();
        let mut a = Admitter::new(limits(2, 10, 60));
        let half_open = [(ip("2001:db8:1::101"), t0), (ip("2001:db8:1::102"), t0)];
        assert_eq!(
            a.admit(t0 + S, ip("2001:db8:1::11"), half_open),
            Admission::Refuse(Refusal::HalfOpen)
        );
    }

    #[test]
    fn a_new_connection_takes_the_slot_of_the_oldest_stalled_session() {
        let t0 = Instant::now();
        let mut a = Admitter::new(limits(2, 10, 60));
        let half_open = [(ip("2001:db8:1::102"), t0 + S), (ip("2001:db8:1::101"), t0)];
        assert_eq!(
            a.admit(t0 + EVICT_AFTER, ip("2001:db8:1::11"), half_open),
            Admission::AdmitEvicting(ip("2001:db8:1::101"))
        );
    }

    #[test]
    fn a_sources_own_half_open_session_does_not_count_against_it() {
        let t0 = Instant::now();
        let mut a = Admitter::new(limits(1, 10, 60));
        let node = ip("2001:db8:1::11");
        assert_eq!(a.admit(t0, node, [(node, t0)]), Admission::Admit);
    }

    #[test]
    fn the_source_table_forgets_full_buckets_and_stays_bounded() {
        let t0 = Instant::now();
        let mut a = Admitter::new(limits(64, 1, 60));
        let source =
            |i: usize| IpAddr::V6(std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | i as u128));
        for i in 0..MAX_SOURCES {
            assert_eq!(a.admit(t0, source(i), []), Admission::Admit);
        }
        // Every bucket is empty: a new source has no room.
        assert_eq!(
            a.admit(t0, source(MAX_SOURCES), []),
            Admission::Refuse(Refusal::Sources)
        );
        // A second later they are full again and forgotten.
        assert_eq!(a.admit(t0 + S, source(MAX_SOURCES), []), Admission::Admit);
        assert!(a.buckets.len() <= 1, "{}", a.buckets.len());
    }
}
