//! 70x70 PatchGAN (Pix2Pix "basic", 3 strided layers) on concat(mask, image); with `dims` 3
//! the same layers are 4x4x4 convs judging 3-D patches (the reference's PatchGAN3D).
use super::spatial::{batch_norm, Conv, ConvSpec};
use super::{leaky_relu, GAN_INIT};
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Debug)]
pub struct PatchGan {
    convs: Vec<(Conv, Option<nn::BatchNorm>)>,
}

impl PatchGan {
    pub fn new(p: &nn::Path, dims: usize, in_channels: i64, ndf: i64) -> PatchGan {
        let conv = |name: &str, cin, cout, stride, bias| {
            let spec = ConvSpec { bias, ..ConvSpec::new(4, stride, 1) }.init(GAN_INIT);
            Conv::new(p / name, dims, cin, cout, spec)
        };
        let bn = |name: &str, c| Some(batch_norm(p / name, dims, c, true));
        let convs = vec![
            (conv("c0", in_channels, ndf, 2, true), None),
            (conv("c1", ndf, 2 * ndf, 2, false), bn("b1", 2 * ndf)),
            (conv("c2", 2 * ndf, 4 * ndf, 2, false), bn("b2", 4 * ndf)),
            (conv("c3", 4 * ndf, 8 * ndf, 1, false), bn("b3", 8 * ndf)),
            (conv("c4", 8 * ndf, 1, 1, true), None),
        ];
        PatchGan { convs }
    }

    /// Patch logits for a (mask, image) pair.
    pub fn forward_t(&self, mask: &Tensor, image: &Tensor, train: bool) -> Tensor {
        ModuleT::forward_t(self, &Tensor::cat(&[mask, image], 1), train)
    }

    /// Every layer's activation for a (mask, image) pair, the patch logits last (pix2pixHD's
    /// feature matching compares the others).
    pub fn features(&self, mask: &Tensor, image: &Tensor, train: bool) -> Vec<Tensor> {
        self.layers(&Tensor::cat(&[mask, image], 1), train)
    }

    fn layers(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let last = self.convs.len() - 1;
        let mut h = x.shallow_clone();
        let mut out = Vec::with_capacity(self.convs.len());
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            h = conv.forward(&h);
            if let Some(bn) = bn {
                h = h.apply_t(bn, train);
            }
            if i < last {
                h = leaky_relu(&h);
            }
            out.push(h.shallow_clone());
        }
        out
    }
}

impl ModuleT for PatchGan {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.layers(x, train).pop().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn reference_parameter_count_and_patch_map() {
        let vs = nn::VarStore::new(Device::Cpu);
        let d = PatchGan::new(&vs.root(), 2, 4, 64);
        assert_eq!(crate::models::count(&vs.trainable_variables()), 2_766_657);
        let y = ModuleT::forward_t(&d, &Tensor::rand([1, 4, 256, 256], (Kind::Float, Device::Cpu)), false);
        assert_eq!(y.size(), vec![1, 1, 30, 30]);
    }

    /// The reference's PatchGAN3D (mask + image, ndf 64) has 11,052,865 parameters.
    #[test]
    fn three_d_reference_parameter_count() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _d = PatchGan::new(&vs.root(), 3, 2, 64);
        assert_eq!(crate::models::count(&vs.trainable_variables()), 11_052_865);
    }

    #[test]
    fn three_d_patch_map() {
        let vs = nn::VarStore::new(Device::Cpu);
        let d = PatchGan::new(&vs.root(), 3, 3, 4);
        // c0..c2: 4^3 x (3x4 + 4x8 + 8x16) + bias 4; c3: 4^3 x 16x32; c4: 4^3 x 32 + 1; BN 2x(8+16+32)
        let expected = 64 * (3 * 4 + 4 * 8 + 8 * 16 + 16 * 32 + 32) + 4 + 1 + 2 * (8 + 16 + 32);
        assert_eq!(crate::models::count(&vs.trainable_variables()), expected);
        let y = ModuleT::forward_t(&d, &Tensor::rand([1, 3, 32, 48, 32], (Kind::Float, Device::Cpu)), false);
        assert_eq!(y.size(), vec![1, 1, 2, 4, 2]);
    }
}
