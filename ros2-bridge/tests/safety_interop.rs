//! The safety monitor against an independent DDS implementation (Eclipse Cyclone DDS via the
//! PyPI `cyclonedds` wheel): Cyclone publishes the scans and reads the stop lock.
//!
//! Needs a loopback-only network namespace and the test venv; `make test` runs these with
//! `--include-ignored` inside one:
//! `unshare -rn sh -c 'ip link set lo up; ip link set lo multicast on; cargo test -p ros2-bridge -- --include-ignored'`
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

const STOP: &str = "/safety/stop";

struct Setup {
    domain: u16,
    monitor: Proc,
    addr: String,
    scans: Proc,
    reader: Proc,
}

/// Monitor with a config file, a Cyclone scan publisher and a Cyclone reliable lock reader, all
/// matched, with the lock cleared by clear scans.
fn setup(config: &str, dir: &std::path::Path) -> Setup {
    setup_with(config, dir, &[])
}

fn setup_with(config: &str, dir: &std::path::Path, extra: &[&str]) -> Setup {
    require_netns();
    let domain = domain();
    let path = dir.join("policy.yaml");
    std::fs::write(&path, config).expect("write policy");
    let mut args = vec!["safety", "--config", path.to_str().unwrap()];
    args.extend([
        "--metrics-addr",
        "127.0.0.1:0",
        "--reload-interval",
        "100ms",
    ]);
    args.extend(extra);
    let mut monitor = bridge("monitor", domain, &args);
    let addr = metrics_addr(&mut monitor);
    let mut reader = lock_reader("lock", domain, STOP, false);
    reader.wait_for("lock reader matched", MATCH_TIMEOUT, |v| {
        v["ev"] == "matched" && v["n"] == 1
    });
    let mut scans = cyclone("scans", domain, &["publish-scans", "--topic", "/scan"]);
    scans.wait_for("scan publisher matched", MATCH_TIMEOUT, |v| {
        v["ev"] == "matched" && v["n"] == 1
    });
    Setup {
        domain,
        monitor,
        addr,
        scans,
        reader,
    }
}

fn policy(stop_range: f64, hold: &str, extra: &str) -> String {
    format!(
        "name: test\n\
         source: {{topic: /scan, sourceTimeout: 300ms}}\n\
         zones:\n  - {{name: front, shape: sector, range: {stop_range}, minAngleDeg: -30, maxAngleDeg: 30, action: stop}}\n\
         release: {{mode: Auto, holdTime: {hold}}}\n\
         output: {{stopTopic: {STOP}, heartbeat: 50ms}}\n{extra}"
    )
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ros2-bridge-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tmpdir");
    d
}

fn last_lock(reader: &mut Proc) -> Option<bool> {
    reader.drain();
    lock_values(reader).last().copied()
}

fn clear_the_lock(s: &mut Setup) {
    let reader = &mut s.reader;
    pace_until(&mut s.scans, &scan(&[]), MATCH_TIMEOUT, || {
        last_lock(reader) == Some(false)
    });
}

#[test]
#[ignore = "needs a loopback-only netns and the test venv (make test)"]
fn stop_lock_reaches_cyclone_and_late_joiners() {
    let dir = tmpdir("late");
    // A 2 s heartbeat: whatever a late joiner gets within a few hundred ms is the retained state,
    // not a heartbeat.
    let mut s = setup(
        &policy(0.35, "300ms", "").replace("heartbeat: 50ms", "heartbeat: 2s"),
        &dir,
    );
    // From start-up the lock says stop.
    s.reader
        .wait_for("first lock sample", MATCH_TIMEOUT, |v| v["ev"] == "sample");
    assert_eq!(
        lock_values(&s.reader).first(),
        Some(&true),
        "stop from start-up"
    );
    // A TransientLocal late joiner gets the current state at once.
    let mut late = lock_reader("late-stop", s.domain, STOP, true);
    let first = late.wait_for("late joiner sample", MATCH_TIMEOUT, |v| v["ev"] == "sample");
    assert_eq!(first["data"], true);
    clear_the_lock(&mut s);
    // rustdds retains the writer's recent history (trimmed every few seconds, not to KeepLast(1)),
    // so a late joiner gets that history in order, ending with the current state, in one burst.
    let mut late2 = lock_reader("late-clear", s.domain, STOP, true);
    let first = late2.wait_for("late joiner sample", MATCH_TIMEOUT, |v| v["ev"] == "sample");
    let current = late2.wait_for("current state", Duration::from_millis(500), |v| {
        v["ev"] == "sample" && v["data"] == false
    });
    let burst_ms = (current["t"].as_f64().unwrap() - first["t"].as_f64().unwrap()) / 1e6;
    assert!(
        burst_ms < 500.0,
        "current state {burst_ms} ms after the first sample"
    );
    late2.drain();
    assert_eq!(
        lock_values(&late2).last(),
        Some(&false),
        "the late joiner ends at the current state"
    );
    assert!(metric(&s.addr, "robofleet_safety_stop_consumers{policy=\"test\"}") >= 1.0);
}

