//! Networks: the segmenters (U-Net, DeepLabV3+ over a ResNet encoder, Swin-UNet; one interface
//! in [`segnet`]), the Pix2Pix generator with searchable mixed ops, and the
//! discriminators (PatchGAN, OASIS's segmenting U-Net). Each model is a plain struct over a `tch::nn::Path`, built for 2-D or
//! 3-D from the layers in [`spatial`].
pub mod deeplab;
pub mod discriminator;
pub mod generator;
pub mod mixed_op;
pub mod resnet;
pub mod segnet;
pub mod spatial;
pub mod swin_unet;
pub mod unet;

/// Number of scalars in a set of tensors (parameter counts).
pub fn count(tensors: &[tch::Tensor]) -> i64 {
    tensors.iter().map(|t| t.numel() as i64).sum()
}

/// Pix2Pix's initialisation: conv weights N(0, 0.02).
pub(crate) const GAN_INIT: tch::nn::Init = tch::nn::Init::Randn { mean: 0.0, stdev: 0.02 };

/// LeakyReLU with Pix2Pix's slope 0.2 (tch's `leaky_relu` has a fixed 0.01 slope).
pub(crate) fn leaky_relu(x: &tch::Tensor) -> tch::Tensor {
    x.maximum(&(x * 0.2))
}
