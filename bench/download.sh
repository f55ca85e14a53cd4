#!/usr/bin/env bash
# Benchmark of resumable downloads: retryx against curl on a 1 GiB file served from 127.0.0.1 by
# bench/flaky_server (cargo example flaky_server), which cuts the connection after CUT_AFTER
# body bytes for the first CUTS requests. Compares `curl --retry 5 -C -` (stops at the first cut:
# a closed transfer is not a retried error), `curl --retry 5 --retry-all-errors -C -` (retries,
# but throws away the bytes of the failed transfer and starts from the original offset) and a
# shell loop around `curl -C -` (resumes). Prints wall time, bytes the server sent, exit code and
# peak memory for each tool, and the wall-time ratio. It must not reach beyond 127.0.0.1 and
# leaves nothing behind (temp dir removed, server stopped).
#
#   bench/download.sh                      # 1 GiB, 3 cuts 300 MiB apart
#   SIZE_MIB=256 CUT_AFTER=$((64<<20)) bench/download.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MIB=${SIZE_MIB:-1024}
CUTS=${CUTS:-3}
CUT_AFTER=${CUT_AFTER:-$((300 << 20))}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

cargo build --quiet --release --bin retryx --example flaky_server
RETRYX=$CARGO_TARGET_DIR/release/retryx
SERVER=$CARGO_TARGET_DIR/release/examples/flaky_server

tmp=$(mktemp -d)
srv_pid=
cleanup() {
    if [ -n "$srv_pid" ]; then kill "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

echo "making a ${SIZE_MIB} MiB file of random bytes..." >&2
head -c "$((SIZE_MIB << 20))" /dev/urandom > "$tmp/src.bin"
want=$(sha256sum "$tmp/src.bin" | cut -d' ' -f1)
size=$((SIZE_MIB << 20))

start_server() {
    if [ -n "$srv_pid" ]; then kill "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; fi
    : > "$tmp/port"
    "$SERVER" --file "$tmp/src.bin" --cut-after "$CUT_AFTER" --cuts "$CUTS" > "$tmp/port" &
    srv_pid=$!
    for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
    port=$(head -1 "$tmp/port")
    url="http://127.0.0.1:$port/src.bin"
}

sent() { curl -s "http://127.0.0.1:$port/__stats" | sed -E 's/.*"bytes_sent": ([0-9]+).*/\1/'; }
requests() { curl -s "http://127.0.0.1:$port/__stats" | sed -E 's/.*"requests": ([0-9]+).*/\1/'; }

# run NAME CMD...: times CMD against the server started last, checks the output, prints a line.
run() {
    local name=$1; shift
    rm -f "$tmp/out.bin" "$tmp/out.bin.part"
    local t0 t1 rc=0
    t0=$(date +%s.%N)
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f '%M' -o "$tmp/rss" "$@" > "$tmp/$name.out" 2> "$tmp/$name.err" || rc=$?
    else
        "$@" > "$tmp/$name.out" 2> "$tmp/$name.err" || rc=$?
        echo "?" > "$tmp/rss"
    fi
    t1=$(date +%s.%N)
    local wall ok b reqs
    wall=$(echo "$t1 - $t0" | bc -l)
    b=$(sent); reqs=$(requests)
    ok=no
    [ -f "$tmp/out.bin" ] && [ "$(sha256sum "$tmp/out.bin" | cut -d' ' -f1)" = "$want" ] && ok=yes
    printf '%-34s exit=%-3s sha256_ok=%-3s wall=%7.2fs requests=%-2s bytes_sent=%-11s (%.2fx file) peak_rss=%sKiB\n' \
        "$name" "$rc" "$ok" "$wall" "$reqs" "$b" "$(echo "$b / $size" | bc -l)" "$(tail -1 "$tmp/rss")"
    eval "wall_$name=$wall"
}

echo "file: ${SIZE_MIB} MiB, ${CUTS} cuts, each after $CUT_AFTER body bytes of a response; waits: fixed 1s" >&2
start_server
run retryx "$RETRYX" download "$url" -o "$tmp/out.bin" -n 5 -p fixed -d 1s -j none -q \
    --checksum "sha256:$want"
start_server
run curl_retry "$(command -v curl)" -sS --retry 5 --retry-delay 1 -C - -o "$tmp/out.bin" "$url"
start_server
run curl_retry_all_errors "$(command -v curl)" -sS --retry 5 --retry-delay 1 --retry-all-errors -C - \
    -o "$tmp/out.bin" "$url"
# What people write by hand to get resume from curl: a loop around `curl -C -`.
start_server
run curl_resume_loop sh -c 'for i in 1 2 3 4 5; do curl -sS -C - -o "$1" "$2" && exit 0; sleep 1; done; exit 1' \
    sh "$tmp/out.bin" "$url"
printf 'wall-time ratio retryx / curl --retry-all-errors: %.2f; retryx / curl resume loop: %.2f\n' \
    "$(echo "$wall_retryx / $wall_curl_retry_all_errors" | bc -l)" "$(echo "$wall_retryx / $wall_curl_resume_loop" | bc -l)"
echo "curl $(curl --version | head -1 | cut -d' ' -f2); curl_retry stderr: $(tail -1 "$tmp/curl_retry.err")"
