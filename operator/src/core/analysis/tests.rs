//! Analysis arithmetic against hand-computed numbers.

use super::*;
use robofleet_crds::inference_service::PrometheusQuery;

fn at(secs: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap())
}

fn s(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
    Sample {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        value,
    }
}

fn req(outcome: &str, value: f64) -> Sample {
    s(
        REQUESTS_TOTAL,
        &[
            ("model", "d"),
            ("model_version", "v2"),
            ("outcome", outcome),
        ],
        value,
    )
}

fn bucket(le: &str, value: f64) -> Sample {
    s(
        DURATION_BUCKET,
        &[("model", "d"), ("model_version", "v2"), ("le", le)],
        value,
    )
}

fn stop(reason: &str, value: f64) -> Sample {
    s(STOPS_TOTAL, &[("policy", "p"), ("reason", reason)], value)
}

fn b(le: f64, count: f64) -> Bucket {
    Bucket { le, count }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

const NO_PROM: &BTreeMap<String, Result<f64, PromQueryError>> = &BTreeMap::new();

fn inputs(window: &WaveWindow) -> Inputs<'_> {
    Inputs {
        window,
        baseline: None,
        preferred_provider: "cpu",
        prometheus: NO_PROM,
    }
}

fn check(name: &str, kind: CheckKind) -> Check {
    Check {
        name: name.into(),
        kind,
    }
}

#[test]
fn counters_add_increases_and_treat_a_drop_as_a_reset() {
    // 5 -> 8 -> 2 (reset) -> 6: from zero 5 + 3 + 2 + 4 = 14; from the first snapshot 3 + 2 + 4
    let mut c = Counter::default();
    for v in [5.0, 8.0, 2.0, 6.0] {
        c.observe(v, true);
    }
    assert_eq!(c.delta(), 14.0);
    let mut c = Counter::default();
    for v in [5.0, 8.0, 2.0, 6.0] {
        c.observe(v, false);
    }
    assert_eq!(c.delta(), 9.0);
    // garbage is ignored, not a reset
    c.observe(f64::NAN, false);
    c.observe(-1.0, false);
    c.observe(7.0, false);
    assert_eq!(c.delta(), 10.0);
}

#[test]
fn counting_from_the_first_ready_scrape_leaves_start_up_rejections_out() {
    let mut w = WaveWindow::new("r2", 0);
    // first scrape once Ready: 4 requests refused while loading, 2 served
    w.observe_sidecar_since_first(
        "a",
        "pod-1",
        &at(0),
        &[req("rejected", 4.0), req("success", 2.0)],
        &at(30),
    );
    // then 20 served and one timeout, a series that appears only now: all of it counts
    w.observe_sidecar_since_first(
        "a",
        "pod-1",
        &at(0),
        &[
            req("rejected", 4.0),
            req("success", 22.0),
            req("timeout", 1.0),
        ],
        &at(60),
    );
    assert_eq!(request_outcomes(&w), (1.0, 21.0));
}

#[test]
fn a_new_sidecar_pod_counts_from_zero_and_a_replacement_pod_is_a_reset() {
    let mut w = WaveWindow::new("r2", 0);
    w.observe_sidecar("a", "pod-1", &at(0), &[req("success", 10.0)], &at(30));
    w.observe_sidecar("a", "pod-1", &at(0), &[req("success", 30.0)], &at(60));
    // the pod was replaced: its counters start at 0 again
    w.observe_sidecar("a", "pod-2", &at(0), &[req("success", 5.0)], &at(90));
    assert_eq!(request_outcomes(&w), (0.0, 35.0));
    assert_eq!(w.inference["a"].snapshots(), 3);
    assert!(w.is_for("r2", 0) && !w.is_for("r2", 1) && !w.is_for("r3", 0));
    w.retain(&["b"]);
    assert!(w.inference.is_empty());
}

