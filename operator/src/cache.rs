//! What the operator keeps in memory instead of asking the API server on every reconcile: one
//! watch of the pods it owns (stripped to what the controllers read), the namespaces' labels,
//! and the ControllerRevisions it has seen (immutable once written). Everything here is pure
//! or a plain cache; the watches are wired in [`crate::run`].
//!
//! At a thousand robots the operator owns thousands of pods. Before this cache each of the three
//! controllers watched them all and each reconcile LISTed its own pods again, so the same pods
//! were decoded four or more times and the peaks of those LISTs set the operator's memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Namespace, Pod, PodSpec};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;
use robofleet_crds::labels;

/// Drops what no controller reads from a pod before it is cached: managed fields, annotations
/// the operator did not write, and the whole spec except the robot it is bound to (the
/// controllers compare desired pods by name and revision label, never by spec).
pub fn strip_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    if let Some(a) = pod.metadata.annotations.as_mut() {
        a.retain(|k, _| k.starts_with("robofleet.io/"));
    }
    if let Some(spec) = pod.spec.take() {
        pod.spec = Some(PodSpec {
            node_name: spec.node_name,
            ..Default::default()
        });
    }
    if let Some(st) = pod.status.as_mut() {
        st.pod_ips = None;
        st.host_ips = None;
        st.qos_class = None;
        st.resource_claim_statuses = None;
        st.init_container_statuses = None;
        st.ephemeral_container_statuses = None;
        for cs in st.container_statuses.iter_mut().flatten() {
            cs.image_id = String::new();
            cs.volume_mounts = None;
            cs.allocated_resources = None;
            cs.resources = None;
        }
    }
}

/// Drops everything but name and labels from a namespace.
pub fn strip_namespace(ns: &mut PartialObjectMeta<Namespace>) {
    ns.metadata.managed_fields = None;
    ns.metadata.annotations = None;
}

/// The owner a pod's labels name: `(kind, namespace, name)`.
pub fn owner_of(pod: &Pod) -> Option<(&str, &str, &str)> {
    let l = pod.metadata.labels.as_ref()?;
    Some((
        l.get(labels::OWNER_KIND)?.as_str(),
        pod.metadata.namespace.as_deref()?,
        l.get(labels::OWNER)?.as_str(),
    ))
}

/// The cached pods of one owner (a copy: the controllers' pure code takes `&[Pod]`).
pub fn pods_of(store: &Store<Pod>, kind: &str, namespace: &str, name: &str) -> Vec<Pod> {
    store
        .state()
        .iter()
        .filter(|p| owner_of(p) == Some((kind, namespace, name)))
        .map(|p| Pod::clone(p))
        .collect()
}

/// The cached pods of every owner of `kind`, in all namespaces.
pub fn pods_of_kind(store: &Store<Pod>, kind: &str) -> Vec<Arc<Pod>> {
    store
        .state()
        .into_iter()
        .filter(|p| owner_of(p).is_some_and(|(k, _, _)| k == kind))
        .collect()
}

/// Whether the namespace is labelled for robot workloads (an unknown namespace is not).
pub fn allows_robot_workloads(store: &Store<PartialObjectMeta<Namespace>>, name: &str) -> bool {
    store
        .get(&kube::runtime::reflector::ObjectRef::new(name))
        .is_some_and(|n| labels_allow(n.metadata.labels.as_ref()))
}

/// The namespaces labelled for robot workloads.
pub fn robot_namespaces(
    store: &Store<PartialObjectMeta<Namespace>>,
) -> std::collections::BTreeSet<String> {
    store
        .state()
        .iter()
        .filter(|n| labels_allow(n.metadata.labels.as_ref()))
        .filter_map(|n| n.metadata.name.clone())
        .collect()
}

fn labels_allow(l: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    l.and_then(|l| l.get(labels::ROBOT_WORKLOADS))
        .is_some_and(|v| v == "true")
}

/// ControllerRevisions this operator read or wrote, by `namespace/name`. Their data and
/// annotations never change once written, so a hit needs no GET. Bounded: when full, it
/// starts over (a miss only costs one GET).
#[derive(Default)]
pub struct Revisions {
    seen: Mutex<HashMap<String, Arc<ControllerRevision>>>,
}

/// Entries kept before the revision cache starts over.
pub const REVISIONS_CAPACITY: usize = 4096;

