//! A serve project on disk: the images of the data folder (read, never written), the expert's
//! annotations (one folder per image, every saved version kept, each written atomically and
//! synced before it counts) and the skipped images.
//!
//! PROJECT/annotations/KEY/v000001.png, v000002.png...: the highest version is the image's mask;
//! a mask the data folder already holds is version 0. KEY is the image id where that is a safe
//! file name, else `x` and its hex spelling, so no id ever becomes a path outside the project.
use crate::data::files::{mask_case_id, stem};
use crate::data::image_io::{self, has_image_extension};
use crate::data::set::default_mask_suffixes;
use anyhow::{bail, Context, Result};
use image::GrayImage;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One image of the data folder.
#[derive(Debug, Clone)]
pub struct Image {
    pub id: String,
    pub file: PathBuf,
    /// The data folder's own mask, if it has one (annotated before the project began).
    pub data_mask: Option<PathBuf>,
    /// The image's folder name under annotations/.
    pub key: String,
}

/// Why a save was refused.
#[derive(Debug)]
pub enum SaveError {
    /// Another save came first (another tab): the version the client must reload.
    Conflict {
        current: u32,
    },
    /// The mask is not a mask of this image; the message says why and what to send.
    Invalid(String),
    NotFound,
    Io(anyhow::Error),
}

pub struct Project {
    pub root: PathBuf,
    pub data: PathBuf,
    pub images: Vec<Image>,
    index: HashMap<String, usize>,
    /// Saved version of each image's mask (0: none saved in the project).
    versions: Vec<u32>,
    sizes: std::sync::Mutex<HashMap<usize, (u32, u32)>>,
    skipped: Vec<String>,
}

