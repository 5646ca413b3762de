//! The model store: fetches `URI@sha256` models (`file://`, `http(s)://`) into a node-local cache
//! directory as `<sha256>.onnx`, verifies the digest before anything uses the file, and evicts old
//! entries beyond `keep` files or `max_bytes` (never the ones in use). A download is written to a
//! temporary file, hashed on the way, and renamed into place only when the digest matches, so the
//! cache never holds a partial or wrong file under a final name.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Errors while parsing a model reference or fetching a model.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `URI@sha256` is malformed.
    #[error("model reference {0:?} is not URI@sha256 (64 hex digits)")]
    BadReference(String),
    /// A scheme this build cannot fetch.
    #[error("model URI scheme {0:?} is not supported (file://, http://, https://)")]
    UnsupportedScheme(String),
    /// Reading, writing or renaming a file failed.
    #[error("{what} {path:?}: {source}")]
    Io {
        /// what was being done
        what: &'static str,
        /// the file
        path: PathBuf,
        /// the error
        source: std::io::Error,
    },
    /// The HTTP download failed.
    #[error("download of {uri} failed: {message}")]
    Download {
        /// the URI
        uri: String,
        /// what failed
        message: String,
    },
    /// The model is larger than the cache may hold.
    #[error("model {uri} is larger than the cache limit of {limit} bytes")]
    TooLarge {
        /// the URI
        uri: String,
        /// the limit
        limit: u64,
    },
    /// The digest does not match.
    #[error("model {uri} has sha256 {actual}, expected {expected}")]
    Digest {
        /// the URI
        uri: String,
        /// configured
        expected: String,
        /// computed
        actual: String,
    },
}

impl StoreError {
    /// A short stable name for logs and metric labels (`robofleet_model_load_failures_total{reason}`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadReference(_) | Self::UnsupportedScheme(_) => "config",
            Self::Io { .. } | Self::Download { .. } | Self::TooLarge { .. } => "download",
            Self::Digest { .. } => "verify",
        }
    }
}

/// A model source and the digest it must have: `URI@sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// where to fetch it
    pub uri: String,
    /// lowercase hex sha256
    pub sha256: String,
}

impl FromStr for ModelRef {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || StoreError::BadReference(redact_uri(s).chars().take(200).collect());
        let (uri, digest) = s.rsplit_once('@').ok_or_else(bad)?;
        let digest = digest.strip_prefix("sha256:").unwrap_or(digest);
        if uri.is_empty() || digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Self {
            uri: uri.to_owned(),
            sha256: digest.to_ascii_lowercase(),
        })
    }
}

impl ModelRef {
    /// The URI without credentials or query string, for logs and errors.
    pub fn redacted_uri(&self) -> String {
        redact_uri(&self.uri)
    }
}

/// Hides `user:password@` and the query string (signed URLs) of a URI.
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_owned(),
    };
    let path = match path.split_once('?') {
        Some((p, _)) => format!("{p}?***"),
        None => path.to_owned(),
    };
    format!("{scheme}://{authority}{path}")
}

/// Shown with the URI redacted: this is what logs print.
impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.redacted_uri(), self.sha256)
    }
}

/// A file in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// file name (`<sha256>.onnx`)
    pub name: String,
    /// size in bytes
    pub size: u64,
    /// last use
    pub used: SystemTime,
}

/// Which cache entries to delete: the oldest first, until at most `keep` remain and they fit in
/// `max_bytes`; entries in `protected` are never deleted. Pure.
pub fn plan_eviction(
    mut entries: Vec<CacheEntry>,
    protected: &[String],
    keep: usize,
    max_bytes: u64,
) -> Vec<String> {
    entries.sort_by(|a, b| b.used.cmp(&a.used).then_with(|| a.name.cmp(&b.name)));
    let mut count = entries.len();
    let mut bytes: u64 = entries.iter().map(|e| e.size).sum();
    let mut evict = Vec::new();
    for e in entries.iter().rev() {
        if count <= keep && bytes <= max_bytes {
            break;
        }
        if protected.contains(&e.name) {
            continue;
        }
        evict.push(e.name.clone());
        count -= 1;
        bytes = bytes.saturating_sub(e.size);
    }
    evict
}

/// The node-local model cache.
#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
    max_bytes: u64,
    keep: usize,
    download_timeout: Duration,
    attempts: u32,
    retry_base: Duration,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io { what, path, source }
}

impl ModelStore {
    /// A store in `dir` holding at most `keep` models and `max_bytes`.
    pub fn new(dir: PathBuf, max_bytes: u64, keep: usize, download_timeout: Duration) -> Self {
        Self {
            dir,
            max_bytes,
            keep: keep.max(1),
            download_timeout,
            attempts: 3,
            retry_base: Duration::from_secs(1),
        }
    }

    /// HTTP(S) downloads that fail (connection, status, transfer) are tried `attempts` times in
    /// all, waiting `base`, 2×`base`, … between tries, all within the download timeout.
    #[must_use]
    pub fn with_retries(mut self, attempts: u32, base: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.retry_base = base;
        self
    }