#[test]
fn error_ratio_excludes_invalid_and_counts_error_rejected_timeout() {
    let mut w = WaveWindow::new("r2", 0);
    // robot a: failed 10 + 5 + 5 = 20 of 880 + 20 = 900 (invalid 100 excluded)
    let a = [
        req("success", 880.0),
        req("error", 10.0),
        req("rejected", 5.0),
        req("timeout", 5.0),
        req("invalid", 100.0),
    ];
    // robot b: failed 5 of 100
    let bb = [req("success", 95.0), req("error", 5.0), req("invalid", 7.0)];
    w.observe_sidecar("a", "pa", &at(0), &a, &at(60));
    w.observe_sidecar("b", "pb", &at(0), &bb, &at(60));
    assert_eq!(request_outcomes(&w), (25.0, 1000.0));
    let run = |max_ratio, min_samples, policy| {
        evaluate(
            &[check(
                "errors",
                CheckKind::ErrorRatio {
                    max_ratio,
                    min_samples,
                },
            )],
            policy,
            &inputs(&w),
            &at(60),
        )
    };
    let r = run(0.01, 200, NoDataPolicy::Inconclusive);
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(close(r.checks[0].observed.unwrap(), 0.025));
    assert_eq!(r.checks[0].samples, 1000.0);
    assert!(r.summary().contains("2.50%"), "{}", r.summary());
    assert_eq!(
        run(0.03, 200, NoDataPolicy::Inconclusive).verdict,
        Verdict::Pass
    );
    // exactly at the threshold passes
    assert_eq!(
        run(0.025, 200, NoDataPolicy::Inconclusive).verdict,
        Verdict::Pass
    );
    // fewer requests than minSamples: the policy decides
    for (policy, want) in [
        (NoDataPolicy::Inconclusive, Verdict::Inconclusive),
        (NoDataPolicy::Pass, Verdict::Pass),
        (NoDataPolicy::Fail, Verdict::Fail),
    ] {
        let r = run(0.03, 1001, policy);
        assert_eq!(r.verdict, want);
        assert_eq!(r.checks[0].observed, None);
        assert!(r.checks[0].message.contains("minSamples 1001"));
    }
}

#[test]
fn histogram_quantile_matches_prometheus() {
    let h = [
        b(0.01, 10.0),
        b(0.05, 60.0),
        b(0.1, 90.0),
        b(0.5, 99.0),
        b(f64::INFINITY, 100.0),
    ];
    // rank 99 lands exactly on the top of the (0.1, 0.5] bucket
    assert!(close(histogram_quantile(0.99, &h), 0.5));
    // rank 50 in (0.01, 0.05]: 0.01 + 0.04 * (50 - 10) / 50 = 0.042
    assert!(close(histogram_quantile(0.5, &h), 0.042));
    // rank 5 in the first bucket, whose lower bound is 0: 0.01 * 5 / 10
    assert!(close(histogram_quantile(0.05, &h), 0.005));
    // rank 99.5 is beyond every finite bucket: the highest finite bound
    assert!(close(histogram_quantile(0.995, &h), 0.5));
    assert!(close(histogram_quantile(1.0, &h), 0.5));
    // order does not matter
    let mut shuffled = h;
    shuffled.reverse();
    assert!(close(histogram_quantile(0.5, &shuffled), 0.042));
    // q outside [0, 1]
    assert_eq!(histogram_quantile(-0.1, &h), f64::NEG_INFINITY);
    assert_eq!(histogram_quantile(1.1, &h), f64::INFINITY);
    assert!(histogram_quantile(f64::NAN, &h).is_nan());
    // no +Inf bucket, only +Inf, nothing observed, nothing at all: NaN
    assert!(histogram_quantile(0.5, &h[..4]).is_nan());
    assert!(histogram_quantile(0.5, &[b(f64::INFINITY, 5.0)]).is_nan());
    assert!(histogram_quantile(0.5, &[b(0.1, 0.0), b(f64::INFINITY, 0.0)]).is_nan());
    assert!(histogram_quantile(0.5, &[]).is_nan());
    // non-monotonic counts are forced up: [10, 8 -> 10, 10]; rank 5 in the first bucket
    let bumpy = [b(0.1, 10.0), b(0.2, 8.0), b(f64::INFINITY, 10.0)];
    assert!(close(histogram_quantile(0.5, &bumpy), 0.05));
    // a first bucket at or below 0 returns its bound
    let zero = [b(0.0, 4.0), b(1.0, 10.0), b(f64::INFINITY, 10.0)];
    assert_eq!(histogram_quantile(0.2, &zero), 0.0);
    // rank 7 in (0, 1]: 0 + 1 * (7 - 4) / 6 = 0.5
    assert!(close(histogram_quantile(0.7, &zero), 0.5));
    // equal bounds are merged (summed)
    let dup = [
        b(0.1, 2.0),
        b(0.1, 3.0),
        b(0.2, 10.0),
        b(f64::INFINITY, 10.0),
    ];
    // buckets [0.1: 5, 0.2: 10]; rank 7.5 in (0.1, 0.2]: 0.1 + 0.1 * 2.5 / 5 = 0.15
    assert!(close(histogram_quantile(0.75, &dup), 0.15));
}