impl Revisions {
    /// The cached revision, if any.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<ControllerRevision>> {
        self.seen.lock().ok()?.get(&key(namespace, name)).cloned()
    }

    /// Remembers a revision that exists in the API server.
    pub fn insert(&self, namespace: &str, name: &str, mut cr: ControllerRevision) {
        cr.metadata.managed_fields = None;
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() >= REVISIONS_CAPACITY {
                seen.clear();
            }
            seen.insert(key(namespace, name), Arc::new(cr));
        }
    }

    /// Number of cached revisions.
    pub fn len(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the cache must show after this operator's own pod writes, per owner (the
/// "expectations" of Kubernetes' own controllers): the pods it created present, the pods it
/// deleted gone or terminating. Until it does, a reconcile would act again on what it already
/// did, so it waits instead. An expectation expires after [`EXPECTATION_TTL`] (a lost watch
/// event must not stall an owner).
#[derive(Default)]
pub struct Expectations {
    owners: Mutex<HashMap<String, (Expected, std::time::Instant)>>,
}

/// How long an unmet expectation holds an owner back.
pub const EXPECTATION_TTL: std::time::Duration = std::time::Duration::from_secs(15);

/// The UIDs one round of writes created and deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// UIDs of created pods (from the API server's answers).
    pub created: Vec<String>,
    /// UIDs of deleted pods.
    pub deleted: Vec<String>,
}

impl Expected {
    /// Whether nothing is expected.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.deleted.is_empty()
    }

    /// Whether `pods` (the cached pods of the owner) show every write.
    pub fn met_by(&self, pods: &[Pod]) -> bool {
        let has_uid = |p: &Pod, u: &str| p.metadata.uid.as_deref() == Some(u);
        self.created
            .iter()
            .all(|u| pods.iter().any(|p| has_uid(p, u)))
            && self.deleted.iter().all(|u| {
                pods.iter()
                    .find(|p| has_uid(p, u))
                    .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
            })
    }

    /// Adds another round of writes.
    pub fn extend(&mut self, other: Expected) {
        self.created.extend(other.created);
        self.deleted.extend(other.deleted);
    }
}

impl Expectations {
    /// Records what `owner`'s writes should look like, on top of what is still expected.
    pub fn expect(&self, owner: &str, expected: Expected, now: std::time::Instant) {
        if expected.is_empty() {
            return;
        }
        if let Ok(mut o) = self.owners.lock() {
            // Expired entries (of owners deleted meanwhile) go here, so the map stays bounded.
            o.retain(|_, (_, since)| now.duration_since(*since) < EXPECTATION_TTL);
            let e = o
                .entry(owner.to_owned())
                .or_insert_with(|| (Expected::default(), now));
            e.0.extend(expected);
            e.1 = now;
        }
    }

