//! Layers written once for 2-D images and 3-D volumes: the number of spatial axes is a value
//! (`dims`), and every model below takes it instead of existing in two copies.
//!
//! Variables keep tch's names (`weight`, `bias`) and initialisers, so a 2-D model built here is
//! the same model, parameter for parameter, as one built from `nn::conv2d`.
use tch::nn::{self, Init};
use tch::{Device, Tensor};

/// `x` with channels-last strides (same shape, same values) when it is a batch of images on the
/// CPU, where oneDNN then runs every convolution after it in NHWC: segmenter steps and prediction
/// are faster so (docs/history §13; the GAN gained nothing). Layers keep the layout they
/// are given, so converting a network's input is enough; anywhere else `x` is returned as it is.
pub fn cpu_channels_last(x: &Tensor) -> Tensor {
    if x.device() == Device::Cpu && x.dim() == 4 {
        x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
    } else {
        x.shallow_clone()
    }
}

/// A convolution (or transposed convolution) over `dims` spatial axes with cubic kernels.
#[derive(Debug)]
pub struct Conv {
    pub ws: Tensor,
    pub bs: Option<Tensor>,
    dims: usize,
    stride: i64,
    padding: i64,
    transposed: bool,
}

/// Kernel, stride, padding, bias and weight initialiser of one layer.
#[derive(Debug, Clone, Copy)]
pub struct ConvSpec {
    pub kernel: i64,
    pub stride: i64,
    pub padding: i64,
    pub bias: bool,
    pub init: Init,
}

impl ConvSpec {
    /// tch's defaults: Kaiming-uniform weights, zero bias.
    pub fn new(kernel: i64, stride: i64, padding: i64) -> ConvSpec {
        ConvSpec { kernel, stride, padding, bias: true, init: nn::init::DEFAULT_KAIMING_UNIFORM }
    }

    pub fn no_bias(self) -> ConvSpec {
        ConvSpec { bias: false, ..self }
    }

    pub fn init(self, init: Init) -> ConvSpec {
        ConvSpec { init, ..self }
    }
}

impl Conv {
    /// Weight `[cout, cin, k...]`.
    pub fn new(p: nn::Path, dims: usize, cin: i64, cout: i64, spec: ConvSpec) -> Conv {
        Self::build(p, dims, [cout, cin], cout, spec, false)
    }

    /// Weight `[cin, cout, k...]` (PyTorch's layout for transposed convolutions).
    pub fn transposed(p: nn::Path, dims: usize, cin: i64, cout: i64, spec: ConvSpec) -> Conv {
        Self::build(p, dims, [cin, cout], cout, spec, true)
    }

    fn build(p: nn::Path, dims: usize, lead: [i64; 2], cout: i64, spec: ConvSpec, transposed: bool) -> Conv {
        let bs = spec.bias.then(|| p.var("bias", &[cout], Init::Const(0.0)));
        let mut shape = lead.to_vec();
        shape.extend(std::iter::repeat_n(spec.kernel, dims));
        let ws = p.var("weight", &shape, spec.init);
        Conv { ws, bs, dims, stride: spec.stride, padding: spec.padding, transposed }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        convolve(x, &self.ws, self.bs.as_ref(), self.dims, self.stride, self.padding, self.transposed)
    }
}

/// A (transposed) convolution with the same stride and padding on every axis. The named ops
/// (conv2d, conv_transpose3d, ...) rather than the generic `convolution`: only they are on
/// libtorch's autocast lists, so only they run in bf16 under `--precision bf16`.
pub fn convolve(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    dims: usize,
    stride: i64,
    padding: i64,
    transposed: bool,
) -> Tensor {
    let (s, p, d, o) = (vec![stride; dims], vec![padding; dims], vec![1; dims], vec![0; dims]);
    match (dims, transposed) {
        (2, false) => x.conv2d(w, b, &s, &p, &d, 1),
        (2, true) => x.conv_transpose2d(w, b, &s, &p, &o, 1, &d),
        (3, false) => x.conv3d(w, b, &s, &p, &d, 1),
        (3, true) => x.conv_transpose3d(w, b, &s, &p, &o, 1, &d),
        _ => x.convolution(w, b, &s, &p, &d, transposed, &o, 1),
    }
}

/// BatchNorm over `[B, C, spatial...]`; `gan` uses Pix2Pix's initialisation (gamma N(1, 0.02)).
pub fn batch_norm(p: nn::Path, dims: usize, channels: i64, gan: bool) -> nn::BatchNorm {
    let cfg = if gan {
        nn::BatchNormConfig { ws_init: Init::Randn { mean: 1.0, stdev: 0.02 }, ..Default::default() }
    } else {
        Default::default()
    };
    match dims {
        2 => nn::batch_norm2d(p, channels, cfg),
        3 => nn::batch_norm3d(p, channels, cfg),
        _ => panic!("only 2-D and 3-D data are supported"),
    }
}

/// 2x max pooling on every spatial axis.
pub fn max_pool2(x: &Tensor) -> Tensor {
    match x.dim() {
        4 => x.max_pool2d_default(2),
        5 => x.max_pool3d([2, 2, 2], [2, 2, 2], [0, 0, 0], [1, 1, 1], false),
        d => panic!("max_pool2 takes 2-D or 3-D batches, got {d} axes"),
    }
}

/// (Bi/tri)linear resize of `x` to the spatial size of `like`.
pub fn upsample_like(x: &Tensor, like: &Tensor) -> Tensor {
    let s = like.size();
    match x.dim() {
        4 => x.upsample_bilinear2d([s[2], s[3]], false, None, None),
        5 => x.upsample_trilinear3d([s[2], s[3], s[4]], false, None, None, None),
        d => panic!("upsample_like takes 2-D or 3-D batches, got {d} axes"),
    }
}

/// `x` resized to `like`'s spatial size by nearest neighbour (masks stay binary).
pub fn resize_nearest_like(x: &Tensor, like: &Tensor) -> Tensor {
    let s = like.size();
    match s.len() {
        4 => x.upsample_nearest2d([s[2], s[3]], None, None),
        5 => x.upsample_nearest3d([s[2], s[3], s[4]], None, None, None),
        d => panic!("resize_nearest_like takes 2-D or 3-D batches, got {d} axes"),
    }
}

/// Encoder features `f` followed by themselves with dropout `p` (one batch for the decoder):
/// whole channels of feature maps, as UniMatch's `Dropout2d`; single values of token maps
/// `[B, L, C]` (Swin-UNet), where channel dropout would drop tokens.
pub(crate) fn perturbed(f: &Tensor, p: f64) -> Tensor {
    let dropped = if f.dim() >= 4 { f.feature_dropout(p, true) } else { f.dropout(p, true) };
    Tensor::cat(&[f, &dropped], 0)
}

/// The decoder's logits of a [`perturbed`] batch: (clean, perturbed).
pub(crate) fn split_perturbed(logits: &Tensor) -> (Tensor, Tensor) {
    let halves = logits.chunk(2, 0);
    (halves[0].shallow_clone(), halves[1].shallow_clone())
}
