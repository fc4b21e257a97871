//! `study --slurm` on a real Slurm: the test starts munged, slurmctld and slurmd (Debian's
//! slurm-wlm and munge) as a one-node cluster on this machine, submits a tiny phantom study,
//! cancels one task while it trains, resubmits (only that cell goes back), and checks that the
//! tables equal the same study run here with --jobs 1; then a `fit --slurm` whose plan job
//! submits the fold runs and the finishing fit. Where the daemons cannot start, the test fails
//! saying why.
mod common;

use common::server::free_port;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A one-node Slurm cluster in a temporary folder, stopped when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

fn run(program: &str, args: &[&str], conf: &Path) -> std::process::Output {
    Command::new(program).args(args).env("SLURM_CONF", conf).output().unwrap_or_else(|e| {
        panic!("cannot run {program} ({e}): install Debian's slurm-wlm and munge (`make test` does)")
    })
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["state", "spool"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let conf = d.join("slurm.conf");
        let key = d.join("munge.key");
        let o = run("mungekey", &["-c", "-k", key.to_str().unwrap()], &conf);
        assert!(o.status.success(), "mungekey: {}", String::from_utf8_lossy(&o.stderr));
        let socket = d.join("munge.sock");
        let file = |name: &str| format!("--{name}-file={}", d.join(format!("munged.{name}")).display());
        let o = run(
            "munged",
            &[
                "--force",
                &format!("--key-file={}", key.display()),
                &format!("--socket={}", socket.display()),
                &file("pid"),
                &file("log"),
                &file("seed"),
            ],
            &conf,
        );
        assert!(o.status.success(), "munged did not start: {}", String::from_utf8_lossy(&o.stderr));
        let host = String::from_utf8(run("hostname", &["-s"], &conf).stdout).unwrap().trim().to_string();
        let p = |name: &str| d.join(name).display().to_string();
        let text = format!(
            "ClusterName=gensegtest\nSlurmctldHost={host}\nSlurmctldPort={}\nSlurmdPort={}\nSlurmUser=root\nSlurmdUser=root\n\
             AuthType=auth/munge\nAuthInfo=socket={}\nCredType=cred/munge\nStateSaveLocation={}\nSlurmdSpoolDir={}\n\
             SlurmctldPidFile={}\nSlurmdPidFile={}\nSlurmctldLogFile={}\nSlurmdLogFile={}\nProctrackType=proctrack/linuxproc\n\
             TaskPlugin=task/none\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core\nReturnToService=2\nMpiDefault=none\n\
             JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
             NodeName={host} CPUs=2 RealMemory=2000 State=UNKNOWN\nPartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
            free_port(),
            free_port(),
            socket.display(),
            p("state"),
            p("spool"),
            p("slurmctld.pid"),
            p("slurmd.pid"),
            p("slurmctld.log"),
            p("slurmd.log"),
        );
        std::fs::write(&conf, text).unwrap();
        let cluster = Cluster { dir, conf };
        for daemon in ["slurmctld", "slurmd"] {
            let o = run(daemon, &["-f", cluster.conf.to_str().unwrap()], &cluster.conf);
            assert!(
                o.status.success(),
                "{daemon} did not start: {}{}",
                String::from_utf8_lossy(&o.stderr),
                cluster.logs()
            );
        }
        let started = Instant::now();
        loop {
            let o = run("sinfo", &["-h", "-o", "%T"], &cluster.conf);
            if String::from_utf8_lossy(&o.stdout).trim() == "idle" {
                return cluster;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the node never became idle: {:?}{}",
                o,
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn logs(&self) -> String {
        ["slurmctld.log", "slurmd.log", "munged.log"]
            .iter()
            .map(|f| format!("\n--- {f}:\n{}", std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default()))
            .collect()
    }

    /// Waits until no job of this cluster is queued or running.
    fn wait_idle(&self, limit: Duration) {
        let started = Instant::now();
        loop {
            let o = run("squeue", &["-h"], &self.conf);
            if o.status.success() && o.stdout.is_empty() {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "jobs still queued: {}{}",
                String::from_utf8_lossy(&o.stdout),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = run("scancel", &["--user=root"], &self.conf);
        for pid_file in ["slurmd.pid", "slurmctld.pid", "munged.pid"] {
            if let Some(pid) =
                std::fs::read_to_string(self.dir.path().join(pid_file)).ok().and_then(|t| t.trim().parse::<i32>().ok())
            {
                // SAFETY: a plain signal to a daemon this test started.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
    }
}

fn dice_columns(study: &Path) -> Vec<String> {
    let text =
        std::fs::read_to_string(study.join("results.csv")).unwrap_or_else(|e| panic!("{}: {e}", study.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let keep: Vec<usize> = header.iter().enumerate().filter(|(_, h)| !h.contains("second")).map(|(i, _)| i).collect();
    let mut rows: Vec<String> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            keep.iter().map(|&i| f[i]).collect::<Vec<_>>().join(",")
        })
        .collect();
    rows.sort();
    rows
}

#[test]
#[ignore = "slow: a real Slurm cluster and two small studies"]
fn a_study_and_a_fit_run_on_slurm_and_a_cancelled_task_resumes() {
    let cluster = Cluster::start();
    let d = tempfile::tempdir().unwrap();
    let data = phantom_dataset(d.path(), 20);
    let study = |out: &Path, extra: &[&str]| {
        let mut args = vec!["study", arg(&data), "--n", "6,8", "--seeds", "2", "--methods", "plain,augment"];
        args.extend(["--size", "32", "--width", "4", "--depth", "3", "--iters", "300", "--val-every", "20"]);
        args.extend(["--patience", "0", "--device", "cpu", "--out", arg(out)]);
        args.extend(extra);
        Command::new(env!("CARGO_BIN_EXE_genseg")).args(&args).env("SLURM_CONF", &cluster.conf).output().unwrap()
    };
    let reference = d.path().join("reference");
    let o = study(&reference, &["--jobs", "1", "--threads", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let on_slurm = d.path().join("on-slurm");
    let o = study(&on_slurm, &["--slurm=--time=30"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let said = stdout(&o);
    assert!(said.contains("submitted cells [0, 1, 2, 3]"), "{said}");
    let array: String = said.split("job array ").nth(1).unwrap().chars().take_while(char::is_ascii_digit).collect();
    // Cancel cell 0 once its first run has a checkpoint past iteration 60.
    let state = on_slurm.join("runs/plain-n6-s1/checkpoint/state.json");
    let started = Instant::now();
    loop {
        let iter = std::fs::read_to_string(&state)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["iter"].as_u64());
        if iter.is_some_and(|i| i >= 60) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "cell 0 never trained: {}", cluster.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = run("scancel", &[&format!("{array}_0")], &cluster.conf);
    assert!(o.status.success(), "scancel: {}", String::from_utf8_lossy(&o.stderr));
    cluster.wait_idle(Duration::from_secs(600));
    assert!(!on_slurm.join("runs/augment-n6-s1/summary.json").exists(), "cell 0 was cancelled before it finished");

    // The same command resubmits only the unfinished cell; it resumes its checkpoint.
    let o = study(&on_slurm, &["--slurm=--time=30"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("submitted cells [0]"), "{}", stdout(&o));
    cluster.wait_idle(Duration::from_secs(600));
    let log = std::fs::read_to_string(on_slurm.join("slurm/cell-0.log")).unwrap();
    assert!(log.contains("resuming"), "the resubmitted task did not resume: {log}");
    let tables = std::fs::read_to_string(on_slurm.join("slurm/tables.log")).unwrap_or_default();
    assert!(on_slurm.join("results.md").is_file(), "the tables job wrote nothing: {tables}");
    assert_eq!(dice_columns(&on_slurm), dice_columns(&reference), "Slurm and --jobs 1 tables differ");
    let o = study(&on_slurm, &["--slurm"]);
    assert!(stdout(&o).contains("every cell has finished"), "{}", stdout(&o));

    // fit --slurm: the plan job submits the fold runs and the finishing fit, which delivers.
    let fit = d.path().join("fit");
    let o = Command::new(env!("CARGO_BIN_EXE_genseg"))
        .args(["--device", "cpu", "fit", arg(&data), "--budget", "60s", "--folds", "2", "--candidates", "augment"])
        .args(["--no-onnx", "--slurm=--time=30", "--out", arg(&fit)])
        .env("SLURM_CONF", &cluster.conf)
        .output()
        .unwrap();
    assert!(o.status.success() && stdout(&o).contains("plan is Slurm job"), "{}{}", stdout(&o), stderr(&o));
    cluster.wait_idle(Duration::from_secs(600));
    let log = |name: &str| std::fs::read_to_string(fit.join("slurm").join(name)).unwrap_or_default();
    assert!(log("plan.log").contains("fold runs submitted"), "plan job: {}", log("plan.log"));
    for k in 0..2 {
        assert!(
            fit.join(format!("runs/augment/fold{k}/summary.json")).is_file(),
            "fold {k}: {}",
            log(&format!("fold-{k}.log"))
        );
        // Side by side, each task spends the training budget, not its share of a sequence.
        assert!(log(&format!("fold-{k}.log")).contains("the plan's, for runs side by side"));
    }
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fit.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["plan"]["runs"], "side-by-side", "the plan job planned for runs one after another");
    assert!(log("finish.log").contains("chosen: augment"), "finishing fit: {}", log("finish.log"));
    assert!(!log("finish.log").contains(": step "), "the finishing fit trained instead of collecting");
    assert!(fit.join("ensemble.json").is_file() && fit.join("report.html").is_file());
}
