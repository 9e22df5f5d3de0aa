//! Ingest, withdraw and memory: 2N routes from one BIRD injector session into each
//! receiver's table and out again, against the kernel's own limits.

use std::fmt::Write as _;
use std::time::Instant;

use crate::configs::*;
use crate::lab::*;
use crate::measure::*;
use crate::*;

pub(crate) fn ingest(options: &Options) -> Result<String, String> {
    let n = options.n;
    let mut lab = Lab::new(options.keep, 0)?;
    println!(
        "ingest: {n} IPv4 + {n} IPv6 routes, {} run(s) each",
        options.runs
    );

    // The injector, loaded once; its session is enabled and disabled per run.
    let mut s4 = String::with_capacity(n as usize * 40);
    let mut s6 = String::with_capacity(n as usize * 40);
    for i in 0..n {
        writeln!(s4, "route {} blackhole;", bulk_v4(i)).unwrap();
        writeln!(s6, "route {} blackhole;", bulk_v6(i)).unwrap();
    }
    let inj_log = lab.dir.join("injector.log");
    let config = injector_config(
        &inj_log,
        &s4,
        &s6,
        &[(
            "bulk".into(),
            INJECTOR_V6.into(),
            "192.0.2.2".into(),
            "all".into(),
            "all".into(),
        )],
    );
    let inj_socket = start_injector(&mut lab, "injector", &config)?;
    wait_injector(&lab, &inj_socket, 2 * u64::from(n))?;

    // The kernel's limits.
    let mut batch_times = Vec::new();
    let mut best_times = Vec::new();
    let mut delete_times = Vec::new();
    let mut file = String::with_capacity(n as usize * 160);
    for i in 0..n {
        writeln!(
            file,
            "route add {} via inet6 {INJECTOR_V6} dev {BRIDGE} table {TABLE} proto {PROTO}",
            bulk_v4(i)
        )
        .unwrap();
        writeln!(
            file,
            "route add {} via {INJECTOR_V6} dev {BRIDGE} table {TABLE} proto {PROTO}",
            bulk_v6(i)
        )
        .unwrap();
    }
    let batch_file = lab.write("kernel.batch", &file)?;
    drop(file);
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    for run in 0..options.runs {
        lab.clear_table()?;
        let mut poller = Poller {
            lab: &lab,
            base6: lab.counters().1,
            waker: None,
        };
        let start = Instant::now();
        sh(&[
            "ip",
            "-n",
            &lab.host,
            "-batch",
            batch_file.to_str().unwrap(),
        ])?;
        let t = poller.until("ip -batch routes", start, n.into(), n.into())?;
        println!("  run {run}: kernel, one ip -batch: {t:.2} s");
        batch_times.push(t);
        lab.clear_table()?;

        let start = Instant::now();
        sh(&[
            "ip",
            "netns",
            "exec",
            &lab.host,
            me.to_str().unwrap(),
            "load",
            &n.to_string(),
        ])?;
        let t = poller.until("best-path routes", start, n.into(), n.into())?;
        println!("  run {run}: kernel, best path: {t:.2} s");
        best_times.push(t);
        let start = Instant::now();
        sh(&[
            "ip",
            "-n",
            &lab.host,
            "nexthop",
            "del",
            "id",
            &loader::NH_ID.to_string(),
        ])?;
        let t = poller.until("best-path routes to go", start, 0, 0)?;
        println!("  run {run}: kernel, delete the nexthop object: {t:.2} s");
        delete_times.push(t);
    }

    let mut daemons = Vec::new();
    for receiver in [Receiver::Bird, Receiver::CiliumPeer] {
        let mut runs = Vec::new();
        for run in 0..options.runs {
            lab.clear_table()?;
            let pid = receiver.start(&mut lab, options, false)?;
            let mut poller = Poller {
                lab: &lab,
                base6: lab.counters().1,
                waker: Some(Waker::connect(&inj_socket)?),
            };
            lab.birdc(&inj_socket, &["enable", "bulk"])?;
            let start = lab.wait_connection()?;
            let ingest = poller.until("routes from the injector", start, n.into(), n.into())?;
            let (hwm_kib, rss, anon, file) = rss_kib(pid);
            let start = Instant::now();
            lab.birdc(&inj_socket, &["disable", "bulk"])?;
            let withdraw = poller.until("routes to go", start, 0, 0)?;
            let mib = |kib: u64| kib as f64 / 1024.0;
            println!(
                "  run {run}: {}: ingest {ingest:.2} s, withdraw {withdraw:.2} s, peak RSS {:.1} MiB \
                 (now {:.1} MiB: {:.1} anonymous, {:.1} file-backed; peak after the withdraw {:.1} MiB)",
                receiver.name(),
                mib(hwm_kib),
                mib(rss),
                mib(anon),
                mib(file),
                mib(rss_kib(pid).0),
            );
            lab.stop("receiver");
            runs.push(Daemon {
                ingest,
                withdraw,
                hwm_kib,
            });
        }
        daemons.push((receiver, runs));
    }
    drop(lab);

    let best = median(best_times.clone());
    let delete = median(delete_times.clone());
    let bird = &daemons[0].1;
    let bird_ingest = median(bird.iter().map(|d| d.ingest).collect());
    let bird_withdraw = median(bird.iter().map(|d| d.withdraw).collect());
    let bird_hwm = median(bird.iter().map(|d| d.hwm_kib as f64).collect());
    let mut t = format!(
        "\nIngest and withdraw, N = {n} (2N = {} routes), median of {} run(s)\n\n\
         | who | ingest s | vs kernel best | vs BIRD | withdraw s | vs kernel | vs BIRD | peak RSS MiB | vs BIRD |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        2 * n,
        options.runs
    );
    let batch = median(batch_times.clone());
    writeln!(
        t,
        "| kernel, one `ip -batch` | {batch:.2}{} | {:.2}x | {:.2}x | | | | | |",
        spread(&batch_times),
        batch / best,
        batch / bird_ingest
    )
    .unwrap();
    writeln!(
        t,
        "| kernel, best path | {best:.2}{} | 1.00x | {:.2}x | {delete:.2}{} | 1.00x | {:.2}x | | |",
        spread(&best_times),
        best / bird_ingest,
        spread(&delete_times),
        delete / bird_withdraw
    )
    .unwrap();
    for (receiver, runs) in &daemons {
        let ingest: Vec<f64> = runs.iter().map(|d| d.ingest).collect();
        let withdraw: Vec<f64> = runs.iter().map(|d| d.withdraw).collect();
        let (i, w) = (median(ingest.clone()), median(withdraw.clone()));
        let hwm = median(runs.iter().map(|d| d.hwm_kib as f64).collect());
        writeln!(
            t,
            "| {} | {i:.2}{} | {:.2}x | {:.2}x | {w:.2}{} | {:.2}x | {:.2}x | {:.1} | {:.2}x |",
            receiver.name(),
            spread(&ingest),
            i / best,
            i / bird_ingest,
            spread(&withdraw),
            w / delete,
            w / bird_withdraw,
            hwm / 1024.0,
            hwm / bird_hwm
        )
        .unwrap();
    }
    Ok(t)
}
