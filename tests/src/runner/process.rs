//! Processes: start a container's binary in its own process group (inside the pod's network
//! namespace when it has one), stop a group (SIGTERM, then SIGKILL after the grace period), and
//! record every child's PID with its start time under the state directory, so a runner that was
//! killed outright can stop what it left behind when it starts again.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::error::RunnerError;
use super::spec::Launch;

/// A started process: the child handle and its PID (also its process group id).
pub struct Proc {
    /// the child
    pub child: Child,
    /// its PID and process group
    pub pid: i32,
    record: Option<PathBuf>,
}

/// Where a pod's network namespace is, for `nsenter` and `setns`.
pub fn netns_path(sandbox_pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{sandbox_pid}/ns/net"))
}

fn spawn(mut cmd: Command, program: &str, log: Option<&Path>) -> Result<Proc, RunnerError> {
    let (out, err) = match log {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(RunnerError::io("opening log", path))?;
            let f2 = f
                .try_clone()
                .map_err(RunnerError::io("opening log", path))?;
            (Stdio::from(f), Stdio::from(f2))
        }
        None => (Stdio::null(), Stdio::null()),
    };
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(false);
    let child = cmd.spawn().map_err(|source| RunnerError::Spawn {
        program: program.to_owned(),
        source,
    })?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| RunnerError::Spawn {
            program: program.to_owned(),
            source: std::io::Error::other("no pid"),
        })?;
    Ok(Proc {
        child,
        pid,
        record: None,
    })
}

/// Starts a container's process, appending its output to `log`.
pub fn start_container(
    launch: &Launch,
    netns: Option<&Path>,
    log: &Path,
) -> Result<Proc, RunnerError> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display()))
                .arg("--")
                .arg(&launch.program);
            c
        }
        None => Command::new(&launch.program),
    };
    cmd.args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&launch.cwd);
    spawn(cmd, &launch.program.to_string_lossy(), Some(log))
}

