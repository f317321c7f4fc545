#!/usr/bin/env bash
# Rebuilds alarm.wasm from alarm.c (Debian's clang-14, lld-14, wasi-libc, libclang-rt-14-dev-wasm32).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
clang-14 --target=wasm32-wasi --sysroot=/usr -O2 -Wall -Wextra -Wl,--strip-debug -o alarm.wasm alarm.c
