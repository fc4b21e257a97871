//! nnU-Net v2 and Medical Segmentation Decathlon `dataset.json`: what genseg uses of it (input
//! channels, label names, file ending), read from either form:
//! - nnU-Net v2: `"channel_names": {"0": "T2"}`, `"labels": {"background": 0, "tumour": 1}`,
//!   `"file_ending": ".png"`;
//! - MSD: `"modality": {"0": "MRI"}`, `"labels": {"0": "background", "1": "Anterior"}`.
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct DatasetJson {
    /// Input channel names, in channel order (`_0000`, `_0001`, ...).
    pub channels: Vec<String>,
    /// Foreground label value -> name.
    pub labels: BTreeMap<u32, String>,
    /// `.png`, `.nii.gz`...; `None` when the file does not say (MSD).
    pub file_ending: Option<String>,
}

/// `root/dataset.json`, or `None` when there is none.
pub fn read(root: &Path) -> Result<Option<DatasetJson>> {
    let path = root.join("dataset.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON; fix the file or remove it", path.display()))?;
    parse(&value).map(Some).with_context(|| format!("{}", path.display()))
}

fn parse(v: &Value) -> Result<DatasetJson> {
    let channel_map = v.get("channel_names").or_else(|| v.get("modality")).and_then(Value::as_object).context(
        "neither \"channel_names\" (nnU-Net v2) nor \"modality\" (MSD) is an object; add one naming each input channel",
    )?;
    let mut channels: Vec<(usize, String)> = Vec::new();
    for (k, name) in channel_map {
        let index = k.parse::<usize>().ok().with_context(|| format!("channel key \"{k}\" is not a number"))?;
        channels.push((index, name.as_str().unwrap_or_default().to_string()));
    }
    channels.sort();
    if channels.iter().enumerate().any(|(i, (index, _))| i != *index) {
        bail!(
            "channel keys must be 0, 1, ... without gaps; found {:?}",
            channels.iter().map(|c| c.0).collect::<Vec<_>>()
        );
    }
    let label_map = v.get("labels").and_then(Value::as_object).context("\"labels\" is missing or not an object")?;
    let mut labels = BTreeMap::new();
    for (k, val) in label_map {
        // v2: name -> value; MSD: "value" -> name.
        let (value, name) = match (val.as_u64(), k.parse::<u32>()) {
            (Some(value), _) => (value as u32, k.clone()),
            (None, Ok(value)) if val.is_string() => (value, val.as_str().unwrap().to_string()),
            _ if val.is_array() => bail!(
                "label \"{k}\" is a region (a list of labels); genseg trains one channel per label value, not \
                 nnU-Net regions: give each label its own value"
            ),
            _ => bail!("label \"{k}\": {val} is neither a label value nor a name"),
        };
        if value != 0 {
            labels.insert(value, name);
        }
    }
    if labels.is_empty() {
        bail!("\"labels\" names no foreground label (a value above 0)");
    }
    let file_ending = v.get("file_ending").and_then(Value::as_str).map(str::to_string);
    Ok(DatasetJson { channels: channels.into_iter().map(|c| c.1).collect(), labels, file_ending })
}

/// The label names of a dataset folder's dataset.json (empty without one, or when unreadable:
/// the loaders report a broken file).
pub fn label_names(root: &Path) -> BTreeMap<u32, String> {
    read(root).ok().flatten().map(|d| d.labels).unwrap_or_default()
}

/// Writes binary pairs (case id, image file, mask file) as an nnU-Net v2 raw data set in the new
/// or empty folder `out`: imagesTr/{case}_0000.png (RGB when any image has colour, nnU-Net's
/// natural-image reader), labelsTr/{case}.png with values 0/1, dataset.json.
pub fn write_raw(pairs: &[(String, std::path::PathBuf, std::path::PathBuf)], out: &Path) -> Result<()> {
    use super::image_io::{decode_image, decode_mask, is_color, to_channels};
    if std::fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(false) {
        bail!("{} is not empty; give a new or empty folder for the nnU-Net data set", out.display());
    }
    let (images_dir, labels_dir) = (out.join("imagesTr"), out.join("labelsTr"));
    for dir in [&images_dir, &labels_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let decoded: Vec<_> = pairs.iter().map(|(_, image, _)| decode_image(image)).collect::<Result<_>>()?;
    let channels = if decoded.iter().any(is_color) { 3 } else { 1 };
    for ((case, _, mask), img) in pairs.iter().zip(&decoded) {
        let file = images_dir.join(format!("{case}_0000.png"));
        to_channels(img, channels).save(&file).with_context(|| format!("cannot write {}", file.display()))?;
        let mut label = decode_mask(mask, true)?.mask;
        label.pixels_mut().for_each(|p| p.0[0] = (p.0[0] > 0) as u8);
        let file = labels_dir.join(format!("{case}.png"));
        label.save(&file).with_context(|| format!("cannot write {}", file.display()))?;
    }
    let names: serde_json::Map<String, Value> = match channels {
        3 => ["R", "G", "B"].iter().enumerate().map(|(i, n)| (i.to_string(), Value::from(*n))).collect(),
        _ => [("0".to_string(), Value::from("grey"))].into_iter().collect(),
    };
    let json = serde_json::json!({
        "channel_names": names,
        "labels": { "background": 0, "foreground": 1 },
        "numTraining": pairs.len(),
        "file_ending": ".png",
    });
    crate::runtime::write_json(&out.join("dataset.json"), &json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_nnunet_v2_and_msd_forms_and_refuses_regions() {
        let v2 = parse(&json!({"channel_names": {"1": "G", "0": "R"}, "labels": {"background": 0, "polyp": 1},
                               "file_ending": ".png", "numTraining": 3}))
        .unwrap();
        assert_eq!(v2.channels, ["R", "G"]);
        assert_eq!(v2.labels, BTreeMap::from([(1, "polyp".to_string())]));
        assert_eq!(v2.file_ending.as_deref(), Some(".png"));
        let msd =
            parse(&json!({"modality": {"0": "MRI"}, "labels": {"0": "background", "1": "Anterior", "2": "Posterior"}}))
                .unwrap();
        assert_eq!(msd.channels, ["MRI"]);
        assert_eq!(msd.labels[&2], "Posterior");
        assert_eq!(msd.file_ending, None);
        let region = parse(&json!({"channel_names": {"0": "T1"}, "labels": {"background": 0, "whole": [1, 2]}}));
        assert!(format!("{:#}", region.unwrap_err()).contains("region"));
        let gap = parse(&json!({"channel_names": {"0": "a", "2": "b"}, "labels": {"background": 0, "x": 1}}));
        assert!(format!("{:#}", gap.unwrap_err()).contains("without gaps"));
    }
}
