//! Runs one attempt: the child in its own process group, a per-attempt timeout that stops the
//! whole group (TERM, a grace, KILL; the grace never runs past the deadline), signals forwarded
//! to the group, stdout and stderr passed through live (CLI) while a bounded tail is kept and
//! user patterns are scanned as the output streams. Memory stays flat whatever the child
//! writes. The only place that spawns.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use regex::bytes::Regex as BytesRegex;

use crate::config::{CommandLine, StdinSpec};
use crate::sys::stop::Cancel;

/// One malloc arena for the whole process: every thread that allocates (a stdin writer, the
/// record readers of compress) would otherwise get its own (glibc), each costing more resident
/// memory than retryx's whole heap.
pub fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator tunable; it is called before any thread starts.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitKind {
    Code(i32),
    /// Ended by a signal that was not our timeout.
    Signal(i32),
    /// Our per-attempt timeout (or the deadline) stopped it.
    TimedOut,
    /// It never started.
    SpawnFailed {
        not_found: bool,
        message: String,
    },
}

impl ExitKind {
    pub fn success(&self) -> bool {
        matches!(self, ExitKind::Code(0))
    }

    /// How it ended, for the exit code (`crate::exit` decides the number).
    pub(crate) fn end(&self) -> crate::exit::AttemptEnd {
        use crate::exit::AttemptEnd;
        match self {
            ExitKind::Code(c) => AttemptEnd::Code(*c),
            ExitKind::Signal(s) => AttemptEnd::Signal(*s),
            ExitKind::TimedOut => AttemptEnd::TimedOut,
            ExitKind::SpawnFailed {
                not_found: true, ..
            } => AttemptEnd::NotFound,
            ExitKind::SpawnFailed { .. } => AttemptEnd::NotExecutable,
        }
    }

    /// The shell-style exit code (124 timeout, 126/127 spawn, 128+N signal).
    pub fn shell_code(&self) -> i32 {
        crate::exit::of_attempt(self.end())
    }
}

/// What an attempt left behind.
#[derive(Debug, Clone)]
pub struct AttemptOutput {
    pub exit: ExitKind,
    pub stdout_tail: Vec<u8>,
    pub stderr_tail: Vec<u8>,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub retry_if_hit: bool,
    pub fail_if_hit: bool,
    /// The built-in error table's scan of what each stream wrote before its tail (the
    /// classifier reads the tail itself, so a run that succeeds never pays for it).
    pub(crate) stdout_scan: crate::classify::BuiltinScan,
    pub(crate) stderr_scan: crate::classify::BuiltinScan,
    /// The stop signal forwarded to the attempt, when retryx was asked to stop during it.
    pub interrupted_by: Option<i32>,
}

impl AttemptOutput {
    /// An attempt that never ran a process (guards, fakes).
    pub fn synthetic(exit: ExitKind) -> Self {
        AttemptOutput {
            exit,
            stdout_tail: Vec::new(),
            stderr_tail: Vec::new(),
            stdout_bytes: 0,
            stderr_bytes: 0,
            retry_if_hit: false,
            fail_if_hit: false,
            stdout_scan: Default::default(),
            stderr_scan: Default::default(),
            interrupted_by: None,
        }
    }
}

/// One attempt to run.
pub struct AttemptSpec<'a> {
    pub command: &'a CommandLine,
    pub chdir: Option<&'a str>,
    pub env: &'a [(String, String)],
    pub stdin: &'a StdinSpec,
    pub attempt: u32,
    pub max_attempts: u32,
    /// TERM after this long (the attempt's timeout, or earlier for the deadline).
    pub timeout: Option<Duration>,
    pub kill_grace: Duration,
    /// Everything is over by then, grace or not (the deadline): KILL at the latest then.
    pub kill_by: Option<Duration>,
    /// Copy the child's output to our stdout/stderr as it comes.
    pub passthrough: bool,
    pub tail_bytes: usize,
    pub retry_if: &'a [regex::Regex],
    pub fail_if: &'a [regex::Regex],
}

/// Keeps the last `cap` bytes of a stream in at most `2 * cap` bytes of memory (plus one read),
/// and passes what it drops, line by line, to the built-in error table: the classifier reads
/// the tail itself, so together they see the whole stream, and output that fits in the tail
/// (most runs) costs no scanning at all.
struct Tail {
    buf: Vec<u8>,
    cap: usize,
    evicted: crate::classify::BuiltinScan,
}

