#!/bin/sh
# ./xtask.sh ARGS: `cargo xtask ARGS` on any Debian 12 machine, including one
# with no Rust at all: when cargo is missing, it first installs rustup with the
# toolchain flowtop is verified with (rustc 1.95.0, whose LLVM 22 matches
# Debian 12's llvm-22-dev for bpf-linker), into $CARGO_HOME and $RUSTUP_HOME
# (default ~/.cargo and ~/.rustup). `cargo xtask` then installs everything else
# it needs (`cargo xtask setup`). The quick start in README.md and .ci/run use it.
set -eu
TOOLCHAIN=1.95.0
cd "$(dirname "$0")"

cargo_home=${CARGO_HOME:-${HOME:?HOME is not set}/.cargo}
if [ -f "$cargo_home/env" ]; then
    . "$cargo_home/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "xtask.sh: cargo not found; installing rustup with Rust $TOOLCHAIN into $cargo_home" >&2
    if ! command -v curl >/dev/null 2>&1; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "xtask.sh: curl is needed to install Rust: apt-get install curl ca-certificates (as root)" >&2
            exit 1
        fi
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends curl ca-certificates
    fi
    # Downloaded first, so that a failed download stops here with a message
    # (in `curl | sh` the pipeline's status would be sh's).
    installer=$(mktemp)
    if ! curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs -o "$installer"; then
        rm -f "$installer"
        echo "xtask.sh: could not download rustup's installer from https://sh.rustup.rs" >&2
        exit 1
    fi
    status=0
    sh "$installer" -y --profile default --default-toolchain "$TOOLCHAIN" || status=$?
    rm -f "$installer"
    if [ "$status" -ne 0 ]; then
        echo "xtask.sh: rustup's installer failed (status $status)" >&2
        exit 1
    fi
    . "$cargo_home/env"
    if ! command -v cargo >/dev/null 2>&1; then
        echo "xtask.sh: rustup installed, but cargo is still not on PATH" >&2
        exit 1
    fi
fi
exec cargo xtask "$@"
