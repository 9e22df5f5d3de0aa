//! Checks the Nix side of the project with what a machine without NixOS can run: every `.nix`
//! file parses (`nix-instantiate --parse`), flake.lock pins nixpkgs on the branch flake.nix
//! names, and, given nixpkgs' lib, `services.ciliumPeer` evaluates (nix/eval-module.nix, stub
//! NixOS options) to the expected config.json and unit, and to the `cilium-manifests` command
//! line that builds the Cilium side, while mistyped options fail.
//!
//! Tests needing `nix-instantiate` skip when it is missing (fail under CI); the module tests
//! also need the path of a nixpkgs' lib checkout in `CILIUM_PEER_NIXPKGS_LIB` and skip
//! without it, under CI too (no registry CI reaches ships it), printed and counted.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

const LIB_VARIABLE: &str = "CILIUM_PEER_NIXPKGS_LIB";

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The running test's name, for its skip line.
fn this_test() -> String {
    std::thread::current()
        .name()
        .unwrap_or("nix_files")
        .to_string()
}

/// Whether nix-instantiate is here; skips the test otherwise (a failure under CI, whose
/// scripts/deps installs nix-bin).
fn have_nix_instantiate() -> bool {
    !common::skip_unless_installed(&this_test(), &["nix-instantiate"])
}

/// The `lib` directory of the nixpkgs' lib checkout named by `CILIUM_PEER_NIXPKGS_LIB`.
/// Without it the test skips, under CI too: no package registry CI reaches ships nixpkgs'
/// lib, so this is the one skip CI allows (README, "Tests").
fn nixpkgs_lib() -> Option<PathBuf> {
    let Some(root) = std::env::var_os(LIB_VARIABLE) else {
        common::skip_even_in_ci(
            &this_test(),
            &format!(
                "set {LIB_VARIABLE} to a checkout of the public repository \
                 nix-community/nixpkgs.lib (or of nixpkgs) to evaluate the NixOS module, e.g. \
                 {LIB_VARIABLE}=/tmp/nixpkgs.lib cargo test --test nix_files"
            ),
        );
        return None;
    };
    let root = PathBuf::from(root);
    let lib = if root.join("lib/default.nix").is_file() {
        root.join("lib")
    } else {
        root.clone()
    };
    assert!(
        lib.join("default.nix").is_file(),
        "{LIB_VARIABLE}={} holds neither lib/default.nix nor default.nix",
        root.display()
    );
    Some(lib)
}

fn nix_files(directory: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(directory).expect("the repository is readable") {
        let entry = entry.expect("a directory entry");
        let path = entry.path();
        let kind = entry.file_type().expect("a file type");
        let name = entry.file_name();
        if kind.is_dir() && name != "target" && name != ".git" {
            nix_files(&path, found);
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "nix") {
            found.push(path);
        }
    }
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A Nix expression for the path `path` (any characters but `"` and `${`).
fn nix_path(path: &Path) -> String {
    format!("(/. + \"{}\")", path.display())
}

/// Evaluates nix/eval-module.nix with nix/examples/host.nix followed by `extra` (Nix module
/// expressions), returning its JSON or nix-instantiate's error output.
fn evaluate(lib: &Path, extra: &str, via_flake: bool) -> Result<Value, String> {
    let repository = repository();
    let output = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(repository.join("nix/eval-module.nix"))
        .args(["--arg", "lib"])
        .arg(format!("import {}", nix_path(lib)))
        .args(["--arg", "modules"])
        .arg(format!(
            "[ {} {extra} ]",
            nix_path(&repository.join("nix/examples/host.nix"))
        ))
        .args([
            "--arg",
            "viaFlake",
            if via_flake { "true" } else { "false" },
        ])
        .output()
        .expect("nix-instantiate runs");
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).expect("nix-instantiate --json prints JSON"))
    } else {
        Err(stderr_of(&output))
    }
}

