//! Time arithmetic on `metav1.Time` (saturating: a spec the API server admitted never
//! overflows a timestamp).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// `t + d`.
pub fn after(t: &Time, d: Duration) -> Time {
    Time(t.0.saturating_add(d).unwrap_or(t.0))
}

/// How long from `now` until `t` (zero when `t` is past).
pub fn until(now: &Time, t: &Time) -> Duration {
    Duration::try_from(t.0.duration_since(now.0)).unwrap_or(Duration::ZERO)
}
