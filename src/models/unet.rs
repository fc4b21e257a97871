//! U-Net (Ronneberger et al.) as in the reference's milesial implementation: double 3x3 conv
//! blocks with BatchNorm, max-pool down, transposed-conv (or bilinear) up, skip concatenation.
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Upsampling {
    Transposed,
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
}

impl UNetConfig {
    /// Image sides must survive `depth - 1` halvings exactly.
    pub fn validate(&self, size: u32) -> Result<()> {
        let factor = 1u32 << (self.depth - 1);
        if self.depth < 2 || size % factor != 0 {
            bail!("image size {size} must be divisible by 2^(depth-1) = {factor} (depth {}); change --size or --depth", self.depth);
        }
        Ok(())
    }
}

#[derive(Debug)]
struct DoubleConv {
    c1: nn::Conv2D,
    b1: nn::BatchNorm,
    c2: nn::Conv2D,
    b2: nn::BatchNorm,
}

impl DoubleConv {
    fn new(p: nn::Path, cin: i64, cout: i64) -> DoubleConv {
        let cfg = nn::ConvConfig { padding: 1, bias: false, ..Default::default() };
        DoubleConv {
            c1: nn::conv2d(&p / "c1", cin, cout, 3, cfg),
            b1: nn::batch_norm2d(&p / "b1", cout, Default::default()),
            c2: nn::conv2d(&p / "c2", cout, cout, 3, cfg),
            b2: nn::batch_norm2d(&p / "b2", cout, Default::default()),
        }
    }
}

impl ModuleT for DoubleConv {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = x.apply(&self.c1).apply_t(&self.b1, train).relu();
        x.apply(&self.c2).apply_t(&self.b2, train).relu()
    }
}

#[derive(Debug)]
enum UpSample {
    Transposed(nn::ConvTranspose2D),
    /// Bilinear x2 followed by a 1x1 conv halving the channels.
    Bilinear(nn::Conv2D),
}

#[derive(Debug)]
pub struct UNet {
    pub config: UNetConfig,
    inc: DoubleConv,
    downs: Vec<DoubleConv>,
    ups: Vec<(UpSample, DoubleConv)>,
    head: nn::Conv2D,
}

impl UNet {
    pub fn new(p: &nn::Path, config: &UNetConfig) -> UNet {
        let ch = |i: usize| config.width << i;
        let inc = DoubleConv::new(p / "inc", config.in_channels, ch(0));
        let downs = (1..config.depth).map(|i| DoubleConv::new(p / format!("down{i}"), ch(i - 1), ch(i))).collect();
        let ups = (1..config.depth)
            .rev()
            .map(|i| {
                let q = p / format!("up{i}");
                let up = match config.upsampling {
                    Upsampling::Transposed => UpSample::Transposed(nn::conv_transpose2d(
                        &q / "up",
                        ch(i),
                        ch(i) / 2,
                        2,
                        nn::ConvTransposeConfig { stride: 2, ..Default::default() },
                    )),
                    Upsampling::Bilinear => UpSample::Bilinear(nn::conv2d(&q / "reduce", ch(i), ch(i) / 2, 1, Default::default())),
                };
                (up, DoubleConv::new(&q / "conv", ch(i), ch(i - 1)))
            })
            .collect();
        let head = nn::conv2d(p / "head", ch(0), config.out_channels, 1, Default::default());
        UNet { config: config.clone(), inc, downs, ups, head }
    }
}

impl ModuleT for UNet {
    /// Logits `[B, out, H, W]`.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut skips = vec![self.inc.forward_t(x, train)];
        for down in &self.downs {
            let h = skips.last().unwrap().max_pool2d_default(2);
            skips.push(down.forward_t(&h, train));
        }
        let mut h = skips.pop().unwrap();
        for (up, conv) in &self.ups {
            let skip = skips.pop().unwrap();
            let u = match up {
                UpSample::Transposed(t) => h.apply(t),
                UpSample::Bilinear(c) => {
                    let s = skip.size();
                    h.upsample_bilinear2d([s[2], s[3]], false, None, None).apply(c)
                }
            };
            h = conv.forward_t(&Tensor::cat(&[skip, u], 1), train);
        }
        h.apply(&self.head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn parameter_count_matches_the_reference_unet() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = UNetConfig { in_channels: 3, out_channels: 1, width: 64, depth: 5, upsampling: Upsampling::Transposed };
        let _net = UNet::new(&vs.root(), &cfg);
        assert_eq!(crate::models::count(&vs.trainable_variables()), 31_037_633);
    }

    #[test]
    fn output_shape_follows_input() {
        for up in [Upsampling::Transposed, Upsampling::Bilinear] {
            let vs = nn::VarStore::new(Device::Cpu);
            let cfg = UNetConfig { in_channels: 1, out_channels: 2, width: 4, depth: 3, upsampling: up };
            let net = UNet::new(&vs.root(), &cfg);
            let y = net.forward_t(&Tensor::rand([2, 1, 32, 32], (Kind::Float, Device::Cpu)), true);
            assert_eq!(y.size(), vec![2, 2, 32, 32]);
        }
    }
}
