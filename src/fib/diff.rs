//! Reconciliation of the desired FIB (the RIB's installed routes) with what the kernel
//! table holds (our routes from a netlink dump), as a list of [`FibOp`]s. Used at start, to
//! adopt the routes a previous run left in place, and to resync after netlink errors.
//! Pure: it never talks to the kernel itself.

use std::collections::BTreeMap;

use ipnet::IpNet;

use crate::rib::NextHop;

/// One change to the kernel table.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FibOp {
    /// Install the route, replacing whatever the table has for the prefix (RTM_NEWROUTE
    /// with NLM_F_CREATE | NLM_F_REPLACE). `next_hops` is sorted, without duplicates, and
    /// never empty.
    Replace {
        prefix: IpNet,
        next_hops: Vec<NextHop>,
    },
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
            ops.push(FibOp::Replace { prefix, next_hops });
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
