//! The OPEN message (RFC 4271 4.2) with its Capabilities optional parameter (RFC 5492),
//! the RFC 9072 extended optional parameters length, and the capabilities we act on.
//! A capability we do not know, or one whose value does not parse, decodes as
//! `Capability::Unknown`: capabilities never make an OPEN fail.

use std::net::Ipv4Addr;

use nom::IResult;
use nom::bytes::complete::take;
use nom::number::complete::{be_u8, be_u16, be_u32};

use super::error::BGP_VERSION;
use super::{
    AS_TRANS, Capability, DecodeError, ExtendedNextHop, Family, GracefulRestart,
    GracefulRestartFamily, Open,
};

/// Optional parameter type 2 (RFC 5492).
const PARAMETER_CAPABILITIES: u8 = 2;
/// RFC 9072: a first parameter type of 255 announces the extended format.
const PARAMETER_EXTENDED_LENGTH: u8 = 255;

const CAPABILITY_MULTIPROTOCOL: u8 = 1;
const CAPABILITY_ROUTE_REFRESH: u8 = 2;
const CAPABILITY_EXTENDED_NEXT_HOP: u8 = 5;
const CAPABILITY_GRACEFUL_RESTART: u8 = 64;
const CAPABILITY_FOUR_OCTET_AS: u8 = 65;

/// Graceful restart flag bits in the first octet (RFC 4724 3, RFC 8538 2).
const GR_RESTART_STATE: u8 = 0x80;
const GR_NOTIFICATION: u8 = 0x40;
/// Per-family flag: forwarding state preserved.
const GR_FORWARDING_PRESERVED: u8 = 0x80;

type Res<'a, T> = IResult<&'a [u8], T, ()>;

impl Open {
    /// The My AS field for `asn`: itself when it fits 2 octets, AS_TRANS otherwise (RFC
    /// 6793 4.1; the real AS then goes in `Capability::FourOctetAs`).
    pub fn my_as_field(asn: u32) -> u16 {
        u16::try_from(asn).unwrap_or(AS_TRANS)
    }

    /// The value of the sender's 4-octet AS capability, if it sent one.
    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(asn) => Some(*asn),
            _ => None,
        })
    }

    /// The sender's AS: its 4-octet AS capability if present, My AS otherwise.
    pub fn asn(&self) -> u32 {
        self.four_octet_as()
            .unwrap_or_else(|| u32::from(self.my_as))
    }

    /// The families of its Multiprotocol capabilities; a sender with none of them
    /// speaks IPv4 unicast only (RFC 4760 8).
    pub fn families(&self) -> Vec<Family> {
        let families: Vec<Family> = self
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(family) => Some(*family),
                _ => None,
            })
            .collect();
        if families.is_empty() {
            vec![Family::IPV4_UNICAST]
        } else {
            families
        }
    }

    /// Its Graceful Restart capability, if it sent one.
    pub fn graceful_restart(&self) -> Option<&GracefulRestart> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::GracefulRestart(gr) => Some(gr),
            _ => None,
        })
    }

    /// Whether it may send `nlri` routes with a next hop of `nexthop_afi` (RFC 8950).
    pub fn extended_next_hop(&self, nlri: Family, nexthop_afi: u16) -> bool {
        self.capabilities.iter().any(|c| match c {
            Capability::ExtendedNextHop(tuples) => tuples
                .iter()
                .any(|t| t.nlri == nlri && t.nexthop_afi == nexthop_afi),
            _ => false,
        })
    }

    /// Whether it sent the Route Refresh capability.
    pub fn route_refresh(&self) -> bool {
        self.capabilities.contains(&Capability::RouteRefresh)
    }
}

fn malformed(reason: &'static str) -> DecodeError {
    DecodeError::MalformedOptionalParameters { reason }
}

