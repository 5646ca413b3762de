//! Declared post-processing: decode a detector's output into boxes, keep those above the
//! confidence threshold, suppress overlaps per class (NMS) and map boxes back to the original image.

use serde::Serialize;

use super::preprocess::LetterboxTransform;

/// Output layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[1, 4 + C, N]`: cx, cy, w, h, then C class scores, one column per candidate
    Yolov8,
    /// `[1, N, 5 + C]`: cx, cy, w, h, objectness, then C class scores, one row per candidate
    Yolov5,
    /// `[1, N, 5 + C]` as YOLOv5, but raw grid offsets: for each stride s (finest first) and each
    /// cell (gx, gy) of the `W/s x H/s` grid in row-major order, `cx = (x + gx) s`,
    /// `cy = (y + gy) s`, `w = exp(w) s`, `h = exp(h) s`
    Yolox,
}

/// The declared post-processing (`spec.model.postprocess`).
#[derive(Debug, Clone, PartialEq)]
pub struct Postprocess {
    /// output layout
    pub layout: Layout,
    /// class names, by class id (may be shorter than the model's class count)
    pub classes: Vec<String>,
    /// minimum score kept
    pub confidence: f32,
    /// IoU above which a lower-scored box of the same class is suppressed
    pub iou: f32,
    /// YOLOX strides, finest first
    pub strides: Vec<u32>,
}

/// One detection, in original image pixel coordinates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// class index
    pub class_id: usize,
    /// class name, when declared
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// score
    pub confidence: f32,
    /// left
    pub x1: f32,
    /// top
    pub y1: f32,
    /// right
    pub x2: f32,
    /// bottom
    pub y2: f32,
}

/// An output that does not fit the declared layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("output shape {shape:?} does not fit layout {layout:?}")]
pub struct LayoutError {
    /// the declared layout
    pub layout: Layout,
    /// the output's shape
    pub shape: Vec<i64>,
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes.
pub fn iou(a: &Detection, b: &Detection) -> f32 {
    let iw = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0);
    let ih = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0);
    let inter = iw * ih;
    let union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Class-wise greedy NMS: highest score first; a box is dropped when it overlaps a kept box of
/// the same class by more than `threshold`.
pub fn nms(mut dets: Vec<Detection>, threshold: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let mut kept: Vec<Detection> = Vec::with_capacity(dets.len());
    for d in dets {
        if kept
            .iter()
            .all(|k| k.class_id != d.class_id || iou(k, &d) <= threshold)
        {
            kept.push(d);
        }
    }
    kept
}

fn best_class(scores: impl Iterator<Item = f32>) -> Option<(usize, f32)> {
    scores.enumerate().fold(None, |best, (i, s)| match best {
        Some((_, b)) if b >= s => best,
        _ => Some((i, s)),
    })
}

impl Postprocess {
    /// Decode one image's output (`data` in row-major order of `shape`) into detections in the
    /// original image's coordinates, sorted by descending confidence.
    pub fn run(
        &self,
        data: &[f32],
        shape: &[i64],
        transform: &LetterboxTransform,
    ) -> Result<Vec<Detection>, LayoutError> {
        let err = || LayoutError {
            layout: self.layout,
            shape: shape.to_vec(),
        };
        let dims: Vec<usize> = match shape {
            [1, a, b] if *a >= 0 && *b >= 0 => vec![*a as usize, *b as usize],
            [a, b] if *a >= 0 && *b >= 0 => vec![*a as usize, *b as usize],
            _ => return Err(err()),
        };
        if data.len() != dims[0] * dims[1] {
            return Err(err());
        }
        let mut cands = Vec::new();
        let mut push = |cx: f32, cy: f32, w: f32, h: f32, class_id: usize, score: f32| {
            if score.is_nan() || score < self.confidence {
                return;
            }
            let (x1, y1) = transform.unmap(cx - w / 2.0, cy - h / 2.0);
            let (x2, y2) = transform.unmap(cx + w / 2.0, cy + h / 2.0);
            if x2 > x1 && y2 > y1 {
                cands.push(Detection {
                    class_id,
                    class_name: self.classes.get(class_id).cloned(),
                    confidence: score,
                    x1,
                    y1,
                    x2,
                    y2,
                });
            }
        };
        match self.layout {
            Layout::Yolov8 => {
                let (rows, n) = (dims[0], dims[1]);
                if rows < 5 {
                    return Err(err());
                }
                // row by row (contiguous) rather than column by column: the best class of every
                // candidate, then only those above the threshold are decoded; the same choice as
                // `best_class` (the first of equal scores; a NaN replaces the best so far)
                use std::cmp::Ordering::{Equal, Greater};
                let row = |r: usize| &data[r * n..(r + 1) * n];
                let mut best: Vec<f32> = row(4).to_vec();
                let mut class = vec![0u32; if rows > 5 { n } else { 0 }];
                for r in 5..rows {
                    let id = u32::try_from(r - 4).unwrap_or(u32::MAX);
                    for ((b, c), &s) in best.iter_mut().zip(class.iter_mut()).zip(row(r)) {
                        if !matches!((*b).partial_cmp(&s), Some(Greater | Equal)) {
                            *b = s;
                            *c = id;
                        }
                    }
                }
                let (cx, cy, w, h) = (row(0), row(1), row(2), row(3));
                for (i, &s) in best.iter().enumerate() {
                    // NaN compares false: skipped, as `push` would
                    if s >= self.confidence {
                        let c = class.get(i).map_or(0, |&c| c as usize);
                        push(cx[i], cy[i], w[i], h[i], c, s);
                    }
                }
            }
            Layout::Yolov5 => {
                let (n, cols) = (dims[0], dims[1]);
                if cols < 6 {
                    return Err(err());
                }
                for row in data.chunks_exact(cols).take(n) {
                    let obj = row[4];
                    if let Some((c, s)) = best_class(row[5..].iter().map(|&p| p * obj)) {
                        push(row[0], row[1], row[2], row[3], c, s);
                    }
                }
            }
            Layout::Yolox => {
                let (n, cols) = (dims[0], dims[1]);
                let grids: Vec<(u32, u32, f32)> = self
                    .strides
                    .iter()
                    .filter(|&&s| s > 0)
                    .map(|&s| {
                        (
                            transform.input_width / s,
                            transform.input_height / s,
                            s as f32,
                        )
                    })
                    .collect();
                let cells: usize = grids
                    .iter()
                    .map(|(w, h, _)| (*w as usize) * (*h as usize))
                    .sum();
                if cols < 6 || cells != n {
                    return Err(err());
                }
                let mut rows = data.chunks_exact(cols);
                for (gw, gh, s) in grids {
                    for gy in 0..gh {
                        for gx in 0..gw {
                            let Some(row) = rows.next() else {
                                return Err(err());
                            };
                            let obj = row[4];
                            if let Some((c, sc)) = best_class(row[5..].iter().map(|&p| p * obj)) {
                                let cx = (row[0] + gx as f32) * s;
                                let cy = (row[1] + gy as f32) * s;
                                push(cx, cy, row[2].exp() * s, row[3].exp() * s, c, sc);
                            }
                        }
                    }
                }
            }
        }
        Ok(nms(cands, self.iou))
    }
}
