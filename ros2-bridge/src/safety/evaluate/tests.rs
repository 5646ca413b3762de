use super::*;
use crate::msg::{Header, LaserScan};
use crate::safety::config::{PolicyFile, QuickFlags};
use proptest::prelude::*;
use std::f32::consts::PI;

const N: usize = 360;

/// 360 beams, one per degree from -180°, everything clear unless set.
fn scan_with(set: &[(i32, f32)]) -> LaserScan {
    let mut ranges = vec![f32::INFINITY; N];
    for &(deg, r) in set {
        ranges[(deg + 180) as usize] = r;
    }
    LaserScan {
        header: Header::default(),
        angle_min: -PI,
        angle_max: PI - PI / 180.0,
        angle_increment: PI / 180.0,
        time_increment: 0.0,
        scan_time: 0.025,
        range_min: 0.05,
        range_max: 10.0,
        ranges,
        intensities: vec![],
    }
}

fn quick() -> Evaluator {
    let q = QuickFlags {
        scan: "/scan".into(),
        stop_topic: "/stop".into(),
        stop_distance: 0.35,
        sector_deg: 60.0,
        source_timeout: "200ms".into(),
    };
    Evaluator::new(q.to_file().validate("r").expect("valid"))
}

fn policy(yaml: &str) -> Evaluator {
    Evaluator::new(
        PolicyFile::parse(yaml)
            .expect("parse")
            .validate("r")
            .expect("valid"),
    )
}

const TWO_ZONES: &str = r#"
source: {topic: /scan, sourceTimeout: 200ms}
zones:
  - {name: stop, shape: sector, range: 0.5, minAngleDeg: -45, maxAngleDeg: 45, action: stop, minPoints: 3}
  - {name: slow, shape: sector, range: 1.5, minAngleDeg: -45, maxAngleDeg: 45, action: slowdown, speedLimitPercent: 40}
  - {name: side, shape: circle, radius: 0.3, center: {x: 0, y: 1}, action: warn}
invalidReadings: {maxInvalidFraction: 0.25}
output: {stopTopic: /stop, speedLimitTopic: /speed_limit}
"#;

#[test]
fn rep117_classification() {
    assert_eq!(
        classify(f32::NAN, 0.1, 10.0),
        Reading::Invalid(InvalidKind::Nan)
    );
    assert_eq!(
        classify(f32::NEG_INFINITY, 0.1, 10.0),
        Reading::Hit(f64::from(0.1f32))
    );
    assert_eq!(classify(f32::INFINITY, 0.1, 10.0), Reading::Clear);
    assert_eq!(
        classify(0.05, 0.1, 10.0),
        Reading::Invalid(InvalidKind::BelowMin)
    );
    assert_eq!(
        classify(10.5, 0.1, 10.0),
        Reading::Invalid(InvalidKind::AboveMax)
    );
    assert_eq!(
        classify(10.0, 0.1, 10.0),
        Reading::Hit(10.0),
        "range_max itself is valid"
    );
    assert_eq!(classify(0.1, 0.1, 10.0), Reading::Hit(f64::from(0.1f32)));
}

#[test]
fn clear_and_obstacle_in_the_quick_sector() {
    let mut e = quick();
    assert_eq!(e.evaluate(&scan_with(&[])).verdict, Verdict::Clear);
    let ev = e.evaluate(&scan_with(&[(0, 0.3)]));
    assert_eq!(
        ev.verdict,
        Verdict::Stop {
            cause: StopCause::Obstacle,
            zone: Some(0)
        }
    );
    assert!((ev.zones[0].min_distance.expect("distance") - 0.3).abs() < 1e-6);
    assert_eq!(
        e.evaluate(&scan_with(&[(45, 0.3)])).verdict,
        Verdict::Clear,
        "outside ±30°"
    );
    assert_eq!(
        e.evaluate(&scan_with(&[(0, 0.36)])).verdict,
        Verdict::Clear,
        "beyond 0.35 m"
    );
    let ev = e.evaluate(&scan_with(&[(90, 2.0), (0, 4.0)]));
    assert!((ev.min_obstacle_distance.expect("nearest") - 2.0).abs() < 1e-6);
}

