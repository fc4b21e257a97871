//! Device choice, thread count, version stamps, atomic file output and weight files.
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::Device;

/// `auto` picks CUDA when libtorch sees a GPU.
/// `println!` that returns the write's error from the enclosing function instead of panicking,
/// so that `genseg ... | head` ends quietly when the reader goes away ([`is_broken_pipe`]).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?
    }};
}

/// Whether `e` comes from writing to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if !tch::Cuda::is_available() {
                bail!("--device cuda: libtorch sees no CUDA device (is the binary linked to a CUDA libtorch and a GPU present?); use --device cpu or auto");
            }
            Ok(Device::Cuda(0))
        }
        other => bail!("unknown device '{other}': use auto, cpu or cuda"),
    }
}

/// Sets libtorch's intra-op thread count; 0 keeps libtorch's default.
/// libtorch threads of each of `jobs` worker processes: `threads` (0: every core) split evenly.
pub fn threads_per_worker(threads: usize, jobs: usize) -> usize {
    let total = if threads == 0 { std::thread::available_parallelism().map_or(1, |c| c.get()) } else { threads };
    (total / jobs).max(1)
}

pub fn set_threads(threads: usize) {
    if threads > 0 {
        tch::set_num_threads(threads as i32);
    }
}

/// What a run ran with, written beside every result for reproducibility.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Versions {
    pub genseg: String,
    pub tch: String,
    pub libtorch_lib: String,
    pub device: String,
    pub threads: i32,
    pub cuda_available: bool,
}

pub fn versions(device: Device) -> Versions {
    Versions {
        genseg: env!("CARGO_PKG_VERSION").to_string(),
        tch: "0.24.0 (libtorch 2.11.0)".to_string(),
        libtorch_lib: env!("GENSEG_LIBTORCH_LIB").to_string(),
        device: format!("{device:?}"),
        threads: tch::get_num_threads(),
        cuda_available: tch::Cuda::is_available(),
    }
}

/// A child process that ends when this process ends, however it ends (Linux: the parent-death
/// signal; a killed `study --jobs` or `export` leaves no worker or Python behind).
pub fn child_process(program: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: prctl and getppid are async-signal-safe and touch no memory of the parent.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have ended before the signal was armed.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    command
}

/// Removes `.tmp-{pid}-{name}` files beside `path` left by processes that no longer run (a
/// killed command); a live writer's are kept.
pub fn remove_dead_temporaries(path: &Path) -> Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return Ok(()) };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let suffix = format!("-{}", name.to_string_lossy());
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let file = entry.file_name().to_string_lossy().to_string();
        let pid =
            file.strip_prefix(".tmp-").and_then(|rest| rest.strip_suffix(&suffix)).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                std::fs::remove_file(entry.path())
                    .with_context(|| format!("cannot remove the stale temporary {}", entry.path().display()))?;
            }
        }
    }
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    // Keep the extension last: libtorch picks the format (safetensors or not) from it.
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    path.with_file_name(format!(".tmp-{}-{name}", std::process::id()))
}

/// Writes through a temp file in the same folder, then renames: readers never see half a file.
pub fn write_atomic_with<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&Path) -> Result<()>,
{
    let tmp = temp_path(path);
    let result = write(&tmp).and_then(|_| {
        std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| std::fs::write(tmp, bytes).with_context(|| format!("cannot write {}", tmp.display())))
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Creates the output folder and proves it is writable before any long work starts.
/// `path` made absolute with links resolved as far as it exists (the rest appended), so that two
/// spellings of one place compare equal before anything is written there.
pub fn resolved(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return absolute,
        }
    }
    let mut out = existing.canonicalize().unwrap_or_else(|_| existing.to_path_buf());
    out.extend(rest.iter().rev());
    out
}

/// Refuses an output that is one of a command's inputs, lies inside one, or holds one: no
/// command writes over the user's data. `inputs`: (what the user called it, the path).
pub fn refuse_overlap(out_flag: &str, out: &Path, inputs: &[(&str, &Path)]) -> Result<()> {
    let o = resolved(out);
    for (what, input) in inputs {
        let i = resolved(input);
        let relation = if o == i {
            "is"
        } else if o.starts_with(&i) {
            "is inside"
        } else if i.starts_with(&o) {
            "holds"
        } else {
            continue;
        };
        anyhow::bail!(
            "{out_flag} {} {relation} {what} {}: genseg never writes into its inputs; choose an {out_flag} outside it",
            out.display(),
            input.display()
        );
    }
    Ok(())
}

pub fn ensure_writable_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output folder {}: choose a writable --out location", dir.display()))?;
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").with_context(|| {
        format!("output folder {} is not writable: fix its permissions or choose another --out", dir.display())
    })?;
    std::fs::remove_file(&probe).ok();
    Ok(())
}

