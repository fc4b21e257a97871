//! Pictures people look at: image grids, prediction overlays, training curves and the
//! data-efficiency plot, all saved as PNG.
use crate::runtime::write_atomic_with;
use anyhow::{anyhow, Result};
use image::{Rgb, RgbImage};
use plotters::prelude::*;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Every picture genseg draws goes through here: written atomically, deflated at the highest
/// level (the image crate's default is its fastest, which left plots several times larger).
pub fn save_png(path: &Path, img: &RgbImage) -> Result<()> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    write_atomic_with(path, |tmp| {
        let file = std::io::BufWriter::new(std::fs::File::create(tmp)?);
        img.write_with_encoder(PngEncoder::new_with_quality(file, CompressionType::Best, FilterType::Adaptive))?;
        Ok(())
    })
}

/// A `w` x `h` plot on white, drawn by `draw` and saved with [`save_png`].
fn plot_png<F>(path: &Path, (w, h): (u32, u32), draw: F) -> Result<()>
where
    F: FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>,
{
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(|e| anyhow!("{e}"))?;
    }
    save_png(path, &RgbImage::from_raw(w, h, buf).ok_or_else(|| anyhow!("plot buffer of the wrong size"))?)
}

/// `[C, H, W]` in [0, 1] (C = 1 or 3) to RGB.
pub fn tensor_to_rgb(t: &Tensor) -> RgbImage {
    let t = t.to_device(Device::Cpu).to_kind(Kind::Float).clamp(0.0, 1.0);
    let s = t.size();
    let data = Vec::<f32>::try_from(t.contiguous().view(-1)).expect("float tensor");
    crate::data::image_io::chw_to_rgb(&data, s[0] as usize, s[1] as u32, s[2] as u32)
}

/// One case `[C, spatial...]` as a picture `[C, H, W]`: a volume shows its middle slice across
/// the first axis.
pub fn picture(t: &Tensor) -> Tensor {
    if t.dim() == 4 {
        t.select(1, t.size()[1] / 2)
    } else {
        t.shallow_clone()
    }
}

/// Label channels `[L, spatial...]` as one grey picture `[1, H, W]`: label c at brightness (c+1)/L.
pub fn mask_picture(mask: &Tensor) -> Tensor {
    let m = picture(mask).to_device(Device::Cpu).to_kind(Kind::Float);
    let l = m.size()[0];
    let weights = (Tensor::arange(l, (Kind::Float, Device::Cpu)) + 1.0).view([l, 1, 1]) / l as f64;
    (m * weights).sum_dim_intlist(0, true, Kind::Float)
}

/// Foreground of any label in the picture of `[L, spatial...]`.
pub fn foreground(mask: &Tensor) -> Vec<bool> {
    mask_to_bools(&picture(mask).amax(0, false))
}

/// Tiles rows of `[C, H, W]` tensors (all the same size) with 2-px white gutters.
pub fn tensor_grid(rows: &[Vec<Tensor>]) -> RgbImage {
    let tiles: Vec<Vec<RgbImage>> = rows.iter().map(|r| r.iter().map(tensor_to_rgb).collect()).collect();
    image_grid(&tiles)
}

/// Tiles smaller than this (pixels, shorter side) are enlarged, nearest-neighbour, so that
/// 64 px crops and 32x48 volume slices stay readable.
/// Tiles are enlarged (nearest neighbour) to at least this side, so a lesion of a 64 px input
/// is visible.
const MIN_TILE_SIDE: u32 = 192;

pub fn image_grid(rows: &[Vec<RgbImage>]) -> RgbImage {
    let gap = 2;
    let (w, h) = rows.first().and_then(|r| r.first()).map(|i| i.dimensions()).unwrap_or((1, 1));
    let k = MIN_TILE_SIDE.div_ceil(w.min(h).max(1)).max(1);
    let (w, h) = (w * k, h * k);
    let cols = rows.iter().map(Vec::len).max().unwrap_or(1) as u32;
    let mut out =
        RgbImage::from_pixel(cols * (w + gap) + gap, rows.len() as u32 * (h + gap) + gap, Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        for (c, tile) in row.iter().enumerate() {
            let tile = image::imageops::resize(
                tile,
                tile.width() * k,
                tile.height() * k,
                image::imageops::FilterType::Nearest,
            );
            image::imageops::replace(
                &mut out,
                &tile,
                (gap + c as u32 * (w + gap)) as i64,
                (gap + r as u32 * (h + gap)) as i64,
            );
        }
    }
    out
}

