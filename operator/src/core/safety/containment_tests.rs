use super::*;

fn sector(lo: f64, hi: f64, min_range: f64, range: f64) -> Region {
    Region::Sector {
        start: lo.to_radians(),
        width: (hi - lo).to_radians(),
        min_range,
        range,
    }
}

fn circle(x: f64, y: f64, radius: f64) -> Region {
    Region::Circle {
        center: P { x, y },
        radius,
    }
}

fn poly(pts: &[(f64, f64)]) -> Region {
    Region::Polygon(pts.iter().map(|&(x, y)| P { x, y }).collect())
}

fn square(half: f64) -> Region {
    poly(&[(half, half), (-half, half), (-half, -half), (half, -half)])
}

/// (outer, inner, outer contains inner, what the row checks).
fn table() -> Vec<(Region, Region, bool, &'static str)> {
    let u = poly(&[
        (0.0, 0.0),
        (3.0, 0.0),
        (3.0, 3.0),
        (2.0, 3.0),
        (2.0, 1.0),
        (1.0, 1.0),
        (1.0, 3.0),
        (0.0, 3.0),
    ]);
    vec![
        // sector ⊇ sector
        (
            sector(-30.0, 30.0, 0.0, 0.5),
            sector(-30.0, 30.0, 0.0, 0.5),
            true,
            "equal sectors",
        ),
        (
            sector(-45.0, 45.0, 0.0, 0.5),
            sector(-30.0, 30.0, 0.0, 0.5),
            true,
            "wider, same range",
        ),
        (
            sector(-30.0, 30.0, 0.0, 0.5),
            sector(-45.0, 45.0, 0.0, 0.5),
            false,
            "narrower",
        ),
        (
            sector(-30.0, 30.0, 0.0, 0.6),
            sector(-30.0, 30.0, 0.0, 0.5),
            true,
            "longer",
        ),
        (
            sector(-30.0, 30.0, 0.0, 0.5),
            sector(-30.0, 30.0, 0.0, 0.6),
            false,
            "shorter",
        ),
        (
            sector(-30.0, 30.0, 0.1, 0.5),
            sector(-30.0, 30.0, 0.0, 0.5),
            false,
            "minRange added",
        ),
        (
            sector(-30.0, 30.0, 0.0, 0.5),
            sector(-30.0, 30.0, 0.1, 0.5),
            true,
            "minRange removed",
        ),
        (
            sector(-30.0, 30.0, 0.0, 0.5),
            sector(-20.0, 40.0, 0.0, 0.4),
            false,
            "turned",
        ),
        (
            sector(-180.0, 180.0, 0.0, 0.5),
            sector(150.0, 180.0, 0.0, 0.5),
            true,
            "full circle",
        ),
        (
            sector(90.0, 180.0, 0.0, 1.0),
            sector(-180.0, -90.0, 0.0, 1.0),
            false,
            "across ±180",
        ),
        // circle ⊇ …
        (
            circle(0.0, 0.0, 1.0),
            sector(-70.0, 70.0, 0.0, 1.0),
            true,
            "sector touching circle",
        ),
        (
            circle(0.0, 0.0, 1.0),
            sector(-70.0, 70.0, 0.0, 1.01),
            false,
            "sector past circle",
        ),
        (
            circle(0.0, 0.0, 1.0),
            circle(0.2, 0.0, 0.8),
            true,
            "internally tangent circle",
        ),
        (
            circle(0.0, 0.0, 1.0),
            circle(0.2, 0.0, 0.81),
            false,
            "circle sticking out",
        ),
        (
            circle(0.0, 0.0, 1.0),
            circle(1e-12, 0.0, 1.0),
            true,
            "within EPS",
        ),
        (
            circle(0.0, 0.0, 1.0),
            circle(1e-6, 0.0, 1.0),
            false,
            "beyond EPS",
        ),
        (circle(0.0, 0.0, 1.0), square(0.7), true, "square in circle"),
        (
            circle(0.0, 0.0, 1.0),
            square(0.71),
            false,
            "square corners out",
        ),
        (
            circle(0.3, 0.0, 0.4),
            sector(-10.0, 10.0, 0.0, 0.5),
            true,
            "off-centre circle",
        ),
        (
            circle(0.5, 0.0, 0.4),
            sector(-10.0, 10.0, 0.0, 0.5),
            false,
            "origin outside circle",
        ),
        // polygon ⊇ …
        (square(1.0), circle(0.0, 0.0, 1.0), true, "inscribed circle"),
        (
            square(1.0),
            circle(0.0, 0.0, 1.01),
            false,
            "circle past edges",
        ),
        (
            square(1.0),
            sector(-45.0, 45.0, 0.0, 1.0),
            true,
            "sector touching an edge",
        ),
        (
            square(1.0),
            sector(-30.0, 30.0, 0.0, 1.1),
            false,
            "sector past an edge",
        ),
        (square(1.0), square(1.0), true, "equal polygons"),
        (
            square(1.0),
            poly(&[(1.0, -1.0), (1.0, 1.0), (-1.0, 1.0), (-1.0, -1.0)]),
            true,
            "equal, other winding",
        ),
        (
            poly(&[(0.0, 0.0), (2.0, 0.0), (2.0, 1.0), (0.0, 1.0)]),
            poly(&[(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]),
            true,
            "shared edges",
        ),
        (
            u.clone(),
            square(0.4).translate(0.5, 2.0),
            true,
            "in one arm of a U",
        ),
        (
            u.clone(),
            square(0.4).translate(1.5, 2.0),
            false,
            "in the notch of a U",
        ),
        (
            u,
            poly(&[(0.5, 2.0), (2.5, 2.0), (2.5, 2.2), (0.5, 2.2)]),
            false,
            "ends in both arms, crosses the notch",
        ),
        // sector ⊇ …
        (
            sector(-90.0, 90.0, 0.0, 1.0),
            circle(0.5, 0.0, 0.5),
            true,
            "circle through origin",
        ),
        (
            sector(-90.0, 90.0, 0.0, 1.0),
            circle(0.5, 0.0, 0.51),
            false,
            "circle behind",
        ),
        (
            sector(-90.0, 90.0, 0.0, 1.0),
            poly(&[(0.1, 0.0), (0.5, 0.3), (0.5, -0.3)]),
            true,
            "triangle in sector",
        ),
        (
            sector(-30.0, 30.0, 0.0, 2.0),
            poly(&[(0.5, 0.0), (1.0, 0.5), (1.0, -0.5)]),
            true,
            "triangle inside the radial edges",
        ),
        (
            sector(-30.0, 30.0, 0.0, 2.0),
            poly(&[(0.5, 0.0), (1.0, 0.7), (1.0, -0.5)]),
            false,
            "triangle past a radial edge",
        ),
        // annulus (full circle with minRange): its hole
        (
            sector(-180.0, 180.0, 0.2, 1.0),
            circle(0.6, 0.0, 0.3),
            true,
            "circle in ring",
        ),
        (
            sector(-180.0, 180.0, 0.2, 1.0),
            circle(0.0, 0.0, 0.5),
            false,
            "circle over hole",
        ),
        (
            sector(-180.0, 180.0, 0.2, 1.0),
            sector(-180.0, 180.0, 0.3, 0.9),
            true,
            "ring in ring",
        ),
        (
            sector(-180.0, 180.0, 0.2, 1.0),
            square(0.5),
            false,
            "square over hole",
        ),
    ]
}

impl Region {
    fn translate(self, dx: f64, dy: f64) -> Region {
        match self {
            Region::Polygon(pts) => Region::Polygon(
                pts.into_iter()
                    .map(|p| P {
                        x: p.x + dx,
                        y: p.y + dy,
                    })
                    .collect(),
            ),
            other => other,
        }
    }
}

#[test]
fn containment_table() {
    let mut wrong = Vec::new();
    for (outer, inner, want, what) in table() {
        if contains(&outer, &inner) != want {
            wrong.push(what);
        }
    }
    assert!(wrong.is_empty(), "wrong answers: {wrong:?}");
}

#[test]
fn zones_become_regions() {
    let zone = |v: serde_json::Value| -> Zone { serde_json::from_value(v).unwrap() };
    let s = zone(
        serde_json::json!({"name": "a", "shape": "sector", "action": "stop",
        "minAngleDeg": -30, "maxAngleDeg": 30, "range": 0.5}),
    );
    assert_eq!(Region::of_zone(&s), Some(sector(-30.0, 30.0, 0.0, 0.5)));
    let c =
        zone(serde_json::json!({"name": "a", "shape": "circle", "action": "stop", "radius": 0.4}));
    assert_eq!(Region::of_zone(&c), Some(circle(0.0, 0.0, 0.4)));
    let broken = zone(serde_json::json!({"name": "a", "shape": "circle", "action": "stop"}));
    assert_eq!(Region::of_zone(&broken), None);
}

/// A small deterministic generator (no dependency): soundness over many random pairs. Whenever
/// `contains` says yes, no sampled point of the inner region (its boundary and a grid inside it)
/// is outside the outer one by more than EPS.
#[test]
fn a_yes_is_never_wrong_on_random_shapes() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let shape = |next: &mut dyn FnMut() -> f64| -> Region {
        match (next() * 3.0) as u32 {
            0 => {
                let lo = -180.0 + next() * 300.0;
                let hi = (lo + 10.0 + next() * 200.0).min(180.0);
                let range = 0.3 + next();
                let min_range = if next() < 0.3 { next() * 0.2 } else { 0.0 };
                sector(lo, hi, min_range, range)
            }
            1 => circle(next() - 0.5, next() - 0.5, 0.2 + next()),
            _ => {
                let (cx, cy, r) = (next() - 0.5, next() - 0.5, 0.2 + next());
                // A star-shaped polygon (simple by construction).
                let n = 3 + (next() * 6.0) as usize;
                let pts: Vec<(f64, f64)> = (0..n)
                    .map(|i| {
                        let a = TAU * (i as f64 + 0.5 * next()) / n as f64;
                        let rr = r * (0.4 + 0.6 * next());
                        (cx + rr * a.cos(), cy + rr * a.sin())
                    })
                    .collect();
                poly(&pts)
            }
        }
    };
    let mut yes = 0;
    for _ in 0..3000 {
        let outer = shape(&mut next);
        let inner = shape(&mut next);
        if !contains(&outer, &inner) {
            continue;
        }
        yes += 1;
        let mut samples: Vec<P> = Vec::new();
        for piece in inner.boundary() {
            samples.extend((0..=64).map(|i| piece.at(f64::from(i) / 64.0)));
        }
        for i in -40..=40 {
            for j in -40..=40 {
                let p = P {
                    x: f64::from(i) * 0.04,
                    y: f64::from(j) * 0.04,
                };
                if inner.contains_point(p) {
                    samples.push(p);
                }
            }
        }
        for p in samples {
            assert!(
                outer.contains_point(p),
                "{outer:?} said to contain {inner:?}, but not {p:?}"
            );
        }
    }
    assert!(
        yes > 50,
        "the generator should produce some contained pairs ({yes})"
    );
}
