//! `fit`'s flags: the data, a budget, folds; everything else is planned from the data.
use anyhow::Result;
use clap::builder::TypedValueParser;
use clap::Args;
use genseg::data::set::LoadOptions;
use genseg::fit::FitConfig;
use std::path::PathBuf;

#[derive(Args, Clone)]
pub struct FitArgs {
    /// Dataset folder of labelled pairs: images/ + masks/, or nnU-Net's imagesTr/ + labelsTr/;
    /// every pair trains and validates (k-fold)
    pub data: PathBuf,
    /// Folder of images without masks (none may be a labelled image); adds the semi-supervised
    /// candidate where the budget gives every candidate full iterations
    #[arg(long)]
    pub unlabelled: Option<PathBuf>,
    /// Wall-clock budget of the whole fit, e.g. 20m, 90s, 1h30m (the plan and the cross-validation
    /// fit it; kept within 10 %)
    #[arg(long, default_value = "20m", value_parser = genseg::fit::budget::parse_budget)]
    pub budget: f64,
    /// Cross-validation folds [default: 5, fewer for fewer than 10 pairs]
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..).map(|k| k as usize))]
    pub folds: Option<usize>,
    /// The candidates to cross-validate, comma separated, all of them whatever the budget
    /// [default: augment, copy-paste; semi with --unlabelled and more when the budget allows]
    #[arg(long, value_delimiter = ',', value_enum)]
    pub candidates: Option<Vec<genseg::fit::Candidate>>,
    /// Seed of the folds and of every run
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// 1 or 3 input channels (default: from the first image)
    #[arg(long)]
    pub channels: Option<usize>,
    /// Extra mask file suffix to strip when pairing (repeatable)
    #[arg(long = "mask-suffix")]
    pub mask_suffix: Vec<String>,
    /// Python with torch, onnx and onnxruntime for model.onnx [default: the venv genseg was built
    /// with]
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Skip model.onnx (predict reads the fit folder either way)
    #[arg(long)]
    pub no_onnx: bool,
    /// Run on Slurm: a plan job, the fold runs as a job array, then the finishing fit; =OPTIONS
    /// go to every sbatch call, e.g. --slurm="--partition=gpu --gres=gpu:1"
    #[arg(long, value_name = "SBATCH_OPTIONS", num_args = 0..=1, require_equals = true, default_missing_value = "",
          allow_hyphen_values = true)]
    pub slurm: Option<String>,
    /// Internal: the plan job of --slurm (its sbatch options)
    #[arg(long, hide = true, require_equals = true, allow_hyphen_values = true)]
    pub slurm_plan: Option<String>,
    /// Internal: a fold-run task of --slurm
    #[arg(long, hide = true)]
    pub fold_run: Option<usize>,
    /// The fit folder (created; rerun the same command to resume)
    #[arg(long)]
    pub out: PathBuf,
}

impl FitArgs {
    pub fn run(&self, device: tch::Device) -> Result<()> {
        if let Some(i) = self.fold_run {
            return genseg::fit::slurm::fold_run(&self.config()?, &self.out, i, device);
        }
        if let Some(options) = &self.slurm_plan {
            let (array, finish) =
                genseg::fit::slurm::plan_and_submit(&self.config()?, &self.out, &slurm_command()?, options, device)?;
            genseg::out!("fold runs submitted as job array {array}, the finishing fit as job {finish}");
            return Ok(());
        }
        if let Some(options) = &self.slurm {
            let job = genseg::fit::slurm::submit(&self.out, &slurm_command()?, options)?;
            genseg::out!(
                "the fit's plan is Slurm job {job}; it submits the fold runs and the finishing fit (logs in {})",
                self.out.join("slurm").display()
            );
            return Ok(());
        }
        let s = genseg::fit::run(&self.config()?, &self.out, device)?;
        let out = self.out.display();
        genseg::out!(
            "chosen: {} (cross-validated Dice {:.3}), an ensemble of {} models, in {:.0} s",
            s.chosen.name(),
            s.cv_dice,
            s.members,
            s.seconds
        );
        genseg::out!("fit folder: {out} (report.html); predict with: genseg predict --run {out} IMAGES --out DIR");
        if let Some(onnx) = s.onnx {
            genseg::out!("ONNX: {}", onnx.display());
        }
        Ok(())
    }

    pub fn config(&self) -> Result<FitConfig> {
        let mut load = LoadOptions { channels: self.channels, ..LoadOptions::default() };
        load.mask_suffixes.extend(self.mask_suffix.iter().cloned());
        // Absolute, so a resumed fit is the same fit from any folder.
        let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
        Ok(FitConfig {
            data: absolute(&self.data),
            load,
            unlabelled: self.unlabelled.as_ref().map(absolute),
            budget_s: self.budget,
            folds: self.folds,
            seed: self.seed,
            candidates: self.candidates.clone(),
            python: match self.no_onnx {
                true => None,
                false => Some(self.python.clone().unwrap_or_else(genseg::export::default_python)),
            },
        })
    }
}

/// This fit's command line for its Slurm jobs: the program and its arguments without the
/// submission's flags and `--threads` (each job script sets its own).
fn slurm_command() -> Result<Vec<String>> {
    super::tools::own_command(&["--threads", "--fold-run"], &["--slurm", "--slurm-plan"])
}
