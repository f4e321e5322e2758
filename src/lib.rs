//! slipway: immutable Debian container hosts with OSTree.
//!
//! One folder per capability: `compose` (treefile to commit), `image` (commit to disk image),
//! `pxe` (network boot, install lab), `install` (the installer), `host` (lifecycle and health
//! gate of an installed host). They meet only through what a commit carries and the shared
//! layers: `treefile` and `kickstart` (the two input languages), `payload` (what every host
//! carries), `services` (what a commit binds and the docker side of it), `sysroot` (what
//! writes into an OSTree sysroot), `repo` (helpers over OSTree repositories) and `sys`
//! (processes, sandbox, locks, progress, files, confined tree paths). `cli` only parses and
//! routes; `main.rs` is a few lines. `docs/architecture.md` says how data flows and which
//! module may import which (`tests/shape_fast.rs` checks it).

pub mod cli;
pub mod compose;
pub mod host;
pub mod image;
pub mod install;
pub mod kickstart;
pub mod payload;
pub mod pxe;
pub mod repo;
pub mod services;
pub mod sys;
pub mod sysroot;
pub mod treefile;
