//! The architecture hypergradient of GenSeg's multi-level optimisation (DARTS second-order
//! approximation, one unrolled segmentation step):
//!
//! theta' = theta - xi * grad_theta L_train(theta, alpha)
//! v      = grad_theta L_val(theta')
//! g_alpha = -xi * [grad_alpha L_train(theta + eps v, alpha) - grad_alpha L_train(theta - eps v, alpha)] / (2 eps),
//! eps = 0.01 / |v|.
//!
//! alpha reaches L_train only through the synthetic images G_alpha(aug(m)), so the path from the
//! generator to the segmenter must stay differentiable (no detach, no quantisation). Every
//! perturbation of the segmenter is undone by copying back a snapshot of all its variables
//! (weights and BatchNorm buffers), so validation data never changes the segmenter.
//! The generator is not perturbed, so its synthetic images are computed once per iteration.
//! The same chain rule reaches the generator's own weights (`--upper generator`): only the
//! last backward pass, from the image-space derivative into the generator, changes target.
use crate::gan::{Backgrounds, Gan};
use crate::learn::loss::{seg_loss, seg_loss_per_case, RegionLoss};
use crate::learn::optim::gradients;
use crate::models::segnet::SegNet;
use tch::nn::VarStore;
use tch::Tensor;

/// How the mixed second derivative (d/dalpha of grad_theta L_train . v) is taken.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum HypergradMode {
    /// Central difference of two first-order gradients (DARTS). With ReLU, max-pool and
    /// train-mode BatchNorm the gradient is piecewise, and at DARTS' eps the difference measures
    /// its jumps (cosine about 0 to the exact value on the study's U-Net, docs/RESULTS.md).
    Fd,
    /// Double backward through the segmenter: the derivative of the unrolled objective (the default).
    Exact,
}

impl HypergradMode {
    /// What configuration files written before the field existed used.
    pub fn before_the_field() -> HypergradMode {
        HypergradMode::Fd
    }
}

/// One fixed draw of the lower-level batch, reused for every evaluation of L_train so that the
/// finite differences compare like with like (same masks, same dropout via `seed`).
pub struct TrainBatch {
    pub images: Tensor,
    pub masks: Tensor,
    pub synthetic_masks: Tensor,
    /// Real cases an inpainting generator draws the synthetic masks into.
    pub backgrounds: Backgrounds,
    pub seed: i64,
    /// Per-sample weights of the synthetic pairs (`--reweight`); `None`: the synthetic loss is
    /// taken over the batch like the real one.
    pub synthetic_weights: Option<Tensor>,
}

/// The segmentation level: segmenter, generator and loss settings.
pub struct InnerStep<'a> {
    pub seg: &'a SegNet,
    pub seg_vs: &'a VarStore,
    pub gan: &'a Gan,
    pub region: RegionLoss,
    pub lambda: f64,
}

