//! Zone geometry: points, the laser→base_link transform and the three zone shapes.
//!
//! All pure. Angles in radians, lengths in metres, the zone frame is `base_link` (x forward,
//! y left) unless the policy says `frame: laser`.

use std::f64::consts::{PI, TAU};

/// A point in the plane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pt {
    /// x (forward).
    pub x: f64,
    /// y (left).
    pub y: f64,
}

impl Pt {
    /// Distance from the frame origin.
    pub fn norm(self) -> f64 {
        self.x.hypot(self.y)
    }
}

/// Rigid 2D transform from the laser frame into the zone frame (the laser's pose in base_link).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Transform2D {
    /// Laser origin x in the zone frame.
    pub x: f64,
    /// Laser origin y in the zone frame.
    pub y: f64,
    /// Laser heading in the zone frame (rad).
    pub yaw: f64,
}

impl Transform2D {
    /// Maps a point from the laser frame into the zone frame.
    pub fn apply(&self, p: Pt) -> Pt {
        let (s, c) = self.yaw.sin_cos();
        Pt {
            x: self.x + c * p.x - s * p.y,
            y: self.y + s * p.x + c * p.y,
        }
    }

    /// The point at `range` along the beam at `angle` (laser frame), in the zone frame.
    pub fn beam_point(&self, angle: f64, range: f64) -> Pt {
        self.apply(Pt {
            x: range * angle.cos(),
            y: range * angle.sin(),
        })
    }
}

/// A zone's region.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// Points around the frame origin with `min_range <= r <= range` and bearing within
    /// `[start, start + width]` (counter-clockwise, rad; `width` in `(0, 2π]`).
    Sector {
        /// First bearing (rad), normalized to `[-π, π)`.
        start: f64,
        /// Angular width (rad).
        width: f64,
        /// Inner radius (m).
        min_range: f64,
        /// Outer radius (m).
        range: f64,
    },
    /// A disc.
    Circle {
        /// Centre.
        center: Pt,
        /// Radius (m).
        radius: f64,
    },
    /// A simple polygon (not self-intersecting), at least three vertices, either winding.
    Polygon {
        /// Vertices.
        points: Vec<Pt>,
    },
}

/// Wraps an angle into `[-π, π)`.
pub fn wrap_angle(a: f64) -> f64 {
    let w = (a + PI).rem_euclid(TAU) - PI;
    if w >= PI { w - TAU } else { w }
}

impl Shape {
    /// A sector from bearing `min` to `max` (rad, counter-clockwise).
    pub fn sector(min: f64, max: f64, min_range: f64, range: f64) -> Shape {
        let width = if max - min >= TAU {
            TAU
        } else {
            (max - min).rem_euclid(TAU)
        };
        Shape::Sector {
            start: wrap_angle(min),
            width,
            min_range,
            range,
        }
    }

    /// Whether the point lies inside the region (boundary included).
    pub fn contains(&self, p: Pt) -> bool {
        match self {
            Shape::Sector {
                start,
                width,
                min_range,
                range,
            } => {
                let r = p.norm();
                if r > *range || r < *min_range {
                    return false;
                }
                if *width >= TAU || r == 0.0 {
                    return true;
                }
                let rel = (p.y.atan2(p.x) - start).rem_euclid(TAU);
                // Bearings just below `start` wrap to almost 2π; allow a rounding epsilon there.
                rel <= *width + 1e-12 || TAU - rel <= 1e-12
            }
            Shape::Circle { center, radius } => (p.x - center.x).hypot(p.y - center.y) <= *radius,
            Shape::Polygon { points } => point_in_polygon(points, p),
        }
    }

    /// A circle that encloses the region: (centre, radius).
    pub fn bounding_circle(&self) -> (Pt, f64) {
        match self {
            Shape::Sector { range, .. } => (Pt { x: 0.0, y: 0.0 }, *range),
            Shape::Circle { center, radius } => (*center, *radius),
            Shape::Polygon { points } => {
                let n = points.len().max(1) as f64;
                let c = Pt {
                    x: points.iter().map(|p| p.x).sum::<f64>() / n,
                    y: points.iter().map(|p| p.y).sum::<f64>() / n,
                };
                let r = points
                    .iter()
                    .map(|p| (p.x - c.x).hypot(p.y - c.y))
                    .fold(0.0, f64::max);
                (c, r)
            }
        }
    }

