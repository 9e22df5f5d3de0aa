//! The UPDATE message (RFC 4271 4.3) and its path attributes, with RFC 4760 MP_REACH /
//! MP_UNREACH, RFC 6793 AS4_PATH / AS4_AGGREGATOR, RFC 8092 large communities, and the
//! RFC 7606 outcome of every malformation:
//!
//! - session reset (a `DecodeError`): withdrawn/attribute lengths that overrun the
//!   message (3/1), an invalid prefix anywhere (3/10), an unrecognized well-known
//!   attribute (3/2), a duplicate MP_REACH/MP_UNREACH (3/1) or one that overruns the
//!   attribute list (3/1), MP attribute flags (3/4), an MP attribute too short for its
//!   fixed fields (3/5) or with a next hop length that does not fit (3/9, RFC 4760 7);
//! - treat-as-withdraw (`Update::treat_as_withdraw`): a malformed ORIGIN, AS_PATH,
//!   NEXT_HOP, MULTI_EXIT_DISC, LOCAL_PREF, COMMUNITIES or LARGE_COMMUNITY, wrong flags
//!   on any of them, a missing ORIGIN/AS_PATH (or NEXT_HOP for classic NLRI) while the
//!   UPDATE carries reachable routes, and an attribute list whose last attribute overruns
//!   it (RFC 7606 4);
//! - attribute discard (the attribute is simply absent): a malformed ATOMIC_AGGREGATE or
//!   AGGREGATOR (RFC 7606 7.6, 7.7) and a malformed AS4_PATH or AS4_AGGREGATOR (RFC 6793
//!   6), as well as duplicates of any attribute but MP_REACH/MP_UNREACH (RFC 7606 3 g).
//!
//! MP_REACH / MP_UNREACH for a family other than IPv4/IPv6 unicast go, as received, to
//! `PathAttributes::unknown` (their next hop and NLRI have no typed form here), so they
//! neither announce nor withdraw anything and the UPDATE is not mistaken for an IPv4
//! End-of-RIB. The one exception is an empty MP_UNREACH: that family's End-of-RIB,
//! decoded as an `MpUnreach` so that `Update::end_of_rib_family` names it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use nom::IResult;
use nom::number::complete::{be_u8, be_u16};

use super::aspath::Confederation;
use super::nlri::{self, NlriError};
use super::{
    AS_TRANS, Aggregator, AsPath, AttributeError, Context, DecodeError, Family, MpNextHop, MpReach,
    MpUnreach, Origin, PathAttributes, RawAttribute, Update, aspath,
};

/// Attribute flag bits (RFC 4271 4.3).
pub const FLAG_OPTIONAL: u8 = 0x80;
pub const FLAG_TRANSITIVE: u8 = 0x40;
pub const FLAG_PARTIAL: u8 = 0x20;
pub const FLAG_EXTENDED_LENGTH: u8 = 0x10;

/// Path attribute type codes.
pub const ORIGIN: u8 = 1;
pub const AS_PATH: u8 = 2;
pub const NEXT_HOP: u8 = 3;
pub const MULTI_EXIT_DISC: u8 = 4;
pub const LOCAL_PREF: u8 = 5;
pub const ATOMIC_AGGREGATE: u8 = 6;
pub const AGGREGATOR: u8 = 7;
pub const COMMUNITIES: u8 = 8;
pub const MP_REACH_NLRI: u8 = 14;
pub const MP_UNREACH_NLRI: u8 = 15;
pub const AS4_PATH: u8 = 17;
pub const AS4_AGGREGATOR: u8 = 18;
pub const LARGE_COMMUNITY: u8 = 32;

type Res<'a, T> = IResult<&'a [u8], T, ()>;

impl Update {
    /// The End-of-RIB marker of RFC 4724 2: an empty UPDATE for IPv4 unicast, an UPDATE
    /// holding only an empty MP_UNREACH_NLRI for any other family.
    pub fn end_of_rib(family: Family) -> Update {
        if family == Family::IPV4_UNICAST {
            return Update::default();
        }
        Update {
            attributes: PathAttributes {
                mp_unreach: Some(MpUnreach {
                    family,
                    withdrawn: Vec::new(),
                }),
                ..PathAttributes::default()
            },
            ..Update::default()
        }
    }

