//! Finding a dataset's files, written once for 2-D images, 3-D volumes and evaluation: the folder
//! layout, whether a folder holds volumes, pairing two folders by case id, and the problems that
//! name the file and the fix.
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Something wrong with one file of a dataset.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub file: PathBuf,
    pub message: String,
    /// Fatal problems make the set unusable; the rest are warnings.
    pub fatal: bool,
}

impl Problem {
    pub fn error(file: &Path, message: impl Into<String>) -> Problem {
        Problem { file: file.to_path_buf(), message: message.into(), fatal: true }
    }

    pub fn warning(file: &Path, message: impl Into<String>) -> Problem {
        Problem { file: file.to_path_buf(), message: message.into(), fatal: false }
    }

    /// A fatal problem from a loader's error, whose message starts with the file it is about
    /// (one of `files`): that file, and the rest of the message.
    pub fn from_error(files: &[&Path], e: &anyhow::Error) -> Problem {
        let text = format!("{e:#}");
        for file in files {
            if let Some(rest) = text.strip_prefix(&format!("{}: ", file.display())) {
                return Problem::error(file, rest);
            }
        }
        Problem::error(files[0], text)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = if self.fatal { "error" } else { "warning" };
        write!(f, "{level}: {}: {}", self.file.display(), self.message)
    }
}

/// Fails with `context` and every fatal problem, one a line, when there is one.
pub fn refuse_fatal(context: impl std::fmt::Display, problems: &[Problem]) -> Result<()> {
    let fatal: Vec<String> = problems.iter().filter(|p| p.fatal).map(|p| p.to_string()).collect();
    if !fatal.is_empty() {
        bail!("{context} ({} problems):\n{}", fatal.len(), fatal.join("\n"));
    }
    Ok(())
}

/// The context of a dataset that cannot be loaded.
pub fn unusable(root: &Path) -> String {
    format!("{} cannot be used; `genseg check` lists every problem", root.display())
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Layout {
    /// `images/` + `masks/` with matching stems.
    ImagesMasks,
    /// nnU-Net's raw layout: `imagesTr/{case}_0000.ext`, `labelsTr/{case}.ext`, `dataset.json`.
    NnUnetRaw,
}

/// What a dataset folder holds: 2-D images or NIfTI volumes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Kind {
    Images,
    Volumes,
}

/// A dataset root's image and mask folders.
#[derive(Debug, Clone)]
pub struct Folders {
    pub root: PathBuf,
    pub layout: Layout,
    pub images: PathBuf,
    pub masks: PathBuf,
}

impl Folders {
    pub fn of(root: &Path) -> Result<Folders> {
        if !root.is_dir() {
            bail!("{}: not a folder; give a dataset folder with images/ and masks/", root.display());
        }
        let (layout, images, masks) = if root.join("images").is_dir() && root.join("masks").is_dir() {
            (Layout::ImagesMasks, "images", "masks")
        } else if root.join("imagesTr").is_dir() && root.join("labelsTr").is_dir() {
            (Layout::NnUnetRaw, "imagesTr", "labelsTr")
        } else {
            // A folder of bare images is most often the user's unlabelled images: say where they go.
            let bare_images = std::fs::read_dir(root).is_ok_and(|entries| {
                entries.flatten().any(|e| crate::data::image_io::has_image_extension(&e.path()) || is_nifti(&e.path()))
            });
            let unlabelled = if bare_images {
                " (images without masks are unlabelled: give them as --unlabelled to check, train or fit, or annotate \
                 them with `genseg serve`)"
            } else {
                ""
            };
            bail!(
                "{}: expected images/ and masks/ (or nnU-Net's imagesTr/ and labelsTr/) inside; create them and put \
                 matching files in{unlabelled}",
                root.display()
            );
        };
        Ok(Folders { root: root.to_path_buf(), layout, images: root.join(images), masks: root.join(masks) })
    }

    pub fn kind(&self) -> Kind {
        if holds_volumes(&self.images) {
            Kind::Volumes
        } else {
            Kind::Images
        }
    }
}

/// Files the operating system leaves in folders (macOS's .DS_Store and ._ copies, any hidden
/// file, Windows' Thumbs.db and desktop.ini): never data, so every listing skips them.
pub fn is_system_file(path: &Path) -> bool {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().to_lowercase()) else { return true };
    name.starts_with('.') || ["thumbs.db", "ehthumbs.db", "desktop.ini"].contains(&name.as_str())
}

