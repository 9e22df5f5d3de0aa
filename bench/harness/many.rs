//! Many peers: P sessions from one injector, each with its own pod CIDRs, plus L
//! LoadBalancer IPs announced by all of them (ECMP over P next hops).

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::configs::*;
use crate::lab::*;
use crate::measure::*;
use crate::*;

pub(crate) fn many_peers(options: &Options) -> Result<String, String> {
    let (p, l) = (options.peers, options.lbs);
    println!(
        "many peers: {p} sessions, each with an IPv4 and an IPv6 pod CIDR, plus {l} LoadBalancer IPs per family from all"
    );
    let mut lab = Lab::new(options.keep, p)?;
    // One BIRD per session: BIRD runs only one session at a time to the same neighbor
    // address (its neighbor lock), and every node peers with the same host address.
    let mut sockets = Vec::new();
    for i in 0..p {
        let mut s4 = format!("route 10.200.{i}.0/24 blackhole;\n");
        let mut s6 = format!("route fd00:200:0:{i:x}::/64 blackhole;\n");
        for j in 1..=l {
            writeln!(s4, "route 198.51.100.{j}/32 blackhole;").unwrap();
            writeln!(s6, "route 2001:db8:ff::{j:x}/128 blackhole;").unwrap();
        }
        let session = (
            "node".to_string(),
            peer_address(i).to_string(),
            format!("10.255.{}.{}", i / 250, i % 250 + 1),
            "all".to_string(),
            "all".to_string(),
        );
        let log = lab.dir.join(format!("node{i}.log"));
        let config = injector_config(&log, &s4, &s6, &[session]);
        sockets.push(start_injector(&mut lab, &format!("node{i}"), &config)?);
    }
    for socket in &sockets {
        wait_injector(&lab, socket, 2 * u64::from(1 + l))?;
    }
    let birdc_all = |command: &str| -> Result<(), String> {
        let mut children = Vec::new();
        for socket in &sockets {
            children.push(
                Command::new("birdc")
                    .args(["-s", socket.to_str().unwrap(), command, "node"])
                    .stdout(Stdio::null())
                    .spawn()
                    .map_err(|e| e.to_string())?,
            );
        }
        for mut child in children {
            child.wait().map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    let want = u64::from(p) + u64::from(l) * u64::from(p);
    let mut results = Vec::new();
    for receiver in [Receiver::Bird, Receiver::CiliumPeer] {
        // Per run: convergence time (or what went wrong) and peak RSS.
        let mut runs: Vec<(Result<f64, String>, f64)> = Vec::new();
        for run in 0..options.runs {
            lab.clear_table()?;
            let pid = receiver.start(&mut lab, options, true)?;
            birdc_all("enable")?;
            let start = lab.wait_connection()?;
            let mut wakers = sockets
                .iter()
                .map(|s| Waker::connect(s))
                .collect::<Result<Vec<_>, _>>()?;
            let mut hwm = 0;
            let mut seen = (0, 0);
            let outcome = wait("ECMP convergence", Duration::from_millis(100), || {
                if !lab.running("receiver") {
                    return Some(Err(format!(
                        "exited after {:.1} s with {} + {} of {want} + {want} legs",
                        start.elapsed().as_secs_f64(),
                        seen.0,
                        seen.1
                    )));
                }
                for waker in &mut wakers {
                    waker.poke();
                }
                hwm = hwm.max(rss_kib(pid).0);
                seen = legs(&lab);
                (seen == (want, want)).then(|| Ok(start.elapsed().as_secs_f64()))
            })
            .unwrap_or_else(Err);
            hwm = hwm.max(rss_kib(pid).0);
            match &outcome {
                Ok(t) => println!(
                    "  run {run}: {}: converged in {t:.2} s, peak RSS {:.1} MiB",
                    receiver.name(),
                    hwm as f64 / 1024.0
                ),
                Err(e) => println!("  run {run}: {}: {e}", receiver.name()),
            }
            birdc_all("disable")?;
            if lab.running("receiver") {
                wait("routes to go", Duration::from_millis(100), || {
                    (legs(&lab) == (0, 0)).then_some(())
                })?;
            }
            lab.stop("receiver");
            runs.push((outcome, hwm as f64));
        }
        results.push((receiver, runs));
    }
    let summary = |runs: &[(Result<f64, String>, f64)]| {
        let times: Vec<f64> = runs
            .iter()
            .filter_map(|(t, _)| t.as_ref().ok().copied())
            .collect();
        let failure = runs.iter().find_map(|(t, _)| t.as_ref().err().cloned());
        let hwm = median(runs.iter().map(|(_, m)| *m).collect());
        (times, failure, hwm)
    };
    let (bird_times, _, bird_m) = summary(&results[0].1);
    let bird_t = (!bird_times.is_empty()).then(|| median(bird_times.clone()));
    let mut t = format!(
        "\nMany peers: {p} sessions, {p} IPv4 + {p} IPv6 pod CIDRs, {l} + {l} LoadBalancer IPs with {p} next hops each; median of {} run(s)\n\n\
         | who | convergence s | vs BIRD | peak RSS MiB | vs BIRD |\n|---|---|---|---|---|\n",
        options.runs
    );
    for (receiver, runs) in &results {
        let (times, failure, m) = summary(runs);
        let label = match receiver {
            Receiver::Bird => "BIRD, merge paths",
            Receiver::CiliumPeer => "cilium-peer",
        };
        let time = match (times.is_empty(), &failure) {
            (false, None) => format!("{:.2}{}", median(times.clone()), spread(&times)),
            (false, Some(f)) => format!(
                "{:.2}{} ({} failed: {f})",
                median(times.clone()),
                spread(&times),
                runs.len() - times.len()
            ),
            (true, f) => format!("failed: {}", f.clone().unwrap_or_default()),
        };
        let ratio = match (times.is_empty(), bird_t) {
            (false, Some(b)) => format!("{:.2}x", median(times.clone()) / b),
            _ => "-".to_string(),
        };
        writeln!(
            t,
            "| {label} | {time} | {ratio} | {:.1} | {:.2}x |",
            m / 1024.0,
            m / bird_m
        )
        .unwrap();
    }
    let _ = io::stdout().flush();
    Ok(t)
}
