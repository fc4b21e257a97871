//! From the data's [`Profile`] and a time budget to what `fit` trains (nnU-Net's fingerprint ->
//! plan): the working resolution, network, iterations, folds and candidate arms that fit the
//! budget, each choice with its reason.
use super::budget::training_seconds;
use super::profile::Profile;
use super::Candidate;
use crate::data::set::LoadOptions;
use crate::learn::loss::{segmentation_loss, RegionLoss};
use crate::learn::optim::{gradients, OptimConfig, Optimizer};
use crate::models::segnet::{NetConfig, SegNet};
use crate::models::unet::{UNetConfig, Upsampling};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

/// What `fit` trains, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub profile: Profile,
    /// Wall-clock budget of the whole fit, seconds.
    pub budget_s: f64,
    /// Of it, the seconds the cross-validation may take (the rest: planning, export, report).
    pub training_s: f64,
    pub device: String,
    /// Square side in pixels (2-D); volumes keep their load shape.
    pub size: u32,
    pub width: i64,
    pub depth: usize,
    pub batch_size: i64,
    /// Iterations of the first fold's runs; later folds get what the rate measured on the
    /// earlier ones affords, up to [`FULL_ITERS`] ([`super::cv`]).
    pub iters: usize,
    pub folds: usize,
    /// In the order they are tried; the first is the reference of the paired differences.
    pub candidates: Vec<Candidate>,
    #[serde(default)]
    pub runs: Runs,
    /// Measured milliseconds per U-Net training step at each side tried, and at the chosen one.
    pub step_ms: Vec<(u32, f64)>,
    pub ms_per_step: f64,
    pub reasons: Vec<String>,
}

/// How the fold runs share the budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Runs {
    /// On one machine: the budget bounds their sum.
    #[default]
    OneAfterAnother,
    /// As tasks of a Slurm array (`fit --slurm`): the budget bounds each run, so the costliest
    /// candidate's run sets the side and iterations.
    SideBySide,
}

/// Iteration cap of a fold run when the budget allows it: `train`'s default.
pub const FULL_ITERS: usize = 1000;
/// Fewer iterations than this and candidates are dropped before iterations are cut further.
const FEW_ITERS: usize = 300;
/// A fold run gets at least this many iterations, or the cross-validation ends before it; a
/// budget whose first fold cannot afford them is refused.
pub const MIN_ITERS: usize = 50;
/// Sides tried, smallest first.
const SIDES: [u32; 7] = [64, 96, 128, 192, 256, 384, 512];
/// A real training iteration (batch drawing, augmentation, validation every 50) over a bare
/// measured step, before the first fold run measures it: the refit study's 120 fold runs took
/// 0.84-1.24 (median 1.03) measured steps an iteration, so the first fold's runs get about as
/// many iterations as the later ones (1.5 gave them about 600 where the later ones ran 1000).
pub const OVERHEAD: f64 = 1.25;

/// Folds for `n` pairs: `asked` (5 by default), fewer when n is small so that every fold
/// validates at least 2 pairs and trains at least 2.
pub fn fold_count(n: usize, asked: Option<usize>) -> Result<usize> {
    if n < 4 {
        bail!("{n} labelled pairs: fit cross-validates and needs at least 4 (2 to train, 2 to validate)");
    }
    let k = asked.unwrap_or(5);
    if k < 2 {
        bail!("--folds {k}: cross-validation needs at least 2 folds");
    }
    Ok(k.min(n / 2))
}

