//! `histogram_quantile` as Prometheus computes it, over cumulative bucket counts.

/// One cumulative bucket: observations `<= le`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// Upper bound (`le`), `f64::INFINITY` for `+Inf`.
    pub le: f64,
    /// Cumulative count.
    pub count: f64,
}

/// The `q` quantile of a histogram given as cumulative buckets, with Prometheus'
/// `histogram_quantile` semantics (promql `bucketQuantile`):
///
/// - `q < 0` is `-Inf`, `q > 1` is `+Inf`, NaN `q` is NaN;
/// - buckets are sorted by `le`; equal bounds are merged; without a `+Inf` bucket, or with
///   fewer than two buckets, or with no observation, the result is NaN;
/// - counts are forced monotonic (a later bucket never counts fewer than an earlier one), which
///   repairs the small inconsistencies that summing deltas scraped at different moments leaves;
/// - the rank `q * count` is located in the first bucket whose count reaches it and linearly
///   interpolated between that bucket's lower bound (the previous `le`, or 0 for the first
///   bucket) and its `le`; a rank in the `+Inf` bucket returns the highest finite `le`; a first
///   bucket with `le <= 0` returns that `le`.
pub fn histogram_quantile(q: f64, buckets: &[Bucket]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let mut sorted: Vec<Bucket> = buckets
        .iter()
        .copied()
        .filter(|b| !b.le.is_nan() && !b.count.is_nan())
        .collect();
    sorted.sort_by(|a, b| a.le.total_cmp(&b.le));
    // Merge equal bounds (the same `le` from several series summed elsewhere).
    let mut merged: Vec<Bucket> = Vec::with_capacity(sorted.len());
    for b in sorted {
        match merged.last_mut() {
            Some(last) if last.le == b.le => last.count += b.count,
            _ => merged.push(b),
        }
    }
    let Some(last) = merged.last() else {
        return f64::NAN;
    };
    if last.le != f64::INFINITY || merged.len() < 2 {
        return f64::NAN;
    }
    let mut max = f64::NEG_INFINITY;
    for b in &mut merged {
        if b.count < max {
            b.count = max;
        }
        max = b.count;
    }
    let observations = merged[merged.len() - 1].count;
    if observations <= 0.0 {
        return f64::NAN;
    }
    let rank = q * observations;
    let finite = merged.len() - 1;
    let b = merged[..finite]
        .iter()
        .position(|bucket| bucket.count >= rank)
        .unwrap_or(finite);
    if b == finite {
        return merged[finite - 1].le;
    }
    if b == 0 && merged[0].le <= 0.0 {
        return merged[0].le;
    }
    let (start, mut count, mut rank) = (0.0, merged[b].count, rank);
    let start = if b > 0 {
        count -= merged[b - 1].count;
        rank -= merged[b - 1].count;
        merged[b - 1].le
    } else {
        start
    };
    start + (merged[b].le - start) * (rank / count)
}
