//! Pure checks of the generated CRDs: the committed files are current, the examples round-trip
//! through the Rust types, defaults are what the docs promise, every field is documented, every
//! CEL rule has a message naming its field, and what CEL walks is bounded.

#![allow(clippy::expect_used)] // a test helper may panic with context

use std::path::{Path, PathBuf};

use robofleet_crds::generate::{self, Field};
use robofleet_crds::inference_service::{ExecutionProvider, RolloutStrategy};
use robofleet_crds::{InferenceService, SafetyPolicy, SensorSim, duration};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example(name: &str) -> Value {
    let path = repo().join("docs/reference/examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `sub` is contained in `sup` (objects: every key of `sub` with a contained value).
fn contained(sub: &Value, sup: &Value) -> bool {
    match (sub, sup) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| contained(v, w))),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(v, w)| contained(v, w))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => sub == sup,
    }
}

#[test]
fn committed_generated_files_are_current() {
    let crds = generate::crds();
    for crd in &crds {
        let path = repo().join("deploy/crds").join(generate::file_name(crd));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generate::to_yaml(crd).expect("yaml"),
            "{} is stale: run `make generate`",
            path.display()
        );
    }
    let docs = std::fs::read_to_string(repo().join("docs/reference/crds.md")).unwrap_or_default();
    assert!(
        docs == generate::reference_markdown(&crds).expect("markdown"),
        "docs/reference/crds.md is stale: run `make generate`"
    );
}

#[test]
fn yaml_is_safe_for_yaml_1_1_readers() {
    for crd in generate::crds() {
        let yaml = generate::to_yaml(&crd).expect("yaml");
        // kubectl reads YAML 1.1: no bare y/n/yes/no/on/off scalars anywhere
        for line in yaml.lines() {
            let t = line.trim_start().trim_start_matches("- ");
            for word in ["y", "n", "yes", "no", "on", "off"] {
                assert!(t != word && !t.starts_with(&format!("{word}:")), "{line}");
                assert!(!t.ends_with(&format!(": {word}")), "{line}");
            }
        }
        // and the quoting changed nothing a YAML 1.2 reader sees
        let back: Value = serde_yaml::from_str(&yaml).expect("parses");
        assert_eq!(back, serde_json::to_value(&crd).expect("json"));
    }
}

#[test]
fn quoting_handles_keys_items_and_values() {
    let q = generate::quote_yaml11_booleans("a:\n  y:\n    - y\n    - x\n  b: no\n  c: n o\n");
    assert_eq!(q, "a:\n  'y':\n    - 'y'\n    - x\n  b: 'no'\n  c: n o\n");
}

#[test]
fn examples_round_trip_through_the_types() {
    for (file, kind) in [
        ("inferenceservice.yaml", "InferenceService"),
        ("inferenceservice-minimal.yaml", "InferenceService"),
        ("safetypolicy.yaml", "SafetyPolicy"),
        ("safetypolicy-minimal.yaml", "SafetyPolicy"),
        ("sensorsim.yaml", "SensorSim"),
        ("sensorsim-minimal.yaml", "SensorSim"),
        ("sensorsim-camera.yaml", "SensorSim"),
    ] {
        let original = example(file);
        assert_eq!(original["kind"], kind, "{file}");
        let typed = match kind {
            "InferenceService" => serde_json::to_value(
                serde_json::from_value::<InferenceService>(original.clone()).expect(file),
            ),
            "SafetyPolicy" => serde_json::to_value(
                serde_json::from_value::<SafetyPolicy>(original.clone()).expect(file),
            ),
            _ => serde_json::to_value(
                serde_json::from_value::<SensorSim>(original.clone()).expect(file),
            ),
        }
        .expect("serializes");
        assert!(
            contained(&original["spec"], &typed["spec"]),
            "{file}: written back as {:#}",
            typed["spec"]
        );
    }
}

