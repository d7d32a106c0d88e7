#!/usr/bin/env bash
# Build the Debian package, install it with dpkg, run the installed files,
# remove it. CI runs this after the tests (root, Debian); see README.md here.
#
#   packaging/deb/smoke.sh
#
# 1. `cargo deb` (cargo-deb $CARGO_DEB_VERSION is installed first if missing).
# 2. `dpkg -i`; the files are where they belong; `handover --version`;
#    `handover drill --help` runs the drill installed beside it;
#    `start_server --version` prints 0.35 through the alternative. Where
#    another package owns /usr/bin/start_server (libserver-starter-perl),
#    the check is instead that postinst left that file untouched, and
#    start_server mode is run through a symlink.
# 3. One hot restart with the installed binary: /usr/bin/handover serving
#    the `hello` example on a free loopback port, `handover restart --wait
#    --control`, generation 2 answers, `handover stop`.
#    Then `dpkg -i` again (an upgrade: postinst configure VERSION): the
#    supervisor, whose control socket is under /run/handover/, is upgraded
#    in place: same pid, generation 2 still serving, one upgrade counted.
# 4. `dpkg -r`: the files and the alternative are gone (a foreign
#    start_server is still intact).
#
# Every wait polls real state with a deadline. On any failure the package
# is removed and the supervisor's log printed.
set -euo pipefail
cd "$(dirname "$0")/../.."

CARGO_DEB_VERSION=3.8.0
DEADLINE=30
LINK=/usr/bin/start_server
ALT_LINK=/etc/alternatives/start_server

die() {
    echo "smoke: FAILED: $*" >&2
    exit 1
}
step() { echo "smoke: [${SECONDS}s] $*" >&2; }
installed() { [ "$(dpkg-query -W -f='${Status}' handover 2>/dev/null)" = "install ok installed" ]; }

[ "$(id -u)" = 0 ] || die "needs root (dpkg -i)"
! installed || die "the handover package is already installed here: dpkg -r handover first"

tmp=$(mktemp -d)
rundir=/run/handover/smoke-$$
sup=""
cleanup() {
    local rc=$?
    if [ -n "$sup" ]; then
        kill -TERM "$sup" 2>/dev/null || true
        wait "$sup" || true
    fi
    if [ "$rc" != 0 ] && [ -f "$tmp/log" ]; then
        echo "--- supervisor log" >&2
        cat "$tmp/log" >&2
    fi
    if installed; then dpkg -r handover >/dev/null || true; fi
    rm -rf "$tmp" "$rundir"
}
trap cleanup EXIT

# Until "$@" succeeds; fails after DEADLINE seconds, naming WHAT.
wait_for() {
    local what=$1 end=$((SECONDS + DEADLINE))
    shift
    until "$@"; do
        ((SECONDS < end)) || die "timed out waiting for $what"
        sleep 0.1
    done
}

# ---- 1. build ---------------------------------------------------------
step "build"
# cargo deb computes Depends with dpkg-shlibdeps.
if ! command -v dpkg-shlibdeps >/dev/null; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends dpkg-dev >/dev/null
fi
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
    cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi
deb=$(cargo deb --locked | tail -n 1)
[ -f "$deb" ] || die "cargo deb did not report a package file (got '$deb')"
# The worker is not under test: the debug build `cargo test` already made.
cargo build --locked --example hello
hello=${CARGO_TARGET_DIR:-target}/debug/examples/hello
hello=$(realpath "$hello")
step "built $deb"

# ---- 2. install -------------------------------------------------------
foreign=""
if [ -e "$LINK" ] || [ -L "$LINK" ]; then
    if [ "$(readlink "$LINK")" != "$ALT_LINK" ]; then
        foreign=$(sha256sum <"$LINK")
        step "$LINK belongs to another package: it must stay untouched"
    fi
fi
dpkg -i "$deb" 2>"$tmp/dpkg.err" || {
    cat "$tmp/dpkg.err" >&2
    die "dpkg -i"
}
cat "$tmp/dpkg.err" >&2
installed || die "dpkg -i did not install handover"
step "installed"

for path in /usr/bin/handover /usr/bin/handover-drill \
    /usr/share/man/man1/handover.1.gz /usr/share/man/man1/handover-restart.1.gz \
    /usr/share/man/man1/handover-drill.1.gz \
    /usr/share/bash-completion/completions/handover \
    /usr/share/zsh/vendor-completions/_handover \
    /usr/share/fish/vendor_completions.d/handover.fish \
    /usr/share/doc/handover/examples/systemd/handover-example.service \
    /usr/share/doc/handover/README.md /usr/share/doc/handover/changelog.gz \
    /usr/share/doc/handover/copyright; do
    [ -f "$path" ] || die "$path is not installed"
done
bash -c '. /usr/share/bash-completion/completions/handover && complete -p handover' >/dev/null ||
    die "the bash completion does not load"

