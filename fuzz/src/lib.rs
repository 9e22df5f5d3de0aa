//! The fuzz target bodies: each takes arbitrary bytes and panics only on a bug. Shared by
//! the cargo-fuzz targets in `fuzz_targets/` and by the stable fallback that CI runs
//! (`tests/fuzz_bodies.rs` includes this file), so both exercise the same checks.

use std::net::Ipv6Addr;

use cilium_peer::bgp::wire::{self, Context, HEADER_LEN, MAX_MESSAGE_LEN, Message};
use cilium_peer::config::Config;
use cilium_peer::ra::packet::{
    NdOption, RouterAdvertisement, RouterSolicitation, validate_received_ra,
};

/// The negotiated context a fuzz input asks for with its first byte.
fn context(selector: u8) -> Context {
    Context {
        four_octet_as: selector & 1 != 0,
    }
}

/// The BGP decoder as the session driver uses it: the first byte picks the negotiated
/// context (4-octet AS on or off), the rest is a byte stream cut into messages. Every
/// message takes a sane number of bytes and encodes again; every error has a NOTIFICATION
/// that encodes within the size limit.
pub fn bgp_decode(data: &[u8]) {
    let Some((&selector, mut stream)) = data.split_first() else {
        return;
    };
    let ctx = context(selector);
    loop {
        match wire::decode(stream, &ctx) {
            Ok(Some((message, used))) => {
                assert!(
                    (HEADER_LEN..=MAX_MESSAGE_LEN.min(stream.len())).contains(&used),
                    "a message of {used} bytes from {} available",
                    stream.len()
                );
                let _ = wire::encode(&message, &ctx);
                stream = &stream[used..];
            }
            Ok(None) => {
                assert!(
                    stream.len() < MAX_MESSAGE_LEN,
                    "a whole message's bytes undecided"
                );
                return;
            }
            Err(error) => {
                let notification = Message::Notification(error.notification());
                let bytes = wire::encode(&notification, &ctx);
                assert!(
                    bytes.len() <= MAX_MESSAGE_LEN,
                    "NOTIFICATION of {} bytes",
                    bytes.len()
                );
                return;
            }
        }
    }
}

/// decode(encode(m)) == m for every message m the decoder produces, in both contexts
/// (except UPDATEs it marked treat-as-withdraw: that verdict is not encoded).
pub fn bgp_round_trip(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let ctx = context(selector);
    let Ok(Some((message, _))) = wire::decode(bytes, &ctx) else {
        return;
    };
    if matches!(&message, Message::Update(u) if u.treat_as_withdraw.is_some()) {
        return;
    }
    let encoded = wire::encode(&message, &ctx);
    if encoded.len() > MAX_MESSAGE_LEN {
        // Possible only where re-encoding grows the message (an AS_PATH the encoder has
        // to split into AS4_PATH); the encoder's callers keep UPDATEs small.
        return;
    }
    match wire::decode(&encoded, &ctx) {
        Ok(Some((again, used))) => {
            assert_eq!(used, encoded.len(), "{message:?}");
            assert_eq!(again, message, "encoded as {encoded:02x?}");
        }
        other => panic!("{message:?} encoded as {encoded:02x?} decodes as {other:?}"),
    }
}

/// The router advertisement and solicitation decoders (RFC 4861). The first byte picks
/// the source address and hop limit of the packet. What decodes as an RA encodes to its
/// own stated length, decodes back to itself, and splits into parts that fit.
pub fn ra_decode(data: &[u8]) {
    let Some((&selector, msg)) = data.split_first() else {
        return;
    };
    let source = if selector & 1 == 0 {
        Ipv6Addr::UNSPECIFIED
    } else {
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)
    };
    let hop_limit = if selector & 2 == 0 { 255 } else { selector };
    let _ = RouterSolicitation::decode(msg, source, hop_limit);
    let _ = validate_received_ra(msg, source, hop_limit);
    let Ok(ra) = RouterAdvertisement::decode(msg) else {
        return;
    };
    let bytes = ra.encode();
    assert_eq!(bytes.len(), ra.encoded_len());
    assert_eq!(RouterAdvertisement::decode(&bytes).as_ref(), Ok(&ra));
    // Split for the IPv6 minimum MTU (docs/ra.md): every part keeps the header; Route
    // Information and unknown options land in exactly one part, in order; every other option
    // is in every part or, when it could not be repeated, in exactly one.
    let spread =
        |o: &&NdOption| matches!(o, NdOption::RouteInformation(_) | NdOption::Unknown { .. });
    let parts = ra.split(1280);
    let rejoined: Vec<&NdOption> = parts
        .iter()
        .flat_map(|p| p.options.iter().filter(spread))
        .collect();
    let original: Vec<&NdOption> = ra.options.iter().filter(spread).collect();
    assert_eq!(rejoined, original);
    for option in ra.options.iter().filter(|o| !spread(o)) {
        let n = parts.iter().filter(|p| p.options.contains(option)).count();
        assert!(
            n == 1 || n == parts.len(),
            "{option:?} in {n} of {}",
            parts.len()
        );
    }
    for part in &parts {
        let header = |r: &RouterAdvertisement| r.encode()[..16].to_vec();
        assert_eq!(header(part), header(&ra));
    }
}

/// The config parser and validator: any text is accepted or refused with at least one
/// error, each naming what is wrong; an accepted config answers its lookups.
pub fn config_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text) {
        Ok(config) => {
            for group in &config.neighbors {
                let found = config.neighbor_group_of(group.range.addr());
                assert_eq!(found.map(|g| &g.name), Some(&group.name));
                let _ = config.bridge_of(group.range.addr());
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty());
            assert!(errors.0.iter().all(|e| !e.message.is_empty()), "{errors}");
        }
    }
}
