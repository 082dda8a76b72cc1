#!/usr/bin/env bash
# Install Vercel's AI SDK (npm packages ai and @ai-sdk/openai, with the zod they validate
# chunks with) at pinned versions into a cache outside the repo, once per version set, and
# print the absolute path of that install prefix on stdout (nothing else goes to stdout);
# its node_modules holds the packages tests/clients/ai_sdk.mjs imports.
#
#   AI_SDK_VERSION         ai's version (default below)
#   AI_SDK_OPENAI_VERSION  @ai-sdk/openai's version (default below)
#   AI_SDK_ZOD_VERSION     zod's version (default below; the peer dependency of both)
#   CODEX_LB_CACHE         cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/codex-lb)
#
# ai 6.x and @ai-sdk/openai 3.x: the newest majors that still run on node 20 (ai 7 and
# @ai-sdk/openai 4 need node >= 22). Everything comes from the npm registry; no install
# scripts run.
set -euo pipefail

ai="${AI_SDK_VERSION:-6.0.333}"
provider="${AI_SDK_OPENAI_VERSION:-3.0.141}"
zod="${AI_SDK_ZOD_VERSION:-4.6.7}"
version="$ai-openai-$provider-zod-$zod"
cache_root="${CODEX_LB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/codex-lb}"
dest="$cache_root/ai-sdk-$version"
marker="$dest/.codex-lb-complete"

log() { echo "ai-sdk.sh: $*" >&2; }
die() { echo "ai-sdk.sh: $*" >&2; exit 1; }

installed() {
    [ -f "$1/node_modules/ai/package.json" ] && [ -f "$1/node_modules/@ai-sdk/openai/package.json" ] \
        && [ -f "$1/node_modules/zod/package.json" ]
}

if [ -f "$marker" ] && installed "$dest"; then
    echo "$dest"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "npm not found; installing Debian's nodejs and npm"
        apt-get update -qq >&2 || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2 \
            || die "apt-get install nodejs npm failed"
    fi
    command -v npm >/dev/null 2>&1 || die "npm is required to install ai@$ai (not found)"
fi

mkdir -p "$cache_root" || die "cannot create cache dir $cache_root"
# One install at a time per version (parallel test runs share the cache).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache_root/.ai-sdk-$version.lock"
    flock 9
    if [ -f "$marker" ] && installed "$dest"; then
        echo "$dest"
        exit 0
    fi
fi
find "$cache_root" -maxdepth 1 -name '.ai-sdk-*.tmp.*' -mmin +120 -exec rm -rf {} + 2>/dev/null || true
tmp="$(mktemp -d "$cache_root/.ai-sdk-$version.tmp.XXXXXX")" || die "cannot create a temp dir in $cache_root"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"  # mktemp -d makes it 0700

log "installing ai@$ai @ai-sdk/openai@$provider zod@$zod into $dest (about 35 MB, once per version)"
if ! npm install --prefix "$tmp" --no-audit --no-fund --no-save --no-package-lock --ignore-scripts \
        --loglevel=error "ai@$ai" "@ai-sdk/openai@$provider" "zod@$zod" >&2; then
    die "npm install ai@$ai @ai-sdk/openai@$provider zod@$zod failed"
fi
installed "$tmp" || die "the install in $tmp lacks ai, @ai-sdk/openai or zod"
touch "$tmp/.codex-lb-complete"

# Move the finished install into place; a half-done one never carries the marker.
[ -f "$marker" ] || rm -rf "$dest"
if ! mv -T "$tmp" "$dest" 2>/dev/null; then
    [ -f "$marker" ] || die "cannot move the install into $dest"
fi
trap - EXIT
rm -rf "$tmp"

installed "$dest" || die "no ai install in $dest"
echo "$dest"
