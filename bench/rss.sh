#!/bin/sh
# Where the supervisor's resident memory goes: runs BINARY (default
# target/release/handover) with the hello example on 127.0.0.1, restarts
# it 5 times, then prints VmHWM (peak), RssAnon (private) and the resident
# KiB of each mapping (the binary, libc, the loader, heap, stack).
#
#   bench/rss.sh
#   bench/rss.sh path/to/another/handover      # e.g. a build with other flags
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
(cd "$root" && cargo build --release --bins --examples --quiet)
bin=${1:-$CARGO_TARGET_DIR/release/handover}
hello="$CARGO_TARGET_DIR/release/examples/hello"
dir=$(mktemp -d "${TMPDIR:-/tmp}/handover-rss-XXXXXX")
trap 'rm -rf "$dir"' EXIT
"$bin" --port 127.0.0.1:0 --dir "$dir" --control "$dir/ctl" -- "$hello" --quiet >"$dir/log" 2>&1 &
pid=$!
i=0
while [ ! -S "$dir/ctl" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
for _ in 1 2 3 4 5; do "$bin" restart --control "$dir/ctl" --wait >/dev/null; done
grep -E '^(VmHWM|RssAnon|RssFile)' "/proc/$pid/status" | tr -s ' \t' ' ' | tr '\n' ' '
echo
awk '/^[0-9a-f]+-/ { name = ($6 == "" ? "[anon]" : $6) } /^Rss:/ { kib[name] += $2 }
     END { for (n in kib) if (kib[n] > 0) printf "%6d KiB %s\n", kib[n], n }' "/proc/$pid/smaps" | sort -rn
kill -TERM "$pid"
wait "$pid" || true
