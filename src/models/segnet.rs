//! The segmentation networks behind one interface (`--model`): what the training loop, the
//! hypergradient, evaluation, prediction and the bench call. Each network stays a plain struct
//! in its own file; this enum only dispatches.
use super::deeplab::{DeepLabConfig, DeepLabV3Plus};
use super::spatial::cpu_channels_last;
use super::swin_unet::{SwinUNet, SwinUNetConfig};
use super::unet::{UNet, UNetConfig};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::{Device, Tensor};

/// Which segmentation network a run trains.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// The reference's U-Net (2-D and 3-D).
    #[default]
    Unet,
    /// DeepLabV3+ with a ResNet encoder (2-D).
    Deeplabv3plus,
    /// Swin-UNet (2-D, sides the window grid divides).
    #[serde(rename = "swin-unet")]
    #[cfg_attr(feature = "cli", value(name = "swin-unet"))]
    SwinUnet,
}

/// A network's configuration; model.json keeps it under the network's name (`"unet": {...}`,
/// as files written before other networks existed, `"deeplabv3plus"` or `"swin-unet"`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum NetConfig {
    Unet(UNetConfig),
    Deeplabv3plus(DeepLabConfig),
    #[serde(rename = "swin-unet")]
    SwinUnet(SwinUNetConfig),
}

impl NetConfig {
    /// Refuses input shapes the network cannot take, naming the fix.
    pub fn validate(&self, shape: &[i64]) -> Result<()> {
        match self {
            NetConfig::Unet(c) => c.validate(shape),
            NetConfig::Deeplabv3plus(c) => c.validate(shape),
            NetConfig::SwinUnet(c) => c.validate(shape),
        }
    }

    pub fn in_channels(&self) -> i64 {
        match self {
            NetConfig::Unet(c) => c.in_channels,
            NetConfig::Deeplabv3plus(c) => c.in_channels,
            NetConfig::SwinUnet(c) => c.in_channels,
        }
    }

    /// BatchNorm after global pooling (DeepLab's image-pooling branch) sees one value per
    /// channel and case, so training needs at least two cases per forward pass.
    pub fn min_train_batch(&self) -> i64 {
        match self {
            NetConfig::Unet(_) | NetConfig::SwinUnet(_) => 1,
            NetConfig::Deeplabv3plus(_) => 2,
        }
    }
}

/// Copies `tensors` (name, value; e.g. a converted torchvision ResNet, scripts/convert_resnet.py)
/// into the variables of `vs` with the same names: `--init`. Every tensor must name a variable of
/// the same shape; variables it does not name keep their values. Returns how many were copied.
pub fn init_from(vs: &nn::VarStore, tensors: &[(String, Tensor)], file: &std::path::Path) -> Result<usize> {
    let vars = vs.variables();
    for (name, t) in tensors {
        let Some(var) = vars.get(name) else {
            bail!(
                "{}: '{name}' is not a variable of this model (a DeepLabV3+ encoder's names start with 'encoder.'; \
                 convert torchvision weights with scripts/convert_resnet.py and train the same --model/--backbone)",
                file.display()
            );
        };
        if var.size() != t.size() {
            bail!(
                "{}: '{name}' has shape {:?}, the model's {:?} (pretrained RGB encoders need 3 input channels: \
                 --channels 3)",
                file.display(),
                t.size(),
                var.size()
            );
        }
    }
    tch::no_grad(|| {
        for (name, t) in tensors {
            let mut var = vars[name].shallow_clone();
            var.copy_(&t.to_device(var.device()).to_kind(var.kind()));
        }
    });
    Ok(tensors.len())
}

/// [`init_from`] checked on a throwaway CPU copy of the network, so a bad file is refused before
/// a run writes anything.
pub fn check_init(config: &NetConfig, tensors: &[(String, Tensor)], file: &std::path::Path) -> Result<()> {
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = SegNet::new(&vs.root(), config);
    init_from(&vs, tensors, file).map(|_| ())
}

// One per run, built once: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum SegNet {
    Unet(UNet),
    Deeplabv3plus(DeepLabV3Plus),
    SwinUnet(SwinUNet),
}

impl SegNet {
    pub fn new(p: &nn::Path, config: &NetConfig) -> SegNet {
        match config {
            NetConfig::Unet(c) => SegNet::Unet(UNet::new(p, c)),
            NetConfig::Deeplabv3plus(c) => SegNet::Deeplabv3plus(DeepLabV3Plus::new(p, c)),
            NetConfig::SwinUnet(c) => SegNet::SwinUnet(SwinUNet::new(p, c)),
        }
    }

