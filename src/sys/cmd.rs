//! The one runner for external commands.
//!
//! Every program slipway starts (mmdebstrap, apt, bwrap, dracut, mkfs, sfdisk, grub, qemu-img...)
//! is started by [`spawn`], directly or through [`CommandRunExt`]:
//! - the exit status is always checked, and a failure names the program and carries the tail
//!   of what it wrote to stderr (or stdout, for tools that report errors there);
//! - stdin is the runner's: closed, or the bytes given to [`CommandRunExt::run_with_input`];
//!   callers never set it;
//! - every child dies with slipway, even when slipway is killed with SIGKILL: the child asks
//!   for `PR_SET_PDEATHSIG` before it executes, then checks that slipway did not die in
//!   between. The kernel sends that signal when the *thread* that forked the child exits, so
//!   all children are forked by one spawner thread that lives as long as the process; a
//!   child started from a short-lived worker thread does not die with that thread.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};

/// How many lines of a failing command's output an error keeps.
pub const ERROR_TAIL_LINES: usize = 30;

/// A human readable rendering of a command line, for logs and errors.
pub fn display(cmd: &Command) -> String {
    let parts: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect();
    let full = parts.join(" ");
    if full.len() > 400 {
        format!("{}...", &full[..full.floor_char_boundary(400)])
    } else {
        full
    }
}

/// Keeps the last `n` lines of a stream.
#[derive(Debug, Default)]
pub struct Tail {
    lines: VecDeque<String>,
    max: usize,
}

impl Tail {
    pub fn new(max: usize) -> Self {
        Self {
            lines: VecDeque::new(),
            max,
        }
    }
    pub fn push(&mut self, line: String) {
        if self.lines.len() == self.max {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
    pub fn render(&self) -> String {
        self.lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
    /// The last `n` lines of `text`.
    pub fn from_text(text: &str, n: usize) -> String {
        let mut t = Tail::new(n);
        text.lines().for_each(|l| t.push(l.to_string()));
        t.render()
    }
}

fn tail_of(bytes: &[u8], n: usize) -> String {
    Tail::from_text(&String::from_utf8_lossy(bytes), n)
}

/// A spawn request for the spawner thread, and where its answer goes.
type SpawnJob = (Command, mpsc::SyncSender<(Command, std::io::Result<Child>)>);

/// The spawner thread's queue; the thread is started on first use and never exits.
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnJob>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("slipway-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let child = cmd.spawn();
                    let _ = reply.send((cmd, child));
                }
            })
            .expect("starting the process spawner thread");
        Mutex::new(tx)
    })
}

/// Start `cmd` so that it dies with slipway (see the module documentation). The one place
/// where slipway starts a child process. `cmd` keeps its configuration for error messages.
pub fn spawn(cmd: &mut Command) -> Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec the closure calls only async-signal-safe functions
    // (prctl, getppid, raise) and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // slipway may have died before prctl took effect: then nobody would kill us.
            if libc::getppid() != parent {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    let owned = std::mem::replace(cmd, Command::new(""));
    spawner()
        .lock()
        .map_err(|_| anyhow::anyhow!("the process spawner is poisoned"))?
        .send((owned, reply_tx))
        .map_err(|_| anyhow::anyhow!("the process spawner thread is gone"))?;
    let (owned, child) = reply_rx
        .recv()
        .map_err(|_| anyhow::anyhow!("the process spawner thread is gone"))?;
    *cmd = owned;
    child.map_err(|e| spawn_error(cmd, e))
}

/// What [`run_timed`] saw.
#[derive(Debug, Clone)]
pub struct Timed {
    /// The exit status, `None` when the command was killed for running too long.
    pub status: Option<std::process::ExitStatus>,
    /// stdout and stderr interleaved as they arrived, the last `max_output` bytes.
    pub output: String,
    pub elapsed: Duration,
}

