//! The CEL rules checked without a cluster (kube-cel), for quick feedback while editing the types:
//! every rule compiles, every example passes, and every CEL case of the shared table
//! (`cases/mod.rs`) fails its bad variant with its own message and passes its good twin. The API
//! server remains the judge (`tests/tests/crds.rs`); this catches most mistakes in a second.

#![allow(clippy::expect_used)] // test helpers may panic with context

mod cases;

use cases::{Covers, RULES_COVERED_ELSEWHERE, cases, example, variant};
use kube_cel::{Validator, compile_schema};
use robofleet_crds::generate;
use serde_json::{Value, json};

fn schema_of(kind: &str) -> Value {
    let crd = generate::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    generate::schema_json(&crd).expect("schema")
}

fn kind_of(object: &Value) -> String {
    object["kind"].as_str().expect("kind").to_owned()
}

#[test]
fn every_rule_compiles() {
    for crd in generate::crds() {
        let compiled = compile_schema(&generate::schema_json(&crd).expect("schema"));
        let errors: Vec<String> = compiled
            .compilation_errors()
            .iter()
            .map(|e| format!("{e:?}"))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", crd.spec.names.kind);
    }
}

#[test]
fn examples_pass_every_rule() {
    for file in [
        "inferenceservice-minimal.yaml",
        "inferenceservice.yaml",
        "safetypolicy-minimal.yaml",
        "safetypolicy.yaml",
        "sensorsim-minimal.yaml",
        "sensorsim.yaml",
        "sensorsim-camera.yaml",
    ] {
        let object = example(file);
        let result = Validator::new().validate(&schema_of(&kind_of(&object)), &object, None);
        if let Err(e) = result {
            let messages: Vec<String> = e.as_slice().iter().map(|e| e.message.clone()).collect();
            panic!("{file}: {messages:?}");
        }
    }
}

#[test]
fn cel_cases_fail_with_their_own_message() {
    let mut failures = Vec::new();
    for case in cases().iter().filter(|c| matches!(c.covers, Covers::Rule)) {
        let label = format!("{} {} -> {:?}", case.base, case.at, case.bad);
        let good = variant(case, false);
        let schema = schema_of(&kind_of(&good));
        if let Err(e) = Validator::new().validate(&schema, &good, None) {
            let messages: Vec<String> = e.as_slice().iter().map(|e| e.message.clone()).collect();
            failures.push(format!("{label}: the good twin fails: {messages:?}"));
        }
        match Validator::new().validate(&schema, &variant(case, true), None) {
            Ok(()) => failures.push(format!("{label}: passes")),
            Err(errors) if errors.as_slice().iter().any(|e| e.message == case.expect) => {}
            Err(errors) => failures.push(format!(
                "{label}: fails, but not with {:?}: {:?}",
                case.expect,
                errors
                    .as_slice()
                    .iter()
                    .map(|e| e.message.clone())
                    .collect::<Vec<_>>()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn sensor_type_cannot_change() {
    let old = example(cases::SIM_MIN);
    let schema = schema_of("SensorSim");
    let mut faster = old.clone();
    faster["spec"]["sensor"]["rateHz"] = json!(20);
    assert!(
        Validator::new()
            .validate(&schema, &faster, Some(&old))
            .is_ok()
    );
    let mut camera = old.clone();
    camera["spec"]["sensor"]["type"] = json!("camera");
    let errors = Validator::new()
        .validate(&schema, &camera, Some(&old))
        .expect_err("refused");
    assert!(
        errors
            .as_slice()
            .iter()
            .any(|e| e.message == RULES_COVERED_ELSEWHERE[0]),
        "{errors:?}"
    );
}