#[test]
fn latency_sums_bucket_deltas_across_robots() {
    let mut w = WaveWindow::new("r2", 0);
    let robot = |v: [f64; 5]| {
        ["0.01", "0.05", "0.1", "0.5", "+Inf"]
            .iter()
            .zip(v)
            .map(|(le, c)| bucket(le, c))
            .collect::<Vec<_>>()
    };
    // robot a's sidecar restarted between two scrapes (the 0.01 bucket fell from 4 to 1): the
    // whole page counts from 0 again, also the buckets that climbed back above their old value
    w.observe_sidecar(
        "a",
        "pa",
        &at(0),
        &robot([4.0, 10.0, 20.0, 22.0, 22.0]),
        &at(30),
    );
    w.observe_sidecar(
        "a",
        "pa",
        &at(0),
        &robot([1.0, 30.0, 40.0, 44.0, 45.0]),
        &at(60),
    );
    w.observe_sidecar(
        "b",
        "pb",
        &at(0),
        &robot([5.0, 20.0, 30.0, 33.0, 33.0]),
        &at(60),
    );
    // a: 4+1, 10+30, 20+40, 22+44, 22+45 = 5, 40, 60, 66, 67; b: 5, 20, 30, 33, 33
    // summed: 10, 60, 90, 99, 100
    let sums: Vec<f64> = latency_buckets(&w).iter().map(|b| b.count).collect();
    assert_eq!(sums, vec![10.0, 60.0, 90.0, 99.0, 100.0]);
    let p = |quantile, max_ms, min_samples| {
        evaluate(
            &[check(
                "p",
                CheckKind::Latency {
                    quantile,
                    max: Duration::from_millis(max_ms),
                    min_samples,
                },
            )],
            NoDataPolicy::Inconclusive,
            &inputs(&w),
            &at(60),
        )
    };
    let r = p(0.99, 80, 100);
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(close(r.checks[0].observed.unwrap(), 0.5));
    assert!(r.checks[0].message.contains("500.0ms"), "{}", r.summary());
    let r = p(0.5, 80, 100);
    assert_eq!(r.verdict, Verdict::Pass);
    assert!(close(r.checks[0].observed.unwrap(), 0.042));
    assert_eq!(p(0.5, 80, 101).verdict, Verdict::Inconclusive);
}

#[test]
fn latency_without_an_inf_bucket_is_no_data() {
    let mut w = WaveWindow::new("r2", 0);
    w.observe_sidecar("a", "pa", &at(0), &[bucket("0.1", 500.0)], &at(60));
    let r = evaluate(
        &[check(
            "p",
            CheckKind::Latency {
                quantile: 0.99,
                max: Duration::from_millis(80),
                min_samples: 1,
            },
        )],
        NoDataPolicy::Fail,
        &inputs(&w),
        &at(60),
    );
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(r.checks[0].observed, None);
}