/// Decodes the body of an OPEN (after the header; at least 10 octets, which the header
/// check guarantees) and checks the fields RFC 4271 6.2 asks about.
pub(super) fn decode(body: &[u8]) -> Result<Open, DecodeError> {
    let fixed: Res<(u8, u16, u16, u32, u8)> =
        nom::Parser::parse_complete(&mut (be_u8, be_u16, be_u16, be_u32, be_u8), body);
    let (params, (version, my_as, hold_time, identifier, params_len)) =
        fixed.map_err(|_| malformed("OPEN shorter than its fixed fields"))?;
    if version != BGP_VERSION {
        return Err(DecodeError::UnsupportedVersionNumber { version });
    }
    // RFC 7607: AS 0 is never a valid peer AS.
    if my_as == 0 {
        return Err(DecodeError::BadPeerAs { asn: 0 });
    }
    if hold_time == 1 || hold_time == 2 {
        return Err(DecodeError::UnacceptableHoldTime { hold_time });
    }
    // RFC 6286 2.1: any non-zero 32-bit value is a valid identifier.
    let bgp_identifier = Ipv4Addr::from(identifier);
    if identifier == 0 {
        return Err(DecodeError::BadBgpIdentifier {
            identifier: bgp_identifier,
        });
    }
    let capabilities = decode_parameters(params_len, params)?;
    Ok(Open {
        version,
        my_as,
        hold_time,
        bgp_identifier,
        capabilities,
    })
}

/// The optional parameters, which must fill the rest of the message exactly.
fn decode_parameters(params_len: u8, params: &[u8]) -> Result<Vec<Capability>, DecodeError> {
    let extended = params_len != 0 && params.first() == Some(&PARAMETER_EXTENDED_LENGTH);
    let (mut params, length_octets) = if extended {
        let ext: Res<u16> = be_u16(&params[1..]);
        let (rest, ext_len) =
            ext.map_err(|_| malformed("extended optional parameters length missing"))?;
        if usize::from(ext_len) != rest.len() {
            return Err(malformed(
                "optional parameters length disagrees with the message length",
            ));
        }
        (rest, 2)
    } else {
        if usize::from(params_len) != params.len() {
            return Err(malformed(
                "optional parameters length disagrees with the message length",
            ));
        }
        (params, 1)
    };
    let mut capabilities = Vec::new();
    while !params.is_empty() {
        let header: Res<(u8, u16)> = if length_octets == 2 {
            nom::Parser::parse_complete(&mut (be_u8, be_u16), params)
        } else {
            nom::Parser::parse_complete(&mut (be_u8, nom::Parser::map(be_u8, u16::from)), params)
        };
        let (rest, (parameter_type, len)) =
            header.map_err(|_| malformed("truncated optional parameter header"))?;
        let value: Res<&[u8]> = take(len)(rest);
        let (rest, value) = value.map_err(|_| malformed("optional parameter overruns"))?;
        if parameter_type != PARAMETER_CAPABILITIES {
            return Err(DecodeError::UnsupportedOptionalParameter { parameter_type });
        }
        decode_capabilities(value, &mut capabilities)?;
        params = rest;
    }
    Ok(capabilities)
}

fn decode_capabilities(mut input: &[u8], out: &mut Vec<Capability>) -> Result<(), DecodeError> {
    while !input.is_empty() {
        let header: Res<(u8, u8)> = nom::Parser::parse_complete(&mut (be_u8, be_u8), input);
        let (rest, (code, len)) = header.map_err(|_| malformed("truncated capability header"))?;
        let value: Res<&[u8]> = take(len)(rest);
        let (rest, value) = value.map_err(|_| malformed("capability overruns its parameter"))?;
        out.push(decode_capability(code, value));
        input = rest;
    }
    Ok(())
}

