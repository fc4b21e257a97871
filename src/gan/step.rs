//! The GAN's networks and optimisers, one training step, and synthesis.
use super::losses::*;
use super::*;

/// Real cases an inpainting generator draws into, one per synthetic mask: it keeps each image
/// outside a hole and redraws the hole, painting over the region `erase` (the case's own lesion)
/// and drawing a lesion where the new mask says. A mask-only generator ignores them.
pub struct Backgrounds {
    /// In [0, 1].
    pub images: Tensor,
    /// Mask channels, like the masks drawn.
    pub erase: Tensor,
    /// In [0, 1]: the image each drawn mask was cut from, moved with it; a pasting generator
    /// takes the lesion's pixels from it.
    pub lesions: Tensor,
}

impl Backgrounds {
    /// The cases themselves: the generator redraws their own lesions (fidelity, sample grids).
    pub fn own(images: &Tensor, masks: &Tensor) -> Backgrounds {
        Backgrounds { images: images.shallow_clone(), erase: masks.shallow_clone(), lesions: images.shallow_clone() }
    }

    /// For masks made from a batch (cycled through it) and `lesions` their images moved with
    /// them, the next case of the batch each, so that a lesion lands on another case's
    /// background whenever the batch has two.
    pub fn next_in_batch(images: &Tensor, masks: &Tensor, lesions: &Tensor) -> Backgrounds {
        let count = lesions.size()[0];
        let cycled = |t: &Tensor| {
            let b = t.size()[0];
            let next: Vec<i64> = (0..count).map(|i| (i + 1) % b).collect();
            t.index_select(0, &Tensor::from_slice(&next).to_device(t.device()))
        };
        Backgrounds { images: cycled(images), erase: cycled(masks), lesions: lesions.shallow_clone() }
    }

    /// The cases at `index` (indices on the backgrounds' device).
    pub fn select(&self, index: &Tensor) -> Backgrounds {
        let picked = |t: &Tensor| t.index_select(0, index);
        Backgrounds { images: picked(&self.images), erase: picked(&self.erase), lesions: picked(&self.lesions) }
    }

    pub fn narrow(&self, start: i64, len: i64) -> Backgrounds {
        let part = |t: &Tensor| t.narrow(0, start, len);
        Backgrounds { images: part(&self.images), erase: part(&self.erase), lesions: part(&self.lesions) }
    }

    pub fn to_device(&self, device: Device) -> Backgrounds {
        let moved = |t: &Tensor| t.to_device(device);
        Backgrounds { images: moved(&self.images), erase: moved(&self.erase), lesions: moved(&self.lesions) }
    }
}

pub struct Gan {
    pub spec: GanSpec,
    pub g_vs: VarStore,
    pub d_vs: VarStore,
    pub arch_vs: VarStore,
    pub g: Generator,
    pub d: Discriminator,
    pub g_opt: Optimizer,
    pub d_opt: Optimizer,
    /// The forward passes of [`Gan::step`] (a training setting, not part of the generator).
    pub precision: Precision,
}
impl Gan {
    pub fn new(spec: &GanSpec, device: Device) -> Result<Gan> {
        spec.gan.check()?;
        let g_vs = VarStore::new(device);
        let d_vs = VarStore::new(device);
        let arch_vs = VarStore::new(device);
        let mut gcfg = GeneratorConfig::for_shape(&spec.shape, spec.generator_inputs(), spec.channels, spec.gan.ngf)?;
        gcfg.fused = spec.gan.fused.unwrap_or(device.is_cuda());
        gcfg.code_channels = spec.gan.code_length;
        let g = Generator::new(&g_vs.root(), &arch_vs.root(), &gcfg);
        let d = Discriminator::new(
            &d_vs.root(),
            spec.gan.discriminator,
            &spec.shape,
            spec.channels,
            spec.mask_channels,
            spec.gan.ndf,
        )?;
        let opt = OptimConfig::adam(spec.gan.lr, spec.gan.beta1);
        let g_opt = Optimizer::new(opt.clone(), g_vs.trainable_variables());
        let d_opt = Optimizer::new(opt, d_vs.trainable_variables());
        Ok(Gan { spec: spec.clone(), g_vs, d_vs, arch_vs, g, d, g_opt, d_opt, precision: Precision::Fp32 })
    }

    /// The decoder's trainable weights (up-sampling convolutions and their BatchNorm affine
    /// parameters): what `--upper generator` moves.
    pub fn decoder_weights(&self) -> Vec<Tensor> {
        let mut named: Vec<(String, Tensor)> =
            self.g_vs.variables().into_iter().filter(|(k, t)| k.starts_with("up") && t.requires_grad()).collect();
        // VarStore hands out a hash map: sort for a fixed order (optimiser state, checkpoints).
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named.into_iter().map(|(_, t)| t).collect()
    }