pub fn is_nifti(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    name.ends_with(".nii") || name.ends_with(".nii.gz")
}

/// True when any file of `dir` is a NIfTI volume.
pub fn holds_volumes(dir: &Path) -> bool {
    std::fs::read_dir(dir).map(|entries| entries.flatten().any(|e| is_nifti(&e.path()))).unwrap_or(false)
}

/// Case id of a file: its name without the extension (.nii.gz counts as one).
pub fn stem(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    if is_nifti(path) {
        return name.strip_suffix(".gz").unwrap_or(&name).strip_suffix(".nii").unwrap_or(&name).to_string();
    }
    path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default()
}

/// The case id a mask's file stem names: the stem without the longest of `suffixes` (`_mask`...)
/// whose removal names an image (`is_image`), else the stem itself.
pub fn mask_case_id(stem: &str, suffixes: &[String], is_image: impl Fn(&str) -> bool) -> String {
    suffixes
        .iter()
        .filter_map(|suf| stem.strip_suffix(suf.as_str()).filter(|_| !suf.is_empty()))
        .filter(|id| is_image(id))
        .min_by_key(|id| id.len())
        .map_or_else(|| stem.to_string(), str::to_string)
}

/// NIfTI files of a folder by case id (nnU-Net's `_0000` channel suffix stripped). A case with
/// further channels (`{case}_0001` beside `{case}_0000`) is refused: volumes take one channel.
pub fn nifti_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if is_nifti(&path) {
            files.insert(stem(&path), path);
        }
    }
    for (id, path) in &files {
        let channel_of = id.rsplit_once('_').filter(|(_, ch)| ch.len() == 4 && ch.chars().all(|c| c.is_ascii_digit()));
        if let Some((case, ch)) =
            channel_of.filter(|(case, ch)| *ch != "0000" && files.contains_key(&format!("{case}_0000")))
        {
            bail!(
                "{}: input channel _{ch} of case '{case}'; 3-D sets are read with one channel (_0000): move the other \
                 channels out",
                path.display()
            );
        }
    }
    Ok(files.into_iter().map(|(id, path)| (id.strip_suffix("_0000").map(str::to_string).unwrap_or(id), path)).collect())
}

/// Which of the two folders an unmatched file came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Side {
    First,
    Second,
}

/// One case found in both folders.
#[derive(Debug, Clone)]
pub struct Pair {
    pub id: String,
    pub first: PathBuf,
    pub second: PathBuf,
}

/// Pairs two folders' files by case id; every file without a partner becomes the problem that
/// `unmatched(side, id)` describes (message, fatal), so nothing is skipped silently.
pub fn pair_by_id(
    first: BTreeMap<String, PathBuf>,
    mut second: BTreeMap<String, PathBuf>,
    unmatched: impl Fn(Side, &str) -> (String, bool),
) -> (Vec<Pair>, Vec<Problem>) {
    let mut pairs = Vec::new();
    let mut problems = Vec::new();
    let mut orphan = |side, id: &str, file: PathBuf| {
        let (message, fatal) = unmatched(side, id);
        problems.push(Problem { file, message, fatal });
    };
    for (id, file) in first {
        match second.remove(&id) {
            Some(partner) => pairs.push(Pair { id, first: file, second: partner }),
            None => orphan(Side::First, &id, file),
        }
    }
    for (id, file) in second {
        orphan(Side::Second, &id, file);
    }
    (pairs, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairing_names_every_orphan_on_both_sides() {
        let map = |ids: &[&str]| ids.iter().map(|i| (i.to_string(), PathBuf::from(format!("{i}.png")))).collect();
        let (pairs, problems) = pair_by_id(map(&["a", "b", "c"]), map(&["b", "c", "d"]), |side, id| {
            (format!("{side:?} {id}"), side == Side::First)
        });
        assert_eq!(pairs.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        let named: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(named, ["error: a.png: First a", "warning: d.png: Second d"]);
    }

    #[test]
    fn stems_of_volumes_and_images() {
        assert_eq!(stem(Path::new("x/case_1.nii.gz")), "case_1");
        assert_eq!(stem(Path::new("x/case_1.nii")), "case_1");
        assert_eq!(stem(Path::new("x/case.1.png")), "case.1");
    }
}
