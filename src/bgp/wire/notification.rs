//! The NOTIFICATION message (RFC 4271 4.5): error codes and subcodes by name, the
//! constructors the session uses, the body codec, and a readable `Display` for logs.

use std::fmt;

/// A NOTIFICATION message (RFC 4271 4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

/// The Cease subcodes (RFC 4486, RFC 8538, RFC 9384) as a type, for the daemon's reasons
/// to close a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cease {
    MaximumPrefixesReached,
    AdministrativeShutdown,
    PeerDeconfigured,
    AdministrativeReset,
    ConnectionRejected,
    OtherConfigurationChange,
    ConnectionCollisionResolution,
    OutOfResources,
    HardReset,
    BfdDown,
}

impl Cease {
    pub fn subcode(self) -> u8 {
        match self {
            Cease::MaximumPrefixesReached => Notification::CEASE_MAXIMUM_PREFIXES_REACHED,
            Cease::AdministrativeShutdown => Notification::CEASE_ADMINISTRATIVE_SHUTDOWN,
            Cease::PeerDeconfigured => Notification::CEASE_PEER_DECONFIGURED,
            Cease::AdministrativeReset => Notification::CEASE_ADMINISTRATIVE_RESET,
            Cease::ConnectionRejected => Notification::CEASE_CONNECTION_REJECTED,
            Cease::OtherConfigurationChange => Notification::CEASE_OTHER_CONFIGURATION_CHANGE,
            Cease::ConnectionCollisionResolution => {
                Notification::CEASE_CONNECTION_COLLISION_RESOLUTION
            }
            Cease::OutOfResources => Notification::CEASE_OUT_OF_RESOURCES,
            Cease::HardReset => Notification::CEASE_HARD_RESET,
            Cease::BfdDown => Notification::CEASE_BFD_DOWN,
        }
    }
}

impl fmt::Display for Cease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({})", self, self.subcode())
    }
}

impl Notification {
    // Error codes (RFC 4271 4.5, RFC 7313).
    pub const MESSAGE_HEADER_ERROR: u8 = 1;
    pub const OPEN_MESSAGE_ERROR: u8 = 2;
    pub const UPDATE_MESSAGE_ERROR: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM_ERROR: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH_MESSAGE_ERROR: u8 = 7;

    /// Subcode 0 of any code: no more specific subcode applies (RFC 4271 4.5).
    pub const UNSPECIFIC: u8 = 0;

    // Message Header Error subcodes (RFC 4271 6.1).
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;

    // OPEN Message Error subcodes (RFC 4271 6.2, RFC 5492).
    pub const UNSUPPORTED_VERSION_NUMBER: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;

    // UPDATE Message Error subcodes (RFC 4271 6.3).
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
    pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;

    // Finite State Machine Error subcodes (RFC 6608).
    pub const FSM_UNEXPECTED_IN_OPENSENT: u8 = 1;
    pub const FSM_UNEXPECTED_IN_OPENCONFIRM: u8 = 2;
    pub const FSM_UNEXPECTED_IN_ESTABLISHED: u8 = 3;

    // Cease subcodes (RFC 4486, RFC 8538, RFC 9384).
    pub const CEASE_MAXIMUM_PREFIXES_REACHED: u8 = 1;
    pub const CEASE_ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    pub const CEASE_PEER_DECONFIGURED: u8 = 3;
    pub const CEASE_ADMINISTRATIVE_RESET: u8 = 4;
    pub const CEASE_CONNECTION_REJECTED: u8 = 5;
    pub const CEASE_OTHER_CONFIGURATION_CHANGE: u8 = 6;
    pub const CEASE_CONNECTION_COLLISION_RESOLUTION: u8 = 7;
    pub const CEASE_OUT_OF_RESOURCES: u8 = 8;
    pub const CEASE_HARD_RESET: u8 = 9;
    pub const CEASE_BFD_DOWN: u8 = 10;

    pub fn new(code: u8, subcode: u8, data: Vec<u8>) -> Notification {
        Notification {
            code,
            subcode,
            data,
        }
    }

