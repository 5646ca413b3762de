//! Whether one zone's region contains another's, exactly (no sampling): the geometric half of
//! telling a tightening SafetyPolicy change from a relaxation.
//!
//! `outer ⊇ inner` iff every piece of `inner`'s boundary, cut where it meets `outer`'s boundary,
//! lies in `outer` (closed, within [`EPS`]; one midpoint per cut piece decides, since a piece that
//! does not cross `outer`'s boundary is wholly in or out), and `outer` has no hole inside `inner`.
//! Every zone region is simply connected except a full-circle sector with `minRange`, whose hole
//! is the disc around the origin. Both regions are in the same frame (the caller makes sure).

use std::f64::consts::TAU;

use robofleet_crds::safety_policy::{Zone, ZoneShape};

/// Length tolerance in meters: a boundary within this distance counts as inside.
pub const EPS: f64 = 1e-9;

/// A point in the zone frame (x forward, y left), meters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct P {
    /// x (forward).
    pub x: f64,
    /// y (left).
    pub y: f64,
}

impl P {
    fn sub(self, o: P) -> P {
        P {
            x: self.x - o.x,
            y: self.y - o.y,
        }
    }
    fn add(self, o: P) -> P {
        P {
            x: self.x + o.x,
            y: self.y + o.y,
        }
    }
    fn scale(self, k: f64) -> P {
        P {
            x: self.x * k,
            y: self.y * k,
        }
    }
    fn dot(self, o: P) -> f64 {
        self.x * o.x + self.y * o.y
    }
    fn cross(self, o: P) -> f64 {
        self.x * o.y - self.y * o.x
    }
    fn norm(self) -> f64 {
        self.x.hypot(self.y)
    }
    fn polar(angle: f64, r: f64) -> P {
        P {
            x: r * angle.cos(),
            y: r * angle.sin(),
        }
    }
}

const ORIGIN: P = P { x: 0.0, y: 0.0 };

/// A zone's region.
#[derive(Clone, Debug, PartialEq)]
pub enum Region {
    /// Points around the origin with `min_range <= r <= range` and bearing in
    /// `[start, start + width]` (radians, counter-clockwise, `width` in `(0, 2π]`).
    Sector {
        /// First bearing.
        start: f64,
        /// Angular width.
        width: f64,
        /// Inner radius.
        min_range: f64,
        /// Outer radius.
        range: f64,
    },
    /// A disc.
    Circle {
        /// Centre.
        center: P,
        /// Radius.
        radius: f64,
    },
    /// A simple polygon, either winding.
    Polygon(Vec<P>),
}

impl Region {
    /// The region of a zone as the CRD writes it; `None` if a field its shape needs is missing
    /// (the CRD's rules forbid that, so the caller treats it as "cannot prove containment").
    pub fn of_zone(z: &Zone) -> Option<Region> {
        match z.shape {
            ZoneShape::Sector => {
                let (lo, hi, range) = (z.min_angle_deg?, z.max_angle_deg?, z.range?);
                Some(Region::Sector {
                    start: lo.to_radians(),
                    width: (hi - lo).to_radians().min(TAU),
                    min_range: z.min_range.unwrap_or(0.0),
                    range,
                })
            }
            ZoneShape::Circle => Some(Region::Circle {
                center: z.center.map_or(ORIGIN, |c| P { x: c.x, y: c.y }),
                radius: z.radius?,
            }),
            ZoneShape::Polygon => {
                let pts = z.points.as_ref()?;
                (pts.len() >= 3)
                    .then(|| Region::Polygon(pts.iter().map(|p| P { x: p.x, y: p.y }).collect()))
            }
        }
    }

    fn full_circle(width: f64) -> bool {
        width >= TAU - 1e-12
    }

    fn boundary(&self) -> Vec<Piece> {
        match self {
            Region::Sector {
                start,
                width,
                min_range,
                range,
            } => {
                let (start, width, r0, r1) = (*start, *width, *min_range, *range);
                let mut pieces = vec![Piece::Arc {
                    c: ORIGIN,
                    r: r1,
                    a0: start,
                    sweep: width,
                }];
                if r0 > EPS {
                    pieces.push(Piece::Arc {
                        c: ORIGIN,
                        r: r0,
                        a0: start,
                        sweep: width,
                    });
                }
                if !Self::full_circle(width) {
                    pieces.push(Piece::Seg(P::polar(start, r0), P::polar(start, r1)));
                    let end = start + width;
                    pieces.push(Piece::Seg(P::polar(end, r0), P::polar(end, r1)));
                }
                pieces
            }
            Region::Circle { center, radius } => vec![Piece::Arc {
                c: *center,
                r: *radius,
                a0: 0.0,
                sweep: TAU,
            }],
            Region::Polygon(pts) => (0..pts.len())
                .map(|i| Piece::Seg(pts[i], pts[(i + 1) % pts.len()]))
                .collect(),
        }
    }

