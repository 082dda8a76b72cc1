# Sourced by codex-cli.sh and ai-sdk.sh: npm packages at pinned versions, installed once per version into a
# cache outside the clone (CODEX_LB_CACHE, default ${XDG_CACHE_HOME:-$HOME/.cache}/codex-lb), so a second
# run reuses them and a new machine still installs them. Everything comes from the npm registry.
#
#   npm_cached_install ENTRY CHECK NOTE -- NPM_ARGS...
#
# ENTRY: the install's folder in the cache (its name carries the versions). CHECK: a function given an
# install prefix; it succeeds, printing what the caller prints, when the install is usable. NOTE: what the
# install is, for the log. NPM_ARGS: the flags and package@version specs for `npm install`. Prints CHECK's
# output for the finished install on stdout (nothing else goes there) and exits.

log() { echo "$(basename "$0"): $*" >&2; }
die() { echo "$(basename "$0"): $*" >&2; exit 1; }

npm_cached_install() {
    local entry="$1" check="$2" note="$3" cache_root dest marker tmp found
    shift 4
    cache_root="${CODEX_LB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/codex-lb}"
    dest="$cache_root/$entry"
    marker="$dest/.codex-lb-complete"
    if [ -f "$marker" ] && found="$("$check" "$dest")"; then
        echo "$found"
        exit 0
    fi

    if ! command -v npm >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            log "npm not found; installing Debian's nodejs and npm"
            apt-get update -qq >&2 || die "apt-get update failed"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2 \
                || die "apt-get install nodejs npm failed"
        fi
        command -v npm >/dev/null 2>&1 || die "npm is required to install $entry (not found)"
    fi

    mkdir -p "$cache_root" || die "cannot create cache dir $cache_root"
    # One install at a time per entry (parallel test runs share the cache).
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$cache_root/.$entry.lock"
        flock 9
        if [ -f "$marker" ] && found="$("$check" "$dest")"; then
            echo "$found"
            exit 0
        fi
    fi
    # Temp dirs of installs killed outright (no EXIT trap) can be large; sweep old ones.
    find "$cache_root" -maxdepth 1 -name ".$entry.tmp.*" -mmin +120 -exec rm -rf {} + 2>/dev/null || true
    tmp="$(mktemp -d "$cache_root/.$entry.tmp.XXXXXX")" || die "cannot create a temp dir in $cache_root"
    trap 'rm -rf "$tmp"' EXIT
    chmod 755 "$tmp"  # mktemp -d makes it 0700

    log "installing $note into $dest (once per version)"
    npm install --prefix "$tmp" --no-audit --no-fund --no-save --no-package-lock --ignore-scripts \
        --loglevel=error "$@" >&2 || die "npm install $* failed"
    "$check" "$tmp" >/dev/null || die "the install of $note in $tmp is not usable"
    touch "$tmp/.codex-lb-complete"

    # Move the finished install into place; a half-done one never carries the marker.
    [ -f "$marker" ] || rm -rf "$dest"
    if ! mv -T "$tmp" "$dest" 2>/dev/null; then
        # Another run may have won the race; use its install if it is complete.
        [ -f "$marker" ] || die "cannot move the install into $dest"
    fi
    trap - EXIT
    rm -rf "$tmp"

    found="$("$check" "$dest")" || die "no usable $note in $dest"
    echo "$found"
    exit 0
}
