use image::{Rgb, RgbImage};

use super::preprocess::*;

/// A 8x4 image: grey 10 background with a red (200, 30, 60) 2x2 square at x=2..4, y=1..3.
fn picture() -> RgbImage {
    let mut img = RgbImage::from_pixel(8, 4, Rgb([10, 10, 10]));
    for y in 1..3 {
        for x in 2..4 {
            img.put_pixel(x, y, Rgb([200, 30, 60]));
        }
    }
    img
}

fn png(img: &RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

fn identity(w: u32, h: u32) -> Preprocess {
    Preprocess {
        scale: 1.0,
        pad_value: 0,
        ..Preprocess::yolo(w, h)
    }
}

fn at(p: &Prepared, cfg: &Preprocess, c: usize, x: u32, y: u32) -> f32 {
    p.data[c * (cfg.width * cfg.height) as usize + (y * cfg.width + x) as usize]
}

#[test]
fn png_round_trips_and_bad_bytes_are_classified() {
    let img = picture();
    assert_eq!(decode_encoded(&png(&img)).expect("decode"), img);
    assert_eq!(decode_encoded(&[]), Err(ImageError::Empty));
    let bytes = png(&img);
    let truncated = decode_encoded(&bytes[..bytes.len() / 2]).expect_err("truncated");
    assert_eq!(truncated.outcome(), "corrupt", "{truncated}");
    let not_image = decode_encoded(b"hello, this is text").expect_err("text");
    assert_eq!(not_image.outcome(), "unsupported");
    let gif = decode_encoded(b"GIF89a\x01\x00\x01\x00").expect_err("gif");
    assert_eq!(gif.outcome(), "unsupported");
    // a JPEG header followed by garbage
    let jpeg = decode_encoded(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, 1, 2, 3]).expect_err("jpeg");
    assert_eq!(jpeg.outcome(), "corrupt", "{jpeg}");
}

