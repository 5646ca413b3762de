//! Between the ROS thread and the sidecar: the ROS thread puts each valid frame in a one-place
//! slot ([`FrameSlot`], newest wins); the dispatcher takes the newest frame whenever one of
//! `max_in_flight` request slots is free, posts it, and hands the detections back to the ROS thread
//! to publish. Nothing queues: a camera faster than the detector loses its older frames, counted.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;

use super::client::SidecarClient;
use super::frame::{Frame, Latest, Outcome, to_detection_array};
use super::metrics::DetectMetrics;
use crate::msg::Detection2DArray;

/// The one frame waiting for a request slot.
#[derive(Default)]
pub struct FrameSlot {
    latest: Mutex<Latest<Frame>>,
    notify: Notify,
}

impl FrameSlot {
    /// Offers a frame; returns the frame it replaced (to be counted stale).
    pub fn put(&self, frame: Frame) -> Option<Frame> {
        let old = self
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(frame);
        self.notify.notify_one();
        old
    }

    /// Waits for a frame and takes it.
    pub async fn next(&self) -> Frame {
        loop {
            if let Some(f) = self
                .latest
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            {
                return f;
            }
            // notify_one stores a permit when nobody waits, so a put between the check and
            // this await is not lost.
            self.notify.notified().await;
        }
    }
}

/// Detections for one frame, for the ROS thread to publish.
#[derive(Debug)]
pub struct Answer {
    /// The frame's arrival order.
    pub seq: u64,
    /// The frame's arrival time.
    pub received: Instant,
    /// The message, stamped with the image's header.
    pub detections: Detection2DArray,
}

/// Whether a failure is worth a log line: the first of a run of the same outcome, then at most
/// one every `every`, so a sidecar that is down for an hour at 30 Hz logs a few hundred lines,
/// not a hundred thousand. A success after failures is always logged (recovery).
#[derive(Debug)]
pub struct LogGate {
    every: Duration,
    last: Option<(Outcome, Instant)>,
}

impl LogGate {
    /// A gate that repeats a persisting failure at most every `every`.
    pub fn new(every: Duration) -> LogGate {
        LogGate { every, last: None }
    }

    /// Records `outcome` at `now`; true when it should be logged.
    pub fn should_log(&mut self, outcome: Outcome, now: Instant) -> bool {
        let log = match (outcome, self.last) {
            (Outcome::Ok, None) => false,
            (Outcome::Ok, Some(_)) => true,
            (o, Some((prev, at))) if o == prev => now.saturating_duration_since(at) >= self.every,
            (_, _) => true,
        };
        if outcome == Outcome::Ok {
            self.last = None;
        } else if log {
            self.last = Some((outcome, now));
        }
        log
    }
}

/// How the dispatcher runs.
#[derive(Debug, Clone, Copy)]
pub struct DispatchOptions {
    /// Requests to the sidecar at once.
    pub max_in_flight: usize,
    /// A frame that waited longer than this is dropped (stale) instead of sent.
    pub max_frame_age: Duration,
}

/// Runs until the task is aborted (dropping it cancels the requests under way) or the ROS
/// thread stops taking answers.
pub async fn run(
    slot: Arc<FrameSlot>,
    client: SidecarClient,
    opts: DispatchOptions,
    metrics: DetectMetrics,
    answers: mpsc::UnboundedSender<Answer>,
) {
    let permits = Arc::new(Semaphore::new(opts.max_in_flight.max(1)));
    let gate = Arc::new(Mutex::new(LogGate::new(Duration::from_secs(10))));
    let mut tasks = JoinSet::new();
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let frame = slot.next().await;
        while tasks.try_join_next().is_some() {}
        if frame.expired(Instant::now(), opts.max_frame_age) {
            metrics.frame(Outcome::Stale);
            continue;
        }
        if answers.is_closed() {
            return;
        }
        let (client, metrics, answers, gate) = (
            client.clone(),
            metrics.clone(),
            answers.clone(),
            gate.clone(),
        );
        metrics.in_flight.inc();
        tasks.spawn(async move {
            let result = client.detect(&frame).await;
            metrics.in_flight.dec();
            let outcome = result.as_ref().map_or_else(|e| e.outcome(), |_| Outcome::Ok);
            let log = gate
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .should_log(outcome, Instant::now());
            match result {
                Ok(resp) => {
                    if log {
                        tracing::info!("sidecar answering again");
                    }
                    let _ = answers.send(Answer {
                        seq: frame.seq,
                        received: frame.received,
                        detections: to_detection_array(&frame.header, &resp),
                    });
                }
                Err(e) => {
                    metrics.frame(outcome);
                    if log {
                        tracing::warn!(outcome = outcome.as_str(), error = %e, "frame not detected (repeats of this outcome are logged at most every 10 s)");
                    }
                }
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_gate_logs_changes_repeats_sparingly_and_recovery() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut g = LogGate::new(Duration::from_secs(10));
        assert!(!g.should_log(Outcome::Ok, s(0)), "nothing to say");
        assert!(g.should_log(Outcome::Unavailable, s(1)));
        assert!(!g.should_log(Outcome::Unavailable, s(2)));
        assert!(!g.should_log(Outcome::Unavailable, s(10)));
        assert!(g.should_log(Outcome::Unavailable, s(11)), "a reminder");
        assert!(g.should_log(Outcome::Timeout, s(12)), "a different failure");
        assert!(g.should_log(Outcome::Ok, s(13)), "recovery");
        assert!(!g.should_log(Outcome::Ok, s(14)));
        assert!(
            g.should_log(Outcome::Timeout, s(15)),
            "after recovery, again"
        );
    }

    #[tokio::test]
    async fn the_slot_hands_out_the_newest_frame_and_wakes_the_waiter() {
        use crate::msg::Image;
        let frame = |seq| {
            let img = Image {
                width: 1,
                height: 1,
                step: 3,
                encoding: "rgb8".into(),
                data: vec![0; 3],
                ..Image::default()
            };
            Frame::raw(img, seq, Instant::now()).expect("valid")
        };
        let slot = Arc::new(FrameSlot::default());
        assert!(slot.put(frame(1)).is_none());
        assert_eq!(slot.put(frame(2)).map(|f| f.seq), Some(1));
        assert_eq!(slot.next().await.seq, 2);
        let waiter = tokio::spawn({
            let slot = slot.clone();
            async move { slot.next().await.seq }
        });
        tokio::task::yield_now().await;
        assert!(slot.put(frame(3)).is_none());
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("woken")
                .expect("task"),
            3
        );
    }
}
