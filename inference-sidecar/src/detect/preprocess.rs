//! Declared pre-processing: an encoded image (JPEG/PNG) or a raw camera frame becomes an RGB image,
//! then a letterboxed, normalised `[1, 3, H, W]` f32 tensor in the model's colour order.

use image::RgbImage;

/// Channel order the model expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorOrder {
    /// red, green, blue
    #[default]
    Rgb,
    /// blue, green, red
    Bgr,
}

/// Where the resized image sits in the model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Letterbox {
    /// centred, padding split between both sides
    #[default]
    Center,
    /// at the top-left corner, padding right and bottom
    TopLeft,
}

/// How the letterboxed size `side x scale` becomes whole pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResizeRounding {
    /// to the nearest pixel, halves to even (Python's `round()` in the ultralytics YOLOv5/YOLOv8
    /// `LetterBox`)
    #[default]
    Round,
    /// down (`int(side * r)`: the YOLOX reference `preproc`, and ddddocr)
    Floor,
}

/// The declared pre-processing (`spec.model.preprocess`): `value = (pixel * scale - mean) / std`,
/// per channel in the model's colour order; padding is `pad_value` (a pixel value, 0-255) put
/// through the same normalisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    /// model input width
    pub width: u32,
    /// model input height
    pub height: u32,
    /// channel order
    pub color_order: ColorOrder,
    /// multiplier applied to 0-255 pixel values
    pub scale: f32,
    /// per-channel mean (model channel order), subtracted after scaling
    pub mean: [f32; 3],
    /// per-channel std (model channel order), divides after the mean
    pub std: [f32; 3],
    /// letterbox placement
    pub letterbox: Letterbox,
    /// padding pixel value (0-255)
    pub pad_value: u8,
    /// how the resized size is rounded to whole pixels
    pub resize_rounding: ResizeRounding,
}

impl Preprocess {
    /// YOLO defaults for a `width` x `height` input: RGB, scale 1/255, no mean/std, centred
    /// letterbox padded with 114.
    pub fn yolo(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            color_order: ColorOrder::Rgb,
            scale: 1.0 / 255.0,
            mean: [0.0; 3],
            std: [1.0; 3],
            letterbox: Letterbox::Center,
            pad_value: 114,
            resize_rounding: ResizeRounding::Round,
        }
    }

    /// Width and height are 0: taken from the model when it loads (`--detect-size auto`).
    pub fn size_from_model(&self) -> bool {
        self.width == 0 || self.height == 0
    }

    /// The warm-up shape for the model input named `input`, e.g. `images=1x3x640x640`.
    pub fn warmup_shape(&self, input: &str) -> String {
        format!("{input}=1x3x{}x{}", self.height, self.width)
    }
}

/// Why an image could not be turned into a tensor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// An empty body.
    #[error("empty image")]
    Empty,
    /// Bytes that claim a supported format but do not decode (truncated, corrupt).
    #[error("corrupt image: {0}")]
    Corrupt(String),
    /// A format or raw encoding that is not supported.
    #[error("unsupported image: {0}")]
    Unsupported(String),
    /// A raw frame whose geometry does not match its data.
    #[error("bad raw frame: {0}")]
    BadFrame(String),
}

impl ImageError {
    /// The `outcome` label of `robofleet_detection_images_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Unsupported(_) => "unsupported",
            Self::Empty | Self::Corrupt(_) | Self::BadFrame(_) => "corrupt",
        }
    }
}

/// Largest accepted image side, in pixels (guards decoder allocations).
pub const MAX_SIDE: u32 = 16_384;

/// Decode a JPEG or PNG into RGB.
pub fn decode_encoded(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let format = image::guess_format(bytes)
        .map_err(|_| ImageError::Unsupported("not a JPEG or PNG image".into()))?;
    if !matches!(format, image::ImageFormat::Jpeg | image::ImageFormat::Png) {
        return Err(ImageError::Unsupported(format!("{format:?} images")));
    }
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| match e {
        image::ImageError::Unsupported(u) => ImageError::Unsupported(u.to_string()),
        image::ImageError::Limits(l) => ImageError::Unsupported(l.to_string()),
        other => ImageError::Corrupt(other.to_string()),
    })?;
    if decoded.width() == 0 || decoded.height() == 0 {
        return Err(ImageError::Corrupt("zero-sized image".into()));
    }
    // moves the pixels when the image is RGB already (a copy of the whole frame otherwise)
    Ok(decoded.into_rgb8())
}

/// Pixel encodings of raw frames (the `sensor_msgs/Image` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawEncoding {
    /// 3 bytes: R, G, B
    Rgb8,
    /// 3 bytes: B, G, R
    Bgr8,
    /// 1 byte: grey
    Mono8,
    /// 4 bytes: R, G, B, A
    Rgba8,
    /// 4 bytes: B, G, R, A
    Bgra8,
    /// YUYV 4:2:2, 4 bytes per 2 pixels: Y0, U, Y1, V (BT.601, full range)
    Yuyv,
}