fn decode_capability(code: u8, value: &[u8]) -> Capability {
    let known = match code {
        CAPABILITY_MULTIPROTOCOL => match value {
            [a, b, _reserved, safi] => Some(Capability::Multiprotocol(Family {
                afi: u16::from_be_bytes([*a, *b]),
                safi: *safi,
            })),
            _ => None,
        },
        CAPABILITY_ROUTE_REFRESH if value.is_empty() => Some(Capability::RouteRefresh),
        CAPABILITY_EXTENDED_NEXT_HOP if value.len().is_multiple_of(6) => value
            .chunks_exact(6)
            .map(|t| {
                let safi = u16::from_be_bytes([t[2], t[3]]);
                Some(ExtendedNextHop {
                    nlri: Family {
                        afi: u16::from_be_bytes([t[0], t[1]]),
                        safi: u8::try_from(safi).ok()?,
                    },
                    nexthop_afi: u16::from_be_bytes([t[4], t[5]]),
                })
            })
            .collect::<Option<Vec<_>>>()
            .map(Capability::ExtendedNextHop),
        CAPABILITY_GRACEFUL_RESTART => match value {
            [flags, time, families @ ..] if families.len() % 4 == 0 => {
                Some(Capability::GracefulRestart(GracefulRestart {
                    restart_state: flags & GR_RESTART_STATE != 0,
                    notification: flags & GR_NOTIFICATION != 0,
                    restart_time: u16::from_be_bytes([flags & 0x0f, *time]),
                    families: families
                        .chunks_exact(4)
                        .map(|f| GracefulRestartFamily {
                            family: Family {
                                afi: u16::from_be_bytes([f[0], f[1]]),
                                safi: f[2],
                            },
                            forwarding_preserved: f[3] & GR_FORWARDING_PRESERVED != 0,
                        })
                        .collect(),
                }))
            }
            _ => None,
        },
        CAPABILITY_FOUR_OCTET_AS => match value {
            [a, b, c, d] => Some(Capability::FourOctetAs(u32::from_be_bytes([
                *a, *b, *c, *d,
            ]))),
            _ => None,
        },
        _ => None,
    };
    known.unwrap_or_else(|| Capability::Unknown {
        code,
        value: value.to_vec(),
    })
}

/// Appends the body of `open`: all capabilities in one Capabilities parameter, in the
/// RFC 9072 extended format only when they do not fit the classic one.
pub(super) fn encode(open: &Open, out: &mut Vec<u8>) {
    out.push(open.version);
    out.extend_from_slice(&open.my_as.to_be_bytes());
    out.extend_from_slice(&open.hold_time.to_be_bytes());
    out.extend_from_slice(&open.bgp_identifier.octets());
    let mut caps = Vec::new();
    for capability in &open.capabilities {
        encode_capability(capability, &mut caps);
    }
    if caps.is_empty() {
        out.push(0);
    } else if caps.len() + 2 <= usize::from(u8::MAX) {
        out.push(caps.len() as u8 + 2);
        out.push(PARAMETER_CAPABILITIES);
        out.push(caps.len() as u8);
        out.extend_from_slice(&caps);
    } else {
        out.push(PARAMETER_EXTENDED_LENGTH);
        out.push(PARAMETER_EXTENDED_LENGTH);
        out.extend_from_slice(&(caps.len() as u16).wrapping_add(3).to_be_bytes());
        out.push(PARAMETER_CAPABILITIES);
        out.extend_from_slice(&(caps.len() as u16).to_be_bytes());
        out.extend_from_slice(&caps);
    }
}