    /// A Cease without data (use the `CEASE_*` subcodes).
    pub fn cease(subcode: u8) -> Notification {
        Notification::new(Notification::CEASE, subcode, Vec::new())
    }

    /// Cease / Maximum Number of Prefixes Reached with the RFC 4486 data: AFI, SAFI and
    /// the configured upper bound.
    pub fn maximum_prefixes_reached(family: super::Family, limit: u32) -> Notification {
        let mut data = Vec::with_capacity(7);
        data.extend_from_slice(&family.afi.to_be_bytes());
        data.push(family.safi);
        data.extend_from_slice(&limit.to_be_bytes());
        Notification::new(
            Notification::CEASE,
            Notification::CEASE_MAXIMUM_PREFIXES_REACHED,
            data,
        )
    }

    /// Cease / Administrative Shutdown carrying an RFC 9003 shutdown communication (cut
    /// to its 255-octet limit on a character boundary; empty text gives no data).
    pub fn administrative_shutdown(message: &str) -> Notification {
        let mut end = message.len().min(255);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let data = if end == 0 {
            Vec::new()
        } else {
            let mut data = Vec::with_capacity(end + 1);
            data.push(end as u8);
            data.extend_from_slice(&message.as_bytes()[..end]);
            data
        };
        Notification::new(
            Notification::CEASE,
            Notification::CEASE_ADMINISTRATIVE_SHUTDOWN,
            data,
        )
    }

    /// Hold Timer Expired (RFC 4271 6.5).
    pub fn hold_timer_expired() -> Notification {
        Notification::new(Notification::HOLD_TIMER_EXPIRED, 0, Vec::new())
    }

    /// Finite State Machine Error (RFC 6608 subcodes `FSM_UNEXPECTED_IN_*`).
    pub fn fsm_error(subcode: u8) -> Notification {
        Notification::new(Notification::FSM_ERROR, subcode, Vec::new())
    }

    /// Cease / Hard Reset wrapping `inner` as RFC 8538 4.1 asks when the N bit is
    /// negotiated: its code, subcode and data become the data.
    pub fn hard_reset(inner: &Notification) -> Notification {
        let mut data = Vec::with_capacity(2 + inner.data.len());
        data.push(inner.code);
        data.push(inner.subcode);
        data.extend_from_slice(&inner.data);
        Notification::new(Notification::CEASE, Notification::CEASE_HARD_RESET, data)
    }

    /// Cease / Hard Reset: under RFC 8538 the only NOTIFICATION after which a graceful
    /// restart helper must flush the peer's routes.
    pub fn is_hard_reset(&self) -> bool {
        self.code == Notification::CEASE && self.subcode == Notification::CEASE_HARD_RESET
    }

    /// The RFC 9003 shutdown communication of an Administrative Shutdown or Reset, when
    /// its length octet is consistent and the text is UTF-8.
    pub fn shutdown_communication(&self) -> Option<&str> {
        if self.code != Notification::CEASE
            || !matches!(
                self.subcode,
                Notification::CEASE_ADMINISTRATIVE_SHUTDOWN
                    | Notification::CEASE_ADMINISTRATIVE_RESET
            )
        {
            return None;
        }
        let (&len, text) = self.data.split_first()?;
        let text = text.get(..usize::from(len))?;
        std::str::from_utf8(text).ok().filter(|t| !t.is_empty())
    }

