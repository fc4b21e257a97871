//! The GAN's discriminators: Pix2Pix's 70x70 PatchGAN (3 strided layers) on concat(mask, image),
//! with `dims` 3 the same layers as 4x4x4 convs judging 3-D patches (the reference's
//! PatchGAN3D); and OASIS's segmenting discriminator (Schonfeld et al., ICLR 2021), a U-Net that
//! sees the image alone and labels each pixel with one of the mask's classes or "fake".
use super::spatial::{batch_norm, Conv, ConvSpec};
use super::unet::{UNet, UNetConfig, Upsampling};
use super::{leaky_relu, GAN_INIT};
use anyhow::{Context, Result};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Which network judges the GAN's images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum DiscriminatorKind {
    /// Pix2Pix's PatchGAN on (mask, image): real or fake per patch.
    #[default]
    Patch,
    /// OASIS: segments the image alone into background, the labels and "fake", per pixel. The
    /// generator wins only when its image is segmented as its mask by a network that learned
    /// lesions from the real images: the alignment a segmenter trained on the pairs needs.
    Segmenting,
}

#[derive(Debug)]
pub enum Discriminator {
    Patch(PatchGan),
    Segmenting(Box<UNet>),
}

impl Discriminator {
    /// `labels` mask channels beside `channels` image channels, `ndf` channels in the first layer.
    pub fn new(
        p: &nn::Path,
        kind: DiscriminatorKind,
        shape: &[i64],
        channels: i64,
        labels: i64,
        ndf: i64,
    ) -> Result<Discriminator> {
        Ok(match kind {
            DiscriminatorKind::Patch => Discriminator::Patch(PatchGan::new(p, shape.len(), labels + channels, ndf)),
            DiscriminatorKind::Segmenting => {
                Discriminator::Segmenting(Box::new(segmenting(p, shape, channels, labels, ndf)?))
            }
        })
    }

    /// Patch logits `[B, 1, ...]` for (mask, image), or the segmenting discriminator's class
    /// logits `[B, 2 + labels, spatial...]` for the image (class 0 fake, 1 background, 2.. the labels).
    pub fn logits(&self, mask: &Tensor, image: &Tensor, train: bool) -> Tensor {
        match self {
            Discriminator::Patch(d) => d.forward_t(mask, image, train),
            Discriminator::Segmenting(d) => ModuleT::forward_t(d.as_ref(), image, train),
        }
    }
}

/// A U-Net of width `ndf` and four levels from `channels` image channels to fake + background +
/// `labels` classes (the generator already needs every side divisible by 8).
fn segmenting(p: &nn::Path, shape: &[i64], channels: i64, labels: i64, ndf: i64) -> Result<UNet> {
    let config = UNetConfig {
        in_channels: channels,
        out_channels: 2 + labels,
        width: ndf,
        depth: 4,
        upsampling: Upsampling::Transposed,
        dims: shape.len(),
        deep_supervision: false,
    };
    config.validate(shape).context("--discriminator segmenting")?;
    Ok(UNet::new(p, &config))
}

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

    /// The segmenting discriminator labels every pixel (fake, background, each label) from the
    /// image alone, in 2-D and 3-D; a side it cannot halve three times is refused naming the flag.
    #[test]
    fn segmenting_discriminator_labels_every_pixel_of_the_image() {
        let vs = nn::VarStore::new(Device::Cpu);
        let d = Discriminator::new(&vs.root(), DiscriminatorKind::Segmenting, &[32, 32], 3, 2, 4).unwrap();
        let mask = Tensor::zeros([2, 2, 32, 32], (Kind::Float, Device::Cpu));
        let image = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        assert_eq!(d.logits(&mask, &image, false).size(), vec![2, 4, 32, 32]);
        let other_mask = Tensor::ones([2, 2, 32, 32], (Kind::Float, Device::Cpu));
        let same = (d.logits(&mask, &image, false) - d.logits(&other_mask, &image, false)).abs().max();
        assert_eq!(f64::try_from(same).unwrap(), 0.0, "the mask is the target, not an input");
        let d3 = Discriminator::new(&(vs.root() / "v"), DiscriminatorKind::Segmenting, &[8, 16, 8], 1, 1, 2).unwrap();
        let volume = Tensor::rand([1, 1, 8, 16, 8], (Kind::Float, Device::Cpu));
        assert_eq!(d3.logits(&volume, &volume, false).size(), vec![1, 3, 8, 16, 8]);
        let err = Discriminator::new(&(vs.root() / "odd"), DiscriminatorKind::Segmenting, &[36, 32], 3, 1, 4)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("--discriminator"), "{err}");
    }
}
