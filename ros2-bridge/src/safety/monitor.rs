//! The stop-lock state machine. It is handed evaluations, publisher counts, resets and the
//! monotonic time; it never reads a clock. The node calls [`Monitor::on_evaluation`] for every
//! scan, [`Monitor::tick`] on every heartbeat and at [`Monitor::next_deadline`], and publishes the
//! lock whenever a [`Decision`] says `changed` (and on every heartbeat regardless).

use std::time::{Duration, Instant};

use super::config::{Policy, ReleaseMode};
use super::evaluate::{Evaluation, StopCause, Verdict};

/// Why the lock is engaged (or `Clear`); CamelCase like the status reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No valid evaluation since start-up.
    Startup,
    /// An obstacle in a stop zone.
    Obstacle,
    /// Too many invalid readings (REP 117) or an unusable scan.
    SensorInvalid,
    /// The last evaluation is older than `sourceTimeout`.
    SensorStale,
    /// More scan publishers than `maxPublishers`.
    UnexpectedPublisher,
    /// The monitor is shutting down.
    Shutdown,
    /// Not stopped.
    Clear,
}

impl Reason {
    /// The CamelCase name used in diagnostics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Startup => "Startup",
            Reason::Obstacle => "Obstacle",
            Reason::SensorInvalid => "SensorInvalid",
            Reason::SensorStale => "SensorStale",
            Reason::UnexpectedPublisher => "UnexpectedPublisher",
            Reason::Shutdown => "Shutdown",
            Reason::Clear => "Clear",
        }
    }
}

/// What the node should do after an input.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The lock value (`true` = stop).
    pub stop: bool,
    /// Why.
    pub reason: Reason,
    /// The lock value changed: publish now.
    pub changed: bool,
    /// Stopped only because Latched mode waits for a reset.
    pub awaiting_reset: bool,
    /// Speed limit (percent) to publish when it changed: `Some(0.0)` lifts the limit.
    pub speed_limit_changed: Option<f64>,
    /// Zones that became active with this evaluation (for the alert counters).
    pub newly_triggered: Vec<usize>,
}

/// The monitor's state.
#[derive(Debug, Clone)]
pub struct Monitor {
    source_timeout: Duration,
    hold_time: Duration,
    release: ReleaseMode,
    max_publishers: usize,
    stop: bool,
    reason: Reason,
    last_eval: Option<(Instant, Verdict)>,
    clear_since: Option<Instant>,
    latched: bool,
    publishers: usize,
    shutting_down: bool,
    speed_limit: f64,
    zone_active: Vec<bool>,
}

impl Monitor {
    /// Starts stopped, reason `Startup`.
    pub fn new(policy: &Policy) -> Self {
        Monitor {
            source_timeout: policy.source_timeout,
            hold_time: policy.hold_time,
            release: policy.release,
            max_publishers: policy.max_publishers,
            stop: true,
            reason: Reason::Startup,
            last_eval: None,
            clear_since: None,
            latched: false,
            publishers: 0,
            shutting_down: false,
            speed_limit: 0.0,
            zone_active: vec![false; policy.zones.len()],
        }
    }

    /// Current lock value.
    pub fn stopped(&self) -> bool {
        self.stop
    }

    /// Current reason.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// Age of the last evaluation.
    pub fn evaluation_age(&self, now: Instant) -> Option<Duration> {
        self.last_eval
            .map(|(t, _)| now.saturating_duration_since(t))
    }

    /// Hot reload: the state (and so the lock) carries over; a running hold restarts so a release
    /// always rests on scans judged under one policy.
    pub fn set_policy(&mut self, policy: &Policy, now: Instant) -> Decision {
        self.source_timeout = policy.source_timeout;
        self.hold_time = policy.hold_time;
        self.release = policy.release;
        self.max_publishers = policy.max_publishers;
        self.clear_since = None;
        self.zone_active = vec![false; policy.zones.len()];
        self.step(now, Vec::new())
    }

