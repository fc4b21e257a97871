//! `genseg evaluate` on NIfTI label maps (MSD hippocampus), per label, with header spacing.
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
            nifti::writer::WriterOptions::new(pred.join(format!("{id}.nii.gz"))).reference_header(&header).write_nifti(&shifted).unwrap();
        }
    }
    let out = d.path().join("eval");
    let o = genseg(&["evaluate", pred.to_str().unwrap(), reference.to_str().unwrap(), "--out", out.to_str().unwrap(), "--labels", "1,2"]);
    assert!(o.status.success(), "{}", stderr(&o));
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
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["labels"]["2"]["dice"]["n"].as_u64(), Some(2));
}
