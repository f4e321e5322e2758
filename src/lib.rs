//! slipway: immutable Debian container hosts with OSTree.
//!
//! One folder per capability (`compose`, `image`, `host`, `pxe` (its TFTP server so far);
//! `install` and `services` follow), the pieces they share in named places (`sysroot`: what
//! writes into an OSTree sysroot; `kickstart`: the kickstart language; `sys`: processes,
//! sandbox, locks, progress, preflight, confined tree paths), and `cli`, which only parses and
//! routes. `main.rs` is a few lines. See `docs/architecture.md` for how data flows between the
//! modules.

pub mod cli;
pub mod compose;
pub mod host;
pub mod image;
pub mod install;
pub mod kickstart;
pub mod pxe;
pub mod repo;
pub mod services;
pub mod sys;
pub mod sysroot;
