//! One container's life: start its process, run its probes, turn its exit into a state, restart
//! it per the pod's restart policy with backoff, and stop it (process group, SIGTERM, SIGKILL after
//! the grace period) when the pod goes. Every change is sent to the pod task as a whole
//! [`status::Container`] record.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use tokio::sync::{mpsc, watch};

use super::config::Backoff;
use super::probe;
use super::process::{self, Proc};
use super::spec::{Launch, ProbePlan, RestartPolicy};
use super::status::{self, State};

/// What a container task needs besides its launch.
pub struct ContainerCtx {
    /// position in the pod spec
    pub index: usize,
    /// restart policy of the pod
    pub policy: RestartPolicy,
    /// restart backoff
    pub backoff: Backoff,
    /// the pod's network namespace (`/proc/<pid>/ns/net`), if it has one
    pub netns: Option<PathBuf>,
    /// where PID records go
    pub pid_dir: PathBuf,
    /// PID record name (`<pod uid>.<container>`)
    pub key: String,
    /// restarts already counted for this container (a runner restarted under a running pod)
    pub restart_count: i32,
}

enum Outcome {
    Exited(std::process::ExitStatus),
    Unhealthy,
    Stop(Duration),
}

/// Runs the container until it terminates for good or `stop` carries a grace period.
pub async fn run(
    launch: Arc<Launch>,
    ctx: ContainerCtx,
    updates: mpsc::UnboundedSender<(usize, status::Container)>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let mut rec = status::Container::new(&launch.name, &launch.image);
    rec.restart_count = ctx.restart_count;
    let send = |rec: &status::Container| {
        let _ = updates.send((ctx.index, rec.clone()));
    };
    let mut crashes = 0u32;
    loop {
        if stop.borrow().is_some() {
            return;
        }
        let _ = std::fs::remove_file(&launch.termination_message);
        let log = launch.dir.join(format!("{}.log", rec.restart_count));
        let started_at = Timestamp::now();
        let started = Instant::now();
        let spawned = process::start_container(&launch, ctx.netns.as_deref(), &log)
            .and_then(|mut p| p.record(&ctx.pid_dir, &ctx.key).map(|()| p));
        let (terminated, stopping) = match spawned {
            Err(e) => {
                tracing::warn!(container = %launch.name, kind = e.kind(), "{e}");
                let t = State::Terminated {
                    exit_code: 128,
                    signal: None,
                    reason: "StartError".into(),
                    message: Some(e.to_string()),
                    started_at,
                    finished_at: Timestamp::now(),
                };
                (t, false)
            }
            Ok(p) => {
                rec.state = State::Running { started_at };
                rec.ready = launch.readiness.is_none();
                send(&rec);
                run_once(p, &launch, &ctx, &mut rec, &send, &mut stop, started_at).await
            }
        };
        rec.ready = false;
        let code = match &terminated {
            State::Terminated { exit_code, .. } => *exit_code,
            _ => 0,
        };
        if stopping || !status::should_restart(ctx.policy, code) {
            rec.state = terminated;
            send(&rec);
            return;
        }
        if started.elapsed() > ctx.backoff.max * 2 {
            crashes = 0;
        }
        let delay = status::restart_delay(ctx.backoff, crashes);
        crashes = crashes.saturating_add(1);
        rec.last_state = Some(terminated);
        rec.state = State::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: Some(format!(
                "back-off {}ms restarting failed container",
                delay.as_millis()
            )),
        };
        send(&rec);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = async { let _ = stop.wait_for(Option::is_some).await; } => return,
        }
        rec.restart_count += 1;
    }
}

/// One run of the process: until it exits, fails its liveness probe, or is stopped. Returns its
/// terminated state and whether it was stopped.
async fn run_once(
    mut p: Proc,
    launch: &Arc<Launch>,
    ctx: &ContainerCtx,
    rec: &mut status::Container,
    send: &impl Fn(&status::Container),
    stop: &mut watch::Receiver<Option<Duration>>,
    started_at: Timestamp,
) -> (State, bool) {
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (live_tx, mut live_rx) = mpsc::unbounded_channel();
    let probes: Vec<_> = [
        (launch.readiness.clone(), ready_tx),
        (launch.liveness.clone(), live_tx),
    ]
    .into_iter()
    .filter_map(|(plan, tx)| {
        let plan = plan?;
        let (launch, netns) = (launch.clone(), ctx.netns.clone());
        Some(tokio::spawn(probe_loop(plan, launch, netns, tx)))
    })
    .collect();
    let outcome = loop {
        tokio::select! {
            s = p.child.wait() => match s {
                Ok(s) => break Outcome::Exited(s),
                Err(e) => {
                    tracing::warn!(container = %launch.name, "wait failed: {e}");
                    break Outcome::Stop(Duration::ZERO);
                }
            },
            Some(ready) = ready_rx.recv() => {
                if rec.ready != ready {
                    rec.ready = ready;
                    send(rec);
                }
            }
            Some(false) = live_rx.recv() => break Outcome::Unhealthy,
            grace = async { stop.wait_for(Option::is_some).await.ok().and_then(|g| *g) } => {
                break Outcome::Stop(grace.unwrap_or_default());
            }
        }
    };
    for t in probes {
        t.abort();
    }
    let (status, stopping) = match outcome {
        Outcome::Exited(s) => {
            p.finish();
            (Some(s), false)
        }
        Outcome::Unhealthy => {
            tracing::info!(container = %launch.name, "liveness probe failed; restarting");
            (p.stop(Duration::from_secs(2)).await, false)
        }
        Outcome::Stop(grace) => (p.stop(grace).await, true),
    };
    let (exit_code, signal) = status.as_ref().map_or((137, None), process::exit_code);
    let mut message = read_message(&launch.termination_message);
    if message.is_none() && exit_code != 0 && launch.message_from_logs {
        message = log_tail(&launch.dir.join(format!("{}.log", rec.restart_count)));
    }
    let reason = if exit_code == 0 { "Completed" } else { "Error" }.to_owned();
    let state = State::Terminated {
        exit_code,
        signal,
        reason,
        message,
        started_at,
        finished_at: Timestamp::now(),
    };
    (state, stopping)
}

fn read_message(path: &std::path::Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).into_owned();
    (!text.is_empty()).then_some(text)
}

fn log_tail(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(80)..].join("\n");
    let tail = if tail.len() > 2048 {
        tail[tail.len() - 2048..].to_owned()
    } else {
        tail
    };
    (!tail.is_empty()).then_some(tail)
}

/// Runs a probe every period and sends its verdict whenever it changes (after the success or
/// failure threshold of consecutive results).
async fn probe_loop(
    plan: ProbePlan,
    launch: Arc<Launch>,
    netns: Option<PathBuf>,
    verdicts: mpsc::UnboundedSender<bool>,
) {
    tokio::time::sleep(plan.initial_delay).await;
    let mut interval = tokio::time::interval(plan.period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut oks, mut fails) = (0u32, 0u32);
    let mut current: Option<bool> = None;
    loop {
        interval.tick().await;
        let ok = probe::check(&plan.action, plan.timeout, &launch, netns.as_deref()).await;
        if ok {
            oks += 1;
            fails = 0;
        } else {
            fails += 1;
            oks = 0;
        }
        let verdict = if ok && oks >= plan.success_threshold {
            Some(true)
        } else if !ok && fails >= plan.failure_threshold {
            Some(false)
        } else {
            None
        };
        if verdict.is_some() && verdict != current {
            current = verdict;
            if verdicts.send(verdict == Some(true)).is_err() {
                return;
            }
        }
    }
}