fn evaluate_ok(lib: &Path, extra: &str) -> Value {
    evaluate(lib, extra, true).unwrap_or_else(|error| panic!("evaluation failed:\n{error}"))
}

fn evaluate_err(lib: &Path, extra: &str) -> String {
    match evaluate(lib, extra, true) {
        Ok(value) => panic!("evaluation of {extra} succeeded with {value}"),
        Err(error) => error,
    }
}

#[test]
fn every_nix_file_in_the_repository_parses() {
    if !have_nix_instantiate() {
        return;
    }
    let repository = repository();
    let mut files = Vec::new();
    nix_files(&repository, &mut files);
    for expected in [
        "flake.nix",
        "nix/module.nix",
        "nix/package.nix",
        "nix/tests/bgp.nix",
    ] {
        assert!(
            files.contains(&repository.join(expected)),
            "{expected} not found among {files:?}"
        );
    }
    let failures: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let output = Command::new("nix-instantiate")
                .arg("--parse")
                .arg(file)
                .output()
                .expect("nix-instantiate runs");
            (!output.status.success())
                .then(|| format!("{}:\n{}", file.display(), stderr_of(&output)))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// nixfmt (RFC 166) breaks a function of three or more plain arguments onto its own lines
/// (`f =\n  a: b: c:\n  body;`); `nix flake check` runs nixfmt, and none can be built here.
#[test]
fn no_nix_file_puts_three_plain_arguments_and_a_body_on_one_line() {
    let mut files = Vec::new();
    nix_files(&repository(), &mut files);
    let mut offenders = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable .nix file");
        for (number, line) in text.lines().enumerate() {
            let Some((_, right)) = line.split_once(" = ") else {
                continue;
            };
            let mut rest = right.trim_start();
            let mut arguments = 0;
            while let Some((head, tail)) = rest.split_once(": ")
                && !head.is_empty()
                && head
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
            {
                arguments += 1;
                rest = tail;
            }
            if arguments >= 3 && !rest.trim().is_empty() {
                offenders.push(format!("{}:{}: {line}", file.display(), number + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "not as nixfmt writes them:\n{}",
        offenders.join("\n")
    );
}

fn flake_lock() -> Value {
    let text = fs::read_to_string(repository().join("flake.lock")).expect("flake.lock exists");
    serde_json::from_str(&text).expect("flake.lock is JSON")
}

/// The node the root's `nixpkgs` input points at.
fn locked_nixpkgs(lock: &Value) -> &Value {
    let root = lock["root"]
        .as_str()
        .expect("flake.lock names its root node");
    let inputs = lock["nodes"][root]["inputs"]
        .as_object()
        .expect("the root node has inputs");
    assert_eq!(
        inputs.keys().collect::<Vec<_>>(),
        ["nixpkgs"],
        "nixpkgs is the only input"
    );
    let node = inputs["nixpkgs"].as_str().expect("a direct input");
    &lock["nodes"][node]
}

#[test]
fn flake_lock_pins_nixpkgs_with_rev_nar_hash_and_last_modified() {
    let lock = flake_lock();
    assert_eq!(lock["version"], 7, "the lock file format nix writes");
    let nixpkgs = locked_nixpkgs(&lock);
    let locked = &nixpkgs["locked"];
    assert_eq!(locked["type"], "github");
    assert_eq!(locked["owner"], "NixOS");
    assert_eq!(locked["repo"], "nixpkgs");
    let rev = locked["rev"].as_str().expect("a rev");
    assert!(
        rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit()),
        "rev {rev:?} is not a full commit hash"
    );
    let nar_hash = locked["narHash"].as_str().expect("a narHash");
    let digest = nar_hash
        .strip_prefix("sha256-")
        .expect("narHash is an SRI sha256");
    assert!(
        digest.len() == 44
            && digest.ends_with('=')
            && digest[..43]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/'),
        "narHash {nar_hash:?} is not a base64 sha256"
    );
    let last_modified = locked["lastModified"]
        .as_u64()
        .expect("lastModified is a number");
    // after nixos-26.05 branched (2026-05), before this project's machines' clocks said 2030
    assert!(
        (1_777_000_000..1_900_000_000).contains(&last_modified),
        "lastModified {last_modified} is not a plausible time for this branch"
    );
    let branch = nixpkgs["original"]["ref"].as_str().expect("original.ref");
    assert!(
        branch.starts_with("nixos-") && !branch.contains("unstable"),
        "{branch} is not a stable NixOS branch"
    );
}

#[test]
fn flake_nix_and_flake_lock_name_the_same_nixpkgs_branch() {
    if !have_nix_instantiate() {
        return;
    }
    let output = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json", "--expr"])
        .arg(format!(
            "(import {}).inputs",
            nix_path(&repository().join("flake.nix"))
        ))
        .output()
        .expect("nix-instantiate runs");
    assert!(output.status.success(), "{}", stderr_of(&output));
    let inputs: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(
        inputs
            .as_object()
            .expect("inputs")
            .keys()
            .collect::<Vec<_>>(),
        ["nixpkgs"]
    );
    let url = inputs["nixpkgs"]["url"].as_str().expect("a nixpkgs url");
    let (owner, repo, branch) = match url
        .strip_prefix("github:")
        .map(|rest| rest.split('/').collect::<Vec<_>>())
        .as_deref()
    {
        Some([owner, repo, branch]) => (owner.to_string(), repo.to_string(), branch.to_string()),
        _ => panic!("{url} is not github:OWNER/REPO/BRANCH"),
    };
    let lock = flake_lock();
    let original = &locked_nixpkgs(&lock)["original"];
    assert!(owner.eq_ignore_ascii_case(original["owner"].as_str().expect("owner")));
    assert_eq!(repo, original["repo"].as_str().expect("repo"));
    assert_eq!(
        branch,
        original["ref"].as_str().expect("ref"),
        "flake.nix: {url}"
    );
}

#[test]
fn the_module_renders_the_seed_host_to_the_expected_config_and_unit() {
    if !have_nix_instantiate() {
        return;
    }
    let Some(lib) = nixpkgs_lib() else { return };
    let result = evaluate_ok(&lib, "");

    assert_eq!(
        result["settings"],
        json!({
            "router_id": "192.0.2.1",
            "asn": 65100,
            "listen": ["[::]:179"],
            "kernel": { "table": 1336, "persist": true, "multipath": true, "protocol": 214 },
            "bridges": {
                "vmbr-dev": {
                    "prefixes": ["192.0.2.0/24", "2001:db8:1::/64"],
                    "ra": { "rdnss": ["2001:db8:1::53"], "dnssl": ["cluster.internal"] }
                }
            },
            "neighbors": [{
                "name": "cilium",
                "range": "2001:db8:1::/64",
                "asn": 65100,
                "max_prefixes": 10000,
                "max_prefixes_hold_s": 60,
                "ttl_security": false,
                // Unset, so the daemon's defaults apply (liveness on, BFD off).
                "liveness": {},
                "bfd": {},
                "import": [
                    { "prefix": "10.244.0.0/16", "max_length": 32 },
                    { "prefix": "fd00:ff00::/32", "max_length": 128 }
                ]
            }],
            "control_socket": "/run/cilium-peer/control.sock"
        })
    );
    // The flake's module takes its package from the flake's overlay (nix/package.nix).
    assert_eq!(result["package"], "callPackage-package.nix");
    assert_eq!(
        result["etc"],
        json!({
            "cilium-peer/config.json": "cilium-peer-config-checked.json",
            "iproute2/rt_protos.d/cilium-peer.conf": "214 cilium-peer\n",
        })
    );
    assert_eq!(
        result["firewall"],
        json!({ "vmbr-dev": { "allowedTCPPorts": [179] } })
    );
    assert_eq!(
        result["sysctl"],
        json!({
            "net.ipv4.conf.all.forwarding": true,
            "net.ipv6.conf.all.forwarding": true,
            "net.ipv4.conf.vmbr-dev.forwarding": true,
            "net.ipv6.conf.vmbr-dev.forwarding": true
        })
    );
    assert_eq!(result["warnings"], json!([]));

    let unit = &result["unit"];
    assert_eq!(
        unit["reloadTriggers"],
        json!(["cilium-peer-config-checked.json"])
    );
    assert_eq!(unit["stopIfChanged"], false);
    assert_eq!(unit["wantedBy"], json!(["multi-user.target"]));
    let service = &unit["serviceConfig"];
    let capabilities = json!(["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE"]);
    assert_eq!(service["CapabilityBoundingSet"], capabilities);
    assert_eq!(service["AmbientCapabilities"], capabilities);
    assert_eq!(
        service["RestrictAddressFamilies"],
        json!(["AF_NETLINK", "AF_INET", "AF_INET6", "AF_UNIX"])
    );
    for (key, value) in [
        ("Type", json!("notify-reload")),
        ("ReloadSignal", json!("SIGHUP")),
        ("KillSignal", json!("SIGTERM")),
        ("RestartKillSignal", json!("SIGUSR2")),
        ("DynamicUser", json!(true)),
        ("PrivateUsers", json!(false)),
        ("ProtectSystem", json!("strict")),
        ("NoNewPrivileges", json!(true)),
        ("RuntimeDirectory", json!("cilium-peer")),
        ("LoadCredential", json!([])),
        (
            "ExecStart",
            json!(
                "/nix/store/00000000000000000000000000000000-callPackage-package.nix\
                 /bin/cilium-peer run --config /etc/cilium-peer/config.json"
            ),
        ),
    ] {
        assert_eq!(service[key], value, "serviceConfig.{key}");
    }
    let rules = service["ExecStartPre"].as_array().expect("ExecStartPre");
    assert_eq!(rules.len(), 1, "{rules:?}");
    let script = rules[0].as_str().expect("the routing-policy script");
    assert!(
        script.contains("rule add priority 30000 lookup 1336")
            && script.contains("add_rule -4")
            && script.contains("add_rule -6"),
        "{script}"
    );

    check_accepts(&result["settings"]);
}

/// Runs `cilium-peer check` on `settings`, once the binary's `check` rejects an empty config
/// (before that, the subcommand is not implemented and the comparison says nothing).
fn check_accepts(settings: &Value) {
    let directory = std::env::temp_dir().join(format!("cilium-peer-nix-{}", std::process::id()));
    fs::create_dir_all(&directory).expect("a temporary directory");
    let check = |config: &Value, name: &str| {
        let path = directory.join(name);
        fs::write(&path, config.to_string()).expect("the config is written");
        Command::new(env!("CARGO_BIN_EXE_cilium-peer"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .expect("cilium-peer runs")
    };
    let empty = check(&json!({}), "empty.json");
    if empty.status.success() {
        eprintln!("skipping the check of the rendered config: `cilium-peer check` accepts {{}}");
    } else {
        let rendered = check(settings, "config.json");
        assert!(
            rendered.status.success(),
            "cilium-peer check rejects the module's config:\n{}",
            stderr_of(&rendered)
        );
    }
    fs::remove_dir_all(&directory).expect("the temporary directory is removed");
}

#[test]
fn the_module_on_its_own_takes_pkgs_cilium_peer_as_nixpkgs_modules_do() {
    if !have_nix_instantiate() {
        return;
    }
    let Some(lib) = nixpkgs_lib() else { return };
    let result = evaluate(&lib, "", false).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(result["package"], "cilium-peer-from-pkgs");
}

#[test]
fn mistyped_options_and_contradictions_fail_evaluation() {
    if !have_nix_instantiate() {
        return;
    }
    let Some(lib) = nixpkgs_lib() else { return };
    // the same harness evaluates without the faulty module
    evaluate_ok(
        &lib,
        "({ lib, ... }: { services.ciliumPeer.settings.kernel.table = lib.mkForce 100; })",
    );

    for (faulty, option) in [
        (
            r#"({ lib, ... }: { services.ciliumPeer.settings.kernel.table = lib.mkForce "main"; })"#,
            "services.ciliumPeer.settings.kernel.table",
        ),
        (
            r#"({ lib, ... }: { services.ciliumPeer.settings.asn = lib.mkForce "65100"; })"#,
            "services.ciliumPeer.settings.asn",
        ),
        (
            r#"({ lib, ... }: { services.ciliumPeer.settings.router_id = lib.mkForce "2001:db8::1"; })"#,
            "services.ciliumPeer.settings.router_id",
        ),
        (
            // a path literal would copy the secret into the store
            "{ services.ciliumPeer.settings.neighbors = \
             [ { name = \"x\"; range = \"2001:db8::/64\"; asn = 65100; \
             password_file = /run/secrets/md5; } ]; }",
            "password_file",
        ),
        (
            "{ services.ciliumPeer.settings.neighbors = \
             [ { name = \"x\"; range = \"2001:db8::/64\"; asn = 65100; \
             liveness.interval_ms = 10; } ]; }",
            "liveness.interval_ms",
        ),
        (
            "{ services.ciliumPeer.settings.neighbors = \
             [ { name = \"x\"; range = \"2001:db8::/64\"; asn = 65100; \
             bfd.multiplier = 1; } ]; }",
            "bfd.multiplier",
        ),
    ] {
        let error = evaluate_err(&lib, faulty);
        assert!(
            error.contains(option) && error.contains("is not of type"),
            "{faulty}:\n{error}"
        );
    }

    let error = evaluate_err(
        &lib,
        "({ lib, ... }: { services.ciliumPeer.settings.kernel.table = lib.mkForce 254; })",
    );
    assert!(
        error.contains("routingPolicy needs settings.kernel.table to be a table other"),
        "{error}"
    );
}

#[test]
fn password_files_are_loaded_as_credentials_for_the_dynamic_user() {
    if !have_nix_instantiate() {
        return;
    }
    let Some(lib) = nixpkgs_lib() else { return };
    let result = evaluate_ok(
        &lib,
        r#"({ lib, ... }: { services.ciliumPeer.settings.neighbors = lib.mkForce [
              { name = "a"; range = "2001:db8:1::/64"; asn = 65100; password_file = "/run/secrets/md5"; }
              { name = "b"; range = "2001:db8:2::/64"; asn = 65100; }
              { name = "c"; range = "2001:db8:3::/64"; asn = 65100;
                password_file = "/run/credentials/cilium-peer.service/mine"; }
            ]; })"#,
    );
    let files: Vec<&Value> = result["settings"]["neighbors"]
        .as_array()
        .expect("neighbors")
        .iter()
        .map(|neighbor| &neighbor["password_file"])
        .collect();
    assert_eq!(
        files,
        [
            &json!("/run/credentials/cilium-peer.service/neighbor-0-password"),
            &Value::Null,
            &json!("/run/credentials/cilium-peer.service/mine"),
        ]
    );
    assert_eq!(
        result["unit"]["serviceConfig"]["LoadCredential"],
        json!(["neighbor-0-password:/run/secrets/md5"])
    );
}

#[test]
fn the_firewall_opens_the_listen_ports_on_the_bridges_only() {
    if !have_nix_instantiate() {
        return;
    }
    let Some(lib) = nixpkgs_lib() else { return };
    let result = evaluate_ok(
        &lib,
        r#"{ services.ciliumPeer.settings = {
              listen = [ "[::]:1179" "[fe80::1%vmbr-dev]:179" "0.0.0.0:1179" ];
              bridges."br0.100".prefixes = [ "198.51.100.0/24" ];
            }; }"#,
    );
    let ports = json!({ "allowedTCPPorts": [1179, 179] });
    assert_eq!(
        result["firewall"],
        json!({ "vmbr-dev": ports, "br0.100": ports })
    );
    // sysctl writes a dot in an interface name as a slash
    assert_eq!(result["sysctl"]["net.ipv6.conf.br0/100.forwarding"], true);

    let closed = evaluate_ok(
        &lib,
        "({ lib, ... }: { services.ciliumPeer = { \
         openFirewall = lib.mkForce false; forwarding = false; checkConfig = false; }; })",
    );
    assert_eq!(closed["firewall"], json!({}));
    assert_eq!(closed["sysctl"], json!({}));
    assert_eq!(
        closed["etc"],
        json!({
            "cilium-peer/config.json": "cilium-peer-config.json",
            "iproute2/rt_protos.d/cilium-peer.conf": "214 cilium-peer\n",
        })
    );
}