    /// Whether a beam from the laser at `angle`, between `r_min` and `r_max`, passes through the
    /// region: the beams that can see a zone are the ones whose invalid readings count against it.
    /// Sampled every 1 cm inside the bounding circle; computed once per scan geometry.
    pub fn beam_crosses(&self, tf: &Transform2D, angle: f64, r_min: f64, r_max: f64) -> bool {
        let (c, rad) = self.bounding_circle();
        let o = tf.apply(Pt { x: 0.0, y: 0.0 });
        let d = tf.beam_point(angle, 1.0);
        let (dx, dy) = (d.x - o.x, d.y - o.y);
        // Ray/circle: |o + t d - c|² = rad², |d| = 1.
        let (fx, fy) = (o.x - c.x, o.y - c.y);
        let b = fx * dx + fy * dy;
        let disc = b * b - (fx * fx + fy * fy - rad * rad);
        if disc < 0.0 {
            return false;
        }
        let sq = disc.sqrt();
        let t0 = (-b - sq).max(r_min);
        let t1 = (-b + sq).min(r_max);
        if t1 < t0 {
            return false;
        }
        let steps = (((t1 - t0) / 0.01).ceil() as usize).clamp(1, 100_000);
        (0..=steps).any(|i| {
            let t = t0 + (t1 - t0) * i as f64 / steps as f64;
            self.contains(Pt {
                x: o.x + t * dx,
                y: o.y + t * dy,
            })
        })
    }
}

/// Crossing-number test, with points on an edge counted as inside.
fn point_in_polygon(poly: &[Pt], p: Pt) -> bool {
    let n = poly.len();
    if n < 3 {
        return false;
    }
    let mut inside = false;
    for i in 0..n {
        let a = poly[i];
        let b = poly[(i + 1) % n];
        if on_segment(a, b, p) {
            return true;
        }
        if (a.y > p.y) != (b.y > p.y) {
            let x = a.x + (p.y - a.y) * (b.x - a.x) / (b.y - a.y);
            if p.x < x {
                inside = !inside;
            }
        }
    }
    inside
}

