//! When to send Router Advertisements on one interface (RFC 4861 6.2.4-6.2.6): unsolicited
//! multicast RAs at random intervals in [MinRtrAdvInterval, MaxRtrAdvInterval], the first
//! MAX_INITIAL_RTR_ADVERTISEMENTS at most MAX_INITIAL_RTR_ADVERT_INTERVAL apart, solicited
//! RAs after a random delay of up to MAX_RA_DELAY_TIME, at most one multicast RA per
//! MIN_DELAY_BETWEEN_RAS, and final RAs when advertising stops. Sans-IO: it takes `now` and
//! random fractions in [0, 1) and says what to send; it never builds packets or sleeps.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

/// MAX_INITIAL_RTR_ADVERT_INTERVAL (RFC 4861 10).
pub const MAX_INITIAL_RTR_ADVERT_INTERVAL: Duration = Duration::from_secs(16);
/// MAX_INITIAL_RTR_ADVERTISEMENTS (RFC 4861 10).
pub const MAX_INITIAL_RTR_ADVERTISEMENTS: u32 = 3;
/// MAX_FINAL_RTR_ADVERTISEMENTS (RFC 4861 10).
pub const MAX_FINAL_RTR_ADVERTISEMENTS: u32 = 3;
/// MIN_DELAY_BETWEEN_RAS (RFC 4861 10).
pub const MIN_DELAY_BETWEEN_RAS: Duration = Duration::from_secs(3);
/// MAX_RA_DELAY_TIME (RFC 4861 10).
pub const MAX_RA_DELAY_TIME: Duration = Duration::from_millis(500);
/// At most this many unicast answers wait at once; a solicitation past it is answered like
/// one from the unspecified address, by a (rate-limited) multicast RA that answers everyone.
pub const MAX_PENDING_UNICAST: usize = 64;

/// MinRtrAdvInterval and MaxRtrAdvInterval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    pub min: Duration,
    pub max: Duration,
}

/// Where an RA goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// ff02::1.
    AllNodes,
    /// The source of a Router Solicitation.
    Unicast(Ipv6Addr),
}

/// What to send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transmit {
    /// An RA with the interface's current content.
    Advertisement(Destination),
    /// A final multicast RA (router lifetime 0, RFC 4861 6.2.5).
    Final,
}

#[derive(Debug, Clone)]
enum Phase {
    Advertising {
        /// The next multicast RA, unsolicited or solicited.
        next_multicast: Instant,
        /// Multicast RAs still to be sent on the initial (fast) schedule.
        initial_remaining: u32,
        /// Pending unicast answers, in the order they fall due.
        unicast: Vec<(Instant, Ipv6Addr)>,
    },
    Stopping {
        next_final: Instant,
        finals_remaining: u32,
    },
}

/// The RA timing state of one advertising interface.
#[derive(Debug, Clone)]
pub struct Scheduler {
    intervals: Intervals,
    last_multicast: Option<Instant>,
    phase: Phase,
}

impl Scheduler {
    /// An interface that just became an advertising interface: the first RA goes out now.
    pub fn new(now: Instant, intervals: Intervals) -> Self {
        Scheduler {
            intervals,
            last_multicast: None,
            phase: Phase::Advertising {
                next_multicast: now,
                initial_remaining: MAX_INITIAL_RTR_ADVERTISEMENTS,
                unicast: Vec::new(),
            },
        }
    }

    /// The earliest time a multicast RA may go out (MIN_DELAY_BETWEEN_RAS after the last).
    fn earliest_multicast(&self, now: Instant) -> Instant {
        match self.last_multicast {
            Some(last) => now.max(last + MIN_DELAY_BETWEEN_RAS),
            None => now,
        }
    }

    /// New intervals (a reload): a pending unsolicited RA later than the new maximum allows
    /// is brought forward to it.
    pub fn set_intervals(&mut self, now: Instant, intervals: Intervals) {
        self.intervals = intervals;
        let earliest = self.earliest_multicast(now);
        if let Phase::Advertising { next_multicast, .. } = &mut self.phase {
            *next_multicast = (*next_multicast).min(earliest.max(now + intervals.max));
        }
    }

    /// The advertised information changed (RFC 4861 6.2.4): send an RA as soon as the rate
    /// limit allows, then again on the initial fast schedule.
    pub fn restart_initial(&mut self, now: Instant) {
        let earliest = self.earliest_multicast(now);
        if let Phase::Advertising {
            next_multicast,
            initial_remaining,
            ..
        } = &mut self.phase
        {
            *next_multicast = earliest;
            *initial_remaining = MAX_INITIAL_RTR_ADVERTISEMENTS;
        }
    }

