//! Skips that show. A test that cannot run on this machine (no root, a program missing)
//! calls `skip`: locally it prints `SKIP` with the reason, records it for scripts/test's
//! closing count, and the test returns early; when `CI` is set the test fails instead,
//! naming what is missing, so a CI without root or a package cannot go green having tested
//! nothing. `skip_even_in_ci` is for the one thing CI cannot have (a nixpkgs checkout).

use std::io::Write;

use super::shell::have;

/// The variable scripts/test sets to the file that collects the skips of a run.
pub const SKIP_LOG: &str = "CILIUM_PEER_SKIPS";

/// Whether this is a CI run (CI sets `CI`, to `true`).
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Skips `test` because of `why`; panics instead under CI.
pub fn skip(test: &str, why: &str) {
    assert!(!in_ci(), "{test} cannot run in CI: {why}");
    record(test, why);
}

/// Skips `test` because of `why`, under CI too: only for what CI cannot have (see the
/// README's test section). Still printed and counted.
pub fn skip_even_in_ci(test: &str, why: &str) {
    record(test, &format!("{why} (allowed in CI)"));
}

fn record(test: &str, why: &str) {
    let line = format!("SKIP {}::{test}: {why}\n", env!("CARGO_CRATE_NAME"));
    // Straight to the process's stderr: libtest captures `eprintln!` of passing tests.
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(path) = std::env::var_os(SKIP_LOG) {
        // One O_APPEND write per line: test processes may append at once.
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

/// What keeps a namespace test needing `programs` from running here: not root, or the
/// first program missing (with the Debian package scripts/deps installs it from).
pub fn missing(programs: &[&str]) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root for network namespaces".into());
    }
    not_installed(programs)
}

/// The first of `programs` not on PATH, with the Debian package that ships it.
pub fn not_installed(programs: &[&str]) -> Option<String> {
    programs.iter().find(|p| !have(p)).map(|p| {
        format!(
            "{p} is not installed (Debian package {}; scripts/deps installs it)",
            package(p)
        )
    })
}

/// The Debian package that ships `program`.
fn package(program: &str) -> &'static str {
    match program {
        "ip" | "ss" | "nstat" | "bridge" => "iproute2",
        "gobgpd" | "gobgp" => "gobgpd",
        "bird" | "birdc" => "bird2",
        "rdisc6" => "ndisc6",
        "radvd" => "radvd",
        "dhcpcd" => "dhcpcd-base",
        "nix-instantiate" => "nix-bin",
        "tshark" => "tshark",
        "setpriv" | "unshare" => "util-linux",
        "ping" => "iputils-ping",
        "sysctl" | "kill" => "procps",
        _ => "unknown",
    }
}

/// Skips `test` (see `skip`) and returns `true` unless root with `programs` installed.
pub fn skip_unless(test: &str, programs: &[&str]) -> bool {
    skip_if(test, missing(programs))
}

/// Skips `test` (see `skip`) and returns `true` unless `programs` are installed.
pub fn skip_unless_installed(test: &str, programs: &[&str]) -> bool {
    skip_if(test, not_installed(programs))
}

fn skip_if(test: &str, why: Option<String>) -> bool {
    why.inspect(|why| skip(test, why)).is_some()
}
