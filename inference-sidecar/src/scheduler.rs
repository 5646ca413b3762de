//! The bounded queue between the HTTP handlers and the inference threads. A full queue refuses at
//! once (HTTP 429); a request whose deadline passed while it waited is dropped at dequeue and
//! answered `timeout`; with batching on, a thread takes up to `max_batch` compatible requests
//! (same input shapes past the first dimension), waiting at most `max_queue_delay` for more.
//! Closing the queue lets the threads finish what is queued, then stop.
//!
//! Short models run inline: when nothing is queued, batching is off, a session is idle and the
//! model's recent runs took at most [`INLINE_MAX_COMPUTE`], the request's own task takes the idle
//! session and runs it (see [`Scheduler::try_inline`]). That saves the two thread hand-offs per
//! request (to the inference thread and back), which cost more than the model itself for
//! sub-millisecond detectors; a longer run never holds an async worker.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::backend::{Backend, BackendError};
use crate::metrics::Metrics;
use crate::tensor::Tensor;

/// Why a job got no outputs.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Its deadline passed before it ran.
    #[error("the request's deadline passed while it waited in the queue")]
    Timeout,
    /// The model failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The inference thread panicked (a bug; the thread carries on).
    #[error("the inference thread failed unexpectedly")]
    Panic,
}

impl JobError {
    /// A short stable name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Backend(e) => e.kind(),
            Self::Panic => "panic",
        }
    }
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue holds `max_queue` jobs.
    #[error("the inference queue is full")]
    Full,
    /// The server is draining.
    #[error("the server is shutting down")]
    Closed,
}

impl SubmitError {
    /// A short stable name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Full => "queue_full",
            Self::Closed => "closed",
        }
    }
}

/// What a job's submitter receives.
pub type JobResult = Result<Vec<Tensor>, JobError>;

/// One request's inputs (checked, in model order) and where to send its outputs.
pub struct Job {
    /// inputs in model order
    pub inputs: Vec<Tensor>,
    /// when the request was accepted
    pub accepted: Instant,
    /// after this, the job is not run
    pub deadline: Instant,
    /// the answer goes here
    pub reply: oneshot::Sender<JobResult>,
}

/// Queue and batching limits.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    /// jobs waiting at most
    pub max_queue: usize,
    /// jobs per model run (1 = no batching)
    pub max_batch: usize,
    /// how long a thread waits to fill a batch
    pub max_queue_delay: Duration,
    /// runs averaging at most this long may run on the request's task
    /// ([`INLINE_MAX_COMPUTE`] in the server; zero: never)
    pub inline_max_compute: Duration,
}

/// The server's limit: runs that took at most this long on average (recent runs, exponentially
/// weighted) may run on the request's task; an async worker is then held no longer than this.
pub const INLINE_MAX_COMPUTE: Duration = Duration::from_millis(2);

/// Runs through the inference threads before the inline path is considered (the first runs of a
/// session are slower and would mislead the average the other way anyway).
const INLINE_AFTER_RUNS: u64 = 8;

struct State {
    jobs: VecDeque<Job>,
    closed: bool,
    /// sessions not running: an inference thread takes one with each batch, an inline run takes
    /// one for a request
    idle: Vec<Box<dyn Backend>>,
}

struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    config: SchedulerConfig,
    metrics: Arc<Metrics>,
    /// recent compute time per run, exponentially weighted (1/8), in nanoseconds
    recent_compute_ns: AtomicU64,
    /// runs so far
    runs: AtomicU64,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn depth_changed(&self, st: &State) {
        self.metrics
            .queue_depth
            .set(i64::try_from(st.jobs.len()).unwrap_or(i64::MAX));
    }

    /// Records one run's compute time.
    fn ran(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let runs = self.runs.fetch_add(1, Ordering::Relaxed);
        let old = self.recent_compute_ns.load(Ordering::Relaxed);
        let new = if runs == 0 {
            ns
        } else {
            old - old / 8 + ns / 8
        };
        self.recent_compute_ns.store(new, Ordering::Relaxed);
    }

    /// Whether the model's recent runs were short enough to run on a request's task.
    fn short_runs(&self) -> bool {
        let limit = self.config.inline_max_compute;
        self.config.max_batch <= 1
            && !limit.is_zero()
            && self.runs.load(Ordering::Relaxed) >= INLINE_AFTER_RUNS
            && self.recent_compute_ns.load(Ordering::Relaxed)
                <= u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Gives a session back; wakes the inference threads only when a job waits for it.
    fn give_back(&self, backend: Box<dyn Backend>) {
        let mut st = self.lock();
        st.idle.push(backend);
        let waiting = !st.jobs.is_empty();
        drop(st);
        if waiting {
            self.ready.notify_all();
        }
    }

    /// Blocks until a job and an idle session are available; `None` once closed and empty.
    fn next_batch(&self) -> Option<(Vec<Job>, Box<dyn Backend>)> {
        let mut st = self.lock();
        let (first, backend) = loop {
            if !st.jobs.is_empty()
                && !st.idle.is_empty()
                && let (Some(job), Some(backend)) = (st.jobs.pop_front(), st.idle.pop())
            {
                break (job, backend);
            }
            if st.jobs.is_empty() && st.closed {
                return None;
            }
            st = self.ready.wait(st).unwrap_or_else(PoisonError::into_inner);
        };
        let mut batch = vec![first];
        if self.config.max_batch > 1 {
            let until = Instant::now() + self.config.max_queue_delay;
            loop {
                while batch.len() < self.config.max_batch
                    && st
                        .jobs
                        .front()
                        .is_some_and(|j| compatible(&batch[0].inputs, &j.inputs))
                {
                    if let Some(j) = st.jobs.pop_front() {
                        batch.push(j);
                    }
                }
                let now = Instant::now();
                let blocked = st
                    .jobs
                    .front()
                    .is_some_and(|j| !compatible(&batch[0].inputs, &j.inputs));
                if batch.len() >= self.config.max_batch || st.closed || blocked || now >= until {
                    break;
                }
                st = self
                    .ready
                    .wait_timeout(st, until - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
        self.depth_changed(&st);
        Some((batch, backend))
    }
}

/// Whether two requests can share a model run: same inputs with the same shape past dimension 0.
fn compatible(a: &[Tensor], b: &[Tensor]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && x.datatype() == y.datatype()
                && x.shape.len() == y.shape.len()
                && x.shape.get(1..) == y.shape.get(1..)
        })
}

/// The queue and its inference threads.
pub struct Scheduler {
    queue: Arc<Queue>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Scheduler {
    /// Starts one inference thread per backend.
    pub fn start(
        backends: Vec<Box<dyn Backend>>,
        config: SchedulerConfig,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let count = backends.len();
        let queue = Arc::new(Queue {
            state: Mutex::new(State {
                jobs: VecDeque::with_capacity(config.max_queue.min(1024)),
                closed: false,
                idle: backends,
            }),
            ready: Condvar::new(),
            config,
            metrics,
            recent_compute_ns: AtomicU64::new(0),
            runs: AtomicU64::new(0),
        });
        let mut threads = Vec::with_capacity(count);
        for i in 0..count {
            let q = queue.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("inference-{i}"))
                    .spawn(move || worker(&q))?,
            );
        }
        Ok(Self {
            queue,
            threads: Mutex::new(threads),
        })
    }

    /// Queues a job, or refuses at once.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        let mut st = self.queue.lock();
        if st.closed {
            return Err(SubmitError::Closed);
        }
        if st.jobs.len() >= self.queue.config.max_queue {
            return Err(SubmitError::Full);
        }
        st.jobs.push_back(job);
        self.queue.depth_changed(&st);
        drop(st);
        self.queue.ready.notify_one();
        Ok(())
    }

    /// An idle session for the calling task to run one request on, when the model's runs are
    /// short (see the module's documentation), batching is off, nothing is queued (an inline run
    /// never overtakes a queued request) and the queue is open; otherwise `None`, and the
    /// request goes through [`Scheduler::submit`].
    pub fn try_inline(&self) -> Option<Inline<'_>> {
        if !self.queue.short_runs() {
            return None;
        }
        let mut st = self.queue.lock();
        if st.closed || !st.jobs.is_empty() {
            return None;
        }
        let backend = st.idle.pop()?;
        Some(Inline {
            queue: &self.queue,
            backend: Some(backend),
        })
    }

    /// Refuses new jobs; the threads finish the queued ones and stop.
    pub fn close(&self) {
        self.queue.lock().closed = true;
        self.queue.ready.notify_all();
    }

    /// Closes the queue and waits for every inference thread to finish (blocking).
    pub fn join(&self) {
        self.close();
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for t in threads {
            if t.join().is_err() {
                tracing::error!("an inference thread panicked");
            }
        }
        // the sessions go with the threads (one still running inline comes back afterwards and
        // goes with the scheduler)
        let sessions = std::mem::take(&mut self.queue.lock().idle);
        drop(sessions);
    }
}

/// An idle session taken by a request's task ([`Scheduler::try_inline`]); given back when run
/// or dropped.
pub struct Inline<'a> {
    queue: &'a Queue,
    backend: Option<Box<dyn Backend>>,
}

