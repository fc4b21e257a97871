//! The data flags every command that reads a labelled set shares.
use super::values::{parse_shape, Shape};
use super::Given;
use anyhow::{bail, Result};
use clap::Args;
use genseg::data::set::{default_mask_suffixes, LoadOptions, VolumeOptions};
use genseg::data::split::{validation_count, DataConfig};
use std::path::PathBuf;

const DATA: &str = "Data";

/// `check`: a labelled set, and an unlabelled folder beside it.
#[derive(Args, Clone)]
pub struct CheckArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// A folder of unlabelled images (or volumes) to check too
    #[arg(long, help_heading = DATA)]
    pub unlabelled: Option<PathBuf>,
}

impl CheckArgs {
    pub fn run(&self) -> Result<()> {
        let report = genseg::data::check(&self.data.data, &self.data.options()?)?;
        genseg::out!("{}", report.to_string().trim_end());
        if !report.usable() {
            let first = report.problems.iter().find(|p| p.fatal);
            let first = first.map(|p| format!(", first: {}: {}", p.file.display(), p.message)).unwrap_or_default();
            bail!("{} cannot be used as it is{first}; fix the errors above", self.data.data.display());
        }
        if let Some(dir) = &self.unlabelled {
            genseg::out!("{}", genseg::data::unlabelled::describe(dir)?);
        }
        genseg::out!("ok: usable");
        Ok(())
    }
}

#[derive(Args, Clone)]
pub struct DataArgs {
    /// Dataset folder: images/ + masks/, or nnU-Net's imagesTr/ + labelsTr/
    pub data: PathBuf,
    /// Square side images and masks are resized to, in pixels
    #[arg(long, default_value_t = LoadOptions::default().size, help_heading = DATA)]
    size: u32,
    /// 1 or 3 input channels (default: from the first image)
    #[arg(long, help_heading = DATA)]
    channels: Option<usize>,
    /// Extra mask file suffix to strip when pairing (repeatable; _mask, _segmentation, _lesion,
    /// _manual1 are built in)
    #[arg(long = "mask-suffix", help_heading = DATA)]
    mask_suffix: Vec<String>,
    /// Threshold masks with more than two values at half their range instead of refusing them;
    /// for NIfTI label maps: merge every foreground label into one
    #[arg(long, help_heading = DATA)]
    binarize: bool,
    /// NIfTI volumes: shape every volume is centre-cropped/padded to (axis order of the files)
    #[arg(long, value_parser = parse_shape, default_value_t = Shape(VolumeOptions::default().shape), help_heading = DATA)]
    shape: Shape,
    /// NIfTI volumes: labels to segment, one output channel each (default: every label found)
    #[arg(long, value_delimiter = ',', help_heading = DATA)]
    labels: Option<Vec<u32>>,
    /// Accept a set whose every mask is empty (refused by default: nothing to learn)
    #[arg(long, help_heading = DATA)]
    allow_empty_masks: bool,
}

impl DataArgs {
    /// The load options of these flags alone (`check`).
    pub fn options(&self) -> Result<LoadOptions> {
        let mut load = LoadOptions::default();
        self.apply(&mut load, &Given::all())?;
        Ok(load)
    }

    /// Sets the options whose flags were given on top of `load` (defaults or a configuration file).
    pub fn apply(&self, load: &mut LoadOptions, given: &Given) -> Result<()> {
        if given.has("size") {
            load.size = self.size;
        }
        if given.has("channels") {
            load.channels = self.channels;
        }
        if given.has("mask_suffix") {
            load.mask_suffixes = default_mask_suffixes().into_iter().chain(self.mask_suffix.iter().cloned()).collect();
        }
        if given.has("binarize") {
            load.binarize = self.binarize;
        }
        if given.has("shape") {
            load.volume.shape = self.shape.0;
        }
        if given.has("labels") {
            load.volume.labels = self.labels.clone();
        }
        if given.has("allow_empty_masks") {
            load.allow_empty = self.allow_empty_masks;
        }
        if load.size == 0 {
            bail!("--size must be at least 1 (the side images are resized to)");
        }
        if let Some(c) = load.channels.filter(|c| ![1, 3].contains(c)) {
            bail!("--channels {c}: use 1 (grey) or 3 (colour)");
        }
        Ok(())
    }
}

/// How many labelled pairs a seeded split takes, and how many of them validate.
#[derive(Args, Clone)]
pub struct SplitArgs {
    /// Labelled pairs: training + validation, as the GenSeg paper counts them (the rest is test)
    #[arg(long, default_value_t = DataConfig::new("".as_ref()).n, help_heading = DATA)]
    pub n: usize,
    /// Validation pairs among the --n [default: a quarter of --n, at least 2]
    #[arg(long, help_heading = DATA)]
    pub val_n: Option<usize>,
    /// `study --unlabelled-n`: cases outside the labelled N set aside as unlabelled images.
    #[arg(skip)]
    pub unlabelled_n: Option<usize>,
}

impl SplitArgs {
    pub fn apply(&self, data: &mut DataConfig, given: &Given) -> Result<()> {
        if given.has("n") {
            data.n = self.n;
        }
        if given.has("val_n") {
            data.val_n = self.val_n;
        }
        if self.unlabelled_n.is_some() {
            data.unlabelled_n = self.unlabelled_n;
        }
        validation_count(data.n, data.val_n)?;
        Ok(())
    }
}