    /// A scan was evaluated; `now` is when it was received.
    pub fn on_evaluation(&mut self, now: Instant, eval: &Evaluation) -> Decision {
        self.last_eval = Some((now, eval.verdict));
        let mut newly = Vec::new();
        self.zone_active.resize(eval.zones.len(), false);
        for (i, z) in eval.zones.iter().enumerate() {
            if z.triggered && !self.zone_active[i] {
                newly.push(i);
            }
            self.zone_active[i] = z.triggered;
        }
        self.step(now, newly)
    }

    /// Publishers matched on the scan topic changed.
    pub fn on_publishers(&mut self, now: Instant, count: usize) -> Decision {
        self.publishers = count;
        self.step(now, Vec::new())
    }

    /// The reset verb (Latched mode). Releases at once if nothing is wrong now.
    pub fn on_reset(&mut self, now: Instant) -> Decision {
        self.latched = false;
        self.step_with(now, Vec::new(), true)
    }

    /// SIGTERM: stop, and stay stopped.
    pub fn on_shutdown(&mut self, now: Instant) -> Decision {
        self.shutting_down = true;
        self.step(now, Vec::new())
    }

    /// Heartbeat: re-judges staleness and holds.
    pub fn tick(&mut self, now: Instant) -> Decision {
        self.step(now, Vec::new())
    }

    /// The next instant at which a tick could change the lock (staleness or a hold running out),
    /// so the node need not wait for the next heartbeat.
    pub fn next_deadline(&self) -> Option<Instant> {
        let stale = self.last_eval.map(|(t, _)| t + self.source_timeout);
        let hold = match (self.stop, self.clear_since) {
            (true, Some(t)) if !self.latched => Some(t + self.hold_time),
            _ => None,
        };
        match (stale, hold) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn hazard(&self, now: Instant) -> Option<Reason> {
        if self.shutting_down {
            return Some(Reason::Shutdown);
        }
        if self.publishers > self.max_publishers {
            return Some(Reason::UnexpectedPublisher);
        }
        let (at, verdict) = match self.last_eval {
            None => return Some(Reason::Startup),
            Some(e) => e,
        };
        if now.saturating_duration_since(at) >= self.source_timeout {
            return Some(Reason::SensorStale);
        }
        match verdict {
            Verdict::Stop {
                cause: StopCause::Obstacle,
                ..
            } => Some(Reason::Obstacle),
            Verdict::Stop {
                cause: StopCause::SensorInvalid,
                ..
            } => Some(Reason::SensorInvalid),
            Verdict::Clear | Verdict::Slowdown { .. } => None,
        }
    }

    fn step(&mut self, now: Instant, newly_triggered: Vec<usize>) -> Decision {
        self.step_with(now, newly_triggered, false)
    }

    fn step_with(&mut self, now: Instant, newly_triggered: Vec<usize>, reset: bool) -> Decision {
        let was = self.stop;
        match self.hazard(now) {
            Some(reason) => {
                if reason != Reason::Startup && self.release == ReleaseMode::Latched {
                    self.latched = true;
                }
                self.clear_since = None;
                self.stop = true;
                self.reason = reason;
            }
            None if !self.stop => {}
            None if self.reason == Reason::Startup => {
                // The first valid clear evaluation ends start-up at once: there was no hazard.
                self.stop = false;
                self.reason = Reason::Clear;
            }
            None if self.latched && self.release == ReleaseMode::Latched => {}
            None => {
                let since = *self.clear_since.get_or_insert(now);
                if reset || now.saturating_duration_since(since) >= self.hold_time {
                    self.stop = false;
                    self.reason = Reason::Clear;
                    self.clear_since = None;
                    self.latched = false;
                }
            }
        }
        // While stopped the limit is left as it was: the lock already holds the robot.
        let limit = match (self.stop, self.last_eval) {
            (true, _) => self.speed_limit,
            (false, Some((_, Verdict::Slowdown { percent }))) => percent,
            (false, _) => 0.0,
        };
        let speed_limit_changed = (limit != self.speed_limit).then_some(limit);
        self.speed_limit = limit;
        Decision {
            stop: self.stop,
            reason: self.reason,
            changed: self.stop != was,
            awaiting_reset: self.stop && self.latched && self.release == ReleaseMode::Latched,
            speed_limit_changed,
            newly_triggered,
        }
    }
}

#[cfg(test)]
mod tests;