#[test]
fn the_module_names_the_configured_protocol_number_cilium_peer_for_iproute2() {
    if !have_nix_instantiate() {
        return;
    }
    let Some(lib) = nixpkgs_lib() else { return };
    // The default is the daemon's own.
    let result = evaluate_ok(&lib, "");
    assert_eq!(
        result["settings"]["kernel"]["protocol"],
        cilium_peer::config::DEFAULT_KERNEL_PROTOCOL
    );
    let line = format!(
        "{} cilium-peer\n",
        cilium_peer::config::DEFAULT_KERNEL_PROTOCOL
    );
    assert_eq!(result["etc"]["iproute2/rt_protos.d/cilium-peer.conf"], line);
    // Another number: the file names that one, and the config carries it.
    let other = evaluate_ok(
        &lib,
        "{ services.ciliumPeer.settings.kernel.protocol = 201; }",
    );
    assert_eq!(other["settings"]["kernel"]["protocol"], 201);
    assert_eq!(
        other["etc"]["iproute2/rt_protos.d/cilium-peer.conf"],
        "201 cilium-peer\n"
    );
    // The kernel's own numbers are refused at evaluation.
    let error = evaluate_err(
        &lib,
        "{ services.ciliumPeer.settings.kernel.protocol = 4; }",
    );
    assert!(error.contains("kernel.protocol"), "{error}");
}

