//! The one runner for external commands.
//!
//! Every tool slipway calls (mmdebstrap, apt, bwrap, dracut, mkfs, grub, qemu-img...) goes
//! through [`CommandRunExt`]: the exit status is always checked, stdin is closed unless a
//! caller provides it, and when a command fails the error names the program and carries the
//! tail of what it wrote to stderr (and stdout, for tools that report errors there).

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// How many lines of a failing command's output an error keeps.
pub const ERROR_TAIL_LINES: usize = 30;

/// A human readable rendering of a command line, for logs and errors.
pub fn display(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    for a in cmd.get_args() {
        let s = a.to_string_lossy();
        if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
            parts.push(shell_quote(&s));
        } else {
            parts.push(s.into_owned());
        }
    }
    let full = parts.join(" ");
    if full.len() > 400 {
        format!("{}...", &full[..full.floor_char_boundary(400)])
    } else {
        full
    }
}

/// Quote a string for POSIX sh.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
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
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
    /// The last `n` lines of `text`.
    pub fn from_text(text: &str, n: usize) -> String {
        let mut t = Tail::new(n);
        text.lines().for_each(|l| t.push(l.to_string()));
        t.render()
    }
}

fn tail_of(bytes: &[u8], n: usize) -> String {
    let s = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = s.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

/// Ask the kernel to kill a child when slipway dies (even by SIGKILL), so no mmdebstrap,
/// dracut or qemu outlives the process that started it.
pub fn kill_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Extension trait: run a [`Command`] and turn failure into an error with context. Every
/// command run this way dies with slipway (see [`kill_with_parent`]).
pub trait CommandRunExt {
    /// Run; stdout and stderr are captured and shown only when the command fails.
    fn run(&mut self) -> Result<()>;
    /// Run and return stdout as a string.
    fn run_get_string(&mut self) -> Result<String>;
    /// Run and parse stdout as JSON.
    fn run_and_parse_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T>;
    /// Run, passing each line of combined output to `on_line` as it arrives (for progress),
    /// and keep the tail for the error.
    fn run_streaming(&mut self, on_line: &mut dyn FnMut(&str)) -> Result<()>;
    /// Run with stdout and stderr inherited (the user sees the tool's own output).
    fn run_inherited(&mut self) -> Result<()>;
}

fn exit_failure(cmd: &Command, status: std::process::ExitStatus, tail: &str) -> anyhow::Error {
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

fn program_name(cmd: &Command) -> String {
    cmd.get_program().to_string_lossy().into_owned()
}

fn spawn_error(cmd: &Command, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        let prog = program_name(cmd);
        let hint = crate::sys::preflight::package_for(&prog)
            .map(|p| format!(" (install it with `apt-get install {p}`)"))
            .unwrap_or_default();
        anyhow::anyhow!("required program `{prog}` was not found{hint}")
    } else {
        anyhow::Error::new(e).context(format!("starting `{}`", display(cmd)))
    }
}

impl CommandRunExt for Command {
    fn run(&mut self) -> Result<()> {
        self.run_get_string().map(|_| ())
    }

    fn run_get_string(&mut self) -> Result<String> {
        if self.get_program() != OsStr::new("") {
            self.stdin(Stdio::null());
        }
        kill_with_parent(self);
        let out = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| spawn_error(self, e))?;
        if !out.status.success() {
            let mut tail = tail_of(&out.stderr, ERROR_TAIL_LINES);
            if tail.trim().is_empty() {
                tail = tail_of(&out.stdout, ERROR_TAIL_LINES);
            }
            return Err(exit_failure(self, out.status, &tail));
        }
        String::from_utf8(out.stdout).with_context(|| format!("output of `{}`", display(self)))
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
        kill_with_parent(self);
        let mut child = self.spawn().map_err(|e| spawn_error(self, e))?;
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
        kill_with_parent(self);
        let status = self
            .stdin(Stdio::null())
            .status()
            .map_err(|e| spawn_error(self, e))?;
        if !status.success() {
            return Err(exit_failure(self, status, ""));
        }
        Ok(())
    }
}

/// Read everything from a reader into a string, lossily.
pub fn read_lossy(mut r: impl Read) -> String {
    let mut v = Vec::new();
    let _ = r.read_to_end(&mut v);
    String::from_utf8_lossy(&v).into_owned()
}

/// Ensure a command exists before starting work that needs it.
pub fn require_program(prog: &str) -> Result<()> {
    if which(prog).is_some() {
        return Ok(());
    }
    match crate::sys::preflight::package_for(prog) {
        Some(p) => {
            bail!("required program `{prog}` was not found (install it with `apt-get install {p}`)")
        }
        None => bail!("required program `{prog}` was not found"),
    }
}

/// Find a program in PATH (plus the sbin directories a non-login root shell may lack).
pub fn which(prog: &str) -> Option<std::path::PathBuf> {
    if prog.contains('/') {
        let p = std::path::PathBuf::from(prog);
        return p.exists().then_some(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .map(|d| std::path::Path::new(d).join(prog))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
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
    fn quoting_round_trips_through_sh() {
        let nasty = "a b'c\"d$e";
        let out = Command::new("sh")
            .args(["-c", &format!("printf %s {}", shell_quote(nasty))])
            .run_get_string()
            .unwrap();
        assert_eq!(out, nasty);
    }
}
