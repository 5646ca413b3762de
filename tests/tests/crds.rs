//! The API server itself refuses bad robofleet specs: the committed CRDs (`deploy/crds/`) install
//! and become Established; every example in `docs/reference/examples/` applies and reads back as
//! applied plus the documented defaults; every CEL rule, enum and required field of the schemas
//! has a refusing case that gets that rule's own message, each with an accepted twin that differs
//! only in the broken value (a rule without a case fails the test); status is writable only
//! through the status subresource; `kubectl explain` shows the field docs.

#![allow(clippy::expect_used)] // test helpers may panic with context

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use robofleet_crds::generate;
use robofleet_tests::{TestCluster, TestNamespace, wait_until};
use serde_json::{Value, json};

#[path = "../../crds/tests/cases/mod.rs"]
mod cases;
use cases::*;

const MANAGER: &str = "robofleet-tests";

fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The committed CRDs, as shipped.
fn committed_crds() -> Vec<CustomResourceDefinition> {
    generate::crds()
        .iter()
        .map(|crd| {
            let path = repo().join("deploy/crds").join(generate::file_name(crd));
            serde_json::from_value(read_yaml(&path)).expect("a CRD")
        })
        .collect()
}

fn established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

/// Installs the committed CRDs with server-side apply and waits until each is Established.
async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in committed_crds() {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await?;
        wait_until(
            Duration::from_secs(30),
            &format!("CRD {name} Established"),
            || async { Ok(api.get_opt(&name).await?.as_ref().is_some_and(established)) },
        )
        .await?;
    }
    Ok(())
}

fn api_for(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let plural = match kind {
        "InferenceService" => "inferenceservices",
        "SafetyPolicy" => "safetypolicies",
        _ => "sensorsims",
    };
    let gvk = GroupVersionKind::gvk(robofleet_crds::GROUP, robofleet_crds::VERSION, kind);
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

/// `sub` is contained in `sup`, numbers compared as numbers.
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

/// The spec as the Rust types see it: what was written plus the Rust defaults.
fn typed_spec(kind: &str, object: &Value) -> Value {
    let spec = object["spec"].clone();
    match kind {
        "InferenceService" => serde_json::to_value(
            serde_json::from_value::<robofleet_crds::InferenceServiceSpec>(spec).expect("spec"),
        ),
        "SafetyPolicy" => serde_json::to_value(
            serde_json::from_value::<robofleet_crds::SafetyPolicySpec>(spec).expect("spec"),
        ),
        _ => serde_json::to_value(
            serde_json::from_value::<robofleet_crds::SensorSimSpec>(spec).expect("spec"),
        ),
    }
    .expect("serializes")
}

const EXAMPLES: &[&str] = &[
    "inferenceservice-minimal.yaml",
    "inferenceservice.yaml",
    "safetypolicy-minimal.yaml",
    "safetypolicy.yaml",
    "sensorsim-minimal.yaml",
    "sensorsim.yaml",
    "sensorsim-camera.yaml",
];

#[tokio::test]
#[ignore = "needs cluster"]
async fn examples_apply_and_read_back_with_defaults() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    install_crds(&cluster.client).await?;
    let ns = TestNamespace::create(&cluster.client, "crds-examples", &[]).await?;
    for file in EXAMPLES {
        let object = example(file);
        let kind = object["kind"].as_str().expect("kind").to_owned();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        let api = api_for(&cluster.client, &ns.name, &kind);
        let applied = api
            .patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&object))
            .await
            .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        let back = serde_json::to_value(api.get(&applied.name_any()).await?)?;
        // read back = applied + defaults
        assert!(
            contained(&object["spec"], &back["spec"]),
            "{file}: read back {:#}",
            back["spec"]
        );
        // and the server's defaults are exactly the Rust defaults
        let expected = typed_spec(&kind, &object);
        assert!(
            contained(&expected, &back["spec"]) && contained(&back["spec"], &expected),
            "{file}: server defaults differ from Rust defaults\nserver: {:#}\nrust:   {:#}",
            back["spec"],
            expected
        );
    }
    Ok(())
}

