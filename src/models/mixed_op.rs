//! DARTS-style mixed ops: softmax(alpha)-weighted stride-2 convolutions with
//! (kernel, padding) = (4,1), (6,2), (8,3): transposed (the generator's decoder, doubling the
//! size) or plain (its encoder, halving it; the reference's 3-D variant searches those too).
//!
//! The three candidates of one direction map to the same output size and are centre-aligned, so
//! their weighted sum equals ONE 8-wide, stride-2, padding-3 convolution whose kernel is the
//! weighted sum of the zero-padded, centred candidate kernels. The fused form costs one 8^d
//! kernel instead of 4^d + 6^d + 8^d taps, and its gradient w.r.t. alpha flows through the
//! kernel mixture. The same code serves 2-D and 3-D (`dims`).
//!
//! On the CPU the 3-D ops compute in float64: libtorch 2.11's oneDNN 3-D convolution with an
//! 8-wide kernel returns NaN gradients at random for some shapes (`python3
//! scripts/onednn_nan.py`), and oneDNN takes only float32 and bf16, so float64 runs libtorch's
//! generic kernels, which are exact (libtorch's CPU autocast leaves float64 alone, so under
//! `--precision bf16` too). The rest of the process (the segmenter above all) keeps oneDNN.
use super::spatial::convolve;
use tch::nn;
use tch::{Device, Kind, Tensor};

/// (kernel, padding) of each candidate; all use stride 2.
pub const CANDIDATES: [(i64, i64); 3] = [(4, 1), (6, 2), (8, 3)];

#[derive(Debug)]
pub struct MixedConv {
    pub kernels: Vec<Tensor>,
    pub bias: Option<Tensor>,
    pub fused: bool,
    pub transposed: bool,
    dims: usize,
}

impl MixedConv {
    /// Decoder op: transposed convs, kernels `[cin, cout, k...]`.
    pub fn up(p: nn::Path, dims: usize, cin: i64, cout: i64, bias: bool, fused: bool) -> MixedConv {
        Self::new(p, dims, [cin, cout], cout, bias, fused, true)
    }

    /// Encoder op: plain convs, kernels `[cout, cin, k...]`.
    pub fn down(p: nn::Path, dims: usize, cin: i64, cout: i64, bias: bool, fused: bool) -> MixedConv {
        Self::new(p, dims, [cout, cin], cout, bias, fused, false)
    }

    fn new(
        p: nn::Path,
        dims: usize,
        lead: [i64; 2],
        cout: i64,
        bias: bool,
        fused: bool,
        transposed: bool,
    ) -> MixedConv {
        let kernels = CANDIDATES
            .iter()
            .map(|&(k, _)| {
                let mut shape = lead.to_vec();
                shape.extend(std::iter::repeat_n(k, dims));
                p.var(&format!("k{k}"), &shape, super::GAN_INIT)
            })
            .collect();
        let bias = bias.then(|| p.zeros("bias", &[cout]));
        MixedConv { kernels, bias, fused, transposed, dims }
    }

    /// `weights` is softmax(alpha row), shape `[3]`. Returns `x`'s kind.
    pub fn forward(&self, x: &Tensor, weights: &Tensor) -> Tensor {
        if self.dims == 3 && x.device() == Device::Cpu {
            let wide = |t: &Tensor| t.to_kind(Kind::Double);
            return self.forward_as(&wide(x), &wide(weights), wide).to_kind(x.kind());
        }
        self.forward_as(x, weights, Tensor::shallow_clone)
    }

    /// The chosen form with the kernels and bias passed through `kind` (a cast, or none).
    fn forward_as(&self, x: &Tensor, weights: &Tensor, kind: impl Fn(&Tensor) -> Tensor) -> Tensor {
        let kernels: Vec<Tensor> = self.kernels.iter().map(&kind).collect();
        let bias = self.bias.as_ref().map(kind);
        if self.fused {
            self.fused(x, weights, &kernels, bias.as_ref())
        } else {
            self.separate(x, weights, &kernels, bias.as_ref())
        }
    }

    pub fn forward_fused(&self, x: &Tensor, weights: &Tensor) -> Tensor {
        self.fused(x, weights, &self.kernels, self.bias.as_ref())
    }

    /// The reference's form: three convs, outputs mixed.
    pub fn forward_separate(&self, x: &Tensor, weights: &Tensor) -> Tensor {
        self.separate(x, weights, &self.kernels, self.bias.as_ref())
    }

