//! BIRD 2 as the node's BGP speaker (some users run it instead of Cilium's GoBGP): eBGP over
//! IPv6 with a 32-byte (global + link-local) next hop, IPv4 routes by extended next hop.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[test]
fn a_bird_node_over_ebgp_with_32_byte_next_hops_gets_its_routes_installed() {
    let Some(mut lab) = lab_or_skip("bird peer", &["bird", "birdc"]) else {
        return;
    };
    let node = lab.node("a", &["192.0.2.13/24", "2001:db8:1::13/64"]);
    let config = host_config_json(
        &lab,
        &["[::]:179"],
        "2001:db8:1::/64",
        json!({ "asn": 65200 }),
    )
    .to_string();
    lab.start_cilium_peer(&config);
    lab.start_bird(
        &node,
        r#"
log stderr all;
router id 192.0.2.13;
protocol device { }
protocol static s4 { ipv4; route 10.244.5.0/24 unreachable; route 198.51.100.9/32 unreachable; }
protocol static s6 { ipv6; route fd00:ff00:5::/64 unreachable; }
protocol bgp host {
  local 2001:db8:1::13 as 65200;
  neighbor 2001:db8:1::1 as 65100;
  connect retry time 1;
  ipv4 { extended next hop on; import none; export all; };
  ipv6 { import none; export all; };
}
"#,
    );
    wait_for(
        &format!(
            "BIRD's session to be Established\n{}",
            lab.log("cilium-peer")
        ),
        Duration::from_secs(30),
        || {
            lab.birdc(&node, &["show", "protocols", "host"])
                .contains("Established")
                .then_some(())
        },
    );
    let v4 = lab.wait_route("10.244.5.0/24");
    assert_eq!(v4["via"]["family"], "inet6", "{v4}");
    assert_eq!(v4["via"]["host"], "2001:db8:1::13", "{v4}");
    assert_eq!(v4["dev"], BRIDGE, "{v4}");
    let v6 = lab.wait_route("fd00:ff00:5::/64");
    assert_eq!(gateway(&v6), "2001:db8:1::13", "{v6}");
    lab.wait_route("198.51.100.9/32");

    let peers = lab.show("peers");
    assert_eq!(peers[0]["asn"], 65200, "{peers}");
    assert_eq!(peers[0]["received"], 3, "{peers}");
    assert_eq!(peers[0]["installed"], 3, "{peers}");

    // BIRD withdraws when its static route goes.
    lab.birdc(&node, &["disable", "s6"]);
    lab.wait_no_route("fd00:ff00:5::/64");
    assert!(lab.route("10.244.5.0/24").is_some());
}
