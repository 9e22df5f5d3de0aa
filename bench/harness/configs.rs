//! What the lab's programs read: the injector's and BIRD's configs (BIRD's own syntax),
//! cilium-peer's (JSON), and the addresses and prefixes they use.

use std::fmt::Write as _;
use std::net::Ipv6Addr;
use std::path::Path;

use serde_json::json;

use crate::lab::Lab;
use crate::{ASN, BRIDGE, HOST_V6, TABLE};

/// The injector's address for session `i` of the many-peers case.
pub(crate) fn peer_address(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 1, i as u16)
}

/// The `i`th IPv4 and IPv6 prefix of the bulk set: /26s in 10.0.0.0/8, /64s in fd00:1::/32.
pub(crate) fn bulk_v4(i: u32) -> String {
    let a = i << 6;
    format!("10.{}.{}.{}/26", (a >> 16) & 255, (a >> 8) & 255, a & 255)
}

pub(crate) fn bulk_v6(i: u32) -> String {
    format!("fd00:1:{:x}:{:x}::/64", i >> 16, i & 0xffff)
}

/// The injector: static routes exported over iBGP with extended next hop, sessions
/// disabled until the measurement enables them. `sessions` are (name, local address,
/// router id, IPv4 export filter, IPv6 export filter).
pub(crate) fn injector_config(
    log: &Path,
    statics4: &str,
    statics6: &str,
    sessions: &[(String, String, String, String, String)],
) -> String {
    let mut c = format!(
        "log \"{}\" {{ info, warning, error, fatal }};\nrouter id 192.0.2.2;\nprotocol device {{}}\n\
         protocol static s4 {{ ipv4;\n{statics4}}}\nprotocol static s6 {{ ipv6;\n{statics6}}}\n",
        log.display()
    );
    for (name, local, router_id, filter4, filter6) in sessions {
        writeln!(
            c,
            "protocol bgp {name} {{\n  disabled;\n  router id {router_id};\n  local {local} as {ASN};\n  \
             neighbor {HOST_V6} as {ASN};\n  direct;\n  strict bind on;\n  graceful restart off;\n  connect delay time 1;\n  connect retry time 1;\n  \
             ipv4 {{ extended next hop on; next hop self; import none; export {filter4}; }};\n  \
             ipv6 {{ next hop self; import none; export {filter6}; }};\n}}"
        )
        .unwrap();
    }
    c
}

/// BIRD 2 as the seed's host: passive, a dynamic neighbor range, extended next hop,
/// kernel protocols exporting to the table (with `merge paths` for ECMP).
pub(crate) fn bird_host_config(log: &Path, merge_paths: bool) -> String {
    let merge = if merge_paths {
        "  merge paths on limit 255;\n"
    } else {
        ""
    };
    format!(
        "log \"{log}\" {{ info, warning, error, fatal }};\nrouter id 192.0.2.1;\nprotocol device {{}}\n\
         protocol kernel {{\n  kernel table {TABLE};\n{merge}  ipv4 {{ export all; }};\n}}\n\
         protocol kernel {{\n  kernel table {TABLE};\n{merge}  ipv6 {{ export filter {{ if source = RTS_STATIC then reject; accept; }}; }};\n}}\n\
         protocol static {{ ipv6; route 2001:db8:1::/64 via \"{BRIDGE}\"; }}\n\
         protocol bgp {{\n  local {HOST_V6} port 179 as {ASN};\n  neighbor range 2001:db8:1::/64 port 179 as {ASN} internal;\n  \
         dynamic name \"GW6_\";\n  direct;\n  passive;\n  ipv4 {{ extended next hop yes; import all; }};\n  ipv6 {{ import all; }};\n}}\n",
        log = log.display()
    )
}

pub(crate) fn cilium_peer_config(lab: &Lab) -> String {
    json!({
        "router_id": "192.0.2.1",
        "asn": ASN,
        "listen": ["[::]:179"],
        "kernel": { "table": TABLE, "persist": false, "multipath": true, "max_paths": 255 },
        "bridges": {
            BRIDGE: { "prefixes": ["192.0.2.0/24", "2001:db8:1::/64"], "ra": { "enable": false } },
        },
        "neighbors": [
            { "name": "node", "range": "2001:db8:1::/64", "asn": ASN, "graceful_restart": false },
        ],
        "control_socket": lab.dir.join("control.sock"),
    })
    .to_string()
}