    fn fused(&self, x: &Tensor, weights: &Tensor, kernels: &[Tensor], bias: Option<&Tensor>) -> Tensor {
        let kernel = kernels
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let pad = (8 - CANDIDATES[i].0) / 2;
                k.constant_pad_nd(vec![pad; 2 * self.dims]) * weights.get(i as i64)
            })
            .reduce(|a, b| a + b)
            .unwrap();
        convolve(x, &kernel, bias, self.dims, 2, 3, self.transposed)
    }

    fn separate(&self, x: &Tensor, weights: &Tensor, kernels: &[Tensor], bias: Option<&Tensor>) -> Tensor {
        let mixed = kernels
            .iter()
            .zip(CANDIDATES)
            .enumerate()
            .map(|(i, (k, (_, pad)))| convolve(x, k, None, self.dims, 2, pad, self.transposed) * weights.get(i as i64))
            .reduce(|a, b| a + b)
            .unwrap();
        match bias {
            Some(b) => {
                let mut shape = vec![1, -1];
                shape.extend(std::iter::repeat_n(1, self.dims));
                mixed + b.view(shape.as_slice())
            }
            None => mixed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn setup(kind: Kind) -> (nn::VarStore, MixedConv, Tensor, Tensor) {
        tch::manual_seed(0);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let op = MixedConv::up(vs.root() / "op", 2, 3, 2, true, true);
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

    /// The fusion holds for the encoder's strided convs and in 3-D: both forms agree and halve
    /// (or double) every side of a non-cubic volume.
    #[test]
    fn fused_equals_three_conv_mixture_down_and_in_3d() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let w = Tensor::from_slice(&[0.2f32, 0.5, 0.3]);
        let x = Tensor::randn([2, 3, 8, 6, 4], (Kind::Float, Device::Cpu));
        for (op, out) in [
            (MixedConv::down(vs.root() / "down", 3, 3, 2, true, true), vec![2, 2, 4, 3, 2]),
            (MixedConv::up(vs.root() / "up", 3, 3, 2, true, true), vec![2, 2, 16, 12, 8]),
        ] {
            let fused = op.forward_fused(&x, &w);
            assert_eq!(fused.size(), out);
            let err = f64::try_from((fused - op.forward_separate(&x, &w)).abs().max()).unwrap();
            assert!(err < 1e-5, "max error {err}");
        }
    }

    /// On the CPU a 3-D op computes in float64 (around oneDNN's NaN gradients) and returns the
    /// input's kind, equal to the float32 computation, with gradients for alpha and the kernels;
    /// a bf16 autocast region leaves it alone.
    #[test]
    fn three_d_ops_on_the_cpu_compute_in_float64_and_return_the_input_kind() {
        tch::manual_seed(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let alpha = Tensor::from_slice(&[0.1f32, -0.4, 0.6]).set_requires_grad(true);
        let x = Tensor::randn([2, 3, 8, 6, 4], (Kind::Float, Device::Cpu));
        for fused in [true, false] {
            let op = MixedConv::down(vs.root() / format!("down{fused}"), 3, 3, 2, true, fused);
            let w = alpha.softmax(0, Kind::Float);
            let y = op.forward(&x, &w);
            assert_eq!(y.kind(), Kind::Float);
            let float32 = if fused { op.forward_fused(&x, &w) } else { op.forward_separate(&x, &w) };
            let err = f64::try_from((&y - float32).abs().max()).unwrap();
            assert!(err < 1e-5, "max error {err}");
            let region = crate::precision::Precision::Bf16.autocast(Device::Cpu, || op.forward(&x, &w));
            let err = f64::try_from((&y - region).abs().max()).unwrap();
            assert!(err < 1e-6, "autocast changed the op: max difference {err}");
            let grads = Tensor::run_backward(&[y.sum(Kind::Float)], &[&alpha, &op.kernels[2]], false, false);
            assert!(grads.iter().all(|g| g.kind() == Kind::Float && g.isfinite().all().int64_value(&[]) == 1));
        }
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
            let fd = tch::no_grad(|| {
                (f64::try_from(loss(&(&alpha + &e))).unwrap() - f64::try_from(loss(&(&alpha - &e))).unwrap())
                    / (2.0 * h)
            });
            let g = grad.double_value(&[i]);
            assert!((g - fd).abs() <= 1e-6 * (1.0 + fd.abs()), "alpha[{i}]: autograd {g} vs finite difference {fd}");
        }
    }
}