#[test]
fn safety_stop_rate_against_the_frozen_baseline() {
    let mut w = WaveWindow::new("r2", 0);
    // robot a: 3 obstacle stops before the window (baseline), 2 more within one hour; the
    // monitor's Startup stop never counts
    w.observe_monitor(
        "a",
        "ma",
        &[stop("Obstacle", 3.0), stop("Startup", 1.0)],
        &at(0),
    );
    w.observe_monitor(
        "a",
        "ma",
        &[stop("Obstacle", 5.0), stop("Startup", 1.0)],
        &at(3600),
    );
    // robot b: no stop at first; an Obstacle series appears (1) and later a SensorStale one (1)
    w.observe_monitor("b", "mb", &[], &at(0));
    w.observe_monitor("b", "mb", &[stop("Obstacle", 1.0)], &at(1800));
    w.observe_monitor(
        "b",
        "mb",
        &[stop("Obstacle", 1.0), stop("SensorStale", 1.0)],
        &at(3600),
    );
    let (stops, hours) = wave_stops(&w);
    assert_eq!(stops, 4.0);
    assert!(close(hours, 2.0));
    // stable sample: 10 stops in 20 h and 2 in 4 h (Startup excluded) => 12 / 24 = 0.5 per hour
    let stable_a = lifetime_stops(&[stop("Obstacle", 10.0), stop("Startup", 1.0)]);
    let stable_b = lifetime_stops(&[stop("SensorInvalid", 2.0), stop("Shutdown", 1.0)]);
    assert_eq!((stable_a, stable_b), (10.0, 2.0));
    let base = baseline(
        &[
            StableSample {
                stops: stable_a,
                hours: 20.0,
            },
            StableSample {
                stops: stable_b,
                hours: 4.0,
            },
            // a monitor that has not run yet is left out
            StableSample {
                stops: 3.0,
                hours: 0.0,
            },
        ],
        &at(0),
    );
    assert!(close(base.stops_per_hour, 0.5));
    assert!(close(base.robot_hours, 24.0));
    let run = |max, min_hours, baseline: Option<&StopBaseline>| {
        let prom = BTreeMap::new();
        let i = Inputs {
            window: &w,
            baseline,
            preferred_provider: "cpu",
            prometheus: &prom,
        };
        evaluate(
            &[check(
                "stops",
                CheckKind::SafetyStopRate {
                    max_increase_per_hour: max,
                    min_robot_hours: min_hours,
                },
            )],
            NoDataPolicy::Inconclusive,
            &i,
            &at(3600),
        )
    };
    // 4 stops / 2 robot-hours = 2.0 per hour; 2.0 - 0.5 = +1.5
    let r = run(0.5, 1.0, Some(&base));
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(close(r.checks[0].observed.unwrap(), 1.5));
    assert!(close(r.checks[0].samples, 2.0));
    assert_eq!(run(1.5, 1.0, Some(&base)).verdict, Verdict::Pass);
    // without a baseline the comparison is against 0: +2.0
    assert!(close(run(0.5, 1.0, None).checks[0].observed.unwrap(), 2.0));
    // not enough robot-hours yet
    assert_eq!(run(0.5, 3.0, Some(&base)).verdict, Verdict::Inconclusive);
    // no stable robot measured: 0 per hour over 0 hours
    let empty = baseline(&[], &at(0));
    assert_eq!((empty.stops_per_hour, empty.robot_hours), (0.0, 0.0));
}

#[test]
fn fallback_robots_count_model_and_provider_fallbacks() {
    let info = |fallback: &str, ep: &str| {
        s(
            MODEL_INFO,
            &[
                ("model", "d"),
                ("execution_provider", ep),
                ("fallback", fallback),
                ("sha256", "x"),
            ],
            1.0,
        )
    };
    let mut w = WaveWindow::new("r2", 0);
    let run = |w: &WaveWindow, max| {
        let prom = BTreeMap::new();
        let i = Inputs {
            window: w,
            baseline: None,
            preferred_provider: "tensorrt",
            prometheus: &prom,
        };
        evaluate(
            &[check("fb", CheckKind::FallbackRobots { max })],
            NoDataPolicy::Inconclusive,
            &i,
            &at(60),
        )
    };
    assert_eq!(run(&w, 0.0).verdict, Verdict::Inconclusive);
    w.observe_sidecar("a", "pa", &at(0), &[info("false", "tensorrt")], &at(60));
    w.observe_sidecar("b", "pb", &at(0), &[info("true", "tensorrt")], &at(60));
    w.observe_sidecar("c", "pc", &at(0), &[info("false", "cuda")], &at(60));
    let r = run(&w, 1.0);
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(
        (r.checks[0].observed, r.checks[0].samples),
        (Some(2.0), 3.0)
    );
    assert_eq!(run(&w, 2.0).verdict, Verdict::Pass);
}

