#!/bin/sh
# Soak and storm: one handover supervisor (release build, the `hello`
# worker, --ready notify) under a bounded loopback HTTP load through
#   phase A: RESTARTS (1000) hot restarts one after another, each by
#            `handover restart --wait --control`, failures counted;
#   phase B: a storm of HUPS (1000) `kill -HUP` sent as fast as the shell
#            can, then a wait until a single generation serves.
# Before and after each phase it samples the supervisor's open fds, VmRSS,
# RssAnon, threads and child processes from /proc: numbers that stay flat
# mean nothing leaks. Prints a markdown table; the raw outputs (the
# supervisor's log, wrk's reports, every restart's answer, the samples, the
# status replies) stay in $OUT (default: a temporary directory, named on
# stderr).
#
#   bench/soak.sh                          # well under a minute here
#   RESTARTS=10000 bench/soak.sh           # a longer soak
#   HUP_WITH=/bin/kill bench/soak.sh       # one process per HUP: the storm
#                                          # spreads over a second or two
#
# The shell's own `kill` sends the storm in a few milliseconds, and the
# kernel merges a HUP into one still pending, so the supervisor may see very
# few of them; /bin/kill paces them by its own start-up time.
#
# The load is wrk (apt-get install -y wrk; nothing is installed here):
# CONNECTIONS (4) connections on one thread, a new connection per request,
# one run per phase of at most PHASE_LIMIT (600) seconds. Without wrk the
# phases run without load, as stderr says. Phase A also stops at
# PHASE_LIMIT. The status replies are read with python3. Everything
# started here is stopped by pid on exit or interrupt.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cd "$root"
cargo build --release --bins --examples --quiet
bin="$CARGO_TARGET_DIR/release"
restarts=${RESTARTS:-1000}
hups=${HUPS:-1000}
hup_with=${HUP_WITH:-kill}
connections=${CONNECTIONS:-4}
limit=${PHASE_LIMIT:-600}
out="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/handover-soak-XXXXXX")}"
mkdir -p "$out"
run=$(mktemp -d "${TMPDIR:-/tmp}/handover-soak-run-XXXXXX")
ctl="$run/control"
sup=""
load=""

say() { echo "soak: $*" >&2; }

# Stops the load and the supervisor (by pid), keeps the log, removes $run.
cleanup() {
    set +e
    if [ -n "$load" ]; then
        kill -INT "$load" 2>/dev/null
        wait "$load"
        load=""
    fi
    if [ -n "$sup" ]; then
        if ! "$bin/handover" stop --timeout 30s --control "$ctl" >/dev/null 2>&1 && alive; then
            say "supervisor $sup did not stop when asked; killing it and its workers' groups"
            # shellcheck disable=SC2013 # a list of pids
            for pid in $(cat "/proc/$sup/task/$sup/children"); do kill -KILL "-$pid"; done
            kill -KILL "$sup"
        fi
        wait "$sup"
        echo "$?" >"$out/supervisor-exit-status"
        sup=""
    fi
    [ -f "$run/handover.log" ] && cp "$run/handover.log" "$out/handover.log"
    rm -rf "$run"
    set -e
}
trap cleanup EXIT
trap 'say interrupted; exit 130' INT
trap 'say terminated; exit 143' TERM

