//! Helpers shared by the integration tests.
#![allow(dead_code)]
pub mod server;
use genseg::data::split::DataConfig;
use genseg::data::LoadOptions;
use genseg::gan::GanConfig;
use genseg::train::{Method, TrainConfig};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

/// The tests of a file run in parallel threads; one that holds this guard runs alone among those
/// that hold it. For two reasons: libtorch has one random generator per process, so a test that
/// seeds it and then initialises or trains draws the same numbers whichever tests run beside it
/// (a learning test's outcome would otherwise depend on the interleaving); and a test that trains
/// through child processes, each taking every core, gets the machine's speed (three fits at once
/// ran 15 times slower than planned on CI's two cores, past a budget test's limits).
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static RNG: Mutex<()> = Mutex::new(());
    // A test that failed while holding the guard leaves nothing half-done for the next one.
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A real dataset from ../shared/data; tests that need it fail loudly when it is missing.
pub fn shared(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data").join(name);
    assert!(p.is_dir(), "{} is missing: the tests read real data from ../shared/data", p.display());
    p
}

/// The first `k` cases (by file name) of the real dataset `name`, linked into `dir`: for tests
/// whose claim needs real images but not a thousand of them, so that loading and scoring the test
/// split does not take most of the test's time.
pub fn shared_subset(name: &str, k: usize, dir: &Path) -> PathBuf {
    let src = shared(name);
    let out = dir.join(format!("{name}-first{k}"));
    let case = |p: &Path| p.file_name().unwrap().to_string_lossy().split('.').next().unwrap().to_string();
    let sorted = |folder: &str| {
        let mut files: Vec<PathBuf> = std::fs::read_dir(src.join(folder)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        files
    };
    let images: Vec<PathBuf> = sorted("images").into_iter().take(k).collect();
    let cases: std::collections::HashSet<String> = images.iter().map(|p| case(p)).collect();
    let masks: Vec<PathBuf> = sorted("masks").into_iter().filter(|p| cases.contains(&case(p))).collect();
    assert_eq!((images.len(), masks.len()), (k, k), "{name}: {k} cases with their masks");
    for (folder, files) in [("images", &images), ("masks", &masks)] {
        std::fs::create_dir_all(out.join(folder)).unwrap();
        for f in files {
            std::os::unix::fs::symlink(f, out.join(folder).join(f.file_name().unwrap())).unwrap();
        }
    }
    out
}

pub fn genseg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_genseg")).args(args).output().expect("run genseg")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A small, fast configuration: 64 px, narrow networks, few iterations.
pub fn small_config(data: &Path, method: Method, train_n: usize, iters: usize) -> TrainConfig {
    let data = DataConfig {
        load: LoadOptions { size: 64, ..Default::default() },
        n: train_n + 4,
        val_n: Some(4),
        ..DataConfig::new(data)
    };
    TrainConfig {
        method,
        seed: 1,
        width: 16,
        depth: 4,
        iters,
        val_every: 25,
        gan: GanConfig { ngf: 16, ndf: 16, ..Default::default() },
        pretrain_iters: 100,
        arch_lr: 3e-2,
        ..TrainConfig::new(data)
    }
}

/// A small, fast 3-D configuration on MSD hippocampus volumes (32x48x32, both labels) in `data`
/// (all of them, or a [`shared_subset`]).
pub fn small_volume_config(data: &Path, method: Method, train_n: usize, iters: usize) -> TrainConfig {
    let mut cfg = small_config(data, method, train_n, iters);
    cfg.data.n = train_n + 2;
    cfg.data.val_n = Some(2);
    cfg.width = 8;
    cfg.batch_size = 2;
    cfg.val_every = 20;
    cfg.gan = GanConfig { ngf: 4, ndf: 4, ..Default::default() };
    cfg
}

/// Mean test Dice (over cases and labels) of an untrained network of the same configuration: the
/// floor a trained model must clear.
pub fn untrained_dice(cfg: &TrainConfig) -> f64 {
    let splits = genseg::data::split::load_splits(&cfg.data, cfg.seed).unwrap();
    tch::manual_seed(cfg.seed as i64);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = genseg::models::segnet::SegNet::new(&vs.root(), &cfg.net(&splits.train));
    let (cases, _) = genseg::eval::evaluate(&net, &splits.test, tch::Device::Cpu, cfg.empty_policy);
    genseg::eval::report::summarize(&cases).dice.mean
}

/// A run folder's metrics.jsonl, one JSON value per validation.
pub fn metrics_lines(run: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A small phantom dataset written by the project itself.
pub fn phantom_dataset(dir: &Path, n: usize) -> PathBuf {
    let data = dir.join("phantom");
    genseg::data::phantom::write_dataset(&data, n, 64, 5).unwrap();
    data
}

/// A path as a command-line argument.
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// The share of mask pixels `export` found equal to predict's (its "masks: X % ..." line).
pub fn mask_agreement(stdout: &str) -> f64 {
    let line = stdout.lines().find(|l| l.starts_with("masks: ")).expect("export's mask agreement line");
    line["masks: ".len()..].split(' ').next().unwrap().parse().unwrap()
}
