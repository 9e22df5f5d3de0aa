//! The BFD Control packet (RFC 5880 4.1), without authentication: encode, and decode with
//! every check of RFC 5880 6.8.6 that the packet alone can answer. Pure; which session a
//! packet belongs to is `socket`'s question, what it means is `session`'s.

use std::fmt;

/// The protocol version we speak and accept.
pub const VERSION: u8 = 1;
/// A Control packet without an authentication section.
pub const LEN: usize = 24;
/// The shortest packet whose A bit is set (RFC 5880 6.8.6).
const MIN_LEN_WITH_AUTH: u8 = 26;

const FLAG_POLL: u8 = 0x20;
const FLAG_FINAL: u8 = 0x10;
const FLAG_CPI: u8 = 0x08;
const FLAG_AUTH: u8 = 0x04;
const FLAG_DEMAND: u8 = 0x02;
const FLAG_MULTIPOINT: u8 = 0x01;

/// bfd.SessionState and the packet's State field (RFC 5880 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl State {
    fn from_bits(bits: u8) -> State {
        match bits & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::AdminDown => "admin-down",
            State::Down => "down",
            State::Init => "init",
            State::Up => "up",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The Diagnostic field (5 bits): why the sender's session last changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Diag(pub u8);

impl Diag {
    pub const NONE: Diag = Diag(0);
    pub const CONTROL_DETECTION_TIME_EXPIRED: Diag = Diag(1);
    pub const ECHO_FUNCTION_FAILED: Diag = Diag(2);
    pub const NEIGHBOR_SIGNALED_SESSION_DOWN: Diag = Diag(3);
    pub const FORWARDING_PLANE_RESET: Diag = Diag(4);
    pub const PATH_DOWN: Diag = Diag(5);
    pub const CONCATENATED_PATH_DOWN: Diag = Diag(6);
    pub const ADMINISTRATIVELY_DOWN: Diag = Diag(7);
    pub const REVERSE_CONCATENATED_PATH_DOWN: Diag = Diag(8);

    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "no diagnostic",
            1 => "control detection time expired",
            2 => "echo function failed",
            3 => "neighbor signaled session down",
            4 => "forwarding plane reset",
            5 => "path down",
            6 => "concatenated path down",
            7 => "administratively down",
            8 => "reverse concatenated path down",
            _ => "reserved",
        }
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

/// A decoded Control packet. The A and M bits are not fields: decoding refuses packets
/// with either, and we never send them. Intervals are in microseconds, as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub diag: Diag,
    pub state: State,
    /// P: the sender asks for a Final (a Poll Sequence, RFC 5880 6.5).
    pub poll: bool,
    /// F: the answer to a Poll.
    pub final_: bool,
    /// C: the sender's BFD does not share fate with its control plane.
    pub control_plane_independent: bool,
    /// D: the sender wants Demand mode.
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discriminator: u32,
    pub your_discriminator: u32,
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
    pub required_min_echo_rx_us: u32,
}

/// Why a received packet was discarded (RFC 5880 6.8.6, in its order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{0} bytes is shorter than a Control packet")]
    Truncated(usize),
    #[error("version {0}, not 1")]
    Version(u8),
    #[error("Length {0} is below the minimum")]
    LengthBelowMinimum(u8),
    #[error("Length {length} is more than the {payload} bytes received")]
    LengthBeyondPayload { length: u8, payload: usize },
    #[error("Detect Mult is zero")]
    ZeroDetectMult,
    #[error("the Multipoint bit is set")]
    Multipoint,
    #[error("My Discriminator is zero")]
    ZeroMyDiscriminator,
    #[error("Your Discriminator is zero in state {0}")]
    ZeroYourDiscriminator(State),
    /// We use no authentication, so a packet carrying some is discarded.
    #[error("the Authentication bit is set and we use no authentication")]
    Authentication,
}

