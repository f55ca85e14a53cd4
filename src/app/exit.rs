//! The exit codes retryx gives besides the command's own (DESIGN.md).

/// A circuit breaker or bulkhead refused to run the command (EX_TEMPFAIL).
pub const REFUSED: i32 = 75;
/// The last attempt timed out (as timeout(1)).
pub const TIMEOUT: i32 = 124;
/// Bad usage or configuration.
pub const USAGE: i32 = 125;
/// The command is not executable.
pub const NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;
/// retryx itself was stopped by signal N: 128 + N.
pub const SIGNAL_BASE: i32 = 128;
