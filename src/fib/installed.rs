//! The FIB writer's books of its own routes: for each prefix we hold in the kernel table,
//! whether the route names a nexthop object (which one) or carries its gateways (a plain
//! route), and whether its delete waits for the next flush. Pure bookkeeping, no IO.
//!
//! It holds one entry per route of a table of 200,000 and more, so an entry is packed: an
//! IPv4 prefix with its state in 8 bytes, an IPv6 one in 20 (a `HashMap<IpNet, u32>` would
//! take 24 and 40 with padding). The state fits in 24 bits because our object ids are
//! [`FIRST_ID`] plus a number below 2^23 (see [`representable`]).

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Our nexthop object ids start here, clear of the small numbers people pick by hand.
pub const FIRST_ID: u32 = 0x4350_0000;

/// How many ids after [`FIRST_ID`] we use (ids wrap around within them).
pub const IDS: u32 = (1 << 23) - 1;

/// Whether `id` is one of the ids we give objects.
pub fn representable(id: u32) -> bool {
    id.wrapping_sub(FIRST_ID) < IDS
}

/// What the kernel holds for one of our routes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Installed {
    /// A route with its own gateways.
    Plain,
    /// A route naming this object.
    Object(u32),
    /// A route that named this object and is deleted at the next flush: explicitly if the
    /// object still has users then, otherwise by deleting the object.
    Deleting(u32),
}

const DELETING: u32 = 1 << 23;

impl Installed {
    fn pack(self) -> u32 {
        let offset = |id: u32| {
            debug_assert!(representable(id), "object id {id:#x} is not one of ours");
            id.wrapping_sub(FIRST_ID) + 1
        };
        match self {
            Installed::Plain => 0,
            Installed::Object(id) => offset(id),
            Installed::Deleting(id) => offset(id) | DELETING,
        }
    }

    fn unpack(bits: u32) -> Installed {
        let id = (bits & (DELETING - 1))
            .wrapping_sub(1)
            .wrapping_add(FIRST_ID);
        match bits {
            0 => Installed::Plain,
            _ if bits & DELETING != 0 => Installed::Deleting(id),
            _ => Installed::Object(id),
        }
    }
}

/// The books: see the module documentation.
#[derive(Default)]
pub struct Routes {
    /// Address (32 bits), prefix length (8), state (24).
    v4: HashTable<u64>,
    /// Address (16 bytes), prefix length, state (3 bytes, little endian).
    v6: HashTable<[u8; 20]>,
    hasher: RandomState,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("v4", &self.v4.len())
            .field("v6", &self.v6.len())
            .finish()
    }
}

fn v4_key(prefix: &Ipv4Net) -> u64 {
    (u64::from(u32::from(prefix.addr())) << 32) | (u64::from(prefix.prefix_len()) << 24)
}

const V4_KEY: u64 = !0xff_ffff;

fn v6_entry(prefix: &Ipv6Net, bits: u32) -> [u8; 20] {
    let mut entry = [0; 20];
    entry[..16].copy_from_slice(&prefix.addr().octets());
    entry[16] = prefix.prefix_len();
    entry[17..].copy_from_slice(&bits.to_le_bytes()[..3]);
    entry
}

fn v6_bits(entry: &[u8; 20]) -> u32 {
    u32::from_le_bytes([entry[17], entry[18], entry[19], 0])
}

fn v6_prefix(entry: &[u8; 20]) -> IpNet {
    let addr: [u8; 16] = entry[..16].try_into().expect("16 bytes");
    IpNet::V6(Ipv6Net::new_assert(addr.into(), entry[16]))
}

fn v4_prefix(entry: u64) -> IpNet {
    let addr = (entry >> 32) as u32;
    IpNet::V4(Ipv4Net::new_assert(addr.into(), (entry >> 24) as u8))
}

impl Routes {
    fn hash_v4(&self, entry: u64) -> u64 {
        self.hasher.hash_one(entry & V4_KEY)
    }

    fn hash_v6(&self, entry: &[u8; 20]) -> u64 {
        self.hasher.hash_one(&entry[..17])
    }

    pub fn get(&self, prefix: &IpNet) -> Option<Installed> {
        match prefix {
            IpNet::V4(p) => {
                let key = v4_key(p);
                self.v4
                    .find(self.hash_v4(key), |e| e & V4_KEY == key)
                    .map(|e| Installed::unpack((e & !V4_KEY) as u32))
            }
            IpNet::V6(p) => {
                let key = v6_entry(p, 0);
                self.v6
                    .find(self.hash_v6(&key), |e| e[..17] == key[..17])
                    .map(|e| Installed::unpack(v6_bits(e)))
            }
        }
    }

    /// Records `state` for `prefix`; returns the state it had.
    pub fn insert(&mut self, prefix: IpNet, state: Installed) -> Option<Installed> {
        let bits = state.pack();
        match prefix {
            IpNet::V4(p) => {
                let entry = v4_key(&p) | u64::from(bits);
                let hash = self.hash_v4(entry);
                let hasher = &self.hasher;
                match self.v4.entry(
                    hash,
                    |e| e & V4_KEY == entry & V4_KEY,
                    |e| hasher.hash_one(e & V4_KEY),
                ) {
                    hashbrown::hash_table::Entry::Occupied(mut o) => {
                        let old = Installed::unpack((o.get() & !V4_KEY) as u32);
                        *o.get_mut() = entry;
                        Some(old)
                    }
                    hashbrown::hash_table::Entry::Vacant(v) => {
                        v.insert(entry);
                        None
                    }
                }
            }
            IpNet::V6(p) => {
                let entry = v6_entry(&p, bits);
                let hash = self.hash_v6(&entry);
                let hasher = &self.hasher;
                match self.v6.entry(
                    hash,
                    |e| e[..17] == entry[..17],
                    |e| hasher.hash_one(&e[..17]),
                ) {
                    hashbrown::hash_table::Entry::Occupied(mut o) => {
                        let old = Installed::unpack(v6_bits(o.get()));
                        *o.get_mut() = entry;
                        Some(old)
                    }
                    hashbrown::hash_table::Entry::Vacant(v) => {
                        v.insert(entry);
                        None
                    }
                }
            }
        }
    }

