//! Leader election on a `coordination.k8s.io/v1` Lease with client-go's semantics: a candidate
//! judges expiry by when it last *saw the record change* on its own monotonic clock (never by
//! comparing its wall clock with the holder's timestamps), a leader that cannot renew within the
//! renew deadline steps down (the binary exits), and a leader leaving on SIGTERM releases the lease
//! so the standby takes over within one retry period. The decision is pure ([`decide`]); the
//! [`Elector`] does the I/O.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{PostParams, Resource};

/// Timing of the election (client-go defaults are 15 s / 10 s / 2 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease is valid after the holder's last renewal was observed.
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long steps down.
    pub renew_deadline: Duration,
    /// Time between attempts (acquire or renew).
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The part of a Lease record that identifies one renewal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// `spec.holderIdentity` (empty or absent: released).
    pub holder: Option<String>,
    /// `metadata.resourceVersion`: changes on every renewal.
    pub version: String,
}

/// What the candidate should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write the lease with us as holder (acquire or renew).
    Write,
    /// Someone else holds a live lease: wait one retry period.
    Wait,
}

/// Decides from the current record, when it was first seen in this form (`observed_at`, local
/// monotonic clock) and `now`.
pub fn decide(
    me: &str,
    record: Option<&Record>,
    observed_at: Instant,
    now: Instant,
    t: Timing,
) -> Decision {
    match record {
        None => Decision::Write,
        Some(r) => match r.holder.as_deref() {
            None | Some("") => Decision::Write,
            Some(h) if h == me => Decision::Write,
            Some(_) if now.duration_since(observed_at) >= t.lease_duration => Decision::Write,
            Some(_) => Decision::Wait,
        },
    }
}

/// Why an election step failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("lease API: {0}")]
    Kube(#[from] kube::Error),
    /// The leader could not renew within the renew deadline.
    #[error("could not renew the lease within {0:?}")]
    RenewDeadline(Duration),
}

impl Error {
    /// Bounded label for metrics and events.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::RenewDeadline(_) => "renew_deadline",
        }
    }
}

/// Runs the election for one identity on one Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    seen: Option<(Record, Instant)>,
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl Elector {
    /// An elector for Lease `namespace/name` as `identity`.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, timing: Timing) -> Self {
        Self {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing,
            seen: None,
        }
    }

    /// One attempt: returns whether we hold the lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, Error> {
        let current = self.api.get_opt(&self.name).await?;
        let now = Instant::now();
        let record = current.as_ref().map(|l| Record {
            holder: l.spec.as_ref().and_then(|s| s.holder_identity.clone()),
            version: l.meta().resource_version.clone().unwrap_or_default(),
        });
        let observed_at = match (&self.seen, &record) {
            (Some((prev, at)), Some(r)) if prev == r => *at,
            _ => now,
        };
        if let Some(r) = &record {
            self.seen = Some((r.clone(), observed_at));
        }
        if decide(
            &self.identity,
            record.as_ref(),
            observed_at,
            now,
            self.timing,
        ) == Decision::Wait
        {
            return Ok(false);
        }
        let holding =
            record.as_ref().and_then(|r| r.holder.as_deref()) == Some(self.identity.as_str());
        let transitions = current
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.lease_transitions)
            .unwrap_or(0);
        let spec = LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timing.lease_duration.as_secs() as i32),
            renew_time: Some(now_micro()),
            acquire_time: if holding {
                current
                    .as_ref()
                    .and_then(|l| l.spec.as_ref())
                    .and_then(|s| s.acquire_time.clone())
            } else {
                Some(now_micro())
            },
            lease_transitions: Some(if holding {
                transitions
            } else {
                transitions + 1
            }),
            ..LeaseSpec::default()
        };
        let result = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            // replace with the read resourceVersion: a concurrent writer makes this a 409
            Some(mut lease) => {
                lease.spec = Some(spec);
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until this identity holds the lease.
    pub async fn acquire(&mut self) -> Result<(), Error> {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "lease attempt failed"),
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }

    /// Renews every retry period; returns an error once a renewal has not succeeded for the
    /// renew deadline (the caller must stop acting as leader at once).
    pub async fn keep_renewing(&mut self) -> Error {
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_ok = Instant::now(),
                Ok(false) => tracing::warn!("lease taken over by another holder"),
                Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
            }
            if last_ok.elapsed() >= self.timing.renew_deadline {
                return Error::RenewDeadline(self.timing.renew_deadline);
            }
        }
    }

    /// Releases the lease if we hold it (on SIGTERM), so the standby takes over at once.
    pub async fn release(&mut self) -> Result<(), Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let ours = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.identity.as_str());
        if !ours {
            return Ok(());
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(now_micro());
        }
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(holder: Option<&str>, v: &str) -> Record {
        Record {
            holder: holder.map(str::to_owned),
            version: v.to_owned(),
        }
    }

    #[test]
    fn free_or_own_or_expired_leases_are_written() {
        let t = Timing::default();
        let t0 = Instant::now();
        assert_eq!(decide("a", None, t0, t0, t), Decision::Write);
        assert_eq!(
            decide("a", Some(&rec(None, "1")), t0, t0, t),
            Decision::Write
        );
        assert_eq!(
            decide("a", Some(&rec(Some(""), "1")), t0, t0, t),
            Decision::Write
        );
        assert_eq!(
            decide("a", Some(&rec(Some("a"), "1")), t0, t0, t),
            Decision::Write
        );
    }

    #[test]
    fn expiry_is_judged_from_the_local_observation_not_the_record() {
        let t = Timing::default();
        let seen = Instant::now();
        let other = rec(Some("b"), "7");
        assert_eq!(
            decide("a", Some(&other), seen, seen + Duration::from_secs(14), t),
            Decision::Wait
        );
        assert_eq!(
            decide("a", Some(&other), seen, seen + t.lease_duration, t),
            Decision::Write
        );
    }
}
