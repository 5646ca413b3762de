//! What the simulated LIDAR sees at time `t`: obstacle motion, ray casting, noise and faults.
//! Pure and seeded: the same file gives the same scans.

use super::config::{Obstacle, SimConfig};
use super::rng::Rng;
use crate::msg::{Header, LaserScan, Time};

/// Surface distance of an obstacle at `t` (s from the scenario start), if present.
pub fn obstacle_distance(o: &Obstacle, t: f64) -> Option<f64> {
    (o.appear <= t && t < o.disappear).then(|| (o.start - o.speed * (t - o.appear)).max(o.min))
}

/// The nearest obstacle surface at `t`.
pub fn nearest(obstacles: &[Obstacle], t: f64) -> Option<f64> {
    obstacles
        .iter()
        .filter_map(|o| obstacle_distance(o, t))
        .reduce(f64::min)
}

/// When the nearest obstacle first comes closer than `d` (strictly), if it does.
pub fn first_closer_than(obstacles: &[Obstacle], d: f64) -> Option<f64> {
    obstacles
        .iter()
        .filter_map(|o| {
            let t = if o.start < d {
                o.appear
            } else if o.speed > 0.0 && o.min < d {
                // Just past the crossing, so that `obstacle_distance(t) < d` holds.
                o.appear + (o.start - d) / o.speed + 1e-9
            } else {
                return None;
            };
            (t < o.disappear).then_some(t)
        })
        .reduce(f64::min)
}

/// Faults injected into one scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Injected {
    /// Beams set to NaN.
    pub nan: u64,
    /// Beams set to -Inf.
    pub neg_inf: u64,
}

/// One step of the sensor.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Publish this scan.
    Scan(Box<LaserScan>, Injected),
    /// A dropped scan (fault).
    Dropped,
    /// Stalled: publish nothing from now on.
    Stalled,
}

/// The simulated sensor.
#[derive(Debug, Clone)]
pub struct Scene {
    cfg: SimConfig,
    rng: Rng,
}

impl Scene {
    /// From a validated config.
    pub fn new(cfg: SimConfig) -> Scene {
        let rng = Rng::new(cfg.noise.seed);
        Scene { cfg, rng }
    }

    /// The config.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Noise-free ranges at `t`: the nearest obstacle surface along each beam, `+Inf` if none
    /// within `range_max`.
    pub fn clean_ranges(cfg: &SimConfig, t: f64) -> Vec<f32> {
        let present: Vec<(f64, f64, f64)> = cfg
            .obstacles
            .iter()
            .filter_map(|o| {
                let d = obstacle_distance(o, t)?;
                let c = d + o.radius;
                Some((c * o.bearing.cos(), c * o.bearing.sin(), o.radius))
            })
            .collect();
        (0..cfg.beams)
            .map(|i| {
                let a = f64::from(cfg.angle_min) + i as f64 * f64::from(cfg.angle_increment);
                let (ux, uy) = (a.cos(), a.sin());
                let hit = present
                    .iter()
                    .filter_map(|&(cx, cy, r)| {
                        let proj = cx * ux + cy * uy;
                        let perp2 = cx * cx + cy * cy - proj * proj;
                        (proj > 0.0 && perp2 <= r * r).then(|| proj - (r * r - perp2).sqrt())
                    })
                    .reduce(f64::min);
                match hit {
                    Some(h) if h <= f64::from(cfg.range_max) => h as f32,
                    _ => f32::INFINITY,
                }
            })
            .collect()
    }

