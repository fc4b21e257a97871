//! Surface-distance metrics in physical units (2-D and 3-D, anisotropic spacing).
//!
//! Conventions (MONAI's, checked against its published test values):
//! - boundary = mask minus its erosion by the face-connected cross, outside the image counting
//!   as background (so a mask touching the border has a boundary along it);
//! - d(a, B) = exact Euclidean distance from boundary voxel a to the nearest boundary voxel of B,
//!   from a separable squared distance transform (Felzenszwalb & Huttenlocher) with spacing;
//! - HD = max of the two directed maxima; HD95 = max of the two directed 95th percentiles
//!   (linear interpolation, as numpy);
//! - ASSD = mean of all boundary distances of both directions pooled; MASD = mean of the two
//!   directed means (MetricsReloaded's distinction);
//! - NSD(tau) = (|{a: d(a, B) <= tau}| + |{b: d(b, A) <= tau}|) / (|dA| + |dB|), counting
//!   boundary voxels (MONAI), not surfel areas (DeepMind).

/// Squared distance to the nearest `true` voxel along every axis, in squared physical units.
/// Voxels when there is no feature at all stay infinite.
pub fn squared_edt(features: &[bool], shape: &[usize], spacing: &[f64]) -> Vec<f64> {
    let mut d: Vec<f64> = features.iter().map(|&f| if f { 0.0 } else { f64::INFINITY }).collect();
    let n = shape.len();
    let mut line = Vec::new();
    let mut out = Vec::new();
    let mut v = Vec::new();
    let mut z = Vec::new();
    for axis in 0..n {
        let len = shape[axis];
        let stride: usize = shape[axis + 1..].iter().product();
        let outer: usize = shape[..axis].iter().product();
        let s2 = spacing[axis] * spacing[axis];
        for o in 0..outer {
            for inner in 0..stride {
                let base = o * len * stride + inner;
                line.clear();
                line.extend((0..len).map(|i| d[base + i * stride]));
                lower_envelope(&line, s2, &mut out, &mut v, &mut z);
                for (i, &x) in out.iter().enumerate() {
                    d[base + i * stride] = x;
                }
            }
        }
    }
    d
}

/// One-dimensional pass: out[p] = min_q s2 (p - q)^2 + f[q].
fn lower_envelope(f: &[f64], s2: f64, out: &mut Vec<f64>, v: &mut Vec<usize>, z: &mut Vec<f64>) {
    let n = f.len();
    out.clear();
    v.clear();
    z.clear();
    let meet = |q: usize, r: usize| {
        ((f[r] + s2 * (r * r) as f64) - (f[q] + s2 * (q * q) as f64)) / (2.0 * s2 * (r as f64 - q as f64))
    };
    // v: parabola apexes of the lower envelope; z[i]: where parabola v[i] starts to be lowest.
    for q in (0..n).filter(|&q| f[q].is_finite()) {
        loop {
            match v.last() {
                None => {
                    v.push(q);
                    z.push(f64::NEG_INFINITY);
                    break;
                }
                Some(&last) => {
                    let s = meet(last, q);
                    // z[0] is -inf, so the first parabola is never removed.
                    if s <= *z.last().unwrap() {
                        v.pop();
                        z.pop();
                    } else {
                        v.push(q);
                        z.push(s);
                        break;
                    }
                }
            }
        }
    }
    if v.is_empty() {
        out.resize(n, f64::INFINITY);
        return;
    }
    let mut k = 0;
    for p in 0..n {
        while k + 1 < v.len() && z[k + 1] < p as f64 {
            k += 1;
        }
        let q = v[k];
        let dp = p as f64 - q as f64;
        out.push(s2 * dp * dp + f[q]);
    }
}

/// Mask voxels with at least one face neighbour outside the mask (or outside the image).
pub fn boundary(mask: &[bool], shape: &[usize]) -> Vec<bool> {
    let n = shape.len();
    let strides: Vec<usize> = (0..n).map(|a| shape[a + 1..].iter().product()).collect();
    (0..mask.len())
        .map(|i| {
            if !mask[i] {
                return false;
            }
            (0..n).any(|a| {
                let c = (i / strides[a]) % shape[a];
                c == 0 || c + 1 == shape[a] || !mask[i - strides[a]] || !mask[i + strides[a]]
            })
        })
        .collect()
}

