//! The kernel's side of the core: the one rule for what the table must hold for a prefix,
//! putting back what others change in our table, and resynchronising after refusals.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::{Core, Resync, RouteTable};
use crate::fib::adopted::Adopted;
use crate::fib::diff::{FibOp, reconcile};
use crate::fib::netlink::FibError;
use crate::rib::{FibChange, NextHop, NextHops};

impl Core {
    /// Someone else changed our table: what they changed of ours is put back.
    pub(super) fn on_kernel_route(
        &mut self,
        now: Instant,
        prefix: IpNet,
        found: Vec<NextHop>,
        table: &mut impl RouteTable,
    ) {
        let want = self.kernel_route(&prefix);
        if *found == *want {
            return;
        }
        self.counters.repairs += 1;
        // One line per repair, at most 20 a minute (someone fighting us would flood the log).
        if now.duration_since(self.repair_log.0) >= Duration::from_secs(60) {
            self.repair_log = (now, 0);
        }
        self.repair_log.1 += 1;
        if self.repair_log.1 <= 20 {
            tracing::warn!(
                %prefix, deleted = found.is_empty(), found = ?found.iter().map(|h| h.gateway).collect::<Vec<_>>(),
                repairs_total = self.counters.repairs,
                "a route of ours was changed behind our back: putting it back"
            );
        }
        table.write(route_op(prefix, want));
    }

    pub(super) fn want_resync(&mut self) {
        if self.resync == Resync::Idle {
            self.resync = Resync::Wanted;
        }
    }

    pub(super) fn on_flushed(&mut self, now: Instant, failures: Vec<FibError>) {
        let failures = real_errors(failures);
        if self.resync == Resync::Writing {
            self.resync = Resync::Idle;
            match failures.first() {
                None => self.resync_backoff = Duration::ZERO,
                // Say a bridge lost its addresses: the routes can go back once it has them.
                Some(first) => {
                    self.resync_backoff = (self.resync_backoff * 2)
                        .clamp(Duration::from_secs(1), Duration::from_secs(30));
                    tracing::warn!(
                        error = %first, refused = failures.len(), retry_in_s = self.resync_backoff.as_secs(),
                        "kernel refused routes while resynchronising; trying again later"
                    );
                    self.resync_retry = Some(now + self.resync_backoff);
                }
            }
            return;
        }
        if let Some(first) = failures.first() {
            tracing::warn!(error = %first, refused = failures.len(), "kernel refused route changes; resynchronising the table");
            self.want_resync();
        }
    }

    /// Puts the kernel table back in line with what it must hold.
    pub(super) fn on_dumped(
        &mut self,
        dumped: Result<BTreeMap<IpNet, Vec<NextHop>>, String>,
        table: &mut impl RouteTable,
    ) {
        let kernel = match dumped {
            Ok(kernel) => kernel,
            Err(error) => {
                tracing::warn!(%error, "cannot dump the kernel table");
                self.resync = Resync::Idle;
                return;
            }
        };
        let desired = self
            .kernel_routes()
            .into_iter()
            .map(|(prefix, (hops, _))| (prefix, hops.to_vec()));
        for op in reconcile(desired, kernel) {
            table.write(op);
        }
        self.resync = Resync::Writing;
    }
}

/// The table operation that makes the kernel hold `next_hops` for `prefix`.
pub(super) fn route_op(prefix: IpNet, next_hops: NextHops) -> FibOp {
    if next_hops.is_empty() {
        FibOp::Delete { prefix }
    } else {
        FibOp::Replace { prefix, next_hops }
    }
}

/// The one rule for what the kernel table must hold for a prefix: the RIB's next hops and
/// those adopted from a previous run, less the next hops of nodes that do not answer on
/// their bridge.
#[derive(Clone, Copy)]
pub(super) struct KernelRule<'a> {
    pub(super) adopted: &'a Adopted,
    /// Gateways of the nodes liveness found unreachable.
    pub(super) unreachable: &'a HashSet<IpAddr>,
}

impl KernelRule<'_> {
    pub(super) fn route(&self, prefix: &IpNet, rib: &NextHops) -> NextHops {
        let hops = self.adopted.desired(prefix, rib);
        if self.unreachable.is_empty()
            || !hops.iter().any(|h| self.unreachable.contains(&h.gateway))
        {
            return hops;
        }
        let live: Vec<NextHop> = hops
            .iter()
            .filter(|h| !self.unreachable.contains(&h.gateway))
            .copied()
            .collect();
        live.into()
    }

    /// Writes a RIB result as the rule makes it.
    pub(super) fn write(&self, table: &mut impl RouteTable, change: FibChange) {
        let next_hops = self.route(&change.prefix, &change.next_hops);
        table.write(route_op(change.prefix, next_hops));
    }
}

/// Refusals that matter: deleting what is already gone is the outcome we wanted.
pub(super) fn real_errors(mut errors: Vec<FibError>) -> Vec<FibError> {
    errors.retain(|e| !(matches!(e.op, Some(FibOp::Delete { .. })) && e.errno == libc::ESRCH));
    errors
}
