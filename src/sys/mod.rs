//! OS plumbing the rooms above share: start-up, entropy, signals and the stop latch, the
//! clock, the safe filesystem, stdout kept for a document. Knows nothing of retries, records
//! or Ansible.

pub mod clock;
pub(crate) mod entropy;
pub(crate) mod safe_fs;
pub(crate) mod spool;
pub mod startup;
pub(crate) mod stdout_doc;
pub mod stop;
