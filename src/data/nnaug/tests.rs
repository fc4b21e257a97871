use super::*;
use rand::SeedableRng;
use tch::Device;

fn batch(dims: usize) -> (Tensor, Tensor) {
    tch::manual_seed(3);
    let shape: Vec<i64> = if dims == 2 { vec![3, 2, 24, 20] } else { vec![2, 1, 12, 16, 10] };
    let images = Tensor::rand(shape.as_slice(), (Kind::Float, Device::Cpu));
    let mut mshape = shape.clone();
    mshape[1] = 1;
    let masks = Tensor::rand(mshape.as_slice(), (Kind::Float, Device::Cpu)).gt(0.6).to_kind(Kind::Float);
    (images, masks)
}

#[test]
fn zero_strength_is_the_identity() {
    for dims in [2, 3] {
        let (images, masks) = batch(dims);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let (x, m) = augment(&images, &masks, &NnUnetAugment::off(dims), &mut rng);
        let diff = f64::try_from((&x - &images).abs().max()).unwrap();
        assert!(diff < 1e-5, "{dims}-D: images moved by {diff}");
        assert!(m.equal(&masks));
    }
}

/// No op: a base for drawing one op at a time with a fixed strength.
fn only(dims: usize) -> CaseDraw {
    CaseDraw {
        rotate_deg: None,
        scale: None,
        elastic: None,
        mirror: vec![false; dims],
        noise_sigma: None,
        blur: None,
        brightness: None,
        contrast: None,
        low_res: None,
        gamma_inverted: None,
        gamma: None,
    }
}

#[test]
fn intensity_ops_change_images_and_leave_masks_alone() {
    let (images, masks) = batch(2);
    let ops: Vec<(&str, CaseDraw)> = vec![
        ("noise", CaseDraw { noise_sigma: Some(0.3), ..only(2) }),
        ("blur", CaseDraw { blur: Some(vec![Some(vec![1.0, 0.7]), None]), ..only(2) }),
        ("brightness", CaseDraw { brightness: Some(vec![1.2, 0.8]), ..only(2) }),
        ("contrast", CaseDraw { contrast: Some(vec![1.25, 0.75]), ..only(2) }),
        ("low resolution", CaseDraw { low_res: Some((0.5, vec![true, false])), ..only(2) }),
        ("inverted gamma", CaseDraw { gamma_inverted: Some(vec![1.4, 0.7]), ..only(2) }),
        ("gamma", CaseDraw { gamma: Some(vec![1.4, 0.7]), ..only(2) }),
    ];
    for (name, d) in ops {
        let draws = vec![d; 3];
        let (x, m) = apply(&images, &masks, &draws);
        assert!(m.equal(&masks), "{name} changed a mask");
        let diff = f64::try_from((&x - &images).abs().max()).unwrap();
        assert!(diff > 1e-3, "{name} left the images unchanged");
        let (lo, hi) = (f64::try_from(x.min()).unwrap(), f64::try_from(x.max()).unwrap());
        assert!(lo >= 0.0 && hi <= 1.0, "{name}: range {lo}..{hi}");
    }
    // Gamma keeps each channel's mean and spread (up to the final clip to [0, 1]).
    let (x, _) = apply(&images, &masks, &vec![CaseDraw { gamma: Some(vec![1.4, 0.7]), ..only(2) }; 3]);
    let stats = |t: &Tensor| (f64::try_from(t.mean(Kind::Float)).unwrap(), f64::try_from(t.std(true)).unwrap());
    let ((m0, s0), (m1, s1)) = (stats(&images.get(0).get(0)), stats(&x.get(0).get(0)));
    assert!((m0 - m1).abs() < 0.01 && (s0 - s1).abs() < 0.01, "{m0} {s0} vs {m1} {s1}");
}

