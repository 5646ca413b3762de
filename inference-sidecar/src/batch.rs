//! `inference-sidecar batch`: the offline detection pipeline. Every file of a directory goes
//! through the same declared pre- and post-processing as `/v1/detect`, in-process (no HTTP):
//! annotated images and a CSV row per detection out; files that are not good images are listed in
//! `errors.csv` and the summary, and the run goes on.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use image::{Rgb, RgbImage};

use crate::backend::Backend;
use crate::config::{DetectArgs, Detection};
use crate::detect::postprocess::Detection as Det;
use crate::detect::preprocess;
use crate::ort_backend::{self, ExecutionProvider, OrtBackend, SessionOptions};
use crate::tensor::{Tensor, TensorData};

/// `inference-sidecar batch`: detect objects in every image of a directory.
#[derive(Debug, Clone, Args)]
pub struct BatchArgs {
    /// The ONNX detector (a local file).
    #[arg(long)]
    pub model: PathBuf,
    /// Directory of images (JPEG/PNG).
    #[arg(long)]
    pub input: PathBuf,
    /// Directory for the annotated images (PNG) and errors.csv.
    #[arg(long)]
    pub output: PathBuf,
    /// The detections CSV.
    #[arg(long)]
    pub csv: PathBuf,
    /// The ONNX Runtime shared library.
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_library: Option<PathBuf>,
    /// Intra-op threads.
    #[arg(long, default_value_t = 1)]
    pub intra_op_threads: usize,
    /// Pre- and post-processing (`--detect-size` is required).
    #[command(flatten)]
    pub detect: DetectArgs,
}

/// A batch run that could not start or could not write its outputs.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Bad flags.
    #[error("{0}")]
    Config(String),
    /// The model does not load.
    #[error("model: {0}")]
    Model(String),
    /// Reading the input or writing the outputs.
    #[error("{what}: {source}")]
    Io {
        /// what was being done
        what: String,
        /// the error
        source: std::io::Error,
    },
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// files looked at
    pub files: usize,
    /// images processed
    pub ok: usize,
    /// files that failed, with the reason
    pub failed: Vec<(String, String)>,
    /// detections written
    pub detections: usize,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BatchError {
    let what = what.into();
    move |source| BatchError::Io { what, source }
}

/// A CSV field, quoted when needed (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

const PALETTE: [[u8; 3]; 6] = [
    [255, 56, 56],
    [56, 255, 56],
    [56, 56, 255],
    [255, 200, 0],
    [255, 0, 255],
    [0, 255, 255],
];

/// Side of a glyph cell of the built-in font (`font8x8`, the public-domain 8x8 bitmap font).
pub const GLYPH: u32 = 8;
/// Height of a label: a glyph row and a pixel of margin above and below.
pub const LABEL_HEIGHT: u32 = GLYPH + 2;

/// The label drawn with a box: the class name (the class id when none is declared) and the
/// confidence with two decimals, e.g. `person 0.87`.
pub fn label_text(d: &Det) -> String {
    match &d.class_name {
        Some(name) => format!("{name} {:.2}", d.confidence),
        None => format!("{} {:.2}", d.class_id, d.confidence),
    }
}

/// Where a label goes for a box whose top-left corner is (`x1`, `y1`) on a `w` x `h` image:
/// `(x, y, width)` of its background. Above the box when there is room, else just inside its top;
/// shifted left to stay on the image, cut at its edges.
pub fn label_place(text: &str, x1: u32, y1: u32, w: u32) -> (u32, u32, u32) {
    let width = (text.chars().count() as u32 * GLYPH + 2).min(w);
    let x = x1.min(w - width);
    let y = if y1 >= LABEL_HEIGHT {
        y1 - LABEL_HEIGHT
    } else {
        y1
    };
    (x, y, width)
}