    /// A valid Router Solicitation arrived from `source` (RFC 4861 6.2.6). `random` in
    /// [0, 1) picks the delay within MAX_RA_DELAY_TIME. Ignored once stopping.
    pub fn handle_solicitation(&mut self, now: Instant, source: Ipv6Addr, random: f64) {
        let delay = MAX_RA_DELAY_TIME.mul_f64(random.clamp(0.0, 1.0));
        let last_multicast = self.last_multicast;
        let Phase::Advertising {
            next_multicast,
            unicast,
            ..
        } = &mut self.phase
        else {
            return;
        };
        let answer_at = now + delay;
        if !source.is_unspecified() && unicast.len() < MAX_PENDING_UNICAST {
            // A multicast RA due before the answer answers this solicitation too.
            if *next_multicast > answer_at && !unicast.iter().any(|&(_, a)| a == source) {
                let at = unicast.partition_point(|&(t, _)| t <= answer_at);
                unicast.insert(at, (answer_at, source));
            }
            return;
        }
        let answer_at = match last_multicast {
            Some(last) if now < last + MIN_DELAY_BETWEEN_RAS => {
                last + MIN_DELAY_BETWEEN_RAS + delay
            }
            _ => answer_at,
        };
        *next_multicast = (*next_multicast).min(answer_at);
    }

    /// Advertising stops (RFC 4861 6.2.5): `finals` (at most MAX_FINAL_RTR_ADVERTISEMENTS)
    /// final RAs, the first now and the others MIN_DELAY_BETWEEN_RAS apart. Pending answers
    /// are dropped.
    pub fn stop(&mut self, now: Instant, finals: u32) {
        self.phase = Phase::Stopping {
            next_final: now,
            finals_remaining: finals.min(MAX_FINAL_RTR_ADVERTISEMENTS),
        };
    }

    /// True once stopping and every final RA has been sent.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.phase,
            Phase::Stopping {
                finals_remaining: 0,
                ..
            }
        )
    }

    /// What to send at `now`, if anything; call until it returns `None`. `random` in [0, 1)
    /// picks the next unsolicited interval when a multicast RA goes out.
    pub fn poll_transmit(&mut self, now: Instant, random: f64) -> Option<Transmit> {
        let intervals = self.intervals;
        match &mut self.phase {
            Phase::Stopping {
                next_final,
                finals_remaining,
            } => {
                if *finals_remaining == 0 || *next_final > now {
                    return None;
                }
                *finals_remaining -= 1;
                *next_final = now + MIN_DELAY_BETWEEN_RAS;
                self.last_multicast = Some(now);
                Some(Transmit::Final)
            }
            Phase::Advertising {
                next_multicast,
                initial_remaining,
                unicast,
            } => {
                if *next_multicast <= now {
                    let spread = intervals.max.saturating_sub(intervals.min);
                    let mut interval = intervals.min + spread.mul_f64(random.clamp(0.0, 1.0));
                    if *initial_remaining > 0 {
                        *initial_remaining -= 1;
                        if *initial_remaining > 0 {
                            interval = interval.min(MAX_INITIAL_RTR_ADVERT_INTERVAL);
                        }
                    }
                    *next_multicast = now + interval;
                    // Everyone who solicited hears this one.
                    unicast.clear();
                    self.last_multicast = Some(now);
                    return Some(Transmit::Advertisement(Destination::AllNodes));
                }
                if unicast.first().is_some_and(|&(t, _)| t <= now) {
                    let (_, source) = unicast.remove(0);
                    return Some(Transmit::Advertisement(Destination::Unicast(source)));
                }
                None
            }
        }
    }

    /// When `poll_transmit` next has something to send; `None` when finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Stopping {
                next_final,
                finals_remaining,
            } => (*finals_remaining > 0).then_some(*next_final),
            Phase::Advertising {
                next_multicast,
                unicast,
                ..
            } => Some(
                unicast
                    .first()
                    .map_or(*next_multicast, |&(t, _)| t.min(*next_multicast)),
            ),
        }
    }

    /// When the last multicast RA went out.
    pub fn last_multicast(&self) -> Option<Instant> {
        self.last_multicast
    }
}