/// How far past the cut a drop may reach to end on a line boundary (so the tail starts at a
/// line and no line is scanned in two halves).
const LINE_SLACK: usize = 4096;

impl Tail {
    fn new(cap: usize) -> Self {
        Tail {
            buf: Vec::new(),
            cap,
            evicted: Default::default(),
        }
    }
    fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
        if self.buf.len() > 2 * self.cap {
            self.evict();
        }
    }
    /// Drops all but the last `cap` bytes (to the next line start, when one is near).
    fn evict(&mut self) {
        let mut cut = self.buf.len().saturating_sub(self.cap);
        if cut == 0 {
            return;
        }
        let reach = (cut + LINE_SLACK).min(self.buf.len());
        if let Some(nl) = self.buf[cut.saturating_sub(1)..reach]
            .iter()
            .position(|&b| b == b'\n')
        {
            cut = cut.saturating_sub(1) + nl + 1;
        }
        self.evicted.feed_lines(&self.buf[..cut]);
        self.buf.drain(..cut);
    }
    fn finish(mut self) -> (Vec<u8>, crate::classify::BuiltinScan) {
        self.evict();
        (self.buf, self.evicted)
    }
}

/// Scans complete lines for the user's patterns as the stream goes by.
struct LineScan {
    retry_if: Vec<BytesRegex>,
    fail_if: Vec<BytesRegex>,
    partial: Vec<u8>,
    retry_hit: bool,
    fail_hit: bool,
}

/// Longest line scanned whole; longer lines are scanned in pieces of this size.
const MAX_LINE: usize = 64 * 1024;

impl LineScan {
    fn active(&self) -> bool {
        (!self.retry_if.is_empty() && !self.retry_hit)
            || (!self.fail_if.is_empty() && !self.fail_hit)
    }
    fn check(&mut self, line: &[u8]) {
        if !self.retry_hit && self.retry_if.iter().any(|r| r.is_match(line)) {
            self.retry_hit = true;
        }
        if !self.fail_hit && self.fail_if.iter().any(|r| r.is_match(line)) {
            self.fail_hit = true;
        }
    }
    fn push(&mut self, chunk: &[u8]) {
        if !self.active() {
            return;
        }
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (line, after) = rest.split_at(pos);
            if self.partial.is_empty() {
                self.check(line);
            } else {
                self.partial.extend_from_slice(line);
                let whole = std::mem::take(&mut self.partial);
                self.check(&whole);
            }
            rest = &after[1..];
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_LINE {
            let whole = std::mem::take(&mut self.partial);
            self.check(&whole);
        }
    }
    fn finish(&mut self) {
        if !self.partial.is_empty() && self.active() {
            let whole = std::mem::take(&mut self.partial);
            self.check(&whole);
        }
    }
}

struct StreamResult {
    tail: Vec<u8>,
    total: u64,
    retry_hit: bool,
    fail_hit: bool,
    builtin: crate::classify::BuiltinScan,
}

fn bytes_regexes(list: &[regex::Regex]) -> Vec<BytesRegex> {
    // These compiled once as `regex::Regex`, so the same text compiles as bytes too.
    list.iter()
        .filter_map(|r| BytesRegex::new(r.as_str()).ok())
        .collect()
}

/// How long a copy to our stdout/stderr may wait when that descriptor is non-blocking and full:
/// until a stop request (`wake` readable) or `until` (the attempt's next kill deadline).
#[derive(Clone, Copy)]
struct Patience<'a> {
    wake: Option<BorrowedFd<'a>>,
    until: Option<Instant>,
}

