//! Images without masks (`--unlabelled DIR`, or a study's `--unlabelled-n` cases of the set
//! itself): read the way the labelled cases are, and refused when one of them is a validation,
//! test or out-of-domain case, compared by content, not by name.
use super::files::{is_nifti, stem, Problem};
use super::image_io::{self, has_image_extension};
use super::set::{LoadOptions, SegDataset};
use super::volume::{network_input, read_volume};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Unlabelled images at the working resolution, `[N, C, spatial...]` in [0, 1] (volumes
/// normalised as the labelled ones are).
#[derive(Debug)]
pub struct Unlabelled {
    pub ids: Vec<String>,
    pub images: Tensor,
}

impl Clone for Unlabelled {
    fn clone(&self) -> Self {
        Unlabelled { ids: self.ids.clone(), images: self.images.shallow_clone() }
    }
}

impl Unlabelled {
    /// The images of `cases` (their masks dropped).
    pub fn of_cases(cases: &SegDataset) -> Unlabelled {
        Unlabelled { ids: cases.ids.clone(), images: cases.images.shallow_clone() }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The folder whose files are the unlabelled images: a dataset's images/ (or imagesTr/; masks
/// are ignored), else `dir` itself.
fn image_folder(dir: &Path) -> PathBuf {
    ["images", "imagesTr"].iter().map(|sub| dir.join(sub)).find(|d| d.is_dir()).unwrap_or_else(|| dir.to_path_buf())
}

/// The image or volume files of an unlabelled folder, sorted; an empty or unlistable folder, or
/// a file genseg cannot read, is an error naming it.
pub fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail!("--unlabelled {}: not a folder; give a folder of images (or volumes) without masks", dir.display());
    }
    let folder = image_folder(dir);
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(&folder).with_context(|| format!("--unlabelled {}: cannot list it", dir.display()))?
    {
        let path = entry?.path();
        let hidden = crate::data::files::is_system_file(&path);
        if hidden || path.is_dir() {
            continue;
        }
        if !has_image_extension(&path) && !is_nifti(&path) {
            bail!(
                "--unlabelled {}: {} is neither an image ({}) nor a NIfTI volume; move it out of the folder",
                dir.display(),
                path.display(),
                image_io::IMAGE_EXTENSIONS.join(", ")
            );
        }
        files.push(path);
    }
    files.sort();
    if files.is_empty() {
        bail!(
            "--unlabelled {}: holds no images; put the unlabelled images in it (or leave out --unlabelled)",
            dir.display()
        );
    }
    Ok(files)
}

/// Loads an unlabelled folder the way the labelled set `like` was loaded with `opts`: the same
/// side or volume shape, channels and intensity normalisation. Images of the other kind (2-D
/// against 3-D), or of other channels when `--channels` was not given, are refused naming the
/// file.
pub fn load(dir: &Path, like: &SegDataset, opts: &LoadOptions) -> Result<Unlabelled> {
    let files = files(dir)?;
    let (volumes, channels, shape) = (like.dims() == 3, like.channels, like.shape.clone());
    if let Some(other) = files.iter().find(|f| is_nifti(f) != volumes) {
        let (theirs, ours) = if volumes { ("a 2-D image", "3-D volumes") } else { ("a NIfTI volume", "2-D images") };
        bail!(
            "--unlabelled {}: {} is {theirs}, but the labelled set holds {ours}; give unlabelled images of the same kind",
            dir.display(),
            other.display()
        );
    }
    let read = |f: &PathBuf| -> Result<Vec<f32>> {
        if volumes {
            let volume = read_volume(f)?;
            if let Some(problem) = volume.non_finite() {
                bail!("{}: {problem}", f.display());
            }
            let shape = opts.volume.shape;
            return Ok(network_input(&volume, shape).1);
        }
        let img = image_io::decode_image(f)?;
        let file_channels = if image_io::is_color(&img) { 3 } else { 1 };
        if opts.channels.is_none() && file_channels != channels {
            bail!(
                "{}: has {file_channels} channel(s) but the labelled images have {channels}; convert it, or give \
                 --channels {channels} to convert every image",
                f.display()
            );
        }
        Ok(image_io::image_to_chw(&img, channels, opts.size))
    };
    let decoded: Vec<Result<Vec<f32>>> = files.par_iter().map(read).collect();
    let mut data = Vec::new();
    for (file, d) in files.iter().zip(decoded) {
        let pixels = d.with_context(|| format!("--unlabelled {}: cannot use {}", dir.display(), file.display()))?;
        data.extend(pixels);
    }
    let mut dims = vec![files.len() as i64, channels as i64];
    dims.extend(shape);
    let ids: Vec<String> = files.iter().map(|f| stem(f)).collect();
    Ok(Unlabelled { ids, images: Tensor::from_slice(&data).view(dims.as_slice()) })
}

/// What `check DATA --unlabelled DIR` says about the folder: how many files, of which kind.
pub fn describe(dir: &Path) -> Result<String> {
    let files = files(dir)?;
    let volumes = files.iter().filter(|f| is_nifti(f)).count();
    let problems: Vec<Problem> = files
        .par_iter()
        .filter(|f| !is_nifti(f))
        .filter_map(|f| image_io::decode(f).err().map(|e| Problem::error(f, format!("{e:#}"))))
        .collect();
    let mut text = format!(
        "unlabelled {}: {} files ({} images, {} volumes)",
        dir.display(),
        files.len(),
        files.len() - volumes,
        volumes
    );
    for p in &problems {
        text.push_str(&format!("\n  {p}"));
    }
    match problems.is_empty() {
        true => Ok(text),
        false => bail!("{text}\n--unlabelled {}: fix or remove the files above", dir.display()),
    }
}

/// SHA-256 of each case's pixels at the working resolution: the same picture gives the same
/// hash whatever its file is called or whether it was re-saved losslessly.
fn content_hashes(images: &Tensor) -> Vec<String> {
    let flat = images.to_kind(Kind::Float).flatten(1, -1);
    (0..flat.size()[0])
        .map(|i| {
            let pixels = Vec::<f32>::try_from(flat.get(i)).expect("float pixels");
            let bytes: Vec<u8> = pixels.iter().flat_map(|v| v.to_le_bytes()).collect();
            format!("{:x}", Sha256::digest(&bytes))
        })
        .collect()
}

/// Refuses unlabelled images whose pixels equal a held-out case's (`(part, cases)`, e.g.
/// `("test", ...)`), naming up to three and the fix: a test image must never reach training,
/// labelled or not.
pub fn refuse_held_out(unlabelled: &Unlabelled, source: &str, held_out: &[(&str, &SegDataset)]) -> Result<()> {
    let mut known: BTreeMap<String, (&str, &str)> = BTreeMap::new();
    for (part, cases) in held_out {
        for (hash, id) in content_hashes(&cases.images).into_iter().zip(&cases.ids) {
            known.entry(hash).or_insert((part, id));
        }
    }
    let leaks: Vec<String> = content_hashes(&unlabelled.images)
        .iter()
        .zip(&unlabelled.ids)
        .filter_map(|(hash, id)| known.get(hash).map(|(part, case)| format!("'{id}' is {part} case '{case}'")))
        .collect();
    if leaks.is_empty() {
        return Ok(());
    }
    let shown = leaks.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    let more = if leaks.len() > 3 { format!(" and {} more", leaks.len() - 3) } else { String::new() };
    bail!(
        "{source}: {} unlabelled image(s) are held-out cases ({shown}{more}, same pixels); validation and test images \
         must never reach training: remove them from the unlabelled folder",
        leaks.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_out_image_is_found_by_its_pixels_not_its_name() {
        let images = Tensor::rand([4, 3, 8, 8], (Kind::Float, tch::Device::Cpu));
        let masks = Tensor::zeros([4, 1, 8, 8], (Kind::Float, tch::Device::Cpu));
        let ids: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let set = SegDataset::new(ids, images, masks, vec![1]);
        let test = set.select(&["c".to_string()]).unwrap();
        let fresh =
            Unlabelled { ids: vec!["x".into()], images: Tensor::rand([1, 3, 8, 8], (Kind::Float, tch::Device::Cpu)) };
        assert!(refuse_held_out(&fresh, "--unlabelled u", &[("test", &test)]).is_ok());
        let copy = Unlabelled { ids: vec!["renamed".into()], images: set.images.narrow(0, 2, 1) };
        let e = refuse_held_out(&copy, "--unlabelled u", &[("test", &test)]).unwrap_err().to_string();
        assert!(e.contains("'renamed' is test case 'c'") && e.contains("--unlabelled u"), "{e}");
    }
}