/// Appends one capability; a value longer than the 255 octets its length field can say
/// is cut (no capability we build comes near).
fn encode_capability(capability: &Capability, out: &mut Vec<u8>) {
    let mut value = Vec::new();
    let code = match capability {
        Capability::Multiprotocol(family) => {
            value.extend_from_slice(&family.afi.to_be_bytes());
            value.push(0);
            value.push(family.safi);
            CAPABILITY_MULTIPROTOCOL
        }
        Capability::RouteRefresh => CAPABILITY_ROUTE_REFRESH,
        Capability::ExtendedNextHop(tuples) => {
            for tuple in tuples {
                value.extend_from_slice(&tuple.nlri.afi.to_be_bytes());
                value.extend_from_slice(&u16::from(tuple.nlri.safi).to_be_bytes());
                value.extend_from_slice(&tuple.nexthop_afi.to_be_bytes());
            }
            CAPABILITY_EXTENDED_NEXT_HOP
        }
        Capability::GracefulRestart(gr) => {
            let mut flags_time = gr.restart_time & 0x0fff;
            if gr.restart_state {
                flags_time |= u16::from(GR_RESTART_STATE) << 8;
            }
            if gr.notification {
                flags_time |= u16::from(GR_NOTIFICATION) << 8;
            }
            value.extend_from_slice(&flags_time.to_be_bytes());
            for f in &gr.families {
                value.extend_from_slice(&f.family.afi.to_be_bytes());
                value.push(f.family.safi);
                value.push(if f.forwarding_preserved {
                    GR_FORWARDING_PRESERVED
                } else {
                    0
                });
            }
            CAPABILITY_GRACEFUL_RESTART
        }
        Capability::FourOctetAs(asn) => {
            value.extend_from_slice(&asn.to_be_bytes());
            CAPABILITY_FOUR_OCTET_AS
        }
        Capability::Unknown { code, value: raw } => {
            value.extend_from_slice(raw);
            *code
        }
    };
    value.truncate(usize::from(u8::MAX));
    out.push(code);
    out.push(value.len() as u8);
    out.extend_from_slice(&value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(capabilities: Vec<Capability>) -> Open {
        Open {
            version: 4,
            my_as: 65100,
            hold_time: 90,
            bgp_identifier: Ipv4Addr::new(192, 0, 2, 1),
            capabilities,
        }
    }

    fn body(open: &Open) -> Vec<u8> {
        let mut out = Vec::new();
        encode(open, &mut out);
        out
    }

    #[test]
    fn graceful_restart_flags_and_time_share_the_first_two_octets() {
        let gr = Capability::GracefulRestart(GracefulRestart {
            restart_state: true,
            notification: true,
            restart_time: 120,
            families: vec![
                GracefulRestartFamily {
                    family: Family::IPV4_UNICAST,
                    forwarding_preserved: true,
                },
                GracefulRestartFamily {
                    family: Family::IPV6_UNICAST,
                    forwarding_preserved: false,
                },
            ],
        });
        let mut out = Vec::new();
        encode_capability(&gr, &mut out);
        assert_eq!(out, [64, 10, 0xc0, 120, 0, 1, 1, 0x80, 0, 2, 1, 0]);
        assert_eq!(decode_capability(64, &out[2..]), gr);
    }

    #[test]
    fn restart_time_keeps_twelve_bits() {
        let cap = decode_capability(64, &[0x4f, 0xff]);
        let Capability::GracefulRestart(gr) = cap else {
            panic!("not graceful restart: {cap:?}")
        };
        assert_eq!(gr.restart_time, 4095);
        assert!(gr.notification);
        assert!(!gr.restart_state);
    }

    #[test]
    fn malformed_known_capabilities_decode_as_unknown() {
        assert_eq!(
            decode_capability(1, &[0, 1, 0]),
            Capability::Unknown {
                code: 1,
                value: vec![0, 1, 0]
            }
        );
        assert_eq!(
            decode_capability(65, &[0, 0, 1]),
            Capability::Unknown {
                code: 65,
                value: vec![0, 0, 1]
            }
        );
        assert!(matches!(
            decode_capability(5, &[0, 1, 1, 0, 0, 2]),
            Capability::Unknown { code: 5, .. }
        ));
        assert!(matches!(
            decode_capability(2, &[1]),
            Capability::Unknown { code: 2, .. }
        ));
    }

    #[test]
    fn several_parameters_and_capabilities_are_all_collected() {
        // Two Capabilities parameters, the first holding two capabilities.
        let mut b = vec![4, 0xfe, 0x4c, 0, 90, 192, 0, 2, 1, 16];
        b.extend([2, 8, 1, 4, 0, 1, 0, 1, 2, 0]);
        b.extend([2, 4, 73, 2, 0xaa, 0xbb]);
        let open = decode(&b).unwrap();
        assert_eq!(
            open.capabilities,
            vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::RouteRefresh,
                Capability::Unknown {
                    code: 73,
                    value: vec![0xaa, 0xbb]
                },
            ]
        );
    }

    #[test]
    fn many_capabilities_use_the_extended_parameters_length() {
        let caps: Vec<Capability> = (0..60)
            .map(|i| Capability::Unknown {
                code: 200,
                value: vec![i; 3],
            })
            .collect();
        let open = open(caps);
        let b = body(&open);
        assert_eq!(&b[9..12], &[255, 255, 1]);
        assert_eq!(b.len(), 9 + 4 + 3 + 60 * 5);
        assert_eq!(decode(&b), Ok(open));
    }

    #[test]
    fn open_without_capabilities_round_trips() {
        let open = open(vec![]);
        let b = body(&open);
        assert_eq!(b, [4, 0xfe, 0x4c, 0, 90, 192, 0, 2, 1, 0]);
        assert_eq!(decode(&b), Ok(open));
    }

    #[test]
    fn open_field_checks_map_to_their_subcodes() {
        let good = body(&open(vec![Capability::RouteRefresh]));
        let with = |i: usize, bytes: &[u8]| {
            let mut b = good.clone();
            b[i..i + bytes.len()].copy_from_slice(bytes);
            decode(&b).unwrap_err().notification()
        };
        let n = with(0, &[3]);
        assert_eq!((n.code, n.subcode, n.data), (2, 1, vec![0, 4]));
        assert_eq!(with(1, &[0, 0]).subcode, 2);
        assert_eq!(with(3, &[0, 1]).subcode, 6);
        assert_eq!(with(3, &[0, 2]).subcode, 6);
        assert_eq!(with(5, &[0, 0, 0, 0]).subcode, 3);
        assert_eq!(with(10, &[1]).subcode, 4);
        assert_eq!(with(9, &[3]).subcode, 0, "parameter length mismatch");
        assert_eq!(with(11, &[1]).subcode, 0, "capability overruns");
    }

    #[test]
    fn capability_queries_answer_from_the_capability_list() {
        let gr = GracefulRestart {
            restart_state: false,
            notification: true,
            restart_time: 120,
            families: vec![],
        };
        let mut o = open(vec![
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::FourOctetAs(4_200_000_000),
            Capability::GracefulRestart(gr.clone()),
            Capability::ExtendedNextHop(vec![ExtendedNextHop {
                nlri: Family::IPV4_UNICAST,
                nexthop_afi: 2,
            }]),
        ]);
        o.my_as = Open::my_as_field(4_200_000_000);
        assert_eq!(o.my_as, AS_TRANS);
        assert_eq!(o.asn(), 4_200_000_000);
        assert_eq!(o.families(), vec![Family::IPV6_UNICAST]);
        assert_eq!(o.graceful_restart(), Some(&gr));
        assert!(o.extended_next_hop(Family::IPV4_UNICAST, 2));
        assert!(!o.extended_next_hop(Family::IPV6_UNICAST, 1));
        assert!(!o.route_refresh());

        let plain = open(vec![Capability::RouteRefresh]);
        assert_eq!(plain.asn(), 65100);
        assert_eq!(plain.four_octet_as(), None);
        assert_eq!(plain.families(), vec![Family::IPV4_UNICAST]);
        assert_eq!(plain.graceful_restart(), None);
        assert!(plain.route_refresh());
        assert_eq!(Open::my_as_field(65100), 65100);
    }

    #[test]
    fn hold_time_zero_and_three_are_acceptable() {
        let mut o = open(vec![]);
        o.hold_time = 0;
        assert_eq!(decode(&body(&o)), Ok(o.clone()));
        o.hold_time = 3;
        assert_eq!(decode(&body(&o)), Ok(o));
    }
}
