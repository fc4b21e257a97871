//! Mixed precision (`--precision bf16`): forward passes and losses run inside a bf16 autocast
//! region, as PyTorch's `torch.autocast(device, dtype=torch.bfloat16)` does; weights, gradients
//! and optimiser state stay float32, and backward passes run outside the region. bfloat16 has
//! float32's exponent range, so no loss scaling is needed (float16 would need it; not offered).
//! The region is libtorch's own autocast (its per-op cast lists), switched by csrc/autocast.cpp
//! because tch 0.24 only offers the CUDA float16 one.
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    /// bf16 autocast around forward passes, float32 weights (fast where the hardware has bf16
    /// arithmetic: CUDA, CPUs with AVX-512 BF16 or AMX)
    Bf16,
}

extern "C" {
    fn genseg_autocast_enter(cuda: bool, was_enabled: *mut bool, was_dtype: *mut i32) -> bool;
    fn genseg_autocast_exit(cuda: bool, was_enabled: bool, was_dtype: i32);
}

/// An open autocast region; dropping it restores the state before it (also on unwinding).
struct Region {
    cuda: bool,
    was_enabled: bool,
    was_dtype: i32,
}

impl Region {
    fn enter(device: Device) -> Option<Region> {
        let cuda = device.is_cuda();
        let (mut was_enabled, mut was_dtype) = (false, 0);
        // SAFETY: the shim only writes through the two pointers, which outlive the call.
        let entered = unsafe { genseg_autocast_enter(cuda, &mut was_enabled, &mut was_dtype) };
        entered.then_some(Region { cuda, was_enabled, was_dtype })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: restores exactly the state `enter` saved, on the same thread.
        unsafe { genseg_autocast_exit(self.cuda, self.was_enabled, self.was_dtype) }
    }
}

impl Precision {
    /// Runs `f` (forward passes and losses; take gradients after it returns) in this precision
    /// on `device`'s kind of device.
    pub fn autocast<T>(self, device: Device, f: impl FnOnce() -> T) -> T {
        match self {
            Precision::Fp32 => f(),
            Precision::Bf16 => {
                let region = Region::enter(device);
                if region.is_none() {
                    tracing::warn!("libtorch refused bf16 autocast on {device:?}; this step runs in float32");
                }
                let out = f();
                drop(region);
                out
            }
        }
    }

    /// What a benchmark line adds to its name: nothing for float32.
    pub fn label(self) -> &'static str {
        match self {
            Precision::Fp32 => "",
            Precision::Bf16 => " bf16",
        }
    }

    /// Whether `device` runs a convolution in bf16 inside a region: checked before a run starts,
    /// so an unsupported device is an error naming the flag, not a silent float32 run.
    pub fn check(self, device: Device) -> anyhow::Result<()> {
        if self == Precision::Fp32 {
            return Ok(());
        }
        let kind = tch::no_grad(|| {
            let x = Tensor::ones([1, 1, 4, 4], (Kind::Float, device));
            let w = Tensor::ones([1, 1, 3, 3], (Kind::Float, device));
            self.autocast(device, || x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1).kind())
        });
        match kind {
            Kind::BFloat16 => Ok(()),
            other => anyhow::bail!(
                "--precision bf16: libtorch ran a convolution on {device:?} in {other:?}, not bfloat16; use --precision fp32"
            ),
        }
    }
}

/// `t` in float32 if autocast left it in a reduced precision (bf16, f16), else unchanged (float32
/// and the tests' float64 stay as they are): losses and reductions are taken in full precision.
pub fn full_precision(t: &Tensor) -> Tensor {
    match t.kind() {
        Kind::BFloat16 | Kind::Half => t.to_kind(Kind::Float),
        _ => t.shallow_clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(x: &Tensor, w: &Tensor) -> Tensor {
        x.conv2d(w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1)
    }

    #[test]
    fn bf16_region_runs_convolutions_in_bf16_and_restores_float32() {
        let device = Device::Cpu;
        let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, device));
        let w = Tensor::randn([4, 3, 3, 3], (Kind::Float, device)).set_requires_grad(true);
        let (inside, nested_then_inside) = Precision::Bf16.autocast(device, || {
            let inside = conv(&x, &w);
            // A nested region must not end the outer one when it closes.
            let _ = Precision::Bf16.autocast(device, || conv(&x, &w));
            (inside, conv(&x, &w))
        });
        assert_eq!(inside.kind(), Kind::BFloat16);
        assert_eq!(nested_then_inside.kind(), Kind::BFloat16);
        assert_eq!(conv(&x, &w).kind(), Kind::Float, "the region must close");
        assert_eq!(Precision::Fp32.autocast(device, || conv(&x, &w)).kind(), Kind::Float);
        // The weight stays float32 and so does its gradient (the backward pass runs outside).
        let loss = full_precision(&inside).square().mean(Kind::Float);
        let g = Tensor::run_backward(&[loss], &[&w], false, false).remove(0);
        assert_eq!(g.kind(), Kind::Float);
        // The same numbers to bf16's precision (8 bits of mantissa: relative error about 2^-8).
        let exact = conv(&x, &w);
        let err = f64::try_from((full_precision(&inside) - &exact).abs().max()).unwrap();
        let scale = f64::try_from(exact.abs().max()).unwrap();
        assert!(err < 0.03 * scale, "bf16 convolution off by {err} at scale {scale}");
        assert!(Precision::Bf16.check(device).is_ok());
    }

    #[test]
    fn full_precision_lifts_only_reduced_floats() {
        let t = Tensor::ones([2], (Kind::BFloat16, Device::Cpu));
        assert_eq!(full_precision(&t).kind(), Kind::Float);
        assert_eq!(full_precision(&t.to_kind(Kind::Double)).kind(), Kind::Double);
        assert_eq!(full_precision(&t.to_kind(Kind::Int64)).kind(), Kind::Int64);
    }
}
