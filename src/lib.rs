//! slipway: immutable Debian container hosts with OSTree.
//!
//! One module per capability; `main.rs` only parses the command line and routes here.
//! See `docs/architecture.md` for how data flows between the modules.

pub mod bootloader;
pub mod cli;
pub mod cmd;
pub mod compose;
pub mod deploy;
pub mod failpoint;
pub mod hostconfig;
pub mod hosttools;
pub mod image;
pub mod kickstart;
pub mod lock;
pub mod repo;
pub mod sandbox;
pub mod treefile;
pub mod ui;
pub mod userdb;
