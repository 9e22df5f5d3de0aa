//! The message header (RFC 4271 4.1 and 6.1) and the top-level `decode` / `encode`:
//! framing one message off a byte stream, checking marker, length and type, and handing
//! the body to the decoder for its type. KEEPALIVE and ROUTE-REFRESH (RFC 2918) live
//! here, having no body worth a module.

use super::{
    Context, DecodeError, Family, HEADER_LEN, MARKER, MAX_MESSAGE_LEN, Message, RouteRefresh,
    notification, open, update,
};

/// Message type codes (RFC 4271 4.1, RFC 2918 3).
pub const OPEN: u8 = 1;
pub const UPDATE: u8 = 2;
pub const NOTIFICATION: u8 = 3;
pub const KEEPALIVE: u8 = 4;
pub const ROUTE_REFRESH: u8 = 5;

impl Message {
    /// The message type code of the header.
    pub fn message_type(&self) -> u8 {
        match self {
            Message::Open(_) => OPEN,
            Message::Update(_) => UPDATE,
            Message::Notification(_) => NOTIFICATION,
            Message::Keepalive => KEEPALIVE,
            Message::RouteRefresh(_) => ROUTE_REFRESH,
        }
    }
}

/// Whether `length` is allowed for a message of `message_type` (RFC 4271 4.2-4.5, 6.1;
/// RFC 2918 3); `None` for a type we do not know.
fn length_fits(message_type: u8, length: usize) -> Option<bool> {
    Some(match message_type {
        OPEN => length >= HEADER_LEN + 10,
        UPDATE => length >= HEADER_LEN + 4,
        NOTIFICATION => length >= HEADER_LEN + 2,
        KEEPALIVE => length == HEADER_LEN,
        ROUTE_REFRESH => length == HEADER_LEN + 4,
        _ => return None,
    })
}

/// Splits one message off the front of `buf`. `Ok(None)` means more bytes are needed;
/// otherwise the message and the number of bytes it took. Header errors are reported as
/// soon as the bytes that show them have arrived.
pub fn decode(buf: &[u8], ctx: &Context) -> Result<Option<(Message, usize)>, DecodeError> {
    let seen = buf.len().min(MARKER.len());
    if buf[..seen] != MARKER[..seen] {
        return Err(DecodeError::ConnectionNotSynchronized);
    }
    let [.., l0, l1, message_type] = match buf.get(..HEADER_LEN) {
        Some(header) => <[u8; HEADER_LEN]>::try_from(header).unwrap_or([0; HEADER_LEN]),
        None => return Ok(None),
    };
    let length_field = u16::from_be_bytes([l0, l1]);
    let length = usize::from(length_field);
    let bad_length = DecodeError::BadMessageLength {
        length: length_field,
    };
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&length) {
        return Err(bad_length);
    }
    match length_fits(message_type, length) {
        None => return Err(DecodeError::BadMessageType { message_type }),
        Some(false) => return Err(bad_length),
        Some(true) => {}
    }
    let Some(message) = buf.get(..length) else {
        return Ok(None);
    };
    let body = &message[HEADER_LEN..];
    let message = match message_type {
        OPEN => Message::Open(open::decode(body)?),
        UPDATE => Message::Update(update::decode(body, ctx)?),
        NOTIFICATION => Message::Notification(notification::decode_body(body)),
        KEEPALIVE => Message::Keepalive,
        _ => Message::RouteRefresh(decode_route_refresh(body)),
    };
    Ok(Some((message, length)))
}

/// AFI, Reserved (the RFC 7313 subtype, ignored) and SAFI; four octets by the length check.
fn decode_route_refresh(body: &[u8]) -> RouteRefresh {
    let octet = |i: usize| body.get(i).copied().unwrap_or(0);
    RouteRefresh {
        family: Family {
            afi: u16::from_be_bytes([octet(0), octet(1)]),
            safi: octet(3),
        },
    }
}

/// The message on the wire. The caller keeps UPDATEs within 4096 octets (a NOTIFICATION's
/// data is cut to fit).
pub fn encode(msg: &Message, ctx: &Context) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 64);
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&[0, 0, msg.message_type()]);
    match msg {
        Message::Open(open) => open::encode(open, &mut out),
        Message::Update(update) => update::encode(update, ctx, &mut out),
        Message::Notification(n) => notification::encode_body(n, &mut out),
        Message::Keepalive => {}
        Message::RouteRefresh(rr) => {
            out.extend_from_slice(&rr.family.afi.to_be_bytes());
            out.push(0);
            out.push(rr.family.safi);
        }
    }
    let length = u16::try_from(out.len()).unwrap_or(u16::MAX);
    out[16..18].copy_from_slice(&length.to_be_bytes());
    out
}
