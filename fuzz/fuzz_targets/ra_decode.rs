//! cargo-fuzz target: `cilium_peer_fuzz::ra_decode` over libFuzzer's inputs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cilium_peer_fuzz::ra_decode(data));
