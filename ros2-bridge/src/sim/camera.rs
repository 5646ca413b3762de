//! Synthetic camera frames: the scenario's obstacles drawn as filled boxes on a grey background
//! (bearing → column over a 90° field of view, distance → size), raw `rgb8`, `bgr8` or `mono8`;
//! optionally corrupt (truncated data, so `step * height` does not match). Pure and seeded.

use super::config::Obstacle;
use super::rng::Rng;
use super::scene::obstacle_distance;
use crate::msg::{Header, Image, Time};

/// Raw pixel layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// 3 bytes, R G B.
    Rgb8,
    /// 3 bytes, B G R.
    Bgr8,
    /// 1 byte grey.
    Mono8,
}

impl Encoding {
    /// The `sensor_msgs/Image.encoding` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Rgb8 => "rgb8",
            Encoding::Bgr8 => "bgr8",
            Encoding::Mono8 => "mono8",
        }
    }

    fn channels(self) -> usize {
        if self == Encoding::Mono8 { 1 } else { 3 }
    }
}

/// A validated camera.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CameraConfig {
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Layout.
    pub encoding: Encoding,
    /// Probability that a frame is corrupt.
    pub corrupt_rate: f64,
}

const BACKGROUND: [u8; 3] = [96, 96, 96];
const HALF_FOV: f64 = std::f64::consts::FRAC_PI_4;

fn colour(i: usize) -> [u8; 3] {
    const PALETTE: [[u8; 3]; 4] = [[220, 40, 40], [40, 180, 60], [40, 80, 220], [230, 200, 40]];
    PALETTE[i % PALETTE.len()]
}

/// Boxes `(x0, y0, x1, y1, colour)` in pixels for the obstacles in view at `t`.
pub fn boxes(
    cam: &CameraConfig,
    obstacles: &[Obstacle],
    t: f64,
) -> Vec<(u32, u32, u32, u32, [u8; 3])> {
    let (w, h) = (f64::from(cam.width), f64::from(cam.height));
    obstacles
        .iter()
        .enumerate()
        .filter_map(|(i, o)| {
            let d = obstacle_distance(o, t)?;
            if o.bearing.abs() >= HALF_FOV {
                return None;
            }
            // Column from the bearing (left of the robot is left in the image), size ∝ 1/distance.
            let cx = w / 2.0 - o.bearing / HALF_FOV * w / 2.0;
            let size = (h * o.radius * 2.0 / d.max(0.05)).clamp(2.0, h);
            let x0 = (cx - size / 2.0).clamp(0.0, w - 1.0) as u32;
            let x1 = (cx + size / 2.0).clamp(0.0, w) as u32;
            let y0 = ((h - size) / 2.0).max(0.0) as u32;
            let y1 = ((h + size) / 2.0).min(h) as u32;
            (x1 > x0 && y1 > y0).then_some((x0, y0, x1, y1, colour(i)))
        })
        .collect()
}

/// The frame at `t`; the flag says whether it was corrupted.
pub fn frame(
    cam: &CameraConfig,
    obstacles: &[Obstacle],
    t: f64,
    rng: &mut Rng,
    stamp: Time,
    frame_id: &str,
) -> (Image, bool) {
    let ch = cam.encoding.channels();
    let (w, h) = (cam.width as usize, cam.height as usize);
    let px = |rgb: [u8; 3]| -> [u8; 3] {
        match cam.encoding {
            Encoding::Rgb8 => rgb,
            Encoding::Bgr8 => [rgb[2], rgb[1], rgb[0]],
            Encoding::Mono8 => {
                let y = (u32::from(rgb[0]) * 77 + u32::from(rgb[1]) * 150 + u32::from(rgb[2]) * 29)
                    >> 8;
                [y as u8, 0, 0]
            }
        }
    };
    let bg = px(BACKGROUND);
    let mut data = Vec::with_capacity(w * h * ch);
    for _ in 0..w * h {
        data.extend_from_slice(&bg[..ch]);
    }
    for (x0, y0, x1, y1, c) in boxes(cam, obstacles, t) {
        let c = px(c);
        for y in y0 as usize..y1 as usize {
            for x in x0 as usize..x1 as usize {
                let i = (y * w + x) * ch;
                data[i..i + ch].copy_from_slice(&c[..ch]);
            }
        }
    }
    let corrupt = rng.chance(cam.corrupt_rate);
    if corrupt {
        data.truncate(data.len() / 2);
    }
    let image = Image {
        header: Header {
            stamp,
            frame_id: frame_id.into(),
        },
        height: cam.height,
        width: cam.width,
        encoding: cam.encoding.as_str().into(),
        is_bigendian: 0,
        step: cam.width * ch as u32,
        data,
    };
    (image, corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obstacle(bearing_deg: f64, d: f64) -> Obstacle {
        Obstacle {
            bearing: bearing_deg.to_radians(),
            start: d,
            speed: 0.0,
            min: 0.1,
            radius: 0.25,
            appear: 0.0,
            disappear: f64::INFINITY,
        }
    }

    #[test]
    fn boxes_follow_bearing_and_distance() {
        let cam = CameraConfig {
            width: 64,
            height: 48,
            encoding: Encoding::Rgb8,
            corrupt_rate: 0.0,
        };
        let ahead = boxes(&cam, &[obstacle(0.0, 2.0)], 0.0);
        let near = boxes(&cam, &[obstacle(0.0, 1.0)], 0.0);
        let left = boxes(&cam, &[obstacle(30.0, 2.0)], 0.0);
        assert_eq!(ahead.len(), 1);
        let centre = |b: &(u32, u32, u32, u32, [u8; 3])| (b.0 + b.2) / 2;
        assert!((centre(&ahead[0]) as i32 - 32).abs() <= 1);
        assert!(
            near[0].2 - near[0].0 > ahead[0].2 - ahead[0].0,
            "closer is bigger"
        );
        assert!(
            centre(&left[0]) < 32,
            "left of the robot is left in the image"
        );
        assert!(
            boxes(&cam, &[obstacle(60.0, 2.0)], 0.0).is_empty(),
            "outside the field of view"
        );
    }

    #[test]
    fn frames_have_consistent_layout_unless_corrupt() {
        let mut rng = Rng::new(3);
        for enc in [Encoding::Rgb8, Encoding::Bgr8, Encoding::Mono8] {
            let cam = CameraConfig {
                width: 32,
                height: 24,
                encoding: enc,
                corrupt_rate: 0.0,
            };
            let (img, corrupt) = frame(
                &cam,
                &[obstacle(0.0, 1.0)],
                0.0,
                &mut rng,
                Time::default(),
                "cam",
            );
            assert!(!corrupt);
            assert_eq!(img.data.len(), (img.step * img.height) as usize);
            assert_eq!(img.encoding, enc.as_str());
            let centre = (12 * 32 + 16) * enc.channels();
            let want = match enc {
                Encoding::Rgb8 => vec![220, 40, 40],
                Encoding::Bgr8 => vec![40, 40, 220],
                Encoding::Mono8 => vec![((220 * 77 + 40 * 150 + 40 * 29) >> 8) as u8],
            };
            assert_eq!(img.data[centre..centre + enc.channels()], want[..]);
            assert_eq!(img.data[..enc.channels()], vec![96u8; enc.channels()][..]);
        }
        let cam = CameraConfig {
            width: 32,
            height: 24,
            encoding: Encoding::Rgb8,
            corrupt_rate: 1.0,
        };
        let (img, corrupt) = frame(&cam, &[], 0.0, &mut rng, Time::default(), "cam");
        assert!(corrupt && img.data.len() < (img.step * img.height) as usize);
    }
}
