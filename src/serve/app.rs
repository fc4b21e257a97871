//! The server's state and the annotation loop: saves count towards the next retrain, which runs
//! in a background thread (the fit itself in a child process) while the page keeps working;
//! when it ends, proposals and the queue come from the new model.
use super::model::{self, Model, RetrainConfig};
use super::project::{Image, Project, SaveError};
use super::queue::{self, Strategy};
use anyhow::Result;
use serde::Serialize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tch::Device;

/// The fewest annotated images a retrain starts from (two folds of two).
pub const MIN_TO_TRAIN: usize = 4;

/// What the loop does after saves.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// A retrain starts after this many newly annotated images (0: only on demand).
    pub retrain_every: usize,
    pub retrain: RetrainConfig,
}

#[derive(Debug, Clone)]
pub enum Status {
    Idle,
    Training { version: u32, images: usize, started: Instant },
    Failed { version: u32, message: String },
}

pub struct App {
    pub project: Mutex<Project>,
    /// The project's images (fixed while it runs), for work done without the project's lock.
    pub images: Vec<Image>,
    pub model: Mutex<Option<Model>>,
    pub status: Mutex<Status>,
    pub strategy: Mutex<Strategy>,
    pub config: LoopConfig,
    pub device: Device,
}

/// What the page shows in its header.
#[derive(Debug, Serialize)]
pub struct StateView {
    pub images: usize,
    pub annotated: usize,
    /// Images the current model was trained on.
    pub in_training: usize,
    pub model_version: Option<u32>,
    pub strategy: &'static str,
    pub retrain_every: usize,
    pub training: TrainingView,
}

#[derive(Debug, Serialize)]
pub struct TrainingView {
    /// idle, training or failed.
    pub state: &'static str,
    pub version: Option<u32>,
    pub images: usize,
    pub seconds: f64,
    pub budget_s: f64,
    /// 0..1: the share of the retrain's time budget spent (a fit may end sooner).
    pub progress: f64,
    pub message: String,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not lock the expert out of saving: the data is still consistent
    // because every change is a whole file written before the state changes.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl App {
    /// The app of `project`: loads the newest ready model and resumes a retrain a killed server
    /// left unfinished.
    pub fn start(project: Project, strategy: Strategy, config: LoopConfig, device: Device) -> Result<Arc<App>> {
        let (ready, started) = model::versions_on_disk(&project.root);
        let images = project.images.clone();
        let current = match ready {
            Some(v) => Some(model::load(&project.root, &images, v, device)?),
            None => None,
        };
        let app = Arc::new(App {
            project: Mutex::new(project),
            images,
            model: Mutex::new(current),
            status: Mutex::new(Status::Idle),
            strategy: Mutex::new(strategy),
            config,
            device,
        });
        if let Some(v) = started.filter(|&s| Some(s) > ready) {
            tracing::info!("serve: resuming the retrain of model v{v}");
            let ids = model::snapshot(&lock(&app.project), v)?;
            app.train_in_background(v, ids.len());
        }
        Ok(app)
    }

    pub fn state(&self) -> StateView {
        let annotated = lock(&self.project).annotated().len();
        let (model_version, in_training) = match &*lock(&self.model) {
            Some(m) => (Some(m.version), m.trained_on.len()),
            None => (None, 0),
        };
        let budget_s = self.config.retrain.budget_s;
        let training = match &*lock(&self.status) {
            Status::Idle => TrainingView {
                state: "idle",
                version: None,
                images: 0,
                seconds: 0.0,
                budget_s,
                progress: 0.0,
                message: match annotated < MIN_TO_TRAIN {
                    true => format!("annotate {} more image(s) before the first model", MIN_TO_TRAIN - annotated),
                    false => String::new(),
                },
            },
            Status::Training { version, images, started } => {
                let seconds = started.elapsed().as_secs_f64();
                TrainingView {
                    state: "training",
                    version: Some(*version),
                    images: *images,
                    seconds,
                    budget_s,
                    progress: (seconds / budget_s).min(0.99),
                    message: format!("training model v{version} on {images} images"),
                }
            }
            Status::Failed { version, message } => TrainingView {
                state: "failed",
                version: Some(*version),
                images: 0,
                seconds: 0.0,
                budget_s,
                progress: 0.0,
                message: message.clone(),
            },
        };
        StateView {
            images: self.images.len(),
            annotated,
            in_training,
            model_version,
            strategy: lock(&self.strategy).name(),
            retrain_every: self.config.retrain_every,
            training,
        }
    }

