use super::postprocess::*;
use super::preprocess::LetterboxTransform;

fn ident(w: u32, h: u32) -> LetterboxTransform {
    LetterboxTransform {
        scale: 1.0,
        pad_x: 0.0,
        pad_y: 0.0,
        orig_width: w,
        orig_height: h,
        input_width: w,
        input_height: h,
    }
}

fn post(layout: Layout) -> Postprocess {
    Postprocess {
        layout,
        classes: vec!["cube".into(), "ball".into()],
        confidence: 0.5,
        iou: 0.5,
        strides: vec![8, 16, 32],
    }
}

/// YOLOv8 `[1, 4 + C, N]` from candidate rows (cx, cy, w, h, scores...).
fn v8(cands: &[[f32; 6]]) -> (Vec<f32>, Vec<i64>) {
    let n = cands.len();
    let mut data = vec![0.0; 6 * n];
    for (i, c) in cands.iter().enumerate() {
        for r in 0..6 {
            data[r * n + i] = c[r];
        }
    }
    (data, vec![1, 6, n as i64])
}

#[test]
fn yolov8_threshold_classwise_nms_and_names() {
    let (data, shape) = v8(&[
        [50.0, 50.0, 20.0, 20.0, 0.9, 0.1], // cube, kept
        [51.0, 50.0, 20.0, 20.0, 0.8, 0.0], // cube, overlaps the first: suppressed
        [51.0, 51.0, 20.0, 20.0, 0.0, 0.7], // ball, overlaps but other class: kept
        [10.0, 10.0, 4.0, 4.0, 0.4, 0.3],   // below threshold
        [80.0, 20.0, 10.0, 10.0, 0.2, 0.6], // ball elsewhere
    ]);
    let dets = post(Layout::Yolov8)
        .run(&data, &shape, &ident(100, 100))
        .expect("run");
    let got: Vec<(usize, f32, [f32; 4])> = dets
        .iter()
        .map(|d| (d.class_id, d.confidence, [d.x1, d.y1, d.x2, d.y2]))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, 0.9, [40.0, 40.0, 60.0, 60.0]),
            (1, 0.7, [41.0, 41.0, 61.0, 61.0]),
            (1, 0.6, [75.0, 15.0, 85.0, 25.0]),
        ]
    );
    assert_eq!(dets[0].class_name.as_deref(), Some("cube"));
    assert_eq!(dets[1].class_name.as_deref(), Some("ball"));
}

#[test]
fn boxes_are_mapped_out_of_the_letterbox_and_clamped() {
    // a 200x100 image letterboxed (centre) into 100x100: scale 0.5, 25 rows of padding on top
    let t = LetterboxTransform {
        scale: 0.5,
        pad_x: 0.0,
        pad_y: 25.0,
        orig_width: 200,
        orig_height: 100,
        input_width: 100,
        input_height: 100,
    };
    let (data, shape) = v8(&[
        [50.0, 50.0, 20.0, 10.0, 0.9, 0.0],
        [98.0, 30.0, 10.0, 20.0, 0.0, 0.8],
    ]);
    let dets = post(Layout::Yolov8).run(&data, &shape, &t).expect("run");
    assert_eq!(
        [dets[0].x1, dets[0].y1, dets[0].x2, dets[0].y2],
        [80.0, 40.0, 120.0, 60.0]
    );
    assert_eq!(
        [dets[1].x1, dets[1].y1, dets[1].x2, dets[1].y2],
        [186.0, 0.0, 200.0, 30.0]
    );
}

#[test]
fn yolov5_multiplies_objectness() {
    let data = vec![
        10.0, 10.0, 4.0, 4.0, 0.9, 0.9, 0.1, // 0.81 cube
        30.0, 30.0, 4.0, 4.0, 0.5, 0.9, 0.0, // 0.45: dropped
    ];
    let dets = post(Layout::Yolov5)
        .run(&data, &[1, 2, 7], &ident(64, 64))
        .expect("run");
    assert_eq!(dets.len(), 1);
    assert!((dets[0].confidence - 0.81).abs() < 1e-6);
    assert_eq!(
        [dets[0].x1, dets[0].y1, dets[0].x2, dets[0].y2],
        [8.0, 8.0, 12.0, 12.0]
    );
}

#[test]
fn shapes_that_do_not_fit_the_layout_are_errors() {
    let p = post(Layout::Yolov8);
    assert!(p.run(&[0.0; 8], &[1, 4, 2], &ident(1, 1)).is_err());
    assert!(p.run(&[0.0; 10], &[1, 6, 2], &ident(1, 1)).is_err());
    assert!(p.run(&[0.0; 12], &[1, 1, 6, 2], &ident(1, 1)).is_err());
    assert!(
        post(Layout::Yolov5)
            .run(&[0.0; 5], &[1, 1, 5], &ident(1, 1))
            .is_err()
    );
    let nan = [f32::NAN; 6];
    assert_eq!(p.run(&nan, &[1, 6, 1], &ident(1, 1)), Ok(vec![]));
}