    /// The cache file a model lives in once fetched.
    pub fn path_of(&self, model: &ModelRef) -> PathBuf {
        self.dir.join(format!("{}.onnx", model.sha256))
    }

    /// Returns the verified cache file for `model`, fetching it if the cache lacks it.
    pub async fn fetch(&self, model: &ModelRef) -> Result<PathBuf, StoreError> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(io("creating the cache directory", &self.dir))?;
        let path = self.path_of(model);
        if path.is_file() {
            match hash_file(&path).await {
                Ok(actual) if actual == model.sha256 => {
                    touch(&path);
                    return Ok(path);
                }
                _ => {
                    tracing::warn!(path = %path.display(), "cached model does not match its digest; fetching again");
                    let _ = tokio::fs::remove_file(&path).await;
                }
            }
        }
        let tmp = self
            .dir
            .join(format!(".{}.{}.partial", model.sha256, std::process::id()));
        let retried = async {
            let mut attempt = 1;
            loop {
                match self.download(model, &tmp).await {
                    Err(e @ StoreError::Download { .. })
                        if attempt < self.attempts && !model.uri.starts_with("file://") =>
                    {
                        let wait = self.retry_base.saturating_mul(1 << (attempt - 1).min(16));
                        tracing::warn!(model = %model, attempt, error = %e, ?wait, "model download failed; retrying");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    other => return other,
                }
            }
        };
        let result = tokio::time::timeout(self.download_timeout, retried)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Download {
                    uri: model.redacted_uri(),
                    message: format!("timed out after {:?}", self.download_timeout),
                })
            });
        let actual = match result {
            Ok(actual) => actual,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        if actual != model.sha256 {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(StoreError::Digest {
                uri: model.redacted_uri(),
                expected: model.sha256.clone(),
                actual,
            });
        }
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(io("moving the download into the cache", &path))?;
        Ok(path)
    }

    /// Deletes old cache entries; `in_use` are the models to keep whatever their age.
    pub fn evict(&self, in_use: &[&ModelRef]) -> Result<Vec<String>, StoreError> {
        let read = std::fs::read_dir(&self.dir).map_err(io("listing the cache", &self.dir))?;
        let mut entries = Vec::new();
        for e in read.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".onnx") {
                continue;
            }
            if let Ok(meta) = e.metadata() {
                entries.push(CacheEntry {
                    name,
                    size: meta.len(),
                    used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
        let protected: Vec<String> = in_use
            .iter()
            .map(|m| format!("{}.onnx", m.sha256))
            .collect();
        let evict = plan_eviction(entries, &protected, self.keep, self.max_bytes);
        for name in &evict {
            let p = self.dir.join(name);
            std::fs::remove_file(&p).map_err(io("evicting", &p))?;
        }
        Ok(evict)
    }

    /// Copies or downloads into `tmp`, returning the sha256 of what was written.
    async fn download(&self, model: &ModelRef, tmp: &Path) -> Result<String, StoreError> {
        let mut out = tokio::fs::File::create(tmp)
            .await
            .map_err(io("creating", tmp))?;
        let mut hasher = Sha256::new();
        let mut written: u64 = 0;
        let too_large = || StoreError::TooLarge {
            uri: model.redacted_uri(),
            limit: self.max_bytes,
        };
        if let Some(path) = model.uri.strip_prefix("file://") {
            let path = Path::new(path);
            let mut f = tokio::fs::File::open(path)
                .await
                .map_err(io("opening", path))?;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f.read(&mut buf).await.map_err(io("reading", path))?;
                if n == 0 {
                    break;
                }
                written += n as u64;
                if written > self.max_bytes {
                    return Err(too_large());
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).await.map_err(io("writing", tmp))?;
            }
        } else if model.uri.starts_with("http://") || model.uri.starts_with("https://") {
            let dl = |message: String| StoreError::Download {
                uri: model.redacted_uri(),
                message,
            };
            let uri: hyper::Uri = model.uri.parse().map_err(|e| dl(format!("{e}")))?;
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
                .map_err(|e| dl(format!("no TLS root certificates: {e}")))?
                .https_or_http()
                .enable_http1()
                .build();
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build::<_, Empty<Bytes>>(connector);
            let resp = client.get(uri).await.map_err(|e| dl(format!("{e:?}")))?;
            if !resp.status().is_success() {
                return Err(dl(format!("HTTP status {}", resp.status())));
            }
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| dl(e.to_string()))?;
                if let Ok(data) = frame.into_data() {
                    written += data.len() as u64;
                    if written > self.max_bytes {
                        return Err(too_large());
                    }
                    hasher.update(&data);
                    out.write_all(&data).await.map_err(io("writing", tmp))?;
                }
            }
        } else {
            let scheme = model.uri.split("://").next().unwrap_or_default();
            return Err(StoreError::UnsupportedScheme(
                scheme.chars().take(20).collect(),
            ));
        }
        out.sync_all().await.map_err(io("syncing", tmp))?;
        Ok(hex::encode(hasher.finalize()))
    }
}

async fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// Marks a cache file as just used (eviction is by modification time).
fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
