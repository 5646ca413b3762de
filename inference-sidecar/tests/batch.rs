//! `inference-sidecar batch` on the generated YOLOv8-layout fixture: good images mixed with
//! corrupt, truncated, empty and non-image files; labels (class name and confidence) drawn with
//! the boxes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{fixture, ort_library};
use image::{Rgb, RgbImage};

fn png(img: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn batch(
    input: &std::path::Path,
    output: &std::path::Path,
    csv: &std::path::Path,
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_inference-sidecar"))
        .arg("batch")
        .arg("--model")
        .arg(fixture("yolov8_tiny.onnx"))
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .arg("--csv")
        .arg(csv)
        .args(["--detect-size", "32x32", "--detect-classes", "red,green"])
        .env("ORT_DYLIB_PATH", ort_library())
        .output()
        .unwrap()
}

#[test]
fn good_images_annotated_bad_files_listed_exit_code_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output, csv) = (
        dir.path().join("in"),
        dir.path().join("out"),
        dir.path().join("d.csv"),
    );
    std::fs::create_dir(&input).unwrap();
    let red = png(&RgbImage::from_pixel(64, 32, Rgb([255, 0, 0])));
    std::fs::write(input.join("a.png"), &red).unwrap();
    std::fs::write(input.join("b, with comma.png"), &red).unwrap();
    std::fs::write(input.join("c_truncated.png"), &red[..red.len() / 2]).unwrap();
    std::fs::write(input.join("d_empty.jpg"), b"").unwrap();
    std::fs::write(input.join("e_notes.txt"), b"not an image").unwrap();

    let out = batch(&input, &output, &csv);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("5 files: 2 images processed, 4 detections, 3 failed"),
        "{stdout}"
    );

    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "file,processed_at,class_id,class_name,confidence,x1,y1,x2,y2"
    );
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[1].starts_with("a.png,"), "{text}");
    assert!(lines[1].contains(",0,red,0.72"), "{text}");
    assert!(lines[1].ends_with(",24.00,8.00,40.00,24.00"), "{text}");
    assert!(lines[2].contains(",1,green,0.44"), "{text}");
    assert!(lines[2].ends_with(",50.00,0.00,62.00,8.00"), "{text}");
    assert!(lines[3].starts_with("\"b, with comma.png\","), "{text}");
    for l in &lines[1..] {
        let fields = l.rsplitn(9, ',').collect::<Vec<_>>();
        assert_eq!(fields.len(), 9, "{l}");
        assert!(
            chrono::DateTime::parse_from_rfc3339(fields[7]).is_ok(),
            "{l}"
        );
    }
    for good in ["a", "b, with comma"] {
        let annotated = image::open(output.join(format!("{good}.annotated.png")))
            .unwrap()
            .to_rgb8();
        assert_eq!(annotated.dimensions(), (64, 32));
        assert_ne!(
            annotated.get_pixel(24, 16).0,
            [255, 0, 0],
            "box drawn on {good}"
        );
    }
    let errors = std::fs::read_to_string(output.join("errors.csv")).unwrap();
    let listed: Vec<&str> = errors
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(
        listed,
        ["c_truncated.png", "d_empty.jpg", "e_notes.txt"],
        "{errors}"
    );

    // only good images: exit 0, errors.csv has just its header
    std::fs::remove_file(input.join("c_truncated.png")).unwrap();
    std::fs::remove_file(input.join("d_empty.jpg")).unwrap();
    std::fs::remove_file(input.join("e_notes.txt")).unwrap();
    let out = batch(&input, &output, &csv);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(output.join("errors.csv")).unwrap(),
        "file,error\n"
    );
}

/// The label bar at (`x`, `y`) reads `text` in the built-in 8x8 font: every pixel of the bar is
/// the ink where a glyph bit is set and the background elsewhere.
fn assert_label(img: &RgbImage, (x, y): (u32, u32), text: &str, background: [u8; 3], ink: [u8; 3]) {
    let width = text.len() as u32 * 8 + 2;
    let mut inked = 0;
    for py in y..y + 10 {
        for px in x..x + width {
            let (col, row) = (px.wrapping_sub(x + 1), py.wrapping_sub(y + 1));
            let set = col < width - 2 && row < 8 && {
                let glyph =
                    font8x8::legacy::BASIC_LEGACY[text.as_bytes()[(col / 8) as usize] as usize];
                glyph[row as usize] >> (col % 8) & 1 == 1
            };
            inked += usize::from(set);
            let want = if set { ink } else { background };
            assert_eq!(
                img.get_pixel(px, py).0,
                want,
                "label {text:?} at ({px}, {py}), glyph bit {set}"
            );
        }
    }
    assert!(inked > 8 * text.trim().len(), "{text:?} has ink");
}

#[test]
fn labels_name_and_confidence_drawn_with_each_box() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output, csv) = (
        dir.path().join("in"),
        dir.path().join("out"),
        dir.path().join("d.csv"),
    );
    std::fs::create_dir(&input).unwrap();
    // 256x128 into 32x32: scale 1/8, 8 rows of padding above and below, so the fixture's boxes
    // are red [96, 32, 160, 96] (confidence 0.72) and green [200, 0, 248, 32] (0.45)
    let original = RgbImage::from_pixel(256, 128, Rgb([255, 0, 0]));
    std::fs::write(input.join("big.png"), png(&original)).unwrap();
    let out = batch(&input, &output, &csv);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.contains(",0,red,0.72"), "{text}");
    assert!(text.contains(",96.00,32.00,160.00,96.00"), "{text}");
    assert!(text.contains(",1,green,0.44"), "{text}");
    assert!(text.contains(",200.00,0.00,248.00,32.00"), "{text}");
    let annotated = image::open(output.join("big.annotated.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(annotated.dimensions(), (256, 128));
    // red: the bar sits above the box (10 rows), white text on the class colour
    assert_label(
        &annotated,
        (96, 22),
        "red 0.72",
        [255, 56, 56],
        [255, 255, 255],
    );
    // green: no room above, so just inside the box's top; 82 px wide from x 200 would leave the
    // image, so it is shifted left to end at the right edge; black text on the light green
    assert_label(&annotated, (174, 0), "green 0.45", [56, 255, 56], [0, 0, 0]);
    // the labels changed the picture there, and only the boxes and labels changed it
    let changed = annotated
        .enumerate_pixels()
        .filter(|(x, y, p)| p.0 != original.get_pixel(*x, *y).0)
        .count();
    assert!(changed > 82 * 10 + 66 * 10, "{changed} pixels changed");
    assert_eq!(annotated.get_pixel(128, 64).0, [255, 0, 0], "inside a box");
    assert_eq!(
        annotated.get_pixel(20, 110).0,
        [255, 0, 0],
        "outside every box"
    );
}
