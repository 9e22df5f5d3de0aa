//! Virtual-time tests of the RA timing rules (RFC 4861 6.2.4-6.2.6): every instant is
//! `t0 + offset` and every random draw is passed in, so each rule is checked exactly.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use cilium_peer::ra::scheduler::{
    Destination, Intervals, MAX_PENDING_UNICAST, Scheduler, Transmit,
};

const ALL_NODES: Option<Transmit> = Some(Transmit::Advertisement(Destination::AllNodes));

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn intervals(min: u64, max: u64) -> Intervals {
    Intervals {
        min: Duration::from_secs(min),
        max: Duration::from_secs(max),
    }
}

fn guest(n: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, n)
}

/// Runs the scheduler from `from` to `until`, waking at each timeout, with `random` as every
/// draw; returns when and what it sent.
fn run(s: &mut Scheduler, from: Instant, until: Instant, random: f64) -> Vec<(Instant, Transmit)> {
    let mut sent = Vec::new();
    let mut now = from;
    while now <= until {
        while let Some(t) = s.poll_transmit(now, random) {
            sent.push((now, t));
        }
        match s.poll_timeout() {
            Some(next) if next > now => now = next,
            _ => break,
        }
    }
    sent
}

#[test]
fn the_first_ra_goes_out_as_soon_as_the_interface_starts_advertising() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(t0, intervals(200, 600));
    assert_eq!(s.poll_timeout(), Some(t0));
    assert_eq!(s.poll_transmit(t0, 0.5), ALL_NODES);
    assert_eq!(s.poll_transmit(t0, 0.5), None);
}

#[test]
fn the_first_three_ras_are_at_most_16_seconds_apart_then_the_interval_is_drawn_from_min_to_max() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(t0, intervals(200, 600));
    let sent = run(&mut s, t0, t0 + secs(2000.0), 0.5);
    let times: Vec<Duration> = sent.iter().map(|(t, _)| *t - t0).collect();
    // 0, 16, 32 (capped from 400), then 400 s apart: min + 0.5 * (max - min).
    assert_eq!(
        times,
        [
            secs(0.0),
            secs(16.0),
            secs(32.0),
            secs(432.0),
            secs(832.0),
            secs(1232.0),
            secs(1632.0)
        ]
    );
    assert!(sent.iter().all(|(_, t)| *t == ALL_NODES.unwrap()));
}

#[test]
fn an_initial_interval_below_16_seconds_is_kept() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(t0, intervals(4, 10));
    assert_eq!(s.poll_transmit(t0, 0.0), ALL_NODES);
    assert_eq!(s.poll_timeout(), Some(t0 + secs(4.0)));
}

#[test]
fn unsolicited_intervals_span_min_to_max_with_the_random_draw() {
    for (random, expected) in [(0.0, 200.0), (0.25, 300.0), (0.999, 599.6)] {
        let t0 = Instant::now();
        let mut s = Scheduler::new(t0, intervals(200, 600));
        let sent = run(&mut s, t0, t0 + secs(40.0), random);
        let third = sent[2].0;
        assert_eq!(
            s.poll_timeout().unwrap() - third,
            secs(expected),
            "random {random}"
        );
    }
}

#[test]
fn a_solicitation_from_a_link_local_source_is_answered_by_unicast_within_half_a_second() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(t0, intervals(200, 600));
    run(&mut s, t0, t0 + secs(40.0), 0.5);
    let now = t0 + secs(100.0);
    s.handle_solicitation(now, guest(2), 0.6);
    assert_eq!(s.poll_timeout(), Some(now + secs(0.3)));
    assert_eq!(s.poll_transmit(now + secs(0.29), 0.5), None);
    assert_eq!(
        s.poll_transmit(now + secs(0.3), 0.5),
        Some(Transmit::Advertisement(Destination::Unicast(guest(2))))
    );
    assert_eq!(s.poll_transmit(now + secs(0.3), 0.5), None);
}