#[test]
fn negative_infinity_is_an_obstacle_at_range_min() {
    let mut e = quick();
    let ev = e.evaluate(&scan_with(&[(0, f32::NEG_INFINITY)]));
    assert_eq!(
        ev.verdict,
        Verdict::Stop {
            cause: StopCause::Obstacle,
            zone: Some(0)
        }
    );
}

#[test]
fn min_points_filters_single_returns() {
    let mut e = policy(TWO_ZONES);
    let one = e.evaluate(&scan_with(&[(0, 0.4)]));
    assert_eq!(
        one.verdict,
        Verdict::Slowdown { percent: 40.0 },
        "one point: only the slowdown zone (minPoints 1)"
    );
    let three = e.evaluate(&scan_with(&[(-1, 0.4), (0, 0.4), (1, 0.4)]));
    assert_eq!(
        three.verdict,
        Verdict::Stop {
            cause: StopCause::Obstacle,
            zone: Some(0)
        }
    );
    assert_eq!(three.zones[0].points, 3);
}

#[test]
fn warn_zones_never_stop() {
    let mut e = policy(TWO_ZONES);
    let ev = e.evaluate(&scan_with(&[(90, 1.0)]));
    assert!(ev.zones[2].triggered);
    assert_eq!(ev.verdict, Verdict::Clear);
    // A warn zone outside the scan is not "blinded" into a stop.
    let nan_side: Vec<(i32, f32)> = (80..=100).map(|d| (d, f32::NAN)).collect();
    assert_eq!(e.evaluate(&scan_with(&nan_side)).verdict, Verdict::Clear);
}

#[test]
fn blinded_sensor_stops_with_sensor_invalid() {
    let mut e = quick();
    let all_nan: Vec<(i32, f32)> = (-180..180).map(|d| (d, f32::NAN)).collect();
    let ev = e.evaluate(&scan_with(&all_nan));
    assert_eq!(
        ev.verdict,
        Verdict::Stop {
            cause: StopCause::SensorInvalid,
            zone: Some(0)
        }
    );
    assert_eq!(ev.invalid, [360, 0, 0]);
}

#[test]
fn invalid_fraction_is_per_zone_and_by_kind() {
    let mut e = policy(TWO_ZONES);
    // The zones are covered by about 91 beams (-45..=45). 20 invalid: 22% < 25%: fine.
    let some: Vec<(i32, f32)> = (0..20)
        .map(|d| (d, if d % 2 == 0 { 0.01 } else { 11.0 }))
        .collect();
    let ev = e.evaluate(&scan_with(&some));
    assert!(
        (89..=91).contains(&ev.zones[0].covering),
        "±45° give 91 beams, less the rounding at the edges"
    );
    assert_eq!(ev.zones[0].invalid, 20);
    assert_eq!(ev.invalid, [0, 10, 10]);
    assert_eq!(ev.verdict, Verdict::Clear);
    // 30 invalid: 33% > 25%: stop.
    let more: Vec<(i32, f32)> = (0..30).map(|d| (d, f32::NAN)).collect();
    assert_eq!(
        e.evaluate(&scan_with(&more)).verdict,
        Verdict::Stop {
            cause: StopCause::SensorInvalid,
            zone: Some(0)
        }
    );
    // The same 30 invalid readings behind the robot do not matter.
    let behind: Vec<(i32, f32)> = (150..180).map(|d| (d, f32::NAN)).collect();
    assert_eq!(e.evaluate(&scan_with(&behind)).verdict, Verdict::Clear);
}

#[test]
fn unusable_scans_stop() {
    let mut e = quick();
    let mut s = scan_with(&[]);
    s.angle_increment = 0.0;
    assert_eq!(
        e.evaluate(&s).verdict,
        Verdict::Stop {
            cause: StopCause::SensorInvalid,
            zone: None
        }
    );
    let mut s = scan_with(&[]);
    s.ranges.clear();
    assert_eq!(
        e.evaluate(&s).verdict,
        Verdict::Stop {
            cause: StopCause::SensorInvalid,
            zone: None
        }
    );
    let mut s = scan_with(&[]);
    s.range_max = f32::NAN;
    assert_eq!(
        e.evaluate(&s).verdict,
        Verdict::Stop {
            cause: StopCause::SensorInvalid,
            zone: None
        }
    );
}

