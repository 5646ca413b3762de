//! The container images' Dockerfiles (`docker/`), checked structurally (no Docker engine here):
//! multi-stage, every base pinned by digest or exact version (build-arg defaults included), a
//! glibc-based runtime (ONNX Runtime needs glibc: never Alpine, musl, scratch or a static image),
//! a numeric non-root `USER` after the last `RUN` of the final stage, an exec-form `ENTRYPOINT`
//! naming the component's binary, `cargo build --locked`, nothing fetched with `ADD <url>`, curl or
//! wget. The sidecar points `ORT_DYLIB_PATH` at the ONNX Runtime library it copies in, and its CUDA
//! variant (documented build args) keeps a glibc base that is not older than the build stage's.

#![allow(clippy::expect_used)] // test helpers may panic with context

use std::collections::BTreeMap;
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// One instruction: keyword (upper case) and its arguments (continuations joined).
#[derive(Debug, Clone)]
struct Instr {
    op: String,
    args: String,
}

fn parse(text: &str) -> Vec<Instr> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if trimmed.starts_with('#') {
            continue; // comment inside a continuation
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (op, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push(Instr {
            op: op.to_ascii_uppercase(),
            args: args.trim().to_owned(),
        });
        current.clear();
    }
    assert!(current.is_empty(), "dangling line continuation");
    out
}

/// A stage: its base image (as written), its name, its instructions.
#[derive(Debug)]
struct Stage {
    base: String,
    name: Option<String>,
    body: Vec<Instr>,
}

struct Dockerfile {
    /// `ARG` defaults declared before the first `FROM` (usable in `FROM`).
    global_args: BTreeMap<String, String>,
    stages: Vec<Stage>,
}

fn dockerfile(name: &str) -> Dockerfile {
    let path = repo().join("docker").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut global_args = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for i in parse(&text) {
        match (i.op.as_str(), stages.last_mut()) {
            ("ARG", None) => {
                let (k, v) = i.args.split_once('=').unwrap_or((&i.args, ""));
                global_args.insert(k.to_owned(), v.trim_matches('"').to_owned());
            }
            ("FROM", _) => {
                let words: Vec<&str> = i.args.split_whitespace().collect();
                assert!(
                    !words.iter().any(|w| w.starts_with("--platform")),
                    "{name}: no --platform pins"
                );
                let name = match words.as_slice() {
                    [_, as_, n] if as_.eq_ignore_ascii_case("as") => Some((*n).to_owned()),
                    [_] => None,
                    other => panic!("{name}: odd FROM {other:?}"),
                };
                stages.push(Stage {
                    base: words[0].to_owned(),
                    name,
                    body: Vec::new(),
                });
            }
            (_, Some(stage)) => stage.body.push(i),
            (op, None) => panic!("{name}: {op} before the first FROM"),
        }
    }
    Dockerfile {
        global_args,
        stages,
    }
}

/// `${NAME}` / `$NAME` replaced by the global ARG defaults (or `overrides`).
fn expand(s: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = s.to_owned();
    for (k, v) in args {
        out = out
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("${k}"), v);
    }
    assert!(!out.contains('$'), "unexpanded variable in {s}");
    out
}

/// Pinned: by digest, or by a tag holding an exact version (`1.95.0`, `12.8`, `12.8.1-cudnn-...`).
fn pinned(image: &str) -> bool {
    if let Some((_, digest)) = image.split_once("@sha256:") {
        return digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit());
    }
    let Some((_, tag)) = image.rsplit_once(':') else {
        return false;
    };
    let version = tag.split('-').next().unwrap_or_default();
    let parts: Vec<&str> = version.split('.').collect();
    parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// glibc-based runtime images robofleet accepts (Debian, Ubuntu, NVIDIA CUDA on Ubuntu).
fn glibc_based(image: &str) -> bool {
    let lower = image.to_ascii_lowercase();
    let forbidden = ["alpine", "musl", "scratch", "busybox", "distroless/static"];
    if forbidden.iter().any(|f| lower.contains(f)) {
        return false;
    }
    let repo = lower.split([':', '@']).next().unwrap_or_default();
    match repo {
        "debian" | "ubuntu" => true,
        "nvidia/cuda" => lower.contains("ubuntu"),
        _ => false,
    }
}

