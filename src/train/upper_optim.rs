//! The optimisers of what GenSeg's hypergradient moves.
use super::config::{TrainConfig, ARCH_BETA1};
use crate::gan::Gan;
use crate::learn::optim::{OptimConfig, Optimizer};
use tch::Tensor;

/// Optimisers of what the hypergradient moves (`--upper`): alpha, the generator's decoder, or both.
pub struct UpperOptimizers {
    alpha: Option<Optimizer>,
    generator: Option<Optimizer>,
}

impl UpperOptimizers {
    pub(super) fn new(cfg: &TrainConfig, gan: &Gan) -> UpperOptimizers {
        let adam = |lr| OptimConfig::adam(lr, ARCH_BETA1);
        UpperOptimizers {
            alpha: cfg
                .upper
                .moves_alpha()
                .then(|| Optimizer::new(adam(cfg.arch_lr), vec![gan.g.alpha.shallow_clone()])),
            generator: cfg
                .upper
                .moves_generator()
                .then(|| Optimizer::new(adam(cfg.upper_generator_lr), gan.decoder_weights())),
        }
    }

    pub(super) fn optimizers(&mut self) -> impl Iterator<Item = &mut Optimizer> {
        self.alpha.iter_mut().chain(self.generator.iter_mut())
    }

    /// The variables, in the order [`UpperOptimizers::step`] takes their gradients.
    pub(super) fn targets(&self) -> Vec<Tensor> {
        self.alpha.iter().chain(&self.generator).flat_map(|o| o.params().iter().map(Tensor::shallow_clone)).collect()
    }

    pub(super) fn step(&mut self, mut grads: Vec<Tensor>) {
        for opt in self.optimizers() {
            let rest = grads.split_off(opt.params().len());
            opt.step(&grads);
            grads = rest;
        }
    }

    /// Checkpoint files: alpha's optimiser keeps its old name.
    pub(super) fn files(&self) -> impl Iterator<Item = (&Optimizer, &'static str)> {
        let alpha = self.alpha.iter().map(|o| (o, "arch_optim.safetensors"));
        alpha.chain(self.generator.iter().map(|o| (o, "upper_generator_optim.safetensors")))
    }
}
