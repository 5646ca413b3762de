//! What `kubectl robofleet status` prints, from the object alone (pure, tested on fixtures).

use std::fmt::Write as _;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use robofleet_crds::InferenceService;
use robofleet_crds::inference_service::InferenceServiceStatus;
use robofleet_crds::inference_service::RevisionRef;

/// `3s`, `5m`, `2h`, `4d` since `t` (kubectl style).
pub fn age(t: &Time, now: Timestamp) -> String {
    let secs = now.as_second().saturating_sub(t.0.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn revision(r: Option<&RevisionRef>) -> String {
    r.map_or_else(
        || "-".to_owned(),
        |r| {
            let version = r.model.version.as_deref().unwrap_or("?");
            let sha: String = r.model.sha256.chars().take(12).collect();
            format!("{} (model {version}, sha256 {sha}…)", r.hash)
        },
    )
}

fn phase(s: Option<&InferenceServiceStatus>) -> String {
    s.and_then(|s| s.phase)
        .map_or_else(|| "Unknown".to_owned(), |p| format!("{p:?}"))
}

/// The live view of one InferenceService: phase, revisions, robot counts, waves with their last
/// verdicts, conditions, last failure and last acknowledged verb.
pub fn render(isvc: &InferenceService, now: Timestamp) -> String {
    let mut out = String::new();
    let ns = isvc.metadata.namespace.as_deref().unwrap_or("default");
    let name = isvc.metadata.name.as_deref().unwrap_or("?");
    let st = isvc.status.as_ref();
    let generation = isvc.metadata.generation.unwrap_or(0);
    let observed = st.and_then(|s| s.common.observed_generation);
    let _ = write!(out, "{ns}/{name}  {}", phase(st));
    if isvc.spec.paused {
        out.push_str("  (spec.paused)");
    }
    match observed {
        Some(o) if o == generation => {
            let _ = writeln!(out, "  generation {generation}");
        }
        Some(o) => {
            let _ = writeln!(
                out,
                "  generation {generation} (status is for {o}: the operator has not caught up)"
            );
        }
        None => {
            let _ = writeln!(out, "  generation {generation} (no status yet)");
        }
    }
    let Some(s) = st else {
        return out;
    };
    if let Some(m) = &s.common.message {
        let _ = writeln!(out, "  {m}");
    }
    let _ = writeln!(out, "stable   {}", revision(s.stable_revision.as_ref()));
    let _ = writeln!(out, "canary   {}", revision(s.canary_revision.as_ref()));
    if let Some(a) = &s.aborted_revision {
        let _ = writeln!(
            out,
            "aborted  {a} (not retried until the spec changes or `kubectl robofleet retry {name}`)"
        );
    }
    let r = &s.robots;
    let _ = writeln!(
        out,
        "robots   total {}  ready {}  updated {}  pending {}  deferred {}  offline {}  failed {}  unobserved {}",
        r.total, r.ready, r.updated, r.pending, r.deferred, r.offline, r.failed, r.unobserved
    );
    if !s.waves.is_empty() {
        let current = s.current_wave.map_or(0, |w| w as usize);
        let width = s
            .waves
            .iter()
            .map(|w| w.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(
            out,
            "  {:<width$}  {:>6}  {:>7}  {:<12}  {:>8}  DETAIL",
            "WAVE", "ROBOTS", "UPDATED", "VERDICT", "ANALYZED"
        );
        for (i, w) in s.waves.iter().enumerate() {
            let marker = if i + 1 == current { '>' } else { ' ' };
            let verdict = w
                .verdict
                .map_or_else(|| "-".to_owned(), |v| format!("{v:?}"));
            let analyzed = w
                .analyzed_at
                .as_ref()
                .map_or_else(|| "-".to_owned(), |t| format!("{} ago", age(t, now)));
            let _ = writeln!(
                out,
                "{marker} {:<width$}  {:>6}  {:>7}  {:<12}  {:>8}  {}",
                w.name,
                w.robots,
                w.updated,
                verdict,
                analyzed,
                w.message.as_deref().unwrap_or("")
            );
        }
    }
    let conds: Vec<String> = s
        .common
        .conditions
        .iter()
        .map(|c| format!("{}={} ({})", c.type_, c.status, c.reason))
        .collect();
    if !conds.is_empty() {
        let _ = writeln!(out, "conditions  {}", conds.join("  "));
    }
    if let Some(f) = &s.last_failure {
        let _ = writeln!(
            out,
            "last failure  {} {} {} ago: {}",
            f.robot,
            f.reason,
            age(&f.time, now),
            f.message
        );
    }
    if let Some(a) = &s.last_action {
        let _ = writeln!(out, "last action   {a}");
    }
    out
}

/// One line per service, for `status` without a name.
pub fn table(items: &[InferenceService]) -> String {
    let mut out = String::new();
    let width = items
        .iter()
        .filter_map(|i| i.metadata.name.as_ref().map(String::len))
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "{:<width$}  {:<11}  {:<10}  {:<10}  {:>5}  {:>11}  MESSAGE",
        "NAME", "PHASE", "STABLE", "CANARY", "WAVE", "READY/TOTAL"
    );
    for i in items {
        let s = i.status.as_ref();
        let hash = |r: Option<&RevisionRef>| r.map_or_else(|| "-".to_owned(), |r| r.hash.clone());
        let wave = s
            .and_then(|s| s.current_wave.map(|w| (w, s.waves.len())))
            .map_or_else(|| "-".to_owned(), |(w, n)| format!("{w}/{n}"));
        let _ = writeln!(
            out,
            "{:<width$}  {:<11}  {:<10}  {:<10}  {:>5}  {:>11}  {}",
            i.metadata.name.as_deref().unwrap_or("?"),
            phase(s),
            hash(s.and_then(|s| s.stable_revision.as_ref())),
            hash(s.and_then(|s| s.canary_revision.as_ref())),
            wave,
            s.map_or_else(
                || "-".to_owned(),
                |s| format!("{}/{}", s.robots.ready, s.robots.total)
            ),
            s.and_then(|s| s.common.message.as_deref()).unwrap_or("")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> InferenceService {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "robofleet.io/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": "detector", "namespace": "fleet", "generation": 3},
            "spec": {"model": {"uri": "file:///m/v2.onnx", "sha256": "b".repeat(64), "version": "v2"}},
            "status": {
                "observedGeneration": 3,
                "phase": "Progressing",
                "message": "wave 2/3: 4/10 robots updated, 1 deferred (busy)",
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Available", "message": "",
                     "lastTransitionTime": "2026-11-24T10:00:00Z"},
                    {"type": "Reconciling", "status": "True", "reason": "RolloutInProgress", "message": "",
                     "lastTransitionTime": "2026-11-24T10:00:00Z"}],
                "stableRevision": {"name": "detector-aaa", "hash": "aaa", "model": {"uri": "file:///m/v1.onnx", "sha256": "a".repeat(64), "version": "v1"}},
                "canaryRevision": {"name": "detector-bbb", "hash": "bbb", "model": {"uri": "file:///m/v2.onnx", "sha256": "b".repeat(64), "version": "v2"}},
                "robots": {"total": 10, "ready": 10, "updated": 4, "pending": 5, "deferred": 1},
                "currentWave": 2,
                "waves": [
                    {"name": "canary", "robots": 1, "updated": 1, "verdict": "Pass", "message": "errors 0.1% <= 1%",
                     "analyzedAt": "2026-11-24T10:04:00Z"},
                    {"name": "early", "robots": 4, "updated": 3},
                    {"name": "rest", "robots": 10, "updated": 0}],
                "lastFailure": {"robot": "robot-007", "reason": "ModelLoadFailed", "message": "sha256 mismatch",
                                "time": "2026-11-24T09:00:00Z"},
                "lastAction": "promote@x1",
            }
        }))
        .expect("valid fixture")
    }

    fn now() -> Timestamp {
        "2026-11-24T10:05:00Z".parse().expect("time")
    }

    #[test]
    fn the_live_view_shows_revisions_counts_waves_and_the_current_wave() {
        let text = render(&fixture(), now());
        assert!(
            text.starts_with("fleet/detector  Progressing  generation 3\n"),
            "{text}"
        );
        assert!(text.contains("wave 2/3: 4/10 robots updated"));
        assert!(text.contains("stable   aaa (model v1, sha256 aaaaaaaaaaaa…)"));
        assert!(text.contains("canary   bbb (model v2"));
        assert!(text.contains("total 10  ready 10  updated 4  pending 5  deferred 1"));
        let early = text
            .lines()
            .find(|l| l.contains("early"))
            .expect("early wave");
        assert!(early.starts_with('>'), "current wave marked: {early}");
        let canary = text
            .lines()
            .find(|l| l.trim_start().starts_with("canary") && l.contains("Pass"))
            .expect("canary wave");
        assert!(
            canary.contains("Pass") && canary.contains("60s ago"),
            "{canary}"
        );
        assert!(text.contains("Reconciling=True (RolloutInProgress)"));
        assert!(text.contains("last failure  robot-007 ModelLoadFailed 65m ago: sha256 mismatch"));
        assert!(text.contains("last action   promote@x1"));
    }

    #[test]
    fn a_stale_status_says_so() {
        let mut i = fixture();
        i.metadata.generation = Some(4);
        assert!(render(&i, now()).contains("status is for 3"));
        i.status = None;
        let text = render(&i, now());
        assert!(text.contains("no status yet"));
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn the_table_has_one_row_per_service() {
        let mut other = fixture();
        other.metadata.name = Some("segmenter".into());
        other.status = None;
        let text = table(&[fixture(), other]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].contains("detector") && lines[1].contains("2/3") && lines[1].contains("10/10")
        );
        assert!(lines[2].contains("segmenter") && lines[2].contains("Unknown"));
    }

    #[test]
    fn ages_read_like_kubectl() {
        let t = |s: &str| Time(s.parse().expect("time"));
        assert_eq!(age(&t("2026-11-24T10:04:30Z"), now()), "30s");
        assert_eq!(age(&t("2026-11-24T09:00:00Z"), now()), "65m");
        assert_eq!(age(&t("2026-11-22T11:05:00Z"), now()), "47h");
        assert_eq!(age(&t("2026-11-22T10:05:00Z"), now()), "2d");
        assert_eq!(age(&t("2026-11-01T10:05:00Z"), now()), "23d");
        assert_eq!(
            age(&t("2026-11-24T10:06:00Z"), now()),
            "0s",
            "clock skew is not negative"
        );
    }
}
