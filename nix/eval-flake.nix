# Evaluates the flake's outputs with nixpkgs' lib and a stub nixpkgs holding only what the
# flake uses, and reports their names: the outputs interface.md fixes, for both systems.
# tests/nix_files.rs drives it:
#   nix-instantiate --eval --strict --json nix/eval-flake.nix \
#     --arg lib 'import /path/to/nixpkgs.lib/lib'
{ lib }:

let
  stubPackage = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };

  stubPackages =
    system:
    lib.genAttrs [
      "cargo"
      "rustc"
      "clippy"
      "rustfmt"
      "gobgp"
      "gobgpd"
      "bird2"
      "ndisc6"
      "radvd"
      "iproute2"
      "wireshark-cli"
      "jq"
      "nixfmt"
      "nixfmt-tree"
    ] stubPackage
    // {
      stdenv.hostPlatform = {
        inherit system;
      };
      callPackage = _package: _args: stubPackage "cilium-peer";
      runCommand =
        name: _env: _script:
        stubPackage name;
      mkShell = arguments: stubPackage "shell" // { inherit (arguments) packages; };
      testers.runNixOSTest = test: stubPackage "vm-test-${test.name}";
      extend =
        overlay:
        let
          previous = stubPackages system;
        in
        previous // overlay previous previous;
    };

  flake = import ../flake.nix;

  outputs = flake.outputs {
    self = outputs;
    nixpkgs = {
      inherit lib;
      legacyPackages = lib.genAttrs [
        "x86_64-linux"
        "aarch64-linux"
      ] stubPackages;
    };
  };

  names = lib.mapAttrs (_: lib.attrNames);
in
{
  outputs = lib.attrNames outputs;
  packages = names outputs.packages;
  checks = lib.mapAttrs (_: lib.mapAttrs (_: check: check.name)) outputs.checks;
  devShells = names outputs.devShells;
  devShellPackages = lib.mapAttrs (
    _: shells: map (package: package.name) shells.default.packages
  ) outputs.devShells;
  formatter = lib.mapAttrs (_: formatter: formatter.name) outputs.formatter;
  nixosModules = lib.attrNames outputs.nixosModules;
}
