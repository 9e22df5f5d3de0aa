//! UPDATE decoding, per prefix: what BIRD sends for bulk routes (many IPv4 prefixes in
//! one MP_REACH with an IPv6 next hop) and what Cilium's GoBGP sends (one prefix per
//! UPDATE).

use std::net::{IpAddr, Ipv6Addr};

use cilium_peer::bgp::wire::{
    self, AsPath, Context, Family, Message, MpNextHop, MpReach, Origin, PathAttributes, Update,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipnet::IpNet;

fn update(nlri: Vec<IpNet>, family: Family) -> Vec<u8> {
    let update = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            local_pref: Some(100),
            mp_reach: Some(MpReach {
                family,
                next_hop: MpNextHop {
                    address: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2)),
                    link_local: Some(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2)),
                },
                nlri,
            }),
            ..PathAttributes::default()
        },
        ..Update::default()
    };
    wire::encode(&Message::Update(update), &Context::default())
}

fn v4(i: u32) -> IpNet {
    let a = (10u32 << 24) | (i << 6);
    IpNet::new(IpAddr::from(a.to_be_bytes()), 26).unwrap()
}

fn v6(i: u32) -> IpNet {
    let a = (0xfd00_0001u128 << 96) | (u128::from(i) << 64);
    IpNet::new(IpAddr::V6(Ipv6Addr::from(a)), 64).unwrap()
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("update_decode");
    for (name, nlri, family) in [
        (
            "ipv4_packed",
            (0..600).map(v4).collect::<Vec<_>>(),
            Family::IPV4_UNICAST,
        ),
        (
            "ipv6_packed",
            (0..400).map(v6).collect::<Vec<_>>(),
            Family::IPV6_UNICAST,
        ),
        ("ipv6_one_per_update", vec![v6(7)], Family::IPV6_UNICAST),
    ] {
        let prefixes = nlri.len() as u64;
        let bytes = update(nlri, family);
        assert!(
            bytes.len() <= wire::MAX_MESSAGE_LEN,
            "{name}: {} bytes",
            bytes.len()
        );
        group.throughput(Throughput::Elements(prefixes));
        group.bench_function(name, |b| {
            b.iter(|| {
                let (message, used) =
                    wire::decode(std::hint::black_box(&bytes), &Context::default())
                        .unwrap()
                        .unwrap();
                assert_eq!(used, bytes.len());
                message
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
