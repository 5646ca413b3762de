//! Probes: HTTP GET and TCP connect on a thread of their own (which enters the pod's network
//! namespace when it has one, so the runner's other threads stay where they are), and exec
//! commands in the container's environment, each bounded by the probe's timeout.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Command;

use super::spec::{Launch, ProbeAction};

/// Runs one probe; true on success.
pub async fn check(
    action: &ProbeAction,
    timeout: Duration,
    launch: &Launch,
    netns: Option<&Path>,
) -> bool {
    match action {
        ProbeAction::Exec { argv } => exec(argv, timeout, launch, netns).await,
        ProbeAction::Http { host, port, path } => {
            let (host, port, path) = (host.clone(), *port, path.clone());
            on_thread(netns, timeout, move || {
                http_get(&host, port, &path, timeout)
            })
            .await
        }
        ProbeAction::Tcp { host, port } => {
            let (host, port) = (host.clone(), *port);
            on_thread(netns, timeout, move || {
                connect(&host, port, timeout).is_some()
            })
            .await
        }
    }
}

/// Runs `f` on a new thread that first enters `netns`; false if it cannot, or on timeout.
async fn on_thread(
    netns: Option<&Path>,
    timeout: Duration,
    f: impl FnOnce() -> bool + Send + 'static,
) -> bool {
    let netns: Option<PathBuf> = netns.map(Path::to_path_buf);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("probe".into())
        .spawn(move || {
            if let Some(ns) = netns {
                let entered = std::fs::File::open(&ns)
                    .ok()
                    .is_some_and(|f| setns(&f, CloneFlags::CLONE_NEWNET).is_ok());
                if !entered {
                    let _ = tx.send(false);
                    return;
                }
            }
            let _ = tx.send(f());
        });
    if spawned.is_err() {
        return false;
    }
    tokio::time::timeout(timeout + Duration::from_millis(500), rx)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(false)
}

fn connect(host: &str, port: u16, timeout: Duration) -> Option<TcpStream> {
    let addr = (host, port).to_socket_addrs().ok()?.next()?;
    let s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    Some(s)
}

fn http_get(host: &str, port: u16, path: &str, timeout: Duration) -> bool {
    let Some(mut s) = connect(host, port, timeout) else {
        return false;
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: robofleet-pod-runner\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    http_ok(&head[..n])
}

/// True when a response starts with a status line whose code is in 200..400 (the kubelet's rule).
pub fn http_ok(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let mut parts = text.split_whitespace();
    parts.next().is_some_and(|v| v.starts_with("HTTP/"))
        && parts
            .next()
            .and_then(|c| c.parse::<u16>().ok())
            .is_some_and(|c| (200..400).contains(&c))
}

async fn exec(argv: &[String], timeout: Duration, launch: &Launch, netns: Option<&Path>) -> bool {
    let Some((prog, args)) = argv.split_first() else {
        return false;
    };
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).arg("--").arg(prog);
            c
        }
        None => Command::new(prog),
    };
    cmd.args(args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&launch.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let Ok(mut child) = cmd.spawn() else {
        return false;
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status.success(),
        _ => {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = child.wait().await;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_success_is_2xx_and_3xx() {
        assert!(http_ok(b"HTTP/1.1 200 OK\r\n"));
        assert!(http_ok(b"HTTP/1.0 302 Found"));
        assert!(!http_ok(b"HTTP/1.1 503 Service Unavailable"));
        assert!(!http_ok(b"HTTP/1.1 404"));
        assert!(!http_ok(b""));
        assert!(!http_ok(b"SSH-2.0-x"));
    }

    #[tokio::test]
    async fn tcp_and_http_probes_against_a_local_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                if let Ok((mut s, _)) = listener.accept() {
                    let mut buf = [0u8; 512];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n");
                }
            }
        });
        let launch = Launch {
            name: "c".into(),
            image: "i".into(),
            program: "/bin/true".into(),
            args: vec![],
            env: vec![],
            cwd: std::env::temp_dir(),
            dir: std::env::temp_dir(),
            termination_message: std::env::temp_dir().join("x"),
            message_from_logs: false,
            readiness: None,
            liveness: None,
        };
        let t = Duration::from_secs(2);
        let tcp = ProbeAction::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        assert!(check(&tcp, t, &launch, None).await);
        let http = ProbeAction::Http {
            host: "127.0.0.1".into(),
            port,
            path: "/ready".into(),
        };
        assert!(check(&http, t, &launch, None).await);
        let _ = server.join();
        let refused = ProbeAction::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        assert!(!check(&refused, t, &launch, None).await);
        let exec_ok = ProbeAction::Exec {
            argv: vec!["/bin/sh".into(), "-c".into(), "exit 0".into()],
        };
        assert!(check(&exec_ok, t, &launch, None).await);
        let exec_fail = ProbeAction::Exec {
            argv: vec!["/bin/sh".into(), "-c".into(), "exit 1".into()],
        };
        assert!(!check(&exec_fail, t, &launch, None).await);
    }
}
