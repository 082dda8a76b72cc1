#!/usr/bin/env bash
# Install the real Codex CLI (npm package @openai/codex) at a pinned version into a
# cache outside the repo, once per version, and print the absolute path of its
# native `codex` executable on stdout (nothing else goes to stdout).
#
#   CODEX_CLI_VERSION  version to install (default below)
#   CODEX_LB_CACHE     cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/codex-lb; see npm-cache.sh)
#
# The package ships its native binaries as per-platform optional dependencies
# (@openai/codex-linux-x64 is an alias of @openai/codex@<version>-linux-x64) from the
# npm registry itself; it has no install scripts and downloads nothing else.
set -euo pipefail

version="${CODEX_CLI_VERSION:-0.169.0}"
. "$(dirname "$0")/npm-cache.sh"

# The native binary for this machine, inside an install prefix.
find_native() {
    local prefix="$1" arch triple pkg
    case "$(uname -m)" in
        x86_64 | amd64) arch=x64 triple=x86_64-unknown-linux-musl ;;
        aarch64 | arm64) arch=arm64 triple=aarch64-unknown-linux-musl ;;
        *) return 1 ;;
    esac
    [ "$(uname -s)" = Linux ] || return 1
    pkg="$prefix/node_modules/@openai/codex-linux-$arch"
    # 0.169.0 layout: vendor/<triple>/bin/codex; older releases: vendor/<triple>/codex/codex.
    for candidate in \
        "$pkg/vendor/$triple/bin/codex" \
        "$pkg/vendor/$triple/codex/codex" \
        "$prefix/node_modules/@openai/codex/vendor/$triple/bin/codex" \
        "$prefix/node_modules/@openai/codex/vendor/$triple/codex/codex"; do
        if [ -x "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# Usable: the native binary is there and runs; its path is what this script prints.
usable() {
    local bin
    bin="$(find_native "$1")" && "$bin" --version >/dev/null 2>&1 && echo "$bin"
}

# --include=optional: the native binary is an optional dependency; a user-level
# omit=optional would otherwise silently drop it. About 400 MB.
npm_cached_install "codex-cli-$version" usable "@openai/codex@$version" -- \
    --include=optional "@openai/codex@$version"
