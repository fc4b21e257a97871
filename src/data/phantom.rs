//! The built-in demo dataset: textured blobs on a textured background, drawn from a seed.
//!
//! Blobs differ from the background in brightness, hue and texture frequency, and have wobbly
//! outlines, so a segmenter must learn texture and shape rather than one threshold.
use crate::runtime::write_atomic_with;
use anyhow::{Context, Result};
use image::{GrayImage, Luma, Rgb, RgbImage};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::f64::consts::PI;
use std::path::Path;

struct Texture {
    waves: Vec<(f64, f64, f64, f64)>, // fx, fy, phase, amplitude
}

impl Texture {
    fn new(rng: &mut ChaCha8Rng, freq: f64, n: usize) -> Texture {
        let waves = (0..n)
            .map(|_| {
                let angle = rng.gen_range(0.0..PI);
                let f = freq * rng.gen_range(0.6..1.4);
                (f * angle.cos(), f * angle.sin(), rng.gen_range(0.0..2.0 * PI), rng.gen_range(0.5..1.0))
            })
            .collect();
        Texture { waves }
    }

    /// Roughly in [-1, 1].
    fn at(&self, x: f64, y: f64) -> f64 {
        let total: f64 = self.waves.iter().map(|(fx, fy, p, a)| a * (2.0 * PI * (fx * x + fy * y) + p).sin()).sum();
        total / (self.waves.len() as f64).sqrt()
    }
}

struct Blob {
    cx: f64,
    cy: f64,
    rx: f64,
    ry: f64,
    angle: f64,
    wobble: Vec<(f64, f64)>, // amplitude, phase of harmonics 2..
}

impl Blob {
    fn contains(&self, x: f64, y: f64) -> bool {
        let (s, c) = self.angle.sin_cos();
        let (dx, dy) = (x - self.cx, y - self.cy);
        let (u, v) = ((c * dx + s * dy) / self.rx, (-s * dx + c * dy) / self.ry);
        let theta = v.atan2(u);
        let radius = 1.0
            + self.wobble.iter().enumerate().map(|(k, (a, p))| a * ((k as f64 + 2.0) * theta + p).sin()).sum::<f64>();
        (u * u + v * v).sqrt() < radius
    }
}

/// One phantom image and its mask, `size` x `size`.
pub fn phantom(size: u32, rng: &mut ChaCha8Rng) -> (RgbImage, GrayImage) {
    let background = Texture::new(rng, 3.0, 6);
    let lesion = Texture::new(rng, 9.0, 6);
    let tint = [rng.gen_range(0.55..0.7), rng.gen_range(0.3..0.4), rng.gen_range(0.3..0.4)];
    let n_blobs = rng.gen_range(1..=2);
    let blobs: Vec<Blob> = (0..n_blobs)
        .map(|_| Blob {
            cx: rng.gen_range(0.3..0.7),
            cy: rng.gen_range(0.3..0.7),
            rx: rng.gen_range(0.08..0.2),
            ry: rng.gen_range(0.08..0.2),
            angle: rng.gen_range(0.0..PI),
            wobble: (0..3).map(|_| (rng.gen_range(0.0..0.12), rng.gen_range(0.0..2.0 * PI))).collect(),
        })
        .collect();
    let s = size as f64;
    let mut img = RgbImage::new(size, size);
    let mut mask = GrayImage::new(size, size);
    for y in 0..size {
        for x in 0..size {
            let (u, v) = (x as f64 / s, y as f64 / s);
            let inside = blobs.iter().any(|b| b.contains(u, v));
            let noise: f64 = rng.gen_range(-0.15..0.15);
            let (level, hue_shift) =
                if inside { (0.52 + 0.15 * lesion.at(u, v), 0.06) } else { (0.45 + 0.15 * background.at(u, v), 0.0) };
            let px = |c: usize| {
                let base = tint[c] + if c == 0 { hue_shift } else { -hue_shift / 2.0 };
                ((level * base * 2.0 + noise).clamp(0.0, 1.0) * 255.0).round() as u8
            };
            img.put_pixel(x, y, Rgb([px(0), px(1), px(2)]));
            mask.put_pixel(x, y, Luma([if inside { 255 } else { 0 }]));
        }
    }
    (img, mask)
}

/// Writes `n` phantom pairs into `dir/images` and `dir/masks` (PNG, masks 0/255).
pub fn write_dataset(dir: &Path, n: usize, size: u32, seed: u64) -> Result<()> {
    let images = dir.join("images");
    let masks = dir.join("masks");
    for d in [&images, &masks] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in 0..n {
        let (img, mask) = phantom(size, &mut rng);
        let name = format!("phantom_{i:03}.png");
        write_atomic_with(&images.join(&name), |p| Ok(img.save_with_format(p, image::ImageFormat::Png)?))?;
        write_atomic_with(&masks.join(&name), |p| Ok(mask.save_with_format(p, image::ImageFormat::Png)?))?;
    }
    Ok(())
}
