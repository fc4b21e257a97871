//! Decoding images and binary masks from the formats clinicians' exports come in.
use anyhow::{anyhow, bail, Context, Result};
use image::{imageops::FilterType, DynamicImage, GrayImage, ImageDecoder, ImageReader, RgbImage};
use std::path::Path;

/// Extensions we decode; anything else in an images/ or masks/ folder is reported.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff"];

pub fn has_image_extension(path: &Path) -> bool {
    extension(path).map(|e| IMAGE_EXTENSIONS.contains(&e.as_str())).unwrap_or(false)
}

pub fn extension(path: &Path) -> Option<String> {
    path.extension().map(|e| e.to_string_lossy().to_lowercase())
}

fn is_lossy(path: &Path) -> bool {
    matches!(extension(path).as_deref(), Some("jpg") | Some("jpeg"))
}

/// Decodes an image file. A JPEG without its end-of-image marker is refused: decoders fill the
/// missing rows with grey and report success, so a truncated download would train silently.
pub fn decode(path: &Path) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot open {}", path.display()))?;
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    if is_lossy(path) && !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
        bail!("{}: truncated JPEG (no end-of-image marker); re-export or re-download it", path.display());
    }
    let corrupt =
        |e: image::ImageError| anyhow!("{}: corrupt or unsupported image ({e}); re-export it as PNG", path.display());
    let mut decoder = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?
        .into_decoder()
        .map_err(corrupt)?;
    // Phone photos (wounds, skin) are stored sideways with an EXIF orientation that every viewer
    // applies: so does genseg, to images and masks alike.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// An image file as genseg reads it: [`decode`], then 16-bit pixels scaled to 8 bits by the
/// image's brightest value ([`to_8bit`]).
pub fn decode_image(path: &Path) -> Result<DynamicImage> {
    Ok(to_8bit(decode(path)?))
}

/// Whether an image has 16 bits a channel.
pub fn is_16bit(img: &DynamicImage) -> bool {
    img.color().bytes_per_pixel() / img.color().channel_count() == 2
}

/// A 16-bit image scaled so that its brightest value is 255 (v * 255 / max, rounded; alpha by
/// 257), other images unchanged. Scanners export 12-bit data (0..4095) as 16-bit files, which the
/// plain conversion (v / 257) crushes to 16 grey levels; per-image scaling keeps 256, as
/// nnU-Net normalises each non-CT image by its own statistics.
pub fn to_8bit(img: DynamicImage) -> DynamicImage {
    if !is_16bit(&img) {
        return img;
    }
    let (w, h, channels, alpha) =
        (img.width(), img.height(), img.color().channel_count() as usize, img.color().has_alpha());
    let colour = channels - alpha as usize;
    let raw: Vec<u16> = match img {
        DynamicImage::ImageLuma16(i) => i.into_raw(),
        DynamicImage::ImageLumaA16(i) => i.into_raw(),
        DynamicImage::ImageRgb16(i) => i.into_raw(),
        DynamicImage::ImageRgba16(i) => i.into_raw(),
        other => return other,
    };
    let max = raw.iter().enumerate().filter(|(i, _)| i % channels < colour).map(|(_, &v)| v as u32).max().unwrap_or(0);
    let bytes: Vec<u8> = raw
        .iter()
        .enumerate()
        .map(|(i, &v)| match (i % channels < colour, max) {
            (false, _) => (v / 257) as u8,
            (true, 0) => 0,
            (true, m) => ((v as u32 * 255 + m / 2) / m) as u8,
        })
        .collect();
    let built = match (colour, alpha) {
        (1, false) => image::GrayImage::from_raw(w, h, bytes).map(DynamicImage::ImageLuma8),
        (1, true) => image::GrayAlphaImage::from_raw(w, h, bytes).map(DynamicImage::ImageLumaA8),
        (_, false) => RgbImage::from_raw(w, h, bytes).map(DynamicImage::ImageRgb8),
        (_, true) => image::RgbaImage::from_raw(w, h, bytes).map(DynamicImage::ImageRgba8),
    };
    built.expect("one byte for every 16-bit sample")
}