#[test]
fn a_zone_no_beam_can_see_is_a_blind_zone() {
    let mut e = quick();
    let mut s = scan_with(&[]);
    // A LIDAR that only looks backwards (angles 90°..270°).
    s.angle_min = PI / 2.0;
    s.ranges.truncate(180);
    assert_eq!(
        e.evaluate(&s).verdict,
        Verdict::Stop {
            cause: StopCause::SensorInvalid,
            zone: Some(0)
        }
    );
}

#[test]
fn transform_moves_points_into_base_link() {
    // Laser mounted 0.5 m behind base_link facing backwards: what it sees ahead is behind the robot.
    let mut e = policy(
        r#"
source: {topic: /scan, sourceTimeout: 200ms, transform: {position: {x: -0.5, y: 0}, yawDeg: 180}}
zones:
  - {name: front, shape: sector, range: 0.35, minAngleDeg: -30, maxAngleDeg: 30, action: stop}
  - {name: rear, shape: circle, radius: 0.3, center: {x: -1.0, y: 0}, action: stop}
output: {stopTopic: /stop}
"#,
    );
    // 0.5 m ahead of the laser is 1.0 m behind base_link: the rear zone.
    let ev = e.evaluate(&scan_with(&[(0, 0.5)]));
    assert_eq!(
        ev.verdict,
        Verdict::Stop {
            cause: StopCause::Obstacle,
            zone: Some(1)
        }
    );
    // 0.7 m behind the laser is 0.2 m ahead of base_link: the front zone.
    let ev = e.evaluate(&scan_with(&[(-180, 0.7)]));
    assert_eq!(
        ev.verdict,
        Verdict::Stop {
            cause: StopCause::Obstacle,
            zone: Some(0)
        }
    );
}

proptest! {
    /// With minPoints 1, the verdict is Stop(Obstacle) exactly when some valid reading lands in
    /// the stop sector by direct polar geometry.
    #[test]
    fn stop_iff_a_point_is_in_the_sector(readings in proptest::collection::vec((-180i32..180, 0.0f32..1.0), 0..8)) {
        prop_assume!(readings.iter().all(|(d, _)| d.abs() != 30));
        let mut e = quick();
        let ev = e.evaluate(&scan_with(&readings));
        let mut s = scan_with(&readings);
        s.ranges.iter_mut().for_each(|r| if r.is_infinite() { *r = f32::INFINITY });
        let inside = (0..N).any(|i| {
            let r = s.ranges[i];
            let deg = i as f64 - 180.0;
            let r = f64::from(r);
            r.is_finite() && r >= f64::from(0.05f32) && r <= 0.35 && deg.abs() <= 30.0 + 1e-9
        });
        let stop = matches!(ev.verdict, Verdict::Stop { cause: StopCause::Obstacle, .. });
        prop_assert_eq!(stop, inside, "{:?}", readings);
    }

    /// Clearing readings (+Inf) never turns a clear scan into a stop, and evaluation never panics
    /// on arbitrary floats.
    #[test]
    fn arbitrary_ranges_never_panic(ranges in proptest::collection::vec(any::<f32>(), 0..400)) {
        let mut e = policy(TWO_ZONES);
        let mut s = scan_with(&[]);
        s.ranges = ranges;
        let ev = e.evaluate(&s);
        if let Verdict::Slowdown { percent } = ev.verdict { prop_assert_eq!(percent, 40.0); }
        s.ranges.iter_mut().for_each(|r| *r = f32::INFINITY);
        if !s.ranges.is_empty() && s.ranges.len() >= 271 {
            prop_assert_eq!(e.evaluate(&s).verdict, Verdict::Clear);
        }
    }
}