fn boundary(mask: &[bool], w: usize, h: usize, x: usize, y: usize) -> bool {
    let at =
        |x: i64, y: i64| x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h && mask[y as usize * w + x as usize];
    let (xi, yi) = (x as i64, y as i64);
    at(xi, yi) && !(at(xi - 1, yi) && at(xi + 1, yi) && at(xi, yi - 1) && at(xi, yi + 1))
}

/// Image with the prediction tinted red and the reference outlined in green (when given).
pub fn overlay(image: &RgbImage, pred: &[bool], reference: Option<&[bool]>) -> RgbImage {
    let (w, h) = image.dimensions();
    let mut out = image.clone();
    for y in 0..h as usize {
        for x in 0..w as usize {
            let i = y * w as usize + x;
            let p = out.get_pixel_mut(x as u32, y as u32);
            if pred[i] {
                p.0 = [((p.0[0] as u32 + 255) / 2) as u8, p.0[1] / 2, p.0[2] / 2];
            }
            if let Some(r) = reference {
                if boundary(r, w as usize, h as usize, x, y) {
                    p.0 = [0, 255, 0];
                }
            }
        }
    }
    out
}

pub fn mask_to_bools(mask: &Tensor) -> Vec<bool> {
    Vec::<f32>::try_from(mask.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view(-1))
        .expect("float tensor")
        .into_iter()
        .map(|v| v > 0.5)
        .collect()
}

static FONT: std::sync::Once = std::sync::Once::new();

/// Plot text needs a font; DejaVu Sans ships in assets/ so no system font is required.
fn register_font() {
    FONT.call_once(|| {
        let _ =
            plotters::style::register_font("sans-serif", FontStyle::Normal, include_bytes!("../assets/DejaVuSans.ttf"));
    });
}

pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Optional (low, high) interval per point, drawn as error bars.
    pub intervals: Vec<(f64, f64)>,
}

/// Line chart of one or more series, with interval bars where given.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_x: bool,
) -> Result<()> {
    register_font();
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    let ys = series
        .iter()
        .flat_map(|s| s.points.iter().enumerate().map(|(i, p)| s.intervals.get(i).copied().unwrap_or((p.1, p.1))));
    let (y0, y1) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (lo, hi)| (a.min(lo), b.max(hi)));
    if !x0.is_finite() || !y0.is_finite() {
        return Err(anyhow!("nothing to plot for {}", path.display()));
    }
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    plot_png(path, (800, 500), |root| {
        let mut builder = ChartBuilder::on(root);
        builder.caption(title, ("sans-serif", 22)).margin(12).x_label_area_size(40).y_label_area_size(60);
        let colors = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw().map_err(|e| anyhow!("{e}"))?;
                for (i, s) in series.iter().enumerate() {
                    let color = colors[i % colors.len()];
                    chart
                        .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))
                        .map_err(|e| anyhow!("{e}"))?
                        .label(s.label.clone())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
                    chart
                        .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                        .map_err(|e| anyhow!("{e}"))?;
                    if !s.intervals.is_empty() {
                        chart
                            .draw_series(
                                s.points
                                    .iter()
                                    .zip(&s.intervals)
                                    .map(|(&(x, y), &(lo, hi))| ErrorBar::new_vertical(x, lo, y, hi, color, 8)),
                            )
                            .map_err(|e| anyhow!("{e}"))?;
                    }
                }
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()
                    .map_err(|e| anyhow!("{e}"))?;
            }};
        }
        let xr = if x1 > x0 { x0..x1 } else { x0 - 1.0..x1 + 1.0 };
        if log_x {
            draw!(builder.build_cartesian_2d(xr.log_scale(), (y0 - pad)..(y1 + pad)).map_err(|e| anyhow!("{e}"))?);
        } else {
            draw!(builder.build_cartesian_2d(xr, (y0 - pad)..(y1 + pad)).map_err(|e| anyhow!("{e}"))?);
        }
        Ok(())
    })
}