/// A binary mask decoded from any two-valued image.
pub struct BinaryMask {
    pub mask: GrayImage,
    /// Distinct grey values seen before binarisation (at most a few listed).
    pub values: Vec<u16>,
    pub thresholded: bool,
}

/// Masks may be 0/255, 0/1, any two values, palette or 16-bit; JPEG masks are thresholded at half
/// their range because compression adds intermediate values. Lossless masks with more than two
/// values are refused unless `binarize` is set, since guessing would silently change the label.
pub fn decode_mask(path: &Path, binarize: bool) -> Result<BinaryMask> {
    let decoded = decode(path)?;
    // Values are reported in the file's own scale (0..255 for 8-bit masks).
    let scale = if decoded.color().bytes_per_pixel() / decoded.color().channel_count() >= 2 { 1 } else { 257 };
    let img = decoded.to_luma16();
    let mut seen = [false; 65536];
    let mut values = Vec::new();
    for p in img.pixels() {
        let v = p.0[0];
        if !seen[v as usize] {
            seen[v as usize] = true;
            values.push(v);
        }
    }
    values.sort_unstable();
    let (lo, hi) = (values[0], *values.last().unwrap());
    let thresholded = values.len() > 2;
    if thresholded && !is_lossy(path) && !binarize {
        bail!(
            "{}: mask has {} distinct values (e.g. {:?}), expected two (background/foreground); \
             re-save it as a binary 0/255 mask, or pass --binarize to threshold at half its range",
            path.display(),
            values.len(),
            values[..values.len().min(6)].iter().map(|v| v / scale).collect::<Vec<_>>()
        );
    }
    // A single value is an empty mask when it is 0, otherwise all foreground.
    let threshold = (lo as u32 + hi as u32).div_ceil(2);
    let is_foreground = |v: u32| if lo == hi { lo != 0 } else { v >= threshold };
    let mask = GrayImage::from_fn(img.width(), img.height(), |x, y| {
        image::Luma([if is_foreground(img.get_pixel(x, y).0[0] as u32) { 255 } else { 0 }])
    });
    values.truncate(8);
    let values = values.into_iter().map(|v| v / scale).collect();
    Ok(BinaryMask { mask, values, thresholded })
}

/// Converts to 1 (grey) or 3 (RGB) channels; 16-bit and palette images are scaled to 8 bits.
pub fn to_channels(img: &DynamicImage, channels: usize) -> DynamicImage {
    if channels == 1 {
        DynamicImage::ImageLuma8(img.to_luma8())
    } else {
        DynamicImage::ImageRgb8(img.to_rgb8())
    }
}

/// Whether an image carries colour (so the dataset should be loaded as RGB).
pub fn is_color(img: &DynamicImage) -> bool {
    img.color().has_color()
}

/// Image pixels as CHW floats in [0, 1] after resizing to `size`x`size` (bilinear).
pub fn image_to_chw(img: &DynamicImage, channels: usize, size: u32) -> Vec<f32> {
    let img = to_channels(img, channels).resize_exact(size, size, FilterType::Triangle);
    let raw = img.as_bytes();
    let hw = (size * size) as usize;
    let mut out = vec![0f32; channels * hw];
    for i in 0..hw {
        for c in 0..channels {
            out[c * hw + i] = raw[i * channels + c] as f32 / 255.0;
        }
    }
    out
}

/// Mask pixels as {0, 1} floats after nearest-neighbour resizing (keeps it binary).
pub fn mask_to_hw(mask: &GrayImage, size: u32) -> Vec<f32> {
    let m = image::imageops::resize(mask, size, size, FilterType::Nearest);
    m.pixels().map(|p| if p.0[0] > 127 { 1.0 } else { 0.0 }).collect()
}

