//! The FIB writer against a real kernel table, in a network namespace of its own: nexthop
//! objects and groups as `ip` shows them, one request for a lost peer, and the table equal
//! to the RIB after churn with injected failures (objects and routes removed underneath,
//! requests the kernel refuses, failure reports lost to a full socket buffer), in both
//! modes. Needs root and iproute2; skips otherwise.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::sync::Arc;

use cilium_peer::fib::diff::{FibOp, reconcile};
use cilium_peer::fib::netlink::{Fib, FibError, Mode};
use cilium_peer::rib::{FibChange, NextHop, Path, PathAttrs, PeerInfo, Rib};
use ipnet::IpNet;

const TABLE: u32 = 1337;
const PROTO: u8 = 196;

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A namespace with `d0` (192.0.2.1/24, 2001:db8:1::1/64), removed on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Option<Netns> {
        if common::skip_unless(tag, &["ip"]) {
            return None;
        }
        let name = format!("cpf{}{tag}", std::process::id() % 100_000);
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns(name);
        for args in [
            vec!["link", "set", "lo", "up"],
            vec!["link", "add", "d0", "type", "veth", "peer", "name", "d1"],
            vec!["link", "set", "d0", "up"],
            vec!["link", "set", "d1", "up"],
            vec!["address", "add", "192.0.2.1/24", "dev", "d0"],
            vec!["address", "add", "2001:db8:1::1/64", "dev", "d0", "nodad"],
        ] {
            ns.ip(&args);
        }
        Some(ns)
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", &self.0];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Runs `f` on a thread inside the namespace, with a current-thread runtime.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::scope(|s| {
            s.spawn(move || {
                let file = std::fs::File::open(&path).unwrap();
                // SAFETY: setns on a namespace file we opened, for this thread only.
                let r = unsafe {
                    libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET)
                };
                assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// Our nexthop objects, as `ip nexthop` lists them.
    fn objects(&self) -> Vec<String> {
        self.ip(&["nexthop", "show", "protocol", &PROTO.to_string()])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn ifindex() -> u32 {
    nix::net::if_::if_nametoindex("d0").unwrap()
}

fn node(id: u32) -> PeerInfo {
    PeerInfo {
        id,
        address: IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            1,
            0,
            0,
            0,
            0,
            0x10 + id as u16,
        )),
        router_id: Ipv4Addr::new(10, 255, 0, id as u8),
        ebgp: false,
    }
}

fn path(id: u32, ifindex: u32) -> Path {
    Path {
        next_hop: NextHop {
            gateway: node(id).address,
            ifindex: Some(ifindex),
        },
        attrs: Arc::new(PathAttrs::default()),
    }
}

fn pod(id: u32, i: u32) -> IpNet {
    if i.is_multiple_of(2) {
        format!("10.{id}.{}.0/24", i / 2).parse().unwrap()
    } else {
        format!("fd00:{id}:{:x}::/64", i / 2).parse().unwrap()
    }
}

fn lb(i: u32) -> IpNet {
    if i.is_multiple_of(2) {
        format!("198.51.100.{}/32", i / 2 + 1).parse().unwrap()
    } else {
        format!("2001:db8:ff::{:x}/128", i / 2 + 1).parse().unwrap()
    }
}

fn op(change: FibChange) -> FibOp {
    if change.next_hops.is_empty() {
        FibOp::Delete {
            prefix: change.prefix,
        }
    } else {
        FibOp::Replace {
            prefix: change.prefix,
            next_hops: change.next_hops,
        }
    }
}

fn desired(rib: &Rib) -> BTreeMap<IpNet, Vec<NextHop>> {
    rib.installed().map(|(p, h)| (p, h.to_vec())).collect()
}

/// Applies `ops` and flushes, as the daemon does; on a failure other than deleting what is
/// gone, resynchronises (dump, reconcile, apply) as the daemon does. Returns the failures.
async fn apply(fib: &mut Fib, rib: &Rib, ops: Vec<FibOp>) -> Vec<FibError> {
    let mut errors = Vec::new();
    for op in ops {
        errors.extend(fib.apply(op));
    }
    errors.extend(fib.flush());
    let resync = errors
        .iter()
        .any(|e| !(matches!(e.op, Some(FibOp::Delete { .. })) && e.errno == libc::ESRCH));
    if resync {
        let kernel = fib.dump().unwrap();
        for op in reconcile(desired(rib), kernel) {
            fib.apply(op);
        }
        fib.flush();
    }
    errors
}

#[test]
fn routes_use_one_object_per_next_hop_and_one_group_per_ecmp_set() {
    let Some(ns) = Netns::new("objects") else {
        return;
    };
    let (ops_for_loss, mode) = ns.run(|| {
        runtime().block_on(async {
            let mut fib = Fib::open(TABLE, PROTO).unwrap();
            let mode = fib.mode();
            let mut rib = Rib::new(true);
            let mut ops = Vec::new();
            for id in 1..=3 {
                rib.add_peer(node(id));
                for i in 0..200 {
                    ops.extend(rib.announce(id, pod(id, i), path(id, ifindex())).map(op));
                }
                for i in 0..4 {
                    ops.extend(rib.announce(id, lb(i), path(id, ifindex())).map(op));
                }
            }
            assert_eq!(apply(&mut fib, &rib, ops).await, vec![]);
            assert_eq!(fib.dump().unwrap(), desired(&rib));
            let before = fib.ops;
            let mut ops = Vec::new();
            rib.remove_peer(2, |c| ops.push(op(c)));
            assert_eq!(apply(&mut fib, &rib, ops).await, vec![]);
            assert_eq!(fib.dump().unwrap(), desired(&rib));
            (fib.ops - before, mode)
        })
    });
    assert_eq!(
        ops_for_loss, 204,
        "one operation per route of the lost peer"
    );
    if mode == Mode::PlainRoutes {
        eprintln!("this kernel has no nexthop objects: checked plain routes only");
        return;
    }
    // Peers 1 and 3 remain: two objects and the group of both.
    let objects = ns.objects();
    assert_eq!(objects.len(), 3, "{objects:?}");
    assert_eq!(objects.iter().filter(|o| o.contains("group")).count(), 1);
    let v4 = ns.ip(&["-4", "route", "show", "table", &TABLE.to_string()]);
    let line = v4.lines().find(|l| l.starts_with("10.1.0.0/24")).unwrap();
    assert!(
        line.contains("nhid") && line.contains("via inet6 2001:db8:1::11 dev d0"),
        "{line}"
    );
    let v6 = ns.ip(&["-6", "route", "show", "table", &TABLE.to_string()]);
    assert!(
        v6.contains("2001:db8:ff::1 nhid") && v6.contains("nexthop via 2001:db8:1::13 dev d0"),
        "{v6}"
    );
    assert!(
        !v4.contains("10.2."),
        "the lost peer's routes are gone: {v4}"
    );
}

#[test]
fn thousands_of_routes_go_with_their_object_or_one_by_one_while_another_peer_still_uses_it() {
    let Some(ns) = Netns::new("bulkdel") else {
        return;
    };
    ns.run(|| {
        runtime().block_on(async {
            let mut fib = Fib::open(TABLE, PROTO).unwrap();
            let mut rib = Rib::new(true);
            // Peers 1 and 2 announce 5,000 routes each via peer 1's address (a third-party
            // next hop for peer 2), peer 3 5,000 via its own.
            let prefix = |id: u32, i: u32| -> IpNet {
                let n = i / 2;
                match i % 2 {
                    0 => format!("10.{id}.{}.{}/32", n >> 8, n & 0xff),
                    _ => format!("fd00:{id}:{n:x}::/64"),
                }
                .parse()
                .unwrap()
            };
            let mut ops = Vec::new();
            for id in 1..=3 {
                rib.add_peer(node(id));
                let via = if id == 2 { 1 } else { id };
                for i in 0..5000 {
                    ops.extend(
                        rib.announce(id, prefix(id, i), path(via, ifindex()))
                            .map(op),
                    );
                }
            }
            assert_eq!(apply(&mut fib, &rib, ops).await, vec![]);
            assert_eq!(fib.dump().unwrap().len(), 15_000);
            let objects = fib.objects();
            for id in [2, 3] {
                let mut ops = Vec::new();
                rib.remove_peer(id, |c| ops.push(op(c)));
                assert_eq!(ops.len(), 5000);
                assert_eq!(apply(&mut fib, &rib, ops).await, vec![]);
                assert_eq!(fib.dump().unwrap(), desired(&rib), "peer {id} gone");
            }
            if fib.mode() == Mode::NexthopObjects {
                assert_eq!(objects, 2);
                assert_eq!(fib.objects(), 1, "peer 3's object went with its routes");
            }
        })
    });
}

/// A small deterministic generator (no dependency, same run every time).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % u64::from(n)) as u32
    }
}

