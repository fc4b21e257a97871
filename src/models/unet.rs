//! U-Net (Ronneberger et al.) as in the reference's milesial implementation: double 3x3 conv
//! blocks with BatchNorm, max-pool down, transposed-conv (or bilinear) up, skip concatenation.
//! The same struct is the 3-D U-Net (3x3x3 convs, 2x2x2 pooling) when `dims` is 3.
use super::spatial::{batch_norm, max_pool2, upsample_like, Conv, ConvSpec};
use super::spatial::{perturbed, split_perturbed};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Upsampling {
    Transposed,
    /// Bilinear (trilinear in 3-D) x2 followed by a 1x1 conv halving the channels.
    Bilinear,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UNetConfig {
    pub in_channels: i64,
    pub out_channels: i64,
    /// Channels of the first level; each level below doubles them.
    pub width: i64,
    /// Number of resolution levels (5 = four poolings).
    pub depth: usize,
    pub upsampling: Upsampling,
    /// Spatial axes: 2 (images) or 3 (volumes).
    #[serde(default = "two")]
    pub dims: usize,
    /// 1x1 output heads on the decoder stages below full resolution, for nnU-Net's deep
    /// supervision (`UNet::forward_deep`). nnU-Net gives its coarsest decoder output weight 0, so
    /// that stage gets no head here.
    #[serde(default)]
    pub deep_supervision: bool,
}

fn two() -> usize {
    2
}

impl UNetConfig {
    /// The GenSeg reference's 2-D U-Net: RGB in, one mask channel out, width 64, depth 5,
    /// transposed-convolution up-sampling.
    pub fn reference() -> UNetConfig {
        UNetConfig {
            in_channels: 3,
            out_channels: 1,
            width: 64,
            depth: 5,
            upsampling: Upsampling::Transposed,
            dims: 2,
            deep_supervision: false,
        }
    }

    /// Every side must survive `depth - 1` halvings exactly.
    pub fn validate(&self, shape: &[i64]) -> Result<()> {
        if self.depth < 2 {
            bail!("--depth {}: a U-Net needs at least 2 levels", self.depth);
        }
        let factor = 1i64 << (self.depth - 1);
        if shape.iter().any(|s| s % factor != 0) {
            bail!("input shape {shape:?} must be divisible by 2^(depth-1) = {factor} on every axis (depth {}); change --size/--shape or --depth", self.depth);
        }
        Ok(())
    }
}

#[derive(Debug)]
struct DoubleConv {
    c1: Conv,
    b1: nn::BatchNorm,
    c2: Conv,
    b2: nn::BatchNorm,
}

impl DoubleConv {
    fn new(p: nn::Path, dims: usize, cin: i64, cout: i64) -> DoubleConv {
        let spec = ConvSpec::new(3, 1, 1).no_bias();
        DoubleConv {
            c1: Conv::new(&p / "c1", dims, cin, cout, spec),
            b1: batch_norm(&p / "b1", dims, cout, false),
            c2: Conv::new(&p / "c2", dims, cout, cout, spec),
            b2: batch_norm(&p / "b2", dims, cout, false),
        }
    }
}

impl ModuleT for DoubleConv {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = self.c1.forward(x).apply_t(&self.b1, train).relu();
        self.c2.forward(&x).apply_t(&self.b2, train).relu()
    }
}

#[derive(Debug)]
enum UpSample {
    Transposed(Conv),
    /// Linear resize followed by a 1x1 conv halving the channels.
    Linear(Conv),
}

#[derive(Debug)]
pub struct UNet {
    pub config: UNetConfig,
    inc: DoubleConv,
    downs: Vec<DoubleConv>,
    ups: Vec<(UpSample, DoubleConv)>,
    head: Conv,
    /// Heads of the decoder stages below full resolution, finest first (deep supervision only).
    aux_heads: Vec<Conv>,
}

impl UNet {
    pub fn new(p: &nn::Path, config: &UNetConfig) -> UNet {
        let ch = |i: usize| config.width << i;
        let dims = config.dims;
        let inc = DoubleConv::new(p / "inc", dims, config.in_channels, ch(0));
        let downs =
            (1..config.depth).map(|i| DoubleConv::new(p / format!("down{i}"), dims, ch(i - 1), ch(i))).collect();
        let ups = (1..config.depth)
            .rev()
            .map(|i| {
                let q = p / format!("up{i}");
                let up = match config.upsampling {
                    Upsampling::Transposed => UpSample::Transposed(Conv::transposed(
                        &q / "up",
                        dims,
                        ch(i),
                        ch(i) / 2,
                        ConvSpec::new(2, 2, 0),
                    )),
                    Upsampling::Bilinear => {
                        UpSample::Linear(Conv::new(&q / "reduce", dims, ch(i), ch(i) / 2, ConvSpec::new(1, 1, 0)))
                    }
                };
                (up, DoubleConv::new(&q / "conv", dims, ch(i), ch(i - 1)))
            })
            .collect();
        let head = Conv::new(p / "head", dims, ch(0), config.out_channels, ConvSpec::new(1, 1, 0));
        let aux_heads = match config.deep_supervision {
            true => (1..config.depth.saturating_sub(2))
                .map(|i| Conv::new(p / format!("aux{i}"), dims, ch(i), config.out_channels, ConvSpec::new(1, 1, 0)))
                .collect(),
            false => vec![],
        };
        UNet { config: config.clone(), inc, downs, ups, head, aux_heads }
    }

