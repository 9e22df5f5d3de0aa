//! Neighbor Discovery wire format for the router side: Router Advertisement (RFC 4861 4.2)
//! encode and decode with every option we send (SLLA, MTU, Prefix Information, Route
//! Information RFC 4191, RDNSS and DNSSL RFC 8106, PREF64 RFC 8781, captive portal RFC 8910),
//! Router Solicitation decode and validation (RFC 4861 6.1.1), and splitting an RA that
//! would not fit the link MTU. Pure: no sockets, no clock. The ICMPv6 checksum is left zero
//! on encode because the kernel fills it in for raw ICMPv6 sockets.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

/// ICMPv6 type of a Router Solicitation.
pub const ICMPV6_ROUTER_SOLICITATION: u8 = 133;
/// ICMPv6 type of a Router Advertisement.
pub const ICMPV6_ROUTER_ADVERTISEMENT: u8 = 134;
/// Length of the fixed IPv6 header, counted against the link MTU when splitting.
pub const IPV6_HEADER_LEN: usize = 40;
/// Length of the fixed part of a Router Advertisement.
pub const RA_HEADER_LEN: usize = 16;

const OPT_SOURCE_LINK_LAYER_ADDRESS: u8 = 1;
const OPT_PREFIX_INFORMATION: u8 = 3;
const OPT_MTU: u8 = 5;
const OPT_ROUTE_INFORMATION: u8 = 24;
const OPT_RDNSS: u8 = 25;
const OPT_DNSSL: u8 = 31;
const OPT_CAPTIVE_PORTAL: u8 = 37;
const OPT_PREF64: u8 = 38;

/// Why a Neighbor Discovery message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message is {0} bytes, shorter than its fixed part")]
    TooShort(usize),
    #[error("ICMPv6 type {0} is not the expected one")]
    WrongType(u8),
    #[error("ICMPv6 code {0} is not 0")]
    NonZeroCode(u8),
    #[error("hop limit {0} is not 255 (the message did not come from the link)")]
    HopLimit(u8),
    #[error("option at offset {0} has length 0")]
    ZeroLengthOption(usize),
    #[error("option at offset {0} runs past the end of the message")]
    TruncatedOption(usize),
    #[error("option type {kind} at offset {offset} has an invalid length or content")]
    MalformedOption { kind: u8, offset: usize },
    #[error("a solicitation from the unspecified address carries a source link-layer address")]
    SllaFromUnspecified,
    #[error("source address {0} is not link-local")]
    SourceNotLinkLocal(Ipv6Addr),
}

/// Default Router Preference (RFC 4191 2.1), two bits of the RA header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouterPreference {
    Low,
    #[default]
    Medium,
    High,
}

impl RouterPreference {
    fn bits(self) -> u8 {
        match self {
            RouterPreference::High => 0b01,
            RouterPreference::Medium => 0b00,
            RouterPreference::Low => 0b11,
        }
    }

    /// The reserved value 10 is treated as medium, as RFC 4191 2.2 says receivers must.
    fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0b01 => RouterPreference::High,
            0b11 => RouterPreference::Low,
            _ => RouterPreference::Medium,
        }
    }
}

/// Prefix Information option (RFC 4861 4.6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixInformation {
    pub prefix: Ipv6Net,
    /// L flag: AdvOnLinkFlag.
    pub on_link: bool,
    /// A flag: AdvAutonomousFlag.
    pub autonomous: bool,
    /// AdvValidLifetime, seconds (0xffffffff = infinity).
    pub valid_lifetime: u32,
    /// AdvPreferredLifetime, seconds (0xffffffff = infinity).
    pub preferred_lifetime: u32,
}

/// Route Information option (RFC 4191 2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInformation {
    pub prefix: Ipv6Net,
    pub preference: RouterPreference,
    /// Route Lifetime, seconds (0xffffffff = infinity).
    pub lifetime: u32,
}

