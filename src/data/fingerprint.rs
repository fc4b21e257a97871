//! What a run was trained on: every image and mask file's name, size and content hash (and the
//! unlabelled images'). A run resumed onto changed data (cases added, removed or edited) is
//! refused instead of being silently re-split, with test cases that it had trained on.
use super::files::Folders;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// `images/a.png` -> (bytes, SHA-256), for every file of the image and mask folders (and
    /// dataset.json).
    pub files: BTreeMap<String, (u64, String)>,
    /// The unlabelled folder's images (`--unlabelled`), named `unlabelled/<path in the folder>`
    /// in [`Fingerprint::changes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlabelled: Option<Box<Fingerprint>>,
}

impl Fingerprint {
    pub fn of(root: &Path) -> Result<Fingerprint> {
        let folders = Folders::of(root)?;
        let mut paths = Vec::new();
        for dir in [&folders.images, &folders.masks] {
            for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
                let path = entry?.path();
                let hidden = crate::data::files::is_system_file(&path);
                if path.is_file() && !hidden {
                    paths.push(path);
                }
            }
        }
        let meta = root.join("dataset.json");
        if meta.is_file() {
            paths.push(meta);
        }
        Fingerprint::of_files(root, &paths)
    }

    /// `paths` (inside `root`) by their path relative to `root`.
    pub fn of_files(root: &Path, paths: &[PathBuf]) -> Result<Fingerprint> {
        let mut files = BTreeMap::new();
        for path in paths {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let name = path.strip_prefix(root).unwrap_or(path).to_string_lossy().replace('\\', "/");
            files.insert(name, (bytes.len() as u64, format!("{:x}", Sha256::digest(&bytes))));
        }
        Ok(Fingerprint { files, unlabelled: None })
    }

    /// Refuses to go on in `out` when the fingerprint recorded there (data_fingerprint.json) is
    /// not this one: a run or fit resumed onto changed data.
    pub fn refuse_changed(&self, out: &Path, data: &Path) -> Result<()> {
        let recorded = out.join("data_fingerprint.json");
        let Ok(text) = std::fs::read_to_string(&recorded) else { return Ok(()) };
        let before: Fingerprint =
            serde_json::from_str(&text).with_context(|| format!("{} is corrupt", recorded.display()))?;
        if let Some(change) = before.changes(self) {
            anyhow::bail!(
                "{} was trained on other data: since it started, {change} in {}; restore the data as it was, or train \
                 into a new --out",
                out.display(),
                data.display()
            );
        }
        Ok(())
    }

    /// Every file, the unlabelled ones under `unlabelled/`.
    fn all_files(&self) -> BTreeMap<String, (u64, String)> {
        let mut all = self.files.clone();
        if let Some(u) = &self.unlabelled {
            all.extend(u.files.iter().map(|(k, v)| (format!("unlabelled/{k}"), v.clone())));
        }
        all
    }

    /// What changed from `self` to `now`, naming up to three files of each kind; `None` if nothing.
    pub fn changes(&self, now: &Fingerprint) -> Option<String> {
        let (before, now) = (self.all_files(), now.all_files());
        let names = |it: Vec<&String>| {
            let shown: Vec<&str> = it.iter().take(3).map(|s| s.as_str()).collect();
            let more = if it.len() > 3 { format!(" and {} more", it.len() - 3) } else { String::new() };
            format!("{} ({}{more})", it.len(), shown.join(", "))
        };
        let added: Vec<&String> = now.keys().filter(|k| !before.contains_key(*k)).collect();
        let removed: Vec<&String> = before.keys().filter(|k| !now.contains_key(*k)).collect();
        let modified: Vec<&String> =
            before.iter().filter(|(k, v)| now.get(*k).is_some_and(|n| n != *v)).map(|(k, _)| k).collect();
        let parts: Vec<String> = [("added", added), ("removed", removed), ("modified", modified)]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(what, v)| format!("{what} {}", names(v)))
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_added_removed_and_modified_files() {
        let d = tempfile::tempdir().unwrap();
        for dir in ["images", "masks"] {
            std::fs::create_dir_all(d.path().join(dir)).unwrap();
            for case in ["a", "b"] {
                std::fs::write(d.path().join(dir).join(format!("{case}.png")), case).unwrap();
            }
        }
        let before = Fingerprint::of(d.path()).unwrap();
        assert_eq!(before.changes(&Fingerprint::of(d.path()).unwrap()), None);
        std::fs::write(d.path().join("images/c.png"), "c").unwrap();
        std::fs::remove_file(d.path().join("masks/a.png")).unwrap();
        // Same size, other content: a flipped image.
        std::fs::write(d.path().join("images/b.png"), "x").unwrap();
        let change = before.changes(&Fingerprint::of(d.path()).unwrap()).unwrap();
        assert_eq!(change, "added 1 (images/c.png); removed 1 (masks/a.png); modified 1 (images/b.png)");
    }

    #[test]
    fn names_a_changed_unlabelled_image() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("u.png");
        std::fs::write(&file, "u").unwrap();
        let with = |files: Fingerprint| Fingerprint { files: BTreeMap::new(), unlabelled: Some(Box::new(files)) };
        let before = with(Fingerprint::of_files(d.path(), std::slice::from_ref(&file)).unwrap());
        std::fs::write(&file, "v").unwrap();
        let after = with(Fingerprint::of_files(d.path(), &[file]).unwrap());
        assert_eq!(before.changes(&after).unwrap(), "modified 1 (unlabelled/u.png)");
    }
}
