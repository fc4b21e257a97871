//! 70x70 PatchGAN (Pix2Pix "basic", 3 strided layers) on concat(mask, image).
use super::{gan_batch_norm, leaky_relu, GAN_INIT};
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Debug)]
pub struct PatchGan {
    convs: Vec<(nn::Conv2D, Option<nn::BatchNorm>)>,
}

impl PatchGan {
    pub fn new(p: &nn::Path, in_channels: i64, ndf: i64) -> PatchGan {
        let conv = |name: &str, cin, cout, stride, bias| {
            let cfg = nn::ConvConfig { stride, padding: 1, bias, ws_init: GAN_INIT, ..Default::default() };
            nn::conv2d(p / name, cin, cout, 4, cfg)
        };
        let convs = vec![
            (conv("c0", in_channels, ndf, 2, true), None),
            (conv("c1", ndf, 2 * ndf, 2, false), Some(gan_batch_norm(p / "b1", 2 * ndf))),
            (conv("c2", 2 * ndf, 4 * ndf, 2, false), Some(gan_batch_norm(p / "b2", 4 * ndf))),
            (conv("c3", 4 * ndf, 8 * ndf, 1, false), Some(gan_batch_norm(p / "b3", 8 * ndf))),
            (conv("c4", 8 * ndf, 1, 1, true), None),
        ];
        PatchGan { convs }
    }

    /// Patch logits for a (mask, image) pair.
    pub fn forward_t(&self, mask: &Tensor, image: &Tensor, train: bool) -> Tensor {
        ModuleT::forward_t(self, &Tensor::cat(&[mask, image], 1), train)
    }
}

impl ModuleT for PatchGan {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let last = self.convs.len() - 1;
        self.convs.iter().enumerate().fold(x.shallow_clone(), |h, (i, (conv, bn))| {
            let mut h = h.apply(conv);
            if let Some(bn) = bn {
                h = h.apply_t(bn, train);
            }
            if i < last {
                h = leaky_relu(&h);
            }
            h
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn reference_parameter_count_and_patch_map() {
        let vs = nn::VarStore::new(Device::Cpu);
        let d = PatchGan::new(&vs.root(), 4, 64);
        assert_eq!(crate::models::count(&vs.trainable_variables()), 2_766_657);
        let y = ModuleT::forward_t(&d, &Tensor::rand([1, 4, 256, 256], (Kind::Float, Device::Cpu)), false);
        assert_eq!(y.size(), vec![1, 1, 30, 30]);
    }
}