#[test]
fn minimal_specs_get_the_documented_defaults() {
    let isvc: InferenceService =
        serde_json::from_value(example("inferenceservice-minimal.yaml")).expect("parses");
    let spec = &isvc.spec;
    assert_eq!(
        spec.runtime.execution_providers,
        vec![ExecutionProvider::Cpu]
    );
    assert_eq!(
        spec.runtime.request_timeout.get(),
        Ok(std::time::Duration::from_secs(1))
    );
    assert_eq!(spec.runtime.max_request_bytes, 64 * 1024 * 1024);
    assert_eq!(spec.runtime.model_cache.keep, 2);
    assert_eq!(spec.rollout.strategy, RolloutStrategy::Waves);
    assert_eq!(spec.rollout.waves.len(), 2);
    assert_eq!(spec.rollout.waves[0].robots, Some(1));
    assert_eq!(spec.rollout.waves[1].percent, Some(100));
    assert!(!spec.paused);
    assert!(spec.robot_selector.is_none());

    let sp: SafetyPolicy =
        serde_json::from_value(example("safetypolicy-minimal.yaml")).expect("parses");
    assert_eq!(sp.spec.source.topic.0, "/scan");
    assert_eq!(sp.spec.source.source_timeout.as_str(), "200ms");
    assert_eq!(sp.spec.output.stop_topic.0, "/safety/stop");
    assert_eq!(sp.spec.output.heartbeat.as_str(), "100ms");
    assert_eq!(sp.spec.release.hold_time.as_str(), "1s");
    assert_eq!(sp.spec.min_enforcing_percent, 100);

    let sim: SensorSim = serde_json::from_value(example("sensorsim-minimal.yaml")).expect("parses");
    assert!(!sim.spec.template);
    assert_eq!(sim.spec.duration.as_str(), "30s");
    assert_eq!(sim.spec.sensor.rate_hz, 10.0);
    assert_eq!(
        sim.spec.target.mode,
        robofleet_crds::sensor_sim::TargetMode::Sandbox
    );
}

/// The defaults in the schema (what the API server fills in) equal the Rust defaults.
#[test]
fn schema_defaults_match_rust_defaults() {
    let isvc = generate::schema_json(&generate::crds()[0]).expect("schema");
    let facts = generate::facts(&isvc);
    let default_of = |path: &str| -> Value {
        facts
            .fields
            .iter()
            .find(|f| f.path == path)
            .and_then(|f| f.default.clone())
            .unwrap_or_else(|| panic!("{path} has no default"))
    };
    assert_eq!(
        default_of("spec.rollout"),
        serde_json::to_value(robofleet_crds::rollout::RolloutSpec::default()).expect("json")
    );
    assert_eq!(
        default_of("spec.runtime"),
        serde_json::to_value(robofleet_crds::inference_service::RuntimeSpec::default())
            .expect("json")
    );
    assert_eq!(default_of("spec.runtime.requestTimeout"), json!("1s"));
    assert_eq!(default_of("spec.paused"), json!(false));
}

fn all_facts() -> Vec<(String, generate::SchemaFacts)> {
    generate::crds()
        .iter()
        .map(|crd| {
            let schema = generate::schema_json(crd).expect("schema");
            (crd.spec.names.kind.clone(), generate::facts(&schema))
        })
        .collect()
}

/// Fields that come from Kubernetes' own types (documented upstream, not walked by our rules
/// beyond `has`/`size`).
fn upstream(f: &Field) -> bool {
    [
        ".robotSelector.",
        ".resources.",
        "status.conditions",
        ".lastFailure.time",
        "Time",
        "analyzedAt",
    ]
    .iter()
    .any(|p| f.path.contains(p))
        || f.path.ends_with("Time")
}

#[test]
fn every_field_is_documented() {
    for (kind, facts) in all_facts() {
        for f in &facts.fields {
            if f.path.ends_with("[]") || f.path.ends_with("{}") || upstream(f) {
                continue;
            }
            if ["apiVersion", "kind", "metadata"].contains(&f.path.as_str()) {
                continue;
            }
            assert!(
                f.description.len() > 3,
                "{kind} {} has no description",
                f.path
            );
        }
    }
}

