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
        // Close-on-exec, or a child another test thread forks meanwhile inherits the read
        // end and keeps the pipe open (slipway's write then succeeds).
        let (read, write): (OwnedFd, OwnedFd) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
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

fn help_of(args: &[&str]) -> String {
    let mut a = args.to_vec();
    a.push("--help");
    let o = slipway(&a, Stdio::piped());
    assert!(o.status.success(), "{a:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// One name per concept across verbs (`--stateroot`, `--trusted-key`, `--sysroot`); the old
/// spellings still parse but are not shown.
#[test]
fn one_flag_name_per_concept_and_the_old_ones_hidden() {
    for (verb, name, old) in [
        (&["image"][..], "--stateroot", "--osname"),
        (&["host", "upgrade"][..], "--stateroot", "--os "),
        (&["host", "deploy"][..], "--stateroot", "--os "),
        (&["image"][..], "--trusted-key", "--remote-gpg-key"),
        (&["pxe", "build"][..], "--trusted-key", "--gpg-key"),
        (&["install"][..], "--trusted-key", "--gpg-key"),
        (&["host", "steady-state"][..], "--sysroot", "--root "),
    ] {
        let help = help_of(verb);
        assert!(help.contains(name), "{verb:?} has no {name}:\n{help}");
        assert!(!help.contains(old), "{verb:?} still shows {old}:\n{help}");
    }
    // An old spelling still parses: it fails on what comes next (the missing repository),
    // not on the flag.
    let o = slipway(
        &[
            "image",
            "--osname",
            "x",
            "--ref",
            "r",
            "-o",
            "/nonexistent/x.raw",
        ],
        Stdio::piped(),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("unexpected argument"), "{err}");
}

/// `--dhcp` completes its three modes, not file names.
#[test]
fn enumerated_flags_complete_their_values() {
    let o = slipway(&["generate", "completions", "bash"], Stdio::piped());
    let script = String::from_utf8_lossy(&o.stdout);
    let line = script
        .lines()
        .skip_while(|l| !l.contains("--dhcp)"))
        .take(3)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(line.contains("proxy full off"), "{line}");
}