    /// The scan at `t` (s from the scenario start), sequence number `seq`, stamped `stamp`.
    pub fn step(&mut self, t: f64, stamp: Time) -> Step {
        let cfg = &self.cfg;
        if cfg.stall_after.is_some_and(|s| t >= s) {
            return Step::Stalled;
        }
        if self.rng.chance(cfg.drop_rate) {
            return Step::Dropped;
        }
        let blind = cfg.blind_after.is_some_and(|b| t >= b);
        let mut injected = Injected::default();
        let mut ranges = Scene::clean_ranges(cfg, t);
        for r in &mut ranges {
            if blind {
                *r = f32::NAN;
                injected.nan += 1;
                continue;
            }
            if cfg.noise.stddev > 0.0 && r.is_finite() {
                *r = (f64::from(*r) + self.rng.normal() * cfg.noise.stddev).max(0.0) as f32;
            }
            if self.rng.chance(cfg.nan_rate) {
                *r = f32::NAN;
                injected.nan += 1;
            } else if self.rng.chance(cfg.neg_inf_rate) {
                *r = f32::NEG_INFINITY;
                injected.neg_inf += 1;
            }
        }
        let n = cfg.beams as f32;
        let scan = LaserScan {
            header: Header {
                stamp,
                frame_id: cfg.frame_id.clone(),
            },
            angle_min: cfg.angle_min,
            angle_max: cfg.angle_min + cfg.angle_increment * (n - 1.0),
            angle_increment: cfg.angle_increment,
            time_increment: 0.0,
            scan_time: cfg.period.as_secs_f32(),
            range_min: cfg.range_min,
            range_max: cfg.range_max,
            ranges,
            intensities: Vec::new(),
        };
        Step::Scan(Box::new(scan), injected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::config::SimFile;

    fn cfg(extra: &str) -> SimConfig {
        let text = format!(
            "sensor: {{type: lidar2d, topic: /scan, lidar: {{beams: 360}}}}\nduration: 5s\n\
             scenario:\n  obstacles:\n    - {{bearingDeg: 0, startDistance: 2.0, speed: 1.0, minDistance: 0.2, width: 0.2, disappearAt: 3s}}\n{extra}"
        );
        SimFile::parse(&text)
            .expect("parse")
            .validate("r")
            .expect("valid")
    }

    #[test]
    fn obstacle_approaches_and_leaves() {
        let c = cfg("");
        let o = &c.obstacles[0];
        assert_eq!(obstacle_distance(o, 0.0), Some(2.0));
        assert_eq!(obstacle_distance(o, 1.0), Some(1.0));
        assert_eq!(obstacle_distance(o, 2.5), Some(0.2), "stops at minDistance");
        assert_eq!(obstacle_distance(o, 3.0), None, "gone");
        let t = first_closer_than(&c.obstacles, 0.35).expect("crosses");
        assert!((t - 1.65).abs() < 1e-6, "{t}");
        assert!(nearest(&c.obstacles, t).expect("present") < 0.35);
        assert_eq!(
            first_closer_than(&c.obstacles, 0.1),
            None,
            "never closer than minDistance"
        );
    }

    #[test]
    fn ray_casting_sees_the_obstacle_surface_ahead_only() {
        let c = cfg("");
        let r = Scene::clean_ranges(&c, 1.0);
        assert_eq!(r.len(), 360);
        // Beam 180 points straight ahead (angle 0).
        assert!((r[180] - 1.0).abs() < 1e-4, "{}", r[180]);
        assert!(
            r[181].is_finite() && r[181] > 1.0,
            "grazing beams see it farther"
        );
        assert!(
            r[0].is_infinite() && r[90].is_infinite(),
            "behind and to the side: nothing"
        );
        assert!(Scene::clean_ranges(&c, 4.0).iter().all(|x| x.is_infinite()));
    }

    #[test]
    fn seeded_noise_and_faults_are_reproducible() {
        let c = cfg("noise: {stddev: 0.01, seed: 42}\nfaults: {nanRate: 0.1, negInfRate: 0.05}\n");
        let run = || {
            let mut s = Scene::new(c.clone());
            (0..5)
                .map(|i| s.step(f64::from(i) * 0.025, Time::default()))
                .collect::<Vec<_>>()
        };
        let (a, b) = (run(), run());
        let bits = |steps: &[Step]| -> Vec<u32> {
            steps
                .iter()
                .flat_map(|s| match s {
                    Step::Scan(scan, _) => scan.ranges.iter().map(|r| r.to_bits()).collect(),
                    _ => vec![],
                })
                .collect()
        };
        assert_eq!(bits(&a), bits(&b));
        let injected: u64 = a
            .iter()
            .map(|s| {
                if let Step::Scan(_, i) = s {
                    i.nan + i.neg_inf
                } else {
                    0
                }
            })
            .sum();
        assert!(
            (150..400).contains(&injected),
            "{injected} faults in 1800 beams at 15%"
        );
    }

    #[test]
    fn stall_blind_and_drop() {
        let mut s = Scene::new(cfg("faults: {stallAfter: 2s, blindAfter: 1s}\n"));
        assert!(matches!(s.step(0.5, Time::default()), Step::Scan(_, i) if i.nan == 0));
        match s.step(1.5, Time::default()) {
            Step::Scan(scan, i) => assert!(i.nan == 360 && scan.ranges.iter().all(|r| r.is_nan())),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.step(2.0, Time::default()), Step::Stalled);
        let mut d = Scene::new(cfg("faults: {dropRate: 1.0}\n"));
        assert_eq!(d.step(0.0, Time::default()), Step::Dropped);
    }
}