    /// The annotated images, by id.
    pub fn annotated_ids(&self) -> Vec<String> {
        let project = lock(&self.project);
        project.annotated().into_iter().map(|i| project.images[i].id.clone()).collect()
    }

    /// The images without a mask, in the order the strategy offers them (skipped ones last).
    pub fn queue(&self) -> Vec<String> {
        let project = lock(&self.project);
        let (mut waiting, mut annotated) = (Vec::new(), Vec::new());
        for (i, im) in project.images.iter().enumerate() {
            match project.is_annotated(i) {
                true => annotated.push(im.id.clone()),
                false => waiting.push(im.id.clone()),
            }
        }
        let skipped = project.skipped().to_vec();
        drop(project);
        let strategy = *lock(&self.strategy);
        let model = lock(&self.model);
        let empty = Default::default();
        let (scores, features) = match &*model {
            Some(m) => (&m.scores, &m.features),
            None => (&empty, &Default::default()),
        };
        let seed = self.config.retrain.seed;
        let ordered = queue::order(strategy, &waiting, &annotated, scores, features, seed);
        queue::with_skips_last(ordered, &skipped)
    }

    /// Saves a mask (see [`Project::save`]) and starts a retrain when enough new images are
    /// annotated.
    pub fn save(self: &Arc<Self>, id: &str, base: u32, png: &[u8]) -> Result<u32, SaveError> {
        let version = lock(&self.project).save(id, base, png)?;
        let every = self.config.retrain_every;
        if every > 0 && self.new_since_last_model() >= every {
            match self.retrain() {
                Ok(v) => tracing::info!("serve: {every} new annotations; training model v{v}"),
                Err(why) => tracing::debug!("serve: no retrain yet: {why}"),
            }
        }
        Ok(version)
    }

    /// Annotated images the newest model (ready or training) was not given.
    fn new_since_last_model(&self) -> usize {
        let project = lock(&self.project);
        let (_, started) = model::versions_on_disk(&project.root);
        let trained = started.map(|v| model::snapshot_len(&project.root, v)).unwrap_or(0);
        project.annotated().len().saturating_sub(trained)
    }

    /// Starts a retrain on every annotated image now; refused (with the reason) while one runs
    /// or with too few annotations.
    pub fn retrain(self: &Arc<Self>) -> std::result::Result<u32, String> {
        if let Status::Training { version, .. } = &*lock(&self.status) {
            return Err(format!("model v{version} is training; wait for it to finish"));
        }
        let project = lock(&self.project);
        let annotated = project.annotated().len();
        if annotated < MIN_TO_TRAIN {
            return Err(format!("{annotated} image(s) annotated; a model needs at least {MIN_TO_TRAIN}"));
        }
        let (_, started) = model::versions_on_disk(&project.root);
        let version = started.map_or(1, |v| v + 1);
        let ids = model::snapshot(&project, version).map_err(|e| format!("{e:#}"))?;
        drop(project);
        self.train_in_background(version, ids.len());
        Ok(version)
    }

    fn train_in_background(self: &Arc<Self>, version: u32, images: usize) {
        *lock(&self.status) = Status::Training { version, images, started: Instant::now() };
        let app = Arc::clone(self);
        std::thread::spawn(move || {
            let root = lock(&app.project).root.clone();
            let done = model::fit(&root, version, &app.config.retrain)
                .and_then(|_| model::load(&root, &app.images, version, app.device));
            match done {
                Ok(m) => {
                    tracing::info!("serve: model v{version} is ready");
                    *lock(&app.model) = Some(m);
                    *lock(&app.status) = Status::Idle;
                }
                Err(e) => {
                    tracing::warn!("serve: {e:#}");
                    *lock(&app.status) = Status::Failed { version, message: format!("{e:#}") };
                }
            }
        });
    }

    /// Blocks until no retrain runs (for the annotation campaign and tests).
    pub fn wait_for_training(&self) -> std::result::Result<(), String> {
        loop {
            match &*lock(&self.status) {
                Status::Idle => return Ok(()),
                Status::Failed { message, .. } => return Err(message.clone()),
                Status::Training { .. } => {}
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}