    /// The family whose End-of-RIB this UPDATE is, if it is one (either form for IPv4).
    pub fn end_of_rib_family(&self) -> Option<Family> {
        if !self.withdrawn_routes.is_empty()
            || !self.nlri.is_empty()
            || self.treat_as_withdraw.is_some()
        {
            return None;
        }
        let unreach = self.attributes.mp_unreach.as_ref();
        if unreach.is_some_and(|u| !u.withdrawn.is_empty()) {
            return None;
        }
        let others_empty = PathAttributes {
            mp_unreach: None,
            ..self.attributes.clone()
        } == PathAttributes::default();
        if !others_empty {
            return None;
        }
        Some(unreach.map_or(Family::IPV4_UNICAST, |u| u.family))
    }

    /// Routes this UPDATE announces, from the NLRI field and MP_REACH_NLRI alike; none
    /// when RFC 7606 says to treat it as a withdrawal.
    pub fn reachable(&self) -> impl Iterator<Item = IpNet> + '_ {
        let announce = self.treat_as_withdraw.is_none();
        self.nlri
            .iter()
            .map(|&n| IpNet::V4(n))
            .chain(self.mp_reach_nlri())
            .filter(move |_| announce)
    }

    /// Routes this UPDATE withdraws: Withdrawn Routes and MP_UNREACH_NLRI, and under
    /// treat-as-withdraw the announced routes as well.
    pub fn unreachable(&self) -> impl Iterator<Item = IpNet> + '_ {
        let withdraw_announced = self.treat_as_withdraw.is_some();
        let announced = self
            .nlri
            .iter()
            .map(|&n| IpNet::V4(n))
            .chain(self.mp_reach_nlri())
            .filter(move |_| withdraw_announced);
        self.withdrawn_routes
            .iter()
            .map(|&n| IpNet::V4(n))
            .chain(
                self.attributes
                    .mp_unreach
                    .iter()
                    .flat_map(|u| u.withdrawn.iter().copied()),
            )
            .chain(announced)
    }

    fn mp_reach_nlri(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.attributes
            .mp_reach
            .iter()
            .flat_map(|r| r.nlri.iter().copied())
    }
}

fn invalid_network_field(error: NlriError) -> DecodeError {
    DecodeError::InvalidNetworkField {
        reason: error.reason(),
    }
}

/// Decodes the body of an UPDATE (after the header; at least 4 octets, which the header
/// check guarantees).
pub(super) fn decode(body: &[u8], ctx: &Context) -> Result<Update, DecodeError> {
    let too_long = |reason| DecodeError::MalformedAttributeList { reason };
    let lengths: Res<u16> = be_u16(body);
    let (rest, withdrawn_len) =
        lengths.map_err(|_| too_long("UPDATE shorter than its length fields"))?;
    let withdrawn_len = usize::from(withdrawn_len);
    if withdrawn_len + 2 > rest.len() {
        return Err(too_long("withdrawn routes length exceeds the message"));
    }
    let (withdrawn, rest) = rest.split_at(withdrawn_len);
    let (rest, attributes_len) =
        be_u16::<_, ()>(rest).map_err(|_| too_long("UPDATE shorter than its length fields"))?;
    let attributes_len = usize::from(attributes_len);
    if attributes_len > rest.len() {
        return Err(too_long("total path attribute length exceeds the message"));
    }
    let (attributes, nlri) = rest.split_at(attributes_len);

    let withdrawn_routes = nlri::decode_ipv4(withdrawn).map_err(invalid_network_field)?;
    let nlri = nlri::decode_ipv4(nlri).map_err(invalid_network_field)?;
    let mut parser = AttributeParser::new(ctx);
    parser.parse_list(attributes)?;
    let (attributes, mut treat_as_withdraw) = parser.finish();

    // RFC 7606 3 d: missing well-known mandatory attributes mean treat-as-withdraw; they
    // are mandatory only when the UPDATE announces something (NEXT_HOP only for the
    // classic NLRI field, RFC 4760 3).
    let announces_mp = attributes
        .mp_reach
        .as_ref()
        .is_some_and(|r| !r.nlri.is_empty());
    if treat_as_withdraw.is_none() && (announces_mp || !nlri.is_empty()) {
        let missing = if attributes.origin.is_none() {
            Some(ORIGIN)
        } else if attributes.as_path.is_none() {
            Some(AS_PATH)
        } else if !nlri.is_empty() && attributes.next_hop.is_none() {
            Some(NEXT_HOP)
        } else {
            None
        };
        treat_as_withdraw = missing.map(|type_code| AttributeError {
            type_code,
            reason: "missing well-known mandatory attribute".to_string(),
        });
    }
    Ok(Update {
        withdrawn_routes,
        attributes,
        nlri,
        treat_as_withdraw,
    })
}

