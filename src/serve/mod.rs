//! `genseg serve`: the clinician loop, after MONAI Label: a local web page shows the next image
//! to annotate (chosen by an active-learning [`queue`] strategy) with the current model's
//! proposal, the expert corrects and saves it, and every few saves a background retrain (`genseg
//! fit` on the annotated pairs) refreshes proposals and the queue.
//!
//! - [`project`]: the project folder: annotations saved atomically, every version kept;
//! - [`model`]: retrains as fit folders, proposals, uncertainty scores;
//! - [`queue`]: the strategies (random, uncertainty, uncertainty plus diversity);
//! - [`app`]: the state and the loop; [`api`]: the HTTP routes and the page (page.html);
//! - [`campaign`]: the loop with a simulated annotator (the ground-truth masks), to measure
//!   strategies and the effort proposals save.
pub mod api;
pub mod app;
pub mod campaign;
pub mod model;
pub mod project;
pub mod queue;

use crate::runtime::{lock_folder, write_json, FolderLock};
use anyhow::{bail, Context, Result};
use app::{App, LoopConfig};
use project::Project;
use queue::Strategy;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tch::Device;

/// What `genseg serve` is asked.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data: PathBuf,
    pub out: PathBuf,
    /// Where to listen (127.0.0.1 unless the user asks otherwise).
    pub address: SocketAddr,
    pub strategy: Strategy,
    pub config: LoopConfig,
}

/// project.json: which data folder the project annotates.
#[derive(Debug, Serialize, Deserialize)]
struct ProjectFile {
    data: PathBuf,
    versions: crate::runtime::Versions,
}

/// Opens and locks the project `out` on `data` (one process at a time: a second server, or an
/// export while one runs, is refused): refuses an `out` inside the data (or holding it) and a
/// project made for another data folder.
pub fn open_project(data: &Path, out: &Path, device: Device) -> Result<(Project, FolderLock)> {
    crate::runtime::refuse_overlap("--out", out, &[("the data folder", data)])?;
    let data = std::path::absolute(data)?;
    crate::runtime::ensure_writable_dir(out)?;
    let lock = lock_folder(out)?;
    let file = out.join("project.json");
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            let p: ProjectFile =
                serde_json::from_str(&text).with_context(|| format!("{} is corrupt", file.display()))?;
            if p.data != data {
                bail!(
                    "{} annotates {}, not {}; give that data folder or another --out",
                    out.display(),
                    p.data.display(),
                    data.display()
                );
            }
        }
        Err(_) => write_json(&file, &ProjectFile { data: data.clone(), versions: crate::runtime::versions(device) })?,
    }
    Ok((Project::open(out, &data)?, lock))
}

/// A random token for the URL (128 bits from the operating system's generator).
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Serves the project until the process is stopped; prints the URL (with its token) first.
pub fn run(cfg: &ServeConfig, device: Device) -> Result<()> {
    let (project, _lock) = open_project(&cfg.data, &cfg.out, device)?;
    let app = App::start(project, cfg.strategy, cfg.config.clone(), device)?;
    let token = new_token();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(cfg.address)
            .await
            .with_context(|| format!("cannot listen on {}; choose another --port", cfg.address))?;
        let address = listener.local_addr()?;
        if !address.ip().is_loopback() {
            tracing::warn!(
                "serve: listening on {address}, reachable from other machines; anyone with the URL can annotate"
            );
        }
        crate::out!("genseg serve: open http://{address}/?token={token}");
        axum::serve(listener, api::router(app, token))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("the server stopped")
    })
}

/// Writes the project's annotated pairs as an nnU-Net v2 raw data set in `out`.
pub fn export_nnunet(data: &Path, project_dir: &Path, out: &Path, device: Device) -> Result<usize> {
    let (project, _lock) = open_project(data, project_dir, device)?;
    crate::runtime::refuse_overlap("--export-nnunet", out, &[("the data folder", data), ("the project", project_dir)])?;
    let pairs: Vec<(String, PathBuf, PathBuf)> = project
        .annotated()
        .into_iter()
        .map(|i| {
            let im = &project.images[i];
            (im.key.clone(), im.file.clone(), project.mask_file(i).expect("annotated"))
        })
        .collect();
    if pairs.is_empty() {
        bail!("{}: no image is annotated yet; nothing to export", project_dir.display());
    }
    crate::data::nnunet::write_raw(&pairs, out)?;
    Ok(pairs.len())
}
