//! The shipped example config and every JSON config block in docs/ parse and validate, so
//! the documentation cannot drift from the code.

use std::path::Path;

use cilium_peer::config::Config;

#[test]
fn the_example_config_is_valid() {
    let config =
        Config::load(Path::new("examples/config.json")).expect("examples/config.json is valid");
    assert_eq!(config.kernel.table, 1336);
    assert_eq!(config.neighbors[0].name, "cilium");
    assert_eq!(config.neighbors[0].max_prefixes, Some(10000));
    assert_eq!(config.neighbors[0].max_prefixes_hold_s, 60);
    assert_eq!(config.kernel.max_paths, 64);
    assert!(config.neighbors[0].liveness.enable);
    assert_eq!(config.neighbors[0].liveness.interval_ms, 400);
    assert!(!config.neighbors[0].bfd.enable);
    assert_eq!(config.neighbors[0].bfd.min_tx_ms, 300);
    assert!(config.bridges.contains_key("vmbr-dev"));
}

#[test]
fn every_json_block_in_the_docs_is_a_valid_config() {
    let mut checked = 0;
    for doc in ["docs/config.md", "README.md"] {
        let text = std::fs::read_to_string(doc).unwrap_or_else(|e| panic!("{doc}: {e}"));
        for (i, block) in text.split("```json\n").skip(1).enumerate() {
            let block = block.split("```").next().unwrap();
            if let Err(errors) = Config::parse(block) {
                panic!("{doc}, JSON block {}: {errors}\n{block}", i + 1);
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "expected config examples in the docs, found {checked}"
    );
}

#[test]
fn the_check_command_names_the_json_path_and_value_of_a_bad_config() {
    let dir = std::env::temp_dir().join(format!("cilium-peer-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{ "router_id": "192.0.2.1", "asn": 65100,
             "neighbors": [ { "name": "cilium", "range": "2001:db8::/129", "asn": 65100 } ] }"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cilium-peer"))
        .args(["check", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"neighbors[0].range: "2001:db8::/129" is not an IP prefix"#),
        "{stderr}"
    );
    let good = Path::new("examples/config.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cilium-peer"))
        .args(["check", "--config", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_refuses_a_bad_config_before_touching_anything() {
    let dir = std::env::temp_dir().join(format!("cilium-peer-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    let socket = dir.join("control.sock");
    std::fs::write(
        &bad,
        serde_json::json!({
            "router_id": "192.0.2.1",
            "asn": 65100,
            "surprise": 1,
            "control_socket": socket,
        })
        .to_string(),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cilium-peer"))
        .args(["run", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `surprise`"));
    assert!(
        !socket.exists(),
        "a refused config must not create the control socket"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
