//! robofleet's Argo CD integration (`deploy/argocd/`): the health checks and resource actions run
//! under both C Lua 5.1 (`lua5.1`, through `tests/argocd/lua51/run.lua`) and gopher-lua as Argo CD
//! embeds it (the Go harness `tests/argocd/harness`, which calls them the way Argo CD's `util/lua`
//! does), over every status fixture in `tests/fixtures/argocd/` (captured from the operator on the
//! local cluster, or `*.synthetic.json` for the two phase-less statuses this operator never
//! writes), and must agree with each other and with the table below. `argocd-cm.yaml` must hold
//! exactly the script files; the Applications and the example model repository follow the
//! sync-wave rules of docs/gitops.md. The cluster test checks the scripts on live objects from the
//! operator (InferenceService states, among them a rollout's wave, pause, spec.paused and abort;
//! SafetyPolicy states, among them Healthy with an approval pending; SensorSim phases), runs the
//! InferenceService `pause`, `resume` and `abort` and the SafetyPolicy `approve` and `reset`
//! actions through the gopher-lua harness and applies them as Argo CD does (the operator
//! approves exactly the pending change and acknowledges each verb), server-dry-runs the
//! Kubernetes objects of `deploy/argocd/`, and with `ROBOFLEET_CAPTURE_FIXTURES=<dir>` writes the
//! live objects there as fixtures (`cp <dir>/*.json tests/fixtures/argocd/`, then delete replaced
//! synthetics).

#![allow(clippy::expect_used)] // test helpers may panic with context

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

const ACTION: &str = "robofleet.io/action";
const APPROVE: &str = "robofleet.io/approve";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn customizations() -> PathBuf {
    repo().join("deploy/argocd/resource_customizations/robofleet.io")
}

fn fixtures_dir() -> PathBuf {
    repo().join("tests/fixtures/argocd")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    InferenceService,
    SafetyPolicy,
    SensorSim,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::InferenceService, Kind::SafetyPolicy, Kind::SensorSim];

    fn name(self) -> &'static str {
        match self {
            Kind::InferenceService => "InferenceService",
            Kind::SafetyPolicy => "SafetyPolicy",
            Kind::SensorSim => "SensorSim",
        }
    }

    fn from_name(name: &str) -> Kind {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .unwrap_or_else(|| panic!("not a robofleet kind: {name}"))
    }

    /// The verbs product.md names, sorted as discovery output is.
    fn verbs(self) -> &'static [&'static str] {
        match self {
            Kind::InferenceService => &[
                "abort",
                "pause",
                "promote",
                "promote-full",
                "resume",
                "retry",
            ],
            Kind::SafetyPolicy => &["approve", "reset"],
            Kind::SensorSim => &[],
        }
    }

    /// `ignoreResourceUpdates`: fast-changing counters only (JSON pointers, jq path expressions).
    fn ignore_updates(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Kind::InferenceService => (
                &["/status/robots"],
                &[".status.waves[]?.updated", ".status.waves[]?.analyzedAt"],
            ),
            Kind::SafetyPolicy => (&["/status/robots"], &[]),
            Kind::SensorSim => (
                &["/status/messagesPublished", "/status/faultsInjected"],
                &[],
            ),
        }
    }

    fn dir(self) -> PathBuf {
        customizations().join(self.name())
    }
}

/// What both interpreters must say about one fixture: the health status, words its message must
/// contain, and which actions discovery enables (every other verb of the kind is disabled).
struct Expect {
    fixture: &'static str,
    health: &'static str,
    message: &'static [&'static str],
    enabled: &'static [&'static str],
}

const EXPECTED: &[Expect] = &[
    // InferenceService, captured
    Expect {
        fixture: "inferenceservice-no-status",
        health: "Progressing",
        message: &["Waiting for the operator to report status"],
        enabled: &["pause"],
    },
    Expect {
        fixture: "inferenceservice-healthy",
        health: "Healthy",
        message: &["2/2"],
        enabled: &["pause"],
    },
    Expect {
        fixture: "inferenceservice-generation-not-observed",
        health: "Progressing",
        message: &["Waiting for the operator to observe generation"],
        enabled: &["pause"],
    },
    Expect {
        fixture: "inferenceservice-degraded-model-load-failed",
        health: "Degraded",
        message: &["ModelLoadFailed: ", "failed to load"],
        enabled: &["pause"],
    },
    Expect {
        fixture: "inferenceservice-degraded-no-matching-robots",
        health: "Degraded",
        message: &["NoMatchingRobots: "],
        enabled: &["pause"],
    },
    Expect {
        fixture: "inferenceservice-degraded-namespace-not-allowed",
        health: "Degraded",
        message: &["NamespaceNotAllowed: ", "robofleet.io/robot-workloads"],
        enabled: &["pause"],
    },
    // InferenceService rollouts, captured: a canary wave in its timed pause, held by the pause
    // action, held by spec.paused, aborted by the abort action
    Expect {
        fixture: "inferenceservice-progressing-wave",
        health: "Progressing",
        message: &["wave 1/3 (canary)", "pausing until"],
        enabled: &["abort", "pause", "promote", "promote-full"],
    },
    Expect {
        fixture: "inferenceservice-paused",
        health: "Suspended",
        message: &["paused by the pause action", "wave 1/3"],
        enabled: &["abort", "promote", "promote-full", "resume"],
    },
    Expect {
        fixture: "inferenceservice-paused-in-git",
        health: "Suspended",
        message: &["spec.paused is true", "wave 1/3"],
        enabled: &["abort"],
    },
    Expect {
        fixture: "inferenceservice-aborted",
        health: "Degraded",
        message: &[
            "RolloutAborted: rollout of revision",
            "aborted",
            "retry action",
        ],
        enabled: &["pause", "retry"],
    },
    // InferenceService, synthetic: a status without `phase` (the scripts fall back to the
    // conditions, for a status written by another controller version); this operator always
    // writes a phase, so it cannot produce these
    Expect {
        fixture: "inferenceservice-conditions-only-paused",
        health: "Suspended",
        message: &["paused by spec.paused"],
        enabled: &["resume"],
    },
    Expect {
        fixture: "inferenceservice-conditions-only-ready",
        health: "Healthy",
        message: &["3/3 robots"],
        enabled: &["pause"],
    },
    // SafetyPolicy, captured
    Expect {
        fixture: "safetypolicy-progressing",
        health: "Progressing",
        message: &["0/2 monitors ready"],
        enabled: &["reset"],
    },
    Expect {
        fixture: "safetypolicy-degraded-no-matching-robots",
        health: "Degraded",
        message: &["NoMatchingRobots: "],
        enabled: &["reset"],
    },
    Expect {
        fixture: "safetypolicy-approval-pending-progressing",
        health: "Progressing",
        message: &[
            "Approval pending",
            "robofleet.io/approve=",
            "0/2 monitors ready",
        ],
        enabled: &["approve", "reset"],
    },
    Expect {
        fixture: "safetypolicy-approved",
        health: "Progressing",
        message: &["0/2 monitors ready"],
        enabled: &["reset"],
    },
    // SafetyPolicy, captured with a LIDAR and a stop-lock consumer on the robot: Healthy after a
    // reset, a relaxation pending (still Healthy), and the approve action applied but not yet
    // acted on (the operator stopped)
    Expect {
        fixture: "safetypolicy-approval-pending",
        health: "Healthy",
        message: &[
            "Approval pending",
            "robofleet.io/approve=",
            "1/1 monitors ready, 1 enforcing",
        ],
        enabled: &["approve", "reset"],
    },
    Expect {
        fixture: "safetypolicy-approval-given",
        health: "Healthy",
        message: &["Approval pending", "1/1 monitors ready"],
        enabled: &["reset"],
    },
    Expect {
        fixture: "safetypolicy-healthy-latched",
        health: "Healthy",
        message: &["1/1 monitors ready, 1 enforcing"],
        enabled: &["reset"],
    },
    // SensorSim, captured (pending: a sim on a robot Node no kubelet serves)
    Expect {
        fixture: "sensorsim-template",
        health: "Healthy",
        message: &["Template"],
        enabled: &[],
    },
    Expect {
        fixture: "sensorsim-pending",
        health: "Progressing",
        message: &["starting 1 sim pod"],
        enabled: &[],
    },
    Expect {
        fixture: "sensorsim-running",
        health: "Progressing",
        message: &["running"],
        enabled: &[],
    },
    Expect {
        fixture: "sensorsim-succeeded",
        health: "Healthy",
        message: &["succeeded: ", "expectation(s) held"],
        enabled: &[],
    },
    Expect {
        fixture: "sensorsim-failed",
        health: "Degraded",
        message: &["sim exited 1", "expected", ", observed "],
        enabled: &[],
    },
    Expect {
        fixture: "sensorsim-unsafe-target",
        health: "Degraded",
        message: &["UnsafeTarget: "],
        enabled: &[],
    },
];

