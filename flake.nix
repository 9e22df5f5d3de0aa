{
  description = "cilium-peer: passive BGP for Cilium nodes and IPv6 router advertisements on a NixOS VM host";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];

      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      systemOf = pkgs: pkgs.stdenv.hostPlatform.system;
    in
    {
      packages = forAllSystems (pkgs: {
        default = pkgs.callPackage ./nix/package.nix { };
        cilium-peer = self.packages.${systemOf pkgs}.default;
      });

      overlays.default = final: _prev: {
        cilium-peer = final.callPackage ./nix/package.nix { };
      };

      # The module with its package defaulting to this flake's build: no overlay needed, so
      # it works with a read-only pkgs (as in NixOS tests).
      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [ ./nix/module.nix ];
          services.ciliumPeer.package = lib.mkIf (self.packages ? ${systemOf pkgs}) (
            lib.mkDefault self.packages.${systemOf pkgs}.default
          );
        };

      checks = forAllSystems (
        pkgs:
        let
          runTest =
            test:
            pkgs.testers.runNixOSTest (
              import test {
                module = self.nixosModules.default;
                package = self.packages.${systemOf pkgs}.default;
              }
            );
        in
        {
          package = self.packages.${systemOf pkgs}.default;

          formatting =
            pkgs.runCommand "cilium-peer-formatting"
              {
                nativeBuildInputs = [
                  pkgs.nixfmt
                  pkgs.rustfmt
                ];
              }
              ''
                cd ${self}
                find . -name '*.nix' -not -path './target/*' -print0 | xargs -0 nixfmt --check
                find . -name '*.rs' -not -path './target/*' -not -path './fuzz/target/*' -print0 \
                  | xargs -0 rustfmt --check --edition 2024
                touch $out
              '';

          vm-bgp = runTest ./nix/tests/bgp.nix;
          vm-md5 = runTest ./nix/tests/md5.nix;
        }
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            pkgs.cargo
            pkgs.rustc
            pkgs.clippy
            pkgs.rustfmt
            pkgs.gobgp
            pkgs.gobgpd
            pkgs.bird2
            pkgs.ndisc6
            pkgs.radvd
            pkgs.iproute2
            pkgs.wireshark-cli
            pkgs.jq
          ];
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-tree);
    };
}