#[test]
#[ignore = "needs a loopback-only netns and the test venv (make test)"]
fn obstacle_stops_and_auto_release_waits_for_hold_time() {
    let dir = tmpdir("hold");
    let mut s = setup(&policy(0.35, "500ms", ""), &dir);
    clear_the_lock(&mut s);
    // An obstacle 0.3 m ahead: stop on that scan.
    s.scans.send(&scan(&[(0, 0.3)]));
    let sent = s
        .scans
        .wait_for("sent", MATCH_TIMEOUT, |v| v["ev"] == "sent");
    let stop = s.reader.wait_for("stop", MATCH_TIMEOUT, |v| {
        v["ev"] == "sample" && v["data"] == true
    });
    let reaction_ms = (stop["t"].as_f64().unwrap() - sent["t"].as_f64().unwrap()) / 1e6;
    eprintln!("reaction from Cyclone write to Cyclone receipt of stop: {reaction_ms:.2} ms");
    assert!(reaction_ms < 100.0, "reaction {reaction_ms} ms");
    // Clear scans again: the lock stays at stop for holdTime, then releases.
    let clear_from = Instant::now();
    let reader = &mut s.reader;
    pace_until(&mut s.scans, &scan(&[]), MATCH_TIMEOUT, || {
        last_lock(reader) == Some(false)
    });
    let held = clear_from.elapsed();
    assert!(
        held >= Duration::from_millis(500),
        "released after {held:?}, before holdTime"
    );
    assert_eq!(
        metric(
            &s.addr,
            "robofleet_safety_stops_total{policy=\"test\",reason=\"Obstacle\"}"
        ),
        1.0
    );
    assert!(metric(&s.addr, "robofleet_safety_reaction_duration_seconds_count") >= 1.0);
}

