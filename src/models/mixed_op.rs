//! DARTS-style mixed up-sampling: softmax(alpha)-weighted transposed convolutions with
//! (kernel, stride, padding) = (4,2,1), (6,2,2), (8,2,3).
//!
//! All three double the size and are centre-aligned, so their weighted sum equals ONE 8x8,
//! stride-2, padding-3 transposed conv whose kernel is the weighted sum of the zero-padded,
//! centred candidate kernels. The fused form costs one 8x8 conv instead of 4x4 + 6x6 + 8x8
//! (64 vs 116 taps), and its gradient w.r.t. alpha flows through the kernel mixture.
use tch::nn;
use tch::Tensor;

/// (kernel, padding) of each candidate; all use stride 2.
pub const CANDIDATES: [(i64, i64); 3] = [(4, 1), (6, 2), (8, 3)];

#[derive(Debug)]
pub struct MixedUpConv {
    pub kernels: Vec<Tensor>,
    pub bias: Option<Tensor>,
    pub fused: bool,
}

impl MixedUpConv {
    pub fn new(p: nn::Path, cin: i64, cout: i64, bias: bool, fused: bool) -> MixedUpConv {
        let kernels = CANDIDATES
            .iter()
            .map(|&(k, _)| p.var(&format!("k{k}"), &[cin, cout, k, k], super::GAN_INIT))
            .collect();
        let bias = bias.then(|| p.zeros("bias", &[cout]));
        MixedUpConv { kernels, bias, fused }
    }

    /// `weights` is softmax(alpha row), shape `[3]`.
    pub fn forward(&self, x: &Tensor, weights: &Tensor) -> Tensor {
        if self.fused {
            self.forward_fused(x, weights)
        } else {
            self.forward_separate(x, weights)
        }
    }

    pub fn forward_fused(&self, x: &Tensor, weights: &Tensor) -> Tensor {
        let kernel = self
            .kernels
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let pad = (8 - CANDIDATES[i].0) / 2;
                k.constant_pad_nd([pad, pad, pad, pad]) * weights.get(i as i64)
            })
            .reduce(|a, b| a + b)
            .unwrap();
        x.conv_transpose2d(&kernel, self.bias.as_ref(), [2, 2], [3, 3], [0, 0], 1, [1, 1])
    }

    /// The reference's form: three transposed convs, outputs mixed.
    pub fn forward_separate(&self, x: &Tensor, weights: &Tensor) -> Tensor {
        let mixed = self
            .kernels
            .iter()
            .zip(CANDIDATES)
            .enumerate()
            .map(|(i, (k, (_, pad)))| {
                x.conv_transpose2d(k, None::<&Tensor>, [2, 2], [pad, pad], [0, 0], 1, [1, 1]) * weights.get(i as i64)
            })
            .reduce(|a, b| a + b)
            .unwrap();
        match &self.bias {
            Some(b) => mixed + b.view([1, -1, 1, 1]),
            None => mixed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn setup(kind: Kind) -> (nn::VarStore, MixedUpConv, Tensor, Tensor) {
        tch::manual_seed(0);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let op = MixedUpConv::new(vs.root() / "op", 3, 2, true, true);
        vs.set_kind(kind);
        let x = Tensor::randn([2, 3, 5, 5], (kind, Device::Cpu));
        let alpha = Tensor::from_slice(&[0.3, -0.5, 0.8]).to_kind(kind).set_requires_grad(true);
        (vs, op, x, alpha)
    }

    #[test]
    fn fused_equals_three_conv_mixture() {
        let (_vs, op, x, alpha) = setup(Kind::Float);
        let w = alpha.softmax(0, Kind::Float);
        let fused = op.forward_fused(&x, &w);
        let separate = op.forward_separate(&x, &w);
        assert_eq!(fused.size(), vec![2, 2, 10, 10]);
        let err = f64::try_from((fused - separate).abs().max()).unwrap();
        assert!(err < 1e-5, "max error {err}");
    }

    #[test]
    fn alpha_gradient_matches_central_differences() {
        let (_vs, op, x, alpha) = setup(Kind::Double);
        let probe = Tensor::randn([2, 2, 10, 10], (Kind::Double, Device::Cpu));
        let loss = |a: &Tensor| (op.forward_fused(&x, &a.softmax(0, Kind::Double)) * &probe).sum(Kind::Double);
        let grad = Tensor::run_backward(&[loss(&alpha)], &[&alpha], false, false).pop().unwrap();
        let h = 1e-6;
        for i in 0..3 {
            let e = Tensor::zeros([3], (Kind::Double, Device::Cpu)).index_fill(0, &Tensor::from_slice(&[i]), h);
            let fd = tch::no_grad(|| (f64::try_from(loss(&(&alpha + &e))).unwrap() - f64::try_from(loss(&(&alpha - &e))).unwrap()) / (2.0 * h));
            let g = grad.double_value(&[i]);
            assert!((g - fd).abs() <= 1e-6 * (1.0 + fd.abs()), "alpha[{i}]: autograd {g} vs finite difference {fd}");
        }
    }
}