/// Milliseconds per training step of `net` on random `[batch, channels, shape...]` inputs (forward,
/// BCE + Dice, backward, Adam): the median of several steps.
pub fn step_ms(net: &NetConfig, channels: i64, shape: &[i64], batch: i64, device: Device) -> f64 {
    tch::manual_seed(0);
    let vs = VarStore::new(device);
    let seg = SegNet::new(&vs.root(), net);
    let mut opt = Optimizer::new(OptimConfig::adam(1e-3, 0.9), vs.trainable_variables());
    let mut dims = vec![batch, channels];
    dims.extend_from_slice(shape);
    let x = Tensor::rand(dims.as_slice(), (Kind::Float, device));
    dims[1] = 1;
    let y = Tensor::rand(dims.as_slice(), (Kind::Float, device)).gt(0.7).to_kind(Kind::Float);
    let mut step = || {
        let loss = segmentation_loss(&seg.forward_t(&x, true), &y, RegionLoss::Dice);
        let g = gradients(&loss, opt.params());
        opt.step(&g);
        if device.is_cuda() {
            tch::Cuda::synchronize(0);
        }
    };
    // The first steps set up kernels and memory: two warm-up steps, then the median of up to 7
    // (at least 3, at most about 2 s of them).
    step();
    step();
    let started = Instant::now();
    let mut times = Vec::new();
    while times.len() < 3 || (times.len() < 7 && started.elapsed().as_secs_f64() < 2.0) {
        let t = Instant::now();
        step();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    crate::eval::stats::median(&times)
}

/// The fewest iterations the fold runs may be cut to for `c` to be tried beside the candidates
/// before it. `semi` only where every run keeps [`FULL_ITERS`]: sharing a 10-minute budget with
/// it cut the other candidates to 521-629 iterations, and the chosen candidate's cross-validated
/// Dice fell in 3 of 3 seeds (kvasir_seg, N = 16: 0.510, 0.447, 0.419 without the unlabelled
/// images, 0.440, 0.411, 0.335 with them; docs/study/fit/unlabelled/results.md).
fn fewest_iters(c: Candidate) -> usize {
    match c {
        Candidate::Semi => FULL_ITERS,
        _ => FEW_ITERS,
    }
}

/// The candidates kept, in order, and those left out: each after the first is kept when the runs
/// of those kept with it still get its [`fewest_iters`] (`affordable` of them).
fn keep_affordable(
    candidates: &[Candidate],
    affordable: impl Fn(&[Candidate]) -> usize,
) -> (Vec<Candidate>, Vec<Candidate>) {
    let mut kept = candidates[..1].to_vec();
    let mut left_out = Vec::new();
    for &c in &candidates[1..] {
        let with = [kept.as_slice(), &[c]].concat();
        if affordable(&with) >= fewest_iters(c) {
            kept = with;
        } else {
            left_out.push(c);
        }
    }
    (kept, left_out)
}

/// What the planner is given besides the data.
pub struct PlanInput<'a> {
    pub profile: Profile,
    pub load: &'a LoadOptions,
    pub budget_s: f64,
    pub folds: usize,
    /// Candidates every fit tries, then those tried when the budget leaves room, in order.
    pub required: Vec<Candidate>,
    pub optional: Vec<Candidate>,
    pub runs: Runs,
    /// Whether required candidates may be left out when the budget is short (not when the user
    /// named them).
    pub droppable: bool,
    /// Whether the fit ends with an ONNX export (which takes part of the budget).
    pub exports: bool,
}

