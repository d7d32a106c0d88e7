#!/bin/sh
# The drill's load generator against wrk, same server, same machine:
# hello under handover, 8 connections, 5 s, keep-alive and a connection per
# request. Needs wrk (apt-get install -y wrk). Prints requests per second
# and each tool's own CPU time per request.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cd "$root"
cargo build --release --examples --bins --quiet
bin="$CARGO_TARGET_DIR/release"
command -v wrk >/dev/null || { echo "drill-vs-wrk: wrk not found (apt-get install -y wrk)" >&2; exit 2; }
seconds=${SECONDS_PER_RUN:-5}
log=$(mktemp)
"$bin/handover" --port 127.0.0.1:0 --ready notify -- "$bin/examples/hello" --quiet 2>"$log" &
sup=$!
trap 'kill -TERM $sup 2>/dev/null; wait $sup 2>/dev/null; rm -f "$log"' EXIT
port=""
for _ in $(seq 1 500); do
    port=$(sed -n 's/.*listening on tcp 127.0.0.1:\([0-9]*\) .*/\1/p' "$log")
    [ -n "$port" ] && break
    sleep 0.01
done
[ -n "$port" ] || { echo "drill-vs-wrk: the server did not start" >&2; cat "$log" >&2; exit 1; }
drill_numbers() {
    python3 -c 'import json,sys; r=json.load(sys.stdin); print(round(r["rate_per_s"]), r["load_cpu_us_per_request"])'
}
# wrk's requests per second, and its CPU time (the subshell's `times`: wrk's
# user and system time) per request in microseconds.
wrk_numbers() {
    awk '/Requests\/sec/ { rate = $2 } / requests in / { n = $1 }
         /^[0-9]+m[0-9.]+s [0-9]+m[0-9.]+s$/ { split($1, u, /[ms]/); split($2, s, /[ms]/); cpu = u[1] * 60 + u[2] + s[1] * 60 + s[2] }
         END { printf "%d %.1f\n", rate, cpu * 1e6 / n }'
}
for mode in keepalive close; do
    if [ $mode = keepalive ]; then header=""; flag="--keepalive"; else header="Connection: close"; flag=""; fi
    wrk=$( (wrk -t2 -c8 -d"${seconds}s" ${header:+-H "$header"} "http://127.0.0.1:$port/"; times) | wrk_numbers)
    drill=$("$bin/handover" drill --port 127.0.0.1:0 --ready notify --restarts 0 --duration "${seconds}s" \
        --connections 8 $flag --json -- "$bin/examples/hello" --quiet | drill_numbers)
    echo "$mode: drill ${drill% *} req/s (${drill#* } µs CPU per request), wrk ${wrk% *} req/s (${wrk#* } µs CPU per request)"
done
