//! retryx: run a command until it succeeds, under a stated retry policy, telling transient
//! failures from permanent ones, protecting the service it calls, and leaving a record.
//!
//! Data flows one way: front door (`cli`, `module`) → `config` → `engine` (with `policy`,
//! `classify`, `exec`, `guards`) → `record` → `sinks`. See DESIGN.md for the rooms.

pub mod cancel;
pub mod classify;
pub mod cli;
pub mod clock;
pub mod config;
pub mod download;
pub mod engine;
pub mod entropy;
pub mod exec;
pub mod exit_codes;
pub mod fsx;
pub mod guards;
pub mod log;
pub mod module;
pub mod policy;
pub mod progress;
pub mod record;
pub mod result;
pub mod run;
pub mod run_io;
pub mod shell;
pub mod sinks;
pub mod startup;
pub mod stdout_doc;
