# Shared pieces of the VM tests: the host with its bridge and the module, and "Cilium nodes"
# that run GoBGP configured as Cilium's embedded GoBGP is (iBGP AS 65100, active only, IPv4
# and IPv6 unicast over one IPv6 session, graceful restart on) and take their IPv6 address
# and default route from the host's router advertisements (SLAAC).
rec {
  bridge = "vmbr-dev";
  asn = 65100;
  table = 1336;
  hostIPv4 = "192.0.2.1";
  hostIPv6 = "2001:db8:100::1";
  bridgePrefixes = [
    "192.0.2.0/24"
    "2001:db8:100::/64"
  ];

  # The host's settings for services.ciliumPeer.settings.
  hostSettings = {
    router_id = hostIPv4;
    inherit asn;
    kernel.table = table;
    bridges.${bridge} = {
      prefixes = bridgePrefixes;
      ra = {
        enable = true;
        min_interval = 3;
        max_interval = 10;
      };
    };
    neighbors = [
      {
        name = "cilium";
        range = "2001:db8:100::/64";
        inherit asn;
        import = [
          {
            prefix = "10.244.0.0/16";
            max_length = 32;
          }
          {
            prefix = "fd00:ff00::/32";
            max_length = 128;
          }
          {
            prefix = "198.51.100.0/24";
            max_length = 32;
          }
        ];
      }
    ];
  };

  # The host: its first test NIC (eth1) is the only port of the bridge, which carries the
  # host's addresses.
  host =
    { lib, pkgs, ... }:
    {
      virtualisation.vlans = [ 1 ];
      networking = {
        useDHCP = false;
        bridges.${bridge}.interfaces = [ "eth1" ];
        interfaces.eth1 = {
          ipv4.addresses = lib.mkForce [ ];
          ipv6.addresses = lib.mkForce [ ];
        };
        interfaces.${bridge} = {
          ipv4.addresses = [
            {
              address = hostIPv4;
              prefixLength = 24;
            }
          ];
          ipv6.addresses = [
            {
              address = hostIPv6;
              prefixLength = 64;
            }
          ];
        };
      };
      services.ciliumPeer = {
        enable = true;
        openFirewall = true;
        routingPolicy.enable = true;
        settings = hostSettings;
      };
      environment.systemPackages = [ pkgs.jq ];
    };

  # A Cilium node: static IPv4 on the bridge's subnet, IPv6 by SLAAC only.
  ciliumNode =
    {
      routerId,
      password ? null,
    }:
    { lib, pkgs, ... }:
    {
      virtualisation.vlans = [ 1 ];
      networking = {
        useDHCP = false;
        tempAddresses = "disabled";
        interfaces.eth1 = {
          ipv4.addresses = lib.mkForce [
            {
              address = routerId;
              prefixLength = 24;
            }
          ];
          ipv6.addresses = lib.mkForce [ ];
        };
      };
      # Cilium turns forwarding on, and a forwarding interface takes RAs only with
      # accept_ra = 2.
      boot.kernel.sysctl = {
        "net.ipv4.conf.all.forwarding" = true;
        "net.ipv6.conf.all.forwarding" = true;
        "net.ipv6.conf.eth1.accept_ra" = 2;
        "net.ipv6.conf.eth1.autoconf" = 1;
      };
      environment.systemPackages = [
        pkgs.gobgp
        pkgs.ndisc6
        pkgs.jq
      ];
      services.gobgpd = {
        enable = true;
        settings = {
          global = {
            config = {
              as = asn;
              router-id = routerId;
              # no listener: active only, like Cilium
              port = -1;
            };
            # Cilium imports nothing.
            apply-policy.config = {
              import-policy-list = [ "allow-local" ];
              default-import-policy = "reject-route";
            };
          };
          neighbors = [
            {
              config = {
                neighbor-address = hostIPv6;
                peer-as = asn;
              }
              // lib.optionalAttrs (password != null) { auth-password = password; };
              timers.config = {
                connect-retry = 5;
                hold-time = 90;
                keepalive-interval = 30;
              };
              graceful-restart.config = {
                enabled = true;
                restart-time = 120;
                notification-enabled = true;
              };
              afi-safis = [
                {
                  config.afi-safi-name = "ipv4-unicast";
                  mp-graceful-restart.config.enabled = true;
                }
                {
                  config.afi-safi-name = "ipv6-unicast";
                  mp-graceful-restart.config.enabled = true;
                }
              ];
            }
          ];
          policy-definitions = [
            {
              name = "allow-local";
              statements = [
                {
                  conditions.bgp-conditions.route-type = "local";
                  actions.route-disposition = "accept-route";
                }
              ];
            }
          ];
        };
      };
    };

  # Python helpers shared by the test scripts (the driver lints the scripts with pyflakes:
  # each script imports what else it uses).
  pythonHelpers = ''
    import json


    def slaac_address(node):
        """The node's global address on eth1 from our RA's prefix."""
        node.wait_until_succeeds(
            "ip -6 addr show dev eth1 scope global | grep -v tentative | grep -q 'inet6 2001:db8:100:'"
        )
        links = json.loads(node.succeed("ip -6 -j addr show dev eth1 scope global"))
        # addr_info may hold empty objects
        found = [
            a["local"]
            for link in links
            for a in link["addr_info"]
            if a.get("local", "").startswith("2001:db8:100:") and not a.get("tentative")
        ]
        assert len(found) == 1, f"{node.name}: expected one SLAAC address, got {found}"
        return found[0]


    def wait_established(node):
        node.wait_until_succeeds("gobgp neighbor | grep -q Establ", timeout=300)


    def gobgp_uptime(node):
        """When GoBGP's session came up; a reset session gets a new one."""
        peers = json.loads(node.succeed("gobgp neighbor -j"))
        assert len(peers) == 1, peers
        return peers[0]["timers"]["state"]["uptime"]


    def host_sessions(host):
        doc = json.loads(host.succeed("cilium-peer show peers --json"))
        return doc["peers"] if isinstance(doc, dict) else doc


    def main_pid(host):
        return host.succeed("systemctl show -P MainPID cilium-peer.service").strip()
  '';
}