#[test]
fn a_solicitation_from_the_unspecified_address_is_answered_by_multicast() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(t0, intervals(200, 600));
    run(&mut s, t0, t0 + secs(40.0), 0.5);
    let now = t0 + secs(100.0);
    s.handle_solicitation(now, Ipv6Addr::UNSPECIFIED, 0.2);
    assert_eq!(s.poll_timeout(), Some(now + secs(0.1)));
    assert_eq!(s.poll_transmit(now + secs(0.1), 0.5), ALL_NODES);
    // The unsolicited timer restarts from the solicited multicast RA.
    assert_eq!(s.poll_timeout(), Some(now + secs(0.1) + secs(400.0)));
}

#[test]
fn a_multicast_answer_within_3_seconds_of_the_last_multicast_ra_waits_for_3_seconds_plus_the_delay()
{
    let t0 = Instant::now();
    let mut s = Scheduler::new(t0, intervals(200, 600));
    run(&mut s, t0, t0 + secs(40.0), 0.5);
    let last = s.last_multicast().unwrap();
    s.handle_solicitation(last + secs(1.0), Ipv6Addr::UNSPECIFIED, 0.5);
    assert_eq!(s.poll_timeout(), Some(last + secs(3.25)));
}

#[test]
fn a_flood_of_solicitations_from_the_unspecified_address_gets_at_most_one_multicast_ra_per_3_seconds()
 {
    let t0 = Instant::now();
    let mut s = Scheduler::new(t0, intervals(200, 600));
    let mut sent = run(&mut s, t0, t0 + secs(40.0), 0.5);
    // 100 solicitations a second for a minute, every draw a different delay.
    let start = t0 + secs(100.0);
    for i in 0..6000u32 {
        let now = start + secs(f64::from(i) / 100.0);
        s.handle_solicitation(now, Ipv6Addr::UNSPECIFIED, f64::from(i % 10) / 10.0);
        while let Some(t) = s.poll_transmit(now, 0.5) {
            sent.push((now, t));
        }
    }
    let multicast: Vec<Instant> = sent
        .iter()
        .filter(|(_, t)| *t == ALL_NODES.unwrap())
        .map(|(at, _)| *at)
        .collect();
    assert!(
        multicast.len() > 10,
        "the flood is still answered: {}",
        multicast.len()
    );
    for pair in multicast.windows(2) {
        assert!(pair[1] - pair[0] >= secs(3.0), "{:?}", pair[1] - pair[0]);
    }
}

#[test]
fn a_second_solicitation_from_the_same_source_does_not_queue_a_second_answer() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(t0, intervals(200, 600));
    run(&mut s, t0, t0 + secs(40.0), 0.5);
    let now = t0 + secs(100.0);
    s.handle_solicitation(now, guest(2), 0.9);
    s.handle_solicitation(now + secs(0.1), guest(2), 0.0);
    let sent = run(&mut s, now, now + secs(1.0), 0.5);
    assert_eq!(
        sent,
        [(
            now + secs(0.45),
            Transmit::Advertisement(Destination::Unicast(guest(2)))
        )]
    );
}

#[test]
fn unicast_answers_go_out_in_the_order_they_fall_due() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(t0, intervals(200, 600));
    run(&mut s, t0, t0 + secs(40.0), 0.5);
    let now = t0 + secs(100.0);
    s.handle_solicitation(now, guest(2), 0.8);
    s.handle_solicitation(now, guest(3), 0.2);
    let sent: Vec<Transmit> = run(&mut s, now, now + secs(1.0), 0.5)
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(
        sent,
        [
            Transmit::Advertisement(Destination::Unicast(guest(3))),
            Transmit::Advertisement(Destination::Unicast(guest(2)))
        ]
    );
}