/// One Neighbor Discovery option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NdOption {
    /// Source Link-Layer Address (RFC 4861 4.6.1).
    SourceLinkLayerAddress(Vec<u8>),
    /// MTU (RFC 4861 4.6.4): AdvLinkMTU.
    Mtu(u32),
    PrefixInformation(PrefixInformation),
    RouteInformation(RouteInformation),
    /// Recursive DNS Server (RFC 8106 5.1).
    Rdnss {
        lifetime: u32,
        servers: Vec<Ipv6Addr>,
    },
    /// DNS Search List (RFC 8106 5.2), domain names without the trailing dot.
    Dnssl {
        lifetime: u32,
        domains: Vec<String>,
    },
    /// PREF64 (RFC 8781): the NAT64 prefix; `lifetime` is in seconds, sent in units of 8 s.
    Pref64 {
        lifetime: u16,
        prefix: Ipv6Net,
    },
    /// Captive-Portal (RFC 8910): the API URI.
    CaptivePortal(String),
    /// Any other option, kept as its type and the bytes after the length octet.
    Unknown {
        kind: u8,
        data: Vec<u8>,
    },
}

/// A Router Advertisement message (RFC 4861 4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterAdvertisement {
    /// AdvCurHopLimit.
    pub cur_hop_limit: u8,
    /// M flag: AdvManagedFlag.
    pub managed: bool,
    /// O flag: AdvOtherConfigFlag.
    pub other_config: bool,
    /// Prf (RFC 4191): AdvDefaultPreference.
    pub preference: RouterPreference,
    /// AdvDefaultLifetime, seconds.
    pub router_lifetime: u16,
    /// AdvReachableTime, milliseconds.
    pub reachable_time: u32,
    /// AdvRetransTimer, milliseconds.
    pub retrans_timer: u32,
    pub options: Vec<NdOption>,
}

/// A validated Router Solicitation (RFC 4861 4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterSolicitation {
    pub source_link_layer_address: Option<Vec<u8>>,
}

impl NdOption {
    /// Whether a split RA repeats this option in every part, and if so its rank: when even
    /// the repeated options do not fit, the highest rank is the first to be spread instead
    /// (see [`RouterAdvertisement::split`]).
    fn repeat_rank(&self) -> Option<u8> {
        match self {
            NdOption::SourceLinkLayerAddress(_) => Some(0),
            NdOption::Mtu(_) => Some(1),
            NdOption::Rdnss { .. } => Some(2),
            NdOption::Dnssl { .. } => Some(3),
            NdOption::Pref64 { .. } => Some(4),
            NdOption::CaptivePortal(_) => Some(5),
            NdOption::PrefixInformation(_)
            | NdOption::RouteInformation(_)
            | NdOption::Unknown { .. } => None,
        }
    }

    /// Where a given-up repeated option goes among the spread ones: DNSSL then RDNSS last.
    fn given_up_last(&self) -> u8 {
        match self {
            NdOption::Dnssl { .. } => 1,
            NdOption::Rdnss { .. } => 2,
            _ => 0,
        }
    }

