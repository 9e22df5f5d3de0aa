//! Reconciliation of the desired FIB (the RIB's installed routes) with what the kernel
//! table holds (our routes from a netlink dump), as a list of [`FibOp`]s. Used at start, to
//! adopt the routes a previous run left in place, and to resync after netlink errors.
//! Pure: it never talks to the kernel itself.

use std::collections::BTreeMap;

use ipnet::IpNet;

use crate::rib::{NextHop, NextHops};

/// One change to the kernel table.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FibOp {
    /// Install the route, replacing whatever the table has for the prefix (RTM_NEWROUTE
    /// with NLM_F_CREATE | NLM_F_REPLACE). `next_hops` is sorted, without duplicates, and
    /// never empty.
    Replace { prefix: IpNet, next_hops: NextHops },
    /// Remove the route (RTM_DELROUTE).
    Delete { prefix: IpNet },
}

/// What to do so that the kernel holds exactly `desired`.
///
/// Next hops compare as sets: order and duplicates do not matter. Several entries for one
/// prefix are merged into one set (older kernels dump each leg of an IPv6 ECMP route as a
/// route of its own). A desired prefix with no next hops counts as absent; a kernel route
/// with none (not one we would install) is replaced or deleted. A route that is already as
/// desired is left alone (adopted).
///
/// The result is ordered: all `Replace`s first, then all `Delete`s, each by prefix. New
/// routes go in before stale ones go, so traffic covered by both never meets a gap.
pub fn reconcile(
    desired: impl IntoIterator<Item = (IpNet, Vec<NextHop>)>,
    kernel: impl IntoIterator<Item = (IpNet, Vec<NextHop>)>,
) -> Vec<FibOp> {
    let mut desired = merge(desired);
    desired.retain(|_, next_hops| !next_hops.is_empty());
    let mut kernel = merge(kernel);
    let mut ops = Vec::new();
    for (prefix, next_hops) in desired {
        if kernel.remove(&prefix).as_ref() != Some(&next_hops) {
            ops.push(FibOp::Replace {
                prefix,
                next_hops: next_hops.into(),
            });
        }
    }
    ops.extend(kernel.into_keys().map(|prefix| FibOp::Delete { prefix }));
    ops
}

