//! Progress of a long loop wherever its output goes: a bar in a terminal; plain log lines when
//! stderr is a file or a pipe (nohup, a cluster job), at each status and at least every
//! [`LINE_EVERY`]. The time left comes from the recent rate, validation included, so it does not
//! swing with the first iterations.
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// The longest a log gets no line while the loop runs.
pub const LINE_EVERY: Duration = Duration::from_secs(30);
/// Samples of (time, position) the rate is taken over, at least a second apart.
const WINDOW: usize = 30;
/// Steps after which the expected time of the whole budget is logged.
const EXPECT_AFTER: u64 = 10;

pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    done: u64,
    first: u64,
    started: Instant,
    last_line: Instant,
    recent: VecDeque<(Instant, u64)>,
    status: String,
}

impl Progress {
    /// A loop of `total` steps named `label`, `done` of them already (a resumed run).
    pub fn new(label: &str, total: u64, done: u64) -> Progress {
        Progress::with_terminal(label, total, done, std::io::stderr().is_terminal())
    }

    fn with_terminal(label: &str, total: u64, done: u64, terminal: bool) -> Progress {
        let bar = terminal.then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template("{prefix:>10} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
                .expect("valid template");
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            bar.set_position(done);
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            label: label.to_string(),
            total,
            done,
            first: done,
            started: now,
            last_line: now,
            recent: VecDeque::from([(now, done)]),
            status: String::new(),
        }
    }

    /// One step done.
    pub fn inc(&mut self) {
        self.done += 1;
        let now = Instant::now();
        if self.recent.back().is_none_or(|(t, _)| now.duration_since(*t) >= Duration::from_secs(1)) {
            self.recent.push_back((now, self.done));
            if self.recent.len() > WINDOW {
                self.recent.pop_front();
            }
        }
        if self.done - self.first == EXPECT_AFTER && self.done < self.total {
            let per_step = now.duration_since(self.started).as_secs_f64() / EXPECT_AFTER as f64;
            tracing::info!(
                "{}: {per_step:.2} s per step so far; the whole budget of {} steps would take {}",
                self.label,
                self.total,
                clock(per_step * (self.total - self.first) as f64)
            );
        }
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(self.message());
            }
            None if now.duration_since(self.last_line) >= LINE_EVERY => self.line(),
            None => {}
        }
    }

    /// The latest figures (loss, validation), shown from now on.
    pub fn status(&mut self, status: String) {
        self.status = status;
        match &self.bar {
            Some(bar) => bar.set_message(self.message()),
            None => self.line(),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }

    /// Seconds left at the recent rate; `None` before a rate exists.
    pub fn seconds_left(&self) -> Option<f64> {
        let (&(t0, p0), &(t1, p1)) = (self.recent.front()?, self.recent.back()?);
        let rate = (p1 - p0) as f64 / t1.duration_since(t0).as_secs_f64();
        (p1 > p0 && rate.is_finite()).then(|| self.total.saturating_sub(self.done) as f64 / rate)
    }

    fn message(&self) -> String {
        let left = self.seconds_left().map(|s| format!(", about {} left", clock(s))).unwrap_or_default();
        format!("{}{left}", self.status)
    }

    fn line(&mut self) {
        self.last_line = Instant::now();
        let elapsed = clock(self.started.elapsed().as_secs_f64());
        let status = if self.status.is_empty() { String::new() } else { format!(", {}", self.message()) };
        tracing::info!("{}: step {}/{}{status}, {elapsed} elapsed", self.label, self.done, self.total);
    }
}

/// `1h02m`, `4m05s`, `12s`.
pub fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_reads_as_people_write_durations() {
        assert_eq!(clock(12.4), "12s");
        assert_eq!(clock(245.0), "4m05s");
        assert_eq!(clock(3720.0), "1h02m");
    }

    #[test]
    fn time_left_follows_the_recent_rate() {
        let mut p = Progress::with_terminal("test", 100, 0, false);
        let start = Instant::now() - Duration::from_secs(100);
        // 10 steps in the first 90 s, then 10 in the last 10 s: the recent rate is 1 step/s.
        p.recent =
            VecDeque::from([(start, 0), (start + Duration::from_secs(90), 10), (start + Duration::from_secs(100), 20)]);
        p.done = 20;
        let whole = p.seconds_left().unwrap();
        assert!((whole - 80.0 / 0.2).abs() < 1.0, "over the whole window {whole}");
        p.recent.pop_front();
        let recent = p.seconds_left().unwrap();
        assert!((recent - 80.0).abs() < 1.0, "recent {recent}");
    }
}
