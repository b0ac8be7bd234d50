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
    # rustup-init itself, from the address the https://sh.rustup.rs script
    # downloads it from (no shell script piped into sh): downloaded first, so
    # that a failed download stops here with a message.
    url="https://static.rust-lang.org/rustup/dist/$(uname -m)-unknown-linux-gnu/rustup-init"
    # (rustup-init chooses what it does from its own file name: keep it.)
    tmp=$(mktemp -d)
    installer="$tmp/rustup-init"
    if ! curl --proto '=https' --tlsv1.2 -sSf "$url" -o "$installer"; then
        rm -rf "$tmp"
        echo "xtask.sh: could not download rustup-init from $url" >&2
        exit 1
    fi
    chmod +x "$installer"
    status=0
    "$installer" -y --profile default --default-toolchain "$TOOLCHAIN" || status=$?
    rm -rf "$tmp"
    if [ "$status" -ne 0 ]; then
        echo "xtask.sh: rustup-init failed (status $status)" >&2
        exit 1
    fi
    . "$cargo_home/env"
    if ! command -v cargo >/dev/null 2>&1; then
        echo "xtask.sh: rustup installed, but cargo is still not on PATH" >&2
        exit 1
    fi
fi
exec cargo xtask "$@"
