//! DeepLabV3+ (Chen et al., ECCV 2018) as the GenSeg reference's DeepLab (jfzhang95's
//! pytorch-deeplab-xception): a ResNet encoder at output stride 16; ASPP with a 1x1 branch, three
//! 3x3 branches at atrous rates 6/12/18 and an image-pooling branch, 256 channels each, projected
//! to 256; the decoder reduces layer1's features to 48 channels, concatenates them with the ASPP
//! output up-sampled to their stride 4, refines with two 3x3 convs of 256 and classifies; the
//! logits are up-sampled bilinearly to the input size. Every conv but the classifier is followed
//! by BatchNorm and ReLU.
//!
//! The reference's dropout (0.5 after ASPP, 0.5 and 0.1 in the decoder) is left out: the
//! hypergradient compares several passes of one batch through the segmenter, which independent
//! dropout masks would make differ.
use super::resnet::{Backbone, ResNet};
use super::spatial::{perturbed, split_perturbed};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeepLabConfig {
    pub backbone: Backbone,
    pub in_channels: i64,
    pub out_channels: i64,
}

/// ASPP's atrous rates at output stride 16.
const RATES: [i64; 3] = [6, 12, 18];
const ASPP_CHANNELS: i64 = 256;
const LOW_LEVEL_CHANNELS: i64 = 48;

impl DeepLabConfig {
    /// Sides must be multiples of the output stride, 16.
    pub fn validate(&self, shape: &[i64]) -> Result<()> {
        if shape.len() != 2 {
            bail!("DeepLabV3+ is a 2-D network; use --model unet for volumes");
        }
        if shape.iter().any(|&s| s % 16 != 0 || s == 0) {
            bail!("input shape {shape:?}: DeepLabV3+ needs sides that are multiples of its output stride 16; change --size");
        }
        Ok(())
    }
}

/// conv (no bias) + BatchNorm + ReLU.
#[derive(Debug)]
struct ConvBn {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl ConvBn {
    fn new(p: nn::Path, cin: i64, cout: i64, k: i64, dilation: i64) -> ConvBn {
        let cfg = nn::ConvConfig { padding: dilation * (k - 1) / 2, dilation, bias: false, ..Default::default() };
        ConvBn {
            conv: nn::conv2d(&p / "conv", cin, cout, k, cfg),
            bn: nn::batch_norm2d(&p / "bn", cout, Default::default()),
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.conv).apply_t(&self.bn, train).relu()
    }
}

#[derive(Debug)]
pub struct DeepLabV3Plus {
    pub config: DeepLabConfig,
    encoder: ResNet,
    /// The 1x1 branch, then one branch per atrous rate.
    aspp: Vec<ConvBn>,
    aspp_pool: ConvBn,
    aspp_project: ConvBn,
    reduce: ConvBn,
    refine: [ConvBn; 2],
    classifier: nn::Conv2D,
}

impl DeepLabV3Plus {
    pub fn new(p: &nn::Path, config: &DeepLabConfig) -> DeepLabV3Plus {
        let high = config.backbone.out_channels();
        let a = p / "aspp";
        let mut aspp = vec![ConvBn::new(&a / "b0", high, ASPP_CHANNELS, 1, 1)];
        aspp.extend(
            RATES.iter().enumerate().map(|(i, &r)| ConvBn::new(&a / format!("b{}", i + 1), high, ASPP_CHANNELS, 3, r)),
        );
        let d = p / "decoder";
        let fused = ASPP_CHANNELS + LOW_LEVEL_CHANNELS;
        DeepLabV3Plus {
            config: config.clone(),
            encoder: ResNet::new(&(p / "encoder"), config.backbone, config.in_channels),
            aspp,
            aspp_pool: ConvBn::new(&a / "pool", high, ASPP_CHANNELS, 1, 1),
            aspp_project: ConvBn::new(&a / "project", 5 * ASPP_CHANNELS, ASPP_CHANNELS, 1, 1),
            reduce: ConvBn::new(&d / "reduce", config.backbone.low_level_channels(), LOW_LEVEL_CHANNELS, 1, 1),
            refine: [ConvBn::new(&d / "refine1", fused, 256, 3, 1), ConvBn::new(&d / "refine2", 256, 256, 3, 1)],
            classifier: nn::conv2d(&d / "classifier", 256, config.out_channels, 1, Default::default()),
        }
    }
}

fn resize(x: &Tensor, size: &[i64]) -> Tensor {
    x.upsample_bilinear2d(size, false, None, None)
}

impl ModuleT for DeepLabV3Plus {
    /// Logits `[B, out, H, W]`.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let (low, high) = self.encoder.forward_t(x, train);
        self.decode(&low, &high, &x.size()[2..], train)
    }
}

