//! NIfTI on the MSD hippocampus set: geometry-preserving round trip, and `genseg evaluate` on
//! label maps per label (every label of the references unless --labels chooses) with header
//! spacing.
mod common;
use common::*;
use nifti::{IntoNdArray, NiftiObject, ReaderOptions};

#[test]
fn hippocampus_label_maps_per_label() {
    let d = tempfile::tempdir().unwrap();
    let (pred, reference) = (d.path().join("pred"), d.path().join("ref"));
    std::fs::create_dir_all(&pred).unwrap();
    std::fs::create_dir_all(&reference).unwrap();
    let masks = shared("msd_hippocampus").join("masks");
    for id in ["hippocampus_001", "hippocampus_003"] {
        let src = masks.join(format!("{id}.nii.gz"));
        std::fs::copy(&src, reference.join(format!("{id}.nii.gz"))).unwrap();
        if id == "hippocampus_001" {
            std::fs::copy(&src, pred.join(format!("{id}.nii.gz"))).unwrap();
        } else {
            // Shift the labels by one voxel along the first axis.
            let obj = ReaderOptions::new().read_file(&src).unwrap();
            let header = obj.header().clone();
            let vol = obj.into_volume().into_ndarray::<f32>().unwrap();
            let mut shifted = vol.clone();
            shifted.fill(0.0);
            let n = vol.shape()[0];
            for i in 1..n {
                shifted.index_axis_mut(ndarray::Axis(0), i).assign(&vol.index_axis(ndarray::Axis(0), i - 1));
            }
            nifti::writer::WriterOptions::new(pred.join(format!("{id}.nii.gz")))
                .reference_header(&header)
                .write_nifti(&shifted)
                .unwrap();
        }
    }
    let out = d.path().join("eval");
    let o = genseg(&["evaluate", pred.to_str().unwrap(), reference.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    // Without --labels, every label of the references is scored (the maps hold 1 and 2).
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("label 1:") && stdout(&o).contains("label 2:"), "{}", stdout(&o));
    let csv = std::fs::read_to_string(out.join("cases.csv")).unwrap();
    let rows: Vec<Vec<String>> = csv.lines().skip(1).map(|l| l.split(',').map(String::from).collect()).collect();
    assert_eq!(rows.len(), 4, "{csv}");
    for r in &rows {
        let (dice, hd) = (r[1].parse::<f64>().unwrap(), r[5].parse::<f64>().unwrap());
        if r[0].starts_with("hippocampus_001") {
            assert_eq!((dice, hd), (1.0, 0.0), "{r:?}");
        } else {
            // One voxel of 1 mm along the first axis moves every boundary by at most 1 mm.
            assert!(dice < 1.0 && dice > 0.3, "{r:?}");
            assert!(hd > 0.0 && hd <= 1.0 + 1e-9, "{r:?}");
        }
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["labels"]["2"]["dice"]["n"].as_u64(), Some(2));
    // --labels chooses.
    let only = d.path().join("eval2");
    let o = genseg(&["evaluate", arg(&pred), arg(&reference), "--out", arg(&only), "--labels", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(only.join("cases.csv")).unwrap();
    assert_eq!(csv.lines().skip(1).filter(|l| l.contains("/label2,")).count(), 2, "{csv}");
    assert_eq!(csv.lines().count(), 3, "{csv}");
}

#[test]
fn nifti_round_trip_keeps_voxels_affine_and_spacing() {
    use genseg::data::volume::{read_volume, write_volume, CropPad};
    let d = tempfile::tempdir().unwrap();
    let src = shared("msd_hippocampus").join("images/hippocampus_001.nii.gz");
    let v = read_volume(&src).unwrap();
    // Through the fixed training shape and back.
    let cp = CropPad::centered(v.shape, [48, 64, 48]);
    let restored = cp.invert(&cp.apply(&v.data));
    assert_eq!(restored, v.data, "pad/unpad changed voxels");
    let out = d.path().join("copy.nii.gz");
    write_volume(&out, &restored, v.shape, &v.header).unwrap();
    let w = read_volume(&out).unwrap();
    assert_eq!(w.shape, v.shape);
    assert_eq!(w.data, v.data);
    assert_eq!(w.spacing(), v.spacing());
    assert_eq!(
        (w.header.srow_x, w.header.srow_y, w.header.srow_z),
        (v.header.srow_x, v.header.srow_y, v.header.srow_z)
    );
    assert_eq!((w.header.sform_code, w.header.qform_code), (v.header.sform_code, v.header.qform_code));
    assert_eq!(
        (w.header.quatern_b, w.header.quatern_c, w.header.quatern_d),
        (v.header.quatern_b, v.header.quatern_c, v.header.quatern_d)
    );
    assert_eq!(
        (w.header.quatern_x, w.header.quatern_y, w.header.quatern_z),
        (v.header.quatern_x, v.header.quatern_y, v.header.quatern_z)
    );
}
