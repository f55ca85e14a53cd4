//! Network-aware waiting (seeds 001 and 004): before retrying a network-class failure, check
//! that the network is there (the `required_interfaces` are up, or else any non-loopback
//! interface; and `network_probe` `host:port` accepts a TCP connection). When it is not, log
//! "network is down, waiting for network to recover", wait until it is back (woken by rtnetlink
//! link events on an `AF_NETLINK`/`NETLINK_ROUTE` socket bound to `RTMGRP_LINK`; polling
//! `/sys/class/net/*/operstate` every 100 ms when no such socket can be had), log "network
//! recovered, retrying operation" and retry at once: the wait replaces the backoff and uses up
//! no attempt. The wait is bounded by `max_network_wait` and the operation's deadline, and cut
//! short by stop signals (checked at least every 50 ms). Link state itself comes from an
//! rtnetlink dump (RTM_GETLINK: each link's IFLA_IFNAME, IFLA_OPERSTATE and flags), so it is
//! right in any network namespace; `/sys/class/net` is read only when netlink is unavailable.
//! This file must not spawn anything or write records; it touches no state file.

use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Guard, GuardCtx, RetryVerdict};
use crate::classify::ErrorClass;
use crate::config::format_duration;
use crate::sys::clock::Timer;
use crate::sys::stop::Cancel;

pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(300);
const SLICE: Duration = Duration::from_millis(50);
const POLL_EVERY: Duration = Duration::from_millis(100);
const PROBE_EVERY: Duration = Duration::from_millis(250);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;
const IFF_RUNNING: u32 = 0x40;
const RTMGRP_LINK: u32 = 1;

/// Where link state comes from and how a change is waited for.
pub trait LinkSource {
    /// How changes are noticed, for the record ("netlink", "sysfs polling").
    fn kind(&self) -> &'static str;
    /// Starts listening for changes (before the first look, so no change is missed between).
    fn start(&mut self) {}
    /// The required interfaces that are down now, each with why; empty when all are up.
    fn down(&mut self) -> Vec<String>;
    /// Waits up to `max` for something that may have changed the links; a stop signal's number
    /// if one came.
    fn wait(&mut self, max: Duration, timer: &dyn Timer, cancel: &Cancel) -> Option<i32>;
}

/// Link state from `/sys/class/net`, woken by rtnetlink when possible.
pub struct SysLinks {
    root: PathBuf,
    required: Vec<String>,
    netlink: Option<OwnedFd>,
    /// Read link state from rtnetlink dumps (else from `root`).
    use_netlink_state: bool,
}

fn read_trim(p: PathBuf) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn flags_of(root: &std::path::Path, name: &str) -> u32 {
    read_trim(root.join(name).join("flags"))
        .and_then(|s| u32::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0)
}

/// Whether interface `name` is up: operstate `up`, or `unknown` with IFF_UP and IFF_RUNNING
/// (virtual devices that do not report an operstate).
fn iface_up(root: &std::path::Path, name: &str) -> Result<bool, String> {
    let Some(state) = read_trim(root.join(name).join("operstate")) else {
        return Err(format!("{name} (missing)"));
    };
    let flags = flags_of(root, name);
    Ok(state == "up" || (state == "unknown" && flags & IFF_UP != 0 && flags & IFF_RUNNING != 0))
}

fn subscribe_links() -> Result<OwnedFd, nix::Error> {
    use nix::sys::socket::{
        AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, socket,
    };
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::NetlinkRoute,
    )?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, RTMGRP_LINK))?;
    Ok(fd)
}

/// One link as rtnetlink reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub name: String,
    pub flags: u32,
    /// IF_OPER_* (RFC 2863): 0 unknown, 2 down, 6 up, ...
    pub operstate: u8,
}