    /// Closed containment of a point, within [`EPS`].
    pub fn contains_point(&self, p: P) -> bool {
        match self {
            Region::Circle { center, radius } => p.sub(*center).norm() <= radius + EPS,
            Region::Sector {
                start,
                width,
                min_range,
                range,
            } => {
                let r = p.norm();
                if r > range + EPS || r < min_range - EPS {
                    return false;
                }
                if Self::full_circle(*width) || (r <= EPS && *min_range <= EPS) {
                    return true;
                }
                let delta = (p.y.atan2(p.x) - start).rem_euclid(TAU);
                if delta <= *width {
                    return true;
                }
                // Near a radial edge the bearing is ill-conditioned: measure the distance.
                let end = start + width;
                [*start, end]
                    .iter()
                    .any(|a| seg_distance(p, P::polar(*a, *min_range), P::polar(*a, *range)) <= EPS)
            }
            Region::Polygon(pts) => {
                let n = pts.len();
                if (0..n).any(|i| seg_distance(p, pts[i], pts[(i + 1) % n]) <= EPS) {
                    return true;
                }
                let mut inside = false;
                for i in 0..n {
                    let (a, b) = (pts[i], pts[(i + 1) % n]);
                    if (a.y > p.y) != (b.y > p.y) {
                        let x = a.x + (p.y - a.y) / (b.y - a.y) * (b.x - a.x);
                        if p.x < x {
                            inside = !inside;
                        }
                    }
                }
                inside
            }
        }
    }

    /// The hole of a full-circle sector with `minRange` (the open disc around the origin).
    fn hole_center(&self) -> Option<P> {
        match self {
            Region::Sector {
                width, min_range, ..
            } if Self::full_circle(*width) && *min_range > EPS => Some(ORIGIN),
            _ => None,
        }
    }
}

/// Whether `outer` contains `inner` (closed sets, boundaries within [`EPS`] count as inside).
pub fn contains(outer: &Region, inner: &Region) -> bool {
    if let Some(h) = outer.hole_center() {
        // inner's boundary inside an annulus with the hole inside inner: the hole is in inner.
        if inner.hole_center().is_none() && inner.contains_point(h) {
            return false;
        }
    }
    let walls = outer.boundary();
    inner.boundary().iter().all(|piece| {
        let mut cuts = vec![0.0, 1.0];
        for wall in &walls {
            cuts.extend(piece.cuts(wall));
        }
        cuts.retain(|t| (0.0..=1.0).contains(t));
        cuts.sort_by(f64::total_cmp);
        cuts.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
        cuts.windows(2)
            .all(|w| outer.contains_point(piece.at((w[0] + w[1]) / 2.0)))
            && cuts.iter().all(|t| outer.contains_point(piece.at(*t)))
    })
}

/// A piece of a boundary, parametrised by `t` in `[0, 1]`.
#[derive(Clone, Copy, Debug)]
enum Piece {
    Seg(P, P),
    Arc { c: P, r: f64, a0: f64, sweep: f64 },
}

impl Piece {
    fn at(&self, t: f64) -> P {
        match *self {
            Piece::Seg(a, b) => a.add(b.sub(a).scale(t)),
            Piece::Arc { c, r, a0, sweep } => c.add(P::polar(a0 + t * sweep, r)),
        }
    }

    /// The parameter of a point known to lie on this piece's line or circle, if it is on the piece.
    fn param_of(&self, p: P) -> Option<f64> {
        match *self {
            Piece::Seg(a, b) => {
                let d = b.sub(a);
                let len2 = d.dot(d);
                if len2 <= 0.0 {
                    return (p.sub(a).norm() <= EPS).then_some(0.0);
                }
                let t = p.sub(a).dot(d) / len2;
                let tol = EPS / len2.sqrt();
                (-tol..=1.0 + tol).contains(&t).then(|| t.clamp(0.0, 1.0))
            }
            Piece::Arc { c, r, a0, sweep } => {
                let v = p.sub(c);
                let delta = (v.y.atan2(v.x) - a0).rem_euclid(TAU);
                let tol = if r > 0.0 { EPS / r } else { TAU };
                if delta <= sweep + tol {
                    Some((delta / sweep).min(1.0))
                } else if delta >= TAU - tol {
                    Some(0.0)
                } else {
                    None
                }
            }
        }
    }