fn expectation(stem: &str) -> &'static Expect {
    EXPECTED
        .iter()
        .find(|e| e.fixture == stem)
        .unwrap_or_else(|| panic!("no expectation for fixture {stem}: add one to EXPECTED"))
}

/// Fixture stem (file name without `.synthetic.json` / `.json`) → path.
fn fixtures() -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(fixtures_dir()).expect("tests/fixtures/argocd") {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name")
            .to_owned();
        let Some(stem) = name
            .strip_suffix(".synthetic.json")
            .or_else(|| name.strip_suffix(".json"))
        else {
            continue;
        };
        assert!(
            out.insert(stem.to_owned(), path.clone()).is_none(),
            "fixture {stem} exists both captured and synthetic: delete the synthetic one"
        );
    }
    out
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---- the two interpreters ----------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Interp {
    Lua51,
    Gopher,
}

const INTERPRETERS: [Interp; 2] = [Interp::Lua51, Interp::Gopher];

/// The gopher-lua harness: `ROBOFLEET_ARGOCD_HARNESS` (what `make argocd-harness` builds), or built
/// here with `go build` (offline once its two modules are in the Go module cache).
fn harness() -> &'static Path {
    static HARNESS: OnceLock<PathBuf> = OnceLock::new();
    HARNESS.get_or_init(|| {
        if let Some(p) = std::env::var_os("ROBOFLEET_ARGOCD_HARNESS").map(PathBuf::from) {
            assert!(
                p.exists(),
                "ROBOFLEET_ARGOCD_HARNESS={} does not exist",
                p.display()
            );
            return p;
        }
        let out_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("target"))
            .join("argocd-lua-harness");
        std::fs::create_dir_all(&out_dir).expect("harness output dir");
        let bin = out_dir.join("argocd-lua-harness");
        let out = Command::new("go")
            .args(["build", "-buildvcs=false", "-o"])
            .arg(&bin)
            .arg(".")
            .current_dir(repo().join("tests/argocd/harness"))
            .env("GOWORK", "off")
            .output()
            .expect("running `go build` for the Argo CD Lua harness (is Go installed?)");
        assert!(
            out.status.success(),
            "go build tests/argocd/harness failed (run `make argocd-harness` once with network \
             access to fetch gopher-lua):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        bin
    })
}

fn command(interp: Interp) -> Command {
    match interp {
        Interp::Lua51 => {
            let lua = std::env::var_os("ROBOFLEET_LUA51").unwrap_or_else(|| "lua5.1".into());
            let mut c = Command::new(lua);
            c.arg(repo().join("tests/argocd/lua51/run.lua"));
            c
        }
        Interp::Gopher => Command::new(harness()),
    }
}

/// Runs `script` on `object` in `mode` (`health`, `discovery`, `action`): the JSON result, or the
/// interpreter's error message.
fn run(interp: Interp, mode: &str, script: &Path, object: &Path) -> Result<Value, String> {
    let out = command(interp)
        .arg(mode)
        .arg(script)
        .arg(object)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running the {interp:?} interpreter: {e} (lua5.1 comes from the lua5.1 apt package)"
            )
        });
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => Ok(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{interp:?} {mode} {}: bad JSON {e}: {}",
                script.display(),
                String::from_utf8_lossy(&out.stdout)
            )
        })),
        Some(1) => Err(stderr),
        other => panic!(
            "{interp:?} {mode} {}: exit {other:?}: {stderr}",
            script.display()
        ),
    }
}

fn run_ok(interp: Interp, mode: &str, script: &Path, object: &Path) -> Value {
    run(interp, mode, script, object).unwrap_or_else(|e| {
        panic!(
            "{interp:?} {mode} {} on {}: {e}",
            script.display(),
            object.display()
        )
    })
}

fn health_script(kind: Kind) -> PathBuf {
    kind.dir().join("health.lua")
}

fn discovery_script(kind: Kind) -> PathBuf {
    kind.dir().join("actions/discovery.lua")
}

fn action_script(kind: Kind, verb: &str) -> PathBuf {
    kind.dir().join("actions").join(verb).join("action.lua")
}

fn kind_of(obj: &Value) -> Kind {
    Kind::from_name(obj["kind"].as_str().expect("kind"))
}