/// Draws `text` on a filled `background` bar at (`x`, `y`): black or white glyphs, whichever
/// reads better on that colour; characters outside ASCII are drawn as `?`.
fn draw_label(img: &mut RgbImage, text: &str, (x, y, width): (u32, u32, u32), background: Rgb<u8>) {
    let (w, h) = img.dimensions();
    for py in y..(y + LABEL_HEIGHT).min(h) {
        for px in x..(x + width).min(w) {
            img.put_pixel(px, py, background);
        }
    }
    let [r, g, b] = background.0;
    let luma = 299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b);
    let ink = if luma > 140_000 {
        Rgb([0, 0, 0])
    } else {
        Rgb([255, 255, 255])
    };
    for (i, ch) in text.chars().enumerate() {
        let code = if ch.is_ascii() && !ch.is_ascii_control() {
            ch as usize
        } else {
            usize::from(b'?')
        };
        let glyph = font8x8::legacy::BASIC_LEGACY[code];
        let gx = x + 1 + i as u32 * GLYPH;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..GLYPH {
                // bit 0 is the leftmost pixel
                let (px, py) = (gx + col, y + 1 + row as u32);
                if bits >> col & 1 == 1 && px < (x + width).min(w) && py < h {
                    img.put_pixel(px, py, ink);
                }
            }
        }
    }
}

/// Draws a 2-pixel box outline per detection, one colour per class, then its label (class name
/// and confidence, see [`label_text`]) on a bar of that colour (lowest confidence first, so the
/// most confident label ends on top).
fn annotate(img: &mut RgbImage, dets: &[Det]) {
    let (w, h) = img.dimensions();
    let corner = |d: &Det| {
        (
            (d.x1.max(0.0) as u32).min(w.saturating_sub(1)),
            (d.y1.max(0.0) as u32).min(h.saturating_sub(1)),
        )
    };
    for d in dets {
        let colour = Rgb(PALETTE[d.class_id % PALETTE.len()]);
        let (x1, y1) = corner(d);
        let x2 = (d.x2.max(0.0) as u32).min(w.saturating_sub(1));
        let y2 = (d.y2.max(0.0) as u32).min(h.saturating_sub(1));
        for t in 0..2u32 {
            for x in x1..=x2 {
                img.put_pixel(x, (y1 + t).min(y2), colour);
                img.put_pixel(x, y2.saturating_sub(t).max(y1), colour);
            }
            for y in y1..=y2 {
                img.put_pixel((x1 + t).min(x2), y, colour);
                img.put_pixel(x2.saturating_sub(t).max(x1), y, colour);
            }
        }
    }
    for d in dets.iter().rev() {
        let colour = Rgb(PALETTE[d.class_id % PALETTE.len()]);
        let (x1, y1) = corner(d);
        let text = label_text(d);
        draw_label(img, &text, label_place(&text, x1, y1, w), colour);
    }
}

fn detect_one(
    backend: &mut OrtBackend,
    detection: &Detection,
    bytes: &[u8],
) -> Result<(RgbImage, Vec<Det>), String> {
    let img = preprocess::decode_encoded(bytes).map_err(|e| e.to_string())?;
    let prepared = preprocess::prepare(&img, &detection.preprocess);
    let pre = &detection.preprocess;
    let input = Tensor::new(
        detection.input.clone(),
        vec![1, 3, i64::from(pre.height), i64::from(pre.width)],
        TensorData::Fp32(prepared.data),
    )
    .map_err(|e| e.to_string())?;
    let outputs = backend
        .infer(vec![input])
        .map_err(|e| format!("inference: {e}"))?;
    let Some(Tensor {
        shape,
        data: TensorData::Fp32(data),
        ..
    }) = outputs.into_iter().next()
    else {
        return Err("the detector's first output is not FP32".into());
    };
    let dets = detection
        .postprocess
        .run(&data, &shape, &prepared.transform)
        .map_err(|e| e.to_string())?;
    Ok((img, dets))
}