/// Directed boundary distances from every boundary voxel of `from` to the boundary of `to`.
fn directed(from: &[bool], to_edt: &[f64]) -> Vec<f64> {
    from.iter().zip(to_edt).filter(|(b, _)| **b).map(|(_, d2)| d2.sqrt()).collect()
}

/// numpy's default (linear) percentile of unsorted values.
pub fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pos = q / 100.0 * (values.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SurfaceMetrics {
    pub hd: f64,
    pub hd95: f64,
    pub assd: f64,
    pub masd: f64,
    pub nsd: f64,
}

/// Surface metrics of prediction `a` against reference `b`. One empty mask: distances are
/// infinite and NSD 0; both empty: `both_empty` (NaN, or a perfect score, by policy).
pub fn surface_metrics(
    a: &[bool],
    b: &[bool],
    shape: &[usize],
    spacing: &[f64],
    tolerance: f64,
    both_empty: Option<SurfaceMetrics>,
) -> SurfaceMetrics {
    let (ea, eb) = (a.iter().any(|&x| x), b.iter().any(|&x| x));
    match (ea, eb) {
        (false, false) => {
            return both_empty.unwrap_or(SurfaceMetrics {
                hd: f64::NAN,
                hd95: f64::NAN,
                assd: f64::NAN,
                masd: f64::NAN,
                nsd: f64::NAN,
            });
        }
        (true, false) | (false, true) => {
            return SurfaceMetrics {
                hd: f64::INFINITY,
                hd95: f64::INFINITY,
                assd: f64::INFINITY,
                masd: f64::INFINITY,
                nsd: 0.0,
            };
        }
        _ => {}
    }
    // Crop to the union bounding box: every boundary voxel and its nearest boundary voxel of the
    // other mask lie inside it, so the distances are exact.
    let (sub_shape, a, b) = crop_to_union(a, b, shape);
    let (ba, bb) = (boundary(&a, &sub_shape), boundary(&b, &sub_shape));
    let mut ab = directed(&ba, &squared_edt(&bb, &sub_shape, spacing));
    let mut ba_d = directed(&bb, &squared_edt(&ba, &sub_shape, spacing));
    let total = (ab.len() + ba_d.len()) as f64;
    let sum = |v: &[f64]| v.iter().sum::<f64>();
    let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let within = |v: &[f64]| v.iter().filter(|&&d| d <= tolerance).count() as f64;
    let hd = max(&ab).max(max(&ba_d));
    let assd = (sum(&ab) + sum(&ba_d)) / total;
    let masd = (sum(&ab) / ab.len() as f64 + sum(&ba_d) / ba_d.len() as f64) / 2.0;
    let nsd = (within(&ab) + within(&ba_d)) / total;
    let hd95 = percentile(&mut ab, 95.0).max(percentile(&mut ba_d, 95.0));
    SurfaceMetrics { hd, hd95, assd, masd, nsd }
}

fn crop_to_union(a: &[bool], b: &[bool], shape: &[usize]) -> (Vec<usize>, Vec<bool>, Vec<bool>) {
    let n = shape.len();
    let strides: Vec<usize> = (0..n).map(|k| shape[k + 1..].iter().product()).collect();
    let mut lo = shape.to_vec();
    let mut hi = vec![0usize; n];
    for i in 0..a.len() {
        if a[i] || b[i] {
            for k in 0..n {
                let c = (i / strides[k]) % shape[k];
                lo[k] = lo[k].min(c);
                hi[k] = hi[k].max(c);
            }
        }
    }
    // Keep a one-voxel margin where the image has one, so the border rule is unchanged.
    let lo: Vec<usize> = lo.iter().map(|&l| l.saturating_sub(1)).collect();
    let hi: Vec<usize> = hi.iter().zip(shape).map(|(&h, &s)| (h + 1).min(s - 1)).collect();
    let sub: Vec<usize> = (0..n).map(|k| hi[k] - lo[k] + 1).collect();
    let total: usize = sub.iter().product();
    let sub_strides: Vec<usize> = (0..n).map(|k| sub[k + 1..].iter().product()).collect();
    let mut ca = vec![false; total];
    let mut cb = vec![false; total];
    for j in 0..total {
        let i: usize = (0..n).map(|k| ((j / sub_strides[k]) % sub[k] + lo[k]) * strides[k]).sum();
        ca[j] = a[i];
        cb[j] = b[i];
    }
    (sub, ca, cb)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MONAI's test sphere: voxel (y, x, z) is inside when its spacing-scaled coordinates lie
    /// within `radius` of `centre`.
    fn sphere(radius: f64, centre: [f64; 3], shape: [usize; 3], spacing: [f64; 3]) -> Vec<bool> {
        let mut v = Vec::with_capacity(shape.iter().product());
        for i in 0..shape[0] {
            for j in 0..shape[1] {
                for k in 0..shape[2] {
                    let d = [
                        i as f64 * spacing[0] - centre[0],
                        j as f64 * spacing[1] - centre[1],
                        k as f64 * spacing[2] - centre[2],
                    ];
                    v.push(d.iter().map(|x| x * x).sum::<f64>() <= radius * radius);
                }
            }
        }
        v
    }

    fn directed_hd(a: &[bool], b: &[bool], shape: &[usize], spacing: &[f64], q: Option<f64>) -> f64 {
        let (ba, bb) = (boundary(a, shape), boundary(b, shape));
        let mut d = directed(&ba, &squared_edt(&bb, shape, spacing));
        match q {
            Some(q) => percentile(&mut d, q),
            None => d.iter().cloned().fold(0.0, f64::max),
        }
    }

    const S: [usize; 3] = [99, 99, 99];
    const ISO: [f64; 3] = [1.0, 1.0, 1.0];

    fn close(a: f64, b: f64, rtol: f64) -> bool {
        (a - b).abs() <= rtol * b.abs().max(1e-12)
    }

    #[test]
    fn edt_matches_brute_force_with_spacing() {
        let shape = [7, 9, 5];
        let spacing = [0.7, 1.3, 2.0];
        let feats: Vec<bool> = (0..7 * 9 * 5).map(|i| i % 37 == 3 || i % 53 == 11).collect();
        let d = squared_edt(&feats, &shape, &spacing);
        let coord = |i: usize| [i / 45, (i / 5) % 9, i % 5];
        for (i, &di) in d.iter().enumerate() {
            let p = coord(i);
            let brute = (0..feats.len())
                .filter(|&j| feats[j])
                .map(|j| {
                    let q = coord(j);
                    (0..3).map(|k| ((p[k] as f64 - q[k] as f64) * spacing[k]).powi(2)).sum::<f64>()
                })
                .fold(f64::INFINITY, f64::min);
            assert!((di - brute).abs() < 1e-9, "voxel {i}: {di} vs {brute}");
        }
    }

    // MONAI tests/metrics/test_hausdorff_distance.py, Euclidean columns [directed, symmetric]
    // (first argument = prediction).
    #[test]
    fn monai_hausdorff_spheres() {
        let a = sphere(20.0, [20.0, 20.0, 20.0], S, ISO);
        let b = sphere(20.0, [19.0, 19.0, 19.0], S, ISO);
        assert!(close(directed_hd(&a, &b, &S, &ISO, None), 1.7320508075688772, 1e-6));
        assert!(close(surface_metrics(&a, &b, &S, &ISO, 1.0, None).hd, 1.7320508075688772, 1e-6));
        let a = sphere(33.0, [19.0, 33.0, 22.0], S, ISO);
        let b = sphere(33.0, [20.0, 33.0, 22.0], S, ISO);
        assert!(close(surface_metrics(&a, &b, &S, &ISO, 1.0, None).hd, 1.0, 1e-6));
        let a = sphere(20.0, [20.0, 33.0, 22.0], S, ISO);
        let b = sphere(40.0, [20.0, 33.0, 22.0], S, ISO);
        assert!(close(directed_hd(&a, &b, &S, &ISO, None), 20.09975124224178, 1e-6));
        let m = surface_metrics(&a, &b, &S, &ISO, 1.0, None);
        assert!(close(m.hd, 20.223748416156685, 1e-6), "{}", m.hd);
        // percentile 95
        assert!(close(directed_hd(&a, &b, &S, &ISO, Some(95.0)), 19.924858845171276, 1e-6));
        assert!(close(m.hd95, 20.09975124224178, 1e-6), "{}", m.hd95);
    }

    #[test]
    fn monai_hausdorff_spheres_with_spacing() {
        let sp = [0.85, 1.2, 0.9];
        let a = sphere(20.0, [20.0, 20.0, 20.0], S, sp);
        let b = sphere(20.0, [19.0, 19.0, 19.0], S, sp);
        assert!(close(directed_hd(&a, &b, &S, &sp, None), 2.0808651447296143, 1e-6));
        assert!(close(surface_metrics(&a, &b, &S, &sp, 1.0, None).hd, 2.2671568, 1e-6));
        let a = sphere(15.0, [20.0, 33.0, 22.0], S, sp);
        let b = sphere(30.0, [20.0, 33.0, 22.0], S, sp);
        assert!(close(directed_hd(&a, &b, &S, &sp, None), 15.439640998840332, 1e-6));
        assert!(close(surface_metrics(&a, &b, &S, &sp, 1.0, None).hd, 15.62594, 1e-6));
    }

    // MONAI tests/metrics/test_surface_distance.py: symmetric average surface distance (ASSD,
    // pooled) for r20 vs r40 (Euclidean) is 15.117741, and a one-voxel shift of r33 0.350217.
    #[test]
    fn monai_average_surface_distance() {
        let a = sphere(20.0, [20.0, 33.0, 22.0], S, ISO);
        let b = sphere(40.0, [20.0, 33.0, 22.0], S, ISO);
        assert!(close(surface_metrics(&a, &b, &S, &ISO, 1.0, None).assd, 15.117741, 1e-5));
        let a = sphere(33.0, [19.0, 33.0, 22.0], S, ISO);
        let b = sphere(33.0, [20.0, 33.0, 22.0], S, ISO);
        assert!(close(surface_metrics(&a, &b, &S, &ISO, 1.0, None).assd, 0.350217, 1e-5));
    }

    /// MetricsReloaded test_pairwise_measures: 11x11, GT square [3:8, 3:8], prediction the same
    /// square plus a horizontal arm (row 5, cols 1..9) and a vertical arm (col 5, rows 1..9):
    /// ASSD 0.44 (pooled) vs MASD 0.425 (mean of directed means), NSD(1) 0.89, NSD(2) 1.0.
    #[test]
    fn metricsreloaded_assd_vs_masd_and_nsd() {
        let shape = [11, 11];
        let gt: Vec<bool> = (0..121).map(|i| (3..8).contains(&(i / 11)) && (3..8).contains(&(i % 11))).collect();
        let pred: Vec<bool> = (0..121)
            .map(|i| {
                let (r, c) = (i / 11, i % 11);
                gt[i] || (r == 5 && (1..10).contains(&c)) || (c == 5 && (1..10).contains(&r))
            })
            .collect();
        let m = surface_metrics(&pred, &gt, &shape, &[1.0, 1.0], 1.0, None);
        assert!((m.assd - 0.44).abs() < 0.005, "ASSD {}", m.assd);
        assert!((m.masd - 0.425).abs() < 0.005, "MASD {}", m.masd);
        assert!((m.nsd - 0.89).abs() < 0.005, "NSD(1) {}", m.nsd);
        assert_eq!(surface_metrics(&pred, &gt, &shape, &[1.0, 1.0], 2.0, None).nsd, 1.0);
    }

    /// MetricsReloaded: 14x14, GT = pixel (1,1) + block [9:12, 9:12], prediction = the block:
    /// HD 11.31, HD95 6.79. (Its HD95 pools... the value is reproduced by MONAI's max of the
    /// directed 95th percentiles.)
    #[test]
    fn metricsreloaded_hd_and_hd95() {
        let shape = [14, 14];
        let block = |i: usize| (9..12).contains(&(i / 14)) && (9..12).contains(&(i % 14));
        let gt: Vec<bool> = (0..196).map(|i| block(i) || i == 14 + 1).collect();
        let pred: Vec<bool> = (0..196).map(block).collect();
        let m = surface_metrics(&pred, &gt, &shape, &[1.0, 1.0], 1.0, None);
        assert!((m.hd - 11.31).abs() < 0.005, "HD {}", m.hd);
        assert!((m.hd95 - 6.79).abs() < 0.005, "HD95 {}", m.hd95);
    }

    /// google-deepmind/surface-distance: one GT pixel (50, 70), one predicted pixel (50, 72),
    /// spacing (2, 1) mm. Both conventions give HD = HD95 = 2.0; DeepMind's surfels sit on pixel
    /// corners and are area-weighted, so its ASSD is 1.5 and NSD@1mm 0.5, while voxel-centre
    /// boundaries (ours, MONAI's) give ASSD 2.0 and NSD@1mm 0.
    #[test]
    fn deepmind_single_pixels_differ_only_where_surfels_do() {
        let shape = [128, 128];
        let mut gt = vec![false; 128 * 128];
        let mut pred = vec![false; 128 * 128];
        gt[50 * 128 + 70] = true;
        pred[50 * 128 + 72] = true;
        let m = surface_metrics(&pred, &gt, &shape, &[2.0, 1.0], 1.0, None);
        assert_eq!((m.hd, m.hd95), (2.0, 2.0));
        assert_eq!((m.assd, m.nsd), (2.0, 0.0));
    }

    /// MONAI tests/metrics/test_surface_dice.py, 10x10 toy: prediction a vertical 3-pixel line
    /// (column 1, rows 1-3), reference one at column 6, rows 5-7; both classes (background as
    /// the complement, 84 = 36 x 2 + 8 + 4 boundary pixels) at three tolerances (Euclidean).
    #[test]
    fn monai_surface_dice_toy() {
        let shape = [10, 10];
        let pred: Vec<bool> = (0..100).map(|i| i % 10 == 1 && (1..=3).contains(&(i / 10))).collect();
        let gt: Vec<bool> = (0..100).map(|i| i % 10 == 6 && (5..=7).contains(&(i / 10))).collect();
        let not = |v: &[bool]| v.iter().map(|x| !x).collect::<Vec<bool>>();
        for (tau_bg, tau_fg, bg, fg) in [
            (0.0, 0.0, 1.0 - 12.0 / 84.0, 0.0),
            (2.8, 5.5, 1.0 - 3.0 / 84.0, 1.0 - 4.0 / 6.0),
            (3.0, 6.0, 1.0 - 1.0 / 84.0, 1.0 - 2.0 / 6.0),
        ] {
            let b = surface_metrics(&not(&pred), &not(&gt), &shape, &[1.0, 1.0], tau_bg, None).nsd;
            let f = surface_metrics(&pred, &gt, &shape, &[1.0, 1.0], tau_fg, None).nsd;
            assert!((b - bg).abs() < 1e-12 && (f - fg).abs() < 1e-12, "tau {tau_bg}/{tau_fg}: {b} {f} vs {bg} {fg}");
        }
    }

    #[test]
    fn empty_masks_follow_the_stated_conventions() {
        let z = vec![false; 16];
        let mut o = vec![false; 16];
        o[5] = true;
        let both = surface_metrics(&z, &z, &[4, 4], &[1.0, 1.0], 1.0, None);
        assert!(both.hd.is_nan() && both.nsd.is_nan());
        let one = surface_metrics(&o, &z, &[4, 4], &[1.0, 1.0], 1.0, None);
        assert!(one.hd.is_infinite() && one.hd95.is_infinite() && one.assd.is_infinite() && one.nsd == 0.0);
    }
}
