//! `slipway generate`: man pages and shell completions, made from the command line's own
//! definition so they never drift from it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{CommandFactory, Subcommand};

use super::Cli;

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Write a man page for slipway and one for each subcommand into DIR.
    Man {
        /// The directory for the `.1` files (created when missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Print a completion script for SHELL on stdout.
    Completions {
        /// The shell.
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

pub fn run(c: GenerateCommand) -> Result<()> {
    match c {
        GenerateCommand::Man { dir } => man_pages(&dir),
        GenerateCommand::Completions { shell } => {
            let mut cmd = Cli::command();
            // Into memory first: clap_complete panics on a failed write.
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "slipway", &mut buf);
            crate::sys::ui::out(String::from_utf8_lossy(&buf))
        }
    }
}

/// `slipway.1`, `slipway-compose.1`, `slipway-compose-tree.1`...
fn man_pages(dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fn walk(cmd: &clap::Command, name: &str, dir: &std::path::Path) -> Result<()> {
        let cmd = cmd.clone().name(name.to_string());
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .render(&mut buf)
            .with_context(|| format!("rendering {}", path.display()))?;
        std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
        // clap's own `help` subcommands are not commands of slipway: no page for them.
        for sub in cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            walk(sub, &format!("{name}-{}", sub.get_name()), dir)?;
        }
        Ok(())
    }
    let mut cmd = Cli::command();
    cmd.build();
    walk(&cmd, "slipway", dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_cover_every_verb() {
        let d = tempfile::tempdir().unwrap();
        man_pages(d.path()).unwrap();
        for page in ["slipway.1", "slipway-compose-tree.1", "slipway-image.1"] {
            let text = std::fs::read_to_string(d.path().join(page)).unwrap();
            assert!(text.contains(".TH"), "{page}");
        }
        let tree = std::fs::read_to_string(d.path().join("slipway-compose-tree.1")).unwrap();
        assert!(tree.contains("force\\-nocache"), "{tree}");
        // One page per real command: none for clap's `help` subcommands.
        let pages: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !pages.iter().any(|p| p.contains("-help")),
            "help pages: {pages:?}"
        );
        assert!(pages.len() < 40, "{} pages: {pages:?}", pages.len());
    }
}
