#!/usr/bin/env python3
"""Fleet simulation for the shared guard state (issue 16): N simulated hosts (retryx processes,
each with its own state dir, launched in waves) call one local HTTP service on 127.0.0.1 with a
fixed capacity that goes down for a while. For each jitter kind and each setup (no guards;
breaker + budget on the file backend, i.e. per host; the same on Redis, shared by the fleet) it
prints the peak concurrent requests the service saw, the retries (attempt > 1) that reached it
during the outage, the peak in the 2 s after recovery against the capacity, the time from
recovery until every host is done, and how many hosts succeeded. Then the per-run cost of the
Redis backend against the file backend (interleaved rounds). Bounded: every host has a deadline,
every scenario a hard timeout; only loopback is used; everything started is stopped by pid.

usage: fleet.py RETRYX_BIN [HOSTS] [JITTERS]   (JITTERS comma-separated; default all five)
"""
import json, os, shutil, socket, subprocess, sys, tempfile, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BIN = sys.argv[1]
HOSTS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
JITTERS = (sys.argv[3] if len(sys.argv) > 3 else "none,proportional,full,equal,decorrelated").split(",")
CAPACITY = 20          # requests the service serves at once; more are answered 503
WORK = 0.05            # seconds a served request takes
WAVES, WAVE_GAP = 4, 0.25
DOWN_AT, UP_AT = 0.3, 3.3   # outage window, seconds after the first wave
SCENARIO_TIMEOUT = 60


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Service:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self, t0=None):
        with self.lock:
            self.t0 = t0 or time.monotonic()
            self.inflight = 0
            self.peak = 0
            self.peak_recovery = 0
            self.retries_down = 0
            self.requests = 0

    def phase(self):
        t = time.monotonic() - self.t0
        return "down" if DOWN_AT <= t < UP_AT else ("recovery" if UP_AT <= t < UP_AT + 2 else "up")

    def handle(self, attempt):
        with self.lock:
            self.requests += 1
            ph = self.phase()
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
            if ph == "recovery":
                self.peak_recovery = max(self.peak_recovery, self.inflight)
            if ph == "down" and attempt > 1:
                self.retries_down += 1
            over = self.inflight > CAPACITY
        try:
            if ph == "down" or over:
                return 503
            time.sleep(WORK)
            return 200
        finally:
            with self.lock:
                self.inflight -= 1


SERVICE = Service()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        attempt = int(self.headers.get("X-Attempt", "1") or 1)
        code = SERVICE.handle(attempt)
        body = b"ok\n" if code == 200 else b"Service Unavailable\n"
        try:
            self.send_response(code, "OK" if code == 200 else "Service Unavailable")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a client that gave up (curl -m, a stopped host)

    def log_message(self, *a):
        pass


def start_redis(work):
    exe = shutil.which("redis-server")
    if not exe:
        return None, None
    port = free_port()
    p = subprocess.Popen([exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                          "--appendonly", "no", "--dir", work],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return p, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.01)
    p.kill()
    return None, None


def config(setup, jitter, redis_url, prefix):
    c = {"max_attempts": 10, "base_delay": "200ms", "max_delay": "2s", "jitter": jitter,
         "deadline": "20s", "timeout": "5s"}
    if setup != "unguarded":
        c["circuit_breaker"] = {"key": "svc", "window_size": 40, "minimum_calls": 10,
                                "failure_rate_threshold": 50, "open_duration": "1s",
                                "half_open_max_calls": 3}
        c["retry_budget"] = {"key": "svc", "max_tokens": 20, "token_ratio": 0.5}
    if setup == "redis":
        c["state_backend"] = redis_url
        c["state_backend_prefix"] = prefix
    return c


