//! Prefixes as NLRI encodes them (RFC 4271 4.3, RFC 4760 5): a length in bits, then just
//! enough octets. Host bits beyond the length are masked off on decode (the prefix is
//! kept, truncated) and never encoded.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use nom::IResult;
use nom::bytes::complete::take;
use nom::number::complete::be_u8;

/// Why a prefix list could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NlriError {
    /// The length octet exceeds the family's address size.
    PrefixTooLong,
    /// The prefix needs more octets than remain.
    Truncated,
}

impl NlriError {
    pub(super) fn reason(self) -> &'static str {
        match self {
            NlriError::PrefixTooLong => "prefix length exceeds the address size",
            NlriError::Truncated => "prefix runs past the end of its field",
        }
    }
}

/// One prefix of at most `max_len` bits, as the address octets padded to `N`.
fn prefix<const N: usize>(input: &[u8]) -> Result<(&[u8], [u8; N], u8), NlriError> {
    let (input, len) = be_u8::<_, ()>(input).map_err(|_| NlriError::Truncated)?;
    if usize::from(len) > N * 8 {
        return Err(NlriError::PrefixTooLong);
    }
    let octets = usize::from(len).div_ceil(8);
    let taken: IResult<&[u8], &[u8], ()> = take(octets)(input);
    let (input, bytes) = taken.map_err(|_| NlriError::Truncated)?;
    let mut addr = [0u8; N];
    addr[..octets].copy_from_slice(bytes);
    Ok((input, addr, len))
}

/// A whole field of IPv4 prefixes (Withdrawn Routes, NLRI, or MP NLRI for AFI 1).
pub(super) fn decode_ipv4(mut input: &[u8]) -> Result<Vec<Ipv4Net>, NlriError> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (rest, addr, len) = prefix::<4>(input)?;
        input = rest;
        let net = Ipv4Net::new(Ipv4Addr::from(addr), len).map_err(|_| NlriError::PrefixTooLong)?;
        out.push(net.trunc());
    }
    Ok(out)
}

/// A whole field of IPv6 prefixes (MP NLRI for AFI 2).
pub(super) fn decode_ipv6(mut input: &[u8]) -> Result<Vec<Ipv6Net>, NlriError> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (rest, addr, len) = prefix::<16>(input)?;
        input = rest;
        let net = Ipv6Net::new(Ipv6Addr::from(addr), len).map_err(|_| NlriError::PrefixTooLong)?;
        out.push(net.trunc());
    }
    Ok(out)
}

/// Appends one prefix of either family.
pub(super) fn encode(net: &IpNet, out: &mut Vec<u8>) {
    let len = net.prefix_len();
    let octets = usize::from(len).div_ceil(8);
    out.push(len);
    match net.trunc() {
        IpNet::V4(n) => out.extend_from_slice(&n.addr().octets()[..octets]),
        IpNet::V6(n) => out.extend_from_slice(&n.addr().octets()[..octets]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::net;

    #[test]
    fn ipv4_prefixes_use_only_the_octets_their_length_needs() {
        let mut out = Vec::new();
        for n in ["10.244.1.0/24", "0.0.0.0/0", "192.0.2.7/32", "10.128.0.0/9"] {
            encode(&net(n), &mut out);
        }
        assert_eq!(out, [24, 10, 244, 1, 0, 32, 192, 0, 2, 7, 9, 10, 128]);
        let decoded = decode_ipv4(&out).unwrap();
        assert_eq!(
            decoded.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            ["10.244.1.0/24", "0.0.0.0/0", "192.0.2.7/32", "10.128.0.0/9"]
        );
    }

    #[test]
    fn ipv6_prefixes_round_trip() {
        let mut out = Vec::new();
        encode(&net("fd00:ff00:1::/64"), &mut out);
        encode(&net("2001:db8::1/128"), &mut out);
        assert_eq!(out[..9], [64, 0xfd, 0, 0xff, 0, 0, 1, 0, 0]);
        assert_eq!(out.len(), 9 + 17);
        let decoded = decode_ipv6(&out).unwrap();
        assert_eq!(decoded[0].to_string(), "fd00:ff00:1::/64");
        assert_eq!(decoded[1].to_string(), "2001:db8::1/128");
    }

    #[test]
    fn host_bits_are_masked_off() {
        assert_eq!(
            decode_ipv4(&[23, 10, 244, 1]).unwrap()[0].to_string(),
            "10.244.0.0/23"
        );
        let mut out = Vec::new();
        encode(&net("10.244.1.9/23"), &mut out);
        assert_eq!(out, [23, 10, 244, 0]);
    }

    #[test]
    fn prefix_longer_than_the_address_is_rejected() {
        assert_eq!(
            decode_ipv4(&[33, 1, 2, 3, 4, 5]),
            Err(NlriError::PrefixTooLong)
        );
        let mut v6 = vec![129];
        v6.extend([0; 17]);
        assert_eq!(decode_ipv6(&v6), Err(NlriError::PrefixTooLong));
    }

    #[test]
    fn truncated_prefix_is_rejected() {
        assert_eq!(decode_ipv4(&[24, 10, 244]), Err(NlriError::Truncated));
        assert_eq!(decode_ipv6(&[64, 0xfd]), Err(NlriError::Truncated));
    }
}