impl Project {
    /// Opens (or starts) the project at `root` on the images of `data`. Temporary files of a
    /// save that was killed are removed; every completed save is found again.
    pub fn open(root: &Path, data: &Path) -> Result<Project> {
        let images = list_images(data)?;
        let index = images.iter().enumerate().map(|(i, im)| (im.id.clone(), i)).collect();
        let mut versions = vec![0; images.len()];
        for (i, im) in images.iter().enumerate() {
            let dir = root.join("annotations").join(&im.key);
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if name.starts_with(".tmp-") {
                    std::fs::remove_file(entry.path())
                        .with_context(|| format!("cannot remove the unfinished save {}", entry.path().display()))?;
                } else if let Some(v) = parse_version(&name) {
                    versions[i] = versions[i].max(v);
                }
            }
        }
        let skipped = std::fs::read_to_string(root.join("skipped.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let sizes = Default::default();
        Ok(Project { root: root.to_path_buf(), data: data.to_path_buf(), images, index, versions, sizes, skipped })
    }

    pub fn find(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The version a client must send to save over image `i`'s mask (0: nothing saved yet).
    pub fn version(&self, i: usize) -> u32 {
        self.versions[i]
    }

    pub fn is_annotated(&self, i: usize) -> bool {
        self.versions[i] > 0 || self.images[i].data_mask.is_some()
    }

    pub fn annotated(&self) -> Vec<usize> {
        (0..self.images.len()).filter(|&i| self.is_annotated(i)).collect()
    }

    /// Images annotated in this project (saved at least once), data masks not counted.
    pub fn saved_count(&self) -> usize {
        self.versions.iter().filter(|&&v| v > 0).count()
    }

    /// The file of image `i`'s current mask: the newest saved version, else the data's own.
    pub fn mask_file(&self, i: usize) -> Option<PathBuf> {
        match self.versions[i] {
            0 => self.images[i].data_mask.clone(),
            v => Some(self.version_file(i, v)),
        }
    }

    fn version_file(&self, i: usize, v: u32) -> PathBuf {
        self.root.join("annotations").join(&self.images[i].key).join(format!("v{v:06}.png"))
    }

    /// Image `i`'s (width, height) as genseg reads it (EXIF orientation applied).
    pub fn size(&self, i: usize) -> Result<(u32, u32)> {
        if let Some(&s) = self.sizes.lock().expect("sizes").get(&i) {
            return Ok(s);
        }
        let img = image_io::decode_image(&self.images[i].file)?;
        let s = (img.width(), img.height());
        self.sizes.lock().expect("sizes").insert(i, s);
        Ok(s)
    }

    /// Saves `png` as image `id`'s mask if `base` is its current version: checked (PNG, the
    /// image's size, values 0 and 255 only), written to a temporary file, synced, renamed to the
    /// next version and the folder synced, so a kill at any moment leaves the old or the new
    /// version, never half of one. Returns the new version.
    pub fn save(&mut self, id: &str, base: u32, png: &[u8]) -> Result<u32, SaveError> {
        let i = self.find(id).ok_or(SaveError::NotFound)?;
        if base != self.versions[i] {
            return Err(SaveError::Conflict { current: self.versions[i] });
        }
        let size = self.size(i).map_err(SaveError::Io)?;
        let mask = check_mask(png, size).map_err(SaveError::Invalid)?;
        let next = self.versions[i] + 1;
        let file = self.version_file(i, next);
        write_synced(&file, |w| {
            mask.write_to(&mut std::io::Cursor::new(w), image::ImageFormat::Png).map_err(anyhow::Error::from)
        })
        .map_err(SaveError::Io)?;
        self.versions[i] = next;
        self.skipped.retain(|s| s != id);
        Ok(next)
    }

    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Moves image `id` to the end of the queue (kept across restarts).
    pub fn skip(&mut self, id: &str) -> Result<()> {
        self.skipped.retain(|s| s != id);
        self.skipped.push(id.to_string());
        let text = serde_json::to_vec_pretty(&self.skipped)?;
        write_synced(&self.root.join("skipped.json"), |w| {
            w.extend_from_slice(&text);
            Ok(())
        })
    }
}

/// Reads a mask sent by a client: a PNG of exactly `size` whose pixels are 0 or 255 (grey, or
/// RGB(A) with equal channels and opaque alpha). Returns the 0/255 grey mask.
pub fn check_mask(png: &[u8], (w, h): (u32, u32)) -> std::result::Result<GrayImage, String> {
    if image::guess_format(png).ok() != Some(image::ImageFormat::Png) {
        return Err("the mask must be a PNG file".into());
    }
    let img = image::load_from_memory_with_format(png, image::ImageFormat::Png)
        .map_err(|e| format!("the mask is not a readable PNG ({e})"))?;
    if (img.width(), img.height()) != (w, h) {
        return Err(format!(
            "the mask is {}x{} but its image is {w}x{h}; send a mask of the image's size",
            img.width(),
            img.height()
        ));
    }
    let rgba = img.to_rgba8();
    let mut mask = GrayImage::new(w, h);
    for (x, y, p) in rgba.enumerate_pixels() {
        let [r, g, b, a] = p.0;
        if a != 255 || r != g || g != b || (r != 0 && r != 255) {
            return Err(format!(
                "pixel ({x}, {y}) is RGBA({r}, {g}, {b}, {a}); a mask holds only black (0) and white (255), opaque"
            ));
        }
        mask.put_pixel(x, y, image::Luma([r]));
    }
    Ok(mask)
}

/// [`crate::runtime::write_atomic_with`] with the file synced before its rename and the folder
/// after it: a saved annotation survives a power cut, not only a killed process.
fn write_synced(path: &Path, fill: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<()> {
    let dir = path.parent().context("a file in a folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut bytes = Vec::new();
    fill(&mut bytes)?;
    crate::runtime::write_atomic_with(path, |tmp| {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(&bytes)?;
        Ok(f.sync_all()?)
    })?;
    std::fs::File::open(dir)?.sync_all().with_context(|| format!("cannot sync {}", dir.display()))
}

fn parse_version(name: &str) -> Option<u32> {
    name.strip_prefix('v')?.strip_suffix(".png")?.parse().ok()
}

/// The annotation folder name of an id: the id itself when it is a plain file name.
pub fn key_of(id: &str) -> String {
    let plain = id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if plain && !id.is_empty() && !id.starts_with('.') && id.len() <= 200 {
        id.to_string()
    } else {
        format!("x{}", id.bytes().map(|b| format!("{b:02x}")).collect::<String>())
    }
}

/// The images of a data folder: `images/` (with an optional `masks/` whose masks count as
/// annotations) or a folder of images. 2-D images only.
pub fn list_images(data: &Path) -> Result<Vec<Image>> {
    if !data.is_dir() {
        bail!(
            "{}: not a folder; give a folder of images, or one with images/ (and masks/ where some exist)",
            data.display()
        );
    }
    let (image_dir, mask_dir) = match data.join("images").is_dir() {
        true => (data.join("images"), Some(data.join("masks")).filter(|d| d.is_dir())),
        false => (data.to_path_buf(), None),
    };
    let mut images = BTreeMap::new();
    for file in files_of(&image_dir)? {
        if crate::data::files::is_nifti(&file) {
            bail!("{}: a volume; genseg serve annotates 2-D images (volumes are not supported yet)", file.display());
        }
        if !has_image_extension(&file) {
            continue;
        }
        if let Some(previous) = images.insert(stem(&file), file.clone()) {
            bail!("{} and {} have the same id; rename one", previous.display(), file.display());
        }
    }
    if images.is_empty() {
        bail!("{}: holds no images; put the images to annotate in it", image_dir.display());
    }
    let mut masks = BTreeMap::new();
    if let Some(dir) = &mask_dir {
        let suffixes = default_mask_suffixes();
        for file in files_of(dir)?.into_iter().filter(|f| has_image_extension(f)) {
            masks.insert(mask_case_id(&stem(&file), &suffixes, |id| images.contains_key(id)), file);
        }
    }
    Ok(images
        .into_iter()
        .map(|(id, file)| Image { key: key_of(&id), data_mask: masks.remove(&id), id, file })
        .collect())
}

fn files_of(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        let hidden = crate::data::files::is_system_file(&path);
        if !hidden && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: &image::DynamicImage) -> Vec<u8> {
        let mut bytes = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
        bytes
    }

    #[test]
    fn keys_are_plain_names_or_hex() {
        assert_eq!(key_of("case_01.a"), "case_01.a");
        assert_eq!(key_of(".."), "x2e2e");
        assert_eq!(key_of("a/b"), "x612f62");
    }

    #[test]
    fn masks_must_be_binary_opaque_pngs_of_the_image_size() {
        let ok = image::DynamicImage::ImageLuma8(GrayImage::from_fn(4, 3, |x, _| {
            image::Luma([if x > 1 { 255 } else { 0 }])
        }));
        assert_eq!(check_mask(&png(&ok), (4, 3)).unwrap().get_pixel(3, 0).0, [255]);
        assert!(check_mask(&png(&ok), (3, 4)).unwrap_err().contains("4x3 but its image is 3x4"));
        let grey = image::DynamicImage::ImageLuma8(GrayImage::from_pixel(4, 3, image::Luma([128])));
        assert!(check_mask(&png(&grey), (4, 3)).unwrap_err().contains("only black (0) and white (255)"));
        let clear =
            image::DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(4, 3, image::Rgba([255, 255, 255, 0])));
        assert!(check_mask(&png(&clear), (4, 3)).is_err());
        assert!(check_mask(b"GIF89a", (4, 3)).unwrap_err().contains("PNG"));
    }

    #[test]
    fn saves_are_versioned_and_refuse_a_stale_base() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        image::RgbImage::new(4, 3).save(data.join("a.png")).unwrap();
        let root = dir.path().join("project");
        let mut p = Project::open(&root, &data).unwrap();
        let mask = png(&image::DynamicImage::ImageLuma8(GrayImage::from_pixel(4, 3, image::Luma([255]))));
        assert_eq!(p.save("a", 0, &mask).unwrap(), 1);
        assert!(matches!(p.save("a", 0, &mask), Err(SaveError::Conflict { current: 1 })));
        assert_eq!(p.save("a", 1, &mask).unwrap(), 2);
        assert!(matches!(p.save("b", 0, &mask), Err(SaveError::NotFound)));
        // A save killed before its rename leaves a temporary file that reopening removes.
        let tmp = root.join("annotations/a/.tmp-1-v000003.png");
        std::fs::write(&tmp, b"half").unwrap();
        let p = Project::open(&root, &data).unwrap();
        assert_eq!(p.version(0), 2);
        assert!(!tmp.exists() && root.join("annotations/a/v000001.png").is_file());
    }
}