/// Builds an RGB image from CHW floats in [0, 1] (grey is replicated).
pub fn chw_to_rgb(data: &[f32], channels: usize, h: u32, w: u32) -> RgbImage {
    let hw = (h * w) as usize;
    RgbImage::from_fn(w, h, |x, y| {
        let i = (y * w + x) as usize;
        let px = |c: usize| (data[c.min(channels - 1) * hw + i].clamp(0.0, 1.0) * 255.0).round() as u8;
        image::Rgb([px(0), px(1), px(2)])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JPEG with an EXIF orientation (APP1 segment after the start-of-image marker).
    fn jpeg_with_orientation(img: &RgbImage, orientation: u16) -> Vec<u8> {
        let mut plain = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut plain), image::ImageFormat::Jpeg).unwrap();
        let mut tiff = b"II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0".to_vec();
        tiff.extend(orientation.to_le_bytes());
        tiff.extend([0, 0, 0, 0, 0, 0]);
        let payload: Vec<u8> = b"Exif\0\0".iter().copied().chain(tiff).collect();
        let mut out = plain[..2].to_vec();
        out.extend([0xFF, 0xE1]);
        out.extend(((payload.len() + 2) as u16).to_be_bytes());
        out.extend(payload);
        out.extend(&plain[2..]);
        out
    }

    /// 12-bit values in a 16-bit file keep 256 grey levels, the brightest at 255; alpha is kept.
    #[test]
    fn sixteen_bit_images_are_scaled_by_their_maximum() {
        let grey =
            image::ImageBuffer::<image::Luma<u16>, _>::from_fn(64, 64, |x, y| image::Luma([(x * 64 + y) as u16]));
        let scaled = to_8bit(DynamicImage::ImageLuma16(grey)).to_luma8();
        let levels: std::collections::BTreeSet<u8> = scaled.pixels().map(|p| p.0[0]).collect();
        assert_eq!((levels.len(), *levels.first().unwrap(), *levels.last().unwrap()), (256, 0, 255));
        let plain =
            DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(64, 64, |x, y| image::Luma([(x * 64 + y) as u16])));
        assert!(plain.to_luma8().pixels().map(|p| p.0[0]).max() <= Some(16), "the plain conversion crushes them");
        let rgba = image::ImageBuffer::<image::Rgba<u16>, _>::from_fn(2, 1, |x, _| {
            image::Rgba([1000 * x as u16, 0, 500, 65535])
        });
        let scaled = to_8bit(DynamicImage::ImageRgba16(rgba)).to_rgba8();
        assert_eq!((scaled.get_pixel(0, 0).0, scaled.get_pixel(1, 0).0), ([0, 0, 128, 255], [255, 0, 128, 255]));
        let eight = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(2, 2, image::Luma([7])));
        assert_eq!(to_8bit(eight.clone()), eight);
    }

    #[test]
    fn exif_orientation_is_applied_as_viewers_apply_it() {
        let d = tempfile::tempdir().unwrap();
        // 48 wide, 32 high, stored with "rotate 90 clockwise to view" (6): viewers show 32 x 48.
        let stored =
            RgbImage::from_fn(48, 32, |x, _| if x < 8 { image::Rgb([255, 0, 0]) } else { image::Rgb([0, 0, 0]) });
        let path = d.path().join("photo.jpg");
        std::fs::write(&path, jpeg_with_orientation(&stored, 6)).unwrap();
        let shown = decode(&path).unwrap().to_rgb8();
        assert_eq!(shown.dimensions(), (32, 48));
        // The stored left edge (red) is the viewed top edge.
        assert!(shown.get_pixel(16, 2).0[0] > 200 && shown.get_pixel(16, 45).0[0] < 60);
        std::fs::write(&path, jpeg_with_orientation(&stored, 1)).unwrap();
        assert_eq!(decode(&path).unwrap().to_rgb8().dimensions(), (48, 32));
    }
}
