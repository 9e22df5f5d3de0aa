//! Kernel nexthop objects (Linux 5.3+): the RTM_NEWNEXTHOP / RTM_DELNEXTHOP / RTM_GETNEXTHOP
//! messages, hand-encoded because netlink-packet-route has no type for them, and the
//! bookkeeping of which objects we own: one object per next hop (gateway and interface), one
//! group per ECMP set, each with the number of routes and groups that use it. Routes then
//! carry only RTA_NH_ID, and deleting an object removes every route using it in one request.
//! Pure: it builds and parses bytes, the socket is the caller's.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::rib::NextHop;

use super::installed::{FIRST_ID, representable};
use super::nlmsg::{
    NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, RTM_DELNEXTHOP, RTM_GETNEXTHOP,
    RTM_NEWNEXTHOP, attr, attributes, finish, header,
};

const NHA_ID: u16 = 1;
const NHA_GROUP: u16 = 2;
const NHA_GROUP_TYPE: u16 = 3;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;

fn nhmsg(out: &mut Vec<u8>, family: u8, protocol: u8) {
    // struct nhmsg: family, scope, protocol, reserved, flags (u32)
    out.extend_from_slice(&[family, 0, protocol, 0, 0, 0, 0, 0]);
}

/// What a nexthop object stands for.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Object {
    /// A gateway on an interface.
    Single(NextHop),
    /// An ECMP group of single objects, by id, sorted.
    Group(Vec<u32>),
}

/// Whether a next hop can be a nexthop object: the kernel needs the interface.
pub fn objectable(next_hop: &NextHop) -> bool {
    next_hop.ifindex.is_some()
}

/// RTM_NEWNEXTHOP creating object `id` (NLM_F_EXCL: an id in use is an error, EEXIST).
pub fn encode_new(out: &mut Vec<u8>, seq: u32, id: u32, protocol: u8, object: &Object) {
    let start = header(
        out,
        RTM_NEWNEXTHOP,
        NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL,
        seq,
    );
    match object {
        Object::Single(hop) => {
            let family = match hop.gateway {
                IpAddr::V4(_) => libc::AF_INET,
                IpAddr::V6(_) => libc::AF_INET6,
            };
            nhmsg(out, family as u8, protocol);
            attr(out, NHA_ID, &id.to_ne_bytes());
            attr(out, NHA_OIF, &hop.ifindex.unwrap_or(0).to_ne_bytes());
            match hop.gateway {
                IpAddr::V4(a) if !a.is_unspecified() => attr(out, NHA_GATEWAY, &a.octets()),
                IpAddr::V6(a) if !a.is_unspecified() => attr(out, NHA_GATEWAY, &a.octets()),
                _ => {}
            }
        }
        Object::Group(members) => {
            nhmsg(out, libc::AF_UNSPEC as u8, protocol);
            attr(out, NHA_ID, &id.to_ne_bytes());
            // struct nexthop_grp: id (u32), weight (u8, weight - 1), reserved (u8, u16)
            let mut group = Vec::with_capacity(8 * members.len());
            for member in members {
                group.extend_from_slice(&member.to_ne_bytes());
                group.extend_from_slice(&[0, 0, 0, 0]);
            }
            attr(out, NHA_GROUP, &group);
        }
    }
    finish(out, start);
}

/// RTM_DELNEXTHOP for object `id`: the kernel removes the routes that use it too.
pub fn encode_delete(out: &mut Vec<u8>, seq: u32, id: u32) {
    let start = header(out, RTM_DELNEXTHOP, NLM_F_REQUEST, seq);
    nhmsg(out, libc::AF_UNSPEC as u8, 0);
    attr(out, NHA_ID, &id.to_ne_bytes());
    finish(out, start);
}

/// RTM_GETNEXTHOP dump request (every object of the namespace).
pub fn encode_dump(out: &mut Vec<u8>, seq: u32) {
    let start = header(out, RTM_GETNEXTHOP, NLM_F_REQUEST | NLM_F_DUMP, seq);
    nhmsg(out, libc::AF_UNSPEC as u8, 0);
    finish(out, start);
}