/// Run `cmd` for at most `timeout`, stdout and stderr together in one pipe. It runs in a
/// process group of its own, and the whole group is killed when the time is up (a check that
/// started a child cannot leave it behind). Only failing to start is an error.
pub fn run_timed(cmd: &mut Command, timeout: Duration, max_output: usize) -> Result<Timed> {
    let (mut reader, writer) = std::io::pipe().context("creating a pipe")?;
    let writer2 = writer.try_clone().context("duplicating a pipe")?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        .process_group(0);
    let start = std::time::Instant::now();
    let mut child = spawn(cmd)?;
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let pgid = child.id() as libc::pid_t;
    let collector = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match std::io::Read::read(&mut reader, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    if all.len() > 2 * max_output {
                        all.drain(..all.len() - max_output);
                    }
                }
            }
        }
        all
    });
    let status = loop {
        if let Some(st) = child
            .try_wait()
            .with_context(|| format!("waiting for `{}`", display(cmd)))?
        {
            break Some(st);
        }
        if start.elapsed() >= timeout {
            // SAFETY: plain syscalls on the group the child leads.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Children of the command that kept the pipe open would hold the collector: end them.
    // SAFETY: as above.
    unsafe { libc::killpg(pgid, libc::SIGKILL) };
    let mut all = collector.join().unwrap_or_default();
    if all.len() > max_output {
        all.drain(..all.len() - max_output);
    }
    Ok(Timed {
        status,
        output: String::from_utf8_lossy(&all).into_owned(),
        elapsed: start.elapsed(),
    })
}

/// Extension trait: run a [`Command`] through [`spawn`] and turn failure into an error with
/// context.
pub trait CommandRunExt {
    /// Run; stdout and stderr are captured and shown only when the command fails.
    fn run(&mut self) -> Result<()>;
    /// Run and return stdout as a string.
    fn run_get_string(&mut self) -> Result<String>;
    /// Run with `input` on stdin; return stdout as a string.
    fn run_with_input(&mut self, input: &[u8]) -> Result<String>;
    /// Run and return the whole output whatever the exit status, for callers that explain
    /// a failure themselves (apt); only failing to start is an error.
    fn run_get_output(&mut self) -> Result<Output>;
    /// Run and parse stdout as JSON.
    fn run_and_parse_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T>;
    /// Run, passing each line of combined output to `on_line` as it arrives (for progress),
    /// and keep the tail for the error.
    fn run_streaming(&mut self, on_line: &mut dyn FnMut(&str)) -> Result<()>;
    /// Run with stdout and stderr inherited (the user sees the tool's own output).
    fn run_inherited(&mut self) -> Result<()>;
}

/// The error for a command that ran and failed.
pub fn exit_failure(cmd: &Command, status: std::process::ExitStatus, tail: &str) -> anyhow::Error {
    let what = match status.code() {
        Some(c) => format!("exited with status {c}"),
        None => {
            use std::os::unix::process::ExitStatusExt;
            format!("was killed by signal {}", status.signal().unwrap_or(0))
        }
    };
    if tail.trim().is_empty() {
        anyhow::anyhow!("`{}` {what}", display(cmd))
    } else {
        anyhow::anyhow!(
            "`{}` {what}; last lines of its output:\n{}",
            display(cmd),
            tail
        )
    }
}

fn spawn_error(cmd: &Command, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        let prog = cmd.get_program().to_string_lossy().into_owned();
        let hint = crate::sys::preflight::package_for(&prog)
            .map(|p| format!(" (install it with `apt-get install {p}`)"))
            .unwrap_or_default();
        anyhow::anyhow!("required program `{prog}` was not found{hint}")
    } else {
        anyhow::Error::new(e).context(format!("starting `{}`", display(cmd)))
    }
}

/// Run to completion with `input` (or nothing) on stdin, output captured.
fn output_with_input(cmd: &mut Command, input: Option<&[u8]>) -> Result<Output> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = spawn(cmd)?;
    let writer = match (input, child.stdin.take()) {
        (Some(data), Some(mut stdin)) => {
            let data = data.to_vec();
            // A separate thread, so a child that writes a lot before reading cannot deadlock.
            Some(std::thread::spawn(move || stdin.write_all(&data)))
        }
        _ => None,
    };
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for `{}`", display(cmd)))?;
    if let Some(w) = writer {
        match w.join() {
            Ok(Ok(())) => {}
            // The child may exit without reading all its input; its status tells.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Ok(Err(e)) => {
                return Err(e).with_context(|| format!("writing to `{}`", display(cmd)));
            }
            Err(_) => anyhow::bail!("writing to `{}`: writer thread panicked", display(cmd)),
        }
    }
    Ok(out)
}

fn checked(cmd: &Command, out: Output) -> Result<String> {
    if !out.status.success() {
        let mut tail = tail_of(&out.stderr, ERROR_TAIL_LINES);
        if tail.trim().is_empty() {
            tail = tail_of(&out.stdout, ERROR_TAIL_LINES);
        }
        return Err(exit_failure(cmd, out.status, &tail));
    }
    String::from_utf8(out.stdout).with_context(|| format!("output of `{}`", display(cmd)))
}

impl CommandRunExt for Command {
    fn run(&mut self) -> Result<()> {
        self.run_get_string().map(|_| ())
    }

    fn run_get_string(&mut self) -> Result<String> {
        let out = output_with_input(self, None)?;
        checked(self, out)
    }

    fn run_with_input(&mut self, input: &[u8]) -> Result<String> {
        let out = output_with_input(self, Some(input))?;
        checked(self, out)
    }

    fn run_get_output(&mut self) -> Result<Output> {
        output_with_input(self, None)
    }