#[test]
fn every_rule_has_a_message_naming_its_field() {
    let mut total = 0;
    for (kind, facts) in all_facts() {
        assert!(!facts.rules.is_empty(), "{kind}");
        assert!(
            facts
                .rules
                .iter()
                .any(|r| r.path.is_empty() && r.rule.contains("metadata.name")),
            "{kind} lacks the name-length rule"
        );
        for r in &facts.rules {
            total += 1;
            let field = r.message.split([' ', ':']).next().unwrap_or("");
            assert!(
                field.starts_with("spec.") || field == "metadata.name",
                "{kind} rule {:?} has message {:?}, which does not name a field",
                r.rule,
                r.message
            );
        }
    }
    assert!(total >= 40, "only {total} rules");
}

/// CEL's cost budget holds only if every list and string it may walk is bounded.
#[test]
fn lists_and_strings_in_specs_are_bounded() {
    for (kind, facts) in all_facts() {
        for f in facts
            .fields
            .iter()
            .filter(|f| f.path.starts_with("spec.") && !upstream(f))
        {
            let bounded = |key: &str| f.constraints.iter().any(|c| c.starts_with(key));
            match f.type_.as_str() {
                "array" => assert!(bounded("maxItems"), "{kind} {} has no maxItems", f.path),
                "string" if f.enum_values.is_empty() => {
                    assert!(bounded("maxLength"), "{kind} {} has no maxLength", f.path)
                }
                _ => {}
            }
        }
    }
}

/// The API server checks an integer against `int64(minimum)`, so an integer `0` passes
/// `minimum: 0.1`. Positive fractional minimums (and negative fractional maximums) must be written
/// as `exclusiveMinimum` instead.
#[test]
fn no_bound_is_truncated_for_integers() {
    fn walk(v: &Value, path: &str) {
        if let Some(map) = v.as_object() {
            if let Some(lo) = map.get("minimum").and_then(Value::as_f64) {
                assert!(lo <= 0.0 || lo.fract() == 0.0, "{path}: minimum {lo}");
            }
            if let Some(hi) = map.get("maximum").and_then(Value::as_f64) {
                assert!(hi >= 0.0 || hi.fract() == 0.0, "{path}: maximum {hi}");
            }
            for (k, child) in map {
                walk(child, &format!("{path}/{k}"));
            }
        } else if let Some(items) = v.as_array() {
            items.iter().for_each(|c| walk(c, path));
        }
    }
    for crd in generate::crds() {
        walk(
            &generate::schema_json(&crd).expect("schema"),
            &crd.spec.names.kind,
        );
    }
}

#[test]
fn durations_carry_the_parser_pattern() {
    let mut seen = 0;
    for (_, facts) in all_facts() {
        for f in &facts.fields {
            if f.constraints.iter().any(|c| c.contains("(ns|us|ms|s|m|h)")) {
                seen += 1;
                assert!(
                    f.constraints
                        .contains(&format!("pattern `{}`", duration::PATTERN)),
                    "{}",
                    f.path
                );
                if let Some(Value::String(d)) = &f.default {
                    assert!(duration::parse(d).is_ok(), "{} default {d}", f.path);
                }
            }
        }
    }
    assert!(seen >= 14, "only {seen} duration fields");
}

#[test]
fn kinds_have_names_columns_and_status() {
    for crd in generate::crds() {
        let names = &crd.spec.names;
        assert_eq!(crd.spec.group, robofleet_crds::GROUP);
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(
            names.categories.as_deref(),
            Some(&["robofleet".to_owned()][..])
        );
        assert!(names.short_names.as_ref().is_some_and(|s| !s.is_empty()));
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, robofleet_crds::VERSION);
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let cols: Vec<&str> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert!(cols.contains(&"Phase") && cols.contains(&"Age"), "{cols:?}");
    }
    let isvc = &generate::crds()[0];
    let cols: Vec<&str> = isvc.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    for c in [
        "Version", "Phase", "Ready", "Total", "Updated", "Wave", "Age",
    ] {
        assert!(cols.contains(&c), "InferenceService lacks column {c}");
    }
}

#[test]
fn descriptions_are_unwrapped_for_kubectl_explain() {
    assert_eq!(generate::unwrap_lines("a b\n c\n\nd\ne"), "a b c\n\nd e");
    for (kind, facts) in all_facts() {
        for f in &facts.fields {
            assert!(
                !f.description.replace("\n\n", "").contains('\n'),
                "{kind} {}: {:?}",
                f.path,
                f.description
            );
        }
    }
}