struct AttributeParser<'c> {
    ctx: &'c Context,
    attributes: PathAttributes,
    treat_as_withdraw: Option<AttributeError>,
    seen: [bool; 256],
    as4_path: Option<AsPath>,
    as4_aggregator: Option<Aggregator>,
}

impl<'c> AttributeParser<'c> {
    fn new(ctx: &'c Context) -> Self {
        AttributeParser {
            ctx,
            attributes: PathAttributes::default(),
            treat_as_withdraw: None,
            seen: [false; 256],
            as4_path: None,
            as4_aggregator: None,
        }
    }

    /// RFC 7606 3 h: the first treat-as-withdraw reason is the one reported.
    fn withdraw(&mut self, type_code: u8, reason: &str) {
        if self.treat_as_withdraw.is_none() {
            self.treat_as_withdraw = Some(AttributeError {
                type_code,
                reason: reason.to_string(),
            });
        }
    }

    fn parse_list(&mut self, mut input: &[u8]) -> Result<(), DecodeError> {
        while let Some(&flags) = input.first() {
            let header_len = if flags & FLAG_EXTENDED_LENGTH != 0 {
                4
            } else {
                3
            };
            let type_code = input.get(1).copied().unwrap_or(0);
            if input.len() < header_len {
                // RFC 7606 4: too few octets left for an attribute header.
                self.withdraw(type_code, "attribute header runs past the attribute list");
                return Ok(());
            }
            let value_len = if header_len == 4 {
                usize::from(u16::from_be_bytes([input[2], input[3]]))
            } else {
                usize::from(input[2])
            };
            let total = header_len + value_len;
            if total > input.len() {
                // RFC 7606 4 asks for treat-as-withdraw, which is only sound when the
                // overrunning attribute does not carry NLRI itself.
                if matches!(type_code, MP_REACH_NLRI | MP_UNREACH_NLRI) {
                    return Err(DecodeError::MalformedAttributeList {
                        reason: "MP_REACH_NLRI/MP_UNREACH_NLRI runs past the attribute list",
                    });
                }
                self.withdraw(type_code, "attribute length runs past the attribute list");
                return Ok(());
            }
            let (raw, rest) = input.split_at(total);
            input = rest;
            if self.seen[usize::from(type_code)] {
                if matches!(type_code, MP_REACH_NLRI | MP_UNREACH_NLRI) {
                    return Err(DecodeError::MalformedAttributeList {
                        reason: "MP_REACH_NLRI or MP_UNREACH_NLRI appears twice",
                    });
                }
                continue;
            }
            self.seen[usize::from(type_code)] = true;
            self.attribute(flags, type_code, &raw[header_len..], raw)?;
        }
        Ok(())
    }

