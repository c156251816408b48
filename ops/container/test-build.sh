#!/usr/bin/env bash
# Tests the container build as far as a machine with no image registry and no container engine
# allows (docs/operations.md, "Container image"): the base is made from Debian's packages with
# debootstrap, the builder stage's script (build.sh) runs in it as a chroot, and the binary it
# builds runs in a second, minimal root file system as the runtime stage would: `--version`,
# then a demo hub that serves and answers `kizuna status`. Needs root; takes about half an hour
# on two cores (a release build from nothing, RocksDB included).
#
#   sudo ops/container/test-build.sh           # WORK=/var/tmp/kizuna-container by default
set -euo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-/var/tmp/kizuna-container}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
BUILD=$WORK/build
RUN=$WORK/run

command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap

mounted=()
cleanup() {
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
    pkill -f "[k]izuna demo --data-dir /tmp/container-demo" 2>/dev/null || true
}
trap cleanup EXIT

# A Debian 13 root file system from the package mirror: the image's BASE.
rootfs() {
    [ -x "$1/bin/sh" ] || debootstrap --variant=minbase trixie "$1" "$MIRROR"
    cp /etc/resolv.conf "$1/etc/resolv.conf"
    # A machine whose way to the registries inspects TLS has its own CAs here; the chroot, like
    # a build on such a network, must trust them too (ca-certificates, installed by build.sh,
    # takes them up).
    mkdir -p "$1/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/" 2>/dev/null || true
    if [ -x "$1/usr/sbin/update-ca-certificates" ]; then chroot "$1" update-ca-certificates >/dev/null; fi
    for fs in proc sys dev; do
        mkdir -p "$1/$fs"
        mount --rbind "/$fs" "$1/$fs"
        mounted+=("$1/$fs")
    done
}

echo "== builder stage (ops/container/build.sh) in $BUILD"
rootfs "$BUILD"
rm -rf "$BUILD/src" && mkdir -p "$BUILD/src"
# The build context: the files git tracks, as COPY . . would take them from a clean checkout.
git -C "$SRC" ls-files -z | tar -C "$SRC" --null -T - -c | tar -x -C "$BUILD/src"
chroot "$BUILD" /usr/bin/env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    /bin/sh -c 'cd /src && CARGO_TARGET_DIR=/build/target sh ops/container/build.sh'

echo "== runtime stage in $RUN"
rootfs "$RUN"
install -m 0755 "$BUILD/usr/local/bin/kizuna" "$RUN/usr/local/bin/kizuna"
chroot "$RUN" /bin/sh -c 'id kizuna >/dev/null 2>&1 || useradd --system --create-home --home-dir /var/lib/kizuna kizuna'
chroot --userspec=kizuna "$RUN" /usr/local/bin/kizuna --version
chroot --userspec=kizuna "$RUN" /bin/sh -c '
    set -e
    cd /var/lib/kizuna && rm -rf /tmp/container-demo
    kizuna demo --data-dir /tmp/container-demo >/tmp/container-demo.log 2>&1 &
    demo=$!
    for _ in $(seq 120); do grep -q "Demo logins" /tmp/container-demo.log && break; sleep 1; done
    export HOME=/var/lib/kizuna KIZUNA_PASSWORD=kizuna-demo-2026
    kizuna --ca /tmp/container-demo/certs/ca.pem login jimukyoku
    kizuna --ca /tmp/container-demo/certs/ca.pem status
    kill "$demo"'
echo "== the image builds and runs from Debian's packages alone"