fn on_segment(a: Pt, b: Pt, p: Pt) -> bool {
    let cross = (b.x - a.x) * (p.y - a.y) - (b.y - a.y) * (p.x - a.x);
    let len = (b.x - a.x).hypot(b.y - a.y).max(1e-12);
    cross.abs() / len <= 1e-9
        && p.x >= a.x.min(b.x) - 1e-9
        && p.x <= a.x.max(b.x) + 1e-9
        && p.y >= a.y.min(b.y) - 1e-9
        && p.y <= a.y.max(b.y) + 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn deg(d: f64) -> f64 {
        d.to_radians()
    }

    #[test]
    fn sector_ahead() {
        let s = Shape::sector(deg(-30.0), deg(30.0), 0.0, 0.35);
        assert!(s.contains(Pt { x: 0.3, y: 0.0 }));
        assert!(s.contains(Pt { x: 0.35, y: 0.0 }), "boundary is inside");
        assert!(!s.contains(Pt { x: 0.36, y: 0.0 }));
        assert!(s.contains(Pt { x: 0.2, y: 0.1 }));
        assert!(!s.contains(Pt { x: 0.2, y: 0.2 }), "45° is outside ±30°");
        assert!(!s.contains(Pt { x: -0.2, y: 0.0 }), "behind");
        assert!(s.contains(Pt { x: 0.0, y: 0.0 }), "the apex");
    }

    #[test]
    fn sector_across_the_back_wraps() {
        let s = Shape::sector(deg(150.0), deg(210.0), 0.1, 1.0);
        assert!(s.contains(Pt { x: -0.5, y: 0.0 }));
        assert!(s.contains(Pt { x: -0.5, y: 0.1 }));
        assert!(s.contains(Pt { x: -0.5, y: -0.1 }));
        assert!(!s.contains(Pt { x: 0.5, y: 0.0 }));
        assert!(!s.contains(Pt { x: -0.05, y: 0.0 }), "inside min_range");
        let full = Shape::sector(0.0, TAU, 0.0, 1.0);
        assert!(full.contains(Pt { x: -0.7, y: 0.7 }));
    }

    #[test]
    fn circle_and_polygon() {
        let c = Shape::Circle {
            center: Pt { x: 1.0, y: 0.0 },
            radius: 0.5,
        };
        assert!(c.contains(Pt { x: 1.4, y: 0.0 }));
        assert!(!c.contains(Pt { x: 0.4, y: 0.0 }));
        let square = Shape::Polygon {
            points: vec![
                Pt { x: 0.0, y: -0.5 },
                Pt { x: 1.0, y: -0.5 },
                Pt { x: 1.0, y: 0.5 },
                Pt { x: 0.0, y: 0.5 },
            ],
        };
        assert!(square.contains(Pt { x: 0.5, y: 0.0 }));
        assert!(square.contains(Pt { x: 1.0, y: 0.0 }), "edge");
        assert!(square.contains(Pt { x: 1.0, y: 0.5 }), "vertex");
        assert!(!square.contains(Pt { x: 1.01, y: 0.0 }));
        // A concave (L-shaped) polygon.
        let l = Shape::Polygon {
            points: vec![
                Pt { x: 0.0, y: 0.0 },
                Pt { x: 2.0, y: 0.0 },
                Pt { x: 2.0, y: 1.0 },
                Pt { x: 1.0, y: 1.0 },
                Pt { x: 1.0, y: 2.0 },
                Pt { x: 0.0, y: 2.0 },
            ],
        };
        assert!(l.contains(Pt { x: 0.5, y: 1.5 }));
        assert!(!l.contains(Pt { x: 1.5, y: 1.5 }), "the notch");
    }

    #[test]
    fn transform_laser_mounted_forward_and_rotated() {
        // Laser 0.2 m ahead of base_link, facing backwards.
        let tf = Transform2D {
            x: 0.2,
            y: 0.0,
            yaw: PI,
        };
        let p = tf.beam_point(0.0, 1.0);
        assert!((p.x + 0.8).abs() < 1e-12 && p.y.abs() < 1e-12, "{p:?}");
        let q = tf.beam_point(PI / 2.0, 0.5); // laser's left is base_link's right
        assert!(
            (q.x - 0.2).abs() < 1e-12 && (q.y + 0.5).abs() < 1e-12,
            "{q:?}"
        );
    }

    #[test]
    fn beams_crossing_a_zone() {
        let tf = Transform2D::default();
        let s = Shape::sector(deg(-30.0), deg(30.0), 0.0, 0.35);
        assert!(s.beam_crosses(&tf, 0.0, 0.05, 30.0));
        assert!(s.beam_crosses(&tf, deg(29.0), 0.05, 30.0));
        assert!(!s.beam_crosses(&tf, deg(31.0), 0.05, 30.0));
        assert!(
            !s.beam_crosses(&tf, 0.0, 0.5, 30.0),
            "zone closer than range_min"
        );
        let c = Shape::Circle {
            center: Pt { x: 2.0, y: 0.0 },
            radius: 0.3,
        };
        assert!(c.beam_crosses(&tf, deg(5.0), 0.05, 30.0));
        assert!(!c.beam_crosses(&tf, deg(20.0), 0.05, 30.0));
        assert!(!c.beam_crosses(&tf, 0.0, 0.05, 1.0), "beyond range_max");
    }

    proptest! {
        #[test]
        fn wrap_angle_range(a in -100.0f64..100.0) {
            let w = wrap_angle(a);
            prop_assert!((-PI..PI).contains(&w));
            prop_assert!(((w - a) / TAU - ((w - a) / TAU).round()).abs() < 1e-9);
        }

        #[test]
        fn sector_matches_polar_definition(
            min_deg in -180.0f64..180.0, width_deg in 1.0f64..359.0,
            r in 0.0f64..2.0, bearing_deg in -180.0f64..180.0,
        ) {
            let s = Shape::sector(deg(min_deg), deg(min_deg + width_deg), 0.1, 1.0);
            let p = Pt { x: r * deg(bearing_deg).cos(), y: r * deg(bearing_deg).sin() };
            let rel = (bearing_deg - min_deg).rem_euclid(360.0);
            // Stay away from the boundaries, where rounding decides.
            prop_assume!((r - 0.1).abs() > 1e-6 && (r - 1.0).abs() > 1e-6);
            prop_assume!((rel - width_deg).abs() > 1e-6 && rel > 1e-6 && (360.0 - rel) > 1e-6);
            let want = (0.1..=1.0).contains(&r) && rel <= width_deg;
            prop_assert_eq!(s.contains(p), want);
        }

        #[test]
        fn transform_preserves_distances(x in -2.0f64..2.0, y in -2.0f64..2.0, yaw in -4.0f64..4.0,
                                         a in -4.0f64..4.0, r in 0.0f64..10.0) {
            let tf = Transform2D { x, y, yaw };
            let p = tf.beam_point(a, r);
            prop_assert!(((p.x - x).hypot(p.y - y) - r).abs() < 1e-9);
        }

        #[test]
        fn convex_polygon_agrees_with_half_planes(px in -2.0f64..2.0, py in -2.0f64..2.0) {
            // Axis-aligned rectangle.
            let rect = Shape::Polygon { points: vec![
                Pt { x: -1.0, y: -0.5 }, Pt { x: 1.5, y: -0.5 }, Pt { x: 1.5, y: 0.75 }, Pt { x: -1.0, y: 0.75 },
            ]};
            let want = (-1.0..=1.5).contains(&px) && (-0.5..=0.75).contains(&py);
            prop_assert_eq!(rect.contains(Pt { x: px, y: py }), want);
        }
    }
}
