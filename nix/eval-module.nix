# Evaluates services.ciliumPeer with nixpkgs' lib alone, without nixpkgs or NixOS: the NixOS
# options the module sets are declared here as stubs (with their real names, so a misspelt
# one fails), and `pkgs` is a stub holding the few functions the module calls, extended with
# `nixpkgs.overlays` as NixOS does (the flake's module brings the overlay with the package;
# the module alone takes `pkgs.cilium-peer` as nixpkgs would have it).
# tests/nix_files.rs drives it:
#   nix-instantiate --eval --strict --json nix/eval-module.nix \
#     --arg lib 'import /path/to/nixpkgs.lib/lib' --arg modules '[ ./nix/examples/host.nix ]'
{
  # nixpkgs' lib
  lib,
  # the host's configuration modules
  modules,
  # take the module from the flake's nixosModules.default (else nix/module.nix directly)
  viaFlake ? true,
}:

let
  inherit (lib) mkOption types;

  stubPackage = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };

  # The same type as nixpkgs' `(pkgs.formats.json { }).type`.
  jsonValue =
    let
      valueType =
        types.nullOr (
          types.oneOf [
            types.bool
            types.int
            types.float
            types.str
            types.path
            (types.attrsOf valueType)
            (types.listOf valueType)
          ]
        )
        // {
          description = "JSON value";
        };
    in
    valueType;

  platform = {
    system = "x86_64-linux";
  };

  basePkgs = {
    formats.json = _: {
      type = jsonValue;
      generate = name: _value: stubPackage name;
    };
    runCommand =
      name: _env: script:
      stubPackage name // { inherit script; };
    writeShellScript = name: text: stubPackage name // { inherit text; };
    callPackage = path: _args: stubPackage "callPackage-${baseNameOf path}";
    iproute2 = stubPackage "iproute2";
    stdenv = {
      hostPlatform = platform;
      buildPlatform = platform // {
        canExecute = _: true;
      };
    };
  };

  # networking.interfaces.<name>.ipv4.addresses and .ipv6.addresses
  interfaceAddresses = mkOption {
    type = types.listOf (
      types.submodule {
        options = {
          address = mkOption { type = types.str; };
          prefixLength = mkOption { type = types.int; };
        };
      }
    );
    default = [ ];
  };

  applyOverlay =
    final: previous: overlay:
    previous // overlay final previous;

  # `basePkgs` with these overlays applied, as nixpkgs applies `nixpkgs.overlays`.
  withOverlays = overlays: lib.fix (final: lib.foldl' (applyOverlay final) basePkgs overlays);

  # The module alone takes `pkgs.cilium-peer` as nixpkgs would hold it.
  moduleAloneOverlays = lib.optional (!viaFlake) (
    _final: _previous: { cilium-peer = stubPackage "cilium-peer-from-pkgs"; }
  );

  nixosStubs = {
    options = {
      nixpkgs.overlays = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      assertions = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      warnings = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      environment.etc = mkOption {
        type = types.attrsOf (
          types.submodule {
            options.source = mkOption { type = types.unspecified; };
            options.text = mkOption {
              type = types.nullOr types.lines;
              default = null;
            };
          }
        );
        default = { };
      };
      environment.systemPackages = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      networking.firewall.interfaces = mkOption {
        type = types.attrsOf (
          types.submodule {
            options.allowedTCPPorts = mkOption {
              type = types.listOf types.port;
              default = [ ];
            };
          }
        );
        default = { };
      };
      networking.interfaces = mkOption {
        type = types.attrsOf (
          types.submodule {
            options = {
              ipv4.addresses = interfaceAddresses;
              ipv6.addresses = interfaceAddresses;
            };
          }
        );
        default = { };
      };
      boot.kernel.sysctl = mkOption {
        type = types.attrsOf (
          types.oneOf [
            types.bool
            types.int
            types.str
          ]
        );
        default = { };
      };
      systemd.services = mkOption {
        type = types.attrsOf (
          types.submodule {
            options = {
              description = mkOption { type = types.str; };
              wantedBy = mkOption { type = types.listOf types.str; };
              after = mkOption { type = types.listOf types.str; };
              reloadTriggers = mkOption { type = types.listOf types.unspecified; };
              stopIfChanged = mkOption { type = types.bool; };
              serviceConfig = mkOption { type = types.attrsOf types.anything; };
            };
          }
        );
        default = { };
      };
    };
  };

  flake = import ../flake.nix;

  flakeOutputs = flake.outputs {
    self = flakeOutputs;
    nixpkgs = {
      inherit lib;
    };
  };

  module = if viaFlake then flakeOutputs.nixosModules.default else ./module.nix;

  evaluated = lib.evalModules {
    modules = [
      nixosStubs
      module
      (
        { config, ... }:
        {
          _module.args.pkgs = withOverlays (config.nixpkgs.overlays ++ moduleAloneOverlays);
        }
      )
    ]
    ++ modules;
  };

  inherit (evaluated) config;

  failedAssertions = builtins.filter (a: !a.assertion) config.assertions;

  service = config.systemd.services.cilium-peer;

  # an /etc file's text, or the name of its source
  textOrSource = file: if file.text != null then file.text else file.source.name;

  result = {
    settings = config.services.ciliumPeer.renderedSettings;
    ciliumManifests = {
      inherit (config.services.ciliumPeer.ciliumManifests) name script;
    };
    package = config.services.ciliumPeer.package.name;
    etc = lib.mapAttrs (_: textOrSource) config.environment.etc;
    firewall = config.networking.firewall.interfaces;
    sysctl = config.boot.kernel.sysctl;
    inherit (config) warnings;
    unit = {
      inherit (service)
        wantedBy
        after
        stopIfChanged
        ;
      reloadTriggers = map (file: file.name) service.reloadTriggers;
      serviceConfig = service.serviceConfig // {
        ExecStartPre = map (script: script.text) service.serviceConfig.ExecStartPre;
      };
    };
  };
in
if failedAssertions != [ ] then
  throw "failed assertions:\n${lib.concatMapStringsSep "\n" (a: "- ${a.message}") failedAssertions}"
else
  result