/// Writes all of `buf` to fd 1 or 2, straight to the descriptor: std's stdout is a line
/// writer that searches every chunk for its last newline, and each chunk is flushed anyway
/// (nothing else writes to our stdout during a run). A non-blocking descriptor inherited from
/// the caller is waited on, within `patience`; past it the copy gives up (`TimedOut`).
fn write_through(to_stderr: bool, mut buf: &[u8], patience: Patience) -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let fd = if to_stderr {
        stderr.as_fd()
    } else {
        stdout.as_fd()
    };
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                let left = patience
                    .until
                    .map(|u| u.saturating_duration_since(Instant::now()));
                if left.is_some_and(|d| d.is_zero()) {
                    return Err(std::io::ErrorKind::TimedOut.into());
                }
                let mut fds = vec![PollFd::new(fd, PollFlags::POLLOUT)];
                if let Some(w) = patience.wake {
                    fds.push(PollFd::new(w, PollFlags::POLLIN));
                }
                let timeout = match left {
                    None => PollTimeout::NONE,
                    Some(d) => {
                        PollTimeout::try_from(d.as_millis().saturating_add(1).min(60_000) as i32)
                            .unwrap_or(PollTimeout::MAX)
                    }
                };
                let _ = poll(&mut fds, timeout);
                if fds
                    .get(1)
                    .and_then(PollFd::revents)
                    .is_some_and(|r| !r.is_empty())
                {
                    return Err(std::io::ErrorKind::Interrupted.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// One of the child's output pipes, read without blocking from the attempt's poll loop.
struct Stream {
    fd: Option<OwnedFd>,
    /// Where to copy it (Some(true) stderr, Some(false) stdout), until our reader goes away.
    through: Option<bool>,
    tail: Tail,
    total: u64,
    scan: LineScan,
    /// The reader of our stdout or stderr went away (EPIPE) while we copied to it.
    reader_gone: bool,
}

impl Stream {
    fn new(fd: Option<OwnedFd>, is_stderr: bool, spec: &AttemptSpec) -> Self {
        if let Some(fd) = &fd {
            // A pipe left blocking would stall the loop that also watches the timeout.
            let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        }
        Stream {
            fd,
            through: spec.passthrough.then_some(is_stderr),
            tail: Tail::new(spec.tail_bytes),
            total: 0,
            scan: LineScan {
                retry_if: bytes_regexes(spec.retry_if),
                fail_if: bytes_regexes(spec.fail_if),
                partial: Vec::new(),
                retry_hit: false,
                fail_hit: false,
            },
            reader_gone: false,
        }
    }

    fn open(&self) -> bool {
        self.fd.is_some()
    }

    /// Reads what is there now; closes the stream at its end. The buffer grows to
    /// `MAX_READ` only for a child that fills it: most commands write little, and every page
    /// touched costs a fault.
    fn read_ready(&mut self, buf: &mut Vec<u8>, patience: Patience) {
        let Some(fd) = &self.fd else { return };
        loop {
            match nix::unistd::read(fd, buf) {
                Ok(0) => break,
                Ok(n) => {
                    let chunk = &buf[..n];
                    self.total += n as u64;
                    if let Some(to_stderr) = self.through
                        && let Err(e) = write_through(to_stderr, chunk, patience)
                    {
                        // Copying stops; the output is still drained, kept and scanned.
                        self.through = None;
                        self.reader_gone = e.kind() == std::io::ErrorKind::BrokenPipe;
                    }
                    self.tail.push(chunk);
                    self.scan.push(chunk);
                    if n < buf.len() {
                        return;
                    }
                    if buf.len() < MAX_READ {
                        buf.resize(MAX_READ, 0);
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(_) => break,
            }
        }
        self.fd = None;
        self.scan.finish();
    }

    fn finish(mut self) -> StreamResult {
        self.scan.finish();
        let (tail, builtin) = self.tail.finish();
        StreamResult {
            tail,
            total: self.total,
            retry_hit: self.scan.retry_hit,
            fail_hit: self.scan.fail_hit,
            builtin,
        }
    }
}

/// A descriptor that becomes readable when the child exits (Linux 5.3+); None on older kernels,
/// where the loop polls `try_wait` instead.
fn pidfd_of(child: &Child) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; nothing else.
    let fd = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_pidfd_open,
            child.id() as nix::libc::pid_t,
            0 as nix::libc::c_uint,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Waits for any of `fds` (None entries skipped) for at most `timeout`; returns which are ready
/// (readable, closed or in error).
fn wait_ready(fds: &[Option<BorrowedFd>], timeout: Option<Duration>) -> Vec<bool> {
    let mut polled: Vec<PollFd> = Vec::with_capacity(fds.len());
    let mut index = Vec::with_capacity(fds.len());
    for (i, fd) in fds.iter().enumerate() {
        if let Some(fd) = fd {
            polled.push(PollFd::new(*fd, PollFlags::POLLIN));
            index.push(i);
        }
    }
    let timeout = match timeout {
        None => PollTimeout::NONE,
        // Round up so a deadline is not spun on in sub-millisecond polls.
        Some(d) => PollTimeout::try_from(d.as_millis().saturating_add(1).min(60_000) as i32)
            .unwrap_or(PollTimeout::MAX),
    };
    let mut ready = vec![false; fds.len()];
    if poll(&mut polled, timeout).is_ok() {
        for (p, &i) in polled.iter().zip(&index) {
            ready[i] = p.revents().is_some_and(|r| !r.is_empty());
        }
    }
    ready
}

fn build_command(spec: &AttemptSpec) -> Result<Command, ExitKind> {
    let mut cmd = match spec.command {
        CommandLine::Shell(text) => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(text);
            c
        }
        CommandLine::Argv(argv) => {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    if let Some(dir) = spec.chdir {
        if !std::path::Path::new(dir).is_dir() {
            return Err(ExitKind::SpawnFailed {
                not_found: true,
                message: format!("chdir {dir:?}: no such directory"),
            });
        }
        cmd.current_dir(dir);
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    cmd.env("RETRYX_ATTEMPT", spec.attempt.to_string());
    cmd.env("RETRYX_MAX_ATTEMPTS", spec.max_attempts.to_string());
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    match spec.stdin {
        StdinSpec::Inherit => {
            cmd.stdin(Stdio::inherit());
        }
        StdinSpec::Null => {
            cmd.stdin(Stdio::null());
        }
        StdinSpec::Text(_) => {
            cmd.stdin(Stdio::piped());
        }
        StdinSpec::ReplayFile(path) => {
            let f = std::fs::File::open(path).map_err(|e| ExitKind::SpawnFailed {
                not_found: false,
                message: format!("replaying stdin: {e}"),
            })?;
            cmd.stdin(Stdio::from(f));
        }
    }
    Ok(cmd)
}

fn spawn_failure(spec: &AttemptSpec, e: &std::io::Error) -> ExitKind {
    let program = match spec.command {
        CommandLine::Shell(_) => "/bin/sh".to_string(),
        CommandLine::Argv(v) => v[0].clone(),
    };
    let not_found = e.kind() == std::io::ErrorKind::NotFound;
    let what = if not_found {
        "command not found"
    } else if e.kind() == std::io::ErrorKind::PermissionDenied {
        "permission denied (not executable)"
    } else {
        "cannot execute"
    };
    ExitKind::SpawnFailed {
        not_found,
        message: format!("{program}: {what}: {e}"),
    }
}

fn send_group(pgid: Pid, sig: Signal) {
    // ESRCH (the group is gone) is the normal end of the story.
    let _ = killpg(pgid, sig);
}

/// Whether anything of the group still runs. Its exited members are reaped first: retryx is
/// their subreaper, so a killed grandchild is not left as a zombie that looks alive (some
/// init processes never reap orphans).
fn group_alive(pgid: Pid) -> bool {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    while let Ok(status) = waitpid(Pid::from_raw(-pgid.as_raw()), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
    killpg(pgid, None).is_ok()
}

/// Every process below retryx, from `/proc` (parent links). Descendants that left the
/// attempt's process group (`setsid`, `setpgid`) are found this way, not by `killpg`.
fn descendants() -> Vec<Pid> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut parent_of = std::collections::HashMap::new();
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The name in parentheses may hold anything; the fields after its last ')' do not.
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
            .and_then(|f| f.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parent_of.insert(pid, ppid);
        }
    }
    let mut found = vec![me];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| **pp == p)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    found[1..]
        .iter()
        .filter_map(|p| i32::try_from(*p).ok().map(Pid::from_raw))
        .collect()
}

fn signal_descendants(sig: Signal) {
    for pid in descendants() {
        let _ = nix::sys::signal::kill(pid, sig);
    }
}

/// Reaps every exited child we adopted as subreaper (the attempt's own status is already
/// taken), so none is left a zombie however many attempts run.
fn reap_adopted() {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    while let Ok(st) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if st == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Ends what a stopped or failed attempt left outside its group: KILL to every descendant
/// (a few rounds: one may fork while we look), then the reaping.
fn end_descendants() {
    for _ in 0..3 {
        let left = descendants();
        if left.is_empty() {
            break;
        }
        for pid in left {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
        // Each killed one is reaped here, or by its own parent when that is not us.
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until && descendants().iter().any(|p| !is_zombie(*p)) {
            reap_adopted();
            std::thread::sleep(POLL_FALLBACK);
        }
    }
    reap_adopted();
}

/// Whether `pid` is a zombie (or gone): its parent reaps it, or dies and we do.
fn is_zombie(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Makes orphaned descendants of our attempts our children, so `group_alive` can reap them.
fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = nix::sys::prctl::set_child_subreaper(true);
    });
}

/// Runs one attempt to its end. A stop request is forwarded to the group; the attempt's result
/// says so in `interrupted_by`. One thread does it all with `poll`: the child's exit (a pidfd),
/// its two pipes, stop requests and the timeout; threads per attempt cost more than retrying.
/// Long (~195 lines): the poll loop's order (exit, pipes, stop, timeout, descendants) is the
/// point, and pieces of it share the descriptors it owns.
pub fn run_attempt(spec: &AttemptSpec, cancel: &Cancel) -> AttemptOutput {
    become_subreaper();
    // `kill_by` is the time left as measured before this call: count from here, not from
    // after the spawn, so building and spawning come out of it too.
    let started = Instant::now();
    let mut cmd = match build_command(spec) {
        Ok(c) => c,
        Err(exit) => return AttemptOutput::synthetic(exit),
    };
    let mut child: Child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return AttemptOutput::synthetic(spawn_failure(spec, &e)),
    };
    let pgid = Pid::from_raw(child.id() as i32);
    let mut out = Stream::new(child.stdout.take().map(OwnedFd::from), false, spec);
    let mut err = Stream::new(child.stderr.take().map(OwnedFd::from), true, spec);
    if let (StdinSpec::Text(text), Some(mut stdin)) = (spec.stdin, child.stdin.take()) {
        let text = text.clone().into_bytes();
        // A child that never reads its stdin must not block us: the writer is on its own.
        let _ = std::thread::Builder::new()
            .name("retryx-stdin".into())
            .spawn(move || {
                let _ = stdin.write_all(&text);
            });
    }
    let pidfd = pidfd_of(&child);
    let wake = cancel.wake_fd();
    let mut buf = vec![0u8; FIRST_READ];

    let mut timed_out = false;
    let mut interrupted_by = None;
    // The grace never runs past the deadline: KILL after it, or at the deadline if sooner.
    let hard_end = spec.kill_by.map(|d| started + d);
    let grace_end = |from: Instant| {
        let end = from + spec.kill_grace;
        hard_end.map_or(end, |h| end.min(h.max(from)))
    };
    // The next moment something must be done: TERM at the timeout, KILL after the grace. A
    // `kill_by` without a timeout still stops the attempt (TERM then KILL at once).
    let term_after = match (spec.timeout, spec.kill_by) {
        (Some(t), Some(k)) => Some(t.min(k)),
        (t, k) => t.or(k),
    };
    let mut kill_at: Option<Instant> = term_after.map(|t| started + t);
    let mut term_sent = false;
    let status = loop {
        let now = Instant::now();
        if let Some(at) = kill_at
            && now >= at
        {
            if !term_sent {
                timed_out = true;
                term_sent = true;
                send_group(pgid, Signal::SIGTERM);
                signal_descendants(Signal::SIGTERM);
                kill_at = Some(grace_end(now));
            } else {
                send_group(pgid, Signal::SIGKILL);
                kill_at = None;
            }
        }
        let mut timeout = kill_at.map(|at| at.saturating_duration_since(now));
        // The wake pipe stays readable once a stop came: polled only until acted on.
        let wake = wake.filter(|_| interrupted_by.is_none());
        if pidfd.is_none() || (wake.is_none() && interrupted_by.is_none()) {
            // Nothing to wake us for the exit or a stop request: look every 10 ms.
            timeout = Some(timeout.map_or(POLL_FALLBACK, |t| t.min(POLL_FALLBACK)));
        }
        let ready = wait_ready(
            &[
                out.fd.as_ref().map(|f| f.as_fd()),
                err.fd.as_ref().map(|f| f.as_fd()),
                pidfd.as_ref().map(|f| f.as_fd()),
                wake,
            ],
            timeout,
        );
        let patience = Patience {
            wake,
            until: kill_at,
        };
        if ready[0] {
            out.read_ready(&mut buf, patience);
        }
        if ready[1] {
            err.read_ready(&mut buf, patience);
        }
        if (out.reader_gone || err.reader_gone) && cancel.signal().is_none() && !ready[2] {
            // Whoever read our output is gone (`retryx -- producer | head -1`): stop as SIGPIPE
            // stops a plain pipeline. The child's group gets SIGPIPE, no retry follows, and
            // retryx exits 141 with its records written. (A child that has already exited
            // keeps its own status; a retry that writes again meets the EPIPE again.)
            cancel.trigger(nix::libc::SIGPIPE);
        }
        if interrupted_by.is_none()
            && let Some(sig) = cancel.signal()
        {
            interrupted_by = Some(sig);
            if let Ok(s) = Signal::try_from(sig) {
                send_group(pgid, s);
            }
            term_sent = true;
            kill_at = Some(grace_end(Instant::now()));
        }
        if ready[2] || pidfd.is_none() {
            match child.try_wait() {
                Ok(Some(st)) => break Ok(st),
                Ok(None) => {}
                Err(e) => break Err(e.to_string()),
            }
        }
    };
    let succeeded =
        !timed_out && interrupted_by.is_none() && matches!(&status, Ok(st) if st.success());
    if !succeeded && !term_sent && group_alive(pgid) {
        // A failed attempt's stragglers (background children still in its group) must not
        // live on into the wait or the next attempt. A successful one keeps its children.
        send_group(pgid, Signal::SIGTERM);
        term_sent = true;
        kill_at = Some(grace_end(Instant::now()));
    }
    if term_sent {
        // The leader is gone; stragglers in its group get the rest of the grace, then KILL.
        // Their output is still read meanwhile, so a full pipe does not hold them up.
        let until = kill_at.unwrap_or_else(Instant::now);
        while group_alive(pgid) && Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            let ready = wait_ready(
                &[
                    out.fd.as_ref().map(|f| f.as_fd()),
                    err.fd.as_ref().map(|f| f.as_fd()),
                ],
                Some(left.min(POLL_FALLBACK)),
            );
            let patience = Patience {
                wake: None,
                until: Some(until),
            };
            if ready[0] {
                out.read_ready(&mut buf, patience);
            }
            if ready[1] {
                err.read_ready(&mut buf, patience);
            }
        }
        send_group(pgid, Signal::SIGKILL);
    }
    if !succeeded {
        // Descendants that left the group (`setsid`) would outlive the kill: ended too.
        end_descendants();
    }
    reap_adopted();

    // Background grandchildren may hold the pipes open; don't wait on them forever.
    let drain_limit = Instant::now()
        + spec
            .kill_grace
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(200));
    // Past the deadline, only what is already in the pipes is worth a moment.
    let drain_limit = hard_end.map_or(drain_limit, |h| {
        drain_limit.min(h.max(Instant::now() + Duration::from_millis(50)))
    });
    while out.open() || err.open() {
        let now = Instant::now();
        if now >= drain_limit {
            break;
        }
        let ready = wait_ready(
            &[
                out.fd.as_ref().map(|f| f.as_fd()),
                err.fd.as_ref().map(|f| f.as_fd()),
            ],
            Some(drain_limit - now),
        );
        let patience = Patience {
            wake: None,
            until: Some(drain_limit),
        };
        if ready[0] {
            out.read_ready(&mut buf, patience);
        }
        if ready[1] {
            err.read_ready(&mut buf, patience);
        }
    }
    let out = out.finish();
    let err = err.finish();

    use std::os::unix::process::ExitStatusExt;
    let exit = match status {
        _ if timed_out => ExitKind::TimedOut,
        Ok(st) => match (st.code(), st.signal()) {
            (Some(c), _) => ExitKind::Code(c),
            (None, Some(s)) => ExitKind::Signal(s),
            _ => ExitKind::Code(1),
        },
        Err(msg) => ExitKind::SpawnFailed {
            not_found: false,
            message: msg,
        },
    };
    AttemptOutput {
        exit,
        stdout_tail: out.tail,
        stderr_tail: err.tail,
        stdout_bytes: out.total,
        stderr_bytes: err.total,
        retry_if_hit: out.retry_hit || err.retry_hit,
        fail_if_hit: out.fail_hit || err.fail_hit,
        stdout_scan: out.builtin,
        stderr_scan: err.builtin,
        interrupted_by,
    }
}

/// The read buffer's first and largest sizes.
const FIRST_READ: usize = 4 * 1024;
const MAX_READ: usize = 64 * 1024;

/// How often to look when no descriptor can wake us (no pidfd; stragglers dying).
const POLL_FALLBACK: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_bytes_in_bounded_memory() {
        let mut t = Tail::new(10);
        for i in 0..1000u32 {
            t.push(format!("{i:04}").as_bytes());
            assert!(t.buf.len() <= 20);
        }
        // "...0997" "0998" "0999": the last ten bytes
        assert_eq!(t.finish().0, b"9709980999");
        let mut big = Tail::new(4);
        big.push(b"abcdefgh");
        assert_eq!(big.finish().0, b"efgh");
    }

    /// An attempt with only `kill_by` (no timeout) is still stopped there, TERM ignored or not.
    /// `run_attempt` signals and reaps every descendant of its process, so the test runs
    /// alone in a fresh copy of this test binary, away from other tests' children.
    #[test]
    fn kill_by_alone_stops_an_attempt_that_ignores_term() {
        const ALONE: &str = "RETRYX_EXEC_TEST_ALONE";
        if std::env::var_os(ALONE).is_none() {
            let exe = std::env::current_exe().unwrap();
            let out = Command::new(exe)
                .args([
                    "--exact",
                    "exec::tests::kill_by_alone_stops_an_attempt_that_ignores_term",
                    "--test-threads=1",
                ])
                .env(ALONE, "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{text}");
            assert!(text.contains("1 passed"), "the test ran: {text}");
            return;
        }
        let command = CommandLine::Shell("trap '' TERM; sleep 30".into());
        let spec = AttemptSpec {
            command: &command,
            chdir: None,
            env: &[],
            stdin: &StdinSpec::Null,
            attempt: 1,
            max_attempts: 1,
            timeout: None,
            kill_grace: Duration::from_secs(5),
            kill_by: Some(Duration::from_millis(300)),
            passthrough: false,
            tail_bytes: 100,
            retry_if: &[],
            fail_if: &[],
        };
        let started = Instant::now();
        let out = run_attempt(&spec, &Cancel::new());
        // Generous: the machine may be loaded; unbounded, the child would run 30 s.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(out.exit, ExitKind::TimedOut));
    }

    #[test]
    fn patterns_match_across_chunk_boundaries() {
        let mut s = LineScan {
            retry_if: vec![BytesRegex::new("try again").unwrap()],
            fail_if: vec![BytesRegex::new("fatal").unwrap()],
            partial: Vec::new(),
            retry_hit: false,
            fail_hit: false,
        };
        s.push(b"ok\nplease tr");
        assert!(!s.retry_hit);
        s.push(b"y again later\nfa");
        assert!(s.retry_hit);
        s.push(b"tal");
        assert!(!s.fail_hit);
        s.finish();
        assert!(s.fail_hit);
    }

    #[test]
    fn what_leaves_the_tail_is_scanned_by_whole_lines() {
        let mut t = Tail::new(1000);
        t.push(b"open /x: Permission denied\n");
        for _ in 0..200 {
            t.push(b"connection refused, retrying with some more text to fill the output\n");
        }
        let (tail, scan) = t.finish();
        assert!(
            tail.len() <= 1000 && tail.starts_with(b"connection"),
            "the tail starts at a line"
        );
        let hit = scan.hit().expect("the dropped part was scanned");
        assert_eq!(hit.class, crate::classify::ErrorClass::PermissionError);
        assert_eq!(hit.line, "open /x: Permission denied");
        // A tail that never overflowed scanned nothing.
        let mut small = Tail::new(1000);
        small.push(b"permission denied\n");
        let (_, scan) = small.finish();
        assert!(scan.hit().is_none());
    }
}
