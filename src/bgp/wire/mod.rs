//! BGP-4 wire format (RFC 4271) with the extensions Cilium's GoBGP uses: multiprotocol
//! (RFC 4760), 4-octet AS (RFC 6793), extended next hop (RFC 8950), graceful restart
//! (RFC 4724/8538), route refresh (RFC 2918), large communities (RFC 8092), and RFC 7606
//! revised error handling. Pure: bytes in, typed messages out, and back. No IO, no clock.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};

mod aspath;
mod error;
mod message;
mod nlri;
mod notification;
mod open;
mod update;

pub use error::{BGP_VERSION, DecodeError};
pub use message::{KEEPALIVE, NOTIFICATION, OPEN, ROUTE_REFRESH, UPDATE, decode, encode};
pub use notification::{Cease, Notification};
pub use update::{
    AGGREGATOR, AS_PATH, AS4_AGGREGATOR, AS4_PATH, ATOMIC_AGGREGATE, COMMUNITIES,
    FLAG_EXTENDED_LENGTH, FLAG_OPTIONAL, FLAG_PARTIAL, FLAG_TRANSITIVE, LARGE_COMMUNITY,
    LOCAL_PREF, MP_REACH_NLRI, MP_UNREACH_NLRI, MULTI_EXIT_DISC, NEXT_HOP, ORIGIN,
};

/// Every BGP message starts with 16 bytes of ones.
pub const MARKER: [u8; 16] = [0xff; 16];
/// Marker, length and type.
pub const HEADER_LEN: usize = 19;
/// RFC 4271 4.1: the largest message without RFC 8654 extended messages.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// RFC 6793: the 2-octet stand-in for a 4-octet AS number.
pub const AS_TRANS: u16 = 23456;

/// An address family and subsequent address family (RFC 4760), kept raw so that
/// capabilities for families we do not speak survive decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Family {
    pub afi: u16,
    pub safi: u8,
}

impl Family {
    pub const IPV4_UNICAST: Family = Family { afi: 1, safi: 1 };
    pub const IPV6_UNICAST: Family = Family { afi: 2, safi: 1 };
}

/// "IPv4 unicast", "IPv6 unicast", or the numbers ("AFI 25 SAFI 70").
impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Family::IPV4_UNICAST => f.write_str("IPv4 unicast"),
            Family::IPV6_UNICAST => f.write_str("IPv6 unicast"),
            Family { afi, safi } => write!(f, "AFI {afi} SAFI {safi}"),
        }
    }
}

/// What the decoder needs to know about the session (negotiated in OPEN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Context {
    /// Both sides sent the 4-octet AS capability: AS_PATH carries 4-octet numbers.
    pub four_octet_as: bool,
}

// A decoded message lives briefly on its way from the socket to the session; boxing the
// UPDATE would cost an allocation per message to save a few hundred bytes of stack.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    /// AS_TRANS when the real AS needs 4 octets (see `Capability::FourOctetAs`).
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_identifier: Ipv4Addr,
    /// All capabilities from all Capabilities optional parameters, in order.
    pub capabilities: Vec<Capability>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// Code 1 (RFC 4760).
    Multiprotocol(Family),
    /// Code 2 (RFC 2918).
    RouteRefresh,
    /// Code 5 (RFC 8950).
    ExtendedNextHop(Vec<ExtendedNextHop>),
    /// Code 64 (RFC 4724, N bit from RFC 8538).
    GracefulRestart(GracefulRestart),
    /// Code 65 (RFC 6793).
    FourOctetAs(u32),
    /// Anything else, kept as received and otherwise ignored.
    Unknown { code: u8, value: Vec<u8> },
}

/// One tuple of the extended next hop capability: `nlri` routes may carry a next hop of
/// `nexthop_afi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendedNextHop {
    pub nlri: Family,
    pub nexthop_afi: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulRestart {
    /// R bit: the sender has restarted.
    pub restart_state: bool,
    /// N bit (RFC 8538): NOTIFICATIONs other than Hard Reset keep routes too.
    pub notification: bool,
    /// Restart Time in seconds (12 bits).
    pub restart_time: u16,
    pub families: Vec<GracefulRestartFamily>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracefulRestartFamily {
    pub family: Family,
    /// F bit: forwarding state was preserved across the restart.
    pub forwarding_preserved: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    pub family: Family,
}

/// An UPDATE as decoded. IPv4 routes may come in the classic fields or in MP_REACH /
/// MP_UNREACH; `Update::reachable` and `Update::unreachable` give a family-neutral view.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    pub withdrawn_routes: Vec<Ipv4Net>,
    pub attributes: PathAttributes,
    pub nlri: Vec<Ipv4Net>,
    /// RFC 7606: an attribute error that turns every route of this UPDATE into a
    /// withdrawal. Set by the decoder, never encoded.
    pub treat_as_withdraw: Option<AttributeError>,
}

/// Why an UPDATE is treated as withdraw (RFC 7606), for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeError {
    pub type_code: u8,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PathAttributes {
    pub origin: Option<Origin>,
    /// AS_PATH with AS4_PATH already merged in (RFC 6793 4.2.3) when the session is not
    /// 4-octet.
    pub as_path: Option<AsPath>,
    pub next_hop: Option<Ipv4Addr>,
    pub multi_exit_disc: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<Aggregator>,
    pub communities: Vec<u32>,
    pub large_communities: Vec<[u32; 3]>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    /// Optional transitive attributes we do not know, kept (with flags) as received,
    /// the Partial bit set as RFC 4271 5 asks. Unknown non-transitive ones are dropped.
    /// MP_REACH_NLRI / MP_UNREACH_NLRI for families other than IPv4/IPv6 unicast are
    /// kept here too, raw (see `Update::end_of_rib_family` for their End-of-RIB).
    pub unknown: Vec<RawAttribute>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct AsPath {
    pub segments: Vec<AsSegment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AsSegment {
    Set(Vec<u32>),
    Sequence(Vec<u32>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aggregator {
    pub asn: u32,
    pub address: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpReach {
    pub family: Family,
    pub next_hop: MpNextHop,
    pub nlri: Vec<IpNet>,
}

/// The next hop of MP_REACH_NLRI: 4 bytes (IPv4), 16 bytes (one IPv6), or 32 bytes (IPv6
/// global and link-local).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MpNextHop {
    pub address: IpAddr,
    pub link_local: Option<Ipv6Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpUnreach {
    pub family: Family,
    pub withdrawn: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Vec<u8>,
}
