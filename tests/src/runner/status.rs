//! What the runner reports, with no I/O: container states → the pod's phase, `Ready` /
//! `ContainersReady` conditions and `containerStatuses`, and when to restart a container.

use std::time::Duration;

use k8s_openapi::api::core::v1::PodCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::config::Backoff;
use super::spec::RestartPolicy;

/// A container's state as the runner observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// not running (being created, backing off before a restart, or refused)
    Waiting {
        /// `ContainerCreating`, `CrashLoopBackOff`, `ErrImageNeverPull`, ...
        reason: String,
        /// details
        message: Option<String>,
    },
    /// process running
    Running {
        /// when it started
        started_at: Timestamp,
    },
    /// process exited and will not be restarted (or is the previous run: `lastState`)
    Terminated {
        /// exit code (128 + signal for a signal)
        exit_code: i32,
        /// signal that ended it
        signal: Option<i32>,
        /// `Completed` or `Error`
        reason: String,
        /// termination message
        message: Option<String>,
        /// when it started
        started_at: Timestamp,
        /// when it ended
        finished_at: Timestamp,
    },
}

/// One container's runtime record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// container name
    pub name: String,
    /// image as in the spec
    pub image: String,
    /// current state
    pub state: State,
    /// previous run, if any
    pub last_state: Option<State>,
    /// readiness (false unless running)
    pub ready: bool,
    /// restarts so far
    pub restart_count: i32,
}

impl Container {
    /// A container not started yet.
    pub fn new(name: &str, image: &str) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            state: State::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            last_state: None,
            ready: false,
            restart_count: 0,
        }
    }
}

/// Whether a container that exited with `exit_code` is started again.
pub fn should_restart(policy: RestartPolicy, exit_code: i32) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => exit_code != 0,
        RestartPolicy::Never => false,
    }
}

/// Delay before restart number `restarts + 1`: `initial · 2^restarts`, capped. A run that lasted
/// longer than twice the cap resets the count (as the kubelet forgets old crashes).
pub fn restart_delay(backoff: Backoff, restarts: u32) -> Duration {
    let factor = 1u32.checked_shl(restarts.min(16)).unwrap_or(u32::MAX);
    backoff.initial.saturating_mul(factor).min(backoff.max)
}

/// The pod phase: `Succeeded`/`Failed` once every container has terminated for good, else
/// `Running` (the runner never reports `Pending`: kwok's stage has already made the pod Running).
pub fn phase(containers: &[Container]) -> &'static str {
    let done: Option<Vec<i32>> = containers
        .iter()
        .map(|c| match &c.state {
            State::Terminated { exit_code, .. } => Some(*exit_code),
            _ => None,
        })
        .collect();
    match done {
        Some(codes) if !codes.is_empty() => {
            if codes.iter().all(|c| *c == 0) {
                "Succeeded"
            } else {
                "Failed"
            }
        }
        _ => "Running",
    }
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn state_json(s: &State) -> serde_json::Value {
    match s {
        State::Waiting { reason, message } => {
            serde_json::json!({"waiting": {"reason": reason, "message": message}})
        }
        State::Running { started_at } => {
            serde_json::json!({"running": {"startedAt": time(*started_at)}})
        }
        State::Terminated {
            exit_code,
            signal,
            reason,
            message,
            started_at,
            finished_at,
        } => serde_json::json!({"terminated": {
            "exitCode": exit_code, "signal": signal, "reason": reason, "message": message,
            "startedAt": time(*started_at), "finishedAt": time(*finished_at),
        }}),
    }
}

/// A condition, keeping `lastTransitionTime` when its status did not change.
fn condition(
    previous: &[PodCondition],
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let last = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.map(Into::into),
        message,
        last_transition_time: Some(last),
        ..PodCondition::default()
    }
}