#[test]
fn prometheus_answers_become_one_number_or_a_typed_error() {
    let vector = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"x"},"value":[1700000000.5,"0.25"]}]}}"#;
    assert_eq!(parse_query_response(vector), Ok(0.25));
    let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"7"]}}"#;
    assert_eq!(parse_query_response(scalar), Ok(7.0));
    let inf = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}}"#;
    assert_eq!(parse_query_response(inf), Ok(f64::INFINITY));
    let cases = [
        (
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
            "no_series",
        ),
        (
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]},{"metric":{},"value":[1,"2"]}]}}"#,
            "many_series",
        ),
        (
            r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#,
            "nan",
        ),
        (
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
            "unsupported_type",
        ),
        (
            r#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#,
            "refused",
        ),
        ("<html>502</html>", "malformed"),
        (
            r#"{"status":"success","data":{"resultType":"scalar","result":[1,2]}}"#,
            "malformed",
        ),
        (
            r#"{"status":"success","data":{"resultType":"scalar","result":[1,"abc"]}}"#,
            "malformed",
        ),
    ];
    for (body, kind) in cases {
        assert_eq!(
            parse_query_response(body).map_err(|e| e.kind()),
            Err(kind),
            "{body}"
        );
    }
    let refused = parse_query_response(cases[4].0).unwrap_err();
    assert!(refused.to_string().contains("parse error at char 4"));
    assert_eq!(
        query_url("http://prom:9090/", "sum(rate(x{a=\"b c\"}[5m]))"),
        "http://prom:9090/api/v1/query?query=sum%28rate%28x%7Ba%3D%22b%20c%22%7D%5B5m%5D%29%29"
    );
}

#[test]
fn prometheus_checks_use_the_given_results() {
    let w = WaveWindow::new("r2", 0);
    let checks = [check(
        "q",
        CheckKind::Prometheus {
            address: "http://p".into(),
            query: "x".into(),
            max: 6.0,
        },
    )];
    let run = |result: Option<Result<f64, PromQueryError>>, policy| {
        let prom: BTreeMap<_, _> = result.into_iter().map(|r| ("q".to_owned(), r)).collect();
        let i = Inputs {
            window: &w,
            baseline: None,
            preferred_provider: "cpu",
            prometheus: &prom,
        };
        evaluate(&checks, policy, &i, &at(0))
    };
    assert_eq!(
        run(Some(Ok(6.0)), NoDataPolicy::Inconclusive).verdict,
        Verdict::Pass
    );
    let r = run(Some(Ok(7.0)), NoDataPolicy::Inconclusive);
    assert_eq!(
        (r.verdict, r.checks[0].observed),
        (Verdict::Fail, Some(7.0))
    );
    // no series is no data: the policy decides
    assert_eq!(
        run(Some(Err(PromQueryError::NoSeries)), NoDataPolicy::Pass).verdict,
        Verdict::Pass
    );
    // a broken measurement is inconclusive whatever the policy
    let broken = Some(Err(PromQueryError::Transport("refused".into())));
    assert_eq!(
        run(broken, NoDataPolicy::Fail).verdict,
        Verdict::Inconclusive
    );
    assert_eq!(run(None, NoDataPolicy::Pass).verdict, Verdict::Inconclusive);
}

