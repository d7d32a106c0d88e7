#!/bin/sh
# The project's benchmark: hot restarts under load, handover and
# start_server side by side in one run, every row a `handover drill`.
#
#   bench/run.sh                 # every scenario, about 5 minutes
#   bench/run.sh ho ss           # only these (names below)
#   RESTARTS=5 bench/run.sh      # fewer restarts per row, for a quick look
#   RATE=2000 bench/run.sh       # paced load (requests/s in all) instead of full speed
#
# Each row: the `hello` example on 127.0.0.1, 8 client threads at full
# speed, a new connection per request, N restarts one after the other, 100 ms
# apart (--restart-every 100ms, as in the published table; the drill's own
# default is back to back), then 5 s at rest. Prints a markdown table
# (bench/table.py); each drill's JSON report and stderr stay in $OUT
# (default: a temporary directory, named on stderr). The start_server rows
# need Debian's libserver-starter-perl (apt-get install -y
# libserver-starter-perl); without it they are skipped.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cd "$root"
cargo build --release --examples --bins --quiet
bin="$CARGO_TARGET_DIR/release"
out="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/handover-bench-XXXXXX")}"
mkdir -p "$out"
start_server=/usr/bin/start_server
fast=${RESTARTS:-50}
slow=${RESTARTS:-20}
hello="$bin/examples/hello --quiet"
slow_hello="$bin/examples/hello --quiet --startup-delay 1500"
silent_hello="$bin/examples/hello --quiet --no-notify"
silent_slow_hello="$bin/examples/hello --quiet --no-notify --startup-delay 1500"
# The Go net/http server of the drill recipes (tests/fixtures/drill), built
# when Go is installed (apt-get install -y golang-go); its rows are skipped
# otherwise. It sends no READY=1.
go_server="$out/go_server"
if command -v go >/dev/null; then
    GOCACHE="$out/go-cache" GOPATH="$out/go-path" go build -o "$go_server" tests/fixtures/drill/go_server.go
fi

# name | label | restarts | supervisor and its options (before --) | worker
scenarios="\
ho|handover --ready notify|$fast|--ready notify|$hello
ho-slow|handover --ready notify, worker takes 1.5 s to start|$slow|--ready notify|$slow_hello
ho-auto-slow|handover (no --ready: auto, learns READY=1), 1.5 s start|$slow||$slow_hello
ho-seen|handover (no --ready), worker sends no READY=1: seen accepting|$fast||$silent_hello
ho-seen-slow|handover (no --ready), no READY=1, 1.5 s start: seen accepting|$slow||$silent_slow_hello
ho-w4|handover --ready notify --workers 4|$fast|--ready notify --workers 4|$hello
ho-w4-slow|handover --ready notify --workers 4, 1.5 s start|$slow|--ready notify --workers 4|$slow_hello
ho-hup|handover --ready notify, by SIGHUP as start_server|$fast|--supervisor $bin/handover --ready notify|$hello
ss|start_server|$fast|--supervisor $start_server|$hello
ss-slow|start_server, 1.5 s start|$slow|--supervisor $start_server|$slow_hello
go-seen|handover (no --ready), Go net/http from LISTEN_FDS: seen accepting|$fast||$go_server -from listen-fds
go-ss|start_server, Go net/http from SERVER_STARTER_PORT|$fast|--supervisor $start_server|$go_server -from server-starter"

wanted=" ${*:-ho ho-slow ho-auto-slow ho-seen ho-seen-slow ho-w4 ho-w4-slow ho-hup ss ss-slow go-seen go-ss} "
rm -f "$out/rows"
echo "bench: reports in $out" >&2
echo "$scenarios" | while IFS='|' read -r name label restarts options worker; do
    case "$wanted" in *" $name "*) ;; *) continue ;; esac
    case "$options" in
    *"$start_server"*)
        if [ ! -x "$start_server" ]; then
            echo "bench: $name skipped: $start_server not found (apt-get install -y libserver-starter-perl)" >&2
            continue
        fi
        ;;
    esac
    case "$worker" in
    "$go_server"*)
        if [ ! -x "$go_server" ]; then
            echo "bench: $name skipped: go not found (apt-get install -y golang-go)" >&2
            continue
        fi
        ;;
    esac
    echo "bench: $name: $label, $restarts restarts" >&2
    # shellcheck disable=SC2086 # options and worker are word lists
    if ! "$bin/handover" drill $options --port 127.0.0.1:0 --restarts "$restarts" --restart-every 100ms \
        --connections 8 ${RATE:+--rate "$RATE"} --idle 5s --json -- $worker >"$out/$name.json" 2>"$out/$name.log"; then
        echo "bench: $name FAILED (see $out/$name.json and $out/$name.log):" >&2
        grep "^handover" "$out/$name.log" >&2 || tail -5 "$out/$name.log" >&2
    fi
    printf '%s\t%s\n' "$label" "$out/$name.json" >>"$out/rows"
done
[ -s "$out/rows" ] || { echo "bench: no scenario ran" >&2; exit 1; }
exec python3 "$root/bench/table.py" "$out/rows"
