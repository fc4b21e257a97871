//! The run's one random stream of training batches, labelled and unlabelled (resumable by the
//! stream's word position).
use crate::data::unlabelled::Unlabelled;
use crate::data::SegDataset;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

/// Random training batches: the run's one random stream (resumable by word position).
pub struct Batches {
    pub rng: ChaCha8Rng,
    pub size: i64,
    pub device: Device,
}

impl Batches {
    /// `size` cases drawn with replacement: their indices, images and masks on the device.
    pub fn draw(&mut self, data: &SegDataset) -> (Vec<usize>, Tensor, Tensor) {
        let idx: Vec<usize> = (0..self.size).map(|_| self.rng.gen_range(0..data.len())).collect();
        let t = Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>());
        (
            idx,
            data.images.index_select(0, &t).to_device(self.device),
            data.masks.index_select(0, &t).to_device(self.device),
        )
    }

    /// `count` unlabelled images drawn with replacement, on the device.
    pub fn draw_images(&mut self, pool: &Unlabelled, count: i64) -> Tensor {
        let idx: Vec<i64> = (0..count).map(|_| self.rng.gen_range(0..pool.len()) as i64).collect();
        pool.images.index_select(0, &Tensor::from_slice(&idx)).to_device(self.device)
    }
}

/// The libtorch seed of iteration `iter` (dropout, and the synthetic images of the step).
pub fn step_seed(seed: u64, iter: usize) -> i64 {
    (seed as i64).wrapping_mul(1_000_003) ^ iter as i64
}
