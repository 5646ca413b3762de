//! The operator's Kubernetes client: kube's default stack plus one layer that counts every request
//! in `robofleet_operator_api_requests_total{verb,resource}` (so "zero writes at steady state" can
//! be shown from the operator's own metrics and checked against the API server's audit log).

use std::sync::Arc;

use kube::Client;
use kube::client::{Body, ClientBuilder};

use crate::metrics::Metrics;

/// The Kubernetes verb and resource of a request, from its method, path and query. The resource
/// is the plural (with `/status`, `/proxy`... for subresources); only the API's own path segments
/// are used, never names, so the label stays bounded.
pub fn classify(method: &http::Method, path: &str, query: Option<&str>) -> (&'static str, String) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /api/v1/... or /apis/<group>/<version>/...
    let rest: &[&str] = match parts.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return (verb_of(method, false, query), "other".to_owned()),
    };
    let rest = match rest {
        ["namespaces", _ns, more @ ..] if !more.is_empty() => more,
        other => other,
    };
    let (resource, named) = match rest {
        [] => ("other".to_owned(), false),
        [plural] => ((*plural).to_owned(), false),
        [plural, _name] => ((*plural).to_owned(), true),
        [plural, _name, sub, ..] => (format!("{plural}/{sub}"), true),
    };
    (verb_of(method, named, query), resource)
}

fn verb_of(method: &http::Method, named: bool, query: Option<&str>) -> &'static str {
    let watch = query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    match *method {
        http::Method::GET if watch => "watch",
        http::Method::GET if named => "get",
        http::Method::GET => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE if named => "delete",
        http::Method::DELETE => "deletecollection",
        _ => "other",
    }
}

/// A client from the ambient configuration (KUBECONFIG or in-cluster) that counts its requests.
pub async fn counting_client(metrics: Arc<Metrics>) -> anyhow::Result<Client> {
    let config = kube::Config::infer().await?;
    let layer = tower::util::MapRequestLayer::new(move |req: http::Request<Body>| {
        let (verb, resource) = classify(req.method(), req.uri().path(), req.uri().query());
        metrics.api_request(verb, resource);
        req
    });
    Ok(ClientBuilder::try_from(config)?.with_layer(&layer).build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn verbs_and_resources_come_from_the_path_never_names() {
        let c = |m: Method, p: &str, q: Option<&str>| {
            let (v, r) = classify(&m, p, q);
            (v, r)
        };
        assert_eq!(
            c(Method::GET, "/api/v1/nodes", None),
            ("list", "nodes".into())
        );
        assert_eq!(
            c(
                Method::GET,
                "/api/v1/nodes",
                Some("watch=true&resourceVersion=5")
            ),
            ("watch", "nodes".into())
        );
        assert_eq!(
            c(
                Method::GET,
                "/api/v1/namespaces/fleet/pods",
                Some("labelSelector=a%3Db")
            ),
            ("list", "pods".into())
        );
        assert_eq!(
            c(
                Method::PATCH,
                "/api/v1/namespaces/fleet/pods/isvc-x-123",
                Some("fieldManager=robofleet-operator")
            ),
            ("patch", "pods".into())
        );
        assert_eq!(
            c(
                Method::PATCH,
                "/apis/robofleet.io/v1alpha1/namespaces/fleet/inferenceservices/det/status",
                None
            ),
            ("patch", "inferenceservices/status".into())
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/fleet", None),
            ("get", "namespaces".into())
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces", None),
            ("list", "namespaces".into())
        );
        assert_eq!(
            c(
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/robofleet/leases/robofleet-operator",
                None
            ),
            ("update", "leases".into())
        );
        assert_eq!(
            c(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/fleet/events",
                None
            ),
            ("create", "events".into())
        );
        assert_eq!(
            c(Method::DELETE, "/api/v1/namespaces/fleet/pods/p", None),
            ("delete", "pods".into())
        );
        assert_eq!(
            c(
                Method::GET,
                "/api/v1/namespaces/fleet/pods/p/proxy/metrics",
                None
            ),
            ("get", "pods/proxy".into())
        );
        assert_eq!(c(Method::GET, "/version", None), ("list", "other".into()));
    }
}