impl RawEncoding {
    /// Parse an encoding name: rgb8, bgr8, mono8, rgba8, bgra8, yuv422 / yuyv / yuv422_yuy2.
    pub fn parse(name: &str) -> Result<Self, ImageError> {
        Ok(match name.trim().to_ascii_lowercase().as_str() {
            "rgb8" => Self::Rgb8,
            "bgr8" => Self::Bgr8,
            "mono8" | "8uc1" => Self::Mono8,
            "rgba8" => Self::Rgba8,
            "bgra8" => Self::Bgra8,
            "yuv422" | "yuyv" | "yuv422_yuy2" => Self::Yuyv,
            other => return Err(ImageError::Unsupported(format!("raw encoding {other:?}"))),
        })
    }

    /// Bytes per pixel (2 for YUYV: 4 bytes per pixel pair).
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            Self::Mono8 => 1,
            Self::Yuyv => 2,
            Self::Rgb8 | Self::Bgr8 => 3,
            Self::Rgba8 | Self::Bgra8 => 4,
        }
    }
}

/// A raw camera frame: rows of `step` bytes, `width` x `height` pixels.
#[derive(Debug, Clone, Copy)]
pub struct RawFrame<'a> {
    /// pixels per row
    pub width: u32,
    /// rows
    pub height: u32,
    /// bytes per row (at least width x bytes per pixel)
    pub step: usize,
    /// pixel encoding
    pub encoding: RawEncoding,
    /// the pixel data
    pub data: &'a [u8],
}

fn clamp_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let y = f32::from(y);
    let u = f32::from(u) - 128.0;
    let v = f32::from(v) - 128.0;
    [
        clamp_u8(y + 1.402 * v),
        clamp_u8(y - 0.344_136 * u - 0.714_136 * v),
        clamp_u8(y + 1.772 * u),
    ]
}

/// Convert a raw frame to RGB, checking its geometry against its data.
pub fn raw_to_rgb(frame: &RawFrame<'_>) -> Result<RgbImage, ImageError> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    if w == 0 || h == 0 {
        return Err(ImageError::BadFrame("zero width or height".into()));
    }
    if frame.width > MAX_SIDE || frame.height > MAX_SIDE {
        return Err(ImageError::Unsupported(format!(
            "frames larger than {MAX_SIDE} pixels"
        )));
    }
    if frame.encoding == RawEncoding::Yuyv && w % 2 != 0 {
        return Err(ImageError::BadFrame("yuv422 needs an even width".into()));
    }
    let row = w * frame.encoding.bytes_per_pixel();
    if frame.step < row {
        return Err(ImageError::BadFrame(format!(
            "step {} < {row} bytes per row",
            frame.step
        )));
    }
    let need = frame.step * (h - 1) + row;
    if frame.data.len() < need {
        return Err(ImageError::BadFrame(format!(
            "{} bytes, {need} needed for {w}x{h} step {}",
            frame.data.len(),
            frame.step
        )));
    }
    let mut out = Vec::with_capacity(w * h * 3);
    for r in 0..h {
        let src = &frame.data[r * frame.step..r * frame.step + row];
        match frame.encoding {
            RawEncoding::Rgb8 => out.extend_from_slice(src),
            RawEncoding::Bgr8 => src
                .chunks_exact(3)
                .for_each(|p| out.extend([p[2], p[1], p[0]])),
            RawEncoding::Mono8 => src.iter().for_each(|&g| out.extend([g, g, g])),
            RawEncoding::Rgba8 => src
                .chunks_exact(4)
                .for_each(|p| out.extend([p[0], p[1], p[2]])),
            RawEncoding::Bgra8 => src
                .chunks_exact(4)
                .for_each(|p| out.extend([p[2], p[1], p[0]])),
            RawEncoding::Yuyv => src.chunks_exact(4).for_each(|p| {
                out.extend(yuv_to_rgb(p[0], p[1], p[3]));
                out.extend(yuv_to_rgb(p[2], p[1], p[3]));
            }),
        }
    }
    RgbImage::from_raw(frame.width, frame.height, out)
        .ok_or_else(|| ImageError::BadFrame("pixel buffer size".into()))
}

/// How the letterbox placed the original image in the model input: `input = original * scale + pad`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LetterboxTransform {
    /// resize factor
    pub scale: f32,
    /// horizontal padding before the image, input pixels
    pub pad_x: f32,
    /// vertical padding before the image, input pixels
    pub pad_y: f32,
    /// original image width
    pub orig_width: u32,
    /// original image height
    pub orig_height: u32,
    /// model input width
    pub input_width: u32,
    /// model input height
    pub input_height: u32,
}