impl InnerStep<'_> {
    /// G(m~) in [0, 1] for the batch's augmented masks, with its graph to the generator and alpha.
    pub fn synthesize(&self, batch: &TrainBatch) -> Tensor {
        tch::manual_seed(batch.seed);
        self.gan.synthesize(&batch.synthetic_masks, &batch.backgrounds)
    }

    /// lambda * L_seg(S(x~), m~) for synthetic images x~, or lambda * sum_i w_i l_i(x~_i, m~_i)
    /// with per-sample weights.
    pub fn synthetic_loss(&self, batch: &TrainBatch, synthetic: &Tensor) -> Tensor {
        let loss = match &batch.synthetic_weights {
            None => seg_loss(self.seg, synthetic, &batch.synthetic_masks, self.region),
            Some(w) => (seg_loss_per_case(self.seg, synthetic, &batch.synthetic_masks, self.region) * w).sum(w.kind()),
        };
        loss * self.lambda
    }

    /// How much each synthetic pair's loss gradient agrees with the validation gradient after a
    /// look-ahead step on the real pairs (Ren et al., ICML 2018, "Learning to Reweight
    /// Examples", with the real pairs trusted at weight 1):
    ///
    /// theta' = theta - xi * grad L_real(theta);  influence_i = grad l_i(theta) . grad L_val(theta'),
    ///
    /// so that d L_val(theta - xi grad(L_real + sum_i eps_i l_i)) / d eps_i at eps = 0 is
    /// -xi * influence_i. Taken exactly by a double backward through eps. The segmenter's
    /// variables (weights and BatchNorm buffers) are restored afterwards.
    pub fn sample_influence(&self, batch: &TrainBatch, synthetic: &Tensor, val: (&Tensor, &Tensor), xi: f64) -> Tensor {
        let params = self.seg_vs.trainable_variables();
        let snapshot = Snapshot::take(self.seg_vs);
        let real_grads = gradients(&self.real_loss(batch), &params);
        shift(&params, &real_grads, -xi);
        let v = gradients(&self.val_loss(val.0, val.1), &params);
        snapshot.restore();
        let x = synthetic.detach();
        let eps = Tensor::zeros([x.size()[0]], (x.kind(), x.device())).set_requires_grad(true);
        let per_case = seg_loss_per_case(self.seg, &x, &batch.synthetic_masks, self.region);
        let dot = gradient_dot(&(per_case * &eps).sum(x.kind()), &params, &v);
        let influence = gradients(&dot, std::slice::from_ref(&eps)).pop().unwrap();
        snapshot.restore();
        influence
    }

    /// Ren et al.'s weights: the positive part of each pair's influence, normalised to sum 1
    /// (all 0 when no pair helps), so a pair whose gradient opposes the validation gradient is
    /// left out of the step.
    pub fn sample_weights(&self, batch: &TrainBatch, synthetic: &Tensor, val: (&Tensor, &Tensor), xi: f64) -> Tensor {
        weights_from_influence(&self.sample_influence(batch, synthetic, val, xi))
    }

    pub fn real_loss(&self, batch: &TrainBatch) -> Tensor {
        seg_loss(self.seg, &batch.images, &batch.masks, self.region)
    }

    /// L_train = L_seg(real) + lambda * L_seg(synthetic).
    pub fn train_loss(&self, batch: &TrainBatch, synthetic: &Tensor) -> Tensor {
        self.real_loss(batch) + self.synthetic_loss(batch, synthetic)
    }

    pub fn val_loss(&self, images: &Tensor, masks: &Tensor) -> Tensor {
        seg_loss(self.seg, images, masks, self.region)
    }

    /// The hypergradient w.r.t. each of `targets` (alpha, generator weights: whatever the
    /// synthetic images' graph reaches), given grad_theta L_train at the current theta and the
    /// batch's synthetic images (still attached to the generator's graph).
    ///
    /// grad_alpha L_train(theta +- eps v) = J^T dL/dx~(theta +- eps v), with J the Jacobian of
    /// x~ = G_alpha(m~) w.r.t. alpha, which does not depend on theta. So the two perturbed passes
    /// only go through the segmenter, and one backward pass through the generator takes their
    /// difference to alpha. `fd_scale` sets the perturbation norm (eps = fd_scale / |v|; DARTS
    /// uses 0.01). `Exact` replaces the difference by a double backward.
    #[allow(clippy::too_many_arguments)]
    pub fn hypergradient(
        &self,
        batch: &TrainBatch,
        synthetic: &Tensor,
        val: (&Tensor, &Tensor),
        train_grads: &[Tensor],
        xi: f64,
        mode: HypergradMode,
        fd_scale: f64,
        targets: &[Tensor],
    ) -> Vec<Tensor> {
        let params = self.seg_vs.trainable_variables();
        let seg_snapshot = Snapshot::take(self.seg_vs);
        shift(&params, train_grads, -xi);
        let v = gradients(&self.val_loss(val.0, val.1), &params);
        seg_snapshot.restore();
        let norm =
            tch::no_grad(|| v.iter().map(|t| t.square().sum(tch::Kind::Double).double_value(&[])).sum::<f64>().sqrt());
        if norm == 0.0 || !norm.is_finite() {
            return targets.iter().map(Tensor::zeros_like).collect();
        }
        let leaf = synthetic.detach().set_requires_grad(true);
        // d/dx~ (grad_theta L_syn . v), the image-space mixed derivative.
        let mixed = match mode {
            HypergradMode::Fd => {
                let eps = fd_scale / norm;
                let image_grad_at = |sign: f64| {
                    shift(&params, &v, sign * eps);
                    let g = gradients(&self.synthetic_loss(batch, &leaf), std::slice::from_ref(&leaf)).pop().unwrap();
                    seg_snapshot.restore();
                    g
                };
                (image_grad_at(1.0) - image_grad_at(-1.0)) / (2.0 * eps)
            }
            HypergradMode::Exact => {
                let dot = gradient_dot(&self.synthetic_loss(batch, &leaf), &params, &v);
                let d = gradients(&dot, std::slice::from_ref(&leaf)).pop().unwrap();
                seg_snapshot.restore();
                d
            }
        };
        let through_generator = (synthetic * mixed).sum(synthetic.kind());
        // The generator's graph is kept: the caller owns `synthetic` and may reuse it.
        Tensor::run_backward(&[through_generator], targets, true, false).into_iter().map(|g| g * -xi).collect()
    }
}

/// grad_params(loss) . v, with the graph kept so it can be differentiated again (the
/// Hessian-vector products of both upper-level variants).
fn gradient_dot(loss: &Tensor, params: &[Tensor], v: &[Tensor]) -> Tensor {
    Tensor::run_backward(&[loss], params, true, true)
        .iter()
        .zip(v)
        .filter(|(g, _)| g.defined())
        .map(|(g, v)| (g * v).sum(g.kind()))
        .reduce(|a, b| a + b)
        .expect("the loss depends on the segmenter's parameters")
}

/// max(influence, 0), normalised to sum 1 unless every entry is 0.
pub fn weights_from_influence(influence: &Tensor) -> Tensor {
    let w = influence.clamp_min(0.0).detach();
    let total = f64::try_from(w.sum(tch::Kind::Double)).unwrap();
    if total > 0.0 {
        w / total
    } else {
        w
    }
}

/// params += scale * direction, outside autograd (the inner step taken by hand).
pub fn shift(params: &[Tensor], direction: &[Tensor], scale: f64) {
    tch::no_grad(|| {
        for (p, d) in params.iter().zip(direction) {
            let mut p = p.shallow_clone();
            let _ = p.g_add_(&(d * scale));
        }
    });
}

/// Copies of every variable of a VarStore (weights and buffers), restorable bit for bit.
pub struct Snapshot {
    pairs: Vec<(Tensor, Tensor)>,
}

impl Snapshot {
    pub fn take(vs: &VarStore) -> Snapshot {
        let pairs = tch::no_grad(|| vs.variables().into_values().map(|live| (live.copy(), live)).collect());
        Snapshot { pairs }
    }

    pub fn restore(&self) {
        tch::no_grad(|| {
            for (saved, live) in &self.pairs {
                let mut live = live.shallow_clone();
                live.copy_(saved);
            }
        });
    }
}
