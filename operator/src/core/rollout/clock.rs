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

/// Whether an object the API server stamped at `created` was made at or after `since`.
/// `metadata.creationTimestamp` has whole seconds only, while `since` (a time this operator
/// wrote) has a fraction: an object created in the same second counts as made after it.
pub fn created_since(created: &Time, since: &Time) -> bool {
    created.0.as_second() >= since.0.as_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn creation_in_the_same_second_counts_as_after() {
        let since = at("2026-11-24T21:52:02.249Z");
        assert!(created_since(&at("2026-11-24T21:52:02Z"), &since));
        assert!(created_since(&at("2026-11-24T21:52:03Z"), &since));
        assert!(!created_since(&at("2026-11-24T21:52:01Z"), &since));
    }
}