    fn attribute(
        &mut self,
        flags: u8,
        type_code: u8,
        value: &[u8],
        raw: &[u8],
    ) -> Result<(), DecodeError> {
        let expected = match type_code {
            ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF | ATOMIC_AGGREGATE => FLAG_TRANSITIVE,
            MULTI_EXIT_DISC | MP_REACH_NLRI | MP_UNREACH_NLRI => FLAG_OPTIONAL,
            AGGREGATOR | COMMUNITIES | AS4_PATH | AS4_AGGREGATOR | LARGE_COMMUNITY => {
                FLAG_OPTIONAL | FLAG_TRANSITIVE
            }
            _ => return self.unknown(flags, type_code, value, raw),
        };
        if flags & (FLAG_OPTIONAL | FLAG_TRANSITIVE) != expected {
            // RFC 7606 3 c: flags in conflict make the attribute malformed.
            return match type_code {
                MP_REACH_NLRI | MP_UNREACH_NLRI => Err(DecodeError::AttributeFlagsError {
                    attribute: raw.to_vec(),
                }),
                ATOMIC_AGGREGATE | AGGREGATOR | AS4_PATH | AS4_AGGREGATOR => Ok(()),
                _ => {
                    self.withdraw(type_code, "attribute flags conflict with the type");
                    Ok(())
                }
            };
        }
        let four_octet = self.ctx.four_octet_as;
        let a = &mut self.attributes;
        match type_code {
            ORIGIN => match value {
                [0] => a.origin = Some(Origin::Igp),
                [1] => a.origin = Some(Origin::Egp),
                [2] => a.origin = Some(Origin::Incomplete),
                [_] => self.withdraw(type_code, "undefined ORIGIN value"),
                _ => self.withdraw(type_code, "ORIGIN length is not 1"),
            },
            AS_PATH => match aspath::decode(value, four_octet, Confederation::Malformed) {
                Ok(path) => a.as_path = Some(path),
                Err(reason) => self.withdraw(type_code, reason),
            },
            NEXT_HOP => match <[u8; 4]>::try_from(value) {
                Ok(octets) => a.next_hop = Some(Ipv4Addr::from(octets)),
                Err(_) => self.withdraw(type_code, "NEXT_HOP length is not 4"),
            },
            MULTI_EXIT_DISC => match <[u8; 4]>::try_from(value) {
                Ok(octets) => a.multi_exit_disc = Some(u32::from_be_bytes(octets)),
                Err(_) => self.withdraw(type_code, "MULTI_EXIT_DISC length is not 4"),
            },
            LOCAL_PREF => match <[u8; 4]>::try_from(value) {
                Ok(octets) => a.local_pref = Some(u32::from_be_bytes(octets)),
                Err(_) => self.withdraw(type_code, "LOCAL_PREF length is not 4"),
            },
            ATOMIC_AGGREGATE => a.atomic_aggregate = value.is_empty(),
            AGGREGATOR => a.aggregator = decode_aggregator(value, four_octet),
            COMMUNITIES => match u32_list(value, 4) {
                Some(list) => a.communities = list,
                None => self.withdraw(type_code, "COMMUNITIES length is not a multiple of 4"),
            },
            LARGE_COMMUNITY => match u32_list(value, 12) {
                Some(list) => {
                    a.large_communities = list.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect()
                }
                None => self.withdraw(type_code, "LARGE_COMMUNITY length is not a multiple of 12"),
            },
            // RFC 6793 6: between 4-octet speakers these attributes are discarded, and a
            // malformed one is discarded too.
            AS4_PATH if !four_octet => {
                self.as4_path = aspath::decode(value, true, Confederation::Dropped).ok()
            }
            AS4_AGGREGATOR if !four_octet => self.as4_aggregator = decode_aggregator(value, true),
            AS4_PATH | AS4_AGGREGATOR => {}
            // Families we do not speak stay raw (see the module comment).
            MP_REACH_NLRI => match decode_mp_reach(value, raw)? {
                Some(reach) => a.mp_reach = Some(reach),
                None => a.unknown.push(raw_attribute(flags, type_code, value)),
            },
            MP_UNREACH_NLRI => match decode_mp_unreach(value, raw)? {
                Some(unreach) => a.mp_unreach = Some(unreach),
                None => a.unknown.push(raw_attribute(flags, type_code, value)),
            },
            // Not reached: every other type code went to `unknown` above.
            _ => {}
        }
        Ok(())
    }

