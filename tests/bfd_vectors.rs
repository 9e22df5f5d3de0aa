//! BFD Control packets captured from FRR's bfdd (tests/vectors/bfdd.hex, made by
//! tests/vectors/capture-bfdd.sh) decoded field by field, encoded back to the same bytes,
//! and replayed into our session in bfdd's own order.

use std::time::{Duration, Instant};

use cilium_peer::bfd::{Diag, Event, Packet, Session, Settings, State};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The capture's packets, in file order.
fn capture() -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/bfdd.hex"
    ))
    .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| unhex(l.trim()))
        .collect()
}

const A: u32 = 0xd874_0ecf;
const B: u32 = 0x4e2b_cbc1;
const FAST: u32 = 300_000;
const SLOW: u32 = 1_000_000;
/// bfdd advertises 50 ms for echo whether or not echo is on.
const ECHO: u32 = 50_000;

fn decode_all() -> Vec<Packet> {
    capture()
        .iter()
        .map(|b| Packet::decode(b).unwrap_or_else(|e| panic!("{e}: {b:02x?}")))
        .collect()
}

#[test]
fn every_bfdd_packet_decodes_to_what_bfdd_meant() {
    let p = decode_all();
    assert_eq!(p.len(), 8);
    let fields = |p: &Packet| {
        (
            p.state,
            p.diag,
            p.poll,
            p.final_,
            p.my_discriminator,
            p.your_discriminator,
            p.desired_min_tx_us,
            p.required_min_rx_us,
        )
    };
    let expected = [
        (State::Down, Diag::NONE, false, false, A, 0, SLOW, SLOW),
        (State::Init, Diag::NONE, false, false, B, A, SLOW, SLOW),
        (State::Up, Diag::NONE, true, false, A, B, FAST, FAST),
        (State::Up, Diag::NONE, false, true, B, A, FAST, FAST),
        (State::Up, Diag::NONE, false, false, B, A, FAST, FAST),
        // bfdd says AdminDown with diag 0, not 7.
        (State::AdminDown, Diag::NONE, false, false, A, B, FAST, FAST),
        (
            State::Down,
            Diag::NEIGHBOR_SIGNALED_SESSION_DOWN,
            false,
            false,
            B,
            0,
            FAST,
            FAST,
        ),
    ];
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(&fields(&p[i]), want, "packet {i}");
    }
    for packet in &p {
        assert_eq!(packet.detect_mult, 3);
        assert_eq!(packet.required_min_echo_rx_us, ECHO);
        assert!(!packet.control_plane_independent && !packet.demand);
    }
    assert_eq!(p[7].state, State::Up, "the IPv4 session looks the same");
}

#[test]
fn every_bfdd_packet_encodes_back_to_its_own_bytes() {
    for bytes in capture() {
        let packet = Packet::decode(&bytes).unwrap();
        assert_eq!(packet.encode().to_vec(), bytes);
    }
}

#[test]
fn our_encoder_writes_what_bfdd_wrote_for_the_same_fields() {
    // B's periodic Up packet, built by hand rather than decoded.
    let ours = Packet {
        diag: Diag::NONE,
        state: State::Up,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: B,
        your_discriminator: A,
        desired_min_tx_us: FAST,
        required_min_rx_us: FAST,
        required_min_echo_rx_us: ECHO,
    };
    assert_eq!(ours.encode().to_vec(), capture()[4]);
}

#[test]
fn our_session_in_bfdds_place_follows_bfdds_conversation() {
    // We stand where bfdd B stood: A's packets come in, in the order A sent them.
    let p = decode_all();
    let t0 = Instant::now();
    let settings = Settings {
        enable: true,
        ..Settings::default()
    };
    let mut us = Session::new(t0, B, &settings, 1);
    while us.poll_transmit().is_some() {}

    us.handle_packet(t0, &p[0]).unwrap();
    assert_eq!(us.state(), State::Init);
    let init = us.poll_transmit().unwrap();
    assert_eq!((init.state, init.your_discriminator), (State::Init, A));

    let t1 = t0 + Duration::from_millis(1);
    us.handle_packet(t1, &p[2]).unwrap();
    assert_eq!(us.state(), State::Up);
    assert_eq!(us.poll_event(), Some(Event::Up));
    let answer = us.poll_transmit().unwrap();
    assert!(answer.final_ && !answer.poll, "bfdd's Poll gets a Final");
    let own_poll = us.poll_transmit().unwrap();
    assert!(own_poll.poll && own_poll.desired_min_tx_us == FAST);

    let t2 = t1 + Duration::from_millis(300);
    us.handle_packet(t2, &p[5]).unwrap();
    assert_eq!(
        us.poll_event(),
        Some(Event::Down {
            diag: Diag::NEIGHBOR_SIGNALED_SESSION_DOWN,
            peer_admin_down: true
        })
    );
    let down = us.poll_transmit().unwrap();
    assert_eq!((down.state, down.diag), (State::Down, Diag(3)));
}
