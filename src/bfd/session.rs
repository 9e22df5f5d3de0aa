//! One BFD session's state machine and timers (RFC 5880 asynchronous mode: 6.2 states,
//! 6.5 Poll Sequences, 6.8.1 variables, 6.8.2-6.8.4 timer negotiation and detection time,
//! 6.8.6 reception, 6.8.7 transmission with jitter), sans IO: the driver feeds it decoded
//! packets and the time, and drains packets to send and state changes to report. It knows
//! nothing of sockets, addresses or routes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Settings;
use super::packet::{Diag, Packet, State};

/// bfd.DesiredMinTxInterval while the session is not Up: at least one second (6.8.3).
pub const SLOW_TX_US: u32 = 1_000_000;

/// What the daemon needs to know about a session: it came Up, or it left Up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The session reached Up: the peer's forwarding plane answers.
    Up,
    /// The session left Up. `diag` is our new bfd.LocalDiag: 1 (Control Detection Time
    /// Expired) for silence, 3 (Neighbor Signaled Session Down) when the peer said so.
    /// `peer_admin_down` is set when the peer said AdminDown: it was taken down on
    /// purpose, which is not a forwarding failure (RFC 5882 3.2: do not take routes down).
    Down { diag: Diag, peer_admin_down: bool },
}

impl Event {
    /// Whether this event says the peer's forwarding plane failed (Down, not AdminDown).
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Event::Down {
                peer_admin_down: false,
                ..
            }
        )
    }
}

/// A packet `handle_packet` refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Discard {
    #[error("Your Discriminator {0} is not this session's")]
    NotOurDiscriminator(u32),
}

/// One session with one peer.
#[derive(Debug, Clone)]
pub struct Session {
    // Configured.
    local_discr: u32,
    /// bfd.DesiredMinTxInterval once Up (µs).
    desired_min_tx_us: u32,
    /// bfd.RequiredMinRxInterval (µs).
    required_min_rx_us: u32,
    /// bfd.DetectMult.
    detect_mult: u8,
    passive: bool,

    // RFC 5880 6.8.1 state variables.
    state: State,
    remote_state: State,
    remote_discr: u32,
    local_diag: Diag,
    remote_min_rx_us: u32,
    remote_demand: bool,
    /// The last received Desired Min TX Interval and Detect Mult.
    remote_desired_min_tx_us: u32,
    remote_detect_mult: u8,

    // Poll Sequence (6.5).
    polling: bool,
    /// Parameters changed again while a Poll was out: poll once more after its Final.
    poll_again: bool,
    /// The Desired Min TX our own transmit interval uses: an increase while Up waits for
    /// the Final (6.8.3).
    tx_basis_us: u32,
    /// The Required Min RX our detection time uses: a decrease while Up waits for the
    /// Final (6.8.3).
    rx_basis_us: u32,

    // Timers and outputs.
    /// The transmit interval `next_tx` was drawn from.
    tx_interval_us: Option<u32>,
    next_tx: Option<Instant>,
    detect_at: Option<Instant>,
    send_now: bool,
    send_final: bool,
    events: VecDeque<Event>,
    rng: u64,
}