/// glibc of a build or runtime base (the build stage must not be newer than the runtime).
fn glibc_version(image: &str) -> (u32, u32) {
    let lower = image.to_ascii_lowercase();
    if lower.contains("bookworm") || lower.starts_with("debian:12") {
        (2, 36)
    } else if lower.contains("ubuntu24.04") || lower.starts_with("ubuntu:24.04") {
        (2, 39)
    } else if lower.contains("ubuntu22.04") || lower.starts_with("ubuntu:22.04") {
        (2, 35)
    } else {
        panic!("unknown glibc for {image}: add it here")
    }
}

/// Checks everything every image shares; returns the final stage's base (expanded).
fn check_common(name: &str, binary: &str, args: &BTreeMap<String, String>) -> (Dockerfile, String) {
    let df = dockerfile(name);
    assert!(df.stages.len() >= 2, "{name}: multi-stage");
    let names: Vec<&str> = df.stages.iter().filter_map(|s| s.name.as_deref()).collect();
    for stage in &df.stages {
        let base = expand(&stage.base, args);
        if names.contains(&base.as_str()) {
            continue; // FROM an earlier stage
        }
        assert!(
            pinned(&base),
            "{name}: base {base} is not pinned by digest or exact version"
        );
        assert!(!base.ends_with(":latest"), "{name}: {base}");
        for i in &stage.body {
            if i.op == "ADD" {
                assert!(!i.args.contains("://"), "{name}: ADD of a URL: {}", i.args);
            }
            if i.op == "RUN" {
                for fetch in ["curl ", "wget ", "rustup "] {
                    assert!(
                        !i.args.contains(fetch),
                        "{name}: downloads at build time: {}",
                        i.args
                    );
                }
                if i.args.contains("cargo build") {
                    assert!(i.args.contains("--locked"), "{name}: cargo build --locked");
                    assert!(i.args.contains("--release"), "{name}: release build");
                }
            }
            if i.op == "COPY"
                && let Some(from) = i
                    .args
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("--from="))
            {
                assert!(
                    names.contains(&from),
                    "{name}: COPY --from={from} is not a stage"
                );
            }
        }
    }
    let last = df.stages.last().expect("a final stage");
    let final_base = expand(&last.base, args);
    assert!(
        glibc_based(&final_base),
        "{name}: runtime base {final_base} is not glibc-based"
    );
    // The build stage's glibc is not newer than the runtime's.
    for stage in &df.stages[..df.stages.len() - 1] {
        if stage
            .body
            .iter()
            .any(|i| i.op == "RUN" && i.args.contains("cargo build"))
        {
            assert!(
                glibc_version(&expand(&stage.base, args)) <= glibc_version(&final_base),
                "{name}: builds against a newer glibc than {final_base}"
            );
        }
    }
    // Non-root: a numeric UID (and GID) other than 0, after the last RUN.
    let users: Vec<(usize, &Instr)> = last
        .body
        .iter()
        .enumerate()
        .filter(|(_, i)| i.op == "USER")
        .collect();
    let (user_at, user) = *users
        .last()
        .unwrap_or_else(|| panic!("{name}: no USER in the final stage"));
    for id in user.args.split(':') {
        let n: u32 = id
            .parse()
            .unwrap_or_else(|_| panic!("{name}: USER {} is not numeric", user.args));
        assert!(n != 0, "{name}: USER is root");
    }
    if let Some(last_run) = last.body.iter().rposition(|i| i.op == "RUN") {
        assert!(
            last_run < user_at,
            "{name}: USER must come after the last RUN of the final stage"
        );
    }
    let entry = last
        .body
        .iter()
        .rfind(|i| i.op == "ENTRYPOINT")
        .unwrap_or_else(|| panic!("{name}: no ENTRYPOINT"));
    let argv: Vec<String> = serde_json::from_str(&entry.args)
        .unwrap_or_else(|e| panic!("{name}: ENTRYPOINT is not exec form: {e}"));
    assert_eq!(
        argv.first().map(String::as_str),
        Some(format!("/usr/local/bin/{binary}").as_str())
    );
    let copied = last.body.iter().any(|i| {
        i.op == "COPY"
            && i.args.split_whitespace().last() == Some(&format!("/usr/local/bin/{binary}"))
    });
    assert!(
        copied,
        "{name}: the final stage copies {binary} to /usr/local/bin"
    );
    let built = df.stages.iter().any(|s| {
        s.body.iter().any(|i| {
            i.op == "RUN"
                && i.args.contains("cargo build")
                && i.args.contains(&format!("--bin {binary}"))
        })
    });
    assert!(built, "{name}: a stage builds --bin {binary}");
    (df, final_base)
}

#[test]
fn operator_image() {
    check_common(
        "operator.Dockerfile",
        "robofleet-operator",
        &BTreeMap::new(),
    );
}

