//! `genseg synth`: synthetic image/mask pairs from augmented masks with a pretrained generator,
//! written as PNG files for inspection or for other tools. An inpainting generator draws each
//! lesion into one of its own training images, drawn at random; a pasting one takes the lesions
//! from its training images too (`--from-train`).
use crate::data::augment::{augment_masks_with_images, AugmentConfig};
use crate::data::images::{load_images, ImageBatch};
use crate::data::{LoadOptions, SegDataset};
use crate::gan::{Backgrounds, Gan};
use crate::runtime::ensure_writable_dir;
use crate::viz::{save_png, tensor_to_rgb};
use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Where the masks to augment come from.
pub enum MaskSource {
    /// A folder of binary masks.
    Folder(PathBuf),
    /// The masks folder of the dataset the generator was pretrained on (train_data.json).
    GeneratorTraining,
}

/// Writes `n` pairs to OUT/images and OUT/masks (synth_0000.png...), cycling through the masks.
pub fn write(generator: &Path, source: &MaskSource, n: usize, seed: u64, out: &Path, device: Device) -> Result<()> {
    let mut inputs = vec![("--run", generator)];
    if let MaskSource::Folder(dir) = source {
        inputs.push(("--masks", dir.as_path()));
    }
    crate::runtime::refuse_overlap("--out", out, &inputs)?;
    let gan = Gan::load(generator, device)?;
    if gan.spec.shape.len() != 2 {
        bail!("{}: synth writes 2-D image/mask pairs and this generator makes 3-D volumes; its samples.png shows middle slices", generator.display());
    }
    let (masks, images_of_masks) = match (source, gan.spec.gan.paste) {
        (MaskSource::Folder(dir), true) => bail!(
            "--masks {}: this generator pastes each lesion from the mask's own image (--paste), which a masks folder does not have; use --from-train",
            dir.display()
        ),
        (MaskSource::GeneratorTraining, true) => {
            let train = training_set(generator, &gan, "--from-train")?;
            (train.masks, Some(train.images))
        }
        (source, false) => {
            let dir = match source {
                MaskSource::Folder(dir) => dir.clone(),
                MaskSource::GeneratorTraining => training_record(generator, "--from-train")?.data.join("masks"),
            };
            let ImageBatch { images: masks, .. } = load_images(&dir, 1, gan.spec.shape[0] as u32)?;
            (masks.gt(0.5).to_kind(Kind::Float), None)
        }
    };
    ensure_writable_dir(&out.join("images"))?;
    ensure_writable_dir(&out.join("masks"))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    tch::manual_seed(seed as i64);
    let base = Tensor::from_slice(&(0..n as i64).map(|i| i % masks.size()[0]).collect::<Vec<_>>());
    let chosen = masks.index_select(0, &base);
    // Without images to move (a mask-only or inpainting generator ignores the lesions' images),
    // the masks stand in for them.
    let sources = images_of_masks.map_or_else(|| chosen.shallow_clone(), |images| images.index_select(0, &base));
    let (augmented, lesions) = augment_masks_with_images(&chosen, &sources, &AugmentConfig::default(), &mut rng);
    let backgrounds = match gan.spec.gan.inpaint {
        true => Backgrounds { lesions, ..training_backgrounds(generator, &gan, n, seed)? },
        // A mask-only generator ignores them.
        false => Backgrounds::own(&augmented, &augmented),
    };
    let images = tch::no_grad(|| gan.synthesize(&augmented.to_device(device), &backgrounds.to_device(device)))
        .to_device(Device::Cpu);
    for i in 0..n as i64 {
        let name = format!("synth_{i:04}.png");
        save_png(&out.join("images").join(&name), &tensor_to_rgb(&images.get(i)))?;
        save_png(&out.join("masks").join(&name), &tensor_to_rgb(&augmented.get(i)))?;
    }
    Ok(())
}

/// What train_data.json of a pretrain-generator folder records.
#[derive(serde::Deserialize)]
struct TrainingRecord {
    data: PathBuf,
    #[serde(default)]
    load: Option<LoadOptions>,
    train_ids: Vec<String>,
}

fn training_record(generator: &Path, why: &str) -> Result<TrainingRecord> {
    let path = generator.join("train_data.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{} not found: {why} needs a folder written by pretrain-generator", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a training record", path.display()))
}

/// The generator's training cases, as pretrain-generator saw them.
fn training_set(generator: &Path, gan: &Gan, why: &str) -> Result<SegDataset> {
    let record = training_record(generator, why)?;
    let load = LoadOptions {
        size: gan.spec.shape[0] as u32,
        channels: Some(gan.spec.channels as usize),
        ..record.load.unwrap_or_default()
    };
    crate::data::load(&record.data, &load)?.select(&record.train_ids)
}

/// `n` of the generator's own training cases, drawn at random, for an inpainting generator.
fn training_backgrounds(generator: &Path, gan: &Gan, n: usize, seed: u64) -> Result<Backgrounds> {
    use rand::Rng;
    let train = training_set(generator, gan, "an inpainting generator (its backgrounds are its training images)")?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0xbac6);
    let picked: Vec<i64> = (0..n).map(|_| rng.gen_range(0..train.len() as i64)).collect();
    Ok(Backgrounds::own(&train.images, &train.masks).select(&Tensor::from_slice(&picked)))
}