impl DeepLabV3Plus {
    /// Logits of `x` and of its encoder features (both levels) with dropout `p`, decoded as one
    /// batch (UniMatch's feature perturbation).
    pub fn forward_feature_perturbed(&self, x: &Tensor, p: f64) -> (Tensor, Tensor) {
        let (low, high) = self.encoder.forward_t(x, true);
        let both = |f: &Tensor| perturbed(f, p);
        let logits = self.decode(&both(&low), &both(&high), &x.size()[2..], true);
        split_perturbed(&logits)
    }

    fn decode(&self, low: &Tensor, high: &Tensor, size: &[i64], train: bool) -> Tensor {
        let high = high.shallow_clone();
        let mut branches: Vec<Tensor> = self.aspp.iter().map(|b| b.forward_t(&high, train)).collect();
        let pooled = self.aspp_pool.forward_t(&high.adaptive_avg_pool2d([1, 1]), train);
        branches.push(resize(&pooled, &high.size()[2..]));
        let context = self.aspp_project.forward_t(&Tensor::cat(&branches, 1), train);
        let low = self.reduce.forward_t(low, train);
        let h = Tensor::cat(&[resize(&context, &low.size()[2..]), low], 1);
        let h = self.refine[1].forward_t(&self.refine[0].forward_t(&h, train), train);
        resize(&h.apply(&self.classifier), size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::count;
    use tch::{Device, Kind};

    fn params_under(vs: &nn::VarStore, prefix: &str) -> i64 {
        let vars = vs.variables();
        let trainable = |t: &Tensor| t.requires_grad();
        vars.iter().filter(|(n, t)| n.starts_with(prefix) && trainable(t)).map(|(_, t)| t.numel() as i64).sum()
    }

    /// ASPP against torchvision 0.26's `ASPP(c, [6, 12, 18], 256)` (the same five branches and
    /// projection): `sum(p.numel() for p in ASPP(c, [6, 12, 18], 256).parameters())`; the
    /// decoder by hand: 1x1 conv 64c->48 + BN, 3x3 conv 304->256 + BN, 3x3 conv 256->256 + BN,
    /// 1x1 classifier with bias.
    #[test]
    fn parameter_counts_match_the_reference_parts() {
        for (backbone, encoder, aspp, low) in
            [(Backbone::Resnet18, 11_176_512, 4_131_840, 64), (Backbone::Resnet50, 23_508_032, 15_535_104, 256)]
        {
            let vs = nn::VarStore::new(Device::Cpu);
            let _ = DeepLabV3Plus::new(&vs.root(), &DeepLabConfig { backbone, in_channels: 3, out_channels: 1 });
            let decoder = low * 48 + 2 * 48 + 304 * 256 * 9 + 2 * 256 + 256 * 256 * 9 + 2 * 256 + 256 + 1;
            assert_eq!(params_under(&vs, "encoder."), encoder, "{backbone:?}");
            assert_eq!(params_under(&vs, "aspp."), aspp, "{backbone:?}");
            assert_eq!(params_under(&vs, "decoder."), decoder, "{backbone:?}");
            assert_eq!(count(&vs.trainable_variables()), encoder + aspp + decoder);
        }
    }

    #[test]
    fn logits_have_the_input_size_on_non_square_inputs_and_odd_sizes_are_refused() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = DeepLabConfig { backbone: Backbone::Resnet18, in_channels: 1, out_channels: 2 };
        let net = DeepLabV3Plus::new(&vs.root(), &cfg);
        let x = Tensor::rand([2, 1, 64, 96], (Kind::Float, Device::Cpu));
        assert_eq!(net.forward_t(&x, true).size(), [2, 2, 64, 96]);
        assert_eq!(net.forward_t(&x.narrow(0, 0, 1), false).size(), [1, 2, 64, 96]);
        assert!(cfg.validate(&[64, 96]).is_ok());
        let err = cfg.validate(&[64, 72]).unwrap_err().to_string();
        assert!(err.contains("multiples of its output stride 16") && err.contains("--size"), "{err}");
        assert!(cfg.validate(&[0, 32]).is_err());
        assert!(cfg.validate(&[32, 32, 32]).unwrap_err().to_string().contains("--model unet"));
    }
}