    fn unknown(
        &mut self,
        flags: u8,
        type_code: u8,
        value: &[u8],
        raw: &[u8],
    ) -> Result<(), DecodeError> {
        if flags & FLAG_OPTIONAL == 0 {
            return Err(DecodeError::UnrecognizedWellKnownAttribute {
                attribute: raw.to_vec(),
            });
        }
        // RFC 4271 5: an unrecognized optional transitive attribute is passed on with the
        // Partial bit set; a non-transitive one is quietly ignored.
        if flags & FLAG_TRANSITIVE != 0 {
            let attribute = raw_attribute(flags | FLAG_PARTIAL, type_code, value);
            self.attributes.unknown.push(attribute);
        }
        Ok(())
    }

    /// The attributes, with AS4_PATH and AS4_AGGREGATOR merged as RFC 6793 4.2.3 says.
    fn finish(mut self) -> (PathAttributes, Option<AttributeError>) {
        let a = &mut self.attributes;
        let mut use_as4_path = true;
        if let Some(aggregator) = a.aggregator {
            if aggregator.asn != u32::from(AS_TRANS) {
                use_as4_path = false;
            } else if let Some(as4) = self.as4_aggregator {
                a.aggregator = Some(as4);
            }
        }
        if let (true, Some(as4)) = (use_as4_path, self.as4_path) {
            a.as_path = a
                .as_path
                .take()
                .map(|path| aspath::merge_as4_path(path, as4));
        }
        // The encoder writes attributes in type code order (RFC 4271 5); keeping unknown
        // ones in that order too makes a decoded UPDATE equal to its re-encoding's.
        a.unknown.sort_by_key(|raw| raw.type_code);
        (self.attributes, self.treat_as_withdraw)
    }
}

fn raw_attribute(flags: u8, type_code: u8, value: &[u8]) -> RawAttribute {
    RawAttribute {
        flags: flags & !FLAG_EXTENDED_LENGTH,
        type_code,
        value: value.to_vec(),
    }
}

/// AGGREGATOR (6 or 8 octets by the session's AS size) or AS4_AGGREGATOR (8); `None`
/// for a malformed one or one naming AS 0 (RFC 7607), which are discarded.
fn decode_aggregator(value: &[u8], four_octet: bool) -> Option<Aggregator> {
    let (asn, address) = match (four_octet, value) {
        (false, [a, b, addr @ ..]) if addr.len() == 4 => {
            (u32::from(u16::from_be_bytes([*a, *b])), addr)
        }
        (true, [a, b, c, d, addr @ ..]) if addr.len() == 4 => {
            (u32::from_be_bytes([*a, *b, *c, *d]), addr)
        }
        _ => return None,
    };
    let address = Ipv4Addr::from(<[u8; 4]>::try_from(address).ok()?);
    (asn != 0).then_some(Aggregator { asn, address })
}

/// A non-empty list of 32-bit values whose length is a multiple of `unit` octets.
fn u32_list(value: &[u8], unit: usize) -> Option<Vec<u32>> {
    if value.is_empty() || !value.len().is_multiple_of(unit) {
        return None;
    }
    Some(
        value
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

fn supported(family: Family) -> bool {
    family == Family::IPV4_UNICAST || family == Family::IPV6_UNICAST
}

fn mp_nlri(family: Family, input: &[u8]) -> Result<Vec<IpNet>, DecodeError> {
    Ok(if family.afi == 1 {
        nlri::decode_ipv4(input)
            .map_err(invalid_network_field)?
            .into_iter()
            .map(IpNet::V4)
            .collect()
    } else {
        nlri::decode_ipv6(input)
            .map_err(invalid_network_field)?
            .into_iter()
            .map(IpNet::V6)
            .collect()
    })
}

fn decode_mp_reach(value: &[u8], raw: &[u8]) -> Result<Option<MpReach>, DecodeError> {
    let fixed: Res<(u16, u8, u8)> = nom::Parser::parse_complete(&mut (be_u16, be_u8, be_u8), value);
    let (rest, (afi, safi, next_hop_len)) =
        fixed.map_err(|_| DecodeError::AttributeLengthError {
            attribute: raw.to_vec(),
        })?;
    let optional_error = |reason| DecodeError::OptionalAttributeError {
        reason,
        attribute: raw.to_vec(),
    };
    let next_hop_len = usize::from(next_hop_len);
    // The next hop and the reserved octet must fit before the NLRI (RFC 7606 7.11).
    if next_hop_len + 1 > rest.len() {
        return Err(optional_error("next hop length runs past the attribute"));
    }
    let (next_hop, rest) = rest.split_at(next_hop_len);
    let nlri = &rest[1..];
    let family = Family { afi, safi };
    if !supported(family) {
        return Ok(None);
    }
    let next_hop = match (afi, next_hop.len()) {
        (1, 4) => MpNextHop {
            address: IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(next_hop).unwrap_or_default(),
            )),
            link_local: None,
        },
        // 16 octets for IPv6 NLRI, or for IPv4 NLRI under RFC 8950; 32 adds a link-local.
        (_, 16 | 32) => {
            let (global, link_local) = next_hop.split_at(16);
            MpNextHop {
                address: IpAddr::V6(ipv6(global)),
                link_local: (!link_local.is_empty()).then(|| ipv6(link_local)),
            }
        }
        _ => return Err(optional_error("next hop length does not fit the family")),
    };
    Ok(Some(MpReach {
        family,
        next_hop,
        nlri: mp_nlri(family, nlri)?,
    }))
}

