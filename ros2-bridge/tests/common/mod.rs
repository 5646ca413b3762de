//! Harness for the DDS tests: refuses to run outside a loopback-only network namespace, finds the
//! test venv's Python, runs the Cyclone peer and ros2-bridge as child processes speaking JSON
//! lines, and waits for conditions (never fixed sleeps).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

pub use serde_json::{Value, json};

/// Generous: discovery takes about 0.3 s, a loaded CI machine much longer.
pub const MATCH_TIMEOUT: Duration = Duration::from_secs(20);

/// Panics unless this process's network namespace has only `lo`: DDS probes multicast and picks
/// real interfaces, so these tests must never run outside one.
pub fn require_netns() {
    // /proc/net/dev is per network namespace (/sys/class/net is not, unless sysfs is remounted).
    let dev = std::fs::read_to_string("/proc/net/dev").expect("/proc/net/dev");
    let ifaces: Vec<String> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect();
    assert!(
        ifaces == ["lo"],
        "refusing to start DDS participants: this network namespace has {ifaces:?}, not only lo. \
         Run inside `unshare -rn sh -c 'ip link set lo up; ip link set lo multicast on; ...'` (make test does)."
    );
}

/// The venv interpreter: `ROBOFLEET_PYTHON`, default `~/.cache/robofleet/venv/bin/python`.
pub fn python() -> PathBuf {
    let p = std::env::var_os("ROBOFLEET_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").expect("HOME"))
                .join(".cache/robofleet/venv/bin/python")
        });
    assert!(
        p.exists(),
        "test venv python {} is missing: create it with `python3 -m venv ~/.cache/robofleet/venv && \
         ~/.cache/robofleet/venv/bin/pip install -r tests/requirements.txt` (or `make venv`), or set ROBOFLEET_PYTHON",
        p.display()
    );
    p
}

/// A ROS domain for one test: distinct per test and per test process, so parallel tests never
/// see each other's participants.
pub fn domain() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    (1 + (std::process::id() * 17 + n * 7) % 200) as u16
}

pub fn peer_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/cyclone_peer.py")
}

/// A child process that prints JSON lines.
pub struct Proc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    pub seen: Vec<Value>,
}

impl Proc {
    fn start(name: &str, mut cmd: Command, json_on: &str) -> Proc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let (tx, rx) = channel();
        let pipe: Box<dyn Read + Send> = if json_on == "stdout" {
            Box::new(child.stdout.take().expect("stdout"))
        } else {
            Box::new(child.stderr.take().expect("stderr"))
        };
        let other: Box<dyn Read + Send> = if json_on == "stdout" {
            Box::new(child.stderr.take().expect("stderr"))
        } else {
            Box::new(child.stdout.take().expect("stdout"))
        };
        let n = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("[{n}] {line}");
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        let n = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(other).lines().map_while(Result::ok) {
                eprintln!("[{n}] {line}");
            }
        });
        let stdin = child.stdin.take();
        Proc {
            name: name.into(),
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line matching `pred`, keeping everything seen in `self.seen`.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: timed out after {timeout:?} waiting for {what}",
                    self.name
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "{}: exited while waiting for {what}; status {:?}",
                        self.name,
                        self.child.try_wait()
                    )
                }
            }
        }
    }

    /// Everything that arrived so far, without waiting.
    pub fn drain(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(v) = self.lines.try_recv() {
            self.seen.push(v.clone());
            out.push(v);
        }
        out
    }

    pub fn send(&mut self, v: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{v}")
            .and_then(|()| stdin.flush())
            .expect("write to child");
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Still running (not exited).
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(ok.success());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?} of SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin = None;
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The Cyclone peer: `args` after the script name; returns once it is up.
pub fn cyclone(name: &str, domain: u16, args: &[&str]) -> Proc {
    let mut p = cyclone_nowait(name, domain, args);
    p.wait_for("ready", MATCH_TIMEOUT, |v| v["ev"] == "ready");
    p
}