    /// The encoded length in bytes (a multiple of 8).
    pub fn encoded_len(&self) -> usize {
        let body = match self {
            NdOption::SourceLinkLayerAddress(mac) => mac.len(),
            NdOption::Mtu(_) => 6,
            NdOption::PrefixInformation(_) => 30,
            NdOption::RouteInformation(_) => 22,
            NdOption::Rdnss { servers, .. } => 6 + 16 * servers.len(),
            NdOption::Dnssl { domains, .. } => {
                6 + domains.iter().map(|d| dns_name_len(d)).sum::<usize>()
            }
            NdOption::Pref64 { .. } => 14,
            NdOption::CaptivePortal(uri) => uri.len(),
            NdOption::Unknown { data, .. } => data.len(),
        };
        (2 + body).div_ceil(8) * 8
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let len = self.encoded_len();
        let kind = match self {
            NdOption::SourceLinkLayerAddress(_) => OPT_SOURCE_LINK_LAYER_ADDRESS,
            NdOption::Mtu(_) => OPT_MTU,
            NdOption::PrefixInformation(_) => OPT_PREFIX_INFORMATION,
            NdOption::RouteInformation(_) => OPT_ROUTE_INFORMATION,
            NdOption::Rdnss { .. } => OPT_RDNSS,
            NdOption::Dnssl { .. } => OPT_DNSSL,
            NdOption::Pref64 { .. } => OPT_PREF64,
            NdOption::CaptivePortal(_) => OPT_CAPTIVE_PORTAL,
            NdOption::Unknown { kind, .. } => *kind,
        };
        out.push(kind);
        out.push((len / 8) as u8);
        match self {
            NdOption::SourceLinkLayerAddress(mac) => out.extend_from_slice(mac),
            NdOption::Mtu(mtu) => {
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&mtu.to_be_bytes());
            }
            NdOption::PrefixInformation(pi) => {
                out.push(pi.prefix.prefix_len());
                out.push(u8::from(pi.on_link) << 7 | u8::from(pi.autonomous) << 6);
                out.extend_from_slice(&pi.valid_lifetime.to_be_bytes());
                out.extend_from_slice(&pi.preferred_lifetime.to_be_bytes());
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(&pi.prefix.network().octets());
            }
            NdOption::RouteInformation(ri) => {
                // Always the 24-byte form, as radvd sends it; RFC 4191 allows it for any length.
                out.push(ri.prefix.prefix_len());
                out.push(ri.preference.bits() << 3);
                out.extend_from_slice(&ri.lifetime.to_be_bytes());
                out.extend_from_slice(&ri.prefix.network().octets());
            }
            NdOption::Rdnss { lifetime, servers } => {
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&lifetime.to_be_bytes());
                for server in servers {
                    out.extend_from_slice(&server.octets());
                }
            }
            NdOption::Dnssl { lifetime, domains } => {
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&lifetime.to_be_bytes());
                for domain in domains {
                    encode_dns_name(domain, out);
                }
            }
            NdOption::Pref64 { lifetime, prefix } => {
                let scaled = lifetime.div_ceil(8).min(0x1fff);
                let plc = pref64_plc(prefix.prefix_len()).unwrap_or(0);
                out.extend_from_slice(&(scaled << 3 | u16::from(plc)).to_be_bytes());
                out.extend_from_slice(&prefix.network().octets()[..12]);
            }
            NdOption::CaptivePortal(uri) => out.extend_from_slice(uri.as_bytes()),
            NdOption::Unknown { data, .. } => out.extend_from_slice(data),
        }
        out.resize(start + len, 0);
    }

    fn decode(kind: u8, offset: usize, body: &[u8]) -> Result<NdOption, DecodeError> {
        let malformed = DecodeError::MalformedOption { kind, offset };
        let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let addr = |b: &[u8]| {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&b[..16]);
            Ipv6Addr::from(octets)
        };
        // `body` is everything after the type and length octets.
        Ok(match kind {
            OPT_SOURCE_LINK_LAYER_ADDRESS => {
                // Ethernet: 6 bytes of address, the rest padding.
                let mac = if body.len() == 6 { body } else { &body[..6] };
                NdOption::SourceLinkLayerAddress(mac.to_vec())
            }
            OPT_MTU if body.len() == 6 => NdOption::Mtu(be32(&body[2..])),
            OPT_PREFIX_INFORMATION if body.len() == 30 => {
                let prefix =
                    Ipv6Net::new(addr(&body[14..]), body[0]).map_err(|_| malformed.clone())?;
                NdOption::PrefixInformation(PrefixInformation {
                    // RFC 4861 4.6.2: bits past the prefix length are ignored by the receiver.
                    prefix: prefix.trunc(),
                    on_link: body[1] & 0x80 != 0,
                    autonomous: body[1] & 0x40 != 0,
                    valid_lifetime: be32(&body[2..]),
                    preferred_lifetime: be32(&body[6..]),
                })
            }
            OPT_ROUTE_INFORMATION if matches!(body.len(), 6 | 14 | 22) => {
                let plen = body[0];
                // RFC 4191 2.3: the length must be large enough for the prefix length.
                let needed = match plen {
                    0 => 6,
                    1..=64 => 14,
                    65..=128 => 22,
                    _ => return Err(malformed),
                };
                if body.len() < needed {
                    return Err(malformed);
                }
                let mut octets = [0u8; 16];
                octets[..body.len() - 6].copy_from_slice(&body[6..]);
                let prefix =
                    Ipv6Net::new(Ipv6Addr::from(octets), plen).map_err(|_| malformed.clone())?;
                NdOption::RouteInformation(RouteInformation {
                    prefix: prefix.trunc(),
                    preference: RouterPreference::from_bits(body[1] >> 3),
                    lifetime: be32(&body[2..]),
                })
            }
            OPT_RDNSS if body.len() >= 22 && (body.len() - 6).is_multiple_of(16) => {
                NdOption::Rdnss {
                    lifetime: be32(&body[2..]),
                    servers: body[6..].chunks(16).map(addr).collect(),
                }
            }
            OPT_DNSSL if body.len() >= 14 => NdOption::Dnssl {
                lifetime: be32(&body[2..]),
                // RFC 8106 5.2: one or more domain names; padding alone is malformed.
                domains: decode_dns_names(&body[6..])
                    .filter(|names| !names.is_empty())
                    .ok_or(malformed)?,
            },
            OPT_PREF64 if body.len() == 14 => {
                let word = u16::from_be_bytes([body[0], body[1]]);
                let plen = match word & 0b111 {
                    0 => 96,
                    1 => 64,
                    2 => 56,
                    3 => 48,
                    4 => 40,
                    5 => 32,
                    _ => return Err(malformed),
                };
                let mut octets = [0u8; 16];
                octets[..12].copy_from_slice(&body[2..]);
                NdOption::Pref64 {
                    lifetime: (word >> 3) * 8,
                    prefix: Ipv6Net::new(Ipv6Addr::from(octets), plen)
                        .map_err(|_| malformed.clone())?
                        .trunc(),
                }
            }
            OPT_CAPTIVE_PORTAL => {
                let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                let uri = std::str::from_utf8(&body[..end]).map_err(|_| malformed)?;
                NdOption::CaptivePortal(uri.to_string())
            }
            OPT_MTU
            | OPT_PREFIX_INFORMATION
            | OPT_ROUTE_INFORMATION
            | OPT_RDNSS
            | OPT_DNSSL
            | OPT_PREF64 => return Err(malformed),
            _ => NdOption::Unknown {
                kind,
                data: body.to_vec(),
            },
        })
    }
}

