//! ResNet encoder (He et al. 2016) as torchvision builds it (variable names included, so a
//! torchvision state_dict converts by name: scripts/convert_resnet.py), without the classifier,
//! with layer4's stride replaced by dilation 2 for DeepLab's output stride 16.
use serde::{Deserialize, Serialize};
use tch::nn;
use tch::Tensor;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Backbone {
    /// Basic blocks [2, 2, 2, 2], 512 output channels: small enough for CPU runs.
    #[default]
    Resnet18,
    /// Bottleneck blocks [3, 4, 6, 3], 2048 output channels: DeepLab's reference encoder.
    Resnet50,
}

impl Backbone {
    fn blocks(self) -> [usize; 4] {
        match self {
            Backbone::Resnet18 => [2, 2, 2, 2],
            Backbone::Resnet50 => [3, 4, 6, 3],
        }
    }

    /// Output channels per block input width (1 basic, 4 bottleneck).
    fn expansion(self) -> i64 {
        match self {
            Backbone::Resnet18 => 1,
            Backbone::Resnet50 => 4,
        }
    }

    /// Channels of layer1's output (DeepLab's low-level features).
    pub fn low_level_channels(self) -> i64 {
        64 * self.expansion()
    }

    /// Channels of layer4's output.
    pub fn out_channels(self) -> i64 {
        512 * self.expansion()
    }
}

fn conv(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, dilation: i64) -> nn::Conv2D {
    let padding = dilation * (k - 1) / 2;
    nn::conv2d(p, cin, cout, k, nn::ConvConfig { stride, padding, dilation, bias: false, ..Default::default() })
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}

/// A residual block: basic (two 3x3) or bottleneck (1x1, 3x3, 1x1), each conv followed by
/// BatchNorm, with a 1x1 projection of the shortcut when the shape changes.
#[derive(Debug)]
struct Block {
    convs: Vec<(nn::Conv2D, nn::BatchNorm)>,
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl Block {
    fn new(p: nn::Path, backbone: Backbone, cin: i64, width: i64, stride: i64, dilation: i64) -> Block {
        let cout = width * backbone.expansion();
        let pair = |i: usize, a: i64, b: i64, k: i64, s: i64, d: i64| {
            (conv(&p / format!("conv{i}"), a, b, k, s, d), bn(&p / format!("bn{i}"), b))
        };
        let convs = match backbone {
            Backbone::Resnet18 => vec![pair(1, cin, width, 3, stride, dilation), pair(2, width, width, 3, 1, dilation)],
            // torchvision's ResNet v1.5: the stride sits on the 3x3 conv.
            Backbone::Resnet50 => vec![
                pair(1, cin, width, 1, 1, 1),
                pair(2, width, width, 3, stride, dilation),
                pair(3, width, cout, 1, 1, 1),
            ],
        };
        let downsample = (stride != 1 || cin != cout)
            .then(|| (conv(&p / "downsample" / "0", cin, cout, 1, stride, 1), bn(&p / "downsample" / "1", cout)));
        Block { convs, downsample }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let last = self.convs.len() - 1;
        let mut h = x.shallow_clone();
        for (i, (c, b)) in self.convs.iter().enumerate() {
            h = h.apply(c).apply_t(b, train);
            if i < last {
                h = h.relu();
            }
        }
        let shortcut = match &self.downsample {
            Some((c, b)) => x.apply(c).apply_t(b, train),
            None => x.shallow_clone(),
        };
        (h + shortcut).relu()
    }
}

#[derive(Debug)]
pub struct ResNet {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    layers: Vec<Vec<Block>>,
}

impl ResNet {
    /// `in_channels` input channels (torchvision's pretrained weights expect 3).
    pub fn new(p: &nn::Path, backbone: Backbone, in_channels: i64) -> ResNet {
        let conv1 = nn::conv2d(
            p / "conv1",
            in_channels,
            64,
            7,
            nn::ConvConfig { stride: 2, padding: 3, bias: false, ..Default::default() },
        );
        let bn1 = bn(p / "bn1", 64);
        let mut cin = 64;
        let mut dilation = 1;
        let layers = backbone
            .blocks()
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let width = 64 << i;
                let q = p / format!("layer{}", i + 1);
                // layer4 dilates instead of striding (torchvision's replace_stride_with_dilation);
                // its first block keeps the previous dilation, as torchvision's does.
                let (stride, previous) = match i {
                    0 => (1, dilation),
                    3 => {
                        let previous = dilation;
                        dilation *= 2;
                        (1, previous)
                    }
                    _ => (2, dilation),
                };
                (0..n)
                    .map(|j| {
                        let block = match j {
                            0 => Block::new(&q / "0", backbone, cin, width, stride, previous),
                            _ => Block::new(&q / j.to_string(), backbone, cin, width, 1, dilation),
                        };
                        cin = width * backbone.expansion();
                        block
                    })
                    .collect()
            })
            .collect();
        ResNet { conv1, bn1, layers }
    }

    /// (layer1's output at stride 4, layer4's at stride 16).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        let h = x.apply(&self.conv1).apply_t(&self.bn1, train).relu();
        let mut h = h.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        let mut low = None;
        for (i, layer) in self.layers.iter().enumerate() {
            for block in layer {
                h = block.forward_t(&h, train);
            }
            if i == 0 {
                low = Some(h.shallow_clone());
            }
        }
        (low.expect("layer1 ran"), h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::count;
    use tch::{Device, Kind};

    /// torchvision 0.26's resnet18() and resnet50() without `fc` (the classifier), counted with
    /// `sum(p.numel() for k, p in m.named_parameters() if not k.startswith('fc.'))`.
    #[test]
    fn parameter_counts_match_torchvision() {
        for (backbone, expected) in [(Backbone::Resnet18, 11_176_512), (Backbone::Resnet50, 23_508_032)] {
            let vs = nn::VarStore::new(Device::Cpu);
            let _ = ResNet::new(&vs.root(), backbone, 3);
            assert_eq!(count(&vs.trainable_variables()), expected, "{backbone:?}");
        }
    }

    #[test]
    fn output_strides_are_4_and_16_with_torchvision_names() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = ResNet::new(&vs.root(), Backbone::Resnet18, 1);
        let (low, high) = net.forward_t(&Tensor::zeros([2, 1, 64, 96], (Kind::Float, Device::Cpu)), false);
        assert_eq!(low.size(), [2, 64, 16, 24]);
        assert_eq!(high.size(), [2, 512, 4, 6]);
        let names = vs.variables();
        for name in
            ["conv1.weight", "layer2.0.downsample.0.weight", "layer4.1.bn2.running_var", "layer1.1.conv2.weight"]
        {
            assert!(names.contains_key(name), "{name} missing");
        }
    }
}
