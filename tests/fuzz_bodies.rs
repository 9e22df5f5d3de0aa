//! The stable stand-in for cargo-fuzz that CI runs: every fuzz target body
//! (`fuzz/src/lib.rs`) over its seed corpus (the codec's captured vectors, radvd's and
//! rdisc6's packets, the documented configs), then over thousands of seeded random
//! mutations of it. `FUZZ_ITERATIONS` sets how many (default 5000 per target),
//! `FUZZ_SEED` which ones; a failing input is printed in hex, to be kept as a unit test.

#[path = "../fuzz/src/lib.rs"]
mod bodies;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// Hex vectors of one file: the last word of every line that is not a comment.
fn vectors(file: &str) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(root().join("tests/vectors").join(file)).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().last())
        .map(hex)
        .collect()
}

fn vector_files(extension: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join("tests/vectors"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(extension))
        .collect();
    files.sort();
    files
}

/// Every input prefixed with each selector byte the target distinguishes.
fn with_selectors(inputs: Vec<Vec<u8>>, selectors: &[u8]) -> Vec<Vec<u8>> {
    inputs
        .iter()
        .flat_map(|input| {
            selectors.iter().map(move |s| {
                let mut v = vec![*s];
                v.extend_from_slice(input);
                v
            })
        })
        .collect()
}

/// BGP messages captured from GoBGP and BIRD, one by one and as whole streams.
fn bgp_seeds() -> Vec<Vec<u8>> {
    let mut inputs = Vec::new();
    for file in vector_files(".hex") {
        let messages = vectors(&file);
        inputs.push(messages.concat());
        inputs.extend(messages);
    }
    assert!(inputs.len() > 20, "the codec vectors are missing");
    with_selectors(inputs, &[0, 1])
}

/// radvd's RAs and rdisc6's RS.
fn ra_seeds() -> Vec<Vec<u8>> {
    let inputs: Vec<Vec<u8>> = vector_files(".out")
        .iter()
        .flat_map(|f| vectors(f))
        .collect();
    assert!(inputs.len() >= 4, "the RA vectors are missing");
    with_selectors(inputs, &[0, 1, 3, 64])
}

/// The example config, the one in docs/config.md, and a minimal one.
fn config_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        std::fs::read(root().join("examples/config.json")).unwrap(),
        br#"{ "router_id": "192.0.2.1", "asn": 65100 }"#.to_vec(),
    ];
    let doc = std::fs::read_to_string(root().join("docs/config.md")).unwrap();
    for block in doc.split("```json").skip(1) {
        seeds.push(block.split("```").next().unwrap().as_bytes().to_vec());
    }
    seeds
}

/// One random change: flip, overwrite with a boundary value, insert, delete, duplicate,
/// truncate, or splice in part of another seed.
fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    const INTERESTING: [u8; 8] = [0, 1, 0x7f, 0x80, 0xff, 16, 32, 255 - 18];
    let len = input.len();
    match rng.random_range(0..7) {
        0 if len > 0 => {
            let i = rng.random_range(0..len);
            input[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.random_range(0..len);
            input[i] = INTERESTING[rng.random_range(0..INTERESTING.len())];
        }
        2 => {
            let i = rng.random_range(0..=len);
            let n = rng.random_range(1..16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            input.splice(i..i, bytes);
        }
        3 if len > 1 => {
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(32));
            input.drain(i..i + n);
        }
        4 if len > 1 => {
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(64));
            let copy = input[i..i + n].to_vec();
            let at = rng.random_range(0..=len);
            input.splice(at..at, copy);
        }
        5 if len > 1 => input.truncate(rng.random_range(1..len)),
        _ => {
            let other = &seeds[rng.random_range(0..seeds.len())];
            if !other.is_empty() {
                let i = rng.random_range(0..other.len());
                let n = rng.random_range(1..=(other.len() - i).min(128));
                let at = rng.random_range(0..=len);
                input.splice(at..at, other[i..i + n].iter().copied());
            }
        }
    }
}

fn run(target: &str, body: fn(&[u8]), seeds: Vec<Vec<u8>>) {
    let iterations: usize = std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x0c11_1a11);
    let check = |input: &[u8]| {
        if catch_unwind(AssertUnwindSafe(|| body(input))).is_err() {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            panic!("{target} failed on input {hex} (FUZZ_SEED={seed})");
        }
    };
    for input in &seeds {
        check(input);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..iterations {
        let mut input = seeds[rng.random_range(0..seeds.len())].clone();
        for _ in 0..rng.random_range(1..=8) {
            mutate(&mut rng, &mut input, &seeds);
        }
        check(&input);
    }
}

#[test]
fn the_bgp_decoder_survives_its_seed_corpus_and_random_mutations_in_both_contexts() {
    run("bgp_decode", bodies::bgp_decode, bgp_seeds());
}

#[test]
fn every_decoded_bgp_message_round_trips_through_the_encoder() {
    run("bgp_round_trip", bodies::bgp_round_trip, bgp_seeds());
}

#[test]
fn the_ra_and_rs_decoders_survive_their_seed_corpus_and_random_mutations() {
    run("ra_decode", bodies::ra_decode, ra_seeds());
}

#[test]
fn the_config_parser_survives_the_documented_configs_and_random_mutations() {
    run("config_parse", bodies::config_parse, config_seeds());
}

#[test]
fn a_failing_body_is_reported_with_its_input() {
    let result = catch_unwind(|| {
        run(
            "always_fails_on_ff",
            |data| assert!(!data.contains(&0xff)),
            vec![vec![0x01, 0xff]],
        )
    });
    let message = *result.unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("input 01ff"), "{message}");
}