/// A coordinate ramp rotated by a known angle matches the analytic map, and the mask (the
/// ramp's positive half) moves with it.
#[test]
fn spatial_ops_move_image_and_mask_together() {
    let n = 41i64;
    let coords: Vec<f32> = (0..n).map(|i| (2.0 * i as f32 + 1.0) / n as f32 - 1.0).collect();
    let ramp = Tensor::from_slice(&coords).view([1, 1, 1, n]).expand([1, 1, n, n], false).contiguous();
    let image = (&ramp + 1.0) / 2.0;
    let mask = ramp.gt(0.0).to_kind(Kind::Float);
    for d in [
        CaseDraw { rotate_deg: Some([30.0, 0.0, 0.0]), ..only(2) },
        CaseDraw { scale: Some(1.25), ..only(2) },
        CaseDraw { mirror: vec![false, true], ..only(2) },
    ] {
        let (x, m) = apply(&image, &mask, std::slice::from_ref(&d));
        let theta = sampling_theta(&d.forward(2), 2);
        let mut checked = 0;
        for (i, &v) in coords.iter().enumerate() {
            for (j, &u) in coords.iter().enumerate() {
                if u * u + v * v > 0.4 {
                    continue;
                }
                // Output (u, v) samples input x = theta row 0 . (u, v, 1).
                let sx = theta[0] * u as f64 + theta[1] * v as f64 + theta[2];
                let got = f64::try_from(x.get(0).get(0).get(i as i64).get(j as i64)).unwrap() * 2.0 - 1.0;
                assert!((got - sx).abs() < 0.02, "{d:?} at ({u}, {v}): {got} vs {sx}");
                if sx.abs() > 0.1 {
                    let inside = f64::try_from(m.get(0).get(0).get(i as i64).get(j as i64)).unwrap() > 0.5;
                    assert_eq!(inside, sx > 0.0, "{d:?}: mask at ({u}, {v})");
                }
                checked += 1;
            }
        }
        assert!(checked > 300);
    }
}

/// An elastic field of zero magnitude is the identity; a strong one moves the image and the
/// mask by the same field (the mask is the image's upper half before and after), and an
/// affine map on top still keeps them together.
#[test]
fn elastic_deformation_moves_image_and_mask_together() {
    let n = 48i64;
    let coords: Vec<f32> = (0..n).map(|i| (2.0 * i as f32 + 1.0) / n as f32 - 1.0).collect();
    let ramp = Tensor::from_slice(&coords).view([1, 1, 1, n]).expand([2, 1, n, n], false).contiguous();
    let image = (&ramp + 1.0) / 2.0;
    let mask = ramp.gt(0.0).to_kind(Kind::Float);
    let still = CaseDraw { elastic: Some(Elastic { scale: vec![0.1, 0.1], magnitude: vec![0.0, 0.0] }), ..only(2) };
    let (x, m) = apply(&image, &mask, &[still.clone(), still]);
    assert!(f64::try_from((&x - &image).abs().max()).unwrap() < 1e-5);
    assert!(m.equal(&mask));
    let wavy = Elastic { scale: vec![0.1, 0.1], magnitude: vec![0.2, 0.2] };
    tch::manual_seed(5);
    let draws = [
        CaseDraw { elastic: Some(wavy.clone()), ..only(2) },
        CaseDraw { elastic: Some(wavy), rotate_deg: Some([25.0, 0.0, 0.0]), scale: Some(0.8), ..only(2) },
    ];
    let (x, m) = apply(&image, &mask, &draws);
    let moved = f64::try_from((&x - &image).abs().max()).unwrap();
    assert!(moved > 0.05, "a 0.2 field moved the ramp by {moved} only");
    // Bilinear sampling is exact on a ramp, and the interpolated indicator passes 0.5 where
    // the ramp passes 0: the mask is where the warped ramp is above 0.5, away from
    // the corners that sample outside the input.
    let inside = x.gt(0.5).to_kind(Kind::Float);
    let r2 = ramp.square() + ramp.transpose(2, 3).square();
    let clear = (&x - 0.5).abs().gt(0.01).logical_and(&r2.lt(0.36));
    let disagree = f64::try_from((&m - &inside).abs().masked_select(&clear).sum(Kind::Float)).unwrap();
    assert_eq!(disagree, 0.0, "mask and image disagree at {disagree} pixels");
}

