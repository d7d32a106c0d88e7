#!/bin/sh
# Runs Server::Starter 0.35's own test suite against handover under the
# name start_server: the t/ files of its distribution (not part of this
# repository) with lib/ here standing in for its Perl module.
#
#   compat/upstream/run.sh DIR     # DIR: a checkout of kazuho/p5-Server-Starter
#
# Needs Debian's libtest-tcp-perl, libtest-sharedfork-perl and
# libtest-requires-perl. The tests of the Perl module's internals
# (00-base, 08-wait3, 09-guard) are not about start_server and are left out.
set -eu
upstream=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
cargo build --release --quiet --bin handover --manifest-path "$root/Cargo.toml"
bin=$(mktemp -d "${TMPDIR:-/tmp}/handover-upstream-XXXXXX")
trap 'rm -rf "$bin"' EXIT
ln -s "$root/target/release/handover" "$bin/start_server"
export HANDOVER_START_SERVER="$bin/start_server"
cd "$upstream"
tests=$(ls t/*.t | grep -v -e 00-base -e 08-wait3 -e 09-guard)
# shellcheck disable=SC2086 # one word per test file
exec prove -I "$root/compat/upstream/lib" $tests