#[test]
fn the_flake_has_the_outputs_interface_md_names_for_both_systems() {
    if !have_nix_instantiate() {
        return;
    }
    let Some(lib) = nixpkgs_lib() else { return };
    let output = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(repository().join("nix/eval-flake.nix"))
        .args(["--arg", "lib"])
        .arg(format!("import {}", nix_path(&lib)))
        .output()
        .expect("nix-instantiate runs");
    assert!(output.status.success(), "{}", stderr_of(&output));
    let flake: Value = serde_json::from_slice(&output.stdout).expect("JSON");

    assert_eq!(
        flake["outputs"],
        json!([
            "checks",
            "devShells",
            "formatter",
            "nixosModules",
            "overlays",
            "packages"
        ])
    );
    assert_eq!(flake["nixosModules"], json!(["default"]));
    for system in ["x86_64-linux", "aarch64-linux"] {
        assert_eq!(flake["packages"][system], json!(["cilium-peer", "default"]));
        assert_eq!(
            flake["checks"][system],
            json!({
                "package": "cilium-peer",
                "formatting": "cilium-peer-formatting",
                "vm-bgp": "vm-test-cilium-peer-bgp",
                "vm-md5": "vm-test-cilium-peer-md5"
            })
        );
        assert_eq!(flake["devShells"][system], json!(["default"]));
        let tools = flake["devShellPackages"][system]
            .as_array()
            .expect("the shell's packages");
        for tool in [
            "cargo", "clippy", "rustfmt", "gobgp", "gobgpd", "bird2", "ndisc6", "radvd",
        ] {
            assert!(
                tools.contains(&json!(tool)),
                "{tool} missing from {tools:?}"
            );
        }
        assert_eq!(flake["formatter"][system], "nixfmt-tree");
    }
}