fn churn_with_injected_failures(tag: &str, mode: Mode) {
    let Some(ns) = Netns::new(tag) else {
        return;
    };
    let ns = &ns;
    let (table, wanted, objects_kept) = ns
        .run(|| {
            runtime().block_on(async {
                let mut fib = match mode {
                    Mode::NexthopObjects => Fib::open(TABLE, PROTO).unwrap(),
                    Mode::PlainRoutes => Fib::open_with(TABLE, PROTO, Mode::PlainRoutes).unwrap(),
                };
                if fib.mode() != mode {
                    return None;
                }
                let mut rib = Rib::new(true);
                let mut random = Lcg(7);
                let mut failures = 0;
                for step in 0..60 {
                    let mut ops = Vec::new();
                    for _ in 0..random.below(300) {
                        let id = 1 + random.below(6);
                        if rib.peer_counts(id).received == 0 && random.below(2) == 0 {
                            rib.add_peer(node(id));
                        }
                        let prefix = if random.below(4) == 0 {
                            lb(random.below(10))
                        } else {
                            pod(id, random.below(100))
                        };
                        let change = match random.below(10) {
                            0 => {
                                rib.remove_peer(id, |c| ops.push(op(c)));
                                rib.add_peer(node(id));
                                None
                            }
                            1..=3 => rib.withdraw(id, prefix),
                            _ => {
                                rib.add_peer(node(id));
                                rib.announce(id, prefix, path(id, ifindex()))
                            }
                        };
                        ops.extend(change.map(op));
                    }
                    match step % 4 {
                        // Someone deletes one of our objects (and so its routes) by hand,
                        // and a request the kernel refuses makes it show.
                        1 => {
                            if let Some(line) = ns.objects().first() {
                                let id = line.split_whitespace().nth(1).unwrap().to_string();
                                ns.ip(&["nexthop", "del", "id", &id]);
                            }
                            ops.push(refused());
                        }
                        // Routes removed by hand, then a refused request.
                        2 => {
                            let table = TABLE.to_string();
                            let routes = ns.ip(&["-6", "route", "show", "table", &table]);
                            let prefixes: Vec<&str> = routes
                                .lines()
                                .filter(|l| !l.starts_with(char::is_whitespace))
                                .filter_map(|l| l.split_whitespace().next())
                                .take(20)
                                .collect();
                            for prefix in prefixes {
                                ns.ip(&["-6", "route", "del", prefix, "table", &table]);
                            }
                            ops.push(refused());
                        }
                        // Failure reports overflow a tiny receive buffer (ENOBUFS).
                        3 => {
                            fib.set_receive_buffer(512).unwrap();
                            ops.extend((0..200).map(|_| refused()));
                        }
                        _ => {}
                    }
                    let errors = apply(&mut fib, &rib, ops).await;
                    if step % 4 == 3 {
                        assert!(
                            errors
                                .iter()
                                .any(|e| e.op.is_none() && e.errno == libc::ENOBUFS),
                            "lost reports show as ENOBUFS: {} failures, none ENOBUFS",
                            errors.len()
                        );
                        fib.set_receive_buffer(8 << 20).unwrap();
                    }
                    failures += errors.len();
                }
                assert!(failures > 0, "failures were injected");
                let table = fib.dump().unwrap();
                Some((table, desired(&rib), fib.objects()))
            })
        })
        .map_or((None, None, 0), |(t, w, o)| (Some(t), Some(w), o));
    let (Some(table), Some(wanted)) = (table, wanted) else {
        common::skip(tag, "this kernel has no nexthop objects");
        return;
    };
    assert!(!wanted.is_empty());
    assert_eq!(table, wanted, "kernel table and RIB differ");
    if mode == Mode::NexthopObjects {
        // Every object we hold is in the kernel, and none is left unused.
        assert_eq!(ns.objects().len(), objects_kept);
    } else {
        assert_eq!(ns.objects().len(), 0);
    }
}

/// A route the kernel refuses: an IPv6 prefix via an IPv4 gateway (no nexthop object
/// can stand for it, so it is a plain route in both modes).
fn refused() -> FibOp {
    FibOp::Replace {
        prefix: "2001:db8:dead::/64".parse().unwrap(),
        next_hops: vec![NextHop {
            gateway: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99)),
            ifindex: Some(ifindex()),
        }]
        .into(),
    }
}

#[test]
fn the_table_equals_the_rib_after_churn_with_injected_failures() {
    churn_with_injected_failures("churn", Mode::NexthopObjects);
}

#[test]
fn plain_routes_equal_the_rib_after_churn_with_injected_failures() {
    churn_with_injected_failures("plain", Mode::PlainRoutes);
}