def scenario(work, url, setup, jitter, redis_url, n):
    d = tempfile.mkdtemp(dir=work)
    cfg = os.path.join(d, "cfg.json")
    with open(cfg, "w") as f:
        json.dump(config(setup, jitter, redis_url, f"fleet{time.monotonic_ns()}"), f)
    cmd = f'curl -fsS -m 5 -H "X-Attempt: $RETRYX_ATTEMPT" {url} >/dev/null'
    SERVICE.reset()
    procs, ends = [], {}
    t0 = time.monotonic()
    SERVICE.reset(t0)
    per_wave = (n + WAVES - 1) // WAVES
    for w in range(WAVES):
        while time.monotonic() - t0 < w * WAVE_GAP:
            time.sleep(0.005)
        for i in range(w * per_wave, min(n, (w + 1) * per_wave)):
            procs.append(subprocess.Popen(
                [BIN, "-q", "-c", cfg, "--state-dir", os.path.join(d, f"h{i}"), "--shell", "--", cmd],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    codes = []
    pending = list(procs)
    while pending:
        if time.monotonic() - t0 > SCENARIO_TIMEOUT:
            for p in pending:
                p.kill()
        still = []
        for p in pending:
            rc = p.poll()
            if rc is None:
                still.append(p)
            else:
                codes.append(rc)
                ends[p.pid] = time.monotonic() - t0
        pending = still
        time.sleep(0.01)
    last = max(ends.values()) if ends else 0
    shutil.rmtree(d, ignore_errors=True)
    return {"peak": SERVICE.peak, "retries_down": SERVICE.retries_down,
            "peak_recovery": SERVICE.peak_recovery,
            "recovery_s": max(0.0, last - UP_AT), "ok": codes.count(0), "refused": codes.count(75),
            "requests": SERVICE.requests}


def per_run_cost(work, redis_url):
    here = os.path.dirname(os.path.abspath(__file__))
    guards = {"circuit_breaker": {"key": "c"}, "retry_budget": {"key": "c"},
              "bulkhead": {"key": "c", "max_concurrent": 4}}
    paths = {}
    for name, extra in (("file", {}), ("redis", {"state_backend": redis_url})):
        p = os.path.join(work, f"cost-{name}.json")
        with open(p, "w") as f:
            json.dump({**guards, **extra}, f)
        paths[name] = [BIN, "-q", "-c", p, "--state-dir", os.path.join(work, "cost-state"), "--", "true"]
    out = subprocess.run([sys.executable, os.path.join(here, "interleave.py"), "200", "20"]
                         + [f"{k}={json.dumps(v)}" for k, v in paths.items()],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    work = tempfile.mkdtemp(prefix="retryx-fleet.")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    redis, redis_url = start_redis(work)
    setups = ["unguarded", "file"] + (["redis"] if redis else [])
    if not redis:
        print("redis-server not found: the redis rows are left out")
    try:
        print(f"{HOSTS} hosts in {WAVES} waves {WAVE_GAP}s apart; service capacity {CAPACITY}, "
              f"down from {DOWN_AT}s to {UP_AT}s")
        print(f"{'jitter':<13}{'setup':<11}{'peak':>6}{'retries in outage':>19}{'peak after up':>15}"
              f"{'x capacity':>11}{'done after up':>15}{'ok':>6}{'75':>5}{'requests':>10}")
        for jitter in JITTERS:
            base = None
            for setup in setups:
                r = scenario(work, url, setup, jitter, redis_url, HOSTS)
                if setup == "unguarded":
                    base = r["retries_down"]
                share = f" ({100 * r['retries_down'] / base:.0f}%)" if base and setup != "unguarded" else ""
                print(f"{jitter:<13}{setup:<11}{r['peak']:>6}{str(r['retries_down']) + share:>19}"
                      f"{r['peak_recovery']:>15}{r['peak_recovery'] / CAPACITY:>11.2f}"
                      f"{r['recovery_s']:>14.2f}s{r['ok']:>6}{r['refused']:>5}{r['requests']:>10}", flush=True)
        if redis:
            c = per_run_cost(work, redis_url)
            f, r = c["file"]["median"], c["redis"]["median"]
            print(f"per run (retryx -n 1 -- true with breaker + budget + bulkhead, 200 interleaved rounds): "
                  f"file {f:.2f} ms, redis {r:.2f} ms, +{r - f:.2f} ms ({r / f:.2f}x)")
    finally:
        server.shutdown()
        if redis:
            redis.kill()
            redis.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