impl Inline<'_> {
    /// Runs one request on the calling thread, with the same metrics as a queued run (its queue
    /// time is the time since it was accepted: reading and decoding the body).
    pub fn run(mut self, inputs: Vec<Tensor>, accepted: Instant) -> JobResult {
        let Some(backend) = self.backend.as_deref_mut() else {
            return Err(JobError::Panic);
        };
        let metrics = &self.queue.metrics;
        let started = Instant::now();
        metrics
            .queue_duration
            .observe(started.duration_since(accepted).as_secs_f64());
        metrics.batch_size.observe(1.0);
        let result = guarded(backend, inputs);
        let took = started.elapsed();
        metrics.compute_duration.observe(took.as_secs_f64());
        self.queue.ran(took);
        result
    }
}

impl Drop for Inline<'_> {
    fn drop(&mut self) {
        if let Some(backend) = self.backend.take() {
            self.queue.give_back(backend);
        }
    }
}

fn worker(queue: &Queue) {
    let metrics = queue.metrics.clone();
    while let Some((batch, mut backend)) = queue.next_batch() {
        let now = Instant::now();
        let (live, expired): (Vec<Job>, Vec<Job>) =
            batch.into_iter().partition(|j| j.deadline > now);
        for job in expired {
            metrics
                .queue_duration
                .observe(now.duration_since(job.accepted).as_secs_f64());
            let _ = job.reply.send(Err(JobError::Timeout));
        }
        if !live.is_empty() {
            for job in &live {
                metrics
                    .queue_duration
                    .observe(now.duration_since(job.accepted).as_secs_f64());
            }
            metrics.batch_size.observe(live.len() as f64);
            run(queue, &mut *backend, live, &metrics);
        }
        queue.lock().idle.push(backend);
    }
}

fn run(queue: &Queue, backend: &mut dyn Backend, mut jobs: Vec<Job>, metrics: &Metrics) {
    let started = Instant::now();
    if jobs.len() == 1 {
        let job = jobs.remove(0);
        let result = guarded(backend, job.inputs);
        let took = started.elapsed();
        metrics.compute_duration.observe(took.as_secs_f64());
        queue.ran(took);
        let _ = job.reply.send(result);
        return;
    }
    let sizes: Vec<usize> = jobs
        .iter()
        .map(|j| {
            j.inputs
                .first()
                .map_or(0, |t| usize::try_from(t.shape[0]).unwrap_or(0))
        })
        .collect();
    let mut replies = Vec::with_capacity(jobs.len());
    let mut merged: Vec<Tensor> = Vec::new();
    for job in jobs {
        if merged.is_empty() {
            merged = job.inputs;
        } else {
            for (m, t) in merged.iter_mut().zip(job.inputs) {
                m.shape[0] += t.shape[0];
                m.data.extend_from(&t.data);
            }
        }
        replies.push(job.reply);
    }
    let result = guarded(backend, merged);
    let took = started.elapsed();
    metrics.compute_duration.observe(took.as_secs_f64());
    queue.ran(took);
    match result.and_then(|outputs| split(outputs, &sizes)) {
        Ok(parts) => {
            for (reply, part) in replies.into_iter().zip(parts) {
                let _ = reply.send(Ok(part));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(JobError::Backend(BackendError::Run(msg.clone()))));
            }
        }
    }
}

fn guarded(backend: &mut dyn Backend, inputs: Vec<Tensor>) -> JobResult {
    match std::panic::catch_unwind(AssertUnwindSafe(|| backend.infer(inputs))) {
        Ok(r) => r.map_err(JobError::from),
        Err(_) => Err(JobError::Panic),
    }
}

/// Splits batched outputs along dimension 0 into one set per request.
fn split(outputs: Vec<Tensor>, sizes: &[usize]) -> Result<Vec<Vec<Tensor>>, JobError> {
    let total: usize = sizes.iter().sum();
    let mut parts: Vec<Vec<Tensor>> = sizes
        .iter()
        .map(|_| Vec::with_capacity(outputs.len()))
        .collect();
    for out in outputs {
        let rows = out.shape.first().and_then(|&d| usize::try_from(d).ok());
        if rows != Some(total) {
            return Err(JobError::Backend(BackendError::Output {
                name: out.name,
                reason: format!(
                    "batched output has shape {:?}, expected {total} rows",
                    out.shape
                ),
            }));
        }
        let row = out.data.len().checked_div(total).unwrap_or(0);
        let mut start = 0;
        for (part, &n) in parts.iter_mut().zip(sizes) {
            let data = out
                .data
                .slice(start * row..(start + n) * row)
                .ok_or_else(|| {
                    JobError::Backend(BackendError::Output {
                        name: out.name.clone(),
                        reason: "batched output is shorter than its shape".into(),
                    })
                })?;
            let mut shape = out.shape.clone();
            shape[0] = i64::try_from(n).unwrap_or(i64::MAX);
            part.push(Tensor {
                name: out.name.clone(),
                shape,
                data,
            });
            start += n;
        }
    }
    Ok(parts)
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