    /// Parameters on `self` where it meets `other` (crossings, touches, and the ends of overlaps).
    fn cuts(&self, other: &Piece) -> Vec<f64> {
        let points: Vec<P> = match (*self, *other) {
            (Piece::Seg(a, b), Piece::Seg(p, q)) => seg_seg(a, b, p, q),
            (Piece::Seg(a, b), Piece::Arc { c, r, .. })
            | (Piece::Arc { c, r, .. }, Piece::Seg(a, b)) => line_circle(a, b, c, r),
            (
                Piece::Arc { c: c1, r: r1, .. },
                Piece::Arc {
                    c: c2,
                    r: r2,
                    a0,
                    sweep,
                },
            ) => {
                if c1.sub(c2).norm() <= EPS && (r1 - r2).abs() <= EPS {
                    // The same circle: the other arc's ends cut this one.
                    vec![c2.add(P::polar(a0, r2)), c2.add(P::polar(a0 + sweep, r2))]
                } else {
                    circle_circle(c1, r1, c2, r2)
                }
            }
        };
        points
            .into_iter()
            .filter(|p| other.param_of(*p).is_some())
            .filter_map(|p| self.param_of(p))
            .collect()
    }
}

fn seg_distance(p: P, a: P, b: P) -> f64 {
    let d = b.sub(a);
    let len2 = d.dot(d);
    let t = if len2 > 0.0 {
        (p.sub(a).dot(d) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    p.sub(a.add(d.scale(t))).norm()
}

/// Where segment `ab` meets segment `pq`: the crossing, or for collinear segments the ends of each
/// that lie on the other's line (the caller keeps those on both pieces).
fn seg_seg(a: P, b: P, p: P, q: P) -> Vec<P> {
    let (d, e) = (b.sub(a), q.sub(p));
    let den = d.cross(e);
    let scale = d.norm() * e.norm();
    if den.abs() > 1e-12 * scale.max(1e-300) {
        let t = p.sub(a).cross(e) / den;
        return vec![a.add(d.scale(t))];
    }
    // Parallel: only collinear ones meet.
    let off = if d.norm() > 0.0 {
        p.sub(a).cross(d).abs() / d.norm()
    } else {
        p.sub(a).norm()
    };
    if off <= EPS {
        vec![a, b, p, q]
    } else {
        Vec::new()
    }
}

/// Where the line through `a`, `b` meets the circle (`c`, `r`), tangent points included.
fn line_circle(a: P, b: P, c: P, r: f64) -> Vec<P> {
    let d = b.sub(a);
    let f = a.sub(c);
    let qa = d.dot(d);
    if qa <= 0.0 {
        return Vec::new();
    }
    let qb = 2.0 * f.dot(d);
    let qc = f.dot(f) - r * r;
    let disc = qb * qb - 4.0 * qa * qc;
    // Tolerance: a line passing within EPS of the circle touches it.
    let tol = 4.0 * qa * (2.0 * r * EPS + EPS * EPS);
    if disc < -tol {
        return Vec::new();
    }
    let s = disc.max(0.0).sqrt();
    [(-qb - s) / (2.0 * qa), (-qb + s) / (2.0 * qa)]
        .into_iter()
        .map(|t| a.add(d.scale(t)))
        .collect()
}

/// Where two (not identical) circles meet, tangent points included.
fn circle_circle(c1: P, r1: f64, c2: P, r2: f64) -> Vec<P> {
    let v = c2.sub(c1);
    let d = v.norm();
    if d <= EPS || d > r1 + r2 + EPS || d < (r1 - r2).abs() - EPS {
        return Vec::new();
    }
    let a = (r1 * r1 - r2 * r2 + d * d) / (2.0 * d);
    let h = (r1 * r1 - a * a).max(0.0).sqrt();
    let u = v.scale(1.0 / d);
    let base = c1.add(u.scale(a));
    let perp = P { x: -u.y, y: u.x };
    vec![base.add(perp.scale(h)), base.sub(perp.scale(h))]
}

#[cfg(test)]
#[path = "containment_tests.rs"]
mod tests;