    /// Generated images in [0, 1] for `masks` (drawn into `backgrounds` by an inpainting
    /// generator); differentiable w.r.t. generator weights and alpha.
    pub fn synthesize(&self, masks: &Tensor, backgrounds: &Backgrounds) -> Tensor {
        // The generator always runs in train mode (BatchNorm batch statistics, dropout as noise),
        // as in Pix2Pix and the GenSeg reference.
        let code = self.g.draw_code(masks);
        (self.generate(masks, backgrounds, code.as_ref()).0 + 1.0) / 2.0
    }

    /// The generator's image in [-1, 1]: its whole output, or for inpainting its output inside
    /// the hole and the background outside; and the hole (`None`: the whole image is drawn).
    fn generate(&self, masks: &Tensor, backgrounds: &Backgrounds, code: Option<&Tensor>) -> (Tensor, Option<Tensor>) {
        if !self.spec.gan.inpaint {
            return (self.g.forward_coded(masks, code, true), None);
        }
        let hole = self.hole(masks, &backgrounds.erase);
        let real = &backgrounds.images * 2.0 - 1.0;
        let kept = 1.0 - &hole;
        if !self.spec.gan.paste {
            let input = Tensor::cat(&[masks.shallow_clone(), &real * &kept, hole.shallow_clone()], 1);
            return (self.g.forward_coded(&input, code, true) * &hole + real * kept, Some(hole));
        }
        // A pasting generator is given the background with the lesion's real pixels pasted in
        // and the background's own lesion (grown) blanked, told where that blank is, and adds its
        // output to what it is given inside the hole: the lesion's texture and the tissue around
        // it pass through at full resolution, and it corrects colours and fills the blank.
        let lesion = foreground(masks).to_kind(hole.kind());
        let blank = self.grown(&foreground(&backgrounds.erase).to_kind(hole.kind())) * (1.0 - &lesion);
        let given: Tensor = &real * (1.0 - &blank - &lesion) + (&backgrounds.lesions * 2.0 - 1.0) * &lesion;
        let input = Tensor::cat(&[masks.shallow_clone(), given.shallow_clone(), blank], 1);
        let drawn = (self.g.forward_coded(&input, code, true) + &given).clamp(-1.0, 1.0);
        (drawn * &hole + given * kept, Some(hole))
    }

    /// 1 where an inpainting generator draws: the lesions of `masks` and `erase` (any label),
    /// grown by [`GanSpec::hole_margin`]. `[B, 1, spatial...]`.
    pub fn hole(&self, masks: &Tensor, erase: &Tensor) -> Tensor {
        self.grown(&foreground(masks).logical_or(&foreground(erase)).to_kind(masks.kind()))
    }

    /// `region` `[B, 1, spatial...]` grown by [`GanSpec::hole_margin`] (max-pool dilation).
    pub(super) fn grown(&self, region: &Tensor) -> Tensor {
        let r = self.spec.hole_margin();
        let k = 2 * r + 1;
        match self.spec.shape.len() {
            2 => region.max_pool2d([k, k], [1, 1], [r, r], [1, 1], false),
            _ => region.max_pool3d([k, k, k], [1, 1, 1], [r, r, r], [1, 1, 1], false),
        }
    }

    /// The discriminator's loss for judging (mask, image) pairs `real` or fake, on DiffAugment-ed
    /// inputs when configured. The segmenting discriminator's "real" is the mask's classes.
    pub(super) fn judge(&self, masks: &Tensor, images: &Tensor, real: bool) -> Tensor {
        let (masks, images) = match self.spec.gan.diff_augment {
            true => diff_augment(masks, images),
            false => (masks.shallow_clone(), images.shallow_clone()),
        };
        let logits = self.d.logits(&masks, &images, true);
        match (&self.d, real) {
            (Discriminator::Patch(_), real) => bce_to(&logits, if real { 1.0 } else { 0.0 }),
            (Discriminator::Segmenting(_), true) => balanced_cross_entropy(&logits, &pixel_classes(&masks)),
            (Discriminator::Segmenting(_), false) => fake_cross_entropy(&logits),
        }
    }

