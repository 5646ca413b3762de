//! Unit tests of `store.rs`.

use super::*;

const D: &str = "8ed79c1eb2ea0ff09adabc2bf35499aed4ebcecbfcffeebd670c068588de00ed";

#[test]
fn parses_references() {
    let r: ModelRef = format!("file:///m/a.onnx@{D}").parse().unwrap();
    assert_eq!(r.uri, "file:///m/a.onnx");
    assert_eq!(r.sha256, D);
    let r: ModelRef = format!("http://u:p@h/a.onnx@sha256:{}", D.to_uppercase())
        .parse()
        .unwrap();
    assert_eq!(r.uri, "http://u:p@h/a.onnx");
    assert_eq!(r.sha256, D);
    for bad in ["file:///a.onnx", "file:///a.onnx@abc", &format!("@{D}")] {
        assert!(bad.parse::<ModelRef>().is_err(), "{bad}");
    }
}

fn entry(name: &str, size: u64, age: u64) -> CacheEntry {
    CacheEntry {
        name: name.into(),
        size,
        used: SystemTime::UNIX_EPOCH + Duration::from_secs(1000 - age),
    }
}

#[test]
fn credentials_and_queries_are_redacted() {
    assert_eq!(
        redact_uri("https://u:secret@h:8/m.onnx?sig=abc"),
        "https://***@h:8/m.onnx?***"
    );
    assert_eq!(redact_uri("http://h/m.onnx"), "http://h/m.onnx");
    assert_eq!(redact_uri("file:///m.onnx"), "file:///m.onnx");
    let r: ModelRef = format!("http://u:p@h/a.onnx@{D}").parse().unwrap();
    assert!(!r.to_string().contains("u:p"), "{r}");
}

#[test]
fn eviction_keeps_newest_and_protected() {
    let entries = vec![
        entry("a", 10, 3),
        entry("b", 10, 2),
        entry("c", 10, 1),
        entry("d", 10, 4),
    ];
    assert_eq!(plan_eviction(entries.clone(), &[], 2, 1000), vec!["d", "a"]);
    assert_eq!(
        plan_eviction(entries.clone(), &["d".into()], 2, 1000),
        vec!["a", "b"]
    );
    assert_eq!(plan_eviction(entries.clone(), &[], 10, 25), vec!["d", "a"]);
    assert!(plan_eviction(entries, &[], 4, 40).is_empty());
}

fn store(dir: &Path) -> ModelStore {
    ModelStore::new(dir.join("cache"), 1 << 20, 2, Duration::from_secs(10))
}

#[tokio::test]
async fn file_fetch_verifies_and_caches() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("m.onnx");
    std::fs::write(&src, b"model bytes").unwrap();
    let digest = hex::encode(Sha256::digest(b"model bytes"));
    let good: ModelRef = format!("file://{}@{digest}", src.display())
        .parse()
        .unwrap();
    let s = store(dir.path());
    let p = s.fetch(&good).await.unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"model bytes");
    // served from the cache even when the source is gone
    std::fs::remove_file(&src).unwrap();
    assert_eq!(s.fetch(&good).await.unwrap(), p);

    std::fs::write(&src, b"other bytes").unwrap();
    let wrong: ModelRef = format!("file://{}@{D}", src.display()).parse().unwrap();
    let e = s.fetch(&wrong).await.unwrap_err();
    assert_eq!(e.kind(), "verify", "{e}");
    assert!(!s.path_of(&wrong).exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .collect();
    assert_eq!(leftovers.len(), 1, "only the good model stays");

    let missing: ModelRef = format!("file:///nonexistent/x.onnx@{D}").parse().unwrap();
    assert_eq!(s.fetch(&missing).await.unwrap_err().kind(), "download");
    let s3: ModelRef = format!("s3://b/x.onnx@{D}").parse().unwrap();
    assert_eq!(s.fetch(&s3).await.unwrap_err().kind(), "config");
}

#[tokio::test]
async fn http_fetch_verifies_and_reports_status() {
    let app = axum::Router::new().route("/m.onnx", axum::routing::get(|| async { "served model" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).with_retries(1, Duration::ZERO);
    let digest = hex::encode(Sha256::digest(b"served model"));
    let good: ModelRef = format!("http://{addr}/m.onnx@{digest}").parse().unwrap();
    let p = s.fetch(&good).await.unwrap();
    assert_eq!(std::fs::read(p).unwrap(), b"served model");
    let wrong: ModelRef = format!("http://{addr}/m.onnx@{D}").parse().unwrap();
    assert_eq!(s.fetch(&wrong).await.unwrap_err().kind(), "verify");
    let missing: ModelRef = format!("http://{addr}/nope.onnx@{D}").parse().unwrap();
    let e = s.fetch(&missing).await.unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
    // TLS to a plain-HTTP port fails as a download error, not a crash (a digest not cached)
    let tls: ModelRef = format!("https://{addr}/m.onnx@{D}").parse().unwrap();
    assert_eq!(s.fetch(&tls).await.unwrap_err().kind(), "download");
}

#[test]
fn evict_deletes_the_oldest_unprotected_files() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let refs: Vec<ModelRef> = ["a", "b", "c"]
        .iter()
        .map(|c| format!("file:///x@{}", c.repeat(64)).parse().unwrap())
        .collect();
    for (age, r) in refs.iter().enumerate() {
        let path = cache.join(format!("{}.onnx", r.sha256));
        std::fs::write(&path, b"x").unwrap();
        let f = std::fs::File::options().append(true).open(&path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(100 * (age as u64 + 1)))
            .unwrap();
    }
    std::fs::write(cache.join(".partial"), b"not a model").unwrap();
    let s = ModelStore::new(cache.clone(), 1 << 20, 1, Duration::from_secs(1));
    // keep 1: only "c" stays, the oldest but in use; the partial download is not a model
    let mut evicted = s.evict(&[&refs[2]]).unwrap();
    evicted.sort();
    assert_eq!(
        evicted,
        vec![
            format!("{}.onnx", "a".repeat(64)),
            format!("{}.onnx", "b".repeat(64))
        ]
    );
    assert!(s.path_of(&refs[2]).exists());
    assert!(cache.join(".partial").exists());
}

#[tokio::test]
async fn http_downloads_are_retried() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let app = axum::Router::new().route(
        "/m.onnx",
        axum::routing::get(move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(axum::http::StatusCode::SERVICE_UNAVAILABLE)
                } else {
                    Ok("served model")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let digest = hex::encode(Sha256::digest(b"served model"));
    let r: ModelRef = format!("http://{addr}/m.onnx@{digest}").parse().unwrap();
    let two = store(dir.path()).with_retries(2, Duration::from_millis(1));
    assert_eq!(two.fetch(&r).await.unwrap_err().kind(), "download");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let three = store(dir.path()).with_retries(3, Duration::from_millis(1));
    three.fetch(&r).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn oversized_models_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.onnx");
    std::fs::write(&src, vec![0u8; 2048]).unwrap();
    let r: ModelRef = format!("file://{}@{D}", src.display()).parse().unwrap();
    let s = ModelStore::new(dir.path().join("cache"), 1024, 2, Duration::from_secs(10));
    assert!(matches!(
        s.fetch(&r).await.unwrap_err(),
        StoreError::TooLarge { .. }
    ));
}
