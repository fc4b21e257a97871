//! A fit's report.html: the plan and why, the cross-validation table, the choice, the chosen
//! candidate's validation overlays (worst to best case) and its fold runs' curves.
use super::cv::{CvResult, FoldScore};
use super::FitRecord;
use crate::data::SegDataset;
use crate::eval::metrics::CaseMetrics;
use crate::runtime::write_atomic;
use crate::viz::escape_html as escape;
use anyhow::Result;
use std::path::Path;
use tch::Tensor;

/// report.html and overlays_val.png in `out` (relative links: the page travels with the folder).
pub fn write(out: &Path, record: &FitRecord, cv: &CvResult, scores: &[FoldScore], spent_s: f64) -> Result<()> {
    let chosen: Vec<&FoldScore> = scores.iter().filter(|s| s.candidate == cv.chosen).collect();
    if let Some(first) = chosen.first() {
        let val = SegDataset::new(
            chosen.iter().flat_map(|s| s.val.ids.clone()).collect(),
            Tensor::cat(&chosen.iter().map(|s| s.val.images.shallow_clone()).collect::<Vec<_>>(), 0),
            Tensor::cat(&chosen.iter().map(|s| s.val.masks.shallow_clone()).collect::<Vec<_>>(), 0),
            first.val.labels.clone(),
        );
        let probs = Tensor::cat(&chosen.iter().map(|s| s.probs.shallow_clone()).collect::<Vec<_>>(), 0);
        let cases: Vec<CaseMetrics> = chosen.iter().flat_map(|s| s.cases.clone()).collect();
        crate::train::report::save_overlays(&out.join("overlays_val.png"), &val, &probs, &cases)?;
    }
    let plan = &record.plan;
    let data = record.config.data.display().to_string();
    let mut h = crate::viz::report_head(
        &format!("genseg fit {data}"),
        ".row { display: flex; gap: 1em; flex-wrap: wrap; } .row figure { flex: 1; min-width: 250px; margin: 0; }",
    );
    h += &format!(
        "<h1>genseg fit: {0}</h1>\n\
         <p>{1} pairs; {2:.0} s spent of a {3:.0} s budget on {4}. Files: <a href=\"plan.json\">plan.json</a>, \
         <a href=\"ensemble.json\">ensemble.json</a>.</p>\n<h2>Plan</h2>\n<p>{5} px, U-Net width {6} depth {7}, batch {8}, \
         {9} iterations in the first fold (later folds: what the measured rate affords, up to {full}), {10} folds.</p>\n<ul>\n",
        escape(&data),
        plan.profile.pairs,
        spent_s,
        plan.budget_s,
        escape(&plan.device),
        plan.size,
        plan.width,
        plan.depth,
        plan.batch_size,
        plan.iters,
        plan.folds,
        full = super::plan::FULL_ITERS
    );
    for r in &plan.reasons {
        h += &format!("<li>{}</li>\n", escape(r));
    }
    h += "</ul>\n<h2>Cross-validation</h2>\n<p>Validation Dice of each pair, scored by the fold model that did not \
          train on it (its last model); 95 % bootstrap intervals; differences paired by case. The best-validation \
          checkpoints' mean on the same cases is optimistic (chosen on them).</p>\n\
          <table>\n<tr><th>candidate</th><th>fold runs</th><th>mean Dice</th><th>95 % interval</th><th>vs reference</th>\
          <th>best-validation checkpoints</th><th>iterations (trained / best)</th><th>seconds</th></tr>\n";
    for row in &cv.rows {
        let interval = row.interval.map(|(lo, hi)| format!("[{lo:.3}, {hi:.3}]")).unwrap_or_default();
        let iters: Vec<String> =
            row.stopped_iters.iter().zip(&row.best_iters).map(|(s, b)| format!("{s}/{b}")).collect();
        h += &format!(
            "<tr><td>{}{}</td><td>{}</td><td>{:.3}</td><td>{interval}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td></tr>\n",
            escape(row.candidate.name()),
            if row.candidate == cv.chosen { " (chosen)" } else { "" },
            row.runs.len(),
            row.mean,
            escape(row.vs_reference.as_deref().unwrap_or("reference")),
            row.best_checkpoint_mean.map(|m| format!("{m:.3}")).unwrap_or_default(),
            iters.join(", "),
            row.seconds
        );
    }
    h += &format!("</table>\n<p><b>Chosen:</b> {}</p>\n", escape(&cv.reason));
    h += "<h2>Validation cases of the chosen candidate, worst to best</h2>\n\
          <p>Each case: the image, then the fold model's prediction tinted red and the reference mask \
          outlined in green.</p>\n<img src=\"overlays_val.png\" alt=\"validation overlays\">\n<h2>Training curves of its fold runs</h2>\n<div class=\"row\">";
    for run in cv.members(cv.chosen) {
        let rel = run.display().to_string();
        h += &format!(
            "<figure><img src=\"{0}/curves.png\" alt=\"curves of {0}\"><figcaption>{0}</figcaption></figure>",
            escape(&rel)
        );
    }
    h += "</div>\n</body></html>\n";
    write_atomic(&out.join("report.html"), h.as_bytes())
}