#[test]
#[ignore = "needs a loopback-only netns and the test venv (make test)"]
fn stale_sensor_stops_after_source_timeout() {
    let dir = tmpdir("stale");
    let mut s = setup(&policy(0.35, "300ms", ""), &dir);
    clear_the_lock(&mut s);
    let silent_from = Instant::now();
    s.reader.wait_for("stop", MATCH_TIMEOUT, |v| {
        v["ev"] == "sample" && v["data"] == true
    });
    let after = silent_from.elapsed();
    assert!(
        after >= Duration::from_millis(250),
        "stopped {after:?} after the last scan: too early"
    );
    wait_metric(
        &s.addr,
        "robofleet_safety_stops_total{policy=\"test\",reason=\"SensorStale\"}",
        MATCH_TIMEOUT,
        |v| v == 1.0,
    );
    let deadline = Instant::now() + MATCH_TIMEOUT;
    while http_get(&s.addr, "/readyz").0 != 503 {
        assert!(Instant::now() < deadline, "still ready with a stale source");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "needs a loopback-only netns and the test venv (make test)"]
fn blinded_sensor_stops_with_sensor_invalid() {
    let dir = tmpdir("blind");
    let mut s = setup(&policy(0.35, "300ms", ""), &dir);
    clear_the_lock(&mut s);
    let reader = &mut s.reader;
    pace_until(&mut s.scans, &json!({"fill": "nan"}), MATCH_TIMEOUT, || {
        last_lock(reader) == Some(true)
    });
    wait_metric(
        &s.addr,
        "robofleet_safety_stops_total{policy=\"test\",reason=\"SensorInvalid\"}",
        MATCH_TIMEOUT,
        |v| v == 1.0,
    );
    assert!(
        metric(
            &s.addr,
            "robofleet_safety_invalid_ranges_total{kind=\"nan\"}"
        ) >= 360.0
    );
}

#[test]
#[ignore = "needs a loopback-only netns and the test venv (make test)"]
fn second_scan_publisher_stops_with_unexpected_publisher() {
    let dir = tmpdir("pubs");
    let mut s = setup(&policy(0.35, "300ms", ""), &dir);
    clear_the_lock(&mut s);
    // Keep the legitimate scans flowing while the intruder starts: only the extra publisher may
    // cause the stop.
    let mut intruder = cyclone_nowait("intruder", s.domain, &["publish-scans", "--topic", "/scan"]);
    let reader = &mut s.reader;
    let mut intruder_matched = false;
    pace_until(&mut s.scans, &scan(&[]), MATCH_TIMEOUT, || {
        intruder_matched |= intruder
            .drain()
            .iter()
            .any(|v| v["ev"] == "matched" && v["n"] == 1);
        intruder_matched && last_lock(reader) == Some(true)
    });
    wait_metric(
        &s.addr,
        "robofleet_safety_stops_total{policy=\"test\",reason=\"UnexpectedPublisher\"}",
        MATCH_TIMEOUT,
        |v| v == 1.0,
    );
    wait_metric(
        &s.addr,
        "robofleet_safety_scan_publishers{policy=\"test\"}",
        MATCH_TIMEOUT,
        |v| v == 2.0,
    );
}

#[test]
#[ignore = "needs a loopback-only netns and the test venv (make test)"]
fn garbage_on_the_scan_topic_is_counted_not_fatal() {
    let dir = tmpdir("garbage");
    let mut s = setup(
        &policy(0.35, "300ms", "").replace(
            "sourceTimeout: 300ms",
            "sourceTimeout: 300ms, maxPublishers: 3",
        ),
        &dir,
    );
    clear_the_lock(&mut s);
    // Matching is per side: the monitor may not have matched a new (best-effort) garbage writer
    // when its first sample goes out, so send each kind until it is counted.
    let addr = s.addr.clone();
    let series = "robofleet_ros_malformed_messages_total{topic=\"/scan\"}";
    let mut counted = 0.0;
    for kind in ["truncated", "bad_length"] {
        let before = counted;
        pace_until(
            &mut s.scans,
            &json!({ "garbage": kind }),
            MATCH_TIMEOUT,
            || {
                counted = metric(&addr, series);
                counted > before
            },
        );
    }
    assert!(counted >= 2.0);
    // Still alive and still judging scans.
    let reader = &mut s.reader;
    pace_until(&mut s.scans, &scan(&[(0, 0.2)]), MATCH_TIMEOUT, || {
        last_lock(reader) == Some(true)
    });
    assert!(
        s.monitor
            .drain()
            .iter()
            .all(|v| v["level"] != "ERROR" || v["fields"]["message"] != "exiting")
    );
}

#[test]
#[ignore = "needs a loopback-only netns and the test venv (make test)"]
fn sigterm_leaves_the_lock_at_stop() {
    let dir = tmpdir("term");
    let mut s = setup(&policy(0.35, "300ms", ""), &dir);
    clear_the_lock(&mut s);
    let status = s.monitor.terminate(Duration::from_secs(15));
    assert!(status.success(), "monitor exit status {status:?}");
    s.reader.wait_for("final stop", MATCH_TIMEOUT, |v| {
        v["ev"] == "sample" && v["data"] == true
    });
    // The participant left the graph: the reader loses its publisher promptly (not after a lease).
    s.reader
        .wait_for("publisher gone", Duration::from_secs(5), |v| {
            v["ev"] == "matched" && v["n"] == 0
        });
    assert_eq!(
        last_lock(&mut s.reader),
        Some(true),
        "the last word is stop"
    );
}

#[test]
#[ignore = "needs a loopback-only netns and the test venv (make test)"]
fn config_change_applies_without_the_lock_reading_clear() {
    let dir = tmpdir("reload");
    let mut s = setup(&policy(0.5, "300ms", ""), &dir);
    clear_the_lock(&mut s);
    // Obstacle at 0.45 m: inside 0.5 → stop.
    let obstacle = scan(&[(0, 0.45)]);
    let reader = &mut s.reader;
    pace_until(&mut s.scans, &obstacle, MATCH_TIMEOUT, || {
        last_lock(reader) == Some(true)
    });
    let samples_before = lock_values(&s.reader).len();
    // Tighten to 0.6 m while stopped; keep the obstacle there and wait until the reload is applied.
    std::fs::write(dir.join("policy.yaml"), policy(0.6, "300ms", "")).expect("rewrite policy");
    let addr = s.addr.clone();
    pace_until(&mut s.scans, &obstacle, MATCH_TIMEOUT, || {
        metric(
            &addr,
            "robofleet_safety_config_reloads_total{outcome=\"applied\"}",
        ) == 1.0
    });
    // Move the obstacle to 0.55 m: the old 0.5 m zone would release, the new one keeps the stop.
    let moved = scan(&[(0, 0.55)]);
    let until = Instant::now() + Duration::from_millis(800);
    pace_until(&mut s.scans, &moved, MATCH_TIMEOUT, || {
        Instant::now() >= until
    });
    s.reader.drain();
    let after: Vec<bool> = lock_values(&s.reader)[samples_before..].to_vec();
    assert!(!after.is_empty(), "heartbeats kept coming");
    assert!(
        after.iter().all(|v| *v),
        "the lock read clear during or after the reload: {after:?}"
    );
}

#[test]
#[ignore = "needs a loopback-only netns and the test venv (make test)"]
fn robot_state_topic_is_exported_for_rollout_gating() {
    let dir = tmpdir("state");
    let s = setup_with(
        &policy(0.35, "300ms", ""),
        &dir,
        &["--robot", "amr-7", "--state-topic", "/${ROBOT}/state"],
    );
    let mut states = cyclone(
        "states",
        s.domain,
        &["publish-strings", "--topic", "/amr_7/state"],
    );
    states.wait_for("state publisher matched", MATCH_TIMEOUT, |v| {
        v["ev"] == "matched"
    });
    states.send(&json!({"data": "Charging"}));
    wait_metric(
        &s.addr,
        "robofleet_robot_state{state=\"charging\"}",
        MATCH_TIMEOUT,
        |v| v == 1.0,
    );
    states.send(&json!({"data": "busy"}));
    wait_metric(
        &s.addr,
        "robofleet_robot_state{state=\"busy\"}",
        MATCH_TIMEOUT,
        |v| v == 1.0,
    );
    let (_, body) = http_get(&s.addr, "/metrics");
    assert!(
        !body.contains("state=\"charging\""),
        "one state series at a time"
    );
    states.send(&json!({"data": "x y z {with} spaces"}));
    wait_metric(
        &s.addr,
        "robofleet_robot_state{state=\"other\"}",
        MATCH_TIMEOUT,
        |v| v == 1.0,
    );
}

#[test]
#[ignore = "needs a loopback-only netns and the test venv (make test)"]
fn slowdown_zone_publishes_nav2_speed_limit() {
    let dir = tmpdir("slow");
    let config = policy(0.35, "300ms", "")
        .replace(
            "action: stop}\n",
            "action: stop}\n  - {name: slow, shape: sector, range: 1.0, minAngleDeg: -30, maxAngleDeg: 30, action: slowdown, speedLimitPercent: 40}\n",
        )
        .replace("heartbeat: 50ms}", "heartbeat: 50ms, speedLimitTopic: /speed_limit}");
    let mut s = setup(&config, &dir);
    let mut limits = cyclone(
        "limits",
        s.domain,
        &["read", "--topic", "/speed_limit", "--type", "speed_limit"],
    );
    limits.wait_for("speed limit matched", MATCH_TIMEOUT, |v| {
        v["ev"] == "matched" && v["n"] == 1
    });
    clear_the_lock(&mut s);
    // 0.7 m ahead: inside the slowdown zone only.
    let addr = s.addr.clone();
    let mut got = None;
    pace_until(&mut s.scans, &scan(&[(0, 0.7)]), MATCH_TIMEOUT, || {
        got = limits.drain().into_iter().find(|v| v["ev"] == "sample");
        got.is_some()
    });
    let msg = &got.unwrap()["msg"];
    assert_eq!(msg["percentage"], true);
    assert_eq!(msg["speed_limit"], 40.0);
    assert_eq!(msg["header"]["frame_id"], "base_link");
    assert_eq!(
        last_lock(&mut s.reader),
        Some(false),
        "slowdown does not stop"
    );
    // Clear again: the limit is lifted with 0.
    pace_until(&mut s.scans, &scan(&[]), MATCH_TIMEOUT, || {
        limits
            .drain()
            .iter()
            .any(|v| v["ev"] == "sample" && v["msg"]["speed_limit"] == 0.0)
    });
    assert!(
        metric(
            &addr,
            "robofleet_safety_alerts_total{policy=\"test\",zone=\"slow\",action=\"slowdown\"}"
        ) >= 1.0
    );
}

#[test]
#[ignore = "needs a loopback-only netns and the test venv (make test)"]
fn latched_stop_releases_only_on_a_new_reset_nonce() {
    let dir = tmpdir("latched");
    let latched = |nonce: &str| {
        policy(0.35, "300ms", &format!("resetNonce: \"{nonce}\"\n"))
            .replace("mode: Auto", "mode: Latched")
    };
    let mut s = setup(&latched(""), &dir);
    clear_the_lock(&mut s);
    let reader = &mut s.reader;
    pace_until(&mut s.scans, &scan(&[(0, 0.3)]), MATCH_TIMEOUT, || {
        last_lock(reader) == Some(true)
    });
    // Clear scans for well over holdTime: still stopped.
    let until = Instant::now() + Duration::from_millis(1000);
    pace_until(&mut s.scans, &scan(&[]), MATCH_TIMEOUT, || {
        Instant::now() >= until
    });
    assert_eq!(
        last_lock(&mut s.reader),
        Some(true),
        "latched: no release without a reset"
    );
    // The operator relays the reset verb by writing a new nonce into the mounted file.
    std::fs::write(dir.join("policy.yaml"), latched("reset@1")).expect("rewrite policy");
    let reader = &mut s.reader;
    pace_until(&mut s.scans, &scan(&[]), MATCH_TIMEOUT, || {
        last_lock(reader) == Some(false)
    });
}
