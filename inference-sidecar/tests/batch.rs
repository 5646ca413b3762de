//! `inference-sidecar batch` on the generated YOLOv8-layout fixture: good images mixed with
//! corrupt, truncated, empty and non-image files.
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
