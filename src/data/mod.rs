//! Data: finding and pairing files, loading 2-D image folders and 3-D NIfTI volume sets into one
//! dataset type, splits, augmentation and the phantom demo set.
//!
//! [`load`] and [`check`] are the entry points; they pick the 2-D ([`images`]) or 3-D
//! ([`volume`]) loader from what the folder holds.
pub mod augment;
pub mod check;
pub mod files;
pub mod fingerprint;
pub mod image_io;
pub mod images;
pub mod nnaug;
pub mod nnunet;
pub mod phantom;
pub mod photometric;
pub mod set;
pub mod split;
pub mod strong;
pub mod unlabelled;
pub mod volume;

pub use check::CheckReport;
pub use set::{LoadOptions, SegDataset, VolumeOptions};

use anyhow::Result;
use files::{Folders, Kind};
use std::path::Path;
use std::sync::Mutex;

/// Scans, decodes and stacks a dataset (2-D images or 3-D volumes); any fatal problem aborts with
/// the full list. Repeated loads of unchanged files with the same options (the runs of a study)
/// come from a cache of the decoded tensors.
pub fn load(root: &Path, opts: &LoadOptions) -> Result<SegDataset> {
    let folders = Folders::of(root)?;
    let key = cache_key(&folders, opts);
    if let Some(set) = key.as_ref().and_then(cache_get) {
        return Ok(set);
    }
    let set = match folders.kind() {
        Kind::Volumes => volume::load_dataset(root, opts)?,
        Kind::Images => images::load(root, opts)?,
    };
    if let Some(key) = key {
        cache_put(key, &set);
    }
    Ok(set)
}

/// Counts, sizes, mask values and every problem by file, without loading for training.
pub fn check(root: &Path, opts: &LoadOptions) -> Result<CheckReport> {
    match Folders::of(root)?.kind() {
        Kind::Volumes => volume::check(root, opts),
        Kind::Images => images::check(root, opts),
    }
}

/// Decoded datasets kept for this process; a few entries, since a 256 px set of 1000 colour
/// images takes about 1 GB.
static CACHE: Mutex<Vec<(String, SegDataset)>> = Mutex::new(Vec::new());
const CACHE_ENTRIES: usize = 3;

/// The options and every file's path, size and modification time: a changed, added or removed
/// file misses the cache. `None` when a folder cannot be listed (the loader reports it).
fn cache_key(folders: &Folders, opts: &LoadOptions) -> Option<String> {
    let mut key = format!("{opts:?}");
    for dir in [&folders.images, &folders.masks] {
        let mut entries: Vec<String> = std::fs::read_dir(dir)
            .ok()?
            .map(|e| {
                let e = e.ok()?;
                let meta = e.metadata().ok()?;
                Some(format!("{}:{}:{:?}", e.path().display(), meta.len(), meta.modified().ok()?))
            })
            .collect::<Option<_>>()?;
        entries.sort();
        key.push('\n');
        key.push_str(&entries.join("\n"));
    }
    // dataset.json decides channels and checks (nnU-Net layout): its contents are part of the key.
    if let Ok(text) = std::fs::read_to_string(folders.root.join("dataset.json")) {
        key.push('\n');
        key.push_str(&text);
    }
    Some(key)
}

fn cache_get(key: &String) -> Option<SegDataset> {
    let cache = CACHE.lock().ok()?;
    cache.iter().find(|(k, _)| k == key).map(|(_, set)| set.clone())
}

fn cache_put(key: String, set: &SegDataset) {
    if let Ok(mut cache) = CACHE.lock() {
        cache.retain(|(k, _)| *k != key);
        if cache.len() >= CACHE_ENTRIES {
            cache.remove(0);
        }
        cache.push((key, set.clone()));
    }
}
