//! Decoder errors and the NOTIFICATION each one causes (RFC 4271 6, RFC 7606).

/// A NOTIFICATION message (RFC 4271 4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("placeholder")]
    Placeholder,
}