# Whether the supervisor runs (a zombie waiting for this shell does not).
alive() { [ -r "/proc/$sup/stat" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$sup/stat"; }

now() { date +%s.%N; }
# Seconds from $1 to $2, times $3, with $4 decimals.
span() { awk -v a="$1" -v b="$2" -v k="$3" -v d="$4" 'BEGIN { printf "%.*f", d, (b - a) * k }'; }

status() { "$bin/handover" status --json --control "$ctl"; }

# A field of the status reply on stdin: a Python expression over `s`.
field() { python3 -c "import json, sys; s = json.load(sys.stdin); print($1)"; }

# Waits (at most $2 seconds) until one generation serves alone, the same
# one in two replies in a row (a HUP sent before the first request may
# still wait in the supervisor's self-pipe then, not at the second), and
# prints its number.
settle() {
    deadline=$(($(date +%s) + $2))
    last=""
    while [ "$(date +%s)" -le "$deadline" ] && alive; do
        gen=$(status 2>/dev/null | field '
"" if len(g := s["generations"]) != 1 or g[0]["phase"] != "serving" else g[0]["generation"]' 2>/dev/null) ||
            gen=""
        if [ -n "$gen" ] && [ "$gen" = "$last" ]; then
            echo "$gen"
            return 0
        fi
        last=$gen
        sleep 0.01
    done
    say "$1: no single serving generation within $2 s"
    status >&2 || true
    return 1
}

# Saves "fds VmRSS RssAnon threads children" of the supervisor to $out/sample-$1.
sample() {
    # shellcheck disable=SC2012 # fd numbers
    fds=$(ls "/proc/$sup/fd" | wc -l)
    children=$(wc -w <"/proc/$sup/task/$sup/children")
    awk -v fds="$fds" -v children="$children" '
        /^VmRSS:/ { rss = $2 } /^RssAnon:/ { anon = $2 } /^Threads:/ { threads = $2 }
        END { print fds, rss, anon, threads, children }' "/proc/$sup/status" >"$out/sample-$1"
}

# Starts the load for phase $1, when there is wrk.
load_start() {
    [ -n "$wrk" ] || return 0
    wrk -t1 -c"$connections" -d"${limit}s" -H "Connection: close" "http://$address/" \
        >"$out/wrk-$1.txt" 2>&1 </dev/null &
    load=$!
}

# Stops the load (on SIGINT wrk prints its report) and saves "requests
# non-2xx socket-errors" of phase $1 to $out/load-$1 ("- - -" without wrk).
load_stop() {
    if [ -z "$load" ]; then
        echo "- - -" >"$out/load-$1"
        return 0
    fi
    kill -INT "$load"
    wait "$load" || say "wrk exited with $? (see $out/wrk-$1.txt)"
    load=""
    awk '/ requests in / { n = $1 }
         /Non-2xx or 3xx responses:/ { bad = $NF }
         /Socket errors:/ { gsub(/,/, ""); errors = $4 + $6 + $8 + $10 }
         END { printf "%d %d %d\n", n, bad, errors }' "$out/wrk-$1.txt" >"$out/load-$1"
}

wrk=$(command -v wrk || true)
[ -n "$wrk" ] || say "wrk not found (apt-get install -y wrk): the phases run without load"

say "raw outputs in $out"
"$bin/handover" --port 127.0.0.1:0 --ready notify --control "$ctl" --status-file "$run/status" \
    --log-file "$run/handover.log" -- "$bin/examples/hello" --quiet &
sup=$!
first=$(settle start 10)
address=$(status | tee "$out/status-start.json" | field 's["listeners"][0]["address"].split()[1]')
say "supervisor $sup, generation $first serving on $address"
sample before

say "phase A: $restarts restarts by the control socket"
log_a=$(wc -l <"$run/handover.log")
load_start A
start=$(now)
deadline=$(($(date +%s) + limit))
done_a=0
failed_a=0
while [ "$done_a" -lt "$restarts" ]; do
    done_a=$((done_a + 1))
    if ! "$bin/handover" restart --wait --timeout 60s --control "$ctl" >>"$out/restarts.txt" 2>&1; then
        failed_a=$((failed_a + 1))
        alive || { say "the supervisor exited during restart $done_a"; exit 1; }
    fi
    if [ $((done_a % 100)) = 0 ] && [ "$(date +%s)" -gt "$deadline" ]; then
        say "phase A stopped after $done_a restarts: PHASE_LIMIT ($limit s) reached"
        break
    fi
done
time_a=$(span "$start" "$(now)" 1 2)
load_stop A
gen_a=$(settle "after phase A" 60)
sample A
status >"$out/status-A.json"

say "phase B: $hups HUPs with $hup_with"
log_b=$(wc -l <"$run/handover.log")
load_start B
start=$(now)
i=0
while [ "$i" -lt "$hups" ]; do
    "$hup_with" -HUP "$sup"
    i=$((i + 1))
done
sent=$(now)
gen_b=$(settle "after phase B" 120)
end=$(now)
storm_b=$(span "$start" "$sent" 1000 1)
time_b=$(span "$start" "$end" 1 2)
load_stop B
sample B
status >"$out/status-B.json"
counters=$(field '"{restarts} restarts, {failures} failures, {respawns} respawns".format(**s["counters"])' \
    <"$out/status-B.json")
pids=$(field '" ".join(str(p) for g in s["generations"] for p in g["pids"])' <"$out/status-B.json")

# Stop, so that every line is in the log (a count of repeats included),
# then read the log by phase.
cleanup
trap - EXIT
left=""
for pid in $pids; do
    if [ -d "/proc/$pid" ]; then left="$left $pid"; fi
done
log="$out/handover.log"
sed -n "$((log_a + 1)),${log_b}p" "$log" >"$out/log-A.txt"
sed -n "$((log_b + 1)),\$p" "$log" >"$out/log-B.txt"
requested=$(grep -c 'restart requested on the control socket' "$out/log-A.txt" || true)
own='^handover\[[0-9]*\]: '
hup_spawning=$(grep -c "${own}received HUP, spawning" "$out/log-B.txt" || true)
hup_coalesced=$(grep -c "${own}received HUP while generation" "$out/log-B.txt" || true)
# shellcheck disable=SC2046 # two numbers
set -- $(grep "${own}the line above came .* more times: received HUP" "$out/log-B.txt" |
    awk '{ for (i = 1; i < NF; i++) if ($i == "came") { n += $(i + 1); lines++ } } END { print lines + 0, n + 0 }')
collapsed_lines=$1 collapsed_more=$2
answers=$(awk '/is serving/ { for (i = 1; i < NF; i++) { if ($i == "ready") print "r", $(i + 1); if ($i == "gone") print "g", $(i + 1) } }' \
    "$out/restarts.txt" | sort -k1,1 -k2,2n | awk '
    { v[$1, ++n[$1]] = $2 }
    END { printf "ready median %.1f / max %.1f ms, old gone median %.1f / max %.1f ms",
          v["r", int((n["r"] + 1) / 2)], v["r", n["r"]], v["g", int((n["g"] + 1) / 2)], v["g", n["g"]] }')
read -r req_a bad_a err_a <"$out/load-A"
read -r req_b bad_b err_b <"$out/load-B"
row() {
    read -r fds rss anon threads children <"$out/sample-$2"
    echo "| $1 | $fds | $rss | $anon | $threads | $children |"
}
cat <<EOF
| phase | done | failed | took s | generations started | load requests | non-2xx | socket errors |
|---|---|---|---|---|---|---|---|
| A: restarts by \`handover restart --wait\` | $done_a | $failed_a | $time_a | $((gen_a - first)) | $req_a | $bad_a | $err_a |
| B: $hups \`$hup_with -HUP\` in $storm_b ms | - | - | $time_b | $((gen_b - gen_a)) | $req_b | $bad_b | $err_b |

| supervisor | open fds | VmRSS KiB | RssAnon KiB | threads | children |
|---|---|---|---|---|---|
$(row "before (generation $first)" before)
$(row "after phase A (generation $gen_a)" A)
$(row "after phase B (generation $gen_b)" B)

- phase A answers: $answers; $(awk -v t="$time_a" -v n="$done_a" 'BEGIN { printf "%.1f", t * 1000 / n }') ms a restart in all
- phase A log: $(wc -l <"$out/log-A.txt") lines, $requested "restart requested on the control socket"
- phase B log: $(wc -l <"$out/log-B.txt") lines; HUPs handled: $((hup_spawning + hup_coalesced + collapsed_more)) ($hup_spawning "received HUP, spawning a new worker", $hup_coalesced "received HUP while generation N is starting", $collapsed_lines "the line above came N more times" for $collapsed_more more)
- counters: $counters; supervisor exit status $(cat "$out/supervisor-exit-status"); still running after the stop:${left:- nothing}
EOF
