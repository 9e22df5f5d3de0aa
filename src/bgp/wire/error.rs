//! Decoder errors and the NOTIFICATION each one causes (RFC 4271 6, RFC 4760 7,
//! RFC 7606). Only session resets are errors: RFC 7606 treat-as-withdraw and attribute
//! discard are outcomes recorded in the decoded `Update`.

use std::net::Ipv4Addr;

pub use super::notification::Notification;

/// The BGP version this codec speaks, sent back in Unsupported Version Number.
pub const BGP_VERSION: u8 = 4;

/// Why a message could not be accepted; each one resets the session with
/// [`DecodeError::notification`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message header: marker is not all ones")]
    ConnectionNotSynchronized,
    #[error("message header: bad message length {length}")]
    BadMessageLength { length: u16 },
    #[error("message header: bad message type {message_type}")]
    BadMessageType { message_type: u8 },

    #[error("OPEN: unsupported BGP version {version} (we speak 4)")]
    UnsupportedVersionNumber { version: u8 },
    #[error("OPEN: bad peer AS {asn}")]
    BadPeerAs { asn: u32 },
    #[error("OPEN: bad BGP identifier {identifier}")]
    BadBgpIdentifier { identifier: Ipv4Addr },
    #[error("OPEN: unsupported optional parameter type {parameter_type}")]
    UnsupportedOptionalParameter { parameter_type: u8 },
    #[error("OPEN: unacceptable hold time {hold_time} s (must be 0 or at least 3)")]
    UnacceptableHoldTime { hold_time: u16 },
    #[error("OPEN: malformed optional parameters: {reason}")]
    MalformedOptionalParameters { reason: &'static str },

    #[error("UPDATE: malformed attribute list: {reason}")]
    MalformedAttributeList { reason: &'static str },
    #[error(
        "UPDATE: unrecognized well-known attribute type {}",
        type_code_of(attribute)
    )]
    UnrecognizedWellKnownAttribute {
        /// The whole attribute as received (flags, type, length, value).
        attribute: Vec<u8>,
    },
    #[error(
        "UPDATE: attribute flags error in attribute type {}",
        type_code_of(attribute)
    )]
    AttributeFlagsError { attribute: Vec<u8> },
    #[error(
        "UPDATE: attribute length error in attribute type {}",
        type_code_of(attribute)
    )]
    AttributeLengthError { attribute: Vec<u8> },
    #[error(
        "UPDATE: optional attribute error in attribute type {}: {reason}",
        type_code_of(attribute)
    )]
    OptionalAttributeError {
        reason: &'static str,
        attribute: Vec<u8>,
    },
    #[error("UPDATE: invalid network field: {reason}")]
    InvalidNetworkField { reason: &'static str },
}

fn type_code_of(attribute: &[u8]) -> u8 {
    attribute.get(1).copied().unwrap_or(0)
}

impl DecodeError {
    /// The NOTIFICATION to send before closing the session.
    pub fn notification(&self) -> Notification {
        use DecodeError::*;
        let n = |code, subcode, data| Notification::new(code, subcode, data);
        match self {
            ConnectionNotSynchronized => n(1, Notification::CONNECTION_NOT_SYNCHRONIZED, vec![]),
            BadMessageLength { length } => n(
                1,
                Notification::BAD_MESSAGE_LENGTH,
                length.to_be_bytes().to_vec(),
            ),
            BadMessageType { message_type } => {
                n(1, Notification::BAD_MESSAGE_TYPE, vec![*message_type])
            }
            // RFC 4271 6.2: the data is the largest version we support, as 2 octets.
            UnsupportedVersionNumber { .. } => n(
                2,
                Notification::UNSUPPORTED_VERSION_NUMBER,
                u16::from(BGP_VERSION).to_be_bytes().to_vec(),
            ),
            BadPeerAs { .. } => n(2, Notification::BAD_PEER_AS, vec![]),
            BadBgpIdentifier { .. } => n(2, Notification::BAD_BGP_IDENTIFIER, vec![]),
            UnsupportedOptionalParameter { .. } => {
                n(2, Notification::UNSUPPORTED_OPTIONAL_PARAMETER, vec![])
            }
            UnacceptableHoldTime { .. } => n(2, Notification::UNACCEPTABLE_HOLD_TIME, vec![]),
            MalformedOptionalParameters { .. } => n(2, Notification::UNSPECIFIC, vec![]),
            MalformedAttributeList { .. } => n(3, Notification::MALFORMED_ATTRIBUTE_LIST, vec![]),
            UnrecognizedWellKnownAttribute { attribute } => n(
                3,
                Notification::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                attribute.clone(),
            ),
            AttributeFlagsError { attribute } => {
                n(3, Notification::ATTRIBUTE_FLAGS_ERROR, attribute.clone())
            }
            AttributeLengthError { attribute } => {
                n(3, Notification::ATTRIBUTE_LENGTH_ERROR, attribute.clone())
            }
            OptionalAttributeError { attribute, .. } => {
                n(3, Notification::OPTIONAL_ATTRIBUTE_ERROR, attribute.clone())
            }
            InvalidNetworkField { .. } => n(3, Notification::INVALID_NETWORK_FIELD, vec![]),
        }
    }
}
