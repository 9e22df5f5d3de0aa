//! Netlink message framing, the one home of it: the 16-byte header, attributes padded to 4
//! bytes, splitting a datagram into its messages, and the message types and flags the FIB
//! and its monitor use. Pure: bytes in, bytes out, no socket.

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
pub const RTM_NEWNEXTHOP: u16 = 104;
pub const RTM_DELNEXTHOP: u16 = 105;
pub const RTM_GETNEXTHOP: u16 = 106;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_DUMP: u16 = 0x300;

/// The size of `struct nlmsghdr`.
pub const HEADER: usize = 16;

/// Appends a netlink header; returns where the message starts (for [`finish`]).
pub fn header(out: &mut Vec<u8>, kind: u16, flags: u16, seq: u32) -> usize {
    let start = out.len();
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    start
}

/// Appends one attribute, padded to 4 bytes.
pub fn attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Writes the length of the message that starts at `start`.
pub fn finish(out: &mut [u8], start: usize) {
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// The flags of the message at the start of `message`.
pub fn flags(message: &[u8]) -> u16 {
    u16::from_ne_bytes([message[6], message[7]])
}

/// Sets the flags of the message at the start of `message`.
pub fn set_flags(message: &mut [u8], flags: u16) {
    message[6..8].copy_from_slice(&flags.to_ne_bytes());
}

/// The sequence number of the message at the start of `message`.
pub fn seq(message: &[u8]) -> u32 {
    u32::from_ne_bytes(message[8..12].try_into().unwrap())
}

/// One netlink message of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: u16,
    /// The sender's port (`nlmsg_pid`): 0 for the kernel's own, the requester's for the
    /// events a request caused.
    pub port: u32,
    /// What follows the header.
    pub payload: &'a [u8],
}

/// The netlink messages in `bytes`; a cut message ends the walk.
pub fn messages(mut bytes: &[u8]) -> impl Iterator<Item = Message<'_>> {
    std::iter::from_fn(move || {
        let header = bytes.get(..HEADER)?;
        let len = u32::from_ne_bytes(header[..4].try_into().ok()?) as usize;
        if len < HEADER || len > bytes.len() {
            return None;
        }
        let message = Message {
            kind: u16::from_ne_bytes([header[4], header[5]]),
            port: u32::from_ne_bytes(header[12..16].try_into().ok()?),
            payload: &bytes[HEADER..len],
        };
        bytes = &bytes[len.next_multiple_of(4).min(bytes.len())..];
        Some(message)
    })
}

/// The errno of an NLMSG_ERROR payload (0 for an acknowledgement) and the request it
/// echoes.
pub fn error(payload: &[u8]) -> Option<(i32, &[u8])> {
    let code = i32::from_ne_bytes(payload.get(..4)?.try_into().ok()?);
    Some((-code, &payload[4..]))
}

/// The attributes in `bytes` as (kind, value), kind without the nested/byte-order bits.
pub fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if bytes.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([bytes[0], bytes[1]]) as usize;
        let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & 0x3fff;
        if len < 4 || len > bytes.len() {
            return None;
        }
        let value = &bytes[4..len];
        bytes = &bytes[len.next_multiple_of(4).min(bytes.len())..];
        Some((kind, value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_split_at_their_aligned_lengths_with_type_and_port() {
        let mut bytes = Vec::new();
        let a = header(&mut bytes, 2, 0, 1);
        bytes.extend_from_slice(&[1, 2, 3]);
        finish(&mut bytes, a);
        bytes.push(0); // padding
        let b = header(&mut bytes, 3, 0, 2);
        finish(&mut bytes, b);
        bytes[b + 12..b + 16].copy_from_slice(&777u32.to_ne_bytes());
        let got: Vec<(u16, u32, Vec<u8>)> = messages(&bytes)
            .map(|m| (m.kind, m.port, m.payload.to_vec()))
            .collect();
        assert_eq!(got, vec![(2, 0, vec![1, 2, 3]), (3, 777, vec![])]);
        assert_eq!(
            messages(&bytes[..bytes.len() - 1]).count(),
            1,
            "a cut message is not read"
        );
    }

    #[test]
    fn attributes_are_padded_and_read_back() {
        let mut bytes = Vec::new();
        attr(&mut bytes, 1, &[9, 9, 9]);
        attr(&mut bytes, 0x8002, &[7; 4]);
        assert_eq!(bytes.len(), 16);
        let got: Vec<(u16, Vec<u8>)> = attributes(&bytes).map(|(k, v)| (k, v.to_vec())).collect();
        assert_eq!(got, vec![(1, vec![9, 9, 9]), (2, vec![7; 4])]);
    }

    #[test]
    fn flags_and_sequence_numbers_are_read_and_set_in_place() {
        let mut bytes = Vec::new();
        let start = header(&mut bytes, RTM_NEWROUTE, NLM_F_REQUEST, 42);
        finish(&mut bytes, start);
        let with_ack = flags(&bytes) | NLM_F_ACK;
        set_flags(&mut bytes, with_ack);
        assert_eq!(flags(&bytes), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(seq(&bytes), 42);
    }
}
