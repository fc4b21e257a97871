//! Pretraining the generator on a split's training pairs, resumable, into a generator folder;
//! reading a finished one, a prior, and checking that a folder fits the data.
use super::*;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PretrainConfig {
    pub iters: usize,
    pub batch_size: i64,
    /// Sample grid and checkpoint every k steps.
    pub sample_every: usize,
    pub seed: u64,
    /// The GAN steps' forward passes.
    pub precision: Precision,
    /// A generator folder whose weights (generator, discriminator, alpha) the GAN starts from
    /// instead of random ones: a prior pretrained on many pairs of other datasets, which the few
    /// pairs here only fine-tune (transfer, as a segmenter starts from ImageNet weights).
    #[serde(default)]
    pub prior: Option<PathBuf>,
}

impl PretrainConfig {
    /// Ten sample grids (and checkpoints) over the run.
    pub fn new(iters: usize, batch_size: i64, seed: u64) -> PretrainConfig {
        PretrainConfig {
            iters,
            batch_size,
            sample_every: (iters / 10).max(1),
            seed,
            precision: Precision::Fp32,
            prior: None,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct PretrainState {
    iter: usize,
    rng_word_pos: u128,
}

/// Trains the GAN on `train` pairs into `out`; resumes from `out/checkpoint` after a kill.
/// Writes a sample grid (mask | real | generated) every `sample_every` steps.
///
/// `held_out` (validation cases; may be empty) gets the generator's L1 at every sample point
/// beside the training L1, in gan_metrics.jsonl and curves.png: the fidelity curve that says
/// whether `cfg.iters` was enough for the generator to plateau.
pub fn pretrain(
    spec: &GanSpec,
    cfg: &PretrainConfig,
    train: &SegDataset,
    held_out: &SegDataset,
    out: &Path,
    device: Device,
) -> Result<Gan> {
    if let Some(prior) = &cfg.prior {
        check_prior_fits(prior, spec)?;
    }
    ensure_writable_dir(out)?;
    let _lock = lock_folder(out)?;
    if *spec != GanSpec::for_data(spec.gan.clone(), train) {
        bail!(
            "generator spec ({} channels, shape {:?}, {} labels) does not match the data ({}, {:?}, {})",
            spec.channels,
            spec.shape,
            spec.mask_channels,
            train.channels,
            train.shape,
            train.labels.len()
        );
    }
    cfg.precision.check(device)?;
    let ckpt = out.join("checkpoint");
    if let Ok(text) = std::fs::read_to_string(out.join("pretrain.json")) {
        // Compared as structs, so options added later (serde defaults) keep old folders usable.
        let same = serde_json::from_str::<(GanSpec, PretrainConfig)>(&text).is_ok_and(|(s, c)| s == *spec && c == *cfg);
        if !same {
            bail!(
                "{} holds a generator pretrained with other settings; choose another folder or delete that one",
                out.display()
            );
        }
        if checkpoint::find_dir(&ckpt).is_none() && out.join("generator.safetensors").is_file() {
            tracing::info!("{} already holds this generator, pretrained", out.display());
            return finished(out, cfg, device);
        }
    }
    tch::manual_seed(cfg.seed as i64);
    let mut gan = Gan::new(spec, device)?;
    if let Some(prior) = &cfg.prior {
        gan.load_weights(prior)?;
    }
    gan.precision = cfg.precision;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut start = 0;
    if let Some(dir) = checkpoint::find_dir(&ckpt) {
        let state: PretrainState = serde_json::from_str(&std::fs::read_to_string(dir.join("state.json"))?)?;
        gan.load_weights(&dir)?;
        gan.load_optimizers(&dir)?;
        rng.set_word_pos(state.rng_word_pos);
        start = state.iter;
        tracing::info!("resuming generator pretraining at step {start}");
    }
    write_json(&out.join("pretrain.json"), &(spec, cfg))?;
    let samples_dir = out.join("samples");
    std::fs::create_dir_all(&samples_dir)?;
    let shown: Vec<String> = train.ids.iter().take(4).cloned().collect();
    let shown = train.select(&shown)?;
    let mut progress = crate::progress::Progress::new("generator", cfg.iters as u64, start as u64);
    for iter in start..cfg.iters {
        tch::manual_seed((cfg.seed as i64) ^ (iter as i64 + 1));
        let idx: Vec<i64> = (0..cfg.batch_size).map(|_| rng.gen_range(0..train.len() as i64)).collect();
        let idx = Tensor::from_slice(&idx);
        let x = train.images.index_select(0, &idx).to_device(device);
        let m = train.masks.index_select(0, &idx).to_device(device);
        let losses = gan.step(&x, &m, &mut rng);
        let done = iter + 1;
        let diverged = |what: String| {
            anyhow::anyhow!(
                "generator pretraining diverged at step {done}: {what}; {} keeps its last checkpoint. Lower --gan-lr \
                 and pretrain into a new folder",
                out.display()
            )
        };
        let phases = [("discriminator", losses.d), ("generator", losses.g_adv), ("L1", losses.l1)];
        if let Some((phase, v)) = phases.into_iter().find(|(_, v)| !v.is_finite()) {
            return Err(diverged(format!("the {phase} loss is {v}")));
        }
        progress.inc();
        if done.is_multiple_of(cfg.sample_every) || done == cfg.iters {
            if ![&gan.g_vs, &gan.d_vs].into_iter().all(all_finite) {
                return Err(diverged("the GAN's weights are not finite".into()));
            }
            let mut line = serde_json::json!({"iter": done, "d": losses.d, "g_adv": losses.g_adv, "l1": losses.l1});
            if !held_out.is_empty() {
                line["heldout_l1"] = gan.l1_on(held_out, device).into();
            }
            append_jsonl(&out.join("gan_metrics.jsonl"), &line)?;
            progress.status(format!("D {:.3} G {:.3} L1 {:.3}", losses.d, losses.g_adv, losses.l1));
            plot_pretraining(out)?;
            let grid = sample_grid(&gan, &shown, device);
            crate::viz::save_png(&samples_dir.join(format!("step_{done:06}.png")), &grid)?;
            checkpoint::save_dir(&ckpt, |dir| {
                gan.save(dir)?;
                gan.save_optimizers(dir)?;
                write_json(&dir.join("state.json"), &PretrainState { iter: done, rng_word_pos: rng.get_word_pos() })
            })?;
        }
    }
    progress.finish();
    gan.save(out)?;
    // The checkpoint (weights again, and the optimisers' moments) is three times the generator's
    // size and only serves resuming; a study keeps hundreds of generators.
    checkpoint::remove(&ckpt)?;
    finished(out, cfg, device)
}

/// A pretrained generator as every later user gets it: read from its folder, with fresh
/// optimisers, so a run that pretrained in-process and one that resumed after pretraining (or
/// a study's run given the shared generator) train the same.
pub(super) fn finished(out: &Path, cfg: &PretrainConfig, device: Device) -> Result<Gan> {
    let mut gan = Gan::load(out, device)?;
    gan.precision = cfg.precision;
    Ok(gan)
}

/// `--generator-prior`: a finished generator folder whose networks are the ones `gan` builds
/// (checked when the flags are read; the data's shape, channels and labels when pretraining
/// starts, [`check_prior_fits`]).
pub fn read_prior(prior: &Path, gan: &GanConfig) -> Result<GanSpec> {
    let flag = format!("--generator-prior {}", prior.display());
    let theirs = GanSpec::read(prior).with_context(|| flag.clone())?;
    if !prior.join("generator.safetensors").is_file() {
        bail!("{flag}: no generator.safetensors (an unfinished pretraining?); let pretrain-generator finish first");
    }
    let networks = |g: &GanConfig| (g.ngf, g.ndf, g.code_length, g.inpaint, g.discriminator);
    if networks(&theirs.gan) != networks(gan) {
        bail!(
            "{flag}: its networks (ngf, ndf, code length, inpaint, discriminator) are {:?}, this run's {:?}; pretrain \
             the prior with the same --ngf, --ndf, --code-length, --inpaint and --discriminator",
            networks(&theirs.gan),
            networks(gan)
        );
    }
    Ok(theirs)
}

/// The prior was pretrained on data of `spec`'s shape, channels and labels.
pub fn check_prior_fits(prior: &Path, spec: &GanSpec) -> Result<()> {
    let theirs = read_prior(prior, &spec.gan)?;
    check_data_fits("--generator-prior", prior, &theirs, spec)
}

/// The generator folder `dir` (given by `flag`), whose gan.json is `theirs`, was pretrained on
/// data of `spec`'s shape, channels and labels.
pub fn check_data_fits(flag: &str, dir: &Path, theirs: &GanSpec, spec: &GanSpec) -> Result<()> {
    let data = |s: &GanSpec| (s.shape.clone(), s.channels, s.mask_channels);
    if data(theirs) != data(spec) {
        bail!(
            "{flag} {}: pretrained on data of (shape, channels, labels) {:?}, this run's are {:?}; pretrain it at \
             the same --size on images with as many channels and labels",
            dir.display(),
            data(theirs),
            data(spec)
        );
    }
    Ok(())
}

/// `genseg pretrain-generator`: pretrains on the training cases of `data`'s split into `out`,
/// records the data it saw (train_data.json, which `synth --from-train` reads) and returns the
/// held-out (validation + test) L1 of the trained and of an untrained generator.
pub fn pretrain_on_split(
    data: &DataConfig,
    gan: GanConfig,
    cfg: &PretrainConfig,
    out: &Path,
    device: Device,
) -> Result<(f64, f64)> {
    crate::runtime::refuse_overlap("--out", out, &data.inputs())?;
    let splits = load_splits(data, cfg.seed)?;
    let spec = GanSpec::for_data(gan, &splits.train);
    let trained = pretrain(&spec, cfg, &splits.train, &splits.val, out, device)?;
    let record = serde_json::json!({
        "data": data.data, "load": data.load, "train_ids": splits.split.train, "versions": versions(device)
    });
    write_json(&out.join("train_data.json"), &record)?;
    let untrained = Gan::new(&spec, device)?;
    Ok((trained.l1_on(&splits.test, device), untrained.l1_on(&splits.test, device)))
}

/// curves.png of a generator folder: training L1 (the step's batch, augmented as the GAN saw
/// it) and held-out L1 against the pretraining step, both in [0, 1] intensity units (the loss
/// term in gan_metrics.jsonl is on the generator's [-1, 1] scale, twice that).
pub(super) fn plot_pretraining(out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(out.join("gan_metrics.jsonl"))?;
    let lines: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let series = |label: &str, key: &str, scale: f64| crate::viz::Series {
        label: label.into(),
        points: lines.iter().filter_map(|l| Some((l["iter"].as_f64()?, l[key].as_f64()? * scale))).collect(),
        intervals: vec![],
    };
    let all = [series("training L1 (one batch)", "l1", 0.5), series("held-out L1", "heldout_l1", 1.0)];
    let drawn: Vec<_> = all.into_iter().filter(|s| !s.points.is_empty()).collect();
    crate::viz::line_chart(
        &out.join("curves.png"),
        "generator pretraining",
        "step",
        "L1, [0, 1] intensity",
        &drawn,
        false,
    )
}

/// Rows of mask | real | generated for the given cases (volumes: their middle slices).
pub fn sample_grid(gan: &Gan, data: &SegDataset, device: Device) -> image::RgbImage {
    use crate::viz::{mask_picture, picture};
    let (x, m) = (data.images.to_device(device), data.masks.to_device(device));
    let fake = tch::no_grad(|| gan.synthesize(&m, &Backgrounds::own(&x, &m))).to_device(Device::Cpu);
    let rows: Vec<Vec<Tensor>> = (0..data.len() as i64)
        .map(|i| vec![mask_picture(&data.masks.get(i)), picture(&data.images.get(i)), picture(&fake.get(i))])
        .collect();
    crate::viz::tensor_grid(&rows)
}
