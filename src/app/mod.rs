//! The application floor: one file per action (run a command or a download, the session
//! actions, notify, breaker, validate). Front doors hand it a typed request and get a typed
//! answer back; nothing here knows whether a shell or Ansible asked.

pub(crate) mod exit;
pub(crate) mod run_command;
pub(crate) mod session;
