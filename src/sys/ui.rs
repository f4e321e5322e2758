//! Progress and logs, always on stderr; data on stdout through [`out`] (and [`outln!`]).
//!
//! On a terminal each phase gets an indicatif spinner or bar; otherwise (pipes, CI, journald)
//! plain `slipway: phase: message` lines, rate-limited so a long phase does not flood a log.
//! Every phase's wall time is recorded for machine-readable reports (composejson, image
//! summary).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Silence informational output (errors are still printed by `main`).
pub fn set_quiet(q: bool) {
    QUIET.store(q, Ordering::Relaxed);
}

pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Standard output was closed by its reader (a pipe into `head`, `:`...): not a failure of
/// the command, which ends quietly (`main` exits with 141, as a program killed by SIGPIPE
/// would).
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// The exit status of a program whose standard output was closed (128 + SIGPIPE).
pub const STDOUT_CLOSED_EXIT: i32 = 141;

/// Write `text` to standard output and flush it: the one way commands print data. A closed
/// pipe is [`StdoutClosed`]; any other write error (a full disk, `/dev/full`) is an error that
/// says so.
pub fn out(text: impl std::fmt::Display) -> anyhow::Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    write!(o, "{text}")
        .and_then(|_| o.flush())
        .map_err(stdout_error)
}

/// The error for a failed write to standard output.
pub fn stdout_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        anyhow::Error::new(StdoutClosed)
    } else {
        anyhow::Error::new(e).context("writing to standard output")
    }
}

/// `println!` through [`out`]: evaluates to `anyhow::Result<()>`.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::sys::ui::out("\n")
    };
    ($($arg:tt)*) => {
        $crate::sys::ui::out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// An informational line on stderr.
pub fn info(msg: impl AsRef<str>) {
    if !quiet() {
        eprintln!("slipway: {}", msg.as_ref());
    }
}

/// A warning on stderr; shown even with `--quiet`.
pub fn warn(msg: impl AsRef<str>) {
    eprintln!("slipway: warning: {}", msg.as_ref());
}

/// Interval between plain-text progress lines within one phase.
const PLAIN_INTERVAL: Duration = Duration::from_secs(10);

/// Records phases and their wall time; draws them on stderr.
#[derive(Debug)]
pub struct Progress {
    tty: bool,
    timings: Mutex<Vec<(String, Duration)>>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    pub fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal() && !quiet(),
            timings: Mutex::new(Vec::new()),
        }
    }

    /// Start a phase. `total` makes a bar (objects, bytes); `None` a spinner.
    pub fn phase(&self, name: &str, message: &str, total: Option<u64>) -> Phase<'_> {
        let bar = if self.tty {
            let pb = match total {
                Some(t) => ProgressBar::new(t).with_style(
                    ProgressStyle::with_template(
                        "{spinner} {prefix:>9} [{bar:30}] {pos}/{len} {msg} ({elapsed})",
                    )
                    .expect("static template")
                    .progress_chars("=> "),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{spinner} {prefix:>9} {wide_msg} ({elapsed})")
                        .expect("static template"),
                ),
            };
            pb.set_prefix(name.to_string());
            pb.set_message(message.to_string());
            pb.enable_steady_tick(Duration::from_millis(120));
            Some(pb)
        } else {
            info(format!("{name}: {message}"));
            None
        };
        Phase {
            owner: self,
            name: name.to_string(),
            start: Instant::now(),
            bar,
            last_plain: Mutex::new(Instant::now()),
            done: false,
        }
    }

    /// Wall time of each finished phase, in order.
    pub fn timings(&self) -> Vec<(String, Duration)> {
        self.timings.lock().expect("poisoned").clone()
    }

    fn record(&self, name: &str, d: Duration) {
        self.timings
            .lock()
            .expect("poisoned")
            .push((name.to_string(), d));
    }
}

/// One running phase; finishing (or dropping) it records its duration.
pub struct Phase<'a> {
    owner: &'a Progress,
    name: String,
    start: Instant,
    bar: Option<ProgressBar>,
    last_plain: Mutex<Instant>,
    done: bool,
}

impl Phase<'_> {
    /// Update the message; in plain mode printed at most every [`PLAIN_INTERVAL`].
    pub fn message(&self, msg: &str) {
        match &self.bar {
            Some(pb) => pb.set_message(msg.to_string()),
            None => {
                let mut last = self.last_plain.lock().expect("poisoned");
                if last.elapsed() >= PLAIN_INTERVAL {
                    *last = Instant::now();
                    info(format!("{}: {msg}", self.name));
                }
            }
        }
    }

    /// Advance a bar.
    pub fn inc(&self, n: u64) {
        if let Some(pb) = &self.bar {
            pb.inc(n);
        }
    }

    /// Advance a bar whose length is only known once work starts.
    pub fn inc_of(&self, n: u64, total: u64) {
        if let Some(pb) = &self.bar {
            if pb.length() != Some(total) {
                pb.set_length(total);
            }
            pb.inc(n);
        }
    }

    /// Print a line above the bar (or as a plain line).
    pub fn println(&self, msg: &str) {
        match &self.bar {
            Some(pb) => pb.println(format!("slipway: {}: {msg}", self.name)),
            None => info(format!("{}: {msg}", self.name)),
        }
    }

    /// Finish with a closing message.
    pub fn finish(mut self, msg: &str) -> Duration {
        self.close(msg)
    }

    fn close(&mut self, msg: &str) -> Duration {
        let d = self.start.elapsed();
        if self.done {
            return d;
        }
        self.done = true;
        self.owner.record(&self.name, d);
        match self.bar.take() {
            Some(pb) => {
                pb.finish_and_clear();
                if !quiet() {
                    eprintln!("slipway: {}: {msg} ({:.1}s)", self.name, d.as_secs_f64());
                }
            }
            None => info(format!("{}: {msg} ({:.1}s)", self.name, d.as_secs_f64())),
        }
        d
    }
}

impl Drop for Phase<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            self.owner.record(&self.name, self.start.elapsed());
            if let Some(pb) = self.bar.take() {
                pb.abandon();
            }
        }
    }
}

/// The `"schema": 1` field every JSON document slipway prints or writes starts with, so a
/// consumer can tell which shape it reads. Put it first in the struct (`pub schema: Schema`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Schema;

impl serde::Serialize for Schema {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(1)
    }
}