/// Named tensors (optimiser state) in one safetensors file. Written by Rust code, so a full disk
/// is an error naming the file (libtorch's own format aborts the process instead).
pub fn save_tensors(path: &Path, named: &[(String, tch::Tensor)]) -> Result<()> {
    let contiguous: Vec<(&str, tch::Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t.contiguous())).collect();
    tch::Tensor::write_safetensors(&contiguous, path).with_context(|| format!("cannot write {}", path.display()))
}

pub fn load_tensors(path: &Path) -> Result<Vec<(String, tch::Tensor)>> {
    tch::Tensor::read_safetensors(path).with_context(|| format!("cannot read {}", path.display()))
}

/// True when every variable of `vs` (weights and BatchNorm buffers) is finite.
pub fn all_finite(vs: &tch::nn::VarStore) -> bool {
    tch::no_grad(|| vs.variables().values().all(|t| bool::try_from(t.isfinite().all()).unwrap_or(false)))
}

/// An exclusive lock on a run (or study) folder: the file `.lock` (holding the pid), locked by the
/// operating system for as long as this value lives. The OS releases it when the process dies,
/// so a lock left by a killed run never blocks; dropping it also removes the file.
#[derive(Debug)]
pub struct FolderLock {
    file: std::fs::File,
    path: PathBuf,
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        // Removed while still locked; a process that opened the old file finds it unlinked
        // after locking it and starts over (see `lock_folder`).
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// Locks `dir` for this process; a folder another live process holds is refused naming its pid.
/// Temporary files that dead writers left behind in `dir` are removed once the lock is held.
pub fn lock_folder(dir: &Path) -> Result<FolderLock> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::MetadataExt;
    let path = dir.join(".lock");
    let mut file = loop {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                file.read_to_string(&mut holder).ok();
                bail!(
                    "{} is in use by another genseg process (pid {}); wait for it to finish or choose another --out",
                    dir.display(),
                    holder.trim()
                );
            }
            Err(std::fs::TryLockError::Error(e)) => bail!("cannot lock {}: {e}", path.display()),
        }
        // The holder may have removed the file between our open and our lock: then the lock
        // is on a file nobody else will see, so try again on the current one.
        let current = std::fs::metadata(&path).map(|m| m.ino()).ok();
        if current == Some(file.metadata()?.ino()) {
            break file;
        }
    };
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())?;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        // write_atomic's `.tmp-{pid}-{name}` and checkpoint folders' `.{name}.tmp-{pid}`.
        if name.starts_with('.') && name.contains(".tmp-") {
            let path = entry.path();
            let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            removed.with_context(|| format!("cannot remove the stale temporary {}", path.display()))?;
        }
    }
    Ok(FolderLock { file, path })
}

/// Saves a VarStore through a temp file (format from the extension, e.g. .safetensors).
pub fn save_vars(vs: &tch::nn::VarStore, path: &Path) -> Result<()> {
    write_atomic_with(path, |tmp| Ok(vs.save(tmp)?))
}

pub fn load_vars(vs: &mut tch::nn::VarStore, path: &Path) -> Result<()> {
    vs.load(path).with_context(|| {
        format!("cannot load weights from {} (was it written by this genseg version and config?)", path.display())
    })
}

/// Appends one JSON line; a torn last line after a kill is skipped by the reader.
pub fn append_jsonl<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    writeln!(f, "{}", serde_json::to_string(value)?)?;
    Ok(())
}

/// JSON has no NaN or infinity: serde_json writes them as `null` and then cannot read them back.
/// Use as `#[serde(with = "crate::runtime::json_f64")]`: NaN is written as `null`, infinities as
/// `"inf"`/`"-inf"`, and all three are read back (so finished runs with an infinite HD95 mean
/// resume).
pub mod json_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        match *v {
            v if v.is_nan() => s.serialize_none(),
            v if v == f64::INFINITY => s.serialize_str("inf"),
            v if v == f64::NEG_INFINITY => s.serialize_str("-inf"),
            v => s.serialize_f64(v),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(f64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Option::<Repr>::deserialize(d)? {
            None => Ok(f64::NAN),
            Some(Repr::Number(v)) => Ok(v),
            Some(Repr::Text(t)) => match t.as_str() {
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                other => Err(serde::de::Error::custom(format!("'{other}' is not a number"))),
            },
        }
    }

    #[cfg(test)]
    mod tests {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct W(#[serde(with = "super")] f64);

        #[test]
        fn non_finite_values_survive_a_round_trip() {
            for v in [1.5, f64::INFINITY, f64::NEG_INFINITY] {
                let text = serde_json::to_string(&W(v)).unwrap();
                assert_eq!(serde_json::from_str::<W>(&text).unwrap().0, v, "{text}");
            }
            assert!(serde_json::from_str::<W>(&serde_json::to_string(&W(f64::NAN)).unwrap()).unwrap().0.is_nan());
        }
    }
}
