//! Test harness: starts the real `inference-sidecar serve` binary on 127.0.0.1 with ephemeral
//! ports and the generated fixture models, and talks HTTP to it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test harness: a failure is a test failure

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use sha2::{Digest, Sha256};

/// The ONNX Runtime library, from ORT_DYLIB_PATH; a clear failure when it is missing.
pub fn ort_library() -> PathBuf {
    match std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        Some(p) if Path::new(&p).is_file() => PathBuf::from(p),
        other => panic!(
            "these tests need ONNX Runtime: ORT_DYLIB_PATH is {other:?}. Run `make venv` and \
             export ORT_DYLIB_PATH=$HOME/.cache/robofleet/venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.32.0 \
             (or run `make test`, which sets it)"
        ),
    }
}

/// The Python of the test venv (tritonclient, numpy), from ROBOFLEET_PYTHON.
pub fn python() -> PathBuf {
    match std::env::var_os("ROBOFLEET_PYTHON").filter(|v| !v.is_empty()) {
        Some(p) if Path::new(&p).is_file() => PathBuf::from(p),
        other => panic!(
            "this test needs the test venv's Python: ROBOFLEET_PYTHON is {other:?}. Run `make venv` and \
             export ROBOFLEET_PYTHON=$HOME/.cache/robofleet/venv/bin/python (or run `make test`)"
        ),
    }
}

/// A committed fixture model.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/models")
        .join(name)
}

/// `file://PATH@sha256` for a file.
pub fn model_ref(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    format!(
        "file://{}@{}",
        path.display(),
        hex::encode(Sha256::digest(bytes))
    )
}

/// A running server process.
pub struct Server {
    child: Child,
    pub api: String,
    pub admin: String,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl Server {
    /// Starts `serve` with `args` (plus listeners, cache and address file in a temp dir).
    pub fn start(args: &[String]) -> Server {
        let lib = ort_library();
        let dir = tempfile::tempdir().unwrap();
        let addr_file = dir.path().join("addr.json");
        let log = dir.path().join("server.log");
        let child = Command::new(env!("CARGO_BIN_EXE_inference-sidecar"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--model-cache")
            .arg(dir.path().join("cache"))
            .arg("--address-file")
            .arg(&addr_file)
            .args(args)
            .env("ORT_DYLIB_PATH", lib)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Server {
            child,
            api: String::new(),
            admin: String::new(),
            dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                server.api = format!("http://{}", v["api"].as_str().unwrap());
                server.admin = format!("http://{}", v["admin"].as_str().unwrap());
                return server;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!(
                    "server exited with {status} before listening:\n{}",
                    server.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "server did not listen:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts a server for one model file with extra args.
    pub fn with_model(model: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["--model".to_owned(), model_ref(model)];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Server::start(&args)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until /v2/health/ready answers 200 (or the process exits: panic with its log).
    pub async fn wait_ready(&mut self, http: &Http) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(&format!("{}/v2/health/ready", self.admin)).await
                && r.status == 200
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("server exited with {status} before ready:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "server not ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn metrics(&self, http: &Http) -> String {
        let r = http.get(&format!("{}/metrics", self.admin)).await.unwrap();
        assert_eq!(r.status, 200);
        String::from_utf8(r.body.to_vec()).unwrap()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        // the shell's builtin `kill`: no procps needed, no unsafe code in the tests
        let ok = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.pid())])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Resident memory of the server in bytes (Linux).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kb * 1024
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// A small HTTP/1.1 client.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    pub fn new() -> Self {
        Http {
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
        }
    }

    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Resp, String> {
        let mut req = hyper::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, url: &str) -> Result<Resp, String> {
        self.request(Method::GET, url, &[], Vec::new()).await
    }

    pub async fn post_json(&self, url: &str, body: &serde_json::Value) -> Resp {
        self.request(
            Method::POST,
            url,
            &[("content-type", "application/json".into())],
            body.to_string().into_bytes(),
        )
        .await
        .unwrap()
    }
}

/// The value of one series in a Prometheus text exposition (`name{labels}` exactly), or 0.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map_or(0.0, |v| v.trim().parse().unwrap())
}
