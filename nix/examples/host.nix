# A VM host as the project's seed set it up with bird2 and radvd: guests on the bridge
# vmbr-dev run Cilium, which peers (iBGP, AS 65100) with this host over IPv6; learned routes
# go to table 1336, which the host itself uses through a policy-routing rule.
# docs/nixos.md shows this file; tests/nix_files.rs evaluates it.
{
  services.ciliumPeer = {
    enable = true;
    openFirewall = true;
    routingPolicy.enable = true;
    settings = {
      router_id = "192.0.2.1";
      asn = 65100;
      kernel.table = 1336;
      bridges."vmbr-dev" = {
        prefixes = [
          "192.0.2.0/24"
          "2001:db8:1::/64"
        ];
        ra = {
          rdnss = [ "2001:db8:1::53" ];
          dnssl = [ "cluster.internal" ];
        };
      };
      neighbors = [
        {
          name = "cilium";
          range = "2001:db8:1::/64";
          asn = 65100;
          max_prefixes = 10000;
          import = [
            {
              prefix = "10.244.0.0/16";
              max_length = 32;
            }
            {
              prefix = "fd00:ff00::/32";
              max_length = 128;
            }
          ];
        }
      ];
    };
  };
}