/// Starts a pod's network namespace holder (`unshare --net sleep infinity`) and brings its
/// loopback up with multicast (for DDS).
pub async fn start_sandbox(log: &Path) -> Result<Proc, RunnerError> {
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--", "sleep", "infinity"]);
    let proc = spawn(cmd, "unshare --net", Some(log))?;
    let ns = netns_path(proc.pid);
    // The child enters its new namespace only once `unshare` has run: until then its
    // /proc/<pid>/ns/net is still ours, and whatever entered it would land in the robots' network.
    let ours = std::fs::read_link("/proc/self/ns/net")
        .map_err(RunnerError::io("reading", "/proc/self/ns/net"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::read_link(&ns) {
            Ok(link) if link != ours => break,
            _ if tokio::time::Instant::now() >= deadline => {
                let _ = killpg(Pid::from_raw(proc.pid), Signal::SIGKILL);
                return Err(RunnerError::Netns(
                    "the sandbox never entered a namespace of its own".into(),
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    for args in [["up"], ["multicast"]] {
        let mut ip = Command::new("nsenter");
        ip.arg(format!("--net={}", ns.display()))
            .args(["--", "ip", "link", "set", "lo"])
            .args(args);
        if args == ["multicast"] {
            ip.arg("on");
        }
        let status = ip.status().await.map_err(|source| RunnerError::Spawn {
            program: "nsenter ip".into(),
            source,
        })?;
        if !status.success() {
            let _ = killpg(Pid::from_raw(proc.pid), Signal::SIGKILL);
            return Err(RunnerError::Netns(format!(
                "ip link set lo {args:?}: {status}"
            )));
        }
    }
    Ok(proc)
}

impl Proc {
    /// Records the PID (with its start time) as `<dir>/<key>.pid`.
    pub fn record(&mut self, dir: &Path, key: &str) -> Result<(), RunnerError> {
        std::fs::create_dir_all(dir).map_err(RunnerError::io("creating", dir))?;
        let path = dir.join(format!("{key}.pid"));
        let start = start_time(self.pid).unwrap_or_default();
        std::fs::write(&path, format!("{} {start}\n", self.pid))
            .map_err(RunnerError::io("writing", &path))?;
        self.record = Some(path);
        Ok(())
    }

    /// Stops the whole process group: SIGTERM, then SIGKILL after `grace`; reaps the process and
    /// removes its PID record. Returns how it ended.
    pub async fn stop(mut self, grace: Duration) -> Option<ExitStatus> {
        signal_group(self.pid, Signal::SIGTERM);
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(s) => s.ok(),
            Err(_) => {
                signal_group(self.pid, Signal::SIGKILL);
                self.child.wait().await.ok()
            }
        };
        self.finish();
        status
    }

    /// After the process exited by itself: kill what is left of its group (as a container's
    /// processes die with it) and remove the PID record.
    pub fn finish(&mut self) {
        signal_group(self.pid, Signal::SIGKILL);
        if let Some(path) = self.record.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn signal_group(pid: i32, sig: Signal) {
    let _ = killpg(Pid::from_raw(pid), sig);
}

/// Exit code as the kubelet reports it: the code, or 128 + the signal number.
pub fn exit_code(status: &ExitStatus) -> (i32, Option<i32>) {
    match (status.code(), status.signal()) {
        (Some(c), _) => (c, None),
        (None, Some(s)) => (128 + s, Some(s)),
        (None, None) => (-1, None),
    }
}

/// Start time of a process (clock ticks since boot, field 22 of `/proc/<pid>/stat`).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = stat.rsplit_once(')')?.1;
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// Parses a PID record (`"<pid> <start time>"`).
pub fn parse_record(text: &str) -> Option<(i32, u64)> {
    let mut it = text.split_whitespace();
    let pid = it.next()?.parse().ok()?;
    let start = it.next()?.parse().ok()?;
    Some((pid, start))
}

/// PIDs recorded under `dir` whose record name starts with `prefix` (e.g. a pod UID), with the
/// record's name. For tests that check processes are gone.
pub fn recorded(dir: &Path, prefix: &str) -> Vec<(String, i32)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let key = name.strip_suffix(".pid")?.to_owned();
            if !key.starts_with(prefix) {
                return None;
            }
            let (pid, _) = parse_record(&std::fs::read_to_string(e.path()).ok()?)?;
            Some((key, pid))
        })
        .collect()
}

/// Kills the process groups recorded under `dir` by an earlier runner that did not stop them
/// (only where the PID still names the same process: same start time), and removes the records.
pub fn reap_leftovers(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut killed = 0;
    for e in entries.flatten() {
        let Some((pid, start)) = std::fs::read_to_string(e.path())
            .ok()
            .as_deref()
            .and_then(parse_record)
        else {
            continue;
        };
        if start != 0 && start_time(pid) == Some(start) {
            signal_group(pid, Signal::SIGKILL);
            killed += 1;
        }
        let _ = std::fs::remove_file(e.path());
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_and_own_start_time_is_read() {
        assert_eq!(parse_record("123 456\n"), Some((123, 456)));
        assert_eq!(parse_record("x"), None);
        let me = i32::try_from(std::process::id()).expect("pid");
        assert!(start_time(me).is_some_and(|t| t > 0));
    }

    #[tokio::test]
    async fn leftovers_of_a_killed_runner_are_reaped_by_record_only_if_the_pid_is_the_same() {
        let dir = std::env::temp_dir().join(format!("pod-runner-reap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut sleeper = Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .expect("sleep starts");
        let pid = sleeper
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .expect("pid");
        let start = start_time(pid).expect("start time");
        std::fs::write(dir.join("a.c.pid"), format!("{pid} {start}\n")).expect("record");
        // a record whose PID now names another process (different start time) is only removed
        let me = i32::try_from(std::process::id()).expect("pid");
        std::fs::write(dir.join("b.c.pid"), format!("{me} 1\n")).expect("record");
        assert_eq!(reap_leftovers(&dir), 1);
        let status = sleeper.wait().await.expect("reaped");
        assert_eq!(exit_code(&status), (137, Some(9)));
        assert!(recorded(&dir, "").is_empty(), "records removed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn stop_kills_the_whole_group_even_when_sigterm_is_ignored() {
        let dir = std::env::temp_dir().join(format!("pod-runner-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let launch = Launch {
            name: "c".into(),
            image: "busybox".into(),
            program: "/bin/sh".into(),
            // a child that ignores SIGTERM, and a shell that waits for it
            args: vec![
                "-c".into(),
                "trap '' TERM; sleep 60 & touch trapped; wait".into(),
            ],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            cwd: dir.clone(),
            dir: dir.clone(),
            termination_message: dir.join("t"),
            message_from_logs: false,
            readiness: None,
            liveness: None,
        };
        let mut p = start_container(&launch, None, &dir.join("log")).expect("starts");
        p.record(&dir, "uid.c").expect("records");
        let pid = p.pid;
        let trapped = async {
            while !dir.join("trapped").exists() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), trapped)
            .await
            .expect("shell set its trap");
        assert_eq!(recorded(&dir, "uid"), vec![("uid.c".to_owned(), pid)]);
        let status = p.stop(Duration::from_millis(300)).await.expect("reaped");
        assert_eq!(exit_code(&status), (137, Some(9)));
        assert!(recorded(&dir, "uid").is_empty());
        // nothing of the group is left (the sleep was in it; orphans are reaped by init)
        let gone = async {
            while killpg(Pid::from_raw(pid), None).is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), gone)
            .await
            .expect("process group gone");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