#[test]
fn every_rule_enum_and_required_field_has_a_case() {
    let cases = cases();
    let mut missing = Vec::new();
    for crd in generate::crds() {
        let kind = crd.spec.names.kind.clone();
        let facts = generate::facts(&generate::schema_json(&crd).expect("schema"));
        let mine: Vec<&Case> = cases
            .iter()
            .filter(|c| example(c.base)["kind"].as_str() == Some(kind.as_str()))
            .collect();
        for rule in &facts.rules {
            let covered = RULES_COVERED_ELSEWHERE.contains(&rule.message.as_str())
                || mine
                    .iter()
                    .any(|c| matches!(c.covers, Covers::Rule) && c.expect == rule.message);
            if !covered {
                missing.push(format!(
                    "{kind}: CEL rule {:?} ({})",
                    rule.message, rule.rule
                ));
            }
        }
        for f in facts.enums().filter(|f| f.path.starts_with("spec.")) {
            if !mine
                .iter()
                .any(|c| matches!(c.covers, Covers::Enum(p) if p == f.path))
            {
                missing.push(format!("{kind}: enum {}", f.path));
            }
        }
        for f in facts
            .required()
            .filter(|f| f.path.starts_with("spec.") && !upstream(&f.path))
        {
            if !mine
                .iter()
                .any(|c| matches!(c.covers, Covers::Required(p) if p == f.path))
            {
                missing.push(format!("{kind}: required field {}", f.path));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "cases missing for:\n{}",
        missing.join("\n")
    );
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn invalid_specs_are_refused_with_their_own_message() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    install_crds(&cluster.client).await?;
    let ns = TestNamespace::create(&cluster.client, "crds-invalid", &[]).await?;
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let mut failures = Vec::new();
    for case in cases() {
        let base = example(case.base);
        let kind = base["kind"].as_str().expect("kind").to_owned();
        let api = api_for(&cluster.client, &ns.name, &kind);
        let label = format!("{} {} -> {:?}", case.base, case.at, case.bad);
        let mut good = base.clone();
        set(&mut good, case.at, case.good.clone());
        if let Err(e) = api.create(&dry_run, &serde_json::from_value(good)?).await {
            failures.push(format!("{label}: the accepted twin was refused: {e}"));
        }
        let mut bad = base;
        set(&mut bad, case.at, case.bad.clone());
        match api.create(&dry_run, &serde_json::from_value(bad)?).await {
            Ok(_) => failures.push(format!("{label}: was accepted")),
            Err(kube::Error::Api(status)) if status.message.contains(case.expect) => {}
            Err(e) => failures.push(format!(
                "{label}: refused, but without {:?}: {e}",
                case.expect
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn sensor_type_is_immutable() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    install_crds(&cluster.client).await?;
    let ns = TestNamespace::create(&cluster.client, "crds-immutable", &[]).await?;
    let api = api_for(&cluster.client, &ns.name, "SensorSim");
    let created = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(example(SIM_MIN))?,
        )
        .await?;
    let name = created.name_any();
    // other sensor fields may change
    let rate = json!({"spec": {"sensor": {"rateHz": 20}}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&rate))
        .await?;
    let change = json!({"spec": {"sensor": {"type": "camera"}}});
    let err = api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&change))
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains(RULES_COVERED_ELSEWHERE[0]),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn status_is_written_only_through_the_status_subresource() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    install_crds(&cluster.client).await?;
    let ns = TestNamespace::create(&cluster.client, "crds-status", &[]).await?;
    let api = api_for(&cluster.client, &ns.name, "InferenceService");
    let created = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(example("inferenceservice-minimal.yaml"))?,
        )
        .await?;
    let name = created.name_any();
    // through the main resource: the status is dropped
    let via_main = json!({"status": {"phase": "Healthy", "observedGeneration": 1}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&via_main))
        .await?;
    let got = serde_json::to_value(api.get(&name).await?)?;
    assert!(
        got.get("status").is_none_or(|s| s.get("phase").is_none()),
        "status written via main resource: {got:#}"
    );
    // through the status subresource: the status sticks, and a spec change there is ignored
    let via_status =
        json!({"status": {"phase": "Healthy", "observedGeneration": 1}, "spec": {"paused": true}});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&via_status))
        .await?;
    let got = serde_json::to_value(api.get(&name).await?)?;
    assert_eq!(got["status"]["phase"], "Healthy", "{got:#}");
    assert_eq!(
        got["spec"]["paused"], false,
        "spec written via status subresource: {got:#}"
    );
    // an invalid status is refused too (phase is an enum)
    let bad = json!({"status": {"phase": "Fine"}});
    let err = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&bad))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("Unsupported value"), "{err}");
    Ok(())
}

fn kubectl(cluster: &TestCluster) -> Option<std::process::Command> {
    let state = cluster.state_dir.as_ref()?;
    let bin = std::env::var_os("ROBOFLEET_CLUSTER_BIN")
        .map(|d| PathBuf::from(d).join("kubectl"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("kubectl"));
    let mut cmd = std::process::Command::new(bin);
    cmd.env("KUBECONFIG", state.join("kubeconfig"));
    Some(cmd)
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn kubectl_explain_shows_the_field_docs() -> anyhow::Result<()> {
    let cluster = TestCluster::connect().await?;
    install_crds(&cluster.client).await?;
    let Some(_) = kubectl(&cluster) else {
        eprintln!("skipped: kubectl explain needs the local cluster's kubeconfig");
        return Ok(());
    };
    for (field, wants) in [
        (
            "inferenceservice.spec.rollout",
            &["Waves` (default)", "cumulative percent", "analysis"][..],
        ),
        (
            "inferenceservice.spec.model.sha256",
            &["64 lowercase hex characters"][..],
        ),
        (
            "safetypolicy.spec.zones.minAngleDeg",
            &["degrees", "counter-clockwise"][..],
        ),
        (
            "safetypolicy.spec.output.stopTopic",
            &["`data: true` means stop"][..],
        ),
        ("sensorsim.spec.sensor.rateHz", &["Messages per second"][..]),
    ] {
        // the OpenAPI document is republished a moment after a CRD changes
        let mut last = String::new();
        let seen = wait_until(
            Duration::from_secs(30),
            &format!("kubectl explain {field}"),
            || {
                let out = kubectl(&cluster)
                    .expect("kubectl")
                    .args(["explain", field])
                    .output();
                let text = match out {
                    Ok(o) => format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    ),
                    Err(e) => e.to_string(),
                };
                let ok = wants.iter().all(|w| text.contains(w));
                last = text;
                async move { Ok(ok) }
            },
        )
        .await;
        assert!(
            seen.is_ok(),
            "kubectl explain {field} lacks {wants:?}:\n{last}"
        );
    }
    // the category and short names resolve (discovery can lag a CRD change by a moment)
    for args in [
        &["get", "robofleet", "-A"][..],
        &["get", "isvc,sp,sim", "-A"][..],
    ] {
        let mut last = String::new();
        let ok = wait_until(
            Duration::from_secs(30),
            &format!("kubectl {args:?}"),
            || {
                let out = kubectl(&cluster).expect("kubectl").args(args).output();
                let ok = out.as_ref().is_ok_and(|o| o.status.success());
                last = format!("{out:?}");
                async move { Ok(ok) }
            },
        )
        .await;
        assert!(ok.is_ok(), "kubectl {args:?} failed: {last}");
    }
    Ok(())
}
