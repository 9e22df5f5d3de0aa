//! cargo-fuzz target: `cilium_peer_fuzz::config_parse` over libFuzzer's inputs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cilium_peer_fuzz::config_parse(data));