/// The PREF64 Prefix Length Code (RFC 8781 4) for a prefix length, if it has one.
pub fn pref64_plc(prefix_len: u8) -> Option<u8> {
    match prefix_len {
        96 => Some(0),
        64 => Some(1),
        56 => Some(2),
        48 => Some(3),
        40 => Some(4),
        32 => Some(5),
        _ => None,
    }
}

/// Encoded length of a domain name in DNS wire format (RFC 1035 3.1), root label included.
pub fn dns_name_len(name: &str) -> usize {
    name.trim_end_matches('.')
        .split('.')
        .filter(|label| !label.is_empty())
        .map(|label| 1 + label.len())
        .sum::<usize>()
        + 1
}

fn encode_dns_name(name: &str, out: &mut Vec<u8>) {
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// Domain names from a DNSSL option's body; trailing zero padding ends the list.
fn decode_dns_names(mut data: &[u8]) -> Option<Vec<String>> {
    let mut names = Vec::new();
    while data.first().is_some_and(|&b| b != 0) {
        let mut labels = Vec::new();
        loop {
            let (&len, rest) = data.split_first()?;
            data = rest;
            if len == 0 {
                break;
            }
            if len > 63 || data.len() < len as usize {
                return None;
            }
            let label = std::str::from_utf8(&data[..len as usize]).ok()?;
            // A dot inside a label has no unescaped text form: "a.b" would read as two.
            if label.contains('.') {
                return None;
            }
            labels.push(label.to_string());
            data = &data[len as usize..];
        }
        names.push(labels.join("."));
    }
    data.iter().all(|&b| b == 0).then_some(names)
}

/// Walks the options after a fixed header, checking lengths (RFC 4861 6.1: every option's
/// length must be greater than zero and the options must end with the message).
fn decode_options(msg: &[u8], mut offset: usize) -> Result<Vec<NdOption>, DecodeError> {
    let mut options = Vec::new();
    while offset < msg.len() {
        if msg.len() - offset < 2 {
            return Err(DecodeError::TruncatedOption(offset));
        }
        let kind = msg[offset];
        let len = msg[offset + 1] as usize * 8;
        if len == 0 {
            return Err(DecodeError::ZeroLengthOption(offset));
        }
        if offset + len > msg.len() {
            return Err(DecodeError::TruncatedOption(offset));
        }
        options.push(NdOption::decode(
            kind,
            offset,
            &msg[offset + 2..offset + len],
        )?);
        offset += len;
    }
    Ok(options)
}

impl RouterAdvertisement {
    /// The ICMPv6 message, checksum zero (the kernel computes it).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&[ICMPV6_ROUTER_ADVERTISEMENT, 0, 0, 0, self.cur_hop_limit]);
        out.push(
            u8::from(self.managed) << 7
                | u8::from(self.other_config) << 6
                | self.preference.bits() << 3,
        );
        out.extend_from_slice(&self.router_lifetime.to_be_bytes());
        out.extend_from_slice(&self.reachable_time.to_be_bytes());
        out.extend_from_slice(&self.retrans_timer.to_be_bytes());
        for option in &self.options {
            option.encode(&mut out);
        }
        out
    }

    /// Length of the ICMPv6 message in bytes.
    pub fn encoded_len(&self) -> usize {
        RA_HEADER_LEN
            + self
                .options
                .iter()
                .map(NdOption::encoded_len)
                .sum::<usize>()
    }

    /// Decodes an RA's ICMPv6 bytes, checking the code and option lengths (RFC 4861 6.1.2;
    /// the hop limit and source address checks are [`validate_received_ra`]'s).
    pub fn decode(msg: &[u8]) -> Result<RouterAdvertisement, DecodeError> {
        if msg.len() < RA_HEADER_LEN {
            return Err(DecodeError::TooShort(msg.len()));
        }
        if msg[0] != ICMPV6_ROUTER_ADVERTISEMENT {
            return Err(DecodeError::WrongType(msg[0]));
        }
        if msg[1] != 0 {
            return Err(DecodeError::NonZeroCode(msg[1]));
        }
        let be32 = |i: usize| u32::from_be_bytes([msg[i], msg[i + 1], msg[i + 2], msg[i + 3]]);
        Ok(RouterAdvertisement {
            cur_hop_limit: msg[4],
            managed: msg[5] & 0x80 != 0,
            other_config: msg[5] & 0x40 != 0,
            preference: RouterPreference::from_bits(msg[5] >> 3),
            router_lifetime: u16::from_be_bytes([msg[6], msg[7]]),
            reachable_time: be32(8),
            retrans_timer: be32(12),
            options: decode_options(msg, RA_HEADER_LEN)?,
        })
    }

    /// Splits this RA into RAs that each fit in `link_mtu` bytes of IPv6 packet (RFC 4861
    /// 6.2.3: never fragmented), each of which stands on its own for a client that keeps only
    /// a router's latest RA (dhcpcd 9). The rule, documented in docs/ra.md:
    ///
    /// - every part repeats the header and the options a client needs together: source
    ///   link-layer address, MTU, RDNSS, DNSSL, PREF64 and captive portal, and all the Prefix
    ///   Information options when they fit beside those and the largest spread option;
    /// - the rest (Route Information, unknown options, the prefixes when they do not all fit)
    ///   is spread over the parts in order, each part filled before the next one starts;
    /// - should the repeated options not leave room for the largest spread option (only with
    ///   near-maximal DNS lists or captive-portal URIs), repeating is given up one option at a
    ///   time, captive portal first, then PREF64, DNSSL, RDNSS, MTU and source link-layer
    ///   address; what is given up is spread after the rest, DNSSL and then RDNSS last, so
    ///   that the last part still carries the name servers.
    ///
    /// Options keep their order within each part. An option too large for any part on its
    /// own still goes out, alone (configuration validation keeps every option under the IPv6
    /// minimum MTU).
    pub fn split(&self, link_mtu: usize) -> Vec<RouterAdvertisement> {
        let budget = link_mtu.saturating_sub(IPV6_HEADER_LEN);
        if self.encoded_len() <= budget {
            return vec![self.clone()];
        }
        let len = |indices: &[usize]| -> usize {
            indices.iter().map(|&i| self.options[i].encoded_len()).sum()
        };
        let indices = |keep: fn(&NdOption) -> bool| -> Vec<usize> {
            (0..self.options.len())
                .filter(|&i| keep(&self.options[i]))
                .collect()
        };
        let mut repeated = indices(|o| o.repeat_rank().is_some());
        let prefixes = indices(|o| matches!(o, NdOption::PrefixInformation(_)));
        let others =
            indices(|o| o.repeat_rank().is_none() && !matches!(o, NdOption::PrefixInformation(_)));
        let mut given_up: Vec<usize> = Vec::new();
        let mut repeat_prefixes = true;
        let (fixed, spread) = loop {
            let mut fixed = repeated.clone();
            if repeat_prefixes {
                fixed.extend(&prefixes);
            }
            let base = RA_HEADER_LEN + len(&fixed);
            let mut spread: Vec<usize> = Vec::new();
            if !repeat_prefixes {
                spread.extend(&prefixes);
            }
            spread.extend(&others);
            // Given up: the others in message order, then DNSSL, then RDNSS, so that the last
            // part carries the name servers (and the search list beside them if it can).
            let mut tail = given_up.clone();
            tail.sort_by_key(|&i| (self.options[i].given_up_last(), i));
            spread.extend(tail);
            let largest = spread
                .iter()
                .map(|&i| self.options[i].encoded_len())
                .max()
                .unwrap_or(0);
            if base + largest <= budget {
                break (fixed, spread);
            }
            if repeat_prefixes {
                repeat_prefixes = false;
                continue;
            }
            let least = repeated
                .iter()
                .enumerate()
                .max_by_key(|&(_, &i)| self.options[i].repeat_rank())
                .map(|(at, _)| at);
            match least {
                Some(at) => given_up.push(repeated.remove(at)),
                None => break (fixed, spread),
            }
        };
        let room = budget.saturating_sub(RA_HEADER_LEN + len(&fixed));
        let mut parts: Vec<Vec<usize>> = vec![Vec::new()];
        for i in spread {
            let current = parts.last_mut().expect("parts is never empty");
            if !current.is_empty() && len(current) + self.options[i].encoded_len() > room {
                parts.push(vec![i]);
            } else {
                current.push(i);
            }
        }
        parts
            .into_iter()
            .map(|mut part| {
                part.extend(&fixed);
                part.sort_unstable();
                RouterAdvertisement {
                    options: part.iter().map(|&i| self.options[i].clone()).collect(),
                    ..self.clone()
                }
            })
            .collect()
    }
}