fn ipv6(octets: &[u8]) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(octets).unwrap_or_default())
}

fn decode_mp_unreach(value: &[u8], raw: &[u8]) -> Result<Option<MpUnreach>, DecodeError> {
    let fixed: Res<(u16, u8)> = nom::Parser::parse_complete(&mut (be_u16, be_u8), value);
    let (withdrawn, (afi, safi)) = fixed.map_err(|_| DecodeError::AttributeLengthError {
        attribute: raw.to_vec(),
    })?;
    let family = Family { afi, safi };
    if !supported(family) {
        // Decoded only as an End-of-RIB; anything else stays raw.
        return Ok(withdrawn.is_empty().then(|| MpUnreach {
            family,
            withdrawn: Vec::new(),
        }));
    }
    Ok(Some(MpUnreach {
        family,
        withdrawn: mp_nlri(family, withdrawn)?,
    }))
}

/// Appends one attribute, with the Extended Length bit exactly when the value needs it.
fn put_attribute(out: &mut Vec<u8>, flags: u8, type_code: u8, value: &[u8]) {
    let flags = flags & !FLAG_EXTENDED_LENGTH;
    if value.len() > usize::from(u8::MAX) {
        out.push(flags | FLAG_EXTENDED_LENGTH);
        out.push(type_code);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    } else {
        out.push(flags);
        out.push(type_code);
        out.push(value.len() as u8);
    }
    out.extend_from_slice(value);
}

fn encode_mp_reach(reach: &MpReach) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&reach.family.afi.to_be_bytes());
    v.push(reach.family.safi);
    let mut next_hop = match reach.next_hop.address {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    if let Some(link_local) = reach.next_hop.link_local {
        next_hop.extend_from_slice(&link_local.octets());
    }
    v.push(next_hop.len() as u8);
    v.extend_from_slice(&next_hop);
    v.push(0); // Reserved
    for net in &reach.nlri {
        nlri::encode(net, &mut v);
    }
    v
}

