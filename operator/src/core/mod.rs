//! Decisions with no I/O: which robots a resource selects, what each robot's pod looks like, which
//! revision that is, and what the status says. Everything here takes its observations (and `now`)
//! as arguments and is tested with plain `#[test]`s.

pub mod analysis;
pub mod backoff;
pub mod isvc;
pub mod naming;
pub mod robots;
pub mod rollout;
pub mod safety;
pub mod sensor_sim;
pub mod status;
