//! robofleet-operator: turns InferenceService, SafetyPolicy and SensorSim objects into pods on
//! robots, rolls models out wave by wave, and reports what it observes.
//!
//! Data flow (each reconcile): fetch the object and the robots it selects, validate (pure),
//! compute the desired children and the rollout step (pure, given observations and `now`),
//! server-side apply, then write status once. Nothing of this is built yet: the crate exists so
//! the workspace layout, lints and CI cover it from the start.
