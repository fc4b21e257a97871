//! `serve`'s flags: the data, the project folder, where to listen, the loop's strategy and pace;
//! and `experimental annotation-campaign`, the loop with a simulated annotator.
use super::values::at_least_1;
use anyhow::Result;
use clap::builder::TypedValueParser;
use clap::Args;
use genseg::serve::app::LoopConfig;
use genseg::serve::campaign::CampaignConfig;
use genseg::serve::model::RetrainConfig;
use genseg::serve::queue::Strategy;
use genseg::serve::ServeConfig;
use std::path::PathBuf;

#[derive(Args, Clone)]
pub struct ServeArgs {
    /// Folder of images to annotate: images/ (with masks/ where some are annotated already) or
    /// a folder of images; never written to
    pub data: PathBuf,
    /// The project folder: annotations (every version kept), models, settings (created; rerun to
    /// continue)
    #[arg(long)]
    pub out: PathBuf,
    /// Port to listen on (0: any free port)
    #[arg(long, default_value_t = 8321)]
    pub port: u16,
    /// Address to listen on; anything but 127.0.0.1 lets other machines reach the page
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Which image to offer next: random, uncertainty (the model's ensemble disagreement) or
    /// diverse (uncertainty plus diversity; neither beat random in docs/RESULTS.md's campaign)
    #[arg(long, value_enum, default_value_t = Strategy::Random)]
    pub strategy: Strategy,
    #[command(flatten)]
    pub retrain: RetrainArgs,
    /// Write the annotated pairs as an nnU-Net v2 raw data set into this new folder, then exit
    #[arg(long)]
    pub export_nnunet: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub struct RetrainArgs {
    /// Retrain after this many newly annotated images (0: only with the page's Train button)
    #[arg(long, default_value_t = 5)]
    pub retrain_every: usize,
    /// Wall-clock budget of each retrain (a `genseg fit`), e.g. 3m, 90s
    #[arg(long, default_value = "3m", value_parser = genseg::fit::budget::parse_budget)]
    pub budget: f64,
    /// Fold models of each retrain (their disagreement ranks the queue)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(2..).map(|k| k as usize))]
    pub folds: usize,
    /// Seed of the queue's random order and of every retrain
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl RetrainArgs {
    fn config(&self, device: &str, threads: usize) -> Result<RetrainConfig> {
        Ok(RetrainConfig {
            budget_s: self.budget,
            folds: self.folds,
            seed: self.seed,
            exe: std::env::current_exe()?,
            device: device.to_string(),
            threads,
        })
    }
}

impl ServeArgs {
    pub fn run(&self, device_flag: &str, threads: usize, device: tch::Device) -> Result<()> {
        if let Some(dir) = &self.export_nnunet {
            let n = genseg::serve::export_nnunet(&self.data, &self.out, dir, device)?;
            genseg::out!("{n} annotated pairs as an nnU-Net v2 raw data set in {}", dir.display());
            return Ok(());
        }
        let config = LoopConfig {
            retrain_every: self.retrain.retrain_every,
            retrain: self.retrain.config(device_flag, threads)?,
        };
        let cfg = ServeConfig {
            data: self.data.clone(),
            out: self.out.clone(),
            address: std::net::SocketAddr::new(self.host, self.port),
            strategy: self.strategy,
            config,
        };
        genseg::serve::run(&cfg, device)
    }
}

/// `experimental annotation-campaign`: the serve loop with the true masks as the annotator.
#[derive(Args, Clone)]
pub struct CampaignArgs {
    /// A labelled set (images/ + masks/)
    pub data: PathBuf,
    /// random, uncertainty or diverse
    #[arg(long, value_enum)]
    pub strategy: Strategy,
    /// Annotated images after each round, comma separated (the first drawn from scratch)
    #[arg(long, value_delimiter = ',', default_value = "4,8,16,28,40", value_parser = at_least_1)]
    pub rounds: Vec<usize>,
    /// Held-out test images
    #[arg(long, default_value_t = 100, value_parser = at_least_1)]
    pub test_n: usize,
    /// Images the strategy chooses from
    #[arg(long, default_value_t = 200, value_parser = at_least_1)]
    pub pool_n: usize,
    #[command(flatten)]
    pub retrain: RetrainArgs,
    /// The campaign folder (rerun to resume)
    #[arg(long)]
    pub out: PathBuf,
}

impl CampaignArgs {
    pub fn run(&self, device: tch::Device) -> Result<()> {
        let cfg = CampaignConfig {
            data: std::path::absolute(&self.data)?,
            strategy: self.strategy,
            seed: self.retrain.seed,
            rounds: self.rounds.clone(),
            test_n: self.test_n,
            pool_n: self.pool_n,
            budget_s: self.retrain.budget,
            folds: self.retrain.folds,
        };
        genseg::serve::campaign::run(&cfg, &self.out, &std::env::current_exe()?, device)?;
        genseg::out!(
            "campaign: {} and {}",
            self.out.join("rounds.csv").display(),
            self.out.join("effort.csv").display()
        );
        Ok(())
    }
}