#[test]
fn the_module_builds_the_cilium_manifests_from_the_bridge_addresses_in_networking_interfaces() {
    if !have_nix_instantiate() {
        return;
    }
    let Some(lib) = nixpkgs_lib() else { return };
    let result = evaluate_ok(
        &lib,
        r#"{ networking.interfaces."vmbr-dev" = {
               ipv4.addresses = [ { address = "192.0.2.1"; prefixLength = 24; } ];
               ipv6.addresses = [ { address = "2001:db8:1::1"; prefixLength = 64; } ];
             };
             networking.interfaces.eth0.ipv6.addresses = [ { address = "2001:db8:ff::1"; prefixLength = 64; } ];
             services.ciliumPeer.ciliumManifestsApi = "v2alpha1"; }"#,
    );
    let manifests = &result["ciliumManifests"];
    assert_eq!(manifests["name"], "cilium-manifests.yaml");
    let script = manifests["script"].as_str().expect("the build script");
    let words: Vec<&str> = script
        .split_whitespace()
        .filter(|word| *word != "\\")
        .collect();
    let redirect = words
        .iter()
        .position(|word| *word == ">")
        .expect("stdout goes to $out");
    assert_eq!(words[redirect + 1..], ["$out"], "{script}");
    assert_eq!(
        words[..4],
        [
            "/nix/store/00000000000000000000000000000000-callPackage-package.nix/bin/cilium-peer",
            "cilium-manifests",
            "--config",
            "/nix/store/00000000000000000000000000000000-cilium-peer-manifests-config.json",
        ],
        "{script}"
    );
    // Only the configured bridge's addresses, IPv4 then IPv6 (eth0 is no bridge of ours).
    let arguments = &words[4..redirect];
    assert_eq!(
        arguments,
        [
            "--api",
            "v2alpha1",
            "--address",
            "192.0.2.1",
            "--address",
            "2001:db8:1::1"
        ]
    );

    // The same command line, run with this build on the settings the module renders (the
    // example host has no password_file, so they are the manifests' settings too).
    let directory =
        std::env::temp_dir().join(format!("cilium-peer-nix-manifests-{}", std::process::id()));
    fs::create_dir_all(&directory).expect("a temporary directory");
    let config = directory.join("config.json");
    fs::write(&config, result["settings"].to_string()).expect("the config is written");
    let output = Command::new(env!("CARGO_BIN_EXE_cilium-peer"))
        .args(["cilium-manifests", "--config"])
        .arg(&config)
        .args(arguments)
        .output()
        .expect("cilium-peer runs");
    fs::remove_dir_all(&directory).expect("the temporary directory is removed");
    assert!(output.status.success(), "{}", stderr_of(&output));
    let yaml = String::from_utf8_lossy(&output.stdout);
    assert!(yaml.contains("apiVersion: cilium.io/v2alpha1\n"), "{yaml}");
    assert!(
        yaml.contains("          peerAddress: \"2001:db8:1::1\"\n"),
        "{yaml}"
    );
}

#[test]
fn the_cilium_manifests_get_no_address_of_a_bridge_missing_from_networking_interfaces() {
    if !have_nix_instantiate() {
        return;
    }
    let Some(lib) = nixpkgs_lib() else { return };
    let result = evaluate_ok(&lib, "");
    let script = result["ciliumManifests"]["script"]
        .as_str()
        .expect("the build script");
    // The build then fails with the command's refusal, which names the bridge.
    assert!(script.contains("--api v2 "), "{script}");
    assert!(!script.contains("--address"), "{script}");
}