/// The status patch (`{"status": ...}`, for a merge patch of the status subresource).
pub fn pod_status(
    containers: &[Container],
    previous: &[PodCondition],
    now: Timestamp,
) -> serde_json::Value {
    let phase = phase(containers);
    let unready: Vec<&str> = containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let ready = phase == "Running" && unready.is_empty();
    let (reason, message) = if ready {
        (None, None)
    } else if phase != "Running" {
        (Some("PodCompleted"), None)
    } else {
        (
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let mut conditions: Vec<PodCondition> = previous
        .iter()
        .filter(|c| c.type_ != "Ready" && c.type_ != "ContainersReady")
        .cloned()
        .collect();
    for t in ["Ready", "ContainersReady"] {
        conditions.push(condition(previous, t, ready, reason, message.clone(), now));
    }
    let statuses: Vec<serde_json::Value> = containers
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name, "image": c.image, "imageID": "",
                "ready": c.ready, "restartCount": c.restart_count,
                "started": matches!(c.state, State::Running { .. }),
                "state": state_json(&c.state),
                "lastState": c.last_state.as_ref().map_or(serde_json::json!({}), state_json),
            })
        })
        .collect();
    serde_json::json!({"status": {
        "phase": phase, "conditions": conditions, "containerStatuses": statuses,
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("valid")
    }

    fn running(name: &str, ready: bool) -> Container {
        Container {
            state: State::Running { started_at: ts(0) },
            ready,
            ..Container::new(name, "img")
        }
    }

    fn terminated(name: &str, code: i32) -> Container {
        Container {
            state: State::Terminated {
                exit_code: code,
                signal: None,
                reason: if code == 0 { "Completed" } else { "Error" }.into(),
                message: Some("bye".into()),
                started_at: ts(0),
                finished_at: ts(5),
            },
            ..Container::new(name, "img")
        }
    }

    #[test]
    fn phase_follows_final_exits() {
        assert_eq!(phase(&[running("a", true)]), "Running");
        assert_eq!(phase(&[terminated("a", 0), running("b", false)]), "Running");
        assert_eq!(
            phase(&[terminated("a", 0), terminated("b", 0)]),
            "Succeeded"
        );
        assert_eq!(phase(&[terminated("a", 0), terminated("b", 3)]), "Failed");
        assert_eq!(phase(&[Container::new("a", "img")]), "Running");
    }

    #[test]
    fn restart_policy_and_backoff() {
        assert!(should_restart(RestartPolicy::Always, 0));
        assert!(should_restart(RestartPolicy::OnFailure, 1));
        assert!(!should_restart(RestartPolicy::OnFailure, 0));
        assert!(!should_restart(RestartPolicy::Never, 1));
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(10),
        };
        let delays: Vec<u64> = (0..6).map(|n| restart_delay(b, n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(restart_delay(b, 1000), Duration::from_secs(10));
    }

    #[test]
    fn ready_only_when_every_container_is_ready_and_transition_time_kept() {
        let s = pod_status(&[running("a", true), running("b", false)], &[], ts(10));
        let conds = &s["status"]["conditions"];
        assert_eq!(conds[0]["type"], "Ready");
        assert_eq!(conds[0]["status"], "False");
        assert_eq!(conds[0]["reason"], "ContainersNotReady");
        assert_eq!(conds[0]["message"], "containers with unready status: [b]");
        let previous: Vec<PodCondition> =
            serde_json::from_value(conds.clone()).expect("conditions");
        let scheduled = PodCondition {
            type_: "PodScheduled".into(),
            status: "True".into(),
            ..PodCondition::default()
        };
        let mut prev = previous.clone();
        prev.push(scheduled);
        // still not ready later: the transition time stays
        let again = pod_status(&[running("a", false), running("b", false)], &prev, ts(20));
        assert_eq!(
            again["status"]["conditions"][1]["lastTransitionTime"],
            conds[0]["lastTransitionTime"]
        );
        assert_eq!(again["status"]["conditions"][0]["type"], "PodScheduled");
        // ready: flips with a new time
        let ready = pod_status(&[running("a", true), running("b", true)], &prev, ts(30));
        let c = &ready["status"]["conditions"][1];
        assert_eq!(c["status"], "True");
        assert_ne!(c["lastTransitionTime"], conds[0]["lastTransitionTime"]);
        assert_eq!(ready["status"]["phase"], "Running");
    }

    #[test]
    fn container_statuses_carry_exit_code_message_and_last_state() {
        let mut c = terminated("job", 3);
        c.last_state = Some(State::Waiting {
            reason: "x".into(),
            message: None,
        });
        c.restart_count = 2;
        let s = pod_status(&[c], &[], ts(0));
        let cs = &s["status"]["containerStatuses"][0];
        assert_eq!(s["status"]["phase"], "Failed");
        assert_eq!(cs["state"]["terminated"]["exitCode"], 3);
        assert_eq!(cs["state"]["terminated"]["message"], "bye");
        assert_eq!(cs["state"]["terminated"]["reason"], "Error");
        assert_eq!(cs["restartCount"], 2);
        assert_eq!(cs["lastState"]["waiting"]["reason"], "x");
        assert_eq!(s["status"]["conditions"][0]["reason"], "PodCompleted");
    }
}
