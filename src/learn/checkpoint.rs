//! Multi-file checkpoints swapped in atomically: written to a temp folder, then renamed over
//! the previous one, so a kill at any moment leaves one complete checkpoint.
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

fn sibling(dir: &Path, tag: &str) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    dir.with_file_name(format!(".{name}.{tag}"))
}

pub fn save_dir<F>(dir: &Path, write: F) -> Result<()>
where
    F: FnOnce(&Path) -> Result<()>,
{
    let tmp = sibling(dir, &format!("tmp-{}", std::process::id()));
    let old = sibling(dir, "old");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context(format!("writing checkpoint {}", dir.display())));
    }
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    if dir.exists() {
        std::fs::rename(dir, &old)?;
    }
    std::fs::rename(&tmp, dir)?;
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// The newest complete checkpoint, also when a kill fell between the two renames.
pub fn find_dir(dir: &Path) -> Option<PathBuf> {
    if dir.is_dir() {
        return Some(dir.to_path_buf());
    }
    let old = sibling(dir, "old");
    old.is_dir().then_some(old)
}

/// Removes a finished run's checkpoint, also the previous one a kill between the two renames
/// left beside it (which [`find_dir`] would otherwise resume from).
pub fn remove(dir: &Path) -> Result<()> {
    for d in [dir.to_path_buf(), sibling(dir, "old")] {
        match std::fs::remove_dir_all(&d) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", d.display()));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_leaves_no_checkpoint_to_resume() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("checkpoint");
        // Killed between the renames: only the previous checkpoint is there.
        save_dir(&dir, |d| Ok(std::fs::write(d.join("state.json"), "{}")?)).unwrap();
        std::fs::rename(&dir, sibling(&dir, "old")).unwrap();
        assert!(find_dir(&dir).is_some());
        remove(&dir).unwrap();
        assert!(find_dir(&dir).is_none());
        save_dir(&dir, |d| Ok(std::fs::write(d.join("state.json"), "{}")?)).unwrap();
        remove(&dir).unwrap();
        assert!(find_dir(&dir).is_none() && std::fs::read_dir(root.path()).unwrap().next().is_none());
        remove(&dir).unwrap();
    }
}
