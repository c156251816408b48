#!/usr/bin/env bash
# Installs what building Kizuna needs on Debian and is not there yet: libclang (bindgen for
# RocksDB's C API), a C++ compiler, and npm (for buf, the protobuf linter). Safe to run again:
# it does nothing when all is present.
set -euo pipefail

missing=()
# bindgen loads libclang at build time.
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ls /usr/lib/*/libclang*.so* >/dev/null 2>&1; then
  missing+=(libclang-dev)
fi
command -v clang >/dev/null 2>&1 || missing+=(clang)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq || echo "setup: apt-get update failed; trying to install from the current lists"
  $sudo apt-get install -y -qq "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install a Rust toolchain (https://rustup.rs)" >&2
  exit 1
fi