version=$(/usr/bin/handover --version)
echo "handover --version: $version"
[ "$version" = "handover $(dpkg-query -W -f='${Version}' handover | sed 's/-[^-]*$//')" ] ||
    die "handover --version printed '$version'"
drill_usage=$(/usr/bin/handover drill --help) || die "handover drill --help failed"
[[ "$drill_usage" == *"Usage: handover drill "* ]] || die "handover drill --help printed '$drill_usage'"

if [ -z "$foreign" ]; then
    [ "$(readlink -f "$LINK")" = /usr/bin/handover ] || die "$LINK does not lead to /usr/bin/handover"
    [ "$(readlink -f /usr/share/man/man1/start_server.1.gz)" = /usr/share/man/man1/handover.1.gz ] ||
        die "start_server.1.gz does not lead to handover.1.gz"
    compat=$LINK
else
    [ "$(sha256sum <"$LINK")" = "$foreign" ] || die "postinst changed the foreign $LINK"
    grep -q "left alone" "$tmp/dpkg.err" || die "postinst did not say it left $LINK alone"
    if update-alternatives --query start_server >/dev/null 2>&1; then
        die "a start_server alternative was registered over a foreign $LINK"
    fi
    ln -s /usr/bin/handover "$tmp/start_server"
    compat=$tmp/start_server
fi
compat_version=$("$compat" --version)
echo "start_server --version: $compat_version"
[ "$compat_version" = 0.35 ] || die "$compat --version printed '$compat_version'"

# ---- 3. one hot restart with the installed binary ----------------------
step "hot restart"
mkdir -p "$rundir"
control=$rundir/control
/usr/bin/handover --port 127.0.0.1:0 --control "$control" --ready notify --stop-timeout 10s \
    -- "$hello" >"$tmp/log" 2>&1 &
sup=$!

status() { /usr/bin/handover status --json --control "$control" 2>/dev/null; }
serving_alone() { # GENERATION: it is the only generation, and serving
    local gens
    gens=$(status | grep -o '"generation":[0-9]*,"phase":"[a-z]*"') || return 1
    [ "$gens" = "\"generation\":$1,\"phase\":\"serving\"" ]
}
wait_for "generation 1 to serve" serving_alone 1
port=$(status | grep -o '"address":"tcp 127\.0\.0\.1:[0-9]*"' | grep -o '[0-9]*"$' | tr -d '"')
[ -n "$port" ] || die "no tcp listener in the status: $(status)"

get() { # GET / on the listener; prints the body
    local reply
    exec 9<>"/dev/tcp/127.0.0.1/$port"
    printf 'GET / HTTP/1.0\r\nHost: smoke\r\n\r\n' >&9
    reply=$(cat <&9)
    exec 9<&-
    printf '%s\n' "$reply" | tail -n 1
}
body=$(get)
echo "before: $body"
[[ "$body" == *"generation 1"* ]] || die "generation 1 answered '$body'"

outcome=$(/usr/bin/handover restart --wait --timeout 30s --control "$control")
echo "restart: $outcome"
[[ "$outcome" == "generation 2 is serving"* ]] || die "handover restart printed '$outcome'"
serving_alone 2 || die "generation 2 is not serving alone: $(status)"
body=$(get)
echo "after: $body"
[[ "$body" == *"generation 2"* ]] || die "after the restart, '$body' answered"

step "package upgrade: the running supervisor is upgraded in place"
dpkg -i "$deb" 2>"$tmp/dpkg.err" || {
    cat "$tmp/dpkg.err" >&2
    die "dpkg -i (again)"
}
cat "$tmp/dpkg.err" >&2
grep -q "upgraded the supervisor at $control in place" "$tmp/dpkg.err" ||
    die "postinst did not upgrade the supervisor at $control"
status | grep -q "\"pid\":$sup," || die "the supervisor's pid changed: $(status)"
status | grep -q '"upgrades":1' || die "no upgrade counted: $(status)"
serving_alone 2 || die "generation 2 is not serving alone after the upgrade: $(status)"
body=$(get)
[[ "$body" == *"generation 2"* ]] || die "after the upgrade, '$body' answered"

/usr/bin/handover stop --timeout 30s --control "$control"
wait "$sup" || die "the supervisor exited with $?"
sup=""

# ---- 4. remove ----------------------------------------------------------
step "remove"
dpkg -r handover
! installed || die "dpkg -r left handover installed"
[ ! -e /usr/bin/handover ] || die "/usr/bin/handover is still there"
[ ! -e /usr/bin/handover-drill ] || die "/usr/bin/handover-drill is still there"
if update-alternatives --query start_server >/dev/null 2>&1; then
    die "the start_server alternative is still registered"
fi
if [ -z "$foreign" ]; then
    [ ! -e "$LINK" ] && [ ! -L "$LINK" ] || die "$LINK is still there"
    [ ! -L /usr/share/man/man1/start_server.1.gz ] || die "start_server.1.gz is still there"
else
    [ "$(sha256sum <"$LINK")" = "$foreign" ] || die "prerm changed the foreign $LINK"
fi
step "passed"