/// One object from a RTM_NEWNEXTHOP dump answer (the payload after the netlink header):
/// its id, protocol, and what it is (`None` for kinds we never create: blackhole, fdb,
/// resilient groups and the like).
pub fn parse(payload: &[u8]) -> Option<(u32, u8, Option<Object>)> {
    if payload.len() < 8 {
        return None;
    }
    let protocol = payload[2];
    let mut id = None;
    let mut oif = None;
    let mut gateway = None;
    let mut group = None;
    let mut other = false;
    for (kind, value) in attributes(&payload[8..]) {
        match kind {
            NHA_ID => id = value.try_into().ok().map(u32::from_ne_bytes),
            NHA_OIF => oif = value.try_into().ok().map(u32::from_ne_bytes),
            NHA_GATEWAY => {
                gateway = match value.len() {
                    4 => Some(IpAddr::from(<[u8; 4]>::try_from(value).ok()?)),
                    16 => Some(IpAddr::from(<[u8; 16]>::try_from(value).ok()?)),
                    _ => None,
                }
            }
            NHA_GROUP => {
                let mut members: Vec<u32> = value
                    .chunks_exact(8)
                    .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                members.sort_unstable();
                group = Some(members);
            }
            // NHA_GROUP_TYPE: only plain multipath (0) groups are ours.
            NHA_GROUP_TYPE => other |= value.first().is_some_and(|t| *t != 0),
            // NHA_BLACKHOLE, NHA_ENCAP_TYPE, NHA_ENCAP, NHA_FDB, NHA_RES_GROUP
            4 | 7 | 8 | 11 | 13 => other = true,
            _ => {}
        }
    }
    let object = match (group, gateway, oif) {
        _ if other => None,
        (Some(members), _, _) => Some(Object::Group(members)),
        (None, Some(gateway), Some(oif)) => Some(Object::Single(NextHop {
            gateway,
            ifindex: Some(oif),
        })),
        _ => None,
    };
    Some((id?, protocol, object))
}

/// The objects we own, by what they stand for and by id, with how many routes and groups
/// use each. Objects a previous run made under another protocol number (see
/// [`Objects::insert_legacy`]) are kept by id only: they are never reused for a new route,
/// only deleted once nothing uses them.
#[derive(Debug, Default)]
pub struct Objects {
    by_object: HashMap<Object, u32>,
    by_id: HashMap<u32, (Object, u32)>,
    /// Ids of the objects held by id only, under another protocol number.
    legacy: HashSet<u32>,
    /// Ids of legacy objects we deleted: never given to a new object of ours, so that
    /// whoever else still has them in its books (the FIB of the previous protocol during a
    /// reload) deletes nothing of ours by deleting them.
    retired: HashSet<u32>,
    /// Where the search for a free id starts.
    next_id: u32,
}