/// Appends the body of `update`. Attributes go in ascending type order after
/// MP_UNREACH_NLRI and MP_REACH_NLRI, which RFC 7606 5.1 wants first. On a 2-octet
/// session, ASes that need 4 octets are sent as AS_TRANS with AS4_PATH /
/// AS4_AGGREGATOR (RFC 6793 4.2.2). `treat_as_withdraw` is not encoded, and nothing
/// checks that the message stays within 4096 octets.
pub(super) fn encode(update: &Update, ctx: &Context, out: &mut Vec<u8>) {
    let mut withdrawn = Vec::new();
    for net in &update.withdrawn_routes {
        nlri::encode(&IpNet::V4(*net), &mut withdrawn);
    }
    out.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
    out.extend_from_slice(&withdrawn);

    let a = &update.attributes;
    let four_octet = ctx.four_octet_as;
    let mut attributes: Vec<(u8, u8, Vec<u8>)> = Vec::new();
    if let Some(origin) = a.origin {
        attributes.push((FLAG_TRANSITIVE, ORIGIN, vec![origin as u8]));
    }
    if let Some(path) = &a.as_path {
        let mut v = Vec::new();
        aspath::encode(path, four_octet, &mut v);
        attributes.push((FLAG_TRANSITIVE, AS_PATH, v));
        if !four_octet && path.needs_four_octets() {
            let mut v = Vec::new();
            aspath::encode(path, true, &mut v);
            attributes.push((FLAG_OPTIONAL | FLAG_TRANSITIVE, AS4_PATH, v));
        }
    }
    if let Some(next_hop) = a.next_hop {
        attributes.push((FLAG_TRANSITIVE, NEXT_HOP, next_hop.octets().to_vec()));
    }
    if let Some(med) = a.multi_exit_disc {
        attributes.push((FLAG_OPTIONAL, MULTI_EXIT_DISC, med.to_be_bytes().to_vec()));
    }
    if let Some(local_pref) = a.local_pref {
        attributes.push((
            FLAG_TRANSITIVE,
            LOCAL_PREF,
            local_pref.to_be_bytes().to_vec(),
        ));
    }
    if a.atomic_aggregate {
        attributes.push((FLAG_TRANSITIVE, ATOMIC_AGGREGATE, Vec::new()));
    }
    if let Some(aggregator) = a.aggregator {
        let mut v = Vec::new();
        match u16::try_from(aggregator.asn) {
            _ if four_octet => v.extend_from_slice(&aggregator.asn.to_be_bytes()),
            Ok(two) => v.extend_from_slice(&two.to_be_bytes()),
            Err(_) => {
                v.extend_from_slice(&AS_TRANS.to_be_bytes());
                let mut v4 = aggregator.asn.to_be_bytes().to_vec();
                v4.extend_from_slice(&aggregator.address.octets());
                attributes.push((FLAG_OPTIONAL | FLAG_TRANSITIVE, AS4_AGGREGATOR, v4));
            }
        }
        v.extend_from_slice(&aggregator.address.octets());
        attributes.push((FLAG_OPTIONAL | FLAG_TRANSITIVE, AGGREGATOR, v));
    }
    if !a.communities.is_empty() {
        let v = a.communities.iter().flat_map(|c| c.to_be_bytes()).collect();
        attributes.push((FLAG_OPTIONAL | FLAG_TRANSITIVE, COMMUNITIES, v));
    }
    if !a.large_communities.is_empty() {
        let v = a
            .large_communities
            .iter()
            .flatten()
            .flat_map(|c| c.to_be_bytes())
            .collect();
        attributes.push((FLAG_OPTIONAL | FLAG_TRANSITIVE, LARGE_COMMUNITY, v));
    }
    for raw in &a.unknown {
        attributes.push((raw.flags, raw.type_code, raw.value.clone()));
    }
    attributes.sort_by_key(|&(_, type_code, _)| type_code);

    let mut list = Vec::new();
    if let Some(unreach) = &a.mp_unreach {
        let mut v = Vec::new();
        v.extend_from_slice(&unreach.family.afi.to_be_bytes());
        v.push(unreach.family.safi);
        for net in &unreach.withdrawn {
            nlri::encode(net, &mut v);
        }
        put_attribute(&mut list, FLAG_OPTIONAL, MP_UNREACH_NLRI, &v);
    }
    if let Some(reach) = &a.mp_reach {
        put_attribute(
            &mut list,
            FLAG_OPTIONAL,
            MP_REACH_NLRI,
            &encode_mp_reach(reach),
        );
    }
    for (flags, type_code, value) in &attributes {
        put_attribute(&mut list, *flags, *type_code, value);
    }
    out.extend_from_slice(&(list.len() as u16).to_be_bytes());
    out.extend_from_slice(&list);

    for net in &update.nlri {
        nlri::encode(&IpNet::V4(*net), out);
    }
}
