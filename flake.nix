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
      # The one definition of the package: `pkgs.cilium-peer`, which the module's package
      # option defaults to (lib.mkPackageOption).
      overlays.default = final: _prev: {
        cilium-peer = final.callPackage ./nix/package.nix { };
      };

      packages = forAllSystems (
        pkgs:
        let
          inherit (self.overlays.default pkgs pkgs) cilium-peer;
        in
        {
          default = cilium-peer;
          inherit cilium-peer;
        }
      );

      # The module with the overlay that gives it its package.
      nixosModules.default = {
        imports = [ ./nix/module.nix ];
        nixpkgs.overlays = [ self.overlays.default ];
      };

      checks = forAllSystems (
        pkgs:
        let
          # The test nodes' pkgs is read-only (no nixpkgs.overlays): they get one with the
          # overlay already applied, and the module alone.
          testPkgs = pkgs.extend self.overlays.default;
          runTest =
            test:
            testPkgs.testers.runNixOSTest (
              import test {
                module = ./nix/module.nix;
                package = testPkgs.cilium-peer;
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
