//! What every capability needs from the machine it runs on: the one runner for child
//! processes (`cmd`), the bubblewrap sandbox, file locks, progress and logging on stderr,
//! preflight checks for host programs, locked work directories, failpoints for the kill
//! tests, path resolution confined to a tree (`tree`), and JSON with comment keys read by
//! serde with errors naming the key (`json`).

pub mod cmd;
pub mod failpoint;
pub mod file;
pub mod http;
pub mod json;
pub mod lock;
pub mod preflight;
pub mod sandbox;
pub mod time;
pub mod tree;
pub mod ui;
pub mod workdir;