    fn run_and_parse_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let s = self.run_get_string()?;
        serde_json::from_str(&s).with_context(|| format!("parsing JSON from `{}`", display(self)))
    }

    fn run_streaming(&mut self, on_line: &mut dyn FnMut(&str)) -> Result<()> {
        let (reader, writer) = std::io::pipe().context("creating a pipe")?;
        let writer2 = writer.try_clone().context("duplicating a pipe")?;
        self.stdin(Stdio::null())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::from(writer2));
        let mut child = spawn(self)?;
        // Drop our copies of the write ends (held by `self`) so EOF arrives when the child exits.
        self.stdout(Stdio::null()).stderr(Stdio::null());
        let mut tail = Tail::new(ERROR_TAIL_LINES);
        let mut buf = BufReader::new(reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = buf.read_until(b'\n', &mut line).unwrap_or(0);
            if n == 0 {
                break;
            }
            let s = String::from_utf8_lossy(&line);
            let s = s.trim_end_matches(['\n', '\r']);
            on_line(s);
            tail.push(s.to_string());
        }
        let status = child
            .wait()
            .with_context(|| format!("waiting for `{}`", display(self)))?;
        if !status.success() {
            return Err(exit_failure(self, status, &tail.render()));
        }
        Ok(())
    }

    fn run_inherited(&mut self) -> Result<()> {
        self.stdin(Stdio::null());
        let status = spawn(self)?
            .wait()
            .with_context(|| format!("waiting for `{}`", display(self)))?;
        if !status.success() {
            return Err(exit_failure(self, status, ""));
        }
        Ok(())
    }
}

/// Quote a string for POSIX sh (`shlex`); a string with a NUL byte cannot be quoted and is
/// shown escaped.
pub fn shell_quote(s: &str) -> String {
    shlex::try_quote(s)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| s.escape_debug().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_command_error_has_stderr_tail() {
        let err = Command::new("sh")
            .args(["-c", "echo first >&2; echo second >&2; exit 3"])
            .run()
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("status 3"), "{msg}");
        assert!(msg.contains("first\nsecond"), "{msg}");
    }

    #[test]
    fn missing_program_names_package() {
        let err = Command::new("mmdebstrap-does-not-exist").run().unwrap_err();
        assert!(format!("{err:#}").contains("was not found"));
    }

    #[test]
    fn streaming_sees_lines_and_keeps_tail() {
        let mut seen = Vec::new();
        let err = Command::new("sh")
            .args([
                "-c",
                "for i in 1 2 3; do echo line$i; done; echo oops >&2; exit 1",
            ])
            .run_streaming(&mut |l| seen.push(l.to_string()))
            .unwrap_err();
        assert_eq!(seen, ["line1", "line2", "line3", "oops"]);
        assert!(format!("{err:#}").contains("line3\noops"));
    }

    #[test]
    fn input_reaches_stdin_and_stdin_is_closed_otherwise() {
        let out = Command::new("cat").run_with_input(b"hello").unwrap();
        assert_eq!(out, "hello");
        // With no input, stdin is closed (cat sees EOF at once, rather than hanging).
        assert_eq!(Command::new("cat").run_get_string().unwrap(), "");
    }

    #[test]
    fn children_die_with_slipway_not_with_the_spawning_thread() {
        // A child started from a thread that then exits must keep running...
        let handle = std::thread::spawn(|| {
            let mut c = Command::new("sleep");
            c.arg("30").stdin(Stdio::null());
            spawn(&mut c).unwrap()
        });
        let mut child = handle.join().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child died with the thread that asked for it"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Not a test on its own: the "slipway" process of the test below (this test binary run
    /// again). It starts a child through the runner, prints its pid, and waits to be killed.
    #[test]
    #[ignore = "helper process of children_die_when_slipway_is_killed"]
    fn helper_parent_holding_a_child() {
        if std::env::var_os("SLIPWAY_TEST_RUNNER_HELPER").is_none() {
            return;
        }
        // Spawn from a worker thread that exits at once, to cover the thread case too.
        let child = std::thread::spawn(|| {
            let mut c = Command::new("sleep");
            c.arg("60");
            spawn(&mut c).unwrap()
        })
        .join()
        .unwrap();
        println!("CHILD {}", child.id());
        std::thread::sleep(std::time::Duration::from_secs(60));
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn children_die_when_slipway_is_killed() {
        let mut helper = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sys::cmd::tests::helper_parent_holding_a_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SLIPWAY_TEST_RUNNER_HELPER", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(helper.stdout.take().unwrap()).lines();
        let pid: i32 = loop {
            let l = lines.next().expect("helper printed its child").unwrap();
            if let Some((_, p)) = l.split_once("CHILD ") {
                break p.trim().parse().unwrap();
            }
        };
        let alive = |pid: i32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false)
        };
        assert!(alive(pid), "the child outlived its spawning thread");
        helper.kill().unwrap();
        helper.wait().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(!alive(pid), "child {pid} outlived the killed parent");
    }
}