impl LetterboxTransform {
    /// Map a point from model input coordinates back to the original image (clamped to it).
    pub fn unmap(&self, x: f32, y: f32) -> (f32, f32) {
        (
            ((x - self.pad_x) / self.scale).clamp(0.0, self.orig_width as f32),
            ((y - self.pad_y) / self.scale).clamp(0.0, self.orig_height as f32),
        )
    }
}

/// A model input tensor: `[1, 3, height, width]` f32, and how to map boxes back.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// NCHW data, `3 * height * width` values
    pub data: Vec<f32>,
    /// the letterbox applied
    pub transform: LetterboxTransform,
}

/// Bilinear resize as OpenCV's `cv2.resize(..., INTER_LINEAR)` does it (pixel centres aligned,
/// a fixed 2x2 kernel, no widening when shrinking): the resize the YOLO reference pipelines
/// (YOLOX, ultralytics, ddddocr) train and infer with, so a shrunk picture looks to the model as it
/// did in training (an antialiasing resize moved boxes by several pixels against ddddocr's own
/// `detection()`, see tests/ddddocr.rs). `fast_image_resize` (SIMD; the `image` crate's resize
/// costs several times more), falling back to the `image` crate should it refuse.
fn resize(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
    let mut dst = RgbImage::new(width, height);
    let opts = ResizeOptions::new().resize_alg(ResizeAlg::Interpolation(FilterType::Bilinear));
    match Resizer::new().resize(img, &mut dst, &opts) {
        Ok(()) => dst,
        Err(_) => {
            image::imageops::resize(img, width, height, image::imageops::FilterType::Triangle)
        }
    }
}

/// Letterbox, reorder and normalise an RGB image into the model input.
pub fn prepare(img: &RgbImage, cfg: &Preprocess) -> Prepared {
    let (iw, ih) = img.dimensions();
    let (tw, th) = (cfg.width.max(1), cfg.height.max(1));
    // f64 as the Python reference pipelines compute it, so `Floor` truncates exactly where they do
    let r = (f64::from(tw) / f64::from(iw.max(1))).min(f64::from(th) / f64::from(ih.max(1)));
    let side = |v: u32| {
        let exact = f64::from(v) * r;
        match cfg.resize_rounding {
            ResizeRounding::Round => exact.round_ties_even(),
            ResizeRounding::Floor => exact.floor(),
        }
    };
    let scale = r as f32;
    let nw = (side(iw) as u32).clamp(1, tw);
    let nh = (side(ih) as u32).clamp(1, th);
    let (pad_x, pad_y) = match cfg.letterbox {
        Letterbox::Center => ((tw - nw) / 2, (th - nh) / 2),
        Letterbox::TopLeft => (0, 0),
    };
    let resized = if (nw, nh) == (iw, ih) {
        None
    } else {
        Some(resize(img, nw, nh))
    };
    let src = resized.as_ref().unwrap_or(img);
    let order: [usize; 3] = match cfg.color_order {
        ColorOrder::Rgb => [0, 1, 2],
        ColorOrder::Bgr => [2, 1, 0],
    };
    let (tw_, nw_, pad_x_) = (tw as usize, nw as usize, pad_x as usize);
    let mut data = Vec::with_capacity(3 * tw_ * th as usize);
    // rows of the (resized) image, `nw` RGB pixels each
    let row_bytes = nw_ * 3;
    let rows = src.as_raw().chunks_exact(row_bytes).take(nh as usize);
    let image_rows = pad_y..pad_y + nh;
    for (c, &src_c) in order.iter().enumerate() {
        let norm = |p: u8| (f32::from(p) * cfg.scale - cfg.mean[c]) / cfg.std[c];
        // the same expression for each of the 256 values, looked up per pixel
        let lut: [f32; 256] = std::array::from_fn(|p| norm(p as u8));
        let pad = lut[usize::from(cfg.pad_value)];
        let pad_row = |data: &mut Vec<f32>, n: usize| data.extend(std::iter::repeat_n(pad, n));
        // every value written once, in order: padding rows, then each image row between its
        // left and right padding
        let mut pixels = rows.clone();
        for y in 0..th {
            if image_rows.contains(&y)
                && let Some(row) = pixels.next()
            {
                pad_row(&mut data, pad_x_);
                data.extend(row.chunks_exact(3).map(|p| lut[usize::from(p[src_c])]));
                pad_row(&mut data, tw_ - pad_x_ - nw_);
            } else {
                pad_row(&mut data, tw_);
            }
        }
    }
    Prepared {
        data,
        transform: LetterboxTransform {
            scale,
            pad_x: pad_x as f32,
            pad_y: pad_y as f32,
            orig_width: iw,
            orig_height: ih,
            input_width: tw,
            input_height: th,
        },
    }
}