    /// One Pix2Pix iteration on real pairs (images in [0, 1]): D step, then G step. `rng` draws
    /// the joint augmentation when it is on. With mode seeking, the first half of the batch
    /// (rounded up) is used twice with different codes, so the step costs what it did.
    pub fn step(&mut self, images: &Tensor, masks: &Tensor, rng: &mut impl Rng) -> GanLosses {
        let (images, masks) = match self.spec.gan.joint_augment {
            true => augment_pairs(images, masks, &AugmentConfig::default(), 0.0, rng),
            false => (images.shallow_clone(), masks.shallow_clone()),
        };
        let seeking = self.spec.gan.mode_seeking > 0.0;
        let (images, masks) = if seeking {
            let half = (images.size()[0] + 1) / 2;
            let twice = |t: &Tensor| Tensor::cat(&[t.narrow(0, 0, half), t.narrow(0, 0, half)], 0);
            (twice(&images), twice(&masks))
        } else {
            (images, masks)
        };
        let target = &images * 2.0 - 1.0;
        // An inpainting generator learns to redraw its own image inside a hole that also covers
        // another case's lesion shape: the lesion it draws and the tissue it paints over at
        // synthesis. A pasting one is given its own lesion with shifted colours to correct.
        let lesions = match self.spec.gan.paste {
            true => shift_colours(&images, rng),
            false => images.shallow_clone(),
        };
        let backgrounds = Backgrounds { images: images.shallow_clone(), erase: masks.roll([1], [0]), lesions };
        let code = self.g.draw_code(&masks);
        // Forward passes and losses in `precision`; gradients outside its region.
        let (precision, device) = (self.precision, masks.device());
        let (fake, hole) = precision.autocast(device, || self.generate(&masks, &backgrounds, code.as_ref()));
        let fake = full_precision(&fake);
        let d_loss = precision
            .autocast(device, || (self.judge(&masks, &fake.detach(), false) + self.judge(&masks, &target, true)) * 0.5);
        let grads = gradients(&d_loss, self.d_opt.params());
        self.d_opt.step(&grads);
        let adv = precision.autocast(device, || self.judge(&masks, &fake, true));
        let l1 = match &hole {
            Some(hole) => lesion_balanced_l1(&(&fake - &target).abs(), &masks, hole),
            None => (&fake - &target).abs().mean(Kind::Float),
        };
        let mut g_loss = &adv + &l1 * self.spec.gan.lambda_l1;
        // `GanConfig::check` allows feature matching only with the PatchGAN.
        if let (true, Discriminator::Patch(d)) = (self.spec.gan.feature_matching > 0.0, &self.d) {
            let matching = precision.autocast(device, || feature_matching(d, &masks, &fake, &target));
            g_loss += matching * self.spec.gan.feature_matching;
        }
        if let (true, Some(code)) = (seeking, &code) {
            g_loss += mode_seeking(&fake, code) * self.spec.gan.mode_seeking;
        }
        let grads = gradients(&g_loss, self.g_opt.params());
        self.g_opt.step(&grads);
        GanLosses { d: d_loss.double_value(&[]), g_adv: adv.double_value(&[]), l1: l1.double_value(&[]) }
    }

    /// Mean absolute error (in [0, 1] intensity units) of generated vs real images, over the
    /// pixels the generator draws: the whole image, or for an inpainting generator the hole
    /// around each case's own lesion.
    pub fn l1_on(&self, data: &SegDataset, device: Device) -> f64 {
        tch::no_grad(|| {
            let (mut error, mut drawn) = (0.0, 0.0);
            for start in (0..data.len() as i64).step_by(8) {
                let n = (data.len() as i64 - start).min(8);
                let x = data.images.narrow(0, start, n).to_device(device);
                let m = data.masks.narrow(0, start, n).to_device(device);
                let hole = match self.spec.gan.inpaint {
                    true => self.hole(&m, &m),
                    false => x.ones_like().narrow(1, 0, 1),
                };
                let fake = self.synthesize(&m, &Backgrounds::own(&x, &m));
                error += f64::try_from((fake - &x).abs().sum(Kind::Float)).unwrap();
                drawn += f64::try_from(hole.sum(Kind::Float)).unwrap() * x.size()[1] as f64;
            }
            error / drawn.max(1.0)
        })
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        save_vars(&self.g_vs, &dir.join("generator.safetensors"))?;
        save_vars(&self.d_vs, &dir.join("discriminator.safetensors"))?;
        save_vars(&self.arch_vs, &dir.join("alpha.safetensors"))?;
        write_json(&dir.join("gan.json"), &self.spec)
    }

    pub fn save_optimizers(&self, dir: &Path) -> Result<()> {
        save_tensors(&dir.join("g_optim.safetensors"), &self.g_opt.state())?;
        save_tensors(&dir.join("d_optim.safetensors"), &self.d_opt.state())
    }

    pub fn load_weights(&mut self, dir: &Path) -> Result<()> {
        load_vars(&mut self.g_vs, &dir.join("generator.safetensors"))?;
        load_vars(&mut self.d_vs, &dir.join("discriminator.safetensors"))?;
        load_vars(&mut self.arch_vs, &dir.join("alpha.safetensors"))
    }

    pub fn load_optimizers(&mut self, dir: &Path) -> Result<()> {
        self.g_opt.load_state(&load_tensors(&dir.join("g_optim.safetensors"))?)?;
        self.d_opt.load_state(&load_tensors(&dir.join("d_optim.safetensors"))?)
    }

    /// A generator folder written by `pretrain` (or a train run's generator/).
    pub fn load(dir: &Path, device: Device) -> Result<Gan> {
        let spec = GanSpec::read(dir)?;
        let mut gan = Gan::new(&spec, device)?;
        gan.load_weights(dir)?;
        if ![&gan.g_vs, &gan.arch_vs].into_iter().all(all_finite) {
            bail!(
                "{}: the generator's weights are not finite (a diverged run); pretrain it again with a lower --gan-lr",
                dir.display()
            );
        }
        Ok(gan)
    }
}
