#!/usr/bin/env bash
# Install Vercel's AI SDK (npm packages ai and @ai-sdk/openai, with the zod they validate
# chunks with) at pinned versions into a cache outside the repo, once per version set, and
# print the absolute path of that install prefix on stdout (nothing else goes to stdout);
# its node_modules holds the packages tests/clients/ai_sdk.mjs imports.
#
#   AI_SDK_VERSION         ai's version (default below)
#   AI_SDK_OPENAI_VERSION  @ai-sdk/openai's version (default below)
#   AI_SDK_ZOD_VERSION     zod's version (default below; the peer dependency of both)
#   CODEX_LB_CACHE         cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/codex-lb; see npm-cache.sh)
#
# ai 6.x and @ai-sdk/openai 3.x: the newest majors that still run on node 20 (ai 7 and
# @ai-sdk/openai 4 need node >= 22). Everything comes from the npm registry; no install
# scripts run.
set -euo pipefail

ai="${AI_SDK_VERSION:-6.0.333}"
provider="${AI_SDK_OPENAI_VERSION:-3.0.141}"
zod="${AI_SDK_ZOD_VERSION:-4.6.7}"
version="$ai-openai-$provider-zod-$zod"
. "$(dirname "$0")/npm-cache.sh"

# Usable: the three packages are there; the install prefix is what this script prints.
usable() {
    [ -f "$1/node_modules/ai/package.json" ] && [ -f "$1/node_modules/@ai-sdk/openai/package.json" ] \
        && [ -f "$1/node_modules/zod/package.json" ] && echo "$1"
}

npm_cached_install "ai-sdk-$version" usable "ai@$ai, @ai-sdk/openai@$provider, zod@$zod (about 35 MB)" -- \
    "ai@$ai" "@ai-sdk/openai@$provider" "zod@$zod"
