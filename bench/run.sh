#!/bin/sh
# Hot-restart benchmark: builds handover and the demo worker in release
# mode, then runs bench/restart.py (arguments are passed through; see
# `bench/run.sh --help`). Installs nothing: the start_server rows appear
# only when Debian's libserver-starter-perl is installed.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cd "$root"
cargo build --release --examples --bins --quiet
if [ ! -x /usr/bin/start_server ]; then
    echo "run.sh: /usr/bin/start_server not found; for the side-by-side rows run:" >&2
    echo "run.sh:     apt-get install -y libserver-starter-perl" >&2
fi
exec python3 "$root/bench/restart.py" \
    --handover "$CARGO_TARGET_DIR/release/handover" \
    --hello "$CARGO_TARGET_DIR/release/examples/hello" \
    "$@"