    /// Logits of every supervised output, full resolution first (more than one only for a
    /// U-Net with deep supervision).
    pub fn forward_deep(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        match self {
            SegNet::Unet(n) => n.forward_deep(&cpu_channels_last(x), train),
            SegNet::Deeplabv3plus(n) => vec![n.forward_t(&cpu_channels_last(x), train)],
            SegNet::SwinUnet(n) => vec![n.forward(x)],
        }
    }

    /// Full-resolution logits of `x` in training mode, and those of its encoder features with
    /// dropout `p` on them: the feature-perturbation stream of UniMatch (Yang et al., CVPR 2023),
    /// decoded in one batch with the clean features.
    pub fn forward_feature_perturbed(&self, x: &Tensor, p: f64) -> (Tensor, Tensor) {
        match self {
            SegNet::Unet(n) => n.forward_feature_perturbed(&cpu_channels_last(x), p),
            SegNet::Deeplabv3plus(n) => n.forward_feature_perturbed(&cpu_channels_last(x), p),
            SegNet::SwinUnet(n) => n.forward_feature_perturbed(x, p),
        }
    }
}

impl ModuleT for SegNet {
    /// Logits `[B, out, spatial...]`.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            SegNet::Unet(n) => n.forward_t(&cpu_channels_last(x), train),
            SegNet::Deeplabv3plus(n) => n.forward_t(&cpu_channels_last(x), train),
            // LayerNorm and no dropout: the same in training and evaluation.
            SegNet::SwinUnet(n) => n.forward(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::resnet::Backbone;

    #[test]
    fn model_json_keeps_the_unet_key_and_names_other_networks() {
        let unet = NetConfig::Unet(UNetConfig::reference());
        let text = serde_json::to_string(&unet).unwrap();
        assert!(text.starts_with(r#"{"unet":{"in_channels":3"#), "{text}");
        let deeplab =
            NetConfig::Deeplabv3plus(DeepLabConfig { backbone: Backbone::Resnet50, in_channels: 3, out_channels: 1 });
        let text = serde_json::to_string(&deeplab).unwrap();
        assert_eq!(text, r#"{"deeplabv3plus":{"backbone":"resnet50","in_channels":3,"out_channels":1}}"#);
        assert_eq!(serde_json::from_str::<NetConfig>(&text).unwrap(), deeplab);
    }

    /// SegNet feeds its convolutional networks channels-last input on the CPU: outputs and weight
    /// gradients match the same network on plain contiguous input. Evaluation mode: train-mode
    /// BatchNorm over DeepLab's 2x2 (and ASPP's 1x1) maps of a 32 px batch of 2 amplifies the
    /// layouts' different rounding in the gradients by orders of magnitude.
    #[test]
    fn channels_last_input_changes_nothing_but_speed() {
        use tch::{Device, Kind};
        tch::manual_seed(5);
        let configs = [
            NetConfig::Unet(UNetConfig { width: 4, depth: 3, out_channels: 2, ..UNetConfig::reference() }),
            NetConfig::Deeplabv3plus(DeepLabConfig { backbone: Backbone::Resnet18, in_channels: 3, out_channels: 1 }),
        ];
        for config in configs {
            let vs = nn::VarStore::new(Device::Cpu);
            let net = SegNet::new(&vs.root(), &config);
            let x = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
            let direct = match &net {
                SegNet::Unet(n) => n.forward_t(&x, false),
                SegNet::Deeplabv3plus(n) => n.forward_t(&x, false),
                SegNet::SwinUnet(_) => unreachable!(),
            };
            let converted = net.forward_t(&x, false);
            assert!(!cpu_channels_last(&x).is_contiguous(), "the input really is converted");
            let params = vs.trainable_variables();
            let grads = |y: &Tensor| Tensor::run_backward(&[y.square().sum(Kind::Float)], &params, false, false);
            let worst = grads(&direct)
                .iter()
                .zip(grads(&converted))
                .map(|(a, b)| f64::try_from((a - b).abs().max() / (a.abs().max() + 1e-12)).unwrap())
                .fold(0.0, f64::max);
            // Relative to the largest value: the two layouts sum in different orders.
            let out = f64::try_from((&direct - &converted).abs().max() / direct.abs().max()).unwrap();
            assert!(out < 1e-5 && worst < 1e-4, "{config:?}: relative output {out:e}, relative gradient {worst:e}");
        }
    }
}