#[test]
fn ros2_bridge_image() {
    check_common("ros2-bridge.Dockerfile", "ros2-bridge", &BTreeMap::new());
}

#[test]
fn inference_sidecar_image_cpu_and_cuda() {
    let df = dockerfile("inference-sidecar.Dockerfile");
    let defaults = df.global_args.clone();
    let (df, base) = check_common(
        "inference-sidecar.Dockerfile",
        "inference-sidecar",
        &defaults,
    );
    assert!(
        base.starts_with("debian:"),
        "the CPU image runs on Debian: {base}"
    );
    // The ONNX Runtime wheel is the one the tests load (tests/requirements.txt).
    let requirements =
        std::fs::read_to_string(repo().join("tests/requirements.txt")).expect("requirements");
    let pinned_ort = requirements
        .lines()
        .find_map(|l| l.strip_prefix("onnxruntime=="))
        .expect("onnxruntime pinned in tests/requirements.txt");
    assert_eq!(defaults["ORT_VERSION"], pinned_ort.trim());
    assert_eq!(defaults["ORT_PACKAGE"], "onnxruntime");
    let last = df.stages.last().expect("final stage");
    let env = last
        .body
        .iter()
        .filter(|i| i.op == "ENV")
        .map(|i| i.args.clone())
        .collect::<Vec<_>>()
        .join(" ");
    let dylib = env
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("ORT_DYLIB_PATH="))
        .expect("ENV ORT_DYLIB_PATH");
    let lib_dir = dylib.rsplit_once('/').map(|(d, _)| d).expect("a path");
    assert!(
        last.body.iter().any(|i| i.op == "COPY"
            && i.args.contains("--from=ort")
            && i.args
                .split_whitespace()
                .last()
                .is_some_and(|d| d.trim_end_matches('/') == lib_dir)),
        "the ONNX Runtime library is copied to {lib_dir}"
    );
    assert!(
        last.body
            .iter()
            .any(|i| i.op == "COPY" && i.args.contains("ca-certificates.crt")),
        "CA certificates for https:// model downloads"
    );
    // The documented CUDA variant: its build args keep every rule.
    let text =
        std::fs::read_to_string(repo().join("docker/inference-sidecar.Dockerfile")).expect("read");
    let mut cuda = defaults.clone();
    for arg in text.split("--build-arg ").skip(1) {
        let kv = arg.split_whitespace().next().expect("KEY=VALUE");
        let (k, v) = kv.split_once('=').expect("KEY=VALUE");
        assert!(
            defaults.contains_key(k),
            "documented build arg {k} is declared"
        );
        cuda.insert(k.to_owned(), v.to_owned());
    }
    assert_eq!(cuda["FEATURES"], "gpu");
    assert_eq!(cuda["ORT_PACKAGE"], "onnxruntime-gpu");
    let (_, cuda_base) = check_common("inference-sidecar.Dockerfile", "inference-sidecar", &cuda);
    assert!(cuda_base.starts_with("nvidia/cuda:"), "{cuda_base}");
    let features =
        std::fs::read_to_string(repo().join("inference-sidecar/Cargo.toml")).expect("Cargo.toml");
    assert!(
        features.contains("gpu = ["),
        "the sidecar crate has the gpu feature"
    );
}

#[test]
fn the_build_context_leaves_out_build_output() {
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    for entry in ["target/", ".git/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            ".dockerignore lacks {entry}"
        );
    }
}

#[test]
fn the_checks_catch_what_they_should() {
    assert!(pinned("rust:1.95.0-slim-bookworm"));
    assert!(pinned("debian:12.8-slim"));
    assert!(pinned(&format!("debian@sha256:{}", "a".repeat(64))));
    assert!(!pinned("debian:bookworm-slim"));
    assert!(!pinned("debian:latest"));
    assert!(!pinned("debian"));
    assert!(!pinned("rust:1-slim"));
    assert!(glibc_based("debian:12.8-slim"));
    assert!(glibc_based("nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04"));
    assert!(!glibc_based("alpine:3.20.3"));
    assert!(!glibc_based("gcr.io/distroless/static-debian12:nonroot"));
    assert!(!glibc_based("nvidia/cuda:12.8.1-runtime-rockylinux9"));
    let parsed = parse("FROM a:1.2 AS b\nRUN x \\\n  # note\n  && y\nUSER 1:1\n");
    assert_eq!(parsed.len(), 3);
    assert_eq!(parsed[1].args, "x  && y");
}