/// The Cyclone peer, without waiting for it to start.
pub fn cyclone_nowait(name: &str, domain: u16, args: &[&str]) -> Proc {
    let mut cmd = Command::new(python());
    cmd.arg(peer_script())
        .args(args)
        .env("ROS_DOMAIN_ID", domain.to_string());
    Proc::start(name, cmd, "stdout")
}

/// Another peer script of tests/peers (JSON lines on stdout), started like the Cyclone peer;
/// returns once it is up.
pub fn peer(name: &str, script: &str, domain: u16, args: &[&str]) -> Proc {
    let mut cmd = Command::new(python());
    cmd.arg(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/peers")
            .join(script),
    )
    .args(args)
    .env("ROS_DOMAIN_ID", domain.to_string());
    let mut p = Proc::start(name, cmd, "stdout");
    p.wait_for("ready", MATCH_TIMEOUT, |v| v["ev"] == "ready");
    p
}

/// Any program whose JSON lines arrive on `json_on` (`stdout` or `stderr`).
pub fn process(name: &str, cmd: Command, json_on: &str) -> Proc {
    Proc::start(name, cmd, json_on)
}

/// A Cyclone reader of the stop lock.
pub fn lock_reader(name: &str, domain: u16, topic: &str, transient_local: bool) -> Proc {
    let dur = if transient_local {
        "transient_local"
    } else {
        "volatile"
    };
    cyclone(
        name,
        domain,
        &[
            "read",
            "--topic",
            topic,
            "--type",
            "bool",
            "--durability",
            dur,
        ],
    )
}

/// ros2-bridge with JSON logs on stderr.
pub fn bridge(name: &str, domain: u16, args: &[&str]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ros2-bridge"));
    cmd.args(args)
        .env("ROS_DOMAIN_ID", domain.to_string())
        .env("ROS_LOCALHOST_ONLY", "1")
        .env("ROBOFLEET_LOG_FORMAT", "json")
        .env("RUST_LOG", "info,rustdds=error,ros2_client=error");
    Proc::start(name, cmd, "stderr")
}

/// The metrics address a bridge logged at start-up.
pub fn metrics_addr(p: &mut Proc) -> String {
    let v = p.wait_for("metrics address", MATCH_TIMEOUT, |v| {
        v["fields"]["message"] == "metrics listening"
    });
    v["fields"]["addr"].as_str().expect("addr").to_string()
}

/// GET http://addr/path, body as text.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read");
    let status = body
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = body
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of one series (exact name with labels as printed) or 0 if absent.
pub fn metric(addr: &str, series: &str) -> f64 {
    series_value(&http_get(addr, "/metrics").1, series)
}

/// The value of one series in a `/metrics` body already fetched (several series from one
/// scrape are consistent with each other), or 0 if absent.
pub fn series_value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls `metric` until `pred` holds.
pub fn wait_metric(addr: &str, series: &str, timeout: Duration, pred: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + timeout;
    loop {
        let v = metric(addr, series);
        if pred(v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{series} = {v} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lock samples (`data`) seen by a reader so far.
pub fn lock_values(p: &Proc) -> Vec<bool> {
    p.seen
        .iter()
        .filter(|v| v["ev"] == "sample")
        .map(|v| v["data"].as_bool().expect("bool"))
        .collect()
}

/// A scan command for the peer: points as (degrees, metres), everything else +Inf.
pub fn scan(points: &[(i32, f64)]) -> Value {
    json!({ "points": points.iter().map(|(d, r)| json!([d, r])).collect::<Vec<_>>() })
}

/// Sends `cmd` at 40 Hz until `until` returns true (checked between scans) or `timeout`.
pub fn pace_until(
    publisher: &mut Proc,
    cmd: &Value,
    timeout: Duration,
    mut until: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    let mut next = Instant::now();
    loop {
        publisher.send(cmd);
        publisher.drain();
        if until() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "condition not reached within {timeout:?} of 40 Hz scans"
        );
        next += Duration::from_millis(25);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}