/// Runs the pipeline over `args.input` (files in name order, not recursive).
pub fn run(args: &BatchArgs) -> Result<Summary, BatchError> {
    let detection = args
        .detect
        .detection()
        .map_err(|e| BatchError::Config(e.to_string()))?
        .ok_or_else(|| BatchError::Config("--detect-size is required".into()))?;
    let env = ort_backend::environment(args.ort_library.as_deref())
        .map_err(|e| BatchError::Model(e.to_string()))?;
    let loaded = ort_backend::load_session(
        env,
        &args.model,
        &SessionOptions {
            intra_threads: args.intra_op_threads.max(1),
            execution_providers: vec![ExecutionProvider::Cpu],
        },
    )
    .map_err(|e| BatchError::Model(e.to_string()))?;
    let signature =
        ort_backend::signature(&loaded.session).map_err(|e| BatchError::Model(e.to_string()))?;
    let detection = detection
        .for_model(&signature)
        .map_err(BatchError::Config)?
        .into_owned();
    let mut backend = OrtBackend::new(loaded.session);

    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.input)
        .map_err(io(format!("reading {}", args.input.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    std::fs::create_dir_all(&args.output)
        .map_err(io(format!("creating {}", args.output.display())))?;
    let mut csv = std::io::BufWriter::new(
        std::fs::File::create(&args.csv).map_err(io(format!("creating {}", args.csv.display())))?,
    );
    let write_err = io("writing the CSV");
    writeln!(
        csv,
        "file,processed_at,class_id,class_name,confidence,x1,y1,x2,y2"
    )
    .map_err(write_err)?;

    let progress = std::io::stderr().is_terminal();
    let mut summary = Summary {
        files: files.len(),
        ..Summary::default()
    };
    for (i, path) in files.iter().enumerate() {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        if progress {
            eprint!("\r[{}/{}] {name:<40.40}", i + 1, files.len());
        }
        let result = std::fs::read(path)
            .map_err(|e| format!("read: {e}"))
            .and_then(|bytes| detect_one(&mut backend, &detection, &bytes));
        match result {
            Ok((mut img, dets)) => {
                let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                for d in &dets {
                    writeln!(
                        csv,
                        "{},{at},{},{},{},{:.2},{:.2},{:.2},{:.2}",
                        csv_field(&name),
                        d.class_id,
                        csv_field(d.class_name.as_deref().unwrap_or("")),
                        d.confidence,
                        d.x1,
                        d.y1,
                        d.x2,
                        d.y2
                    )
                    .map_err(io("writing the CSV"))?;
                }
                annotate(&mut img, &dets);
                let stem = Path::new(&name)
                    .file_stem()
                    .map_or_else(|| name.clone(), |s| s.to_string_lossy().into_owned());
                let out = args.output.join(format!("{stem}.annotated.png"));
                img.save_with_format(&out, image::ImageFormat::Png)
                    .map_err(|e| BatchError::Io {
                        what: format!("writing {}", out.display()),
                        source: std::io::Error::other(e.to_string()),
                    })?;
                summary.ok += 1;
                summary.detections += dets.len();
            }
            Err(reason) => summary.failed.push((name, reason)),
        }
    }
    if progress {
        eprintln!();
    }
    csv.flush().map_err(io("writing the CSV"))?;
    let errors_path = args.output.join("errors.csv");
    let mut errors = String::from("file,error\n");
    for (file, reason) in &summary.failed {
        errors.push_str(&format!("{},{}\n", csv_field(file), csv_field(reason)));
    }
    std::fs::write(&errors_path, errors)
        .map_err(io(format!("writing {}", errors_path.display())))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class_name: Option<&str>) -> Det {
        Det {
            class_id: 3,
            class_name: class_name.map(str::to_owned),
            confidence: 0.876,
            x1: 0.0,
            y1: 0.0,
            x2: 1.0,
            y2: 1.0,
        }
    }

    #[test]
    fn label_text_is_name_or_id_and_two_decimals() {
        assert_eq!(label_text(&det(Some("person"))), "person 0.88");
        assert_eq!(label_text(&det(None)), "3 0.88");
    }

    #[test]
    fn label_goes_above_else_inside_and_stays_on_the_image() {
        // "ab 0.50": 7 glyphs, 58 px wide
        assert_eq!(label_place("ab 0.50", 20, 30, 200), (20, 20, 58));
        assert_eq!(
            label_place("ab 0.50", 20, 9, 200),
            (20, 9, 58),
            "no room above"
        );
        assert_eq!(
            label_place("ab 0.50", 180, 30, 200),
            (142, 20, 58),
            "shifted left"
        );
        assert_eq!(
            label_place("ab 0.50", 5, 30, 40),
            (0, 20, 40),
            "cut at the width"
        );
    }

    #[test]
    fn non_ascii_is_drawn_as_a_question_mark_and_never_off_the_image() {
        let mut a = RgbImage::new(30, 12);
        let mut b = RgbImage::new(30, 12);
        draw_label(&mut a, "é", (25, 5, 10), Rgb([0, 0, 255]));
        draw_label(&mut b, "?", (25, 5, 10), Rgb([0, 0, 255]));
        assert_eq!(a, b);
        assert!(
            a.pixels().any(|p| p.0 == [255, 255, 255]),
            "white ink on blue"
        );
    }
}