const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const IFLA_IFNAME: u16 = 3;
const IFLA_OPERSTATE: u16 = 16;
const IF_OPER_UNKNOWN: u8 = 0;
const IF_OPER_UP: u8 = 6;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn ne_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn ne_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses one datagram of netlink messages: the RTM_NEWLINK ones become `Link`s; `true` once
/// NLMSG_DONE is seen; an NLMSG_ERROR is an error.
pub fn parse_links(buf: &[u8], out: &mut Vec<Link>) -> Result<bool, String> {
    let mut off = 0;
    while off + NLMSG_HDR <= buf.len() {
        let len = ne_u32(buf, off).unwrap_or(0) as usize;
        let kind = ne_u16(buf, off + 4).unwrap_or(0);
        if len < NLMSG_HDR || off + len > buf.len() {
            return Err("truncated netlink message".into());
        }
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => return Err("netlink error reply".into()),
            RTM_NEWLINK if len >= NLMSG_HDR + IFINFOMSG => {
                let flags = ne_u32(buf, off + NLMSG_HDR + 8).unwrap_or(0);
                let (mut name, mut operstate) = (String::new(), IF_OPER_UNKNOWN);
                let mut a = off + NLMSG_HDR + IFINFOMSG;
                while a + 4 <= off + len {
                    let alen = ne_u16(buf, a).unwrap_or(0) as usize;
                    let akind = ne_u16(buf, a + 2).unwrap_or(0) & 0x3fff;
                    if alen < 4 || a + alen > off + len {
                        break;
                    }
                    let data = &buf[a + 4..a + alen];
                    match akind {
                        IFLA_IFNAME => {
                            let end = data.iter().position(|&c| c == 0).unwrap_or(data.len());
                            name = String::from_utf8_lossy(&data[..end]).into_owned();
                        }
                        IFLA_OPERSTATE => operstate = data.first().copied().unwrap_or(0),
                        _ => {}
                    }
                    a += align4(alen);
                }
                if !name.is_empty() {
                    out.push(Link {
                        name,
                        flags,
                        operstate,
                    });
                }
            }
            _ => {}
        }
        off += align4(len);
    }
    Ok(false)
}

/// Asks the kernel for every link of our network namespace (RTM_GETLINK dump).
pub fn dump_links() -> Result<Vec<Link>, String> {
    use nix::sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto,
        socket,
    };
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::NetlinkRoute,
    )
    .map_err(|e| format!("netlink socket: {e}"))?;
    let mut req = Vec::with_capacity(NLMSG_HDR + IFINFOMSG);
    req.extend_from_slice(&((NLMSG_HDR + IFINFOMSG) as u32).to_ne_bytes());
    req.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    req.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel assigns ours
    req.extend_from_slice(&[0u8; IFINFOMSG]); // AF_UNSPEC: every link
    sendto(
        fd.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(|e| format!("netlink request: {e}"))?;
    let mut links = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    let until = Instant::now() + Duration::from_secs(1);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("netlink dump: no answer within 1s".into());
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(1000).max(1);
        let mut fds = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(format!("netlink poll: {e}")),
        }
        match recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => {
                if parse_links(&buf[..n], &mut links)? {
                    return Ok(links);
                }
            }
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("netlink read: {e}")),
        }
    }
}

fn link_up(l: &Link) -> bool {
    l.operstate == IF_OPER_UP
        || (l.operstate == IF_OPER_UNKNOWN && l.flags & IFF_UP != 0 && l.flags & IFF_RUNNING != 0)
}

/// Which of `required` are down among `links` (any non-loopback link up when none required).
fn down_among(links: &[Link], required: &[String]) -> Vec<String> {
    if required.is_empty() {
        return if links
            .iter()
            .any(|l| l.flags & IFF_LOOPBACK == 0 && l.name != "lo" && link_up(l))
        {
            vec![]
        } else {
            vec!["no non-loopback interface is up".into()]
        };
    }
    required
        .iter()
        .filter_map(|n| match links.iter().find(|l| &l.name == n) {
            Some(l) if link_up(l) => None,
            Some(_) => Some(format!("{n} (down)")),
            None => Some(format!("{n} (missing)")),
        })
        .collect()
}

impl SysLinks {
    pub fn new(required: Vec<String>) -> Self {
        SysLinks {
            root: PathBuf::from("/sys/class/net"),
            required,
            netlink: None,
            use_netlink_state: true,
        }
    }

    /// Drains queued link events; true if there were any.
    fn drain(fd: &OwnedFd) -> bool {
        let mut buf = [0u8; 8192];
        let mut any = false;
        while let Ok(n) = nix::sys::socket::recv(
            fd.as_raw_fd(),
            &mut buf,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        ) {
            if n == 0 {
                break;
            }
            any = true;
        }
        any
    }
}

impl LinkSource for SysLinks {
    fn start(&mut self) {
        if self.netlink.is_none() {
            self.netlink = subscribe_links().ok();
        }
    }