/// The plan: the largest side at which every required candidate gets [`FULL_ITERS`] on every
/// fold; then as many iterations as the budget allows there (keeping required candidates in
/// order while the runs still get each one's [`fewest_iters`]); then optional candidates while
/// they fit at full iterations.
pub fn plan(input: PlanInput, device: Device) -> Result<Plan> {
    let PlanInput { profile, load, budget_s, folds, mut required, optional, runs, droppable, exports } = input;
    let cuda = device.is_cuda();
    let (width, batch_size) = if cuda { (32, 8) } else { (16, 4) };
    let training_s = training_seconds(budget_s, exports);
    let mut reasons = vec![format!(
        "{} pairs, {}-D, {} channel(s), median foreground share {:.3}; {folds} folds",
        profile.pairs, profile.dims, profile.channels, profile.foreground_median
    )];
    let depth_at = |side: u32| if side >= 128 { 5 } else { 4 };
    let net_at = |side: u32| {
        NetConfig::Unet(UNetConfig {
            in_channels: profile.channels as i64,
            out_channels: 1,
            width,
            depth: depth_at(side),
            upsampling: Upsampling::Transposed,
            dims: profile.dims,
            deep_supervision: false,
        })
    };
    // Seconds the runs of `cands` take at `iters` iterations: all of them one after another, or
    // the costliest alone when they train side by side.
    let cost = |cands: &[Candidate], step_ms: f64, iters: usize| {
        let factor = match runs {
            Runs::OneAfterAnother => folds as f64 * cands.iter().map(|c| c.cost()).sum::<f64>(),
            Runs::SideBySide => cands.iter().map(|c| c.cost()).fold(0.0, f64::max),
        };
        factor * iters as f64 * step_ms * OVERHEAD / 1000.0
    };
    // What must fit at the chosen side, and how the runs share the machine.
    let (full_runs, sharing) = match runs {
        Runs::OneAfterAnother => {
            (format!("{} candidate(s) x {folds} folds x {FULL_ITERS} iterations", required.len()), "")
        }
        Runs::SideBySide => (
            format!("one run of {FULL_ITERS} iterations of the costliest of {} candidate(s)", required.len()),
            " (the fold runs train side by side as Slurm tasks)",
        ),
    };
    let mut step_ms_at = Vec::new();
    let (size, ms) = if profile.dims == 3 {
        let shape: Vec<i64> = load.volume.shape.iter().map(|&s| s as i64).collect();
        let ms = self::step_ms(&net_at(64), profile.channels as i64, &shape, batch_size, device);
        step_ms_at.push((0, ms));
        reasons.push(format!("volumes at their load shape {:?}: {ms:.0} ms a step", load.volume.shape));
        (load.size, ms)
    } else {
        let native = profile.median_side.unwrap_or(64);
        let mut sides: Vec<u32> = SIDES.iter().copied().filter(|&s| s <= native).collect();
        if sides.is_empty() {
            // Small images: their own side, a multiple of 8 for a depth-4 U-Net.
            sides.push((native / 8 * 8).max(16));
        }
        let mut chosen = None;
        for &side in &sides {
            let ms =
                self::step_ms(&net_at(side), profile.channels as i64, &[side as i64, side as i64], batch_size, device);
            step_ms_at.push((side, ms));
            if chosen.is_none() || cost(&required, ms, FULL_ITERS) <= training_s {
                chosen = Some((side, ms));
            }
            if cost(&required, ms, FULL_ITERS) > training_s {
                break;
            }
        }
        let (side, ms) = chosen.expect("at least one side");
        let full_s = cost(&required, ms, FULL_ITERS);
        reasons.push(if full_s <= training_s {
            format!(
                "{side} px: the largest side (of {sides:?}, none above the median image side {native} px) at which \
                 {full_runs} fit {training_s:.0} s of training{sharing} ({ms:.0} ms a step measured)"
            )
        } else {
            format!(
                "{side} px: the smallest side (of {sides:?}, none above the median image side {native} px); even there \
                 {full_runs} would take {full_s:.0} s, more than the {training_s:.0} s of training{sharing} ({ms:.0} \
                 ms a step measured), so iterations or candidates give way"
            )
        });
        (side, ms)
    };
    let affordable = |cands: &[Candidate]| ((training_s / cost(cands, ms, 1)) as usize).min(FULL_ITERS);
    // Side by side, leaving out a run does not give the others more time. One after another, a
    // candidate that would cut every run below its fewest_iters is left out, and the cheaper ones
    // after it are still tried.
    if droppable && runs == Runs::OneAfterAnother && affordable(&required) < FULL_ITERS {
        let (kept, left_out) = keep_affordable(&required, affordable);
        for c in left_out {
            reasons.push(format!(
                "{}: left out, with it the fold runs would get fewer than the {} iterations it needs",
                c.name(),
                fewest_iters(c)
            ));
        }
        required = kept;
    }
    let iters = affordable(&required);
    if iters < MIN_ITERS {
        // The first fold trains MIN_ITERS whatever the rate measured later says (cv's
        // fold_iterations), so a budget that cannot afford them would be overrun.
        let first_fold_s = match runs {
            Runs::OneAfterAnother => cost(&required, ms, MIN_ITERS) / folds as f64,
            Runs::SideBySide => cost(&required, ms, MIN_ITERS),
        };
        if first_fold_s > training_s {
            // The least multiple of 10 s that affords it (training_seconds gives at least half a
            // budget, so the search ends by twice the first fold's time).
            let enough = (1..)
                .map(|k| k as f64 * 10.0)
                .find(|&b| training_seconds(b, exports) >= first_fold_s)
                .expect("an unbounded search over budgets");
            let runs_of = match runs {
                Runs::OneAfterAnother => format!("the first fold's {} run(s)", required.len()),
                Runs::SideBySide => "a fold run".into(),
            };
            bail!(
                "--budget {budget_s:.0} s is too short for this data: {runs_of} of {MIN_ITERS} iterations need about \
                 {first_fold_s:.0} s at {ms:.0} ms a step; give --budget {enough:.0}s or more"
            );
        }
        reasons.push(format!(
            "{MIN_ITERS} iterations a fold run, the least a fold trains: the budget affords fewer at the estimated \
             rate, so the folds after the first run only while time is left"
        ));
    }
    let iters = iters.max(MIN_ITERS);
    if iters < FULL_ITERS {
        reasons.push(match runs {
            Runs::OneAfterAnother => format!(
                "{iters} iterations a fold run: what the budget affords at the estimated rate (full: {FULL_ITERS}); \
                 later folds run what the rate measured on the first affords"
            ),
            Runs::SideBySide => format!(
                "{iters} iterations a fold run: what the budget affords one run at the estimated rate (full: {FULL_ITERS})"
            ),
        });
    }
    let mut candidates = required;
    for c in optional {
        let mut with = candidates.clone();
        with.push(c);
        if cost(&with, ms, iters) <= training_s {
            reasons.push(format!("{}: the budget leaves room for it", c.name()));
            candidates = with;
        } else {
            reasons.push(format!("{}: not tried, it does not fit the budget", c.name()));
        }
    }
    Ok(Plan {
        profile,
        budget_s,
        training_s,
        device: if cuda { "cuda".into() } else { "cpu".into() },
        size,
        width,
        depth: depth_at(size),
        batch_size,
        iters,
        folds,
        candidates,
        runs,
        step_ms: step_ms_at,
        ms_per_step: ms,
        reasons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(side: u32) -> Profile {
        Profile {
            dims: 2,
            channels: 1,
            pairs: 20,
            ids: vec![],
            median_side: Some(side),
            foreground_median: 0.1,
            foreground_min: 0.05,
            empty_masks: 0,
        }
    }

    fn input(side: u32, budget_s: f64, droppable: bool) -> PlanInput<'static> {
        static LOAD: std::sync::OnceLock<LoadOptions> = std::sync::OnceLock::new();
        PlanInput {
            profile: profile(side),
            load: LOAD.get_or_init(LoadOptions::default),
            budget_s,
            folds: 5,
            required: vec![Candidate::Augment, Candidate::CopyPaste],
            optional: vec![Candidate::AugmentNnunet],
            runs: Runs::OneAfterAnother,
            droppable,
            exports: false,
        }
    }

    /// A generous budget: the images' own side (never above it), full iterations, the optional
    /// candidate too. A tiny one: copy-paste left out before iterations are cut, unless named;
    /// one too small for the first fold: refused.
    #[test]
    fn the_budget_decides_side_iterations_and_candidates() {
        let p = plan(input(24, 1e6, true), Device::Cpu).unwrap();
        assert_eq!((p.size, p.depth, p.iters), (24, 4, FULL_ITERS));
        assert_eq!(p.candidates, [Candidate::Augment, Candidate::CopyPaste, Candidate::AugmentNnunet]);
        assert!(p.training_s < p.budget_s);
        let p = plan(input(24, 20.0, true), Device::Cpu).unwrap();
        assert_eq!(p.candidates, [Candidate::Augment]);
        assert!(p.iters < FULL_ITERS, "{}", p.iters);
        let p = plan(input(24, 20.0, false), Device::Cpu).unwrap();
        assert_eq!(p.candidates, [Candidate::Augment, Candidate::CopyPaste]);
        assert!(p.iters >= MIN_ITERS);
        // One that cannot afford the first fold's least iterations is refused, naming the fix.
        let err = plan(input(24, 0.2, true), Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("--budget") && err.contains("or more"), "{err}");
    }

    /// Side by side (Slurm tasks) the budget bounds one run, not the sum of the folds': the
    /// iterations one run affords, no candidate left out; a budget too short for one run refused.
    #[test]
    fn side_by_side_the_budget_bounds_each_run() {
        let side_by_side = |budget_s| PlanInput { runs: Runs::SideBySide, ..input(24, budget_s, true) };
        let sequential = plan(input(24, 20.0, true), Device::Cpu).unwrap();
        let p = plan(side_by_side(20.0), Device::Cpu).unwrap();
        assert_eq!((p.runs, p.size), (Runs::SideBySide, 24));
        assert_eq!(p.candidates, [Candidate::Augment, Candidate::CopyPaste]);
        // Copy-paste, the costlier of the two, sets the iterations.
        let run_s = Candidate::CopyPaste.cost() * p.ms_per_step * OVERHEAD / 1000.0;
        let affordable = (p.training_s / run_s) as usize;
        assert_eq!(p.iters, affordable.clamp(MIN_ITERS, FULL_ITERS));
        assert!(p.iters > sequential.iters, "{} vs {}", p.iters, sequential.iters);
        let err = plan(side_by_side(0.01), Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("a fold run of 50 iterations") && err.contains("or more"), "{err}");
    }

    /// A candidate that would cut the runs below its fewest iterations is left out, and a cheaper
    /// one after it still kept; semi only where every run keeps full iterations.
    #[test]
    fn a_costly_candidate_left_out_does_not_take_cheaper_ones_with_it() {
        // Fold-run iterations `steps` afford, shared by the candidates by their cost.
        let at = |steps: f64| {
            move |cands: &[Candidate]| ((steps / cands.iter().map(|c| c.cost()).sum::<f64>()) as usize).min(FULL_ITERS)
        };
        let all = [Candidate::Augment, Candidate::Semi, Candidate::CopyPaste];
        let (augment, copy_paste) = (Candidate::Augment, Candidate::CopyPaste);
        // Room for all three at full iterations: all kept, in order.
        let (kept, left_out) = keep_affordable(&all, at(4750.0));
        assert_eq!((kept.as_slice(), left_out.len()), (&all[..], 0));
        // Room for augment and semi at 216 iterations: semi gives way and copy-paste (1.05) still
        // gets 390 (dropping from the end left augment alone).
        let (kept, left_out) = keep_affordable(&all, at(800.0));
        assert_eq!((kept, left_out), (vec![augment, copy_paste], vec![Candidate::Semi]));
        // Room for augment and semi at 990 iterations: semi still gives way, copy-paste fits.
        let (kept, left_out) = keep_affordable(&all, at(3663.0));
        assert_eq!((kept, left_out), (vec![augment, copy_paste], vec![Candidate::Semi]));
        // Copy-paste is kept down to FEW_ITERS; below, augment alone.
        let (kept, _) = keep_affordable(&[augment, copy_paste], at(FEW_ITERS as f64 * 2.06));
        assert_eq!(kept, [augment, copy_paste]);
        let (kept, left_out) = keep_affordable(&all, at(FEW_ITERS as f64 * 2.0));
        assert_eq!((kept.as_slice(), left_out.len()), (&[augment][..], 2));
    }

    #[test]
    fn folds_shrink_for_few_pairs() {
        assert_eq!(fold_count(40, None).unwrap(), 5);
        assert_eq!(fold_count(16, None).unwrap(), 5);
        assert_eq!(fold_count(8, None).unwrap(), 4);
        assert_eq!(fold_count(5, None).unwrap(), 2);
        assert_eq!(fold_count(40, Some(10)).unwrap(), 10);
        assert!(fold_count(3, None).is_err());
        assert!(fold_count(40, Some(1)).is_err());
    }
}
