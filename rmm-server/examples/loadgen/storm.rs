//! The reconnect storm: every agent connected and stable, the server
//! killed (SIGKILL) and restarted on the same port and data directory,
//! and every agent coming back on the real agent's schedule. Measured per
//! agent: the time from the restart (the server listening again) to its
//! `welcome`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::fleet::Fleet;
use crate::server::{ServerProc, ServerSpec};

/// Runs the storm against `server` (which it kills) and returns the
/// restarted server.
pub async fn run(
    fleet: &Fleet,
    server: ServerProc,
    spec: &ServerSpec,
    agents: usize,
    give_up: Duration,
) -> anyhow::Result<ServerProc> {
    // A fleet that has been up a while: after a connection that stayed up
    // `stable_after` the agent starts its backoff from the first step.
    let stable = fleet.agent_options().stable_after;
    let wait = stable.saturating_sub(fleet.since_last_welcome()) + Duration::from_secs(1);
    println!(
        "storm: waiting {:.0?} until every connection is {stable:?} old (the agent then resets its backoff)",
        wait
    );
    tokio::time::sleep(wait).await;
    let connected = fleet.connected.load(Ordering::Relaxed) as usize;
    if connected != agents {
        bail!("only {connected} of {agents} agents are connected before the restart");
    }

    let busy_before = fleet.busy.load(Ordering::Relaxed);
    let failures_before = fleet.failures();
    let pin_before = server.pin.clone();
    fleet.begin_storm();
    let killed = Instant::now();
    server.kill()?;
    let restart = spec.clone();
    let server = tokio::task::spawn_blocking(move || ServerProc::start(&restart)).await??;
    let up = Instant::now();
    if server.pin != pin_before {
        bail!("the server certificate changed across the restart");
    }
    println!(
        "storm: server killed (SIGKILL) and restarted on {} (pid {}), listening again {:.2?} after the kill",
        spec.addr,
        server.pid(),
        up - killed
    );

    let deadline = up + give_up;
    let mut report_at = up + Duration::from_secs(10);
    loop {
        let back = fleet.back_count();
        let now = Instant::now();
        if back >= agents || now >= deadline {
            break;
        }
        if now >= report_at {
            println!(
                "storm: {:>4.0} s: {back} back, {} answered 503",
                (now - up).as_secs_f64(),
                fleet.busy.load(Ordering::Relaxed) - busy_before
            );
            report_at += Duration::from_secs(10);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Agents not back count as infinitely late.
    let mut times: Vec<Duration> = fleet
        .back_after(up)
        .into_iter()
        .map(|t| t.unwrap_or(Duration::MAX))
        .collect();
    times.sort();
    let never = times.iter().filter(|t| **t == Duration::MAX).count();
    let show = |t: Duration| {
        if t == Duration::MAX {
            "never".to_owned()
        } else {
            format!("{:.1} s", t.as_secs_f64())
        }
    };
    let within = |secs: u64| {
        let n = times
            .iter()
            .filter(|t| **t <= Duration::from_secs(secs))
            .count();
        100.0 * n as f64 / agents.max(1) as f64
    };
    println!(
        "storm: {} of {agents} agents back within {give_up:.0?} of the restart ({never} never came back)",
        agents - never
    );
    println!(
        "storm: restart -> welcome p50 {} p90 {} p99 {} max {}",
        show(crate::percentile(&times, 0.5)),
        show(crate::percentile(&times, 0.9)),
        show(crate::percentile(&times, 0.99)),
        show(times.last().copied().unwrap_or_default()),
    );
    println!(
        "storm: back within 60 s {:.2}%, within 120 s {:.2}%",
        within(60),
        within(120)
    );

    let http = crate::http_client(server.pin.as_deref())?;
    let refused = crate::metric(
        &http,
        &spec.base_url(),
        "rmm_agent_handshakes_refused_total",
    )
    .await?;
    println!(
        "storm: 503 received by agents {}, server rmm_agent_handshakes_refused_total {refused:.0}",
        fleet.busy.load(Ordering::Relaxed) - busy_before
    );
    let mut failures: BTreeMap<&str, u64> = fleet.failures();
    for (why, n) in &failures_before {
        if let Some(now) = failures.get_mut(why) {
            *now -= n;
        }
    }
    failures.retain(|_, n| *n > 0);
    println!("storm: other failed attempts {failures:?}");
    println!(
        "storm: server RSS after the storm {:.1} MiB",
        server.rss_bytes() as f64 / 1048576.0
    );
    Ok(server)
}