    fn kind(&self) -> &'static str {
        match (self.netlink.is_some(), self.use_netlink_state) {
            (true, true) => "netlink",
            (true, false) => "netlink events, sysfs state",
            (false, true) => "netlink state, polled",
            (false, false) => "sysfs polling",
        }
    }

    fn down(&mut self) -> Vec<String> {
        if self.use_netlink_state {
            match dump_links() {
                Ok(links) => return down_among(&links, &self.required),
                // No netlink here (seccomp, odd kernels): /sys/class/net from now on.
                Err(_) => self.use_netlink_state = false,
            }
        }
        if self.required.is_empty() {
            let names: Vec<String> = std::fs::read_dir(&self.root)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            let any_up = names.iter().any(|n| {
                flags_of(&self.root, n) & IFF_LOOPBACK == 0
                    && n != "lo"
                    && iface_up(&self.root, n).unwrap_or(false)
            });
            return if any_up {
                vec![]
            } else {
                vec!["no non-loopback interface is up".into()]
            };
        }
        self.required
            .iter()
            .filter_map(|n| match iface_up(&self.root, n) {
                Ok(true) => None,
                Ok(false) => Some(format!("{n} (down)")),
                Err(e) => Some(e),
            })
            .collect()
    }

    fn wait(&mut self, max: Duration, timer: &dyn Timer, cancel: &Cancel) -> Option<i32> {
        let Some(fd) = &self.netlink else {
            return timer.sleep(max.min(POLL_EVERY), cancel);
        };
        let until = Instant::now() + max;
        loop {
            if let Some(sig) = cancel.signal() {
                return Some(sig);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let slice = u16::try_from(left.min(SLICE).as_millis())
                .unwrap_or(50)
                .max(1);
            let mut fds = [nix::poll::PollFd::new(
                fd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(slice)) {
                Ok(n) if n > 0 => {
                    if Self::drain(fd) {
                        return cancel.signal();
                    }
                }
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => {
                    // The socket broke: fall back to polling from now on.
                    self.netlink = None;
                    return timer.sleep(left.min(POLL_EVERY), cancel);
                }
            }
        }
    }
}

/// Whether `host:port` accepts a TCP connection within `timeout`; why not when it does not.
pub fn probe(target: &str, timeout: Duration) -> Result<(), String> {
    let addrs = target
        .to_socket_addrs()
        .map_err(|e| format!("probe {target}: cannot resolve: {e}"))?;
    let mut last = format!("probe {target}: no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout.max(Duration::from_millis(1))) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("probe {target}: {e}"),
        }
    }
    Err(last)
}

pub struct NetworkWait {
    source: Box<dyn LinkSource>,
    probe: Option<String>,
    max_wait: Duration,
    deadline: Option<Duration>,
    checks: u32,
    waits: Vec<Value>,
}

impl NetworkWait {
    pub fn new(
        source: Box<dyn LinkSource>,
        probe: Option<String>,
        max_wait: Duration,
        deadline: Option<Duration>,
    ) -> Self {
        NetworkWait {
            source,
            probe,
            max_wait,
            deadline,
            checks: 0,
            waits: Vec::new(),
        }
    }

    /// What is missing now (down links, a failing probe); empty when the network is there.
    fn missing(&mut self, probe_timeout: Duration) -> Vec<String> {
        self.checks += 1;
        let mut down = self.source.down();
        if down.is_empty()
            && let Some(target) = &self.probe
            && let Err(e) = probe(target, probe_timeout.min(PROBE_TIMEOUT))
        {
            down.push(e);
        }
        down
    }
}