    /// The name of the error code, if it is one we know.
    pub fn code_name(&self) -> Option<&'static str> {
        Some(match self.code {
            Notification::MESSAGE_HEADER_ERROR => "Message Header Error",
            Notification::OPEN_MESSAGE_ERROR => "OPEN Message Error",
            Notification::UPDATE_MESSAGE_ERROR => "UPDATE Message Error",
            Notification::HOLD_TIMER_EXPIRED => "Hold Timer Expired",
            Notification::FSM_ERROR => "Finite State Machine Error",
            Notification::CEASE => "Cease",
            Notification::ROUTE_REFRESH_MESSAGE_ERROR => "ROUTE-REFRESH Message Error",
            _ => return None,
        })
    }

    /// The name of the subcode within its code, if it is one we know.
    pub fn subcode_name(&self) -> Option<&'static str> {
        if self.subcode == Notification::UNSPECIFIC {
            return Some("Unspecific");
        }
        Some(match (self.code, self.subcode) {
            (Notification::MESSAGE_HEADER_ERROR, 1) => "Connection Not Synchronized",
            (Notification::MESSAGE_HEADER_ERROR, 2) => "Bad Message Length",
            (Notification::MESSAGE_HEADER_ERROR, 3) => "Bad Message Type",
            (Notification::OPEN_MESSAGE_ERROR, 1) => "Unsupported Version Number",
            (Notification::OPEN_MESSAGE_ERROR, 2) => "Bad Peer AS",
            (Notification::OPEN_MESSAGE_ERROR, 3) => "Bad BGP Identifier",
            (Notification::OPEN_MESSAGE_ERROR, 4) => "Unsupported Optional Parameter",
            (Notification::OPEN_MESSAGE_ERROR, 6) => "Unacceptable Hold Time",
            (Notification::OPEN_MESSAGE_ERROR, 7) => "Unsupported Capability",
            (Notification::OPEN_MESSAGE_ERROR, 11) => "Role Mismatch",
            (Notification::UPDATE_MESSAGE_ERROR, 1) => "Malformed Attribute List",
            (Notification::UPDATE_MESSAGE_ERROR, 2) => "Unrecognized Well-known Attribute",
            (Notification::UPDATE_MESSAGE_ERROR, 3) => "Missing Well-known Attribute",
            (Notification::UPDATE_MESSAGE_ERROR, 4) => "Attribute Flags Error",
            (Notification::UPDATE_MESSAGE_ERROR, 5) => "Attribute Length Error",
            (Notification::UPDATE_MESSAGE_ERROR, 6) => "Invalid ORIGIN Attribute",
            (Notification::UPDATE_MESSAGE_ERROR, 8) => "Invalid NEXT_HOP Attribute",
            (Notification::UPDATE_MESSAGE_ERROR, 9) => "Optional Attribute Error",
            (Notification::UPDATE_MESSAGE_ERROR, 10) => "Invalid Network Field",
            (Notification::UPDATE_MESSAGE_ERROR, 11) => "Malformed AS_PATH",
            (Notification::FSM_ERROR, 1) => "Receive Unexpected Message in OpenSent State",
            (Notification::FSM_ERROR, 2) => "Receive Unexpected Message in OpenConfirm State",
            (Notification::FSM_ERROR, 3) => "Receive Unexpected Message in Established State",
            (Notification::CEASE, 1) => "Maximum Number of Prefixes Reached",
            (Notification::CEASE, 2) => "Administrative Shutdown",
            (Notification::CEASE, 3) => "Peer De-configured",
            (Notification::CEASE, 4) => "Administrative Reset",
            (Notification::CEASE, 5) => "Connection Rejected",
            (Notification::CEASE, 6) => "Other Configuration Change",
            (Notification::CEASE, 7) => "Connection Collision Resolution",
            (Notification::CEASE, 8) => "Out of Resources",
            (Notification::CEASE, 9) => "Hard Reset",
            (Notification::CEASE, 10) => "BFD Down",
            (Notification::ROUTE_REFRESH_MESSAGE_ERROR, 1) => "Invalid Message Length",
            _ => return None,
        })
    }
}

/// "Cease / Administrative Shutdown (6/2)", with the shutdown communication in quotes
/// when there is one, and numbers where a name is unknown.
impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code_name() {
            Some(name) => write!(f, "{name}")?,
            None => write!(f, "error code {}", self.code)?,
        }
        match self.subcode_name() {
            Some(name) => write!(f, " / {name}")?,
            None => write!(f, " / subcode {}", self.subcode)?,
        }
        write!(f, " ({}/{})", self.code, self.subcode)?;
        if let Some(text) = self.shutdown_communication() {
            write!(f, ": {text:?}")?;
        }
        Ok(())
    }
}