impl Objects {
    pub fn new() -> Objects {
        Objects {
            next_id: FIRST_ID,
            ..Objects::default()
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn id_of(&self, object: &Object) -> Option<u32> {
        self.by_object.get(object).copied()
    }

    pub fn get(&self, id: u32) -> Option<&Object> {
        self.by_id.get(&id).map(|(o, _)| o)
    }

    /// Records an object the kernel has (created by us now, or found by a dump), unused.
    pub fn insert(&mut self, id: u32, object: Object) {
        if let Object::Group(members) = &object {
            for m in members {
                self.hold(*m);
            }
        }
        self.by_object.insert(object.clone(), id);
        self.by_id.insert(id, (object, 0));
    }

    /// Records an object a previous run made under another protocol number, unused: found
    /// by id, never reused for a route of ours, deleted once nothing uses it.
    pub fn insert_legacy(&mut self, id: u32, object: Object) {
        if let Object::Group(members) = &object {
            for m in members {
                self.hold(*m);
            }
        }
        self.legacy.insert(id);
        self.by_id.insert(id, (object, 0));
    }

    /// Whether `id` is an object recorded by [`Objects::insert_legacy`].
    pub fn is_legacy(&self, id: u32) -> bool {
        self.legacy.contains(&id)
    }

    /// The ids of the legacy objects in the books.
    pub fn legacy_ids(&self) -> Vec<u32> {
        self.legacy.iter().copied().collect()
    }

    /// A free id among ours (the kernel may still refuse it if someone else has it).
    pub fn fresh_id(&mut self) -> u32 {
        loop {
            let id = self.next_id;
            self.next_id = if representable(id + 1) {
                id + 1
            } else {
                FIRST_ID
            };
            if !self.by_id.contains_key(&id) && !self.retired.contains(&id) {
                return id;
            }
        }
    }

    /// One more user (a route or a group) of object `id`.
    pub fn hold(&mut self, id: u32) {
        if let Some((_, users)) = self.by_id.get_mut(&id) {
            *users += 1;
        }
    }

    /// One user less of object `id`.
    pub fn release(&mut self, id: u32) {
        if let Some((_, users)) = self.by_id.get_mut(&id) {
            *users = users.saturating_sub(1);
        }
    }

    pub fn users(&self, id: u32) -> u32 {
        self.by_id.get(&id).map_or(0, |(_, u)| *u)
    }

    /// Takes every unused object out of the books, groups first (a group holds its
    /// members, so members freed by it come out in the same call); returns their ids in
    /// the order to delete them.
    pub fn take_unused(&mut self) -> Vec<u32> {
        let mut gone = Vec::new();
        loop {
            let unused: Vec<u32> = self
                .by_id
                .iter()
                .filter(|(_, (_, users))| *users == 0)
                .map(|(id, _)| *id)
                .collect();
            if unused.is_empty() {
                return gone;
            }
            let (groups, singles): (Vec<u32>, Vec<u32>) = unused
                .into_iter()
                .partition(|id| matches!(self.by_id[id].0, Object::Group(_)));
            let round = if groups.is_empty() { singles } else { groups };
            for id in round {
                let (object, _) = self.by_id.remove(&id).expect("listed above");
                if let Object::Group(members) = &object {
                    for m in members {
                        self.release(*m);
                    }
                }
                if self.by_object.get(&object) == Some(&id) {
                    self.by_object.remove(&object);
                }
                if self.legacy.remove(&id) {
                    self.retired.insert(id);
                }
                gone.push(id);
            }
        }
    }

    /// Forgets everything (before rebuilding from a dump) but the retired ids.
    pub fn clear(&mut self) {
        self.by_object.clear();
        self.by_id.clear();
        self.legacy.clear();
    }

    /// The next hops object `id` stands for (a group's members, sorted).
    pub fn next_hops(&self, id: u32) -> Vec<NextHop> {
        let mut hops = match self.get(id) {
            Some(Object::Single(hop)) => vec![*hop],
            Some(Object::Group(members)) => members
                .iter()
                .filter_map(|m| match self.get(*m) {
                    Some(Object::Single(hop)) => Some(*hop),
                    _ => None,
                })
                .collect(),
            None => Vec::new(),
        };
        hops.sort_unstable();
        hops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(gateway: &str, ifindex: u32) -> NextHop {
        NextHop {
            gateway: gateway.parse().unwrap(),
            ifindex: Some(ifindex),
        }
    }

    /// The payload of a dump answer for what `encode_new` asked for.
    fn as_dumped(object: &Object, id: u32) -> Vec<u8> {
        let mut out = Vec::new();
        encode_new(&mut out, 1, id, 196, object);
        out[16..].to_vec()
    }

    #[test]
    fn a_single_object_is_a_gateway_on_an_interface() {
        let object = Object::Single(hop("2001:db8:1::2", 7));
        let mut out = Vec::new();
        encode_new(&mut out, 9, 42, 196, &object);
        assert_eq!(
            u32::from_ne_bytes(out[0..4].try_into().unwrap()) as usize,
            out.len()
        );
        assert_eq!(u16::from_ne_bytes([out[4], out[5]]), RTM_NEWNEXTHOP);
        assert_eq!(out[16], libc::AF_INET6 as u8);
        assert_eq!(out[18], 196);
        let attrs: Vec<(u16, Vec<u8>)> = attributes(&out[24..])
            .map(|(k, v)| (k, v.to_vec()))
            .collect();
        assert_eq!(
            attrs,
            vec![
                (NHA_ID, 42u32.to_ne_bytes().to_vec()),
                (NHA_OIF, 7u32.to_ne_bytes().to_vec()),
                (
                    NHA_GATEWAY,
                    "2001:db8:1::2"
                        .parse::<std::net::Ipv6Addr>()
                        .unwrap()
                        .octets()
                        .to_vec()
                ),
            ]
        );
    }

    #[test]
    fn encoded_objects_parse_back_to_themselves() {
        for object in [
            Object::Single(hop("192.0.2.2", 3)),
            Object::Single(hop("fe80::2", 4)),
            Object::Group(vec![5, 9, 11]),
        ] {
            assert_eq!(
                parse(&as_dumped(&object, 77)),
                Some((77, 196, Some(object.clone())))
            );
        }
    }

    #[test]
    fn a_dumped_multipath_group_is_ours_and_a_resilient_one_is_not() {
        let dumped = |group_type: u16| {
            let mut out = as_dumped(&Object::Group(vec![2, 1]), 5);
            attr(&mut out, NHA_GROUP_TYPE, &group_type.to_ne_bytes());
            out
        };
        assert_eq!(
            parse(&dumped(0)),
            Some((5, 196, Some(Object::Group(vec![1, 2]))))
        );
        assert_eq!(parse(&dumped(1)), Some((5, 196, None)));
    }

    #[test]
    fn a_delete_names_only_the_id() {
        let mut out = Vec::new();
        encode_delete(&mut out, 3, 0x1234);
        assert_eq!(out.len(), 16 + 8 + 8);
        assert_eq!(u16::from_ne_bytes([out[4], out[5]]), RTM_DELNEXTHOP);
        assert_eq!(
            attributes(&out[24..]).collect::<Vec<_>>(),
            vec![(NHA_ID, &0x1234u32.to_ne_bytes()[..])]
        );
    }

    #[test]
    fn unused_objects_come_out_groups_before_their_members() {
        let mut objects = Objects::new();
        objects.insert(1, Object::Single(hop("2001:db8:1::2", 7)));
        objects.insert(2, Object::Single(hop("2001:db8:1::3", 7)));
        objects.insert(3, Object::Group(vec![1, 2]));
        objects.hold(2); // a route via 2 alone
        assert_eq!(objects.take_unused(), vec![3, 1]);
        assert_eq!(objects.len(), 1);
        assert_eq!(
            objects.id_of(&Object::Single(hop("2001:db8:1::3", 7))),
            Some(2)
        );
        objects.release(2);
        assert_eq!(objects.take_unused(), vec![2]);
        assert!(objects.is_empty());
    }

    #[test]
    fn a_group_lists_its_members_next_hops_sorted() {
        let mut objects = Objects::new();
        objects.insert(10, Object::Single(hop("2001:db8:1::3", 7)));
        objects.insert(11, Object::Single(hop("2001:db8:1::2", 7)));
        objects.insert(12, Object::Group(vec![10, 11]));
        assert_eq!(
            objects.next_hops(12),
            vec![hop("2001:db8:1::2", 7), hop("2001:db8:1::3", 7)]
        );
        assert_eq!(objects.users(10), 1);
    }

    #[test]
    fn a_legacy_object_is_never_reused_and_its_id_never_given_again() {
        let mut objects = Objects::new();
        let hop = Object::Single(hop("2001:db8:1::2", 7));
        let old = objects.fresh_id();
        objects.insert_legacy(old, hop.clone());
        objects.hold(old); // the route a previous run left
        assert!(objects.is_legacy(old));
        assert_eq!(objects.id_of(&hop), None);
        let new = objects.fresh_id();
        assert_ne!(new, old);
        objects.insert(new, hop.clone());
        assert_eq!(objects.id_of(&hop), Some(new));
        // The route moves to the new object: the old one goes, the new one stays found.
        objects.hold(new);
        objects.release(old);
        assert_eq!(objects.take_unused(), vec![old]);
        assert_eq!(objects.id_of(&hop), Some(new));
        assert!(!objects.is_legacy(old));
        objects.clear();
        let mut objects = Objects {
            next_id: old,
            ..objects
        };
        assert_ne!(objects.fresh_id(), old);
    }

    #[test]
    fn fresh_ids_skip_those_in_use() {
        let mut objects = Objects::new();
        let first = objects.fresh_id();
        objects.insert(first + 1, Object::Single(hop("192.0.2.2", 1)));
        assert_eq!(objects.fresh_id(), first + 2);
    }
}