impl Guard for NetworkWait {
    fn name(&self) -> &'static str {
        "network"
    }

    fn before_retry(&mut self, ctx: &GuardCtx, class: ErrorClass) -> RetryVerdict {
        if !class.is_network() {
            return RetryVerdict::Allow;
        }
        let bound = match self.deadline {
            Some(d) => self.max_wait.min(d.saturating_sub(ctx.elapsed)),
            None => self.max_wait,
        };
        self.source.start();
        let down = self.missing(bound);
        if down.is_empty() {
            return RetryVerdict::Allow;
        }
        let fields = |extra: Vec<(&'static str, String)>| {
            let mut f = vec![
                ("operation", ctx.operation.to_string()),
                ("attempt", (ctx.attempt + 1).to_string()),
            ];
            f.extend(extra);
            f
        };
        ctx.log.warn(
            "network is down, waiting for network to recover",
            &fields(vec![
                ("down", down.join("; ")),
                ("max_wait", format_duration(bound)),
                ("watch", self.source.kind().to_string()),
            ]),
        );
        let start = ctx.timer.now();
        loop {
            let waited = ctx.timer.now().saturating_sub(start);
            if waited >= bound {
                let down = self.missing(Duration::from_millis(200));
                if down.is_empty() {
                    break;
                }
                let reason = format!(
                    "network did not recover within {} ({})",
                    format_duration(bound),
                    down.join("; ")
                );
                self.waits.push(json!({"attempt": ctx.attempt, "waited": waited.as_secs_f64(), "recovered": false, "watch": self.source.kind(), "down": down}));
                ctx.log.error(
                    "network did not recover, giving up",
                    &fields(vec![("waited", format_duration(waited))]),
                );
                return RetryVerdict::Deny { reason };
            }
            let slice = if self.probe.is_some() && self.source.down().is_empty() {
                PROBE_EVERY
            } else {
                bound - waited
            };
            if self
                .source
                .wait(slice.min(bound - waited), ctx.timer, ctx.cancel)
                .is_some()
            {
                // Let the engine's wait see the signal and end the operation as aborted.
                self.waits.push(json!({"attempt": ctx.attempt, "waited": waited.as_secs_f64(), "recovered": false, "watch": self.source.kind(), "stopped": true}));
                return RetryVerdict::Allow;
            }
            let left = bound.saturating_sub(ctx.timer.now().saturating_sub(start));
            if self.missing(left).is_empty() {
                break;
            }
        }
        let waited = ctx.timer.now().saturating_sub(start);
        ctx.log.info(
            "network recovered, retrying operation",
            &fields(vec![("waited", format_duration(waited))]),
        );
        self.waits.push(json!({"attempt": ctx.attempt, "waited": waited.as_secs_f64(), "recovered": true, "watch": self.source.kind()}));
        RetryVerdict::AllowNow {
            reason: format!(
                "network recovered after {} ({}); retrying at once",
                format_duration(waited),
                self.source.kind()
            ),
        }
    }

    fn report(&self) -> Value {
        json!({
            "watch": (self.checks > 0).then(|| self.source.kind()),
            "probe": self.probe,
            "max_network_wait": self.max_wait.as_secs_f64(),
            "checks": self.checks,
            "waits": self.waits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Logger;
    use crate::sys::clock::FakeTimer;

    /// Links that come up once the fake clock reaches `up_at`.
    struct Scripted {
        up_at: Duration,
        now: std::rc::Rc<dyn Fn() -> Duration>,
    }

    impl LinkSource for Scripted {
        fn kind(&self) -> &'static str {
            "scripted"
        }
        fn down(&mut self) -> Vec<String> {
            if (self.now)() >= self.up_at {
                vec![]
            } else {
                vec!["eth0 (down)".into()]
            }
        }
        fn wait(&mut self, max: Duration, timer: &dyn Timer, cancel: &Cancel) -> Option<i32> {
            timer.sleep(max.min(POLL_EVERY), cancel)
        }
    }

    fn guard(t: &'static FakeTimer, up_at: Duration, max: Duration) -> NetworkWait {
        NetworkWait::new(
            Box::new(Scripted {
                up_at,
                now: std::rc::Rc::new(move || t.now()),
            }),
            None,
            max,
            None,
        )
    }

    fn ctx<'a>(t: &'a FakeTimer, c: &'a Cancel, l: &'a Logger) -> GuardCtx<'a> {
        GuardCtx {
            timer: t,
            cancel: c,
            log: l,
            operation: "upload",
            attempt: 1,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn waits_for_the_link_then_retries_at_once_with_the_seed_lines() {
        let t: &'static FakeTimer = Box::leak(Box::new(FakeTimer::new()));
        let (c, l) = (Cancel::new(), Logger::memory(0));
        let mut g = guard(t, Duration::from_secs(2), Duration::from_secs(300));
        let v = g.before_retry(&ctx(t, &c, &l), ErrorClass::ConnectionError);
        assert!(matches!(v, RetryVerdict::AllowNow { .. }), "{v:?}");
        assert_eq!(t.now(), Duration::from_secs(2));
        let lines = l.lines().join("\n");
        assert!(lines.contains("WARN: network is down, waiting for network to recover | operation=upload, attempt=2"), "{lines}");
        assert!(
            lines.contains(
                "INFO: network recovered, retrying operation | operation=upload, attempt=2"
            ),
            "{lines}"
        );
    }

    #[test]
    fn gives_up_after_max_wait_and_ignores_other_classes() {
        let t: &'static FakeTimer = Box::leak(Box::new(FakeTimer::new()));
        let (c, l) = (Cancel::new(), Logger::memory(-2));
        let mut g = guard(t, Duration::from_secs(3600), Duration::from_secs(5));
        assert_eq!(
            g.before_retry(&ctx(t, &c, &l), ErrorClass::RateLimitExceeded),
            RetryVerdict::Allow
        );
        assert_eq!(t.now(), Duration::ZERO);
        let v = g.before_retry(&ctx(t, &c, &l), ErrorClass::NetworkError);
        assert!(
            matches!(&v, RetryVerdict::Deny { reason } if reason.contains("did not recover within 5s")),
            "{v:?}"
        );
        assert_eq!(t.now(), Duration::from_secs(5));
    }

    #[test]
    fn an_up_network_changes_nothing() {
        let t: &'static FakeTimer = Box::leak(Box::new(FakeTimer::new()));
        let (c, l) = (Cancel::new(), Logger::memory(-2));
        let mut g = guard(t, Duration::ZERO, Duration::from_secs(5));
        assert_eq!(
            g.before_retry(&ctx(t, &c, &l), ErrorClass::NetworkError),
            RetryVerdict::Allow
        );
        assert!(t.sleeps().is_empty());
    }

    #[test]
    fn the_probe_connects_on_localhost() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        assert!(probe(&addr, Duration::from_secs(1)).is_ok());
        drop(l);
        assert!(probe(&addr, Duration::from_secs(1)).is_err());
    }

    /// One RTM_NEWLINK message as the kernel sends it.
    fn newlink(name: &str, flags: u32, operstate: u8) -> Vec<u8> {
        let mut attrs = Vec::new();
        let mut attr = |kind: u16, data: &[u8]| {
            attrs.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
            attrs.extend_from_slice(&kind.to_ne_bytes());
            attrs.extend_from_slice(data);
            while attrs.len() % 4 != 0 {
                attrs.push(0);
            }
        };
        attr(IFLA_IFNAME, format!("{name}\0").as_bytes());
        attr(IFLA_OPERSTATE, &[operstate]);
        let mut m = Vec::new();
        m.extend_from_slice(&((32 + attrs.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes());
        m.extend_from_slice(&[0u8; 8]);
        m.extend_from_slice(&[0u8; 8]); // family, pad, type, index
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn rtnetlink_link_messages_are_parsed() {
        let mut buf = newlink("lo", 0x49, IF_OPER_UNKNOWN);
        buf.extend(newlink("eth0", 0x1003, 2));
        buf.extend(newlink("veth1", 0x11043, IF_OPER_UP));
        let mut done = 16u32.to_ne_bytes().to_vec();
        done.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        done.extend_from_slice(&[0u8; 10]);
        buf.extend(done);
        let mut links = Vec::new();
        assert_eq!(parse_links(&buf, &mut links), Ok(true));
        assert_eq!(links.len(), 3);
        assert_eq!(
            links[1],
            Link {
                name: "eth0".into(),
                flags: 0x1003,
                operstate: 2
            }
        );
        assert!(down_among(&links, &[]).is_empty(), "veth1 is up");
        assert_eq!(
            down_among(&links, &["eth0".into(), "veth1".into(), "x".into()]),
            vec!["eth0 (down)".to_string(), "x (missing)".to_string()]
        );
        assert_eq!(down_among(&links[..2], &[]).len(), 1, "lo does not count");
        assert!(parse_links(&buf[..20], &mut links).is_err());
    }

    #[test]
    fn the_kernel_answers_a_link_dump_with_loopback() {
        let links = dump_links().unwrap();
        let lo = links
            .iter()
            .find(|l| l.name == "lo")
            .expect("lo in every namespace");
        assert_ne!(lo.flags & IFF_LOOPBACK, 0);
    }

    #[test]
    fn loopback_is_not_a_network() {
        let dir = tempfile::tempdir().unwrap();
        let lo = dir.path().join("lo");
        std::fs::create_dir(&lo).unwrap();
        std::fs::write(lo.join("operstate"), "unknown\n").unwrap();
        std::fs::write(lo.join("flags"), "0x49\n").unwrap();
        let mut s = SysLinks {
            root: dir.path().to_path_buf(),
            required: vec![],
            netlink: None,
            use_netlink_state: false,
        };
        assert_eq!(s.down().len(), 1);
        let eth = dir.path().join("eth0");
        std::fs::create_dir(&eth).unwrap();
        std::fs::write(eth.join("operstate"), "down\n").unwrap();
        std::fs::write(eth.join("flags"), "0x1003\n").unwrap();
        assert_eq!(s.down().len(), 1);
        std::fs::write(eth.join("operstate"), "up\n").unwrap();
        assert!(s.down().is_empty());
        s.required = vec!["eth0".into(), "eth9".into()];
        assert_eq!(s.down(), vec!["eth9 (missing)".to_string()]);
    }
}