#[test]
fn the_worst_check_decides() {
    let mut w = WaveWindow::new("r2", 0);
    w.observe_sidecar("a", "pa", &at(0), &[req("success", 500.0)], &at(60));
    let errors = check(
        "errors",
        CheckKind::ErrorRatio {
            max_ratio: 0.01,
            min_samples: 100,
        },
    );
    let stops = check(
        "stops",
        CheckKind::SafetyStopRate {
            max_increase_per_hour: 1.0,
            min_robot_hours: 1.0,
        },
    );
    let fb = check("fb", CheckKind::FallbackRobots { max: 0.0 });
    let r = evaluate(
        &[errors.clone(), stops.clone()],
        NoDataPolicy::Inconclusive,
        &inputs(&w),
        &at(60),
    );
    assert_eq!(r.verdict, Verdict::Inconclusive);
    assert_eq!(r.summary(), r.checks[1].message);
    w.observe_sidecar(
        "a",
        "pa",
        &at(0),
        &[s(
            MODEL_INFO,
            &[("execution_provider", "cpu"), ("fallback", "true")],
            1.0,
        )],
        &at(61),
    );
    let r = evaluate(
        &[errors, stops, fb],
        NoDataPolicy::Inconclusive,
        &inputs(&w),
        &at(61),
    );
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(r.summary().starts_with("fb: "), "{}", r.summary());
}

#[test]
fn checks_resolve_from_the_spec_with_defaults() {
    let spec: AnalysisCheck = serde_json::from_value(serde_json::json!(
        {"name": "p99", "builtin": "LatencyP99", "maxLatency": "80ms"}
    ))
    .unwrap();
    assert_eq!(
        Check::from_spec(&spec).unwrap().kind,
        CheckKind::Latency {
            quantile: 0.99,
            max: Duration::from_millis(80),
            min_samples: 100
        }
    );
    let spec: AnalysisCheck = serde_json::from_value(serde_json::json!(
        {"name": "s", "builtin": "SafetyStopRate", "maxIncreasePerHour": 0.5}
    ))
    .unwrap();
    assert_eq!(
        Check::from_spec(&spec).unwrap().kind,
        CheckKind::SafetyStopRate {
            max_increase_per_hour: 0.5,
            min_robot_hours: 1.0
        }
    );
    let prom = AnalysisCheck {
        name: "q".into(),
        builtin: None,
        prometheus: Some(PrometheusQuery {
            address: "http://p".into(),
            query: "up".into(),
        }),
        max_ratio: None,
        max_latency: None,
        quantile: None,
        max_increase_per_hour: None,
        max_value: Some(1.0),
        min_samples: None,
        min_robot_hours: None,
    };
    assert!(matches!(
        Check::from_spec(&prom).unwrap().kind,
        CheckKind::Prometheus { max, .. } if max == 1.0
    ));
    let mut broken = prom.clone();
    broken.max_value = None;
    assert_eq!(
        Check::from_spec(&broken).unwrap_err().kind(),
        "missing_threshold"
    );
    broken.prometheus = None;
    assert_eq!(Check::from_spec(&broken).unwrap_err().kind(), "no_source");
    let overflow: AnalysisCheck = serde_json::from_value(serde_json::json!(
        {"name": "p", "builtin": "LatencyP99", "maxLatency": "9999999h"}
    ))
    .unwrap();
    assert_eq!(Check::from_spec(&overflow).unwrap_err().kind(), "duration");
}

#[test]
fn stop_locks_and_reported_states_are_read_from_pages() {
    let on = [
        s(STOP_ACTIVE, &[("policy", "a")], 0.0),
        s(STOP_ACTIVE, &[("policy", "b")], 1.0),
    ];
    assert_eq!(stop_lock_engaged(&on), Some(true));
    assert_eq!(stop_lock_engaged(&on[..1]), Some(false));
    assert_eq!(stop_lock_engaged(&[]), None);
    let states = [
        s(ROBOT_STATE, &[("state", "idle")], 0.0),
        s(ROBOT_STATE, &[("state", "busy")], 1.0),
    ];
    assert_eq!(reported_state(&states).as_deref(), Some("busy"));
    assert_eq!(reported_state(&states[..1]), None);
}
