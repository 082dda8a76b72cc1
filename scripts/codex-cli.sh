#!/usr/bin/env bash
# Install the real Codex CLI (npm package @openai/codex) at a pinned version into a
# cache outside the repo, once per version, and print the absolute path of its
# native `codex` executable on stdout (nothing else goes to stdout).
#
#   CODEX_CLI_VERSION  version to install (default below)
#   CODEX_LB_CACHE     cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/codex-lb)
#
# The package ships its native binaries as per-platform optional dependencies
# (@openai/codex-linux-x64 is an alias of @openai/codex@<version>-linux-x64) from the
# npm registry itself; it has no install scripts and downloads nothing else.
set -euo pipefail

version="${CODEX_CLI_VERSION:-0.169.0}"
cache_root="${CODEX_LB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/codex-lb}"
dest="$cache_root/codex-cli-$version"
marker="$dest/.codex-lb-complete"

log() { echo "codex-cli.sh: $*" >&2; }
die() { echo "codex-cli.sh: $*" >&2; exit 1; }

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

if [ -f "$marker" ] && bin="$(find_native "$dest")"; then
    echo "$bin"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "npm not found; installing Debian's nodejs and npm"
        apt-get update -qq >&2 || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2 \
            || die "apt-get install nodejs npm failed"
    fi
    command -v npm >/dev/null 2>&1 || die "npm is required to install @openai/codex@$version (not found)"
fi

mkdir -p "$cache_root" || die "cannot create cache dir $cache_root"
# One install at a time per version (parallel test runs share the cache).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache_root/.codex-cli-$version.lock"
    flock 9
    if [ -f "$marker" ] && bin="$(find_native "$dest")"; then
        echo "$bin"
        exit 0
    fi
fi
# Temp dirs of installs killed outright (no EXIT trap) are ~400 MB each; sweep old ones.
find "$cache_root" -maxdepth 1 -name '.codex-cli-*.tmp.*' -mmin +120 -exec rm -rf {} + 2>/dev/null || true
tmp="$(mktemp -d "$cache_root/.codex-cli-$version.tmp.XXXXXX")" || die "cannot create a temp dir in $cache_root"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"  # mktemp -d makes it 0700

log "installing @openai/codex@$version into $dest (about 400 MB, once per version)"
# --include=optional: the native binary is an optional dependency; a user-level
# omit=optional would otherwise silently drop it. No install scripts are needed.
if ! npm install --prefix "$tmp" --no-audit --no-fund --no-save --no-package-lock \
        --include=optional --ignore-scripts --loglevel=error \
        "@openai/codex@$version" >&2; then
    die "npm install @openai/codex@$version failed"
fi

bin="$(find_native "$tmp")" || die "no native codex binary for $(uname -s)/$(uname -m) in @openai/codex@$version"
"$bin" --version >/dev/null 2>&1 || die "installed codex binary does not run: $bin"
touch "$tmp/.codex-lb-complete"

# Move the finished install into place; a half-done one never carries the marker.
[ -f "$marker" ] || rm -rf "$dest"
if ! mv -T "$tmp" "$dest" 2>/dev/null; then
    # Another run may have won the race; use its install if it is complete.
    [ -f "$marker" ] || die "cannot move the install into $dest"
fi
trap - EXIT
rm -rf "$tmp"

bin="$(find_native "$dest")" || die "no native codex binary in $dest"
echo "$bin"