/// Checks health and discovery of one object under both interpreters against `want`; returns the
/// health message (the same from both).
fn check_health_and_discovery(object: &Path, want: &Expect) -> String {
    let obj = read_json(object);
    let kind = kind_of(&obj);
    let mut messages = BTreeSet::new();
    for interp in INTERPRETERS {
        let hs = run_ok(interp, "health", &health_script(kind), object);
        assert_eq!(
            hs["status"], want.health,
            "{interp:?} health of {}: {hs}",
            want.fixture
        );
        let message = hs["message"].as_str().unwrap_or_default().to_owned();
        for word in want.message {
            assert!(
                message.contains(word),
                "{interp:?} health message of {} lacks {word:?}: {message}",
                want.fixture
            );
        }
        messages.insert(message);

        if kind.verbs().is_empty() {
            assert!(
                !discovery_script(kind).exists(),
                "{} has no actions",
                kind.name()
            );
            continue;
        }
        let actions = run_ok(interp, "discovery", &discovery_script(kind), object);
        let list = actions.as_array().expect("discovery returns a list");
        let names: Vec<&str> = list.iter().filter_map(|a| a["name"].as_str()).collect();
        assert_eq!(
            names,
            kind.verbs(),
            "{interp:?} discovery of {}",
            want.fixture
        );
        let enabled: Vec<&str> = list
            .iter()
            .filter(|a| a["disabled"] == false)
            .filter_map(|a| a["name"].as_str())
            .collect();
        assert_eq!(
            enabled, want.enabled,
            "{interp:?} enabled actions of {}",
            want.fixture
        );
        for a in list {
            assert!(
                a["displayName"].as_str().is_some_and(|s| !s.is_empty())
                    && a["iconClass"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("fa ")),
                "{interp:?} {}: action without displayName/iconClass: {a}",
                want.fixture
            );
        }
    }
    assert_eq!(
        messages.len(),
        1,
        "the interpreters disagree on {}: {messages:?}",
        want.fixture
    );
    messages.into_iter().next().unwrap_or_default()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `patched` minus the annotation `key` equals `original` (annotations map created if need be).
fn assert_only_annotation_changed(original: &Value, patched: &Value, key: &str, what: &str) {
    let mut restored = patched.clone();
    let annotations = restored["metadata"]
        .as_object_mut()
        .expect("metadata")
        .get_mut("annotations")
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("{what}: no annotations in {patched}"));
    match original["metadata"]["annotations"].get(key) {
        Some(v) => {
            annotations.insert(key.to_owned(), v.clone());
        }
        None => {
            annotations.remove(key);
        }
    }
    if annotations.is_empty() && original["metadata"].get("annotations").is_none() {
        restored["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("annotations");
    }
    assert_eq!(
        &restored, original,
        "{what}: the action changed more than {key}"
    );
}

// ---- fixtures under both interpreters ------------------------------------------------------------

#[test]
fn every_fixture_has_an_expectation_and_every_state_a_fixture() {
    let have: BTreeSet<String> = fixtures().into_keys().collect();
    let want: BTreeSet<String> = EXPECTED.iter().map(|e| e.fixture.to_owned()).collect();
    assert_eq!(have, want, "fixtures and EXPECTED differ");
    // The states issue 12 names, for each kind.
    let healths = |kind: Kind| -> BTreeSet<&str> {
        EXPECTED
            .iter()
            .filter(|e| e.fixture.starts_with(&kind.name().to_lowercase()))
            .map(|e| e.health)
            .collect()
    };
    for kind in [Kind::InferenceService, Kind::SensorSim] {
        for h in ["Progressing", "Healthy", "Degraded"] {
            assert!(
                healths(kind).contains(h),
                "{} has no {h} fixture",
                kind.name()
            );
        }
    }
    assert!(healths(Kind::InferenceService).contains("Suspended"));
    for (stem, path) in fixtures() {
        let obj = read_json(&path);
        assert!(
            stem.starts_with(&kind_of(&obj).name().to_lowercase()),
            "{stem}: fixture names start with the kind"
        );
        assert!(
            obj["metadata"].get("managedFields").is_none(),
            "{stem}: strip managedFields"
        );
    }
}

#[test]
fn health_and_discovery_agree_on_both_interpreters_for_every_fixture() {
    for (stem, path) in fixtures() {
        check_health_and_discovery(&path, expectation(&stem));
    }
}

#[test]
fn actions_set_only_their_annotation_on_both_interpreters() {
    let tmp = std::env::temp_dir().join(format!("robofleet-argocd-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    for (stem, path) in fixtures() {
        let original = read_json(&path);
        let kind = kind_of(&original);
        for verb in kind.verbs() {
            let script = action_script(kind, verb);
            for interp in INTERPRETERS {
                let before = now_secs();
                let result = run(interp, "action", &script, &path);
                let after = now_secs();
                let what = format!("{interp:?} {verb} on {stem}");
                if *verb == "approve" {
                    let hash = original["status"]["pendingHash"].as_str();
                    match (hash, result) {
                        (Some(h), Ok(patched)) => {
                            assert_eq!(patched["metadata"]["annotations"][APPROVE], h, "{what}");
                            assert_only_annotation_changed(&original, &patched, APPROVE, &what);
                        }
                        (None, Err(e)) => assert!(e.contains("nothing to approve"), "{what}: {e}"),
                        (h, r) => panic!("{what}: pendingHash {h:?} but {r:?}"),
                    }
                    continue;
                }
                let patched = result.unwrap_or_else(|e| panic!("{what}: {e}"));
                let value = patched["metadata"]["annotations"][ACTION]
                    .as_str()
                    .unwrap_or_else(|| panic!("{what}: no {ACTION} in {patched}"))
                    .to_owned();
                let nonce = value
                    .strip_prefix(&format!("{verb}@"))
                    .unwrap_or_else(|| panic!("{what}: {value}"));
                let secs: u64 = nonce
                    .trim_end_matches("-1")
                    .parse()
                    .unwrap_or_else(|e| panic!("{what}: nonce {nonce}: {e}"));
                // os.time() is time(2), which reads the coarse clock: up to a tick behind
                // SystemTime, so one second behind just after a second turns over
                assert!(
                    (before.saturating_sub(1)..=after).contains(&secs),
                    "{what}: nonce {secs} is not now ({before}..={after})"
                );
                assert_only_annotation_changed(&original, &patched, ACTION, &what);
            }
        }
    }
    // The same verb twice within one second still gets a new nonce.
    let path = fixtures()["inferenceservice-progressing-wave"].clone();
    for interp in INTERPRETERS {
        let mut done = false;
        for _ in 0..5 {
            // start well inside a second: os.time() may lag a tick behind (see above)
            let sub = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock after 1970")
                .subsec_millis();
            if !(50..500).contains(&sub) {
                std::thread::sleep(Duration::from_millis(u64::from(1100 - sub) % 1000));
            }
            let now = now_secs();
            let mut obj = read_json(&path);
            obj["metadata"]["annotations"] = json!({ACTION: format!("pause@{now}")});
            let tmp_obj = tmp.join("same-second.json");
            std::fs::write(&tmp_obj, obj.to_string()).expect("write temp object");
            let patched = run_ok(
                interp,
                "action",
                &action_script(Kind::InferenceService, "pause"),
                &tmp_obj,
            );
            if now_secs() != now {
                continue; // the second turned over: try again
            }
            assert_eq!(
                patched["metadata"]["annotations"][ACTION],
                format!("pause@{now}-1"),
                "{interp:?}"
            );
            done = true;
            break;
        }
        assert!(done, "{interp:?}: no run within one second");
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

/// The scripts see what Argo CD's sandbox offers and nothing more, under both interpreters: no
/// string or math library, no string methods, os with time and date only.
#[test]
fn both_sandboxes_offer_what_argo_cd_offers() {
    let tmp = std::env::temp_dir().join(format!("robofleet-argocd-probe-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let probe = tmp.join("probe.lua");
    std::fs::write(
        &probe,
        r#"local ok = pcall(function() return ("x"):upper() end)
local r = require("os")
return {status = "Healthy", message = type(string) .. "," .. type(math) .. "," .. type(io) .. ","
  .. type(os.time) .. "," .. type(os.date) .. "," .. type(os.exit) .. "," .. type(os.getenv) .. ","
  .. type(table.insert) .. "," .. tostring(ok) .. "," .. type(r.time) .. "," .. tostring(obj.metadata.generation)}
"#,
    )
    .expect("write probe");
    let object = tmp.join("obj.json");
    std::fs::write(&object, r#"{"metadata": {"generation": 7}}"#).expect("write object");
    for interp in INTERPRETERS {
        let hs = run_ok(interp, "health", &probe, &object);
        assert_eq!(
            hs["message"], "nil,nil,nil,function,function,nil,nil,function,false,function,7",
            "{interp:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

// ---- argocd-cm, Applications, model repository -----------------------------------------------

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `deploy/argocd/argocd-cm.yaml` as rendered from the script files.
fn render_argocd_cm() -> String {
    let mut out = String::from(
        "# Argo CD settings for robofleet's kinds: health checks, resource actions and\n\
         # ignoreResourceUpdates (docs/gitops.md). A patch for Argo CD's own argocd-cm (it adds keys):\n\
         #   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file deploy/argocd/argocd-cm.yaml\n\
         # or list it under `patches:` in the kustomization that installs Argo CD.\n\
         # Generated from deploy/argocd/resource_customizations/ (the scripts, tested under C Lua 5.1 and\n\
         # gopher-lua by tests/tests/argocd.rs); regenerate with\n\
         #   ROBOFLEET_UPDATE_ARGOCD_CM=1 cargo test -p robofleet-tests --test argocd argocd_cm\n\
         apiVersion: v1\n\
         kind: ConfigMap\n\
         metadata:\n  name: argocd-cm\n  namespace: argocd\n\
         data:\n",
    );
    for kind in Kind::ALL {
        let key = format!("robofleet.io_{}", kind.name());
        out += &format!("  resource.customizations.health.{key}: |\n");
        out += &indent(&read(&health_script(kind)), 4);
        if !kind.verbs().is_empty() {
            out += &format!("  resource.customizations.actions.{key}: |\n");
            out += "    discovery.lua: |\n";
            out += &indent(&read(&discovery_script(kind)), 6);
            out += "    definitions:\n";
            for verb in kind.verbs() {
                out += &format!("      - name: {verb}\n        action.lua: |\n");
                out += &indent(&read(&action_script(kind, verb)), 10);
            }
        }
        let (pointers, jq) = kind.ignore_updates();
        out += &format!("  resource.customizations.ignoreResourceUpdates.{key}: |\n");
        out += "    # fast-changing counters only: never phase, conditions or observedGeneration\n";
        out += "    jsonPointers:\n";
        for p in pointers {
            out += &format!("      - {p}\n");
        }
        if !jq.is_empty() {
            out += "    jqPathExpressions:\n";
            for e in jq {
                out += &format!("      - {e}\n");
            }
        }
    }
    out
}

#[test]
fn argocd_cm_holds_exactly_the_tested_scripts() {
    let path = repo().join("deploy/argocd/argocd-cm.yaml");
    let rendered = render_argocd_cm();
    if std::env::var_os("ROBOFLEET_UPDATE_ARGOCD_CM").is_some() {
        std::fs::write(&path, &rendered).expect("write argocd-cm.yaml");
    }
    let committed = read(&path);
    assert!(
        committed == rendered,
        "deploy/argocd/argocd-cm.yaml is stale: ROBOFLEET_UPDATE_ARGOCD_CM=1 cargo test -p \
         robofleet-tests --test argocd argocd_cm"
    );
    // Parsed as Argo CD parses it: the values are the script files, byte for byte.
    let cm: Value = serde_yaml::from_str(&committed).expect("argocd-cm.yaml is YAML");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let data = cm["data"].as_object().expect("data");
    let mut want_keys = BTreeSet::new();
    for kind in Kind::ALL {
        let key = format!("robofleet.io_{}", kind.name());
        let health = format!("resource.customizations.health.{key}");
        assert_eq!(data[&health], read(&health_script(kind)), "{health}");
        want_keys.insert(health);
        let ignore = format!("resource.customizations.ignoreResourceUpdates.{key}");
        let ignored: Value = serde_yaml::from_str(data[&ignore].as_str().expect("string"))
            .expect("ignoreResourceUpdates is YAML");
        let paths: Vec<&str> = ["jsonPointers", "jqPathExpressions"]
            .iter()
            .flat_map(|k| ignored[k].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .collect();
        assert!(!paths.is_empty(), "{ignore}");
        for p in &paths {
            assert!(
                p.contains("status"),
                "{ignore}: {p} is not a status counter"
            );
            let segments: Vec<&str> = p
                .split(['/', '.', '[', ']', '?'])
                .filter(|s| !s.is_empty())
                .collect();
            for never in ["phase", "conditions", "observedGeneration", "message"] {
                assert!(
                    !segments.contains(&never),
                    "{ignore} must not ignore {never}: {p}"
                );
            }
            assert!(
                !segments.iter().any(|s| s.ends_with("Revision")),
                "{ignore} must not ignore revisions: {p}"
            );
        }
        want_keys.insert(ignore);
        if kind.verbs().is_empty() {
            continue;
        }
        let actions_key = format!("resource.customizations.actions.{key}");
        let actions: Value = serde_yaml::from_str(data[&actions_key].as_str().expect("string"))
            .expect("actions value is YAML");
        assert_eq!(actions["discovery.lua"], read(&discovery_script(kind)));
        let defs = actions["definitions"].as_array().expect("definitions");
        let names: Vec<&str> = defs.iter().filter_map(|d| d["name"].as_str()).collect();
        assert_eq!(names, kind.verbs(), "{actions_key}");
        for d in defs {
            let verb = d["name"].as_str().expect("name");
            assert_eq!(d["action.lua"], read(&action_script(kind, verb)), "{verb}");
        }
        want_keys.insert(actions_key);
    }
    assert_eq!(
        data.keys().cloned().collect::<BTreeSet<_>>(),
        want_keys,
        "argocd-cm keys"
    );
}

fn yaml_file(rel: &str) -> Value {
    serde_yaml::from_str(&read(&repo().join(rel))).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn sync_options(v: &Value) -> Vec<String> {
    v["spec"]["syncPolicy"]["syncOptions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

fn wave(v: &Value) -> i64 {
    v["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn applications_and_the_model_repository_follow_the_sync_rules() {
    let operator = yaml_file("deploy/argocd/applications/robofleet-operator.yaml");
    let models = yaml_file("deploy/argocd/applications/fleet-models.yaml");
    for app in [&operator, &models] {
        assert_eq!(app["apiVersion"], "argoproj.io/v1alpha1");
        assert_eq!(app["kind"], "Application");
        assert_eq!(app["metadata"]["namespace"], "argocd");
        assert!(app["spec"]["source"]["repoURL"].is_string());
        assert!(app["spec"]["destination"]["namespace"].is_string());
    }
    assert_eq!(operator["spec"]["source"]["path"], "charts/robofleet");
    assert!(
        sync_options(&operator).contains(&"ServerSideApply=true".to_owned()),
        "the CRDs need server-side apply"
    );
    for entry in operator["spec"]["source"]["helm"]["valuesObject"]["images"]
        .as_array()
        .expect("images")
        .iter()
        .chain(
            operator["spec"]["source"]["helm"]["valuesObject"]["bridgeImages"]
                .as_array()
                .expect("bridgeImages"),
        )
    {
        assert!(
            entry["image"]
                .as_str()
                .is_some_and(|i| i.contains("@sha256:")),
            "allow-listed images are pinned by digest: {entry}"
        );
    }
    assert!(wave(&operator) < wave(&models), "operator before models");
    let labels = &models["spec"]["syncPolicy"]["managedNamespaceMetadata"]["labels"];
    assert_eq!(labels["robofleet.io/robot-workloads"], "true");
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "privileged");

    // The example model repository: every file of the kustomization, by kind.
    let kustomization = yaml_file("deploy/argocd/model-repo/kustomization.yaml");
    let mut by_kind: BTreeMap<Kind, Vec<Value>> = BTreeMap::new();
    for file in kustomization["resources"].as_array().expect("resources") {
        let v = yaml_file(&format!(
            "deploy/argocd/model-repo/{}",
            file.as_str().expect("file")
        ));
        by_kind.entry(kind_of(&v)).or_default().push(v);
    }
    let max = |k: Kind| by_kind[&k].iter().map(wave).max().expect("some");
    let min = |k: Kind| by_kind[&k].iter().map(wave).min().expect("some");
    assert!(
        max(Kind::SafetyPolicy) < min(Kind::SensorSim),
        "SafetyPolicies first"
    );
    assert!(
        max(Kind::SensorSim) < min(Kind::InferenceService),
        "InferenceServices last"
    );
    for v in by_kind.values().flatten() {
        let ann = &v["metadata"]["annotations"];
        assert!(
            ann.get("argocd.argoproj.io/hook").is_none(),
            "no hooks on robofleet kinds: {}",
            v["metadata"]["name"]
        );
    }
    for p in &by_kind[&Kind::SafetyPolicy] {
        let opts = p["metadata"]["annotations"]["argocd.argoproj.io/sync-options"]
            .as_str()
            .unwrap_or_default();
        assert!(
            opts.contains("Prune=false") && opts.contains("Delete=false"),
            "SafetyPolicies are prune-protected: {opts}"
        );
    }
    // Templates named by a preflight exist in the repository.
    for isvc in &by_kind[&Kind::InferenceService] {
        for pre in isvc["spec"]["rollout"]["preflight"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = &pre["sensorSimTemplate"]["name"];
            assert!(
                by_kind[&Kind::SensorSim]
                    .iter()
                    .any(|s| &s["metadata"]["name"] == name && s["spec"]["template"] == true),
                "preflight template {name} is in the repository"
            );
        }
    }

    // Argo CD RBAC: the action resources name exactly the verbs.
    let rbac = yaml_file("deploy/argocd/argocd-rbac-cm.yaml");
    let policy = rbac["data"]["policy.robofleet.csv"]
        .as_str()
        .expect("policy.robofleet.csv");
    assert!(policy.contains("action/robofleet.io/InferenceService/*"));
    for verb in Kind::SafetyPolicy.verbs() {
        assert!(policy.contains(&format!("action/robofleet.io/SafetyPolicy/{verb}")));
    }
    let binding = yaml_file("deploy/argocd/argocd-server-verbs.yaml");
    assert_eq!(binding["roleRef"]["name"], "robofleet-rollout-operator");
    assert_eq!(binding["subjects"][0]["name"], "argocd-server");
}

// ---- live objects from the operator on the local cluster ------------------------------------

mod live {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
    use k8s_openapi::api::scheduling::v1::PriorityClass;
    use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
    use kube::{Api, Client, ResourceExt};
    use robofleet_crds::{InferenceService, SafetyPolicy, SensorSim, labels};
    use robofleet_tests::{
        HarnessError, TestCluster, TestNamespace, install_crds, random_suffix, wait_until,
        workspace_binary,
    };

    const IMAGE: &str = "robofleet/inference-sidecar:dev";
    const BRIDGE: &str = "robofleet/ros2-bridge:dev";

    fn dynamic<K: kube::Resource<DynamicType = ()>>(
        client: &Client,
        ns: &str,
    ) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<K>(&()))
    }

    /// The object as the API server returns it, without managedFields.
    async fn fetch(api: &Api<DynamicObject>, name: &str) -> Result<Value, HarnessError> {
        let obj = api.get(name).await?;
        let mut v = serde_json::to_value(&obj).expect("a DynamicObject is JSON");
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
        Ok(v)
    }

    /// Checks the scripts on a live object against the fixture table and, with
    /// `ROBOFLEET_CAPTURE_FIXTURES=<dir>`, writes it there as `<stem>.json`.
    fn check_and_capture(stem: &str, obj: &Value, tmp: &Path) {
        let path = tmp.join(format!("{stem}.json"));
        let text = serde_json::to_string_pretty(obj).expect("JSON") + "\n";
        std::fs::write(&path, &text).expect("write live object");
        let message = check_health_and_discovery(&path, expectation(stem));
        eprintln!("live {stem}: {} — {message}", expectation(stem).health);
        if let Some(dir) = std::env::var_os("ROBOFLEET_CAPTURE_FIXTURES").map(PathBuf::from) {
            std::fs::create_dir_all(&dir).expect("capture dir");
            std::fs::write(dir.join(format!("{stem}.json")), &text).expect("write fixture");
        }
    }

    fn stalled_reason(obj: &Value) -> Option<String> {
        obj["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Stalled" && c["status"] == "True")
            .and_then(|c| c["reason"].as_str().map(str::to_owned))
    }

    fn observed(obj: &Value) -> bool {
        obj["status"]["observedGeneration"].as_i64().is_some()
            && obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    }

    fn sha256_hex(data: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(data))
    }

    /// A cluster tool (`kubectl`, `helm`) from the harness's bin dir, with the test kubeconfig.
    fn tool(name: &str, cluster: &TestCluster) -> Command {
        let bin = std::env::var_os("ROBOFLEET_CLUSTER_BIN")
            .map(|d| PathBuf::from(d).join(name))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from(name));
        let mut cmd = Command::new(bin);
        if let Some(state) = &cluster.state_dir {
            cmd.env("KUBECONFIG", state.join("kubeconfig"));
        }
        cmd
    }

    fn ok(cmd: &mut Command, input: Option<&str>) -> String {
        use std::io::Write;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input.unwrap_or_default().as_bytes())
            .expect("write stdin");
        drop(stdin);
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Everything in deploy/argocd/ that is not an Argo CD object passes server dry run: the
    /// argocd-cm and argocd-rbac-cm patches (as ConfigMaps in `ns`), the ClusterRoleBinding, and
    /// the example model repository's resources in a robot namespace; the chart renders with the
    /// operator Application's values.
    fn server_dry_run(cluster: &TestCluster, ns: &str, robot_ns: &str) {
        for file in ["argocd-cm.yaml", "argocd-rbac-cm.yaml"] {
            let mut cm = yaml_file(&format!("deploy/argocd/{file}"));
            cm["metadata"]["namespace"] = json!(ns);
            ok(
                tool("kubectl", cluster).args(["apply", "--dry-run=server", "-f", "-"]),
                Some(&cm.to_string()),
            );
        }
        ok(
            tool("kubectl", cluster)
                .args(["apply", "--dry-run=server", "-f"])
                .arg(repo().join("deploy/argocd/argocd-server-verbs.yaml")),
            None,
        );
        let out = ok(
            tool("kubectl", cluster)
                .args(["apply", "--dry-run=server", "-n", robot_ns, "-k"])
                .arg(repo().join("deploy/argocd/model-repo")),
            None,
        );
        for name in [
            "safetypolicy.robofleet.io/front-stop",
            "sensorsim.robofleet.io/lidar-approach",
            "inferenceservice.robofleet.io/pallet-detector",
        ] {
            assert!(out.contains(name), "dry run did not cover {name}: {out}");
        }
        let app = yaml_file("deploy/argocd/applications/robofleet-operator.yaml");
        let values =
            serde_json::to_string(&app["spec"]["source"]["helm"]["valuesObject"]).expect("values");
        let rendered = ok(
            tool("helm", cluster)
                .args(["template", "robofleet"])
                .arg(repo().join("charts/robofleet"))
                .args([
                    "--namespace",
                    "robofleet-system",
                    "--include-crds",
                    "-f",
                    "-",
                ]),
            Some(&values),
        );
        assert!(
            rendered.contains("@sha256:"),
            "the Application's pinned images reach the chart"
        );
    }

    /// Runs an action on `live` with the gopher-lua harness, as Argo CD does (discovery must
    /// enable it), and applies the annotation it set as a merge patch; returns the value it set.
    async fn apply_action(
        api: &Api<DynamicObject>,
        live: &Value,
        verb: &str,
        tmp: &Path,
    ) -> anyhow::Result<String> {
        let name = live["metadata"]["name"].as_str().expect("name");
        let kind = kind_of(live);
        let discovery = {
            let path = tmp.join(format!("{name}-{verb}.json"));
            std::fs::write(&path, live.to_string())?;
            let actions = run_ok(Interp::Gopher, "discovery", &discovery_script(kind), &path);
            let patched = run_ok(Interp::Gopher, "action", &action_script(kind, verb), &path);
            (actions, patched)
        };
        let (actions, patched) = discovery;
        let entry = actions
            .as_array()
            .and_then(|l| l.iter().find(|a| a["name"] == verb))
            .expect("the verb is listed");
        anyhow::ensure!(entry["disabled"] == false, "{verb} is disabled on {live}");
        let key = if verb == "approve" { APPROVE } else { ACTION };
        let value = patched["metadata"]["annotations"][key]
            .as_str()
            .expect("the action sets its annotation")
            .to_owned();
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
        )
        .await?;
        Ok(value)
    }

    #[tokio::test]
    #[ignore = "needs cluster"]
    async fn scripts_on_live_objects_and_fixture_capture() -> anyhow::Result<()> {
        let cluster = TestCluster::connect().await?;
        if cluster
            .require_pod_runner("scripts_on_live_objects_and_fixture_capture")?
            .is_none()
        {
            return Ok(());
        }
        let client = cluster.client.clone();
        install_crds(&client).await?;
        let pc: PriorityClass = serde_json::from_value(json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": "robofleet-safety-critical"}, "value": 1_000_000_000,
        }))?;
        Api::<PriorityClass>::all(client.clone())
            .patch(
                "robofleet-safety-critical",
                &PatchParams::apply("robofleet-tests").force(),
                &Patch::Apply(&pc),
            )
            .await?;
        let tmp = std::env::temp_dir().join(format!("robofleet-argocd-live-{}", random_suffix()));
        std::fs::create_dir_all(&tmp)?;

        let kubeconfig = cluster.state_dir.as_ref().map(|d| d.join("kubeconfig"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = tokio::process::Command::new(workspace_binary("robofleet-operator"));
        cmd.args([
            "--lease-name",
            &format!("robofleet-operator-{}", random_suffix()),
            "--metrics-addr",
            "127.0.0.1:0",
            "--image",
            &format!("default={IMAGE}"),
            "--bridge-image",
            &format!("bridge={BRIDGE}"),
            "--safety-metrics-port",
            &port.to_string(),
        ])
        .env("RUST_LOG", "info,kube=warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
        if let Some(k) = &kubeconfig {
            cmd.env("KUBECONFIG", k);
        }
        let mut operator = cmd.spawn()?;

        let key = format!("test.robofleet.io/argocd-{}", random_suffix());
        let nodes: Api<Node> = Api::all(client.clone());
        let robots: Vec<String> = nodes
            .list(&ListParams::default().labels(&format!("{}=true", labels::ROBOT)))
            .await?
            .items
            .iter()
            .filter(|n| n.labels().get("kwok.x-k8s.io/node").map(String::as_str) == Some("fake"))
            .map(ResourceExt::name_any)
            .collect();
        // A simulated robot Node no kubelet (kwok or the pod runner) serves: pods bound to it
        // stay without container statuses, so a SensorSim on it stays Pending.
        let ghost = format!("argocd-ghost-{}", random_suffix());
        anyhow::ensure!(robots.len() >= 3, "need 3 robots, have {}", robots.len());
        let label = |node: String, value: Option<&'static str>| {
            let nodes = nodes.clone();
            let patch = json!({"metadata": {"labels": {key.clone(): value}}});
            async move {
                nodes
                    .patch(&node, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
            }
        };
        for r in &robots[..2] {
            label(r.clone(), Some("yes")).await?;
        }
        // the third robot carries the Healthy SafetyPolicy (a LIDAR feeds its monitor)
        label(robots[2].clone(), Some("guard")).await?;

        let result = async {
            let ns = TestNamespace::create(&client, "argocd-live", &[(labels::ROBOT_WORKLOADS, "true")])
                .await?;
            let other = TestNamespace::create(&client, "argocd-noworkloads", &[]).await?;
            let isvcs = dynamic::<InferenceService>(&client, &ns.name);
            let other_isvcs = dynamic::<InferenceService>(&client, &other.name);
            let policies = dynamic::<SafetyPolicy>(&client, &ns.name);
            let sims = dynamic::<SensorSim>(&client, &ns.name);
            let pp = PostParams::default();
            let model = repo().join("tests/fixtures/models/add_mul.onnx");
            let good_sha = sha256_hex(&std::fs::read(&model)?);
            let isvc = |name: &str, selector: &str, sha: &str| -> Result<DynamicObject, serde_json::Error> {
                serde_json::from_value(json!({
                    "apiVersion": "robofleet.io/v1alpha1", "kind": "InferenceService",
                    "metadata": {"name": name},
                    "spec": {
                        "model": {"uri": format!("file://{}", model.display()), "sha256": sha, "version": "v1"},
                        "robotSelector": {"matchLabels": {selector: "yes"}},
                    }
                }))
            };
            let policy = |name: &str, selector: &str| -> Result<DynamicObject, serde_json::Error> {
                serde_json::from_value(json!({
                    "apiVersion": "robofleet.io/v1alpha1", "kind": "SafetyPolicy",
                    "metadata": {"name": name},
                    "spec": {
                        "robotSelector": {"matchLabels": {selector: "yes"}},
                        "source": {"topic": "/scan", "sourceTimeout": "500ms", "frame": "laser"},
                        "zones": [{"name": "front", "shape": "sector", "action": "stop",
                                   "minAngleDeg": -30, "maxAngleDeg": 30, "range": 0.35}],
                        "release": {"mode": "Latched"},
                    }
                }))
            };
            isvcs.create(&pp, &isvc("detector", &key, &good_sha)?).await?;
            isvcs
                .create(&pp, &isvc("nobody", "test.robofleet.io/no-such-label", &good_sha)?)
                .await?;
            other_isvcs.create(&pp, &isvc("detector", &key, &good_sha)?).await?;
            // No LIDAR feeds these monitors: they never become Ready.
            policies.create(&pp, &policy("watch", &key)?).await?;
            policies
                .create(&pp, &policy("nobody", "test.robofleet.io/no-such-label")?)
                .await?;
            let template: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "robofleet.io/v1alpha1", "kind": "SensorSim",
                "metadata": {"name": "lidar-approach"},
                "spec": {
                    "template": true,
                    "sensor": {"type": "lidar2d", "topic": "/scan", "rateHz": 15},
                    "expect": [{"name": "stop-on-approach", "safetyStopWithin": "200ms", "whenDistanceBelow": 0.35}],
                    "duration": "10s",
                }
            }))?;
            sims.create(&pp, &template).await?;
            // Sandboxed sims against the monitor of policy "nobody" (a box approaching at 1 m/s):
            // one whose expectation holds, one whose cannot (a stop by 0.9 m; the policy stops at
            // 0.35 m), one aimed at robots that are not simulated.
            let sim = |name: &str, expect: Value, target: Option<Value>| -> Result<DynamicObject, serde_json::Error> {
                let mut spec = json!({
                    "sensor": {"type": "lidar2d", "topic": "/scan", "rateHz": 40, "lidar": {"beams": 360}},
                    "duration": "3500ms",
                    "scenario": {"obstacles": [{"name": "box", "bearingDeg": 0, "startDistance": 1.2, "speed": 1.0,
                                                "minDistance": 0.15, "width": 0.2, "disappearAt": "2s"}]},
                    "expect": expect,
                    "unitsUnderTest": {"safetyPolicyRef": {"name": "nobody"}},
                });
                if let Some(t) = target {
                    spec["target"] = t;
                }
                serde_json::from_value(json!({
                    "apiVersion": "robofleet.io/v1alpha1", "kind": "SensorSim",
                    "metadata": {"name": name}, "spec": spec,
                }))
            };
            sims.create(&pp, &sim("approach-pass",
                json!([{"name": "stops", "safetyStopWithin": "300ms", "whenDistanceBelow": 0.35}]), None)?).await?;
            sims.create(&pp, &sim("approach-fail",
                json!([{"name": "early", "safetyStopWithin": "100ms", "whenDistanceBelow": 0.9}]), None)?).await?;
            sims.create(&pp, &sim("on-real-robot", json!([]),
                Some(json!({"mode": "Robots", "robotSelector": {"matchLabels": {key.clone(): "yes"}}})))?).await?;
            // A sim on the ghost robot: its pod never starts.
            let node: Node = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": ghost, "labels": {labels::ROBOT: "true", labels::SIMULATED: "true",
                                                     key.clone(): "ghost"}},
            }))?;
            nodes.create(&pp, &node).await?;
            sims.create(&pp, &sim("on-ghost", json!([]),
                Some(json!({"mode": "Robots", "robotSelector": {"matchLabels": {key.clone(): "ghost"}}})))?).await?;

            // A rollout to watch: the first revision goes out at once; the next one in waves.
            let roller_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let roller = |file: &str| -> anyhow::Result<Value> {
                let path = repo().join("tests/fixtures/models").join(file);
                Ok(json!({
                    "apiVersion": "robofleet.io/v1alpha1", "kind": "InferenceService",
                    "metadata": {"name": "roller"},
                    "spec": {
                        "model": {"uri": format!("file://{}", path.display()),
                                  "sha256": sha256_hex(&std::fs::read(&path)?), "version": file},
                        "runtime": {"ports": {"inference": roller_port, "metrics": roller_port + 1}},
                        "robotSelector": {"matchLabels": {key.clone(): "yes"}},
                        "rollout": {
                            "waves": [
                                {"name": "canary", "robots": 1, "pause": {"duration": "30m"}},
                                {"name": "early", "percent": 50, "pause": {"untilApproved": true}},
                                {"name": "rest", "percent": 100},
                            ],
                            // the "watch" monitors have no scans: their stop locks must not hold it
                            "gates": {"safetyStopActive": "Ignore"},
                        },
                    }
                }))
            };
            isvcs.create(&pp, &serde_json::from_value(roller("rollout_v1.onnx")?)?).await?;

            // A LIDAR on the third robot (a sensor-sim pod in its ROS domain that also consumes
            // the stop lock, as twist_mux would) makes the monitors of policy "guard" Ready and
            // enforcing: Healthy.
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
            cms.create(&pp, &serde_json::from_value(json!({
                "metadata": {"name": "lidar"},
                "data": {"scenario.yaml": "sensor: {type: lidar2d, topic: /scan, rateHz: 20, lidar: {beams: 360}}\n\
                                           duration: 900s\nunitsUnderTest: {stopTopic: /safety/stop}\n"},
            }))?).await?;
            let lidar: Pod = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "lidar", "labels": {"app.kubernetes.io/managed-by": "robofleet-operator"}},
                "spec": {
                    "nodeName": robots[2], "hostNetwork": true, "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "sim", "image": BRIDGE,
                        "args": ["sensor-sim", "--config", "/etc/sim/scenario.yaml", "--result", "/results/result.json"],
                        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/sim"},
                                         {"name": "results", "mountPath": "/results"}],
                    }],
                    "volumes": [{"name": "cfg", "configMap": {"name": "lidar"}},
                                {"name": "results", "emptyDir": {}}],
                }
            }))?;
            Api::<Pod>::namespaced(client.clone(), &ns.name).create(&pp, &lidar).await?;
            let mut guard = serde_json::to_value(policy("guard", &key)?)?;
            guard["spec"]["robotSelector"]["matchLabels"][&key] = json!("guard");
            policies.create(&pp, &serde_json::from_value(guard)?).await?;

            let last = std::cell::RefCell::new(Value::Null);
            let last = &last;
            for (api, name, stem, done) in [
                (&isvcs, "detector", "inferenceservice-healthy",
                 (|o: &Value| observed(o) && o["status"]["phase"] == "Healthy" && o["status"]["robots"]["ready"] == 2) as fn(&Value) -> bool),
                (&isvcs, "nobody", "inferenceservice-degraded-no-matching-robots",
                 |o: &Value| observed(o) && stalled_reason(o).as_deref() == Some("NoMatchingRobots")),
                (&other_isvcs, "detector", "inferenceservice-degraded-namespace-not-allowed",
                 |o: &Value| observed(o) && stalled_reason(o).as_deref() == Some("NamespaceNotAllowed")),
                (&policies, "nobody", "safetypolicy-degraded-no-matching-robots",
                 |o: &Value| observed(o) && stalled_reason(o).as_deref() == Some("NoMatchingRobots")),
                (&policies, "watch", "safetypolicy-progressing",
                 |o: &Value| observed(o) && o["status"]["phase"] == "Progressing" && o["status"]["robots"]["total"] == 2),
                (&sims, "on-ghost", "sensorsim-pending",
                 |o: &Value| observed(o) && o["status"]["phase"] == "Pending"),
            ] {
                wait_until(Duration::from_secs(120), stem, move || async move {
                    let o = fetch(api, name).await?;
                    let finished = done(&o);
                    *last.borrow_mut() = o;
                    Ok(finished)
                })
                .await
                .map_err(|e| anyhow::anyhow!("{e}: last seen {}", last.borrow()))?;
                check_and_capture(stem, &last.borrow(), &tmp);
            }
            // A relaxation (the stop zone shrinks) waits for approval; the approve action, run
            // as Argo CD runs it and applied as a merge patch, approves exactly it.
            policies
                .patch("watch", &PatchParams::default(), &Patch::Merge(json!({"spec": {"zones": [
                    {"name": "front", "shape": "sector", "action": "stop",
                     "minAngleDeg": -30, "maxAngleDeg": 30, "range": 0.2}]}})))
                .await?;
            let policies_ref = &policies;
            let pending = |o: &Value| {
                o["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter().any(|c| c["type"] == "ApprovalPending" && c["status"] == "True")
                })
            };
            wait_until(Duration::from_secs(60), "watch ApprovalPending", move || async move {
                let o = fetch(policies_ref, "watch").await?;
                let finished = observed(&o) && pending(&o);
                *last.borrow_mut() = o;
                Ok(finished)
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}: last seen {}", last.borrow()))?;
            let waiting = last.borrow().clone();
            check_and_capture("safetypolicy-approval-pending-progressing", &waiting, &tmp);
            let hash = waiting["status"]["pendingHash"].as_str().expect("pendingHash").to_owned();
            let hash = hash.as_str();
            apply_action(&policies, &waiting, "approve", &tmp).await?;
            wait_until(Duration::from_secs(60), "watch approved", move || async move {
                let o = fetch(policies_ref, "watch").await?;
                let finished = observed(&o) && !pending(&o) && o["status"]["approvedHash"] == hash;
                *last.borrow_mut() = o;
                Ok(finished)
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}: last seen {}", last.borrow()))?;
            let approved = last.borrow().clone();
            check_and_capture("safetypolicy-approved", &approved, &tmp);
            // reset: acknowledged in status.lastAction.
            let value = apply_action(&policies, &approved, "reset", &tmp).await?;
            let value = value.as_str();
            wait_until(Duration::from_secs(60), "reset acknowledged", move || async move {
                Ok(fetch(policies_ref, "watch").await?["status"]["lastAction"] == value)
            })
            .await?;

            // SensorSim phases: Running (seen while the pass sim runs), Succeeded, Failed, and
            // UnsafeTarget.
            let sims_ref = &sims;
            wait_until(Duration::from_secs(120), "approach-pass Running", move || async move {
                let o = fetch(sims_ref, "approach-pass").await?;
                let finished = observed(&o) && o["status"]["phase"] == "Running";
                *last.borrow_mut() = o;
                Ok(finished)
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}: last seen {}", last.borrow()))?;
            check_and_capture("sensorsim-running", &last.borrow(), &tmp);
            for (name, stem, phase) in [
                ("approach-pass", "sensorsim-succeeded", "Succeeded"),
                ("approach-fail", "sensorsim-failed", "Failed"),
                ("on-real-robot", "sensorsim-unsafe-target", "Failed"),
            ] {
                wait_until(Duration::from_secs(150), stem, move || async move {
                    let o = fetch(sims_ref, name).await?;
                    let finished = observed(&o) && o["status"]["phase"] == phase;
                    *last.borrow_mut() = o;
                    Ok(finished)
                })
                .await
                .map_err(|e| anyhow::anyhow!("{e}: last seen {}", last.borrow()))?;
                check_and_capture(stem, &last.borrow(), &tmp);
            }

            // A template is Healthy whatever its status says (the SensorSim controller may or may
            // not have written one yet).
            let _ = wait_until(Duration::from_secs(20), "template status", || async {
                Ok(observed(&fetch(&sims, "lidar-approach").await?))
            })
            .await;
            check_and_capture("sensorsim-template", &fetch(&sims, "lidar-approach").await?, &tmp);

            // A rollout, driven with the Argo CD actions: the canary wave in its timed pause
            // (Progressing), held by the pause action (Suspended), resumed, held by spec.paused
            // in git (Suspended, only abort offered), then aborted (Degraded, retry offered).
            let isvcs_ref = &isvcs;
            let wait_roller = |what: &'static str, secs: u64, done: Box<dyn Fn(&Value) -> bool>| async move {
                let done = &done;
                wait_until(Duration::from_secs(secs), what, move || async move {
                    let o = fetch(isvcs_ref, "roller").await?;
                    let finished = observed(&o) && done(&o);
                    *last.borrow_mut() = o;
                    Ok(finished)
                })
                .await
                .map_err(|e| anyhow::anyhow!("{e}: last seen {}", last.borrow()))?;
                anyhow::Ok(last.borrow().clone())
            };
            wait_roller("roller Healthy at its first revision", 120, Box::new(|o: &Value| {
                o["status"]["phase"] == "Healthy" && o["status"]["robots"]["ready"] == 2
            }))
            .await?;
            let next = roller("rollout_v2.onnx")?;
            isvcs
                .patch("roller", &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"model": next["spec"]["model"]}})))
                .await?;
            let live = wait_roller("roller canary wave updated, in its pause", 150, Box::new(|o: &Value| {
                o["status"]["phase"] == "Progressing"
                    && o["status"]["currentWave"] == 1
                    && o["status"]["canaryRevision"].is_object()
                    && o["status"]["message"].as_str().is_some_and(|m| m.contains("pausing until"))
            }))
            .await?;
            check_and_capture("inferenceservice-progressing-wave", &live, &tmp);
            let value = apply_action(&isvcs, &live, "pause", &tmp).await?;
            let live = wait_roller("roller paused by the action", 60, Box::new(move |o: &Value| {
                o["status"]["lastAction"] == value.as_str() && o["status"]["phase"] == "Paused"
            }))
            .await?;
            check_and_capture("inferenceservice-paused", &live, &tmp);
            let value = apply_action(&isvcs, &live, "resume", &tmp).await?;
            wait_roller("roller resumed", 60, Box::new(move |o: &Value| {
                o["status"]["lastAction"] == value.as_str() && o["status"]["phase"] == "Progressing"
            }))
            .await?;
            isvcs
                .patch("roller", &PatchParams::default(), &Patch::Merge(json!({"spec": {"paused": true}})))
                .await?;
            let live = wait_roller("roller paused by spec.paused", 60, Box::new(|o: &Value| {
                o["status"]["phase"] == "Paused"
            }))
            .await?;
            check_and_capture("inferenceservice-paused-in-git", &live, &tmp);
            isvcs
                .patch("roller", &PatchParams::default(), &Patch::Merge(json!({"spec": {"paused": false}})))
                .await?;
            let live = wait_roller("roller unpaused", 60, Box::new(|o: &Value| {
                o["status"]["phase"] == "Progressing"
            }))
            .await?;
            let value = apply_action(&isvcs, &live, "abort", &tmp).await?;
            // aborted, and every robot back on the stable revision (Reconciling False)
            let live = wait_roller("roller aborted and rolled back", 120, Box::new(move |o: &Value| {
                o["status"]["lastAction"] == value.as_str()
                    && o["status"]["phase"] == "Degraded"
                    && o["status"]["abortedRevision"].is_string()
                    && o["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| {
                        c["type"] == "Reconciling" && c["status"] == "False"
                    }))
            }))
            .await?;
            check_and_capture("inferenceservice-aborted", &live, &tmp);

            // A Healthy Latched policy: reset acknowledged; then a relaxation waits for approval
            // while the policy stays Healthy.
            wait_until(Duration::from_secs(150), "guard Healthy", move || async move {
                let o = fetch(policies_ref, "guard").await?;
                let finished = observed(&o)
                    && o["status"]["phase"] == "Healthy"
                    && o["status"]["robots"]["enforcing"] == 1;
                *last.borrow_mut() = o;
                Ok(finished)
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}: last seen {}", last.borrow()))?;
            let healthy = last.borrow().clone();
            let value = apply_action(&policies, &healthy, "reset", &tmp).await?;
            let value = value.as_str();
            wait_until(Duration::from_secs(60), "guard reset acknowledged", move || async move {
                let o = fetch(policies_ref, "guard").await?;
                let finished = observed(&o)
                    && o["status"]["lastAction"] == value
                    && o["status"]["phase"] == "Healthy";
                *last.borrow_mut() = o;
                Ok(finished)
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}: last seen {}", last.borrow()))?;
            check_and_capture("safetypolicy-healthy-latched", &last.borrow(), &tmp);
            policies
                .patch("guard", &PatchParams::default(), &Patch::Merge(json!({"spec": {"zones": [
                    {"name": "front", "shape": "sector", "action": "stop",
                     "minAngleDeg": -30, "maxAngleDeg": 30, "range": 0.2}]}})))
                .await?;
            wait_until(Duration::from_secs(60), "guard ApprovalPending, Healthy", move || async move {
                let o = fetch(policies_ref, "guard").await?;
                let finished = observed(&o) && pending(&o) && o["status"]["phase"] == "Healthy";
                *last.borrow_mut() = o;
                Ok(finished)
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}: last seen {}", last.borrow()))?;
            check_and_capture("safetypolicy-approval-pending", &last.borrow(), &tmp);

            // A wrong sha256 without automatic rollback: every robot falls back to the stable
            // revision and stays there, ModelLoadFailed (the stop locks of the unfed "watch"
            // monitors are engaged: the gate ignores them).
            isvcs
                .patch("detector", &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"model": {"sha256": "0".repeat(64)},
                        "rollout": {"strategy": "AllAtOnce", "waves": null, "autoRollback": false,
                                    "gates": {"safetyStopActive": "Ignore"}}}})))
                .await?;
            wait_until(Duration::from_secs(150), "detector ModelLoadFailed", move || async move {
                let o = fetch(isvcs_ref, "detector").await?;
                let finished =
                    observed(&o) && stalled_reason(&o).as_deref() == Some("ModelLoadFailed");
                *last.borrow_mut() = o;
                Ok(finished)
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}: last seen {}", last.borrow()))?;
            check_and_capture("inferenceservice-degraded-model-load-failed", &last.borrow(), &tmp);

            // With the operator gone: a spec change nobody has observed, and an object nobody has
            // written a status for.
            let _ = operator.start_kill();
            let _ = operator.wait().await;
            isvcs
                .patch("detector", &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"model": {"sha256": good_sha}}})))
                .await?;
            let stale = fetch(&isvcs, "detector").await?;
            anyhow::ensure!(!observed(&stale), "the operator is gone: {stale}");
            check_and_capture("inferenceservice-generation-not-observed", &stale, &tmp);
            isvcs.create(&pp, &isvc("fresh", &key, &good_sha)?).await?;
            check_and_capture("inferenceservice-no-status", &fetch(&isvcs, "fresh").await?, &tmp);
            // The approve action applied, not yet acted on: approve is offered no more.
            let waiting = fetch(&policies, "guard").await?;
            let hash = apply_action(&policies, &waiting, "approve", &tmp).await?;
            let given = fetch(&policies, "guard").await?;
            anyhow::ensure!(pending(&given) && given["status"]["pendingHash"] == hash.as_str(), "{given}");
            check_and_capture("safetypolicy-approval-given", &given, &tmp);

            server_dry_run(&cluster, &other.name, &ns.name);
            anyhow::Ok(())
        }
        .await;

        for r in &robots[..3] {
            let _ = label(r.clone(), None).await;
        }
        let _ = nodes.delete(&ghost, &Default::default()).await;
        let _ = operator.start_kill();
        let _ = operator.wait().await;
        let _ = std::fs::remove_dir_all(&tmp);
        result
    }
}