#[test]
fn iou_of_known_boxes() {
    let d = |x1, y1, x2, y2| Detection {
        class_id: 0,
        class_name: None,
        confidence: 1.0,
        x1,
        y1,
        x2,
        y2,
    };
    assert_eq!(
        iou(&d(0.0, 0.0, 2.0, 2.0), &d(1.0, 0.0, 3.0, 2.0)),
        2.0 / 6.0
    );
    assert_eq!(iou(&d(0.0, 0.0, 1.0, 1.0), &d(2.0, 2.0, 3.0, 3.0)), 0.0);
    assert_eq!(iou(&d(0.0, 0.0, 0.0, 0.0), &d(0.0, 0.0, 0.0, 0.0)), 0.0);
}

#[test]
fn yolox_decodes_grid_offsets_by_stride() {
    // a 16x8 input, strides 4 and 8: grids 4x2 (8 cells) then 2x1 (2 cells)
    let t = LetterboxTransform {
        input_width: 16,
        input_height: 8,
        ..ident(16, 8)
    };
    let mut p = post(Layout::Yolox);
    p.strides = vec![4, 8];
    let mut data = vec![0.0f32; 10 * 7];
    // stride 4, cell (gx 2, gy 1) = row 1 * 4 + 2 = 6: centre (0.5 + 2) * 4 = 10, (0.5 + 1) * 4 = 6,
    // size exp(0) * 4 = 4
    data[6 * 7..7 * 7].copy_from_slice(&[0.5, 0.5, 0.0, 0.0, 0.9, 0.1, 1.0]);
    // stride 8, cell (gx 1, gy 0) = row 8 + 1: centre (0 + 1) * 8 = 8, 4; size exp(ln 2) * 8 = 16
    data[9 * 7..10 * 7].copy_from_slice(&[0.0, 0.5, 2f32.ln(), 0.0, 0.8, 1.0, 0.0]);
    let dets = p.run(&data, &[1, 10, 7], &t).expect("run");
    let got: Vec<(usize, [f32; 4])> = dets
        .iter()
        .map(|d| (d.class_id, [d.x1, d.y1, d.x2, d.y2]))
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, 1);
    assert_eq!(got[0].1, [8.0, 4.0, 12.0, 8.0]);
    assert_eq!(got[1].0, 0);
    for (a, b) in got[1].1.iter().zip([0.0, 0.0, 16.0, 8.0]) {
        assert!((a - b).abs() < 1e-4, "{got:?}");
    }
    // a row count that is not the grid's
    assert!(p.run(&data[..63], &[1, 9, 7], &t).is_err());
}

/// A score: mostly in [0, 1], with ties at the threshold and NaNs.
fn score() -> impl proptest::strategy::Strategy<Value = f32> {
    use proptest::prelude::*;
    prop_oneof![6 => 0.0f32..1.0, 1 => Just(0.5f32), 1 => Just(0.75f32), 1 => Just(f32::NAN)]
}

proptest::proptest! {
    /// The YOLOv8 decoder (row by row) picks the same class and score per candidate as the
    /// YOLOv5 decoder (candidate by candidate) does on the transposed output with objectness 1:
    /// ties, thresholds and NaN scores included.
    #[test]
    fn yolov8_rows_decode_as_yolov5_candidates(
        classes in 1usize..4,
        cands in proptest::collection::vec(
            ((0.0f32..100.0, 0.0f32..100.0, 1.0f32..50.0, 1.0f32..50.0),
             proptest::collection::vec(score(), 3)),
            1..40,
        ),
    ) {
        let n = cands.len();
        let rows = 4 + classes;
        let mut v8 = vec![0.0f32; rows * n];
        let mut v5 = Vec::with_capacity(n * (rows + 1));
        for (i, ((cx, cy, w, h), scores)) in cands.iter().enumerate() {
            let col = [*cx, *cy, *w, *h];
            for r in 0..4 {
                v8[r * n + i] = col[r];
            }
            for c in 0..classes {
                v8[(4 + c) * n + i] = scores[c];
            }
            v5.extend_from_slice(&col);
            v5.push(1.0);
            v5.extend_from_slice(&scores[..classes]);
        }
        let t = ident(200, 200);
        let a = post(Layout::Yolov8).run(&v8, &[1, rows as i64, n as i64], &t).unwrap();
        let b = post(Layout::Yolov5).run(&v5, &[1, n as i64, rows as i64 + 1], &t).unwrap();
        proptest::prop_assert_eq!(a, b);
    }
}
