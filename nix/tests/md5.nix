# VM test: TCP-MD5 with a key file only root can read. The module hands it to the dynamic
# service user with LoadCredential and points password_file at the credential; a GoBGP node
# with the same key establishes its session (a segment without the right MD5 signature is
# dropped by the kernel, so an established session proves both ends use the key).
{ module, ... }:

let
  common = import ./common.nix;
  key = "cilium-peer-md5-test";
  keyFile = "/etc/cilium-peer-md5.key";
in
{
  name = "cilium-peer-md5";

  nodes = {
    host =
      { lib, ... }:
      {
        imports = [
          module
          common.host
        ];
        services.ciliumPeer.settings.neighbors = lib.mkForce [
          ((builtins.head common.hostSettings.neighbors) // { password_file = keyFile; })
        ];
        environment.etc."cilium-peer-md5.key" = {
          text = key;
          mode = "0400";
        };
      };

    node1 = common.ciliumNode {
      routerId = "192.0.2.11";
      password = key;
    };
  };

  testScript = ''
    ${common.pythonHelpers}

    start_all()
    host.wait_for_unit("cilium-peer.service")

    with subtest("the key file is root's only, the daemon reads it as a credential"):
        host.succeed("test \"$(stat -L -c '%U %a' ${keyFile})\" = 'root 400'")
        host.succeed(
            "systemctl show -P LoadCredential cilium-peer.service"
            + " | grep -q 'neighbor-0-password:${keyFile}'"
        )
        host.succeed(
            "jq -e '.neighbors[0].password_file"
            + " == \"/run/credentials/cilium-peer.service/neighbor-0-password\"'"
            + " /etc/cilium-peer/config.json"
        )

    with subtest("a node with the same key establishes its session"):
        address = slaac_address(node1)
        node1.wait_for_unit("gobgpd.service")
        node1.wait_until_succeeds("gobgp neighbor")
        node1.succeed("gobgp global rib add -a ipv4 10.244.1.0/24 origin igp")
        wait_established(node1)
        host.wait_until_succeeds(
            f"ip -4 route show table 1336 10.244.1.0/24 | grep -q 'via inet6 {address} dev vmbr-dev'"
        )
  '';
}
