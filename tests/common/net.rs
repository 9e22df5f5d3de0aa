//! Literals for tests: one `net` for every prefix type (also included by
//! tests/core_harness).

use std::fmt::Debug;
use std::str::FromStr;

/// A prefix (`IpNet`, `Ipv4Net`, `Ipv6Net`: whichever the caller wants) from a literal.
pub fn net<N: FromStr<Err: Debug>>(s: &str) -> N {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} is not a prefix: {e:?}"))
}
