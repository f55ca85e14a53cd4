#!/usr/bin/env python3
"""Times commands interleaved: every round runs each command once (order rotating), so a
machine that drifts (other tenants, frequency) shifts all of them alike; sequential batches of
one command then the next turn drift into ratio error (±15% on this VM). Prints JSON: per
command the median and the 10-90% trimmed mean of wall time in ms.

usage: interleave.py ROUNDS WARMUP NAME=ARGV_JSON...   (stdout of the commands goes to /dev/null)
"""
import json, os, statistics, sys, time

rounds, warmup = int(sys.argv[1]), int(sys.argv[2])
cmds = []
for spec in sys.argv[3:]:
    name, argv = spec.split("=", 1)
    cmds.append((name, json.loads(argv)))
null = os.open(os.devnull, os.O_WRONLY)
times = {name: [] for name, _ in cmds}
for r in range(warmup + rounds):
    k = r % len(cmds)
    for name, argv in cmds[k:] + cmds[:k]:
        t0 = time.perf_counter_ns()
        pid = os.posix_spawnp(argv[0], argv, os.environ,
                              file_actions=[(os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)])
        os.waitpid(pid, 0)
        if r >= warmup:
            times[name].append((time.perf_counter_ns() - t0) / 1e6)
out = {}
for name, t in times.items():
    t.sort()
    trimmed = t[len(t) // 10: len(t) - len(t) // 10] or t
    out[name] = {"median": statistics.median(t), "mean": statistics.mean(trimmed), "runs": len(t)}
print(json.dumps(out))