#[test]
fn drawn_ops_have_the_configured_frequencies_and_means() {
    let cfg = NnUnetAugment::defaults(2, None);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let draws: Vec<CaseDraw> = (0..20000).map(|_| draw(&cfg, 2, 3, &mut rng)).collect();
    let freq = |f: &dyn Fn(&CaseDraw) -> bool| draws.iter().filter(|d| f(d)).count() as f64 / draws.len() as f64;
    let checks: [(&str, f64, f64); 10] = [
        ("rotation", freq(&|d| d.rotate_deg.is_some()), 0.2),
        ("scaling", freq(&|d| d.scale.is_some()), 0.2),
        ("mirror axis 1", freq(&|d| d.mirror[1]), 0.5),
        ("noise", freq(&|d| d.noise_sigma.is_some()), 0.1),
        ("blur", freq(&|d| d.blur.is_some()), 0.2),
        ("brightness", freq(&|d| d.brightness.is_some()), 0.15),
        ("contrast", freq(&|d| d.contrast.is_some()), 0.15),
        ("low resolution", freq(&|d| d.low_res.is_some()), 0.25),
        ("inverted gamma", freq(&|d| d.gamma_inverted.is_some()), 0.1),
        ("gamma", freq(&|d| d.gamma.is_some()), 0.3),
    ];
    for (name, got, want) in checks {
        assert!((got - want).abs() < 0.015, "{name}: {got} vs {want}");
    }
    let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    let scales = mean(draws.iter().filter_map(|d| d.scale).collect());
    assert!((scales - 1.05).abs() < 0.01, "scale mean {scales}");
    // BGContrast: half below 1 (mean 0.875), half above (mean 1.125).
    let mult = mean(draws.iter().filter_map(|d| d.brightness.as_ref()).flatten().copied().collect());
    assert!((mult - 1.0).abs() < 0.01, "brightness mean {mult}");
    let angle = mean(draws.iter().filter_map(|d| d.rotate_deg).map(|r| r[0].abs()).collect());
    assert!((angle - 90.0).abs() < 3.0, "mean |rotation| {angle}");
    let blurred_channels = freq(&|d| d.blur.as_ref().is_some_and(|b| b[0].is_some())) / 0.2;
    assert!((blurred_channels - 0.5).abs() < 0.05, "blurred channel share {blurred_channels}");
    let cfg3 = NnUnetAugment::defaults(3, Some(&[1, 2]));
    let d3: Vec<CaseDraw> = (0..4000).map(|_| draw(&cfg3, 3, 1, &mut rng)).collect();
    assert!(d3.iter().all(|d| !d.mirror[0]), "axis 0 is not in --mirror-axes");
    assert!(d3.iter().filter_map(|d| d.rotate_deg).all(|r| r.iter().all(|a| a.abs() <= 30.0)));
}

#[test]
fn three_d_batches_keep_shape_range_and_disjoint_labels() {
    let (images, _) = batch(3);
    let first = Tensor::rand([2, 1, 12, 16, 10], (Kind::Float, Device::Cpu)).gt(0.5);
    let masks = Tensor::cat(&[first.to_kind(Kind::Float), first.logical_not().to_kind(Kind::Float)], 1);
    let mut cfg = NnUnetAugment::defaults(3, None);
    cfg.p_rotation = 1.0;
    cfg.p_scaling = 1.0;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let (x, m) = augment(&images, &masks, &cfg, &mut rng);
    assert_eq!((x.size(), m.size()), (images.size(), masks.size()));
    assert!(f64::try_from(m.sum_dim_intlist(1, false, Kind::Float).max()).unwrap() <= 1.0);
    assert!(f64::try_from(x.min()).unwrap() >= 0.0 && f64::try_from(x.max()).unwrap() <= 1.0);
}