    /// Whether the cached `pods` of `owner` show its last writes (or they expired); a met or
    /// expired expectation is forgotten.
    pub fn met(&self, owner: &str, pods: &[Pod], now: std::time::Instant) -> bool {
        let Ok(mut o) = self.owners.lock() else {
            return true;
        };
        let Some((e, since)) = o.get(owner) else {
            return true;
        };
        if e.met_by(pods) || now.duration_since(*since) >= EXPECTATION_TTL {
            o.remove(owner);
            return true;
        }
        false
    }
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerStatus, PodStatus};
    use kube::api::ObjectMeta;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    fn pod(ns: &str, name: &str, kind: &str, owner: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                labels: Some(
                    [
                        (labels::OWNER_KIND.to_owned(), kind.to_owned()),
                        (labels::OWNER.to_owned(), owner.to_owned()),
                    ]
                    .into(),
                ),
                annotations: Some(
                    [
                        ("robofleet.io/keep".to_owned(), "1".to_owned()),
                        ("other.example/drop".to_owned(), "x".repeat(1000)),
                    ]
                    .into(),
                ),
                managed_fields: Some(vec![Default::default()]),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("robot-001".into()),
                containers: vec![Container {
                    name: "sidecar".into(),
                    args: Some(vec!["--model".into(); 50]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                host_ip: Some("127.1.0.1".into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: "sidecar".into(),
                    image_id: "sha256:abc".into(),
                    restart_count: 3,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn stripping_keeps_what_controllers_read_and_drops_the_rest() {
        let mut p = pod("fleet", "a", "InferenceService", "det");
        strip_pod(&mut p);
        assert!(p.metadata.managed_fields.is_none());
        let ann = p.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann.len(), 1);
        assert!(ann.contains_key("robofleet.io/keep"));
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("robot-001"));
        assert!(spec.containers.is_empty());
        let st = p.status.as_ref().unwrap();
        assert_eq!(st.phase.as_deref(), Some("Running"));
        assert_eq!(st.host_ip.as_deref(), Some("127.1.0.1"));
        let cs = &st.container_statuses.as_ref().unwrap()[0];
        assert_eq!((cs.name.as_str(), cs.restart_count), ("sidecar", 3));
        assert!(cs.image_id.is_empty());
        assert_eq!(owner_of(&p), Some(("InferenceService", "fleet", "det")));
    }

    #[test]
    fn pods_are_found_by_owner_kind_namespace_and_name() {
        let (store, mut writer) = reflector::store::<Pod>();
        writer.apply_watcher_event(&Event::Init);
        for p in [
            pod("fleet", "a", "InferenceService", "det"),
            pod("fleet", "b", "InferenceService", "det"),
            pod("other", "c", "InferenceService", "det"),
            pod("fleet", "d", "SafetyPolicy", "det"),
            pod("fleet", "e", "InferenceService", "seg"),
        ] {
            writer.apply_watcher_event(&Event::InitApply(p));
        }
        writer.apply_watcher_event(&Event::InitDone);
        let mut names: Vec<String> = pods_of(&store, "InferenceService", "fleet", "det")
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        names.sort();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(pods_of_kind(&store, "SafetyPolicy").len(), 1);
        assert_eq!(pods_of_kind(&store, "InferenceService").len(), 4);
        assert!(pods_of(&store, "SensorSim", "fleet", "det").is_empty());
    }

    #[test]
    fn namespaces_allow_robot_workloads_only_when_labelled_true() {
        let (store, mut writer) = reflector::store::<PartialObjectMeta<Namespace>>();
        let ns = |name: &str, value: Option<&str>| PartialObjectMeta::<Namespace> {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: value.map(|v| [(labels::ROBOT_WORKLOADS.to_owned(), v.to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        for n in [
            ns("fleet", Some("true")),
            ns("lab", Some("false")),
            ns("x", None),
        ] {
            writer.apply_watcher_event(&Event::Apply(n));
        }
        assert!(allows_robot_workloads(&store, "fleet"));
        assert!(!allows_robot_workloads(&store, "lab"));
        assert!(!allows_robot_workloads(&store, "x"));
        assert!(!allows_robot_workloads(&store, "missing"));
        assert_eq!(
            robot_namespaces(&store).into_iter().collect::<Vec<_>>(),
            ["fleet"]
        );
    }

    #[test]
    fn expectations_hold_an_owner_until_the_cache_shows_its_writes_or_they_expire() {
        let t0 = std::time::Instant::now();
        let with_uid = |uid: &str, deleting: bool| {
            let mut p = pod("fleet", uid, "InferenceService", "det");
            p.metadata.uid = Some(uid.into());
            if deleting {
                p.metadata.deletion_timestamp =
                    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                    ));
            }
            p
        };
        let e = Expectations::default();
        assert!(e.met("fleet/det", &[], t0), "nothing expected");
        e.expect(
            "fleet/det",
            Expected {
                created: vec!["new".into()],
                deleted: vec!["old".into()],
            },
            t0,
        );
        // The cache still shows the old pod live and not the new one.
        assert!(!e.met("fleet/det", &[with_uid("old", false)], t0));
        // The old pod terminating, the new one not seen yet.
        assert!(!e.met("fleet/det", &[with_uid("old", true)], t0));
        // Another owner is not held.
        assert!(e.met("fleet/other", &[], t0));
        // Both writes seen: met, and forgotten.
        assert!(e.met(
            "fleet/det",
            &[with_uid("old", true), with_uid("new", false)],
            t0
        ));
        assert!(e.met("fleet/det", &[with_uid("old", false)], t0));
        // Deleted and gone also meets it; an unmet one expires.
        e.expect(
            "fleet/det",
            Expected {
                created: vec!["x".into()],
                deleted: vec!["gone".into()],
            },
            t0,
        );
        assert!(!e.met("fleet/det", &[], t0 + EXPECTATION_TTL / 2));
        assert!(e.met("fleet/det", &[], t0 + EXPECTATION_TTL));
        assert!(Expected::default().is_empty());
    }

    #[test]
    fn the_revision_cache_is_bounded() {
        let r = Revisions::default();
        assert!(r.get("fleet", "det-1").is_none());
        r.insert("fleet", "det-1", ControllerRevision::default());
        assert!(r.get("fleet", "det-1").is_some());
        assert!(r.get("other", "det-1").is_none());
        for i in 0..REVISIONS_CAPACITY + 10 {
            r.insert("fleet", &format!("x-{i}"), ControllerRevision::default());
        }
        assert!(r.len() <= REVISIONS_CAPACITY);
        assert!(!r.is_empty());
    }
}
