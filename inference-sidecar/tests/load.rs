//! Overload and shutdown under load, against the real server with the `slow.onnx` fixture
//! (a Loop of matrix products that takes real time per request).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Http, Server, fixture, metric};
use serde_json::{Value, json};

const MAX_QUEUE: usize = 8;
/// Resident memory the server must stay under during the overload. Measured: ~42 MiB idle (the
/// ONNX Runtime library is most of it), 59-96 MiB under this load, flat after the first ~10 s
/// (allocator arenas warming up, not a leak: the test prints the RSS trace). The queue and
/// admission bounds keep request memory small whatever the offered rate.
const RSS_BOUND: u64 = 192 << 20;

fn request() -> Value {
    json!({"inputs": [{"name": "INPUT0", "shape": [1, 256], "datatype": "FP32", "data": vec![0.5f32; 256]}]})
}

fn outcome(text: &str, outcome: &str) -> f64 {
    metric(
        text,
        &format!(
            r#"robofleet_inference_requests_total{{model="model",model_version="1",outcome="{outcome}"}}"#
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_with_429_and_stays_bounded() {
    let seconds: u64 = std::env::var("ROBOFLEET_OVERLOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let http = Http::new();
    let mut s = Server::with_model(
        &fixture("slow.onnx"),
        &[
            "--max-queue",
            &MAX_QUEUE.to_string(),
            "--max-concurrency",
            "1",
            "--intra-op-threads",
            "1",
            "--request-timeout",
            "2s",
        ],
    );
    s.wait_ready(&http).await;
    let url = format!("{}/v2/models/model/infer", s.api);
    let body = request();

    // the sustainable rate: sequential requests, one at a time
    let t = Instant::now();
    let n_seq = 20;
    for _ in 0..n_seq {
        assert_eq!(http.post_json(&url, &body).await.status, 200);
    }
    let per_request = t.elapsed() / n_seq;
    let interval = per_request / 10; // 10x the sustainable rate
    let idle_rss = s.rss_bytes();
    eprintln!(
        "sustainable: {per_request:?} per request; sending one every {interval:?} for {seconds} s; idle RSS {} MiB",
        idle_rss >> 20
    );

    let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default()); // 200, 429, 504, other
    let failures = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let mut max_depth = 0.0f64;
    let mut max_rss = idle_rss;
    let outstanding = Arc::new(tokio::sync::Semaphore::new(1000));
    let mut skipped = 0u64;
    let mut next_probe = Instant::now();
    let mut next_report = Instant::now();
    let mut rss_trace = Vec::new(); // MiB every 5 s, printed: growth would show a leak
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while Instant::now() < end {
        tick.tick().await;
        // keep the client within its file descriptors if the server (or the machine) stalls
        let Ok(permit) = outstanding.clone().try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let (client, url, body, counts, failures) = (
            http.clone(),
            url.clone(),
            body.clone(),
            counts.clone(),
            failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            match client
                .request(
                    hyper::Method::POST,
                    &url,
                    &[("content-type", "application/json".into())],
                    body.to_string().into_bytes(),
                )
                .await
            {
                Ok(r) => {
                    let i = match r.status {
                        200 => 0,
                        429 => 1,
                        504 => 2,
                        _ => 3,
                    };
                    counts[i].fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    if failures.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("request failed: {e}");
                    }
                }
            }
        }));
        if Instant::now() >= next_probe {
            next_probe = Instant::now() + Duration::from_millis(100);
            let text = s.metrics(&http).await;
            max_depth = max_depth.max(metric(&text, "robofleet_inference_queue_depth"));
            let rss = s.rss_bytes();
            max_rss = max_rss.max(rss);
            if Instant::now() >= next_report {
                next_report += Duration::from_secs(5);
                rss_trace.push(rss >> 20);
            }
        }
    }
    let sent = tasks.len() as u64;
    for t in tasks {
        t.await.unwrap();
    }
    let [ok, rejected, timeout, other] = [0, 1, 2, 3].map(|i| counts[i].load(Ordering::Relaxed));
    let text = s.metrics(&http).await;
    eprintln!(
        "sent {sent} (not sent, 1000 outstanding: {skipped}): 200={ok} 429={rejected} 504={timeout} other={other} failed={}; max queue depth {max_depth}; max RSS {} MiB; RSS every 5 s {rss_trace:?} MiB",
        failures.load(Ordering::Relaxed),
        max_rss >> 20
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "every request gets an answer"
    );
    assert_eq!(other, 0);
    assert_eq!(ok + rejected + timeout, sent);
    assert!(rejected > sent / 2, "most of a 10x overload is refused");
    assert!(ok > 0);
    assert!(max_depth <= MAX_QUEUE as f64, "queue depth {max_depth}");
    assert!(max_rss < RSS_BOUND, "RSS {max_rss} bytes");
    assert_eq!(outcome(&text, "rejected"), rejected as f64);
    assert_eq!(outcome(&text, "success"), (ok + n_seq as u64) as f64);
    assert_eq!(outcome(&text, "timeout"), timeout as f64);
    assert_eq!(metric(&text, "robofleet_inference_in_flight_requests"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let http = Http::new();
    let mut s = Server::with_model(
        &fixture("slow.onnx"),
        &[
            "--max-queue",
            "32",
            "--max-concurrency",
            "1",
            "--intra-op-threads",
            "1",
        ],
    );
    s.wait_ready(&http).await;
    let url = format!("{}/v2/models/model/infer", s.api);
    let n = 12;
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            http.post_json(&url, &request()).await.status
        }));
    }
    // wait until every request has reached the server (in flight or, on a slow machine where
    // the first ones finish before the last arrives, already answered) with several still in
    // flight, then stop it
    let deadline = Instant::now() + Duration::from_secs(30);
    let in_flight_at_stop = loop {
        let text = s.metrics(&http).await;
        let in_flight = metric(&text, "robofleet_inference_in_flight_requests");
        if in_flight >= 2.0 && in_flight + outcome(&text, "success") >= f64::from(n) {
            break in_flight;
        }
        assert!(
            Instant::now() < deadline,
            "requests never arrived: {in_flight} in flight"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    s.terminate();
    eprintln!("terminated with {in_flight_at_stop} requests in flight");
    for t in tasks {
        assert_eq!(
            t.await.unwrap(),
            200,
            "an in-flight request was dropped:\n{}",
            s.log()
        );
    }
    let status = s.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", s.log());
    assert!(s.log().contains("draining"), "{}", s.log());
}