/// One sorted, deduplicated next-hop set per prefix.
fn merge(routes: impl IntoIterator<Item = (IpNet, Vec<NextHop>)>) -> BTreeMap<IpNet, Vec<NextHop>> {
    let mut merged: BTreeMap<IpNet, Vec<NextHop>> = BTreeMap::new();
    for (prefix, next_hops) in routes {
        merged.entry(prefix).or_default().extend(next_hops);
    }
    for next_hops in merged.values_mut() {
        next_hops.sort_unstable();
        next_hops.dedup();
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::net;

    fn hops(gateways: &[&str]) -> Vec<NextHop> {
        gateways
            .iter()
            .map(|g| NextHop {
                gateway: g.parse().unwrap(),
                ifindex: Some(7),
            })
            .collect()
    }

    fn route(prefix: &str, gateways: &[&str]) -> (IpNet, Vec<NextHop>) {
        (net(prefix), hops(gateways))
    }

    fn replace(prefix: &str, gateways: &[&str]) -> FibOp {
        FibOp::Replace {
            prefix: net(prefix),
            next_hops: hops(gateways).into(),
        }
    }

    fn delete(prefix: &str) -> FibOp {
        FibOp::Delete {
            prefix: net(prefix),
        }
    }

    /// What a kernel table holding `kernel` holds after `ops`.
    fn apply(kernel: &[(IpNet, Vec<NextHop>)], ops: &[FibOp]) -> BTreeMap<IpNet, Vec<NextHop>> {
        let mut table: BTreeMap<IpNet, Vec<NextHop>> = kernel.iter().cloned().collect();
        for op in ops {
            match op {
                FibOp::Replace { prefix, next_hops } => {
                    table.insert(*prefix, next_hops.to_vec());
                }
                FibOp::Delete { prefix } => {
                    assert!(
                        table.remove(prefix).is_some(),
                        "{prefix} deleted but absent"
                    );
                }
            }
        }
        table
    }

    #[test]
    fn routes_already_as_desired_are_adopted_without_an_operation() {
        let routes = vec![
            route("10.0.1.0/24", &["192.0.2.1"]),
            route("2001:db8:1::/64", &["2001:db8::1", "2001:db8::2"]),
        ];
        assert_eq!(reconcile(routes.clone(), routes), vec![]);
    }

    #[test]
    fn routes_with_other_next_hops_are_replaced() {
        let ops = reconcile(
            vec![route("10.0.1.0/24", &["192.0.2.1", "192.0.2.2"])],
            vec![route("10.0.1.0/24", &["192.0.2.1"])],
        );
        assert_eq!(
            ops,
            vec![replace("10.0.1.0/24", &["192.0.2.1", "192.0.2.2"])]
        );
    }

    #[test]
    fn missing_routes_are_installed() {
        let ops = reconcile(vec![route("10.0.1.0/24", &["192.0.2.1"])], vec![]);
        assert_eq!(ops, vec![replace("10.0.1.0/24", &["192.0.2.1"])]);
    }

    #[test]
    fn kernel_routes_nobody_wants_are_deleted() {
        let ops = reconcile(
            vec![route("10.0.1.0/24", &["192.0.2.1"])],
            vec![
                route("10.0.1.0/24", &["192.0.2.1"]),
                route("10.0.9.0/24", &["192.0.2.9"]),
                route("2001:db8:9::/64", &[]),
            ],
        );
        assert_eq!(ops, vec![delete("10.0.9.0/24"), delete("2001:db8:9::/64")]);
    }

    #[test]
    fn a_desired_prefix_without_next_hops_counts_as_absent() {
        let ops = reconcile(
            vec![route("10.0.1.0/24", &[]), route("10.0.2.0/24", &[])],
            vec![route("10.0.1.0/24", &["192.0.2.1"])],
        );
        assert_eq!(ops, vec![delete("10.0.1.0/24")]);
    }

    #[test]
    fn next_hop_order_and_duplicates_are_not_differences() {
        let ops = reconcile(
            vec![route(
                "10.0.1.0/24",
                &["192.0.2.2", "192.0.2.1", "192.0.2.2"],
            )],
            vec![route("10.0.1.0/24", &["192.0.2.1", "192.0.2.2"])],
        );
        assert_eq!(ops, vec![]);
    }

    #[test]
    fn kernel_routes_listed_once_per_next_hop_are_merged() {
        let desired = vec![route("2001:db8:1::/64", &["2001:db8::1", "2001:db8::2"])];
        let legs = vec![
            route("2001:db8:1::/64", &["2001:db8::2"]),
            route("2001:db8:1::/64", &["2001:db8::1"]),
        ];
        assert_eq!(reconcile(desired, legs), vec![]);
    }

    #[test]
    fn replaced_next_hops_come_sorted_and_deduplicated() {
        let ops = reconcile(
            vec![route(
                "10.0.1.0/24",
                &["192.0.2.3", "192.0.2.1", "192.0.2.3"],
            )],
            vec![],
        );
        assert_eq!(
            ops,
            vec![replace("10.0.1.0/24", &["192.0.2.1", "192.0.2.3"])]
        );
    }

    #[test]
    fn operations_come_replaces_first_then_deletes_each_by_prefix() {
        let ops = reconcile(
            vec![
                route("2001:db8:2::/64", &["2001:db8::1"]),
                route("10.0.2.0/24", &["192.0.2.1"]),
                route("10.0.0.0/16", &["192.0.2.1"]),
            ],
            vec![
                route("2001:db8:9::/64", &["2001:db8::1"]),
                route("10.0.9.0/24", &["192.0.2.1"]),
                route("10.0.2.0/24", &["192.0.2.2"]),
            ],
        );
        assert_eq!(
            ops,
            vec![
                replace("10.0.0.0/16", &["192.0.2.1"]),
                replace("10.0.2.0/24", &["192.0.2.1"]),
                replace("2001:db8:2::/64", &["2001:db8::1"]),
                delete("10.0.9.0/24"),
                delete("2001:db8:9::/64"),
            ]
        );
    }

    #[test]
    fn applying_the_operations_leaves_exactly_the_desired_routes() {
        let desired = vec![
            route("10.0.1.0/24", &["192.0.2.1"]),
            route("10.0.2.0/24", &["192.0.2.1", "192.0.2.2"]),
            route("198.51.100.80/32", &["192.0.2.2"]),
            route("2001:db8:1::/64", &["2001:db8::1"]),
            route("2001:db8:ff::80/128", &["2001:db8::1", "2001:db8::2"]),
        ];
        let kernel = vec![
            route("10.0.1.0/24", &["192.0.2.1"]),
            route("10.0.2.0/24", &["192.0.2.2"]),
            route("10.0.3.0/24", &["192.0.2.3"]),
            route("2001:db8:1::/64", &["2001:db8::9"]),
            route("2001:db8:3::/64", &["2001:db8::3"]),
        ];
        let ops = reconcile(desired.clone(), kernel.clone());
        let table = apply(&kernel, &ops);
        assert_eq!(table, desired.iter().cloned().collect());
        let now: Vec<_> = table.into_iter().collect();
        assert_eq!(reconcile(desired, now), vec![]);
    }
}
