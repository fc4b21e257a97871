//! What a run was split from: every image and mask file's name, size and content hash. A run
//! resumed onto changed data (cases added, removed or edited) is refused instead of being
//! silently re-split, with test cases that it had trained on.
use super::files::Folders;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// `images/a.png` -> (bytes, SHA-256), for every file of the image and mask folders (and
    /// dataset.json).
    pub files: BTreeMap<String, (u64, String)>,
}

impl Fingerprint {
    pub fn of(root: &Path) -> Result<Fingerprint> {
        let folders = Folders::of(root)?;
        let mut files = BTreeMap::new();
        let mut add = |path: &Path| -> Result<()> {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let name = path.strip_prefix(root).unwrap_or(path).to_string_lossy().replace('\\', "/");
            files.insert(name, (bytes.len() as u64, format!("{:x}", Sha256::digest(&bytes))));
            Ok(())
        };
        for dir in [&folders.images, &folders.masks] {
            for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
                let path = entry?.path();
                let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
                if path.is_file() && !hidden {
                    add(&path)?;
                }
            }
        }
        let meta = root.join("dataset.json");
        if meta.is_file() {
            add(&meta)?;
        }
        Ok(Fingerprint { files })
    }

    /// What changed from `self` to `now`, naming up to three files of each kind; `None` if nothing.
    pub fn changes(&self, now: &Fingerprint) -> Option<String> {
        let names = |it: Vec<&String>| {
            let shown: Vec<&str> = it.iter().take(3).map(|s| s.as_str()).collect();
            let more = if it.len() > 3 { format!(" and {} more", it.len() - 3) } else { String::new() };
            format!("{} ({}{more})", it.len(), shown.join(", "))
        };
        let added: Vec<&String> = now.files.keys().filter(|k| !self.files.contains_key(*k)).collect();
        let removed: Vec<&String> = self.files.keys().filter(|k| !now.files.contains_key(*k)).collect();
        let modified: Vec<&String> =
            self.files.iter().filter(|(k, v)| now.files.get(*k).is_some_and(|n| n != *v)).map(|(k, _)| k).collect();
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
}