    pub fn remove(&mut self, prefix: &IpNet) -> Option<Installed> {
        match prefix {
            IpNet::V4(p) => {
                let key = v4_key(p);
                let hash = self.hash_v4(key);
                let (entry, _) = self
                    .v4
                    .find_entry(hash, |e| e & V4_KEY == key)
                    .ok()?
                    .remove();
                Some(Installed::unpack((entry & !V4_KEY) as u32))
            }
            IpNet::V6(p) => {
                let key = v6_entry(p, 0);
                let hash = self.hash_v6(&key);
                let (entry, _) = self
                    .v6
                    .find_entry(hash, |e| e[..17] == key[..17])
                    .ok()?
                    .remove();
                Some(Installed::unpack(v6_bits(&entry)))
            }
        }
    }

    /// Keeps the routes for which `keep` says so.
    pub fn retain(&mut self, mut keep: impl FnMut(IpNet, Installed) -> bool) {
        self.v4
            .retain(|e| keep(v4_prefix(*e), Installed::unpack((*e & !V4_KEY) as u32)));
        self.v6
            .retain(|e| keep(v6_prefix(e), Installed::unpack(v6_bits(e))));
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        self.v4 = HashTable::new();
        self.v6 = HashTable::new();
    }

    /// Gives back memory after many routes went.
    pub fn shrink(&mut self) {
        let hasher = &self.hasher;
        if self.v4.capacity() > 2 * self.v4.len() + 1024 {
            self.v4.shrink_to_fit(|e| hasher.hash_one(e & V4_KEY));
        }
        if self.v6.capacity() > 2 * self.v6.len() + 1024 {
            self.v6.shrink_to_fit(|e| hasher.hash_one(&e[..17]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::net;

    #[test]
    fn every_state_packs_and_unpacks_to_itself() {
        for state in [
            Installed::Plain,
            Installed::Object(FIRST_ID),
            Installed::Object(FIRST_ID + IDS - 1),
            Installed::Deleting(FIRST_ID),
            Installed::Deleting(FIRST_ID + IDS - 1),
        ] {
            assert_eq!(Installed::unpack(state.pack()), state);
            assert!(state.pack() < 1 << 24);
        }
    }

    #[test]
    fn only_our_range_of_ids_is_representable() {
        assert!(representable(FIRST_ID));
        assert!(representable(FIRST_ID + IDS - 1));
        assert!(!representable(FIRST_ID + IDS));
        assert!(!representable(FIRST_ID - 1));
        assert!(!representable(1));
    }

    #[test]
    fn prefixes_of_both_families_and_lengths_are_told_apart() {
        let mut routes = Routes::default();
        let all = [
            ("10.0.0.0/8", Installed::Plain),
            ("10.0.0.0/16", Installed::Object(FIRST_ID + 1)),
            ("10.0.0.0/32", Installed::Deleting(FIRST_ID + 2)),
            ("::a00:0/104", Installed::Object(FIRST_ID + 3)),
            ("2001:db8::/32", Installed::Object(FIRST_ID + 4)),
            ("2001:db8::/64", Installed::Deleting(FIRST_ID + 5)),
        ];
        for (prefix, state) in all {
            assert_eq!(routes.insert(net(prefix), state), None);
        }
        assert_eq!(routes.len(), 6);
        for (prefix, state) in all {
            assert_eq!(routes.get(&net(prefix)), Some(state), "{prefix}");
        }
        assert_eq!(routes.get(&net("10.0.0.0/24")), None);
        assert_eq!(
            routes.insert(net("2001:db8::/64"), Installed::Plain),
            Some(Installed::Deleting(FIRST_ID + 5))
        );
        assert_eq!(
            routes.remove(&net("10.0.0.0/16")),
            Some(Installed::Object(FIRST_ID + 1))
        );
        assert_eq!(routes.remove(&net("10.0.0.0/16")), None);
        assert_eq!(routes.len(), 5);
    }

    #[test]
    fn retain_sees_every_prefix_with_its_state_and_drops_what_it_refuses() {
        let mut routes = Routes::default();
        for i in 0..1000u32 {
            let v4 = IpNet::new((10 << 24 | i << 8).to_be_bytes().into(), 24).unwrap();
            let v6 = IpNet::new(
                std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i) << 64).into(),
                64,
            )
            .unwrap();
            let state = if i % 2 == 0 {
                Installed::Deleting(FIRST_ID + i)
            } else {
                Installed::Object(FIRST_ID + i)
            };
            routes.insert(v4, state);
            routes.insert(v6, state);
        }
        let mut seen = 0;
        routes.retain(|prefix, state| {
            let i = match prefix {
                IpNet::V4(p) => (u32::from(p.addr()) >> 8) & 0xffff,
                IpNet::V6(p) => (u128::from(p.addr()) >> 64) as u32 & 0xffff,
            };
            assert_eq!(state.pack() & (DELETING - 1), i + 1);
            seen += 1;
            !matches!(state, Installed::Deleting(_))
        });
        assert_eq!(seen, 2000);
        assert_eq!(routes.len(), 1000);
        routes.shrink();
        assert_eq!(
            routes.get(&net("10.0.1.0/24")),
            Some(Installed::Object(FIRST_ID + 1))
        );
        assert_eq!(routes.get(&net("10.0.2.0/24")), None);
    }
}