#[test]
fn jpeg_decodes_to_roughly_the_same_picture() {
    let img = RgbImage::from_pixel(16, 16, Rgb([120, 60, 200]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode jpeg");
    let back = decode_encoded(out.get_ref()).expect("decode");
    assert_eq!(back.dimensions(), (16, 16));
    for (a, b) in back.as_raw().iter().zip(img.as_raw()) {
        assert!((i16::from(*a) - i16::from(*b)).abs() <= 4, "{a} vs {b}");
    }
}

/// Encode the picture as a raw frame in `enc`, rows padded to `step`.
fn raw(img: &RgbImage, enc: RawEncoding, step: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for y in 0..img.height() {
        let start = out.len();
        let row: Vec<[u8; 3]> = (0..img.width()).map(|x| img.get_pixel(x, y).0).collect();
        match enc {
            RawEncoding::Rgb8 => row.iter().for_each(|p| out.extend(p)),
            RawEncoding::Bgr8 => row.iter().for_each(|p| out.extend([p[2], p[1], p[0]])),
            RawEncoding::Mono8 => row.iter().for_each(|p| out.push(p[0])),
            RawEncoding::Rgba8 => row.iter().for_each(|p| out.extend([p[0], p[1], p[2], 255])),
            RawEncoding::Bgra8 => row.iter().for_each(|p| out.extend([p[2], p[1], p[0], 7])),
            RawEncoding::Yuyv => row.chunks(2).for_each(|pair| {
                let yuv = |p: [u8; 3]| {
                    let (r, g, b) = (f32::from(p[0]), f32::from(p[1]), f32::from(p[2]));
                    let y = 0.299 * r + 0.587 * g + 0.114 * b;
                    (y, (b - y) / 1.772 + 128.0, (r - y) / 1.402 + 128.0)
                };
                let (y0, u0, v0) = yuv(pair[0]);
                let (y1, u1, v1) = yuv(pair[1]);
                let q = |v: f32| v.round().clamp(0.0, 255.0) as u8;
                out.extend([q(y0), q((u0 + u1) / 2.0), q(y1), q((v0 + v1) / 2.0)]);
            }),
        }
        out.resize(start + step, 0xAB);
    }
    out
}

#[test]
fn raw_frames_in_every_encoding_give_the_picture() {
    let img = picture();
    let grey = RgbImage::from_fn(8, 4, |x, y| {
        let r = img.get_pixel(x, y).0[0];
        Rgb([r, r, r])
    });
    for (enc, name) in [
        (RawEncoding::Rgb8, "rgb8"),
        (RawEncoding::Bgr8, "bgr8"),
        (RawEncoding::Mono8, "mono8"),
        (RawEncoding::Rgba8, "rgba8"),
        (RawEncoding::Bgra8, "bgra8"),
        (RawEncoding::Yuyv, "yuv422"),
    ] {
        assert_eq!(RawEncoding::parse(name), Ok(enc));
        let step = 8 * enc.bytes_per_pixel() + 5;
        let data = raw(&img, enc, step);
        let frame = RawFrame {
            width: 8,
            height: 4,
            step,
            encoding: enc,
            data: &data,
        };
        let rgb = raw_to_rgb(&frame).expect(name);
        let want = if enc == RawEncoding::Mono8 {
            &grey
        } else {
            &img
        };
        let tol = if enc == RawEncoding::Yuyv { 3 } else { 0 };
        for (a, b) in rgb.as_raw().iter().zip(want.as_raw()) {
            assert!(
                (i16::from(*a) - i16::from(*b)).abs() <= tol,
                "{name}: {a} vs {b}"
            );
        }
    }
    assert_eq!(RawEncoding::parse("YUYV"), Ok(RawEncoding::Yuyv));
    assert_eq!(
        RawEncoding::parse("16UC1").map_err(|e| e.outcome()),
        Err("unsupported")
    );
}

#[test]
fn raw_frames_with_bad_geometry_are_refused() {
    let data = vec![0u8; 8 * 4 * 3];
    let frame = |width, height, step, encoding| RawFrame {
        width,
        height,
        step,
        encoding,
        data: &data,
    };
    for bad in [
        frame(8, 5, 24, RawEncoding::Rgb8),  // too few bytes
        frame(8, 4, 20, RawEncoding::Rgb8),  // step < row
        frame(0, 4, 24, RawEncoding::Rgb8),  // empty
        frame(7, 4, 16, RawEncoding::Yuyv),  // odd width
        frame(8, 4, 24, RawEncoding::Rgba8), // 4 bytes/pixel: too few bytes
    ] {
        let err = raw_to_rgb(&bad).expect_err("bad frame");
        assert_eq!(err.outcome(), "corrupt", "{err}");
    }
    // the last row needs no padding
    let short = vec![0u8; 30 * 3 + 24];
    let ok = RawFrame {
        width: 8,
        height: 4,
        step: 30,
        encoding: RawEncoding::Rgb8,
        data: &short,
    };
    assert!(raw_to_rgb(&ok).is_ok());
}

#[test]
fn letterbox_center_pads_evenly_and_keeps_pixels_at_scale_one() {
    let img = picture(); // 8x4 into 8x8: no resize, 2 rows of padding above and below
    let cfg = identity(8, 8);
    let p = prepare(&img, &cfg);
    assert_eq!(p.data.len(), 3 * 64);
    assert_eq!(
        p.transform,
        LetterboxTransform {
            scale: 1.0,
            pad_x: 0.0,
            pad_y: 2.0,
            orig_width: 8,
            orig_height: 4,
            input_width: 8,
            input_height: 8,
        }
    );
    assert_eq!(at(&p, &cfg, 0, 0, 0), 0.0); // padding
    assert_eq!(at(&p, &cfg, 0, 0, 2), 10.0); // background
    assert_eq!(
        [
            at(&p, &cfg, 0, 2, 3),
            at(&p, &cfg, 1, 2, 3),
            at(&p, &cfg, 2, 2, 3)
        ],
        [200.0, 30.0, 60.0]
    );
    assert_eq!(at(&p, &cfg, 0, 7, 6), 0.0);
    assert_eq!(p.transform.unmap(2.0, 3.0), (2.0, 1.0));
}

#[test]
fn letterbox_top_left_and_bgr_and_normalisation() {
    let img = picture();
    let cfg = Preprocess {
        color_order: ColorOrder::Bgr,
        letterbox: Letterbox::TopLeft,
        scale: 0.5,
        mean: [1.0, 2.0, 3.0],
        std: [2.0, 4.0, 8.0],
        pad_value: 114,
        ..identity(8, 8)
    };
    let p = prepare(&img, &cfg);
    assert_eq!((p.transform.pad_x, p.transform.pad_y), (0.0, 0.0));
    // model channel 0 is blue: (60 * 0.5 - 1) / 2
    assert_eq!(at(&p, &cfg, 0, 2, 1), 14.5);
    assert_eq!(at(&p, &cfg, 1, 2, 1), (15.0 - 2.0) / 4.0);
    assert_eq!(at(&p, &cfg, 2, 2, 1), (100.0 - 3.0) / 8.0);
    // padding is at the bottom, normalised like a pixel
    assert_eq!(at(&p, &cfg, 0, 0, 5), (57.0 - 1.0) / 2.0);
    assert_eq!(at(&p, &cfg, 2, 7, 7), (57.0 - 3.0) / 8.0);
}

#[test]
fn letterbox_downscales_and_unmaps_back() {
    let img = RgbImage::from_pixel(64, 32, Rgb([255, 255, 255]));
    let cfg = identity(16, 16);
    let p = prepare(&img, &cfg);
    assert_eq!(p.transform.scale, 0.25);
    assert_eq!((p.transform.pad_x, p.transform.pad_y), (0.0, 4.0));
    assert_eq!(at(&p, &cfg, 0, 8, 3), 0.0);
    assert_eq!(at(&p, &cfg, 0, 8, 4), 255.0);
    assert_eq!(at(&p, &cfg, 0, 8, 11), 255.0);
    assert_eq!(at(&p, &cfg, 0, 8, 12), 0.0);
    assert_eq!(p.transform.unmap(16.0, 12.0), (64.0, 32.0));
    assert_eq!(
        p.transform.unmap(-3.0, 0.0),
        (0.0, 0.0),
        "clamped to the image"
    );
    assert_eq!(cfg.warmup_shape("images"), "images=1x3x16x16");
}

#[test]
fn downscaling_a_gradient_stays_close_to_the_image_crate() {
    let img = RgbImage::from_fn(97, 41, |x, y| {
        Rgb([(x * 2) as u8, (y * 5) as u8, ((x + y) % 256) as u8])
    });
    let cfg = identity(48, 48);
    let p = prepare(&img, &cfg);
    let s = p.transform.scale;
    let (nw, nh) = ((97.0 * s).round() as u32, (41.0 * s).round() as u32);
    let reference = image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle);
    let (px, py) = (p.transform.pad_x as u32, p.transform.pad_y as u32);
    let mut worst = 0.0f32;
    for y in 0..nh {
        for x in 0..nw {
            for c in 0..3 {
                let got = at(&p, &cfg, c, x + px, y + py);
                let want = f32::from(reference.get_pixel(x, y).0[c]);
                worst = worst.max((got - want).abs());
            }
        }
    }
    assert!(worst <= 3.0, "worst pixel difference {worst}");
}

#[test]
fn shrinking_interpolates_like_opencv_inter_linear() {
    // 8x2 into 2x2 (scale 0.25): cv2.resize INTER_LINEAR samples at source x = (x + 0.5) / 0.25 -
    // 0.5 = 1.5 and 5.5, i.e. the mean of pixels 1, 2 and of 5, 6, ignoring the others (no
    // antialiasing, which would blend in all eight)
    let row = [0u8, 0, 40, 200, 200, 0, 80, 0];
    let img = RgbImage::from_fn(8, 2, |x, _| {
        let v = row[x as usize];
        Rgb([v, v, v])
    });
    let cfg = identity(2, 2);
    let p = prepare(&img, &cfg);
    assert_eq!(p.transform.scale, 0.25);
    assert_eq!(
        p.transform.pad_y, 0.0,
        "resized to 2x1, the padding row below"
    );
    for c in 0..3 {
        assert!((at(&p, &cfg, c, 0, 0) - 20.0).abs() <= 1.0, "{:?}", p.data);
        assert!((at(&p, &cfg, c, 1, 0) - 40.0).abs() <= 1.0, "{:?}", p.data);
    }
}

#[test]
fn resize_rounding_round_or_floor() {
    // into 416x416 at the top-left; (width, height, rows when rounded, rows when floored):
    // 1280x430 at scale 0.325 is 139.75 rows; 832x273 at 0.5 is 136.5, and Python's round()
    // (ultralytics) takes a half to the even side
    for (w, h, rounded, floored) in [(1280, 430, 140, 139), (832, 273, 136, 136)] {
        let img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
        for (rounding, rows) in [
            (ResizeRounding::Round, rounded),
            (ResizeRounding::Floor, floored),
        ] {
            let cfg = Preprocess {
                letterbox: Letterbox::TopLeft,
                resize_rounding: rounding,
                ..identity(416, 416)
            };
            let p = prepare(&img, &cfg);
            let case = format!("{w}x{h} {rounding:?}");
            assert_eq!(at(&p, &cfg, 0, 415, rows - 1), 255.0, "{case}");
            assert_eq!(at(&p, &cfg, 0, 0, rows), 0.0, "{case}");
            // scale x width is exactly 416: neither loses the last column
            assert_eq!(at(&p, &cfg, 0, 415, 0), 255.0, "{case}");
        }
    }
}

proptest::proptest! {
    /// The letterbox layout, checked value by value against its definition on pictures that need
    /// no resize (one side already fits exactly): padding everywhere outside the placed picture,
    /// each channel normalised from the declared source channel inside it.
    #[test]
    fn letterbox_layout_matches_its_definition(
        (iw, ih, extra) in (1u32..24, 1u32..24, 0u32..12),
        pad_wide in proptest::bool::ANY,
        centre in proptest::bool::ANY,
        bgr in proptest::bool::ANY,
        pad_value in 0u8..=255,
        seed in 0u32..1000,
    ) {
        let img = RgbImage::from_fn(iw, ih, |x, y| {
            let v = (x * 31 + y * 17 + seed) as u8;
            Rgb([v, v.wrapping_mul(3), v.wrapping_add(101)])
        });
        // the same width and a taller input, or the same height and a wider one: scale 1
        let (tw, th) = if pad_wide { (iw + extra, ih) } else { (iw, ih + extra) };
        let cfg = Preprocess {
            width: tw,
            height: th,
            color_order: if bgr { ColorOrder::Bgr } else { ColorOrder::Rgb },
            scale: 1.0 / 255.0,
            mean: [0.1, 0.2, 0.3],
            std: [0.5, 0.25, 2.0],
            letterbox: if centre { Letterbox::Center } else { Letterbox::TopLeft },
            pad_value,
            resize_rounding: ResizeRounding::Round,
        };
        let p = prepare(&img, &cfg);
        let (px, py) = if centre { ((tw - iw) / 2, (th - ih) / 2) } else { (0, 0) };
        proptest::prop_assert_eq!(p.data.len(), (3 * tw * th) as usize);
        for c in 0..3usize {
            let src_c = if bgr { 2 - c } else { c };
            let norm = |v: u8| (f32::from(v) * cfg.scale - cfg.mean[c]) / cfg.std[c];
            for y in 0..th {
                for x in 0..tw {
                    let inside = (px..px + iw).contains(&x) && (py..py + ih).contains(&y);
                    let want = if inside {
                        norm(img.get_pixel(x - px, y - py)[src_c])
                    } else {
                        norm(pad_value)
                    };
                    let got = p.data[c * (tw * th) as usize + (y * tw + x) as usize];
                    proptest::prop_assert_eq!(got.to_bits(), want.to_bits(), "c {} x {} y {}", c, x, y);
                }
            }
        }
    }
}
