//! report.html: the study's tables and pictures in one page.
use super::tables::*;
use super::*;

/// report.html: one page with the tables, the efficiency plots and, per method, the overlays,
/// curves and generator samples of its run at the largest N and first seed (relative links, so
/// the page travels with the study folder).
pub(super) fn write_report(out: &Path, rows: &[Row], methods: &[Method], tables: &[Table]) -> Result<()> {
    let name = out.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let mut h = crate::viz::report_head(
        &format!("genseg study {name}"),
        ".pair { display: flex; gap: 1em; } .pair > * { flex: 1; min-width: 0; margin: 0; }",
    );
    h += &format!(
        "<h1>genseg study: {0}</h1>\n<p>{1} runs; methods {2}. Files: <a href=\"results.csv\">results.csv</a>, \
         <a href=\"results.md\">results.md</a>.</p>\n",
        escape(&name),
        rows.len(),
        escape(&methods.iter().map(|m| m.name()).collect::<Vec<_>>().join(", "))
    );
    h.push_str("<h2>Data efficiency</h2>\n<div class=\"pair\">");
    for png in ["efficiency.png", "efficiency_ood.png"].iter().filter(|p| out.join(p).is_file()) {
        h.push_str(&format!("<img src=\"{png}\" alt=\"{png}\">"));
    }
    h.push_str("</div>\n<h2>Tables</h2>\n");
    for t in tables {
        h.push_str(&t.html());
    }
    h.push_str(
        "<h2>Examples per method</h2>\n<p>Overlays: each case's prediction tinted red, its reference mask outlined \
         in green, named with its Dice.</p>\n",
    );
    let n = rows.iter().map(|r| r.n).max();
    for &m in methods {
        let Some(row) = rows.iter().filter(|r| r.summary.method == m && Some(r.n) == n).min_by_key(|r| r.seed) else {
            continue;
        };
        let dir = format!("runs/{}-n{}-s{}", m.name(), row.n, row.seed);
        h.push_str(&format!(
            "<h3>{} (N = {}, seed {}): test Dice {:.3}</h3>\n<div class=\"pair\">",
            m.name(),
            row.n,
            row.seed,
            row.summary.test.dice.mean
        ));
        for (file, what) in [
            ("overlays_test.png", "test overlays"),
            ("overlays_ood.png", "out-of-domain overlays"),
            ("curves.png", "training curves"),
            ("samples.png", "generator samples"),
        ] {
            if out.join(&dir).join(file).is_file() {
                h.push_str(&format!(
                    "<figure><img src=\"{dir}/{file}\" alt=\"{what}\"><figcaption>{what}</figcaption></figure>"
                ));
            }
        }
        h.push_str("</div>\n");
    }
    h.push_str("</body></html>\n");
    write_atomic(&out.join("report.html"), h.as_bytes())
}
