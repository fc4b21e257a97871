//! Adam and RMSprop over explicit gradient lists, with state that can be checkpointed (so a
//! killed run resumes with its optimiser moments intact).
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;
use torch_sys::C_tensor;

/// Learning rate over the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    #[default]
    Constant,
    /// nnU-Net's polynomial decay: lr (1 - t / T)^0.9.
    Poly,
}

impl Schedule {
    /// The learning rate of iteration `iter` (0-based) of `iters`.
    pub fn lr(self, base: f64, iter: usize, iters: usize) -> f64 {
        match self {
            Schedule::Constant => base,
            Schedule::Poly => base * (1.0 - iter as f64 / iters.max(1) as f64).max(0.0).powf(0.9),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum OptimKind {
    Adam,
    Rmsprop,
    /// SGD with Nesterov momentum (nnU-Net's optimiser).
    Sgd,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OptimConfig {
    pub kind: OptimKind,
    pub lr: f64,
    /// Adam's beta1, or RMSprop's momentum.
    pub beta1: f64,
    /// Adam's beta2, or RMSprop's smoothing constant.
    pub beta2: f64,
    pub weight_decay: f64,
}

impl OptimConfig {
    pub fn adam(lr: f64, beta1: f64) -> OptimConfig {
        OptimConfig { kind: OptimKind::Adam, lr, beta1, beta2: 0.999, weight_decay: 0.0 }
    }

    /// The reference segmenter's RMSprop (momentum 0.9, alpha 0.99, weight decay 1e-8).
    pub fn rmsprop(lr: f64) -> OptimConfig {
        OptimConfig { kind: OptimKind::Rmsprop, lr, beta1: 0.9, beta2: 0.99, weight_decay: 1e-8 }
    }

    /// nnU-Net's SGD: Nesterov momentum 0.99, weight decay 3e-5 (its learning rate is 1e-2).
    pub fn sgd(lr: f64) -> OptimConfig {
        OptimConfig { kind: OptimKind::Sgd, lr, beta1: 0.99, beta2: 0.0, weight_decay: 3e-5 }
    }

    /// Each optimiser's defaults: Adam and RMSprop at 1e-3, SGD at nnU-Net's 1e-2.
    pub fn of_kind(kind: OptimKind) -> OptimConfig {
        match kind {
            OptimKind::Adam => OptimConfig::adam(1e-3, 0.9),
            OptimKind::Rmsprop => OptimConfig::rmsprop(1e-3),
            OptimKind::Sgd => OptimConfig::sgd(1e-2),
        }
    }
}

pub struct Optimizer {
    pub config: OptimConfig,
    params: Vec<Tensor>,
    first: Vec<Tensor>,
    second: Vec<Tensor>,
    pub steps: i64,
}

const EPS: f64 = 1e-8;

extern "C" {
    fn genseg_fused_adam(
        params: *const *mut C_tensor,
        grads: *const *mut C_tensor,
        first: *const *mut C_tensor,
        second: *const *mut C_tensor,
        n: i32,
        step: f64,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
    ) -> bool;
}

impl Optimizer {
    pub fn new(config: OptimConfig, params: Vec<Tensor>) -> Optimizer {
        let zeros = |ps: &[Tensor]| ps.iter().map(|p| p.zeros_like()).collect();
        Optimizer { config, first: zeros(&params), second: zeros(&params), params, steps: 0 }
    }

    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    /// This Adam step by libtorch's fused kernel (one pass over each weight instead of eight:
    /// the GAN's 9 M weights made the step memory-bound), if its weights are contiguous and of one
    /// kind; false, having changed nothing, otherwise.
    fn fused_adam(&mut self, grads: &[Tensor]) -> bool {
        let kind = self.params[0].kind();
        if !self.params.iter().all(|p| p.is_contiguous() && p.kind() == kind) {
            return false;
        }
        // The kernel walks weight, gradient and moments by one flat index: one layout for all.
        let grads: Vec<Tensor> = grads.iter().map(|g| g.to_kind(kind).contiguous()).collect();
        let handles = |ts: &[Tensor]| ts.iter().map(|t| t.as_ptr() as *mut C_tensor).collect::<Vec<_>>();
        let (p, g, m, v) = (handles(&self.params), handles(&grads), handles(&self.first), handles(&self.second));
        let c = &self.config;
        // SAFETY: four arrays of `n` live tensor handles; the kernel updates the tensors' data in
        // place and keeps no handle.
        unsafe {
            genseg_fused_adam(
                p.as_ptr(),
                g.as_ptr(),
                m.as_ptr(),
                v.as_ptr(),
                p.len() as i32,
                self.steps as f64,
                c.lr,
                c.beta1,
                c.beta2,
                c.weight_decay,
                EPS,
            )
        }
    }

    /// One update with the given gradients (same order as the parameters).
    pub fn step(&mut self, grads: &[Tensor]) {
        assert_eq!(grads.len(), self.params.len(), "one gradient per parameter");
        self.steps += 1;
        let c = self.config.clone();
        if !(c.kind == OptimKind::Adam && self.fused_adam(grads)) {
            self.elementwise_step(grads);
        }
    }

    /// The update by elementwise tensor ops: SGD, RMSprop, and Adam where the fused kernel
    /// cannot take the weights.
    fn elementwise_step(&mut self, grads: &[Tensor]) {
        let c = self.config.clone();
        let (bias1, bias2) = (1.0 - c.beta1.powi(self.steps as i32), 1.0 - c.beta2.powi(self.steps as i32));
        // In-place updates with as few passes over the weights as possible: the step is
        // memory-bound for large models.
        tch::no_grad(|| {
            for (i, p) in self.params.iter_mut().enumerate() {
                let g = if c.weight_decay != 0.0 { &grads[i] + &*p * c.weight_decay } else { grads[i].shallow_clone() };
                let (m, v) = (&mut self.first[i], &mut self.second[i]);
                if c.kind != OptimKind::Sgd {
                    let _ = v.lerp_(&g.square(), 1.0 - c.beta2);
                }
                match c.kind {
                    OptimKind::Sgd => {
                        // PyTorch's SGD: buf = momentum * buf + g; p -= lr * (g + momentum * buf).
                        let _ = m.g_mul_scalar_(c.beta1);
                        let _ = m.g_add_(&g);
                        let _ = p.g_add_(&((&g + &*m * c.beta1) * -c.lr));
                    }
                    OptimKind::Adam => {
                        let _ = m.lerp_(&g, 1.0 - c.beta1);
                        // p += m / d with d = -(sqrt(v / bias2) + eps) * bias1 / lr
                        let mut d = v.sqrt();
                        let _ = d.g_mul_scalar_(1.0 / bias2.sqrt());
                        let _ = d.g_add_scalar_(EPS);
                        let _ = d.g_mul_scalar_(-bias1 / c.lr);
                        let _ = p.addcdiv_(m, &d);
                    }
                    OptimKind::Rmsprop => {
                        let mut d = v.sqrt();
                        let _ = d.g_add_scalar_(EPS);
                        let _ = m.g_mul_scalar_(c.beta1);
                        let _ = m.addcdiv_(&g, &d);
                        let _ = p.g_add_(&(&*m * -c.lr));
                    }
                }
            }
        });
    }

    /// The learning rate of the next steps (a schedule sets it every iteration).
    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    /// Moments and step count as named tensors for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("steps".to_string(), Tensor::from_slice(&[self.steps]))];
        for (i, (m, v)) in self.first.iter().zip(&self.second).enumerate() {
            out.push((format!("m{i}"), m.shallow_clone()));
            out.push((format!("v{i}"), v.shallow_clone()));
        }
        out
    }

    pub fn load_state(&mut self, named: &[(String, Tensor)]) -> Result<()> {
        let get = |name: &str| {
            named
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .with_context(|| format!("optimizer state lacks {name}"))
        };
        self.steps = get("steps")?.int64_value(&[0]);
        tch::no_grad(|| -> Result<()> {
            for i in 0..self.params.len() {
                self.first[i].copy_(get(&format!("m{i}"))?);
                self.second[i].copy_(get(&format!("v{i}"))?);
            }
            Ok(())
        })
    }
}

/// Gradients of `loss` w.r.t. `params` without touching `.grad`; unused parameters get zeros.
pub fn gradients(loss: &Tensor, params: &[Tensor]) -> Vec<Tensor> {
    Tensor::run_backward(&[loss], params, false, false)
        .into_iter()
        .zip(params)
        .map(|(g, p)| if g.defined() { g } else { p.zeros_like() })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn poly_schedule_values() {
        let lr = |i| Schedule::Poly.lr(0.01, i, 1000);
        assert_eq!(lr(0), 0.01);
        assert!((lr(500) - 0.01 * 0.5f64.powf(0.9)).abs() < 1e-15);
        assert!((lr(900) - 0.01 * 0.1f64.powf(0.9)).abs() < 1e-15);
        assert!(lr(999) > 0.0 && lr(999) < 1e-4);
        assert_eq!(Schedule::Constant.lr(0.01, 999, 1000), 0.01);
    }

    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn both_optimisers_minimise_a_quadratic() {
        for cfg in [OptimConfig::adam(0.1, 0.9), OptimConfig::rmsprop(0.01), OptimConfig::sgd(0.01)] {
            let x = Tensor::from_slice(&[3.0f32, -2.0]).set_requires_grad(true);
            let mut opt = Optimizer::new(cfg.clone(), vec![x.shallow_clone()]);
            for _ in 0..300 {
                let loss = (&x - Tensor::from_slice(&[1.0f32, 1.0])).square().sum(Kind::Float);
                let g = gradients(&loss, &[x.shallow_clone()]);
                opt.step(&g);
            }
            let err = f64::try_from((&x - Tensor::from_slice(&[1.0f32, 1.0])).abs().max()).unwrap();
            assert!(err < 0.05, "{cfg:?}: {err}");
        }
    }

    /// Two steps by hand: buf1 = g1, p1 = -lr (g1 + mu g1); buf2 = mu buf1 + g2, p2 = p1 - lr (g2 + mu buf2).
    #[test]
    fn sgd_nesterov_matches_hand_computed_steps() {
        let x = Tensor::zeros([1], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let cfg = OptimConfig { weight_decay: 0.0, ..OptimConfig::sgd(0.1) };
        let mut opt = Optimizer::new(cfg, vec![x.shallow_clone()]);
        opt.step(&[Tensor::from_slice(&[1.0f32])]);
        let p1 = -0.1 * (1.0 + 0.99);
        assert!((f64::try_from(&x).unwrap() - p1).abs() < 1e-6);
        opt.step(&[Tensor::from_slice(&[2.0f32])]);
        let buf2 = 0.99 * 1.0 + 2.0;
        let p2 = p1 - 0.1 * (2.0 + 0.99 * buf2);
        assert!((f64::try_from(&x).unwrap() - p2).abs() < 1e-5);
    }

    /// The fused Adam kernel gives the elementwise update's weights and moments, with weight
    /// decay, over several steps.
    #[test]
    fn fused_adam_matches_the_elementwise_update() {
        tch::manual_seed(3);
        let start: Vec<Tensor> =
            [vec![5, 3, 2], vec![7]].iter().map(|s| Tensor::randn(s.as_slice(), (Kind::Float, Device::Cpu))).collect();
        let fresh = || start.iter().map(|t| t.copy().set_requires_grad(true)).collect::<Vec<_>>();
        let cfg = OptimConfig { weight_decay: 0.01, ..OptimConfig::adam(0.05, 0.5) };
        let mut fused = Optimizer::new(cfg.clone(), fresh());
        let mut elementwise = Optimizer::new(cfg, fresh());
        for _ in 0..5 {
            let grads: Vec<Tensor> = start.iter().map(|t| t.randn_like()).collect();
            fused.steps += 1;
            assert!(fused.fused_adam(&grads), "the fused kernel refused");
            elementwise.steps += 1;
            elementwise.elementwise_step(&grads);
        }
        let gap = |a: &[Tensor], b: &[Tensor]| {
            a.iter().zip(b).map(|(x, y)| f64::try_from((x - y).abs().max()).unwrap()).fold(0.0, f64::max)
        };
        assert!(gap(&fused.params, &elementwise.params) < 1e-6);
        assert!(gap(&fused.first, &elementwise.first) < 1e-6);
        assert!(gap(&fused.second, &elementwise.second) < 1e-6);
        assert!(gap(&fused.params, &start) > 0.1, "the weights moved");
    }

    #[test]
    fn adam_first_step_moves_each_weight_by_lr() {
        let x = Tensor::zeros([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut opt = Optimizer::new(OptimConfig::adam(0.01, 0.5), vec![x.shallow_clone()]);
        opt.step(&[Tensor::from_slice(&[2.0f32, -0.5, 7.0])]);
        let expected = Tensor::from_slice(&[-0.01f32, 0.01, -0.01]);
        assert!(f64::try_from((&x - expected).abs().max()).unwrap() < 1e-6);
    }
}
