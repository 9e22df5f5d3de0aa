# The cilium-peer package: built from this repository with the Cargo.lock it ships.
{
  lib,
  rustPlatform,
}:

let
  cargoToml = builtins.fromTOML (builtins.readFile ../Cargo.toml);
  root = ../.;
in
rustPlatform.buildRustPackage {
  pname = cargoToml.package.name;
  inherit (cargoToml.package) version;

  # The crate and everything Cargo may read (sources, tests, docs a test parses),
  # without build output, VCS data or the Nix files: editing the module or the flake
  # does not rebuild the binary. flake.lock stays (tests/nix_files.rs reads it; a new
  # lock means a new toolchain and a rebuild anyway).
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.difference root (
      lib.fileset.unions [
        (lib.fileset.maybeMissing ../.git)
        (lib.fileset.maybeMissing ../target)
        (lib.fileset.maybeMissing ../fuzz/target)
        (lib.fileset.maybeMissing ../fuzz/corpus)
        (lib.fileset.maybeMissing ../fuzz/artifacts)
        ../nix
        ../flake.nix
        (lib.fileset.fileFilter (file: file.hasExt "pcap") root)
      ]
    );
  };

  cargoLock.lockFile = ../Cargo.lock;

  # The whole test suite runs in the build. Tests that need root (network namespaces)
  # or a Debian tool (gobgpd, bird, radvd, rdisc6, nix-instantiate) skip themselves
  # when it is missing, and the build sandbox is neither root nor has those tools.
  doCheck = true;

  meta = {
    inherit (cargoToml.package) description;
    license = lib.licenses.asl20;
    mainProgram = "cilium-peer";
    platforms = lib.platforms.linux;
  }
  // lib.optionalAttrs (cargoToml.package ? repository) {
    homepage = cargoToml.package.repository;
  };
}
