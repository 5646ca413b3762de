use super::*;
use crate::safety::config::QuickFlags;
use crate::safety::evaluate::ZoneResult;
use proptest::prelude::*;

/// sourceTimeout 200ms, holdTime 1s (defaults of the quick flags), Auto.
fn policy(latched: bool) -> Policy {
    let q = QuickFlags {
        scan: "/scan".into(),
        stop_topic: "/stop".into(),
        stop_distance: 0.35,
        sector_deg: 60.0,
        source_timeout: "200ms".into(),
    };
    let mut f = q.to_file();
    if latched {
        f.release.mode = ReleaseMode::Latched;
    }
    f.validate("r").expect("valid")
}

struct Clock(Instant);
impl Clock {
    fn at(&self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

fn eval(verdict: Verdict, triggered: bool) -> Evaluation {
    Evaluation {
        verdict,
        zones: vec![ZoneResult {
            triggered,
            ..ZoneResult::default()
        }],
        min_obstacle_distance: None,
        invalid: [0; 3],
    }
}
fn clear() -> Evaluation {
    eval(Verdict::Clear, false)
}
fn obstacle() -> Evaluation {
    eval(
        Verdict::Stop {
            cause: StopCause::Obstacle,
            zone: Some(0),
        },
        true,
    )
}
fn blinded() -> Evaluation {
    eval(
        Verdict::Stop {
            cause: StopCause::SensorInvalid,
            zone: Some(0),
        },
        false,
    )
}
fn slow(percent: f64) -> Evaluation {
    eval(Verdict::Slowdown { percent }, false)
}

/// Feeds scans every 25 ms (40 Hz) from `from` to `to` (exclusive) and returns the last decision.
fn feed(m: &mut Monitor, c: &Clock, from: u64, to: u64, e: &Evaluation) -> Decision {
    let mut last = None;
    let mut t = from;
    while t < to {
        last = Some(m.on_evaluation(c.at(t), e));
        t += 25;
    }
    last.expect("at least one scan")
}

#[test]
fn stopped_from_startup_until_first_valid_clear_evaluation() {
    let c = Clock(Instant::now());
    let mut m = Monitor::new(&policy(false));
    assert!(m.stopped());
    assert_eq!(m.reason(), Reason::Startup);
    let d = m.tick(c.at(500));
    assert!(
        d.stop && !d.changed && d.reason == Reason::Startup,
        "no scan yet: still stopped"
    );
    let d = m.on_evaluation(c.at(510), &clear());
    assert!(!d.stop && d.changed && d.reason == Reason::Clear);
}

#[test]
fn first_evaluation_with_obstacle_keeps_stop_and_then_needs_hold() {
    let c = Clock(Instant::now());
    let mut m = Monitor::new(&policy(false));
    let d = m.on_evaluation(c.at(0), &obstacle());
    assert!(d.stop && !d.changed && d.reason == Reason::Obstacle);
    assert!(
        feed(&mut m, &c, 25, 1000, &clear()).stop,
        "hold not yet over"
    );
    let d = m.on_evaluation(c.at(1025), &clear());
    assert!(!d.stop && d.changed);
}

#[test]
fn obstacle_stops_at_once_and_auto_release_waits_hold_time() {
    let c = Clock(Instant::now());
    let mut m = Monitor::new(&policy(false));
    feed(&mut m, &c, 0, 100, &clear());
    let d = m.on_evaluation(c.at(100), &obstacle());
    assert!(d.stop && d.changed && d.reason == Reason::Obstacle);
    assert_eq!(d.newly_triggered, vec![0]);
    assert!(
        m.on_evaluation(c.at(125), &obstacle())
            .newly_triggered
            .is_empty(),
        "alerts count edges"
    );
    // Clear from 150 ms: released at 150 + 1000 ms, not before.
    let d = feed(&mut m, &c, 150, 1150, &clear());
    assert!(d.stop, "still holding");
    assert_eq!(d.reason, Reason::Obstacle, "the reason stays while holding");
    let d = m.on_evaluation(c.at(1150), &clear());
    assert!(!d.stop && d.changed && d.reason == Reason::Clear);
}

#[test]
fn a_new_obstacle_during_hold_restarts_it() {
    let c = Clock(Instant::now());
    let mut m = Monitor::new(&policy(false));
    feed(&mut m, &c, 0, 50, &clear());
    m.on_evaluation(c.at(50), &obstacle());
    feed(&mut m, &c, 75, 800, &clear());
    let d = m.on_evaluation(c.at(800), &obstacle());
    assert!(d.stop && !d.changed);
    assert!(feed(&mut m, &c, 825, 1800, &clear()).stop);
    assert!(!m.on_evaluation(c.at(1825), &clear()).stop);
}

#[test]
fn stale_source_stops_after_source_timeout_and_deadline_says_when() {
    let c = Clock(Instant::now());
    let mut m = Monitor::new(&policy(false));
    m.on_evaluation(c.at(0), &clear());
    assert_eq!(m.next_deadline(), Some(c.at(200)));
    assert!(!m.tick(c.at(199)).stop);
    let d = m.tick(c.at(200));
    assert!(d.stop && d.changed && d.reason == Reason::SensorStale);
    assert_eq!(
        m.evaluation_age(c.at(250)),
        Some(Duration::from_millis(250))
    );
    // Fresh scans again: a hold follows, as after any hazard.
    let d = feed(&mut m, &c, 300, 1300, &clear());
    assert!(d.stop);
    assert!(!m.on_evaluation(c.at(1300), &clear()).stop);
}

#[test]
fn blinded_sensor_stops_with_sensor_invalid() {
    let c = Clock(Instant::now());
    let mut m = Monitor::new(&policy(false));
    feed(&mut m, &c, 0, 100, &clear());
    let d = m.on_evaluation(c.at(100), &blinded());
    assert!(d.stop && d.changed && d.reason == Reason::SensorInvalid);
}

#[test]
fn unexpected_publisher_stops_until_it_leaves() {
    let c = Clock(Instant::now());
    let mut m = Monitor::new(&policy(false));
    m.on_publishers(c.at(0), 1);
    feed(&mut m, &c, 0, 100, &clear());
    let d = m.on_publishers(c.at(100), 2);
    assert!(d.stop && d.changed && d.reason == Reason::UnexpectedPublisher);
    assert!(
        feed(&mut m, &c, 125, 500, &clear()).stop,
        "clear scans do not help"
    );
    m.on_publishers(c.at(500), 1);
    assert!(
        feed(&mut m, &c, 500, 1500, &clear()).stop,
        "hold after the publisher left"
    );
    assert!(!m.on_evaluation(c.at(1500), &clear()).stop);
}

#[test]
fn latched_stays_stopped_until_reset() {
    let c = Clock(Instant::now());
    let mut m = Monitor::new(&policy(true));
    feed(&mut m, &c, 0, 100, &clear());
    assert!(!m.stopped(), "start-up does not latch");
    m.on_evaluation(c.at(100), &obstacle());
    let d = feed(&mut m, &c, 125, 5000, &clear());
    assert!(d.stop && d.awaiting_reset && d.reason == Reason::Obstacle);
    assert_eq!(
        m.next_deadline(),
        Some(c.at(4975 + 200)),
        "only staleness is pending"
    );
    let d = m.on_reset(c.at(5000));
    assert!(!d.stop && d.changed && !d.awaiting_reset);
}

#[test]
fn reset_while_the_hazard_is_present_does_not_release() {
    let c = Clock(Instant::now());
    let mut m = Monitor::new(&policy(true));
    feed(&mut m, &c, 0, 100, &clear());
    m.on_evaluation(c.at(100), &obstacle());
    let d = m.on_reset(c.at(110));
    assert!(d.stop && !d.changed);
    // The obstacle is still in the last scan, so the lock latches again...
    assert!(m.on_evaluation(c.at(125), &obstacle()).awaiting_reset);
    // ...and clear scans keep it latched.
    assert!(feed(&mut m, &c, 150, 3000, &clear()).stop);
    // A reset with a stale sensor does not release either.
    assert!(m.on_reset(c.at(4000)).stop);
}

#[test]
fn shutdown_stops_and_stays() {
    let c = Clock(Instant::now());
    let mut m = Monitor::new(&policy(false));
    feed(&mut m, &c, 0, 100, &clear());
    let d = m.on_shutdown(c.at(100));
    assert!(d.stop && d.changed && d.reason == Reason::Shutdown);
    assert!(feed(&mut m, &c, 125, 3000, &clear()).stop);
    assert!(m.on_reset(c.at(3000)).stop);
}

#[test]
fn slowdown_publishes_limit_changes_only() {
    let c = Clock(Instant::now());
    let mut m = Monitor::new(&policy(false));
    assert_eq!(m.on_evaluation(c.at(0), &clear()).speed_limit_changed, None);
    assert_eq!(
        m.on_evaluation(c.at(25), &slow(40.0)).speed_limit_changed,
        Some(40.0)
    );
    assert_eq!(
        m.on_evaluation(c.at(50), &slow(40.0)).speed_limit_changed,
        None
    );
    assert_eq!(
        m.on_evaluation(c.at(75), &slow(20.0)).speed_limit_changed,
        Some(20.0)
    );
    let d = m.on_evaluation(c.at(100), &obstacle());
    assert_eq!(d.speed_limit_changed, None, "a stop leaves the limit alone");
    assert_eq!(m.tick(c.at(400)).speed_limit_changed, None);
    assert!(feed(&mut m, &c, 400, 1400, &clear()).stop);
    let d = m.on_evaluation(c.at(1400), &clear());
    assert!(!d.stop);
    assert_eq!(d.speed_limit_changed, Some(0.0), "lifted once clear");
}

#[test]
fn hot_reload_never_reads_clear_in_between() {
    let c = Clock(Instant::now());
    let mut m = Monitor::new(&policy(false));
    feed(&mut m, &c, 0, 100, &obstacle());
    let d = m.set_policy(&policy(false), c.at(100));
    assert!(
        d.stop && !d.changed,
        "stopped stays stopped across a reload"
    );
    feed(&mut m, &c, 100, 700, &clear());
    let d = m.set_policy(&policy(false), c.at(700));
    assert!(d.stop, "the hold restarts under the new policy");
    assert!(feed(&mut m, &c, 700, 1700, &clear()).stop);
    assert!(!m.on_evaluation(c.at(1700), &clear()).stop);
    // Clear stays clear across a reload.
    let d = m.set_policy(&policy(true), c.at(1710));
    assert!(!d.stop && !d.changed);
}

#[derive(Debug, Clone)]
enum Input {
    Scan(u8),
    Tick,
    Publishers(u8),
    Reset,
}

fn input() -> impl Strategy<Value = (u64, Input)> {
    (
        0u64..400,
        prop_oneof![
            (0u8..4).prop_map(Input::Scan),
            Just(Input::Tick),
            (0u8..3).prop_map(Input::Publishers),
            Just(Input::Reset),
        ],
    )
}

proptest! {
    /// Whatever happens, the lock is `false` only if the last evaluation is fresh and clear and
    /// there are no extra publishers; and in Auto mode a release needs `holdTime` of clear scans
    /// since the last hazard.
    #[test]
    fn never_clear_without_a_fresh_clear_scan(latched in any::<bool>(), steps in proptest::collection::vec(input(), 1..80)) {
        let c = Clock(Instant::now());
        let p = policy(latched);
        let mut m = Monitor::new(&p);
        let mut t = 0;
        let mut last_scan: Option<(u64, u8)> = None;
        let mut publishers = 0;
        let mut last_hazard: Option<u64> = None;
        let mut was_stopped = true;
        for (dt, inp) in steps {
            t += dt;
            let now = c.at(t);
            let d = match inp {
                Input::Scan(k) => {
                    last_scan = Some((t, k));
                    let e = match k { 0 => clear(), 1 => obstacle(), 2 => blinded(), _ => slow(50.0) };
                    m.on_evaluation(now, &e)
                }
                Input::Tick => m.tick(now),
                Input::Publishers(n) => { publishers = n; m.on_publishers(now, usize::from(n)) }
                Input::Reset => m.on_reset(now),
            };
            let fresh_clear = matches!(last_scan, Some((ts, k)) if t - ts < 200 && (k == 0 || k == 3));
            let hazard = !fresh_clear || publishers > 1;
            if hazard && last_scan.is_some() { last_hazard = Some(t); }
            if !d.stop {
                prop_assert!(!hazard, "clear with a hazard at {t}");
                let reset = matches!(inp, Input::Reset);
                if let (true, Some(h)) = (was_stopped, last_hazard) {
                    if latched {
                        prop_assert!(reset, "a latched stop released at {t} without a reset");
                    } else if !reset {
                        prop_assert!(t >= h + 1000, "released at {t}, hazard seen at {h}");
                    }
                }
            }
            prop_assert_eq!(d.stop, m.stopped());
            was_stopped = d.stop;
        }
    }
}
