#!/usr/bin/env bash
# Builds a container image with handover as its entrypoint without any
# registry or base image: a root file system holding only handover, the
# `hello` example server, a `start_server` symlink and the shared libraries
# `ldd` lists for them, imported with `podman import` (`docker import`
# takes the same tar: --tar). See README.md here.
#
#   packaging/container/build.sh                      # cargo build --release, then import
#   packaging/container/build.sh --binaries target/debug --tag localhost/handover-test
#   packaging/container/build.sh --tar rootfs.tar     # the root file system only
#
# The image has no /tmp, /run, /etc/passwd or shell: handover makes its
# private directory in /dev/shm there (README: Containers). It runs as uid
# and gid 10001 by default; any other works (`--user 65534`), as does
# `--read-only`.
#
# PODMAN is the podman command line (default `podman`), e.g.
# PODMAN="podman --runtime runc --cgroup-manager=cgroupfs".
set -euo pipefail

tag=localhost/handover-hello:latest
binaries=
tar_out=
while (($#)); do
    case "$1" in
    --tag) tag=$2; shift 2 ;;
    --binaries) binaries=$2; shift 2 ;;
    --tar) tar_out=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
# Paths given are the caller's; the build runs at the repository's root.
[ -z "$binaries" ] || binaries=$(realpath -m "$binaries")
[ -z "$tar_out" ] || tar_out=$(realpath -m "$tar_out")
cd "$(dirname "$0")/../.."

if [ -z "$binaries" ]; then
    cargo build --release --locked --bin handover --example hello
    binaries=target/release
fi
for bin in "$binaries/handover" "$binaries/examples/hello"; do
    [ -x "$bin" ] || { echo "build.sh: $bin is missing: build it first (cargo build --example hello)" >&2; exit 1; }
done
command -v ldd >/dev/null || { echo "build.sh: ldd is missing: install libc-bin" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -D -m 0755 "$binaries/handover" "$root/usr/local/bin/handover"
install -D -m 0755 "$binaries/examples/hello" "$root/usr/local/bin/hello"
ln -s handover "$root/usr/local/bin/start_server"
install -D -m 0644 LICENSE "$root/usr/share/doc/handover/LICENSE"
# Every library ldd resolves (`name => /path (addr)`) and the loader
# (`/path (addr)`), at the same path; the vDSO has none.
for lib in $(ldd "$root/usr/local/bin/handover" "$root/usr/local/bin/hello" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && NF > 1 { print $1 }' | sort -u); do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done
# What the image needs of the rest (mount points the runtime fills).
mkdir -p "$root/dev" "$root/proc" "$root/sys"
find "$root" -type d -exec chmod 0755 {} +

tarball=${tar_out:-$root.tar}
tar -C "$root" --sort=name --owner=0 --group=0 --numeric-owner -cf "$tarball" .
if [ -n "$tar_out" ]; then
    echo "build.sh: wrote $tar_out" >&2
    exit 0
fi
trap 'rm -rf "$root" "$tarball"' EXIT
# shellcheck disable=SC2086 # PODMAN is a command line
previous=$(${PODMAN:-podman} image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
# shellcheck disable=SC2086
${PODMAN:-podman} import --quiet \
    --change 'ENTRYPOINT ["/usr/local/bin/handover"]' \
    --change 'CMD ["--port", "0.0.0.0:8080", "--ready", "notify", "--control", "/dev/shm/handover.control", "--", "/usr/local/bin/hello"]' \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change 'USER 10001:10001' \
    --change 'EXPOSE 8080' \
    --change 'STOPSIGNAL SIGTERM' \
    "$tarball" "$tag" >/dev/null
# The image this tag named before, if no container uses it.
if [ -n "$previous" ] && [ "$previous" != "$(${PODMAN:-podman} image inspect --format '{{.Id}}' "$tag")" ]; then
    ${PODMAN:-podman} rmi "$previous" >/dev/null 2>&1 || true
fi
echo "build.sh: built $tag" >&2