/// RFC 4861 6.1.2 checks on an RA received from another router: hop limit 255 and a
/// link-local source (the decoder checks the code and the options).
pub fn validate_received_ra(
    msg: &[u8],
    source: Ipv6Addr,
    hop_limit: u8,
) -> Result<RouterAdvertisement, DecodeError> {
    if hop_limit != 255 {
        return Err(DecodeError::HopLimit(hop_limit));
    }
    if !source.is_unicast_link_local() {
        return Err(DecodeError::SourceNotLinkLocal(source));
    }
    RouterAdvertisement::decode(msg)
}

impl RouterSolicitation {
    /// Decodes and validates a Router Solicitation (RFC 4861 6.1.1): hop limit 255, code 0,
    /// at least 8 bytes, every option longer than zero, and no source link-layer address
    /// option when the source is the unspecified address. The checksum is the kernel's.
    pub fn decode(
        msg: &[u8],
        source: Ipv6Addr,
        hop_limit: u8,
    ) -> Result<RouterSolicitation, DecodeError> {
        if hop_limit != 255 {
            return Err(DecodeError::HopLimit(hop_limit));
        }
        if msg.len() < 8 {
            return Err(DecodeError::TooShort(msg.len()));
        }
        if msg[0] != ICMPV6_ROUTER_SOLICITATION {
            return Err(DecodeError::WrongType(msg[0]));
        }
        if msg[1] != 0 {
            return Err(DecodeError::NonZeroCode(msg[1]));
        }
        let mut source_link_layer_address = None;
        for option in decode_options(msg, 8)? {
            if let NdOption::SourceLinkLayerAddress(mac) = option {
                if source.is_unspecified() {
                    return Err(DecodeError::SllaFromUnspecified);
                }
                source_link_layer_address = Some(mac);
            }
        }
        Ok(RouterSolicitation {
            source_link_layer_address,
        })
    }
}
