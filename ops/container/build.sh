#!/bin/sh
# The builder stage of ops/container/Containerfile, run from the source tree's top: installs the
# build's tools from Debian's packages (Rust from the release's backports: the stable release's
# own rustc is too old for edition 2024's let chains), builds the browser client and the release
# binary, and installs it as /usr/local/bin/kizuna. ops/container/test-build.sh runs the same
# script in a debootstrap chroot, where no image registry is reachable.
set -eu

. /etc/os-release
export DEBIAN_FRONTEND=noninteractive
echo "deb http://deb.debian.org/debian ${VERSION_CODENAME}-backports main" \
    >/etc/apt/sources.list.d/backports.list
apt-get update -qq
apt-get install -y -qq --no-install-recommends -t "${VERSION_CODENAME}-backports" rustc cargo
# libclang: bindgen for RocksDB's C API; g++: RocksDB itself; node and npm: the browser client.
apt-get install -y -qq --no-install-recommends \
    ca-certificates clang libclang-dev g++ make pkg-config nodejs npm
rustc --version

(cd node/web && npm ci --no-audit --no-fund && npm run build)
cargo build --release --locked --bin kizuna
install -m 0755 "${CARGO_TARGET_DIR:-target}/release/kizuna" /usr/local/bin/kizuna
/usr/local/bin/kizuna --version