/// Rows of tiles, each under its caption (a case's id and score), laid out as [`image_grid`].
pub fn captioned_grid(rows: &[(String, Vec<RgbImage>)]) -> Result<RgbImage> {
    register_font();
    const BAND: u32 = 24;
    let grids: Vec<RgbImage> = rows.iter().map(|(_, tiles)| image_grid(std::slice::from_ref(tiles))).collect();
    let w = grids.iter().map(RgbImage::width).max().unwrap_or(1);
    let h = grids.iter().map(|g| g.height() + BAND).sum::<u32>().max(1);
    let mut out = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let mut top = 0;
    for g in &grids {
        image::imageops::replace(&mut out, g, 0, (top + BAND) as i64);
        top += g.height() + BAND;
    }
    let mut buf = out.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let mut top = 0;
        for ((caption, _), g) in rows.iter().zip(&grids) {
            let text = Text::new(caption.clone(), (4, top as i32 + 4), ("sans-serif", 16).into_font().color(&BLACK));
            root.draw(&text).map_err(|e| anyhow!("{e}"))?;
            top += g.height() + BAND;
        }
        root.present().map_err(|e| anyhow!("{e}"))?;
    }
    RgbImage::from_raw(w, h, buf).ok_or_else(|| anyhow!("caption buffer of the wrong size"))
}

/// curves.png: the training loss and the validation Dice against iteration, each on its own
/// axis, the kept checkpoint (`best`: iteration and Dice) marked.
pub fn curves(path: &Path, loss: &[(f64, f64)], dice: &[(f64, f64)], best: Option<(f64, f64)>) -> Result<()> {
    register_font();
    let xs = loss.iter().chain(dice).map(|p| p.0);
    let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if !x0.is_finite() {
        return Err(anyhow!("nothing to plot for {}", path.display()));
    }
    let xr = if x1 > x0 { x0..x1 } else { x0 - 1.0..x1 + 1.0 };
    let (l0, l1) = loss.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let lr = if l0.is_finite() && l1 > l0 { l0..l1 } else { 0.0..1.0 };
    let e = |e: &dyn std::fmt::Display| anyhow!("{e}");
    plot_png(path, (800, 600), |root| {
        let (upper, lower) = root.split_vertically(290);
        let mut chart = ChartBuilder::on(&upper)
            .caption("training loss (mean since the previous validation)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(xr.clone(), lr)
            .map_err(|x| e(&x))?;
        chart.configure_mesh().y_desc("loss").draw().map_err(|x| e(&x))?;
        chart.draw_series(LineSeries::new(loss.to_vec(), RED.stroke_width(2))).map_err(|x| e(&x))?;
        let caption = match best {
            Some(b) => format!("validation Dice; kept model (circled): iteration {}, Dice {:.3}", b.0, b.1),
            None => "validation Dice".to_string(),
        };
        let mut chart = ChartBuilder::on(&lower)
            .caption(caption, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(xr, 0.0..1.0)
            .map_err(|x| e(&x))?;
        chart.configure_mesh().x_desc("iteration").y_desc("Dice").draw().map_err(|x| e(&x))?;
        chart.draw_series(LineSeries::new(dice.to_vec(), BLUE.stroke_width(2))).map_err(|x| e(&x))?;
        chart.draw_series(dice.iter().map(|&p| Circle::new(p, 3, BLUE.filled()))).map_err(|x| e(&x))?;
        if let Some(b) = best {
            let line = PathElement::new(vec![(b.0, 0.0), (b.0, 1.0)], BLACK.mix(0.5).stroke_width(1));
            chart.draw_series([line]).map_err(|x| e(&x))?;
            chart.draw_series([Circle::new(b, 7, BLACK.stroke_width(2))]).map_err(|x| e(&x))?;
        }
        Ok(())
    })
}

/// `text` for an HTML page (report.html).
/// The start of a report page (study, fit): doctype, `title`, the shared table and picture
/// style plus `extra_css`, up to the opened body.
pub fn report_head(title: &str, extra_css: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\n\
         body {{ font-family: sans-serif; margin: 2em; max-width: 1200px; }}\n\
         table {{ border-collapse: collapse; margin-bottom: 1em; }}\n\
         th, td {{ border: 1px solid #bbb; padding: 4px 8px; text-align: right; }}\n\
         th {{ background: #eee; }}\n img {{ max-width: 100%; border: 1px solid #ddd; }}\n{extra_css}\n</style></head><body>\n",
        escape_html(title)
    )
}

pub fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
