#!/bin/sh
# Upgrades of handover itself under load: every row a `handover drill
# --upgrades N` against the `hello` example (8 client threads at full
# speed, a new connection per request, release build), printed as a
# markdown table.
#
#   bench/upgrade.sh              # both rows, about 10 seconds
#   UPGRADES=100 bench/upgrade.sh
#
# "took" is the supervisor's own figure: from the upgrade request to the
# new program serving its control socket (the verify run included). The
# round trip is the drill's: from sending the request to reading the
# answer. The accept gap is the longest time between two accepted
# connections around the upgrades; "pids kept" compares the supervisor's
# and every worker's pid just before and just after each upgrade. Each
# drill's JSON report and stderr stay in $OUT (default: a temporary
# directory, named on stderr). The last row also checks that no captured
# line is lost: `hello --log-requests` writes a line per request, and the
# drill (`--log-line`) counts them against the requests answered.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cd "$root"
cargo build --release --examples --bins --quiet
bin="$CARGO_TARGET_DIR/release"
out="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/handover-upgrade-bench-XXXXXX")}"
mkdir -p "$out"
n=${UPGRADES:-20}
echo "bench: reports in $out" >&2

# name | label | drill options | --log-line text (hello --log-requests writes it)
scenarios="\
up|$n upgrades, nothing else|--upgrades $n --restarts 0|
up-hup|$n upgrades in turns with $n restarts, --ready notify|--upgrades $n --restarts $n --ready notify|
up-w4|$n upgrades, --workers 4 --log-capture, a log line per request|--upgrades $n --restarts 0 --workers 4 --log-capture|hello: request "

rm -f "$out/rows"
echo "$scenarios" | while IFS='|' read -r name label options log_line; do
    echo "bench: $name: $label" >&2
    # shellcheck disable=SC2086 # options is a word list
    set -- $options
    logging=""
    if [ -n "$log_line" ]; then
        set -- "$@" --log-line "$log_line"
        logging=--log-requests
    fi
    # shellcheck disable=SC2086 # logging is empty or one word
    if ! "$bin/handover" drill "$@" --port 127.0.0.1:0 --connections 8 --json \
        -- "$bin/examples/hello" --quiet $logging >"$out/$name.json" 2>"$out/$name.log"; then
        echo "bench: $name FAILED (see $out/$name.json and $out/$name.log)" >&2
    fi
    printf '%s\t%s\n' "$label" "$out/$name.json" >>"$out/rows"
done

exec python3 - "$out/rows" <<'EOF'
import json, statistics, sys

print("| scenario | upgrades ok | requests | failed | took median / max ms | round trip median / max ms | max accept gap ms | supervisor and worker pids kept | request log lines seen / answered |")
print("|---|---|---|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    label, path = line.rstrip("\n").split("\t")
    try:
        report = json.load(open(path))
    except ValueError:
        print(f"| {label} | failed to run | | | | | | | |")
        continue
    each = report["upgrades"]["each"]
    ok = sum(1 for u in each if u["ok"])
    took = [u["took_ms"] for u in each if u["took_ms"] is not None] or [0]
    trip = [u["round_trip_ms"] for u in each] or [0]
    kept = all(u["pids_preserved"] for u in each)
    lines = report.get("request_lines")
    logged = f"{lines['seen']:,} / {lines['answered']:,}" if lines else "-"
    print(
        f"| {label} | {ok}/{len(each)} | {report['requests']:,} | {report['failures']['total']} "
        f"| {statistics.median(took):.1f} / {max(took):.1f} | {statistics.median(trip):.1f} / {max(trip):.1f} "
        f"| {report['accept_gap']['max_ms']:.1f} | {'yes' if kept else 'NO'} | {logged} |"
    )
EOF
