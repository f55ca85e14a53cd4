//! retryx: run a command until it succeeds, under a stated retry policy, telling transient
//! failures from permanent ones, protecting the service it calls, and leaving a record.
//!
//! Data flows one way: front door (`front`: cli, module) → `app` (one file per action) →
//! `config` resolved once → `engine` (with `policy`, `classify`, `exec`, `guards`) → `record`
//! → `sinks` → an `app::Answer` → the front door, which alone turns it into an exit code or the
//! Ansible result document. See DESIGN.md for the rooms; `tests/layering.rs` keeps them.
//!
//! The public surface is what the integration tests and benches drive directly: the config
//! resolution, the engine with its attempter, timer and stop latch, the guards and the logger.
//! Everything else is `pub(crate)`.

pub(crate) mod app;
pub(crate) mod classify;
pub mod config;
pub(crate) mod download;
pub mod engine;
pub mod exec;
pub(crate) mod exit;
pub(crate) mod front;
pub mod guards;
pub mod log;
pub(crate) mod policy;
pub(crate) mod record;
pub(crate) mod sinks;
pub mod sys;

pub use front::main;
