//! Running programs inside a tree (a composed root, a deployment) with bubblewrap.
//!
//! The sandbox has its own mount namespace (with fresh /proc, /dev, /tmp and /run), its own
//! PID namespace, no network unless asked, and dies with slipway. Nothing it mounts can leak
//! onto the host, so a killed build leaves no mount behind.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A bubblewrap sandbox rooted at a directory.
#[derive(Debug, Clone)]
pub struct Sandbox {
    root: PathBuf,
    binds: Vec<(PathBuf, String, bool)>,
    network: bool,
    env: Vec<(String, String)>,
}

impl Sandbox {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            binds: Vec::new(),
            network: false,
            env: Vec::new(),
        }
    }

    /// Bind `src` from the host at `dest` inside, read-write.
    pub fn bind(mut self, src: &Path, dest: &str) -> Self {
        self.binds
            .push((src.to_path_buf(), dest.to_string(), false));
        self
    }

    /// Bind `src` from the host at `dest` inside, read-only.
    pub fn ro_bind(mut self, src: &Path, dest: &str) -> Self {
        self.binds.push((src.to_path_buf(), dest.to_string(), true));
        self
    }

    /// Share the host's network (off by default).
    pub fn network(mut self, on: bool) -> Self {
        self.network = on;
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    /// The command running `argv` inside.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, argv: &[S]) -> Command {
        let mut c = Command::new("bwrap");
        let mut args: Vec<OsString> = vec!["--bind".into(), self.root.clone().into(), "/".into()];
        for a in [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "--tmpfs",
            "/run",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--die-with-parent",
            "--chdir",
            "/",
        ] {
            args.push(a.into());
        }
        if !self.network {
            args.push("--unshare-net".into());
        } else if Path::new("/etc/resolv.conf").exists() {
            args.extend([
                "--ro-bind".into(),
                "/etc/resolv.conf".into(),
                "/run/resolv.conf".into(),
            ]);
        }
        for (src, dest, ro) in &self.binds {
            args.push(if *ro { "--ro-bind" } else { "--bind" }.into());
            args.push(src.clone().into());
            args.push(dest.into());
        }
        let mut env: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
            ("LC_ALL".into(), "C.UTF-8".into()),
            ("DEBIAN_FRONTEND".into(), "noninteractive".into()),
            ("HOME".into(), "/root".into()),
        ];
        env.extend(self.env.iter().cloned());
        for (k, v) in env {
            args.extend(["--setenv".into(), k.into(), v.into()]);
        }
        args.push("--".into());
        c.args(args).args(argv);
        c.env_clear();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_binds_and_isolates_network_by_default() {
        let s = Sandbox::new(Path::new("/r")).bind(Path::new("/v"), "/var");
        let c = s.command(&["true"]);
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(&args[..3], ["--bind", "/r", "/"]);
        assert!(args.contains(&"--unshare-net".to_string()));
        assert!(args.windows(3).any(|w| w == ["--bind", "/v", "/var"]));
        assert_eq!(args.last().unwrap(), "true");
        let c = Sandbox::new(Path::new("/r"))
            .network(true)
            .command(&["true"]);
        assert!(!c.get_args().any(|a| a == "--unshare-net"));
    }
}
