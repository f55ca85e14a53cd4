//! Every exit code retryx gives, decided here from typed facts and nowhere else (DESIGN.md's
//! table). Pure: no I/O; the front doors only pass the number on.

/// A circuit breaker or bulkhead refused to run the command (EX_TEMPFAIL).
pub(crate) const REFUSED: i32 = 75;
/// The last attempt timed out (as timeout(1)).
pub(crate) const TIMEOUT: i32 = 124;
/// Bad usage or configuration.
pub(crate) const USAGE: i32 = 125;
/// The command is not executable.
pub(crate) const NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub(crate) const NOT_FOUND: i32 = 127;
/// retryx itself was stopped by signal N: 128 + N (as a shell reports a signalled child).
const SIGNAL_BASE: i32 = 128;
/// An action other than a run failed (a record, a breaker, a notification...).
pub(crate) const FAILURE: i32 = 1;

/// How one attempt ended, as far as an exit code cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttemptEnd {
    Code(i32),
    Signal(i32),
    TimedOut,
    NotFound,
    NotExecutable,
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Succeeded, or nothing had to be done.
    Succeeded,
    /// A guard refused to run it.
    Refused,
    /// retryx was stopped by this signal.
    Aborted(i32),
    /// It failed; the last attempt that ran, if any.
    Failed(Option<AttemptEnd>),
}

/// The shell-style code of one attempt (124 timeout, 126/127 spawn, 128+N signal).
pub(crate) fn of_attempt(end: AttemptEnd) -> i32 {
    match end {
        AttemptEnd::Code(c) => c,
        AttemptEnd::Signal(s) => SIGNAL_BASE + s,
        AttemptEnd::TimedOut => TIMEOUT,
        AttemptEnd::NotFound => NOT_FOUND,
        AttemptEnd::NotExecutable => NOT_EXECUTABLE,
    }
}

/// The exit code of a run: the last attempt's, or what stopped it.
pub(crate) fn of_operation(end: End) -> i32 {
    match end {
        End::Succeeded => 0,
        End::Refused => REFUSED,
        End::Aborted(sig) => SIGNAL_BASE + sig,
        End::Failed(Some(last)) => of_attempt(last),
        End::Failed(None) => FAILURE,
    }
}

/// A run whose command succeeded still fails when a `required: true` notification failed.
pub(crate) fn with_required_notification_failed(code: i32) -> i32 {
    if code == 0 { FAILURE } else { code }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_table() {
        assert_eq!(of_operation(End::Succeeded), 0);
        assert_eq!(of_operation(End::Refused), 75);
        assert_eq!(of_operation(End::Aborted(15)), 143);
        assert_eq!(of_operation(End::Failed(None)), 1);
        assert_eq!(of_operation(End::Failed(Some(AttemptEnd::Code(3)))), 3);
        assert_eq!(of_operation(End::Failed(Some(AttemptEnd::Signal(9)))), 137);
        assert_eq!(of_operation(End::Failed(Some(AttemptEnd::TimedOut))), 124);
        assert_eq!(of_operation(End::Failed(Some(AttemptEnd::NotFound))), 127);
        assert_eq!(
            of_operation(End::Failed(Some(AttemptEnd::NotExecutable))),
            126
        );
        assert_eq!(with_required_notification_failed(0), 1);
        assert_eq!(with_required_notification_failed(3), 3);
    }
}
