//! The command line as a Unix tool: data on stdout, a closed pipe ends the program quietly
//! (status 141, as a program killed by SIGPIPE), any other write error is an error with a
//! message and status 1. Fast: no sysroot, no network.

use std::os::fd::OwnedFd;
use std::process::{Command, Output, Stdio};

/// Commands that print data without needing a machine set up.
const PRINTING: [&[&str]; 4] = [
    &["--help"],
    &["--version"],
    &["generate", "completions", "bash"],
    &["host", "--help"],
];

fn slipway(args: &[&str], stdout: Stdio) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_pipe_ends_the_program_quietly() {
    for args in PRINTING {
        // A pipe whose reader is gone before slipway writes: every write fails with EPIPE.
        let (read, write): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
        drop(read);
        let o = slipway(args, Stdio::from(write));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(141), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} printed: {err}");
    }
}

#[test]
fn a_full_stdout_is_an_error_with_a_message() {
    for args in PRINTING {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let o = slipway(args, Stdio::from(full));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("error: writing to standard output: No space left on device"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