impl Packet {
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = (VERSION << 5) | (self.diag.0 & 0x1f);
        b[1] = ((self.state as u8) << 6)
            | if self.poll { FLAG_POLL } else { 0 }
            | if self.final_ { FLAG_FINAL } else { 0 }
            | if self.control_plane_independent {
                FLAG_CPI
            } else {
                0
            }
            | if self.demand { FLAG_DEMAND } else { 0 };
        b[2] = self.detect_mult;
        b[3] = LEN as u8;
        b[4..8].copy_from_slice(&self.my_discriminator.to_be_bytes());
        b[8..12].copy_from_slice(&self.your_discriminator.to_be_bytes());
        b[12..16].copy_from_slice(&self.desired_min_tx_us.to_be_bytes());
        b[16..20].copy_from_slice(&self.required_min_rx_us.to_be_bytes());
        b[20..24].copy_from_slice(&self.required_min_echo_rx_us.to_be_bytes());
        b
    }

    /// Decodes a UDP payload, applying RFC 5880 6.8.6's checks on the packet itself. Bytes
    /// beyond the Length field are ignored.
    pub fn decode(payload: &[u8]) -> Result<Packet, DecodeError> {
        if payload.len() < 4 {
            return Err(DecodeError::Truncated(payload.len()));
        }
        let version = payload[0] >> 5;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let flags = payload[1];
        let length = payload[3];
        let auth = flags & FLAG_AUTH != 0;
        let minimum = if auth { MIN_LEN_WITH_AUTH } else { LEN as u8 };
        if length < minimum {
            return Err(DecodeError::LengthBelowMinimum(length));
        }
        if usize::from(length) > payload.len() {
            return Err(DecodeError::LengthBeyondPayload {
                length,
                payload: payload.len(),
            });
        }
        let word = |at: usize| u32::from_be_bytes(payload[at..at + 4].try_into().unwrap());
        let packet = Packet {
            diag: Diag(payload[0] & 0x1f),
            state: State::from_bits(flags >> 6),
            poll: flags & FLAG_POLL != 0,
            final_: flags & FLAG_FINAL != 0,
            control_plane_independent: flags & FLAG_CPI != 0,
            demand: flags & FLAG_DEMAND != 0,
            detect_mult: payload[2],
            my_discriminator: word(4),
            your_discriminator: word(8),
            desired_min_tx_us: word(12),
            required_min_rx_us: word(16),
            required_min_echo_rx_us: word(20),
        };
        if packet.detect_mult == 0 {
            return Err(DecodeError::ZeroDetectMult);
        }
        if flags & FLAG_MULTIPOINT != 0 {
            return Err(DecodeError::Multipoint);
        }
        if packet.my_discriminator == 0 {
            return Err(DecodeError::ZeroMyDiscriminator);
        }
        if packet.your_discriminator == 0 && !matches!(packet.state, State::Down | State::AdminDown)
        {
            return Err(DecodeError::ZeroYourDiscriminator(packet.state));
        }
        if auth {
            return Err(DecodeError::Authentication);
        }
        Ok(packet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn up() -> Packet {
        Packet {
            diag: Diag::NONE,
            state: State::Up,
            poll: false,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: 0x0102_0304,
            your_discriminator: 0x0a0b_0c0d,
            desired_min_tx_us: 300_000,
            required_min_rx_us: 300_000,
            required_min_echo_rx_us: 0,
        }
    }

    #[test]
    fn an_up_packet_encodes_to_the_rfc_layout_and_back() {
        let bytes = up().encode();
        assert_eq!(
            bytes.to_vec(),
            unhex("20c00318010203040a0b0c0d000493e0000493e000000000")
        );
        assert_eq!(Packet::decode(&bytes), Ok(up()));
    }

    #[test]
    fn every_flag_and_the_diagnostic_survive_a_round_trip() {
        let p = Packet {
            diag: Diag::REVERSE_CONCATENATED_PATH_DOWN,
            poll: true,
            control_plane_independent: true,
            demand: true,
            ..up()
        };
        let bytes = p.encode();
        assert_eq!(bytes[0], 0x28);
        assert_eq!(bytes[1], 0xc0 | 0x20 | 0x08 | 0x02);
        assert_eq!(Packet::decode(&bytes), Ok(p));
        let f = Packet {
            final_: true,
            state: State::Init,
            ..up()
        };
        assert_eq!(f.encode()[1], 0x90);
        assert_eq!(Packet::decode(&f.encode()), Ok(f));
    }

    #[test]
    fn a_packet_of_another_version_is_discarded() {
        let mut b = up().encode();
        b[0] = (2 << 5) | (b[0] & 0x1f);
        assert_eq!(Packet::decode(&b), Err(DecodeError::Version(2)));
        b[0] = 0;
        assert_eq!(Packet::decode(&b), Err(DecodeError::Version(0)));
    }

    #[test]
    fn a_length_below_24_or_26_with_the_a_bit_is_discarded() {
        let mut b = up().encode();
        b[3] = 23;
        assert_eq!(Packet::decode(&b), Err(DecodeError::LengthBelowMinimum(23)));
        let mut b = up().encode().to_vec();
        b[1] |= FLAG_AUTH;
        b.extend_from_slice(&[1, 2]);
        b[3] = 25;
        assert_eq!(Packet::decode(&b), Err(DecodeError::LengthBelowMinimum(25)));
    }

    #[test]
    fn a_length_beyond_the_udp_payload_is_discarded_and_extra_bytes_are_ignored() {
        let b = up().encode();
        assert_eq!(
            Packet::decode(&b[..20]),
            Err(DecodeError::LengthBeyondPayload {
                length: 24,
                payload: 20
            })
        );
        assert_eq!(Packet::decode(&b[..2]), Err(DecodeError::Truncated(2)));
        let mut longer = b.to_vec();
        longer.extend_from_slice(&[0xff; 8]);
        assert_eq!(Packet::decode(&longer), Ok(up()));
        // A Length that says so covers them and is still fine.
        longer[3] = 32;
        assert_eq!(Packet::decode(&longer), Ok(up()));
    }

    #[test]
    fn a_zero_detect_mult_is_discarded() {
        let p = Packet {
            detect_mult: 0,
            ..up()
        };
        assert_eq!(
            Packet::decode(&p.encode()),
            Err(DecodeError::ZeroDetectMult)
        );
    }

    #[test]
    fn the_multipoint_bit_is_discarded() {
        let mut b = up().encode();
        b[1] |= FLAG_MULTIPOINT;
        assert_eq!(Packet::decode(&b), Err(DecodeError::Multipoint));
    }

    #[test]
    fn a_zero_my_discriminator_is_discarded() {
        let p = Packet {
            my_discriminator: 0,
            ..up()
        };
        assert_eq!(
            Packet::decode(&p.encode()),
            Err(DecodeError::ZeroMyDiscriminator)
        );
    }

    #[test]
    fn a_zero_your_discriminator_is_only_valid_in_down_and_admin_down() {
        for state in [State::Init, State::Up] {
            let p = Packet {
                your_discriminator: 0,
                state,
                ..up()
            };
            assert_eq!(
                Packet::decode(&p.encode()),
                Err(DecodeError::ZeroYourDiscriminator(state))
            );
        }
        for state in [State::Down, State::AdminDown] {
            let p = Packet {
                your_discriminator: 0,
                state,
                ..up()
            };
            assert_eq!(Packet::decode(&p.encode()), Ok(p));
        }
    }

    #[test]
    fn an_authenticated_packet_is_discarded_because_we_use_no_authentication() {
        // Simple password authentication (type 1, length 7, key id 1, "abc").
        let mut b = up().encode().to_vec();
        b[1] |= FLAG_AUTH;
        b.extend_from_slice(&[1, 7, 1, b'a', b'b', b'c', 0]);
        b[3] = b.len() as u8;
        assert_eq!(Packet::decode(&b), Err(DecodeError::Authentication));
    }
}
