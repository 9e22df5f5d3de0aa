//! Running programs and waiting, shared by the tests (tests/common) and the benchmark
//! (bench/harness includes this file): whether a program is installed, a command's output
//! or why it failed, and polling until a condition holds. Errors are values here; the
//! tests' wrappers panic with them.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `program` is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command: its standard output, or why it failed (with what it printed).
pub fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `check` every `every` until it returns `Some`, or fails after `limit` saying what
/// was awaited. (A liveness bound, not a performance assertion.)
pub fn wait_until<T>(
    what: &str,
    every: Duration,
    limit: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if start.elapsed() >= limit {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        std::thread::sleep(every);
    }
}
