//! The RIB's hot paths: announcing prefixes (insert and decision), the decision among
//! several equal paths (ECMP best path), and removing a peer with all its paths.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use cilium_peer::rib::{NextHop, Path, PathAttrs, PeerInfo, Rib};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ipnet::IpNet;

const N: u32 = 100_000;

fn node(id: u32) -> PeerInfo {
    PeerInfo {
        id,
        address: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 1, id as u16)),
        router_id: Ipv4Addr::from(0x0aff_0000 + id),
        ebgp: false,
    }
}

fn path(id: u32, attrs: &Arc<PathAttrs>) -> Path {
    Path {
        next_hop: NextHop {
            gateway: node(id).address,
            ifindex: Some(3),
        },
        attrs: Arc::clone(attrs),
    }
}

fn prefix(i: u32) -> IpNet {
    if i.is_multiple_of(2) {
        let a = (10u32 << 24) | ((i / 2) << 6);
        IpNet::new(IpAddr::from(a.to_be_bytes()), 26).unwrap()
    } else {
        let a = (0xfd00_0001u128 << 96) | (u128::from(i / 2) << 64);
        IpNet::new(IpAddr::V6(Ipv6Addr::from(a)), 64).unwrap()
    }
}

/// A RIB holding N prefixes from peer 1.
fn loaded() -> Rib {
    let attrs = Arc::new(PathAttrs::default());
    let mut rib = Rib::new(true);
    rib.add_peer(node(1));
    for i in 0..N {
        rib.announce(1, prefix(i), path(1, &attrs));
    }
    rib
}

fn rib(c: &mut Criterion) {
    let attrs = Arc::new(PathAttrs::default());
    let mut group = c.benchmark_group("rib");
    group.sample_size(10);
    group.throughput(Throughput::Elements(u64::from(N)));
    group.bench_function("insert_100k_prefixes", |b| {
        b.iter_batched(
            || {
                let mut rib = Rib::new(true);
                rib.add_peer(node(1));
                rib
            },
            |mut rib| {
                for i in 0..N {
                    rib.announce(1, prefix(i), path(1, &attrs));
                }
                rib
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("remove_peer_100k_prefixes", |b| {
        b.iter_batched(
            loaded,
            |mut rib| {
                let mut removed = 0;
                rib.remove_peer(1, |change| {
                    removed += 1;
                    std::hint::black_box(change);
                });
                assert_eq!(removed, N as usize);
                rib
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();

    // Best path: a LoadBalancer IP announced by 200 nodes, one node after the other.
    let mut group = c.benchmark_group("rib_best_path");
    group.throughput(Throughput::Elements(200));
    group.bench_function("ecmp_200_nodes_one_prefix", |b| {
        b.iter_batched(
            || {
                let mut rib = Rib::new(true);
                for id in 1..=200 {
                    rib.add_peer(node(id));
                }
                rib
            },
            |mut rib| {
                let lb: IpNet = "198.51.100.80/32".parse().unwrap();
                for id in 1..=200 {
                    rib.announce(id, lb, path(id, &attrs));
                }
                rib
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, rib);
criterion_main!(benches);