/// The body of a NOTIFICATION (after the header); the header check guarantees two bytes.
pub(super) fn decode_body(body: &[u8]) -> Notification {
    match body {
        [code, subcode, data @ ..] => Notification::new(*code, *subcode, data.to_vec()),
        // Unreachable after the header's minimum length check, but total all the same.
        [code] => Notification::new(*code, 0, Vec::new()),
        [] => Notification::new(0, 0, Vec::new()),
    }
}

/// Appends the body; `data` is cut so that the message stays within 4096 octets.
pub(super) fn encode_body(notification: &Notification, out: &mut Vec<u8>) {
    out.push(notification.code);
    out.push(notification.subcode);
    let room = super::MAX_MESSAGE_LEN - super::HEADER_LEN - 2;
    let len = notification.data.len().min(room);
    out.extend_from_slice(&notification.data[..len]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_code_and_subcode_with_numbers() {
        let n = Notification::cease(Notification::CEASE_ADMINISTRATIVE_SHUTDOWN);
        assert_eq!(n.to_string(), "Cease / Administrative Shutdown (6/2)");
        let n = Notification::hold_timer_expired();
        assert_eq!(n.to_string(), "Hold Timer Expired / Unspecific (4/0)");
        let n = Notification::new(3, 10, vec![]);
        assert_eq!(
            n.to_string(),
            "UPDATE Message Error / Invalid Network Field (3/10)"
        );
    }

    #[test]
    fn display_falls_back_to_numbers_for_unknown_codes() {
        assert_eq!(
            Notification::new(42, 7, vec![]).to_string(),
            "error code 42 / subcode 7 (42/7)"
        );
        assert_eq!(
            Notification::new(6, 77, vec![]).to_string(),
            "Cease / subcode 77 (6/77)"
        );
    }

    #[test]
    fn administrative_shutdown_carries_the_communication() {
        let n = Notification::administrative_shutdown("maintenance");
        assert_eq!(n.data[0], 11);
        assert_eq!(n.shutdown_communication(), Some("maintenance"));
        assert_eq!(
            n.to_string(),
            "Cease / Administrative Shutdown (6/2): \"maintenance\""
        );
        assert!(Notification::administrative_shutdown("").data.is_empty());
    }

    #[test]
    fn shutdown_communication_longer_than_its_data_is_ignored() {
        let n = Notification::new(6, 2, vec![20, b'a']);
        assert_eq!(n.shutdown_communication(), None);
    }

    #[test]
    fn administrative_shutdown_cuts_long_text_on_a_char_boundary() {
        let text = "é".repeat(200);
        let n = Notification::administrative_shutdown(&text);
        assert_eq!(n.data[0], 254);
        assert_eq!(n.shutdown_communication().unwrap().chars().count(), 127);
    }

    #[test]
    fn hard_reset_wraps_the_original_code_and_subcode() {
        let inner = Notification::cease(Notification::CEASE_PEER_DECONFIGURED);
        let n = Notification::hard_reset(&inner);
        assert_eq!(
            (n.code, n.subcode, n.data.as_slice()),
            (6, 9, &[6u8, 3][..])
        );
        assert!(n.is_hard_reset());
        assert!(!inner.is_hard_reset());
    }

    #[test]
    fn maximum_prefixes_reached_carries_family_and_limit() {
        let n = Notification::maximum_prefixes_reached(super::super::Family::IPV6_UNICAST, 1000);
        assert_eq!(n.data, vec![0, 2, 1, 0, 0, 0x03, 0xe8]);
        assert_eq!(n.subcode, 1);
    }

    #[test]
    fn encoded_data_is_cut_to_fit_the_maximum_message() {
        let n = Notification::new(3, 2, vec![0xaa; 5000]);
        let mut out = Vec::new();
        encode_body(&n, &mut out);
        assert_eq!(out.len(), 4096 - 19);
    }
}