    /// Logits at every decoder stage, full resolution first, then each coarser stage that has
    /// an auxiliary head (only the full-resolution logits without deep supervision).
    pub fn forward_deep(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let mut stages = self.decode(x, train);
        let full = self.head.forward(&stages.pop().unwrap());
        let coarser = self.aux_heads.iter().zip(stages.iter().rev()).map(|(head, h)| head.forward(h));
        std::iter::once(full).chain(coarser).collect()
    }

    /// The output of each decoder stage, coarsest first (the last stage only without deep
    /// supervision).
    fn decode(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        self.decode_features(self.encode(x, train), train)
    }

    /// The encoder's output at every level, finest first (the last is the bottleneck).
    fn encode(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let mut skips = vec![self.inc.forward_t(x, train)];
        for down in &self.downs {
            let h = max_pool2(skips.last().unwrap());
            skips.push(down.forward_t(&h, train));
        }
        skips
    }

    /// Full-resolution logits of `x` and of its encoder features with dropout `p` on every
    /// level, decoded as one batch (UniMatch's feature perturbation).
    pub fn forward_feature_perturbed(&self, x: &Tensor, p: f64) -> (Tensor, Tensor) {
        let features = self.encode(x, true).into_iter().map(|f| perturbed(&f, p)).collect();
        let logits = self.head.forward(self.decode_features(features, true).last().unwrap());
        split_perturbed(&logits)
    }

    fn decode_features(&self, mut skips: Vec<Tensor>, train: bool) -> Vec<Tensor> {
        let mut h = skips.pop().unwrap();
        let mut stages = Vec::with_capacity(self.ups.len());
        let last = self.ups.len() - 1;
        for (i, (up, conv)) in self.ups.iter().enumerate() {
            let skip = skips.pop().unwrap();
            let u = match up {
                UpSample::Transposed(t) => t.forward(&h),
                UpSample::Linear(c) => c.forward(&upsample_like(&h, &skip)),
            };
            h = conv.forward_t(&Tensor::cat(&[skip, u], 1), train);
            if i == last || self.config.deep_supervision {
                stages.push(h.shallow_clone());
            }
        }
        stages
    }
}

impl ModuleT for UNet {
    /// Logits `[B, out, spatial...]`.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.head.forward(self.decode(x, train).last().unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn parameter_count_matches_the_reference_unet() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = UNet::new(&vs.root(), &UNetConfig::reference());
        assert_eq!(crate::models::count(&vs.trainable_variables()), 31_037_633);
    }

    #[test]
    fn output_shape_follows_input() {
        for up in [Upsampling::Transposed, Upsampling::Bilinear] {
            let vs = nn::VarStore::new(Device::Cpu);
            let cfg = UNetConfig {
                in_channels: 1,
                out_channels: 2,
                width: 4,
                depth: 3,
                upsampling: up,
                dims: 2,
                deep_supervision: false,
            };
            let net = UNet::new(&vs.root(), &cfg);
            let y = net.forward_t(&Tensor::rand([2, 1, 32, 32], (Kind::Float, Device::Cpu)), true);
            assert_eq!(y.size(), vec![2, 2, 32, 32]);
        }
    }

    /// The 3-D U-Net: 3x3x3 double convs, so a level holds 27/9 times the 2-D weights; checked
    /// against the closed form, and non-cubic volumes keep their shape.
    #[test]
    fn three_d_parameter_count_and_shape() {
        for up in [Upsampling::Transposed, Upsampling::Bilinear] {
            let vs = nn::VarStore::new(Device::Cpu);
            let cfg = UNetConfig {
                in_channels: 1,
                out_channels: 2,
                width: 4,
                depth: 3,
                upsampling: up,
                dims: 3,
                deep_supervision: false,
            };
            let net = UNet::new(&vs.root(), &cfg);
            let y = net.forward_t(&Tensor::rand([2, 1, 8, 12, 16], (Kind::Float, Device::Cpu)), true);
            assert_eq!(y.size(), vec![2, 2, 8, 12, 16]);
            // double conv (cin->cout, cout->cout, 3^3, no bias) + two BatchNorms (2 x 2 x cout)
            let block = |cin: i64, cout: i64| 27 * cin * cout + 27 * cout * cout + 4 * cout;
            let up_params = |c: i64| match up {
                Upsampling::Transposed => 8 * c * (c / 2) + c / 2,
                Upsampling::Bilinear => c * (c / 2) + c / 2,
            };
            let expected = block(1, 4)
                + block(4, 8)
                + block(8, 16)
                + up_params(16)
                + block(16, 8)
                + up_params(8)
                + block(8, 4)
                + 4 * 2
                + 2;
            assert_eq!(crate::models::count(&vs.trainable_variables()), expected);
        }
    }
}