impl Session {
    /// A session in Down. `local_discr` must be nonzero and unique on this system; `seed`
    /// drives the transmit jitter (tests pass a constant, the driver a random value).
    /// An active session sends its first packet at once; a passive one waits for the peer.
    pub fn new(now: Instant, local_discr: u32, settings: &Settings, seed: u64) -> Session {
        assert_ne!(local_discr, 0, "a local discriminator is nonzero");
        let mut s = Session {
            local_discr,
            desired_min_tx_us: settings.desired_min_tx_us().max(1),
            required_min_rx_us: settings.required_min_rx_us(),
            detect_mult: settings.multiplier.max(1),
            passive: settings.passive,
            state: State::Down,
            remote_state: State::Down,
            remote_discr: 0,
            local_diag: Diag::NONE,
            // "This variable MUST be initialized to 1" (6.8.1).
            remote_min_rx_us: 1,
            remote_demand: false,
            remote_desired_min_tx_us: 0,
            remote_detect_mult: 0,
            polling: false,
            poll_again: false,
            tx_basis_us: 0,
            rx_basis_us: 0,
            tx_interval_us: None,
            next_tx: None,
            detect_at: None,
            send_now: false,
            send_final: false,
            events: VecDeque::new(),
            rng: seed ^ 0x9e37_79b9_7f4a_7c15,
        };
        s.tx_basis_us = s.advertised_min_tx_us();
        s.rx_basis_us = s.required_min_rx_us;
        s.send_now = !s.passive;
        s.rearm_tx(now);
        s
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The peer's state as its last packet said (Down after the detection time expires).
    pub fn remote_state(&self) -> State {
        self.remote_state
    }

    /// bfd.LocalDiag: why our state last changed.
    pub fn local_diag(&self) -> Diag {
        self.local_diag
    }

    pub fn local_discriminator(&self) -> u32 {
        self.local_discr
    }

    /// bfd.RemoteDiscr (0 until the peer is heard, and again after the detection time).
    pub fn remote_discriminator(&self) -> u32 {
        self.remote_discr
    }

    /// How often we send now (before jitter); `None` while we must not send periodically.
    pub fn transmit_interval(&self) -> Option<Duration> {
        self.tx_interval_us
            .map(|us| Duration::from_micros(u64::from(us)))
    }

    /// How long the peer may stay silent before we declare it down; `None` before it has
    /// been heard.
    pub fn detection_time(&self) -> Option<Duration> {
        (self.remote_detect_mult > 0).then(|| Duration::from_micros(self.detection_time_us()))
    }

    /// Whether a Poll Sequence of ours is waiting for its Final.
    pub fn polling(&self) -> bool {
        self.polling
    }

    /// The next state change to report.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next packet to send, if one is due. Call until `None` after every `handle_*`.
    pub fn poll_transmit(&mut self) -> Option<Packet> {
        if !self.send_now && !self.send_final {
            return None;
        }
        let final_ = self.send_final;
        self.send_final = false;
        // A Final cannot carry our own Poll: when one is due too, it follows at once.
        if !(final_ && self.polling) {
            self.send_now = false;
        }
        // A passive system never sends before it knows the peer (6.8.7). A peer that asks
        // for no packets (Required Min RX 0) gets none but the Final it polled for.
        if self.passive && self.remote_discr == 0 {
            return None;
        }
        if self.remote_min_rx_us == 0 && !final_ {
            return None;
        }
        Some(Packet {
            diag: self.local_diag,
            state: self.state,
            // P and F never together: a Final goes out alone, the next packet polls.
            poll: self.polling && !final_,
            final_,
            // Our BFD runs in the same userspace process as BGP: it shares its fate.
            control_plane_independent: false,
            demand: false,
            detect_mult: self.detect_mult,
            my_discriminator: self.local_discr,
            your_discriminator: self.remote_discr,
            desired_min_tx_us: self.advertised_min_tx_us(),
            required_min_rx_us: self.required_min_rx_us,
            // No Echo function.
            required_min_echo_rx_us: 0,
        })
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_tx, self.detect_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.detect_at.is_some_and(|t| now >= t) {
            self.detect_at = None;
            // "bfd.RemoteDiscr ... MUST be set to zero if the detection timer expires."
            self.remote_discr = 0;
            self.remote_state = State::Down;
            self.remote_demand = false;
            if matches!(self.state, State::Init | State::Up) {
                self.transition(
                    now,
                    State::Down,
                    Diag::CONTROL_DETECTION_TIME_EXPIRED,
                    false,
                );
            }
            self.rearm_tx(now);
        }
        if self.next_tx.is_some_and(|t| now >= t) {
            self.next_tx = None;
            self.tx_interval_us = None;
            self.send_now = true;
            self.rearm_tx(now);
        }
    }

    /// RFC 5880 6.8.6 from "If the Your Discriminator field is nonzero" on (the packet's
    /// own checks are `Packet::decode`'s; authentication is not in use).
    pub fn handle_packet(&mut self, now: Instant, packet: &Packet) -> Result<(), Discard> {
        if packet.your_discriminator != 0 && packet.your_discriminator != self.local_discr {
            return Err(Discard::NotOurDiscriminator(packet.your_discriminator));
        }
        self.remote_discr = packet.my_discriminator;
        self.remote_state = packet.state;
        self.remote_demand = packet.demand;
        self.remote_min_rx_us = packet.required_min_rx_us;
        self.remote_desired_min_tx_us = packet.desired_min_tx_us;
        self.remote_detect_mult = packet.detect_mult;
        if self.polling && packet.final_ {
            self.polling = false;
            self.tx_basis_us = self.advertised_min_tx_us();
            self.rx_basis_us = self.required_min_rx_us;
            if self.poll_again {
                self.poll_again = false;
                self.start_poll();
            }
        }
        if self.state == State::AdminDown {
            self.rearm_tx(now);
            return Ok(());
        }
        if packet.state == State::AdminDown {
            if self.state != State::Down {
                self.transition(now, State::Down, Diag::NEIGHBOR_SIGNALED_SESSION_DOWN, true);
            }
        } else {
            match (self.state, packet.state) {
                (State::Down, State::Down) => {
                    self.transition(now, State::Init, Diag::NONE, false);
                }
                (State::Down, State::Init) | (State::Init, State::Init | State::Up) => {
                    self.transition(now, State::Up, Diag::NONE, false);
                }
                (State::Up, State::Down) => {
                    self.transition(
                        now,
                        State::Down,
                        Diag::NEIGHBOR_SIGNALED_SESSION_DOWN,
                        false,
                    );
                }
                _ => {}
            }
        }
        if packet.poll {
            self.send_final = true;
        }
        // The packet was not discarded: it counts for the detection time (6.8.4).
        self.detect_at = Some(now + Duration::from_micros(self.detection_time_us()));
        self.rearm_tx(now);
        Ok(())
    }

    /// Takes the session administratively down (RFC 5880 6.8.16: State AdminDown, Diag 7,
    /// still sent so the peer knows it is no failure) or brings it back to Down. Reports no
    /// event: the caller knows.
    pub fn set_admin_down(&mut self, now: Instant, admin_down: bool) {
        match (admin_down, self.state) {
            (true, State::AdminDown) | (false, State::Down | State::Init | State::Up) => {}
            (true, _) => {
                let before = self.advertised();
                self.state = State::AdminDown;
                self.local_diag = Diag::ADMINISTRATIVELY_DOWN;
                self.detect_at = None;
                self.stop_poll();
                self.send_now = true;
                self.parameters_changed(before);
                self.rearm_tx(now);
            }
            (false, State::AdminDown) => {
                self.state = State::Down;
                self.local_diag = Diag::NONE;
                self.send_now = true;
                self.rearm_tx(now);
            }
        }
    }

    /// Takes new settings (a config reload). Changed intervals start a Poll Sequence when
    /// Up (6.8.3); `enable` is the caller's business.
    pub fn set_settings(&mut self, now: Instant, settings: &Settings) {
        let before = self.advertised();
        self.desired_min_tx_us = settings.desired_min_tx_us().max(1);
        self.required_min_rx_us = settings.required_min_rx_us();
        if self.detect_mult != settings.multiplier.max(1) {
            self.detect_mult = settings.multiplier.max(1);
            self.send_now = true;
        }
        self.passive = settings.passive;
        self.parameters_changed(before);
        self.rearm_tx(now);
    }

    fn transition(&mut self, now: Instant, to: State, diag: Diag, peer_admin_down: bool) {
        let before = self.advertised();
        let from = self.state;
        self.state = to;
        self.local_diag = diag;
        if to == State::Up {
            self.events.push_back(Event::Up);
        } else if from == State::Up {
            self.events.push_back(Event::Down {
                diag,
                peer_admin_down,
            });
        }
        if to != State::Up {
            self.stop_poll();
        }
        // The contents changed: tell the peer now rather than at the next interval (6.8.7).
        self.send_now = true;
        self.parameters_changed(before);
        self.rearm_tx(now);
    }

    /// The Desired Min TX Interval we advertise: one second at least while not Up.
    fn advertised_min_tx_us(&self) -> u32 {
        if self.state == State::Up {
            self.desired_min_tx_us
        } else {
            self.desired_min_tx_us.max(SLOW_TX_US)
        }
    }

    fn advertised(&self) -> (u32, u32) {
        (self.advertised_min_tx_us(), self.required_min_rx_us)
    }

    /// After a change to what we advertise: poll when Up, and decide which values our own
    /// timers use meanwhile (6.8.3).
    fn parameters_changed(&mut self, before: (u32, u32)) {
        let (tx, rx) = self.advertised();
        if self.state != State::Up {
            self.tx_basis_us = tx;
            self.rx_basis_us = rx;
            return;
        }
        if (tx, rx) != before {
            self.start_poll();
        }
        // A faster transmit rate and a longer detection time are safe at once; the
        // opposite waits until the peer has acknowledged the new values.
        self.tx_basis_us = self.tx_basis_us.min(tx);
        self.rx_basis_us = self.rx_basis_us.max(rx);
    }

    fn start_poll(&mut self) {
        if self.polling {
            self.poll_again = true;
        } else {
            self.polling = true;
            self.send_now = true;
        }
    }

    fn stop_poll(&mut self) {
        self.polling = false;
        self.poll_again = false;
    }

    fn detection_time_us(&self) -> u64 {
        u64::from(self.remote_detect_mult)
            * u64::from(self.rx_basis_us.max(self.remote_desired_min_tx_us))
    }

    /// The periodic transmit interval (6.8.2, 6.8.7), or `None` when we must not send
    /// periodically.
    fn periodic_interval_us(&self) -> Option<u32> {
        if self.passive && self.remote_discr == 0 {
            return None;
        }
        if self.remote_min_rx_us == 0 {
            return None;
        }
        if self.remote_demand
            && self.state == State::Up
            && self.remote_state == State::Up
            && !self.polling
        {
            return None;
        }
        Some(self.tx_basis_us.max(self.remote_min_rx_us))
    }

    /// Keeps the periodic timer in step with the transmit interval: a new interval is
    /// drawn only when the interval changes (or none is running), so the jitter of a
    /// running timer is not disturbed by every received packet.
    fn rearm_tx(&mut self, now: Instant) {
        let interval = self.periodic_interval_us();
        if interval == self.tx_interval_us && (self.next_tx.is_some() || interval.is_none()) {
            return;
        }
        self.tx_interval_us = interval;
        self.next_tx = interval.map(|us| {
            let candidate = now + self.jittered(us);
            match self.next_tx {
                // A slower interval starts after the packet already scheduled.
                Some(t) if t < candidate => t,
                _ => candidate,
            }
        });
    }

    /// The interval less 0-25% (or 10-25% when our Detect Mult is 1), at random (6.8.7).
    fn jittered(&mut self, interval_us: u32) -> Duration {
        // xorshift64*: small, seedable, good enough to spread transmissions.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let r = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
        let span = if self.detect_mult == 1 { 0.15 } else { 0.25 };
        let fraction = 0.75 + r * span;
        Duration::from_micros((f64::from(interval_us) * fraction) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn settings() -> Settings {
        Settings {
            enable: true,
            ..Settings::default()
        }
    }

    fn passive() -> Settings {
        Settings {
            passive: true,
            ..settings()
        }
    }

    /// Two sessions wired back to back on a virtual clock, packets delivered at once unless
    /// a direction is cut.
    struct Wire {
        now: Instant,
        a: Session,
        b: Session,
        a_to_b: bool,
        b_to_a: bool,
        /// (time, sender 'a' or 'b', packet) of everything sent.
        sent: Vec<(Instant, char, Packet)>,
        /// (time, session 'a' or 'b', event).
        events: Vec<(Instant, char, Event)>,
    }

    impl Wire {
        fn new(t0: Instant, a: Settings, b: Settings) -> Wire {
            Wire {
                now: t0,
                a: Session::new(t0, 0xa, &a, 1),
                b: Session::new(t0, 0xb, &b, 2),
                a_to_b: true,
                b_to_a: true,
                sent: Vec::new(),
                events: Vec::new(),
            }
        }

        /// Exchanges what is due now until both sides are quiet.
        fn settle(&mut self) {
            loop {
                let mut moved = false;
                while let Some(p) = self.a.poll_transmit() {
                    moved = true;
                    self.sent.push((self.now, 'a', p));
                    if self.a_to_b {
                        let _ = self.b.handle_packet(self.now, &p);
                    }
                }
                while let Some(p) = self.b.poll_transmit() {
                    moved = true;
                    self.sent.push((self.now, 'b', p));
                    if self.b_to_a {
                        let _ = self.a.handle_packet(self.now, &p);
                    }
                }
                while let Some(e) = self.a.poll_event() {
                    self.events.push((self.now, 'a', e));
                }
                while let Some(e) = self.b.poll_event() {
                    self.events.push((self.now, 'b', e));
                }
                if !moved {
                    return;
                }
            }
        }

        fn run_until(&mut self, until: Instant) {
            self.settle();
            loop {
                let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                match next {
                    Some(t) if t <= until => {
                        self.now = self.now.max(t);
                        self.a.handle_timeout(self.now);
                        self.b.handle_timeout(self.now);
                        self.settle();
                    }
                    _ => break,
                }
            }
            self.now = until;
        }

        fn events_of(&self, who: char) -> Vec<Event> {
            self.events
                .iter()
                .filter(|(_, w, _)| *w == who)
                .map(|(_, _, e)| *e)
                .collect()
        }

        fn sent_by(&self, who: char) -> Vec<(Instant, Packet)> {
            self.sent
                .iter()
                .filter(|(_, w, _)| *w == who)
                .map(|(t, _, p)| (*t, *p))
                .collect()
        }
    }

    fn down_from(discr: u32) -> Packet {
        Packet {
            diag: Diag::NONE,
            state: State::Down,
            poll: false,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: discr,
            your_discriminator: 0,
            desired_min_tx_us: SLOW_TX_US,
            required_min_rx_us: 300_000,
            required_min_echo_rx_us: 0,
        }
    }

    #[test]
    fn two_sessions_back_to_back_reach_up_at_once_through_down_and_init() {
        let t0 = Instant::now();
        let mut w = Wire::new(t0, settings(), settings());
        w.run_until(t0 + 10 * MS);
        assert_eq!((w.a.state(), w.b.state()), (State::Up, State::Up));
        assert_eq!(w.events_of('a'), [Event::Up]);
        assert_eq!(w.events_of('b'), [Event::Up]);
        // a's Down makes b Init; b's Init makes a Up; a's Up makes b Up.
        let states = |who| -> Vec<State> { w.sent_by(who).iter().map(|(_, p)| p.state).collect() };
        assert_eq!(states('a')[..2], [State::Down, State::Up]);
        assert_eq!(states('b')[..2], [State::Init, State::Up]);
    }

    #[test]
    fn a_peer_that_starts_later_is_up_at_its_first_packet() {
        let t0 = Instant::now();
        let mut w = Wire::new(t0, settings(), settings());
        w.b_to_a = false;
        w.a_to_b = false;
        w.run_until(t0 + 5000 * MS);
        assert_eq!(w.a.state(), State::Down);
        // b restarts (a new discriminator) and the wire is joined.
        w.b = Session::new(w.now, 0xbb, &settings(), 3);
        w.a_to_b = true;
        w.b_to_a = true;
        let joined = w.now;
        w.run_until(joined + 10 * MS);
        assert_eq!((w.a.state(), w.b.state()), (State::Up, State::Up));
        assert!(w.events.iter().all(|(t, _, _)| *t == joined));
    }

    #[test]
    fn before_up_packets_go_out_once_a_second_less_jitter_and_advertise_one_second() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, 7, &settings(), 42);
        let mut times = Vec::new();
        let mut now = t0;
        while now < t0 + 20_000 * MS {
            while let Some(p) = s.poll_transmit() {
                assert_eq!((p.state, p.your_discriminator), (State::Down, 0));
                assert_eq!(p.desired_min_tx_us, SLOW_TX_US);
                assert_eq!(p.required_min_rx_us, 300_000);
                assert!(!p.poll && !p.final_);
                times.push(now);
            }
            now = s.poll_timeout().unwrap();
            s.handle_timeout(now);
        }
        assert_eq!(times[0], t0, "the first packet goes at once");
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= 750 * MS && gap <= 1000 * MS, "{gap:?}");
        }
        assert!(times.len() >= 20);
    }

    #[test]
    fn once_up_a_poll_sequence_brings_both_sides_to_the_configured_300_ms() {
        let t0 = Instant::now();
        let mut w = Wire::new(t0, settings(), settings());
        w.run_until(t0 + 10 * MS);
        let polls = w.sent_by('a').iter().filter(|(_, p)| p.poll).count();
        let finals = w.sent_by('b').iter().filter(|(_, p)| p.final_).count();
        assert!(polls >= 1 && finals >= 1, "a polled and b answered");
        assert!(!w.a.polling() && !w.b.polling());
        assert_eq!(w.a.transmit_interval(), Some(300 * MS));
        assert_eq!(w.a.detection_time(), Some(900 * MS));
        let before = w.sent_by('a').len();
        w.run_until(t0 + 3000 * MS);
        let sent = w.sent_by('a');
        assert!(
            sent.len() - before >= 10,
            "about ten packets in three seconds at 300 ms: {}",
            sent.len() - before
        );
        for pair in sent[before..].windows(2) {
            let gap = pair[1].0 - pair[0].0;
            assert!(gap >= 225 * MS && gap <= 300 * MS, "{gap:?}");
        }
        assert!(
            sent[before..]
                .iter()
                .all(|(_, p)| p.state == State::Up && p.desired_min_tx_us == 300_000 && !p.poll)
        );
    }

    #[test]
    fn silence_for_the_detection_time_takes_an_up_session_down_with_diag_1() {
        let t0 = Instant::now();
        let mut w = Wire::new(t0, settings(), settings());
        w.run_until(t0 + 2000 * MS);
        assert_eq!(w.a.state(), State::Up);
        w.b_to_a = false;
        let last_heard = w.sent_by('b').last().map(|(t, _)| *t).expect("b has sent");
        w.run_until(t0 + 5000 * MS);
        assert_eq!(w.a.state(), State::Down);
        assert_eq!(w.a.local_diag(), Diag::CONTROL_DETECTION_TIME_EXPIRED);
        let (when, _, event) = *w.events.iter().rfind(|(_, who, _)| *who == 'a').unwrap();
        assert_eq!(
            event,
            Event::Down {
                diag: Diag::CONTROL_DETECTION_TIME_EXPIRED,
                peer_admin_down: false
            }
        );
        assert!(event.is_failure());
        assert_eq!(when - last_heard, 900 * MS, "multiplier 3 x 300 ms");
        // It forgot the peer: its packets now say Down with Your Discriminator 0 and diag 1,
        // at the slow rate.
        let (_, p) = *w.sent_by('a').last().unwrap();
        assert_eq!(
            (p.state, p.your_discriminator, p.diag),
            (State::Down, 0, Diag(1))
        );
        assert_eq!(w.a.transmit_interval(), Some(1000 * MS));
        // b heard a's Down and went down too, with diag 3.
        assert_eq!(w.b.state(), State::Init);
        assert!(matches!(
            w.events_of('b')[..],
            [
                Event::Up,
                Event::Down {
                    diag: Diag(3),
                    peer_admin_down: false
                }
            ]
        ));
    }

    #[test]
    fn the_detection_time_uses_the_slower_of_our_rx_and_their_tx_and_their_multiplier() {
        let t0 = Instant::now();
        let slow_peer = Settings {
            min_tx_ms: 500,
            multiplier: 5,
            ..settings()
        };
        let mut w = Wire::new(t0, settings(), slow_peer);
        w.run_until(t0 + 2000 * MS);
        assert_eq!(w.a.detection_time(), Some(2500 * MS), "5 x max(300, 500)");
        assert_eq!(w.b.detection_time(), Some(900 * MS), "3 x max(300, 300)");
        assert_eq!(w.a.transmit_interval(), Some(300 * MS));
        assert_eq!(w.b.transmit_interval(), Some(500 * MS));
    }

    #[test]
    fn admin_down_from_the_peer_is_reported_as_such_and_not_as_a_failure() {
        let t0 = Instant::now();
        let mut w = Wire::new(t0, settings(), settings());
        w.run_until(t0 + 1000 * MS);
        w.b.set_admin_down(w.now, true);
        w.run_until(t0 + 1100 * MS);
        let event = Event::Down {
            diag: Diag::NEIGHBOR_SIGNALED_SESSION_DOWN,
            peer_admin_down: true,
        };
        assert_eq!(w.events_of('a'), [Event::Up, event]);
        assert!(!event.is_failure());
        assert_eq!(
            w.events_of('b'),
            [Event::Up],
            "no event for our own admin down"
        );
        assert_eq!((w.a.state(), w.b.state()), (State::Down, State::AdminDown));
        let (_, p) = *w.sent_by('b').last().unwrap();
        assert_eq!((p.state, p.diag), (State::AdminDown, Diag(7)));
        // a stays Down while b keeps saying AdminDown, for as long as it does.
        w.run_until(t0 + 10_000 * MS);
        assert_eq!(w.a.state(), State::Down);
        assert_eq!(w.events_of('a').len(), 2);
        // Back from AdminDown: both Up again.
        w.b.set_admin_down(w.now, false);
        w.run_until(t0 + 10_100 * MS);
        assert_eq!((w.a.state(), w.b.state()), (State::Up, State::Up));
    }

    #[test]
    fn a_session_in_admin_down_ignores_the_peer() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, 5, &settings(), 1);
        s.set_admin_down(t0, true);
        let mut p = down_from(9);
        p.poll = true;
        s.handle_packet(t0, &p).unwrap();
        assert_eq!(s.state(), State::AdminDown);
        let out: Vec<Packet> = std::iter::from_fn(|| s.poll_transmit()).collect();
        assert!(out.iter().all(|p| p.state == State::AdminDown && !p.final_));
    }

    #[test]
    fn a_passive_session_waits_for_the_peer_then_answers_at_once() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, 5, &passive(), 1);
        assert_eq!(s.poll_transmit(), None);
        assert_eq!(s.poll_timeout(), None, "no timer while nothing is heard");
        let later = t0 + 60_000 * MS;
        s.handle_packet(later, &down_from(9)).unwrap();
        assert_eq!(s.state(), State::Init);
        let p = s.poll_transmit().expect("answers at once");
        assert_eq!((p.state, p.your_discriminator), (State::Init, 9));
        assert!(s.poll_timeout().is_some());
    }

    #[test]
    fn a_passive_session_comes_up_with_an_active_one_and_falls_silent_when_it_goes() {
        let t0 = Instant::now();
        let mut w = Wire::new(t0, settings(), passive());
        w.run_until(t0 + 10 * MS);
        assert_eq!((w.a.state(), w.b.state()), (State::Up, State::Up));
        w.a_to_b = false;
        w.run_until(t0 + 3000 * MS);
        assert_eq!(w.b.state(), State::Down);
        assert_eq!(w.b.remote_discriminator(), 0);
        let quiet_from = w.now;
        w.run_until(t0 + 10_000 * MS);
        assert!(
            w.sent_by('b').iter().all(|(t, _)| *t < quiet_from),
            "passive again: nothing sent once the peer is forgotten"
        );
    }

    #[test]
    fn two_passive_sessions_never_start() {
        let t0 = Instant::now();
        let mut w = Wire::new(t0, passive(), passive());
        w.run_until(t0 + 10_000 * MS);
        assert!(w.sent.is_empty());
    }

    #[test]
    fn a_poll_is_answered_at_once_with_a_final_and_no_poll_bit() {
        let t0 = Instant::now();
        let mut w = Wire::new(t0, settings(), settings());
        w.run_until(t0 + 1000 * MS);
        let mut p = w.sent_by('b').last().unwrap().1;
        p.poll = true;
        w.a.handle_packet(w.now, &p).unwrap();
        let answer = w.a.poll_transmit().expect("a Final at once");
        assert!(answer.final_ && !answer.poll);
        assert_eq!(w.a.poll_transmit(), None, "one Final per Poll");
    }

    #[test]
    fn a_slower_transmit_interval_takes_effect_only_after_the_final() {
        let t0 = Instant::now();
        let mut w = Wire::new(t0, settings(), settings());
        w.run_until(t0 + 1000 * MS);
        let slower = Settings {
            min_tx_ms: 800,
            ..settings()
        };
        w.b_to_a = false;
        w.a.set_settings(w.now, &slower);
        w.run_until(t0 + 1200 * MS);
        assert!(w.a.polling());
        assert_eq!(
            w.a.transmit_interval(),
            Some(300 * MS),
            "old rate until the Final"
        );
        let polls: Vec<Packet> = w
            .sent_by('a')
            .into_iter()
            .filter(|(t, _)| *t >= t0 + 1000 * MS)
            .map(|(_, p)| p)
            .collect();
        assert!(
            polls
                .iter()
                .all(|p| p.poll && p.desired_min_tx_us == 800_000)
        );
        w.b_to_a = true;
        w.run_until(t0 + 2000 * MS);
        assert!(!w.a.polling());
        assert_eq!(w.a.transmit_interval(), Some(800 * MS));
        assert_eq!(w.b.detection_time(), Some(2400 * MS));
    }

    #[test]
    fn a_shorter_required_rx_keeps_the_longer_detection_time_until_the_final() {
        let t0 = Instant::now();
        let slow = Settings {
            min_rx_ms: 1000,
            min_tx_ms: 100,
            ..settings()
        };
        let fast_tx = Settings {
            min_tx_ms: 100,
            ..settings()
        };
        let mut w = Wire::new(t0, slow, fast_tx);
        w.run_until(t0 + 2000 * MS);
        assert_eq!(w.a.detection_time(), Some(3000 * MS));
        w.b_to_a = false;
        let faster = Settings {
            min_rx_ms: 100,
            ..slow
        };
        w.a.set_settings(w.now, &faster);
        assert_eq!(
            w.a.detection_time(),
            Some(3000 * MS),
            "old value until the Final"
        );
        w.b_to_a = true;
        w.run_until(t0 + 2500 * MS);
        assert_eq!(w.a.detection_time(), Some(300 * MS));
        assert_eq!(w.b.transmit_interval(), Some(100 * MS));
    }

    #[test]
    fn a_packet_for_another_discriminator_is_discarded() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, 5, &settings(), 1);
        let mut p = down_from(9);
        p.your_discriminator = 6;
        assert_eq!(
            s.handle_packet(t0, &p),
            Err(Discard::NotOurDiscriminator(6))
        );
        assert_eq!((s.state(), s.remote_discriminator()), (State::Down, 0));
        p.your_discriminator = 5;
        s.handle_packet(t0, &p).unwrap();
        assert_eq!((s.state(), s.remote_discriminator()), (State::Init, 9));
    }

    #[test]
    fn a_peer_that_restarts_while_up_takes_the_session_down_as_a_failure() {
        let t0 = Instant::now();
        let mut w = Wire::new(t0, settings(), settings());
        w.run_until(t0 + 1000 * MS);
        // The restarted peer knows nothing: Down, Your Discriminator 0, a new discriminator.
        w.a.handle_packet(w.now, &down_from(0xbeef)).unwrap();
        assert_eq!(
            w.a.poll_event(),
            Some(Event::Down {
                diag: Diag::NEIGHBOR_SIGNALED_SESSION_DOWN,
                peer_admin_down: false
            })
        );
        assert_eq!(w.a.remote_discriminator(), 0xbeef);
    }

    #[test]
    fn init_goes_down_silently_when_the_peer_falls_silent() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, 5, &settings(), 1);
        s.handle_packet(t0, &down_from(9)).unwrap();
        assert_eq!(s.state(), State::Init);
        s.handle_timeout(t0 + 3000 * MS);
        assert_eq!(s.state(), State::Down);
        assert_eq!(s.local_diag(), Diag::CONTROL_DETECTION_TIME_EXPIRED);
        assert_eq!(s.poll_event(), None, "it never was Up");
    }

    #[test]
    fn a_peer_asking_for_no_packets_gets_none_but_finals() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, 5, &settings(), 1);
        while s.poll_transmit().is_some() {}
        let mut p = down_from(9);
        p.required_min_rx_us = 0;
        s.handle_packet(t0, &p).unwrap();
        assert_eq!(s.poll_transmit(), None, "not even the state change");
        assert_eq!(s.transmit_interval(), None);
        p.poll = true;
        s.handle_packet(t0, &p).unwrap();
        assert!(s.poll_transmit().unwrap().final_);
    }

    #[test]
    fn a_peer_in_demand_mode_gets_no_periodic_packets_once_both_are_up() {
        let t0 = Instant::now();
        let mut w = Wire::new(t0, settings(), settings());
        w.run_until(t0 + 1000 * MS);
        let mut p = w.sent_by('b').last().unwrap().1;
        p.demand = true;
        w.a.handle_packet(w.now, &p).unwrap();
        assert_eq!(w.a.transmit_interval(), None);
    }

    #[test]
    fn jitter_keeps_intervals_between_75_and_100_percent_or_90_with_multiplier_1() {
        for (mult, high) in [(3u8, 1.0), (1, 0.9)] {
            let t0 = Instant::now();
            let s = Settings {
                multiplier: mult,
                ..settings()
            };
            let mut session = Session::new(t0, 5, &s, 99);
            let (mut lo, mut hi) = (f64::MAX, 0f64);
            for _ in 0..10_000 {
                let d = session.jittered(1_000_000).as_secs_f64();
                lo = lo.min(d);
                hi = hi.max(d);
            }
            assert!((0.75..0.76).contains(&lo), "multiplier {mult}: lowest {lo}");
            assert!(
                hi <= high && hi > high - 0.01,
                "multiplier {mult}: highest {hi}"
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let run = |seed| {
            let t0 = Instant::now();
            let mut s = Session::new(t0, 5, &settings(), seed);
            (0..20)
                .map(|_| {
                    let t = s.poll_timeout().unwrap();
                    s.handle_timeout(t);
                    t - t0
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn a_new_multiplier_is_sent_at_once() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, 5, &settings(), 1);
        while s.poll_transmit().is_some() {}
        s.set_settings(
            t0,
            &Settings {
                multiplier: 5,
                ..settings()
            },
        );
        assert_eq!(s.poll_transmit().unwrap().detect_mult, 5);
    }
}