#[test]
fn a_multicast_ra_due_before_the_unicast_answer_answers_the_solicitation() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(t0, intervals(200, 600));
    assert_eq!(s.poll_transmit(t0, 0.5), ALL_NODES);
    // The next RA is due at 16 s; a solicitation at 15.8 s would be answered at 16.2 s.
    s.handle_solicitation(t0 + secs(15.8), guest(2), 0.8);
    let sent = run(&mut s, t0 + secs(15.8), t0 + secs(17.0), 0.5);
    assert_eq!(sent, [(t0 + secs(16.0), ALL_NODES.unwrap())]);
}

/// Counts (unicast, multicast) RAs sent in the second after `sources` guests solicit at once.
fn answers_to_simultaneous_solicitations(sources: u16) -> (usize, usize) {
    let t0 = Instant::now();
    let mut s = Scheduler::new(t0, intervals(200, 600));
    run(&mut s, t0, t0 + secs(40.0), 0.5);
    let now = t0 + secs(100.0);
    for n in 0..sources {
        s.handle_solicitation(now, guest(n + 1), 0.5);
    }
    let sent = run(&mut s, now, now + secs(1.0), 0.5);
    let unicast = sent
        .iter()
        .filter(|(_, t)| matches!(t, Transmit::Advertisement(Destination::Unicast(_))))
        .count();
    (unicast, sent.len() - unicast)
}

#[test]
fn up_to_the_pending_limit_every_soliciting_guest_gets_a_unicast_answer() {
    assert_eq!(
        answers_to_simultaneous_solicitations(MAX_PENDING_UNICAST as u16),
        (MAX_PENDING_UNICAST, 0)
    );
}

#[test]
fn past_the_pending_limit_one_multicast_ra_answers_every_soliciting_guest() {
    assert_eq!(
        answers_to_simultaneous_solicitations(MAX_PENDING_UNICAST as u16 + 1),
        (0, 1)
    );
}

#[test]
fn a_change_of_content_restarts_the_fast_initial_ras_respecting_the_3_second_limit() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(t0, intervals(200, 600));
    run(&mut s, t0, t0 + secs(500.0), 0.5);
    let last = s.last_multicast().unwrap();
    s.restart_initial(last + secs(1.0));
    let sent = run(&mut s, last + secs(1.0), last + secs(40.0), 0.5);
    let times: Vec<Duration> = sent.iter().map(|(t, _)| *t - last).collect();
    assert_eq!(times, [secs(3.0), secs(19.0), secs(35.0)]);
}

#[test]
fn shorter_intervals_on_reload_bring_the_next_ra_forward() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(t0, intervals(200, 600));
    run(&mut s, t0, t0 + secs(40.0), 0.5);
    let now = t0 + secs(50.0);
    s.set_intervals(now, intervals(4, 10));
    assert_eq!(s.poll_timeout(), Some(now + secs(10.0)));
}

#[test]
fn stopping_sends_the_final_ras_3_seconds_apart_and_then_finishes() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(t0, intervals(200, 600));
    run(&mut s, t0, t0 + secs(40.0), 0.5);
    let now = t0 + secs(50.0);
    s.handle_solicitation(now, guest(2), 0.5);
    s.stop(now, 3);
    assert!(!s.is_finished());
    let sent = run(&mut s, now, now + secs(100.0), 0.5);
    assert_eq!(
        sent,
        [
            (now, Transmit::Final),
            (now + secs(3.0), Transmit::Final),
            (now + secs(6.0), Transmit::Final)
        ]
    );
    assert!(s.is_finished());
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn no_more_than_three_final_ras_are_sent() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(t0, intervals(200, 600));
    s.stop(t0, 10);
    assert_eq!(run(&mut s, t0, t0 + secs(100.0), 0.5).len(), 3);
}

#[test]
fn stopping_without_final_ras_finishes_at_once_and_ignores_solicitations() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(t0, intervals(200, 600));
    s.stop(t0, 0);
    s.handle_solicitation(t0, guest(2), 0.0);
    assert!(s.is_finished());
    assert_eq!(s.poll_transmit(t0 + secs(1.0), 0.5), None);
}
