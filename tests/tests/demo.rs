//! `make demo`, compressed: runs `tests/demo.sh` (its own cluster in its own network namespace,
//! with the debug binaries and short pauses) and checks its summary: v2 stable on every robot
//! through every wave, v3 aborted (`RolloutAborted`) with no pod outside v3's canary changed, the
//! sensor-sim scenario passed with at least one stop observed and released, and the sensor-sim
//! cameras' frames turned into detections (two objects each) through the detect bridges.

#![allow(clippy::expect_used)] // test helpers may panic with context

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

#[test]
#[ignore = "needs a loopback-only netns, the cluster binaries and the test venv (make test)"]
fn the_demo_runs_and_its_summary_holds() -> anyhow::Result<()> {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf();
    let bin = robofleet_tests::workspace_binary("robofleet-operator")
        .parent()
        .expect("target dir")
        .to_path_buf();
    let state = std::env::temp_dir().join(format!(
        "robofleet-demo-{}",
        robofleet_tests::random_suffix()
    ));
    let out = Command::new(repo.join("tests/demo.sh"))
        .current_dir(&repo)
        .env("ROBOFLEET_DEMO_FAST", "1")
        .env("ROBOFLEET_DEMO_BIN", &bin)
        .env("ROBOFLEET_DEMO_STATE", &state)
        .env("ROBOFLEET_DEMO_SUMMARY", state.with_extension("json"))
        .env_remove("ROBOFLEET_IN_NETNS")
        .env_remove("ROBOFLEET_CLUSTER_STATE")
        .env_remove("KUBECONFIG")
        .output()?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(out.status.success(), "demo failed:\n{log}");
    let path = state.with_extension("json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("no summary at {}: {e}\n{log}", path.display()))?;
    let _ = std::fs::remove_file(&path);
    let summary: Value = serde_json::from_str(&text)?;

    // v2 went through every wave and is stable on every robot.
    anyhow::ensure!(summary["stable"]["model"]["version"] == "v2", "{summary:#}");
    anyhow::ensure!(
        summary["waves"] == serde_json::json!(["canary", "half", "rest"]),
        "{summary:#}"
    );
    let pods = |k: &str| -> BTreeMap<String, (String, String)> {
        summary[k]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(r, p)| {
                        (
                            r.clone(),
                            (
                                p["uid"].as_str().unwrap_or("").to_owned(),
                                p["revision"].as_str().unwrap_or("").to_owned(),
                            ),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (v1, v2, after) = (pods("pods_v1"), pods("pods_v2"), pods("pods_after_v3"));
    let stable = summary["stable"]["hash"].as_str().unwrap_or("");
    let robots = summary["robots"].as_u64().unwrap_or(0) as usize;
    anyhow::ensure!(robots >= 3 && v2.len() == robots, "{summary:#}");
    anyhow::ensure!(
        v2.values().all(|(_, rev)| rev == stable),
        "every robot on v2: {v2:?}"
    );
    anyhow::ensure!(
        v2.iter()
            .all(|(r, p)| v1.get(r).is_some_and(|q| q.0 != p.0)),
        "every robot's pod was replaced by v2: {v1:?} -> {v2:?}"
    );
    // v3 was aborted in its canary: exactly one robot's pod changed, and everyone is on v2.
    anyhow::ensure!(summary["stalled_reason"] == "RolloutAborted", "{summary:#}");
    anyhow::ensure!(
        summary["aborted_revision"]
            .as_str()
            .is_some_and(|a| a != stable)
    );
    let changed: Vec<&String> = after
        .iter()
        .filter(|(r, p)| v2.get(*r).is_none_or(|q| q.0 != p.0))
        .map(|(r, _)| r)
        .collect();
    anyhow::ensure!(
        changed.len() == 1 && after.values().all(|(_, rev)| rev == stable),
        "only v3's canary changed and came back: {changed:?} {after:?}"
    );
    let events: Vec<&str> = summary["rollout_events"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for e in [
        "RolloutStarted",
        "RolloutCompleted",
        "RolloutAborted",
        "AnalysisPassed",
        "AnalysisFailed",
    ] {
        anyhow::ensure!(events.contains(&e), "event {e} in {events:?}");
    }
    // Traffic was served and the bad canary's errors were seen.
    anyhow::ensure!(
        summary["requests"]["ok"].as_u64().unwrap_or(0) >= 200,
        "{summary:#}"
    );
    anyhow::ensure!(
        summary["requests"]["failed"].as_u64().unwrap_or(0) >= 1,
        "{summary:#}"
    );
    // The cameras' frames became detections on every wave: two drawn boxes per frame (the scene
    // has two obstacles in view), and the bad v3 canary's frames failed, counted by its bridge.
    let d = &summary["detections"];
    let frames = d["frames_ok"].as_u64().unwrap_or(0);
    let objects = d["objects"].as_u64().unwrap_or(0);
    anyhow::ensure!(frames >= 200, "{summary:#}");
    anyhow::ensure!(
        objects >= 2 * frames * 9 / 10 && objects <= 2 * frames,
        "two objects per detected frame: {objects} objects in {frames} frames"
    );
    anyhow::ensure!(d["frames_failed"].as_u64().unwrap_or(0) >= 1, "{summary:#}");
    // The obstacle scenario passed, and the stop lock was seen going to stop and clearing.
    anyhow::ensure!(summary["safety"]["sim_phase"] == "Succeeded", "{summary:#}");
    let t: Vec<&str> = summary["safety"]["transitions"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    // The monitor counted the obstacle stop itself, and the live view saw the lock clear
    // after being at stop (the poll may miss a short stop; the counter cannot).
    let obstacle_stops = summary["safety"]["obstacle_stops"].as_u64().unwrap_or(0);
    let released = t.windows(2).any(|w| w == ["STOP", "CLEAR"]);
    anyhow::ensure!(
        obstacle_stops >= 1 && released,
        "a stop observed ({obstacle_stops} obstacle stops) and released: {t:?}"
    );
    anyhow::ensure!(log.contains("demo time:"), "the time is printed");
    Ok(())
}
