# VM test: a host with the module on the bridge vmbr-dev and two Cilium nodes (GoBGP) that
# take their IPv6 address from our RAs and peer over IPv6. Checks the sessions, pod CIDRs in
# table 1336 (the IPv4 one via inet6), a LoadBalancer IP as ECMP, a ping from the host into a
# pod address, a config change applied by switch-to-configuration as a reload that keeps the
# sessions, a package change applied as a restart that keeps the guests' default route, and a
# stop that withdraws it.
{
  module,
  package,
}:

let
  common = import ./common.nix;
in
{
  name = "cilium-peer-bgp";

  nodes = {
    host =
      { lib, pkgs, ... }:
      {
        imports = [
          module
          common.host
        ];

        # A config-only change: switch-to-configuration reloads the service.
        specialisation.reloaded.configuration = {
          services.ciliumPeer.settings.bridges.${common.bridge}.ra.rdnss = [ "2001:db8:100::53" ];
        };

        # A new package (same binary, new store path): switch-to-configuration restarts it.
        specialisation.relinked.configuration = {
          services.ciliumPeer.package = lib.mkForce (
            pkgs.symlinkJoin {
              name = "cilium-peer-relinked";
              paths = [ package ];
            }
          );
        };
      };

    node1 = common.ciliumNode { routerId = "192.0.2.11"; };
    node2 = common.ciliumNode { routerId = "192.0.2.12"; };
  };

  testScript = ''
    import ipaddress
    import time

    ${common.pythonHelpers}

    cilium_nodes = [(node1, 1), (node2, 2)]

    start_all()
    host.wait_for_unit("cilium-peer.service")

    with subtest("the policy-routing rules make the host use table 1336"):
        host.succeed(
            "ip -4 rule show | grep -q '^30000:.*lookup 1336'",
            "ip -6 rule show | grep -q '^30000:.*lookup 1336'",
        )

    with subtest("the nodes take their address and default route from our RAs"):
        addresses: dict[str, str] = {}
        for node, _ in cilium_nodes:
            addresses[node.name] = slaac_address(node)
            node.wait_until_succeeds("ip -6 route show default dev eth1 | grep -q 'via fe80::'")

    with subtest("the nodes announce their pod CIDRs and a shared LoadBalancer IP"):
        for node, n in cilium_nodes:
            node.succeed(
                "ip link add pod0 type dummy",
                "ip link set pod0 up",
                f"ip addr add 10.244.{n}.1/32 dev pod0",
                f"ip addr add fd00:ff00:{n}::1/128 dev pod0 nodad",
            )
            node.wait_for_unit("gobgpd.service")
            node.wait_until_succeeds("gobgp neighbor")
            node.succeed(
                f"gobgp global rib add -a ipv4 10.244.{n}.0/24 origin igp",
                f"gobgp global rib add -a ipv6 fd00:ff00:{n}::/64 origin igp",
                "gobgp global rib add -a ipv4 198.51.100.10/32 origin igp",
                "gobgp global rib add -a ipv6 fd00:ff00:ffff::10/128 origin igp",
            )

    with subtest("the sessions are established"):
        for node, _ in cilium_nodes:
            wait_established(node)
        host.wait_until_succeeds(
            "cilium-peer show peers --json | jq -e '(if type == \"object\" then .peers else . end) | length == 2'"
        )
        sessions = host_sessions(host)
        assert sorted(ipaddress.ip_address(s["address"]) for s in sessions) == sorted(
            ipaddress.ip_address(a) for a in addresses.values()
        ), sessions
        for s in sessions:
            assert s["asn"] == 65100, s
            assert s["state"].lower() == "established", s

    with subtest("pod CIDRs are in table 1336, the IPv4 one via inet6"):
        for node, n in cilium_nodes:
            a = addresses[node.name]
            host.wait_until_succeeds(
                f"ip -4 route show table 1336 10.244.{n}.0/24 | grep -q 'via inet6 {a} dev vmbr-dev'"
            )
            host.wait_until_succeeds(
                f"ip -6 route show table 1336 fd00:ff00:{n}::/64 | grep -q 'via {a} dev vmbr-dev'"
            )

    with subtest("the shared LoadBalancer IP is one ECMP route over both nodes"):
        for family, prefix in (("-4", "198.51.100.10"), ("-6", "fd00:ff00:ffff::10")):
            # iproute2 names the list "nexthops" ("multipath" in some older versions)
            host.wait_until_succeeds(
                f"ip {family} -j route show table 1336 {prefix}"
                + " | jq -e '.[0] | (.nexthops // .multipath) | length == 2'"
            )
            routes = json.loads(host.succeed(f"ip {family} -j route show table 1336 {prefix}"))
            hops = routes[0].get("nexthops") or routes[0]["multipath"]
            gateways = sorted(h["gateway"] if "gateway" in h else h["via"]["host"] for h in hops)
            assert gateways == sorted(addresses.values()), routes
            assert all(h["dev"] == "vmbr-dev" for h in hops), routes

    with subtest("the host reaches pod addresses through the learned routes"):
        host.succeed(
            "ping -c 1 -W 5 10.244.1.1",
            "ping -c 1 -W 5 10.244.2.1",
            "ping -c 1 -W 5 fd00:ff00:1::1",
            "ping -c 1 -W 5 fd00:ff00:2::1",
        )

    with subtest("a config change is a reload that keeps the sessions"):
        uptimes = {node.name: gobgp_uptime(node) for node, _ in cilium_nodes}
        pid = main_pid(host)
        host.succeed("/run/booted-system/specialisation/reloaded/bin/switch-to-configuration test")
        host.succeed("systemctl is-active cilium-peer.service")
        assert main_pid(host) == pid, "the service was restarted, not reloaded"
        # the new setting is in effect: the RAs now carry the RDNSS option
        node1.wait_until_succeeds("rdisc6 -1 eth1 | grep -q 2001:db8:100::53")
        for node, _ in cilium_nodes:
            wait_established(node)
            assert gobgp_uptime(node) == uptimes[node.name], f"{node.name}: the session was reset"
        host.succeed("/run/booted-system/bin/switch-to-configuration test")
        assert main_pid(host) == pid, "switching back restarted the service"

    with subtest("a new package is a restart that keeps the guests' default route"):
        for node, _ in cilium_nodes:
            node.succeed(
                "systemd-run --unit=route-monitor -p StandardOutput=file:/tmp/route-events"
                + " \"$(command -v ip)\" -6 monitor route"
            )
        time.sleep(1)
        pid = main_pid(host)
        host.succeed("/run/booted-system/specialisation/relinked/bin/switch-to-configuration test")
        host.wait_for_unit("cilium-peer.service")
        assert main_pid(host) != pid, "the service was not restarted"
        # routes stay in the kernel across the restart (kernel.persist)
        host.succeed("ip -4 route show table 1336 10.244.1.0/24 | grep -q 'via inet6'")
        for node, _ in cilium_nodes:
            wait_established(node)
        time.sleep(3)
        for node, _ in cilium_nodes:
            node.fail("grep -q '^Deleted default' /tmp/route-events")
            node.succeed("ip -6 route show default dev eth1 | grep -q 'via fe80::'")
        host.succeed("ping -c 1 -W 5 10.244.1.1")

    with subtest("a stop sends final RAs: the nodes drop the host as default router"):
        host.succeed("systemctl stop cilium-peer.service")
        for node, _ in cilium_nodes:
            node.wait_until_succeeds("grep -q '^Deleted default' /tmp/route-events", timeout=60)
            node.fail("ip -6 route show default dev eth1 | grep -q .")
        # the learned routes stay installed (kernel.persist)
        host.succeed("ip -4 route show table 1336 10.244.1.0/24 | grep -q 'via inet6'")

    with subtest("a start adopts the routes and brings the sessions back"):
        host.succeed("systemctl start cilium-peer.service")
        for node, _ in cilium_nodes:
            wait_established(node)
            node.wait_until_succeeds("ip -6 route show default dev eth1 | grep -q 'via fe80::'")
        host.succeed("ping -c 1 -W 5 10.244.2.1")
  '';
}
