#!/usr/bin/env bash
# Builds cnitool (CNI 1.1: add/check/del/gc/status) from its Go module at a
# pinned release and caches the binary outside the repository.
#
#   tests/cnitool/build.sh            # prints the binary's path as the last line
#   CNITOOL_VERSION=v1.2.3 tests/cnitool/build.sh
#
# Cache: ${WEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft}/bin/cnitool-<version>.
# Idempotent: a cached binary is reused without invoking Go. Logs go to
# stderr; stdout carries only the path, so callers can do
#   CNITOOL=$(tests/cnitool/build.sh)
#
# Needs: Go >= 1.21 on PATH (or an older Go that can fetch a newer toolchain
# via GOTOOLCHAIN=auto), network access to the Go module proxy on first run.
# Debian has no cnitool package (golang-github-appc-cni-dev omits it).
set -euo pipefail

# Newest v1.x release that `go install` accepts through the module proxy and
# that has `status` and `gc` (CNI 1.1 needs cni >= v1.2.0). The fallbacks are
# tried in order only when the pinned one fails to build (e.g. an old Go).
PINNED="v1.3.1"
FALLBACKS=("v1.3.0" "v1.2.3")
MODULE="github.com/containernetworking/cni/cnitool"

log() { printf 'cnitool/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

cache="${WEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft}"
bindir="$cache/bin"
mkdir -p "$bindir"

if [[ -n "${CNITOOL_VERSION:-}" ]]; then
    versions=("$CNITOOL_VERSION")
else
    versions=("$PINNED" "${FALLBACKS[@]}")
fi

# Reuse a cached candidate, pinned first. A fallback is only ever built when
# the pinned version failed on this machine, so reusing it keeps reruns
# idempotent without retrying a build that cannot succeed here.
for v in "${versions[@]}"; do
    if [[ -x "$bindir/cnitool-$v" ]]; then
        log "cached: $bindir/cnitool-$v"
        printf '%s\n' "$bindir/cnitool-$v"
        exit 0
    fi
done

command -v go >/dev/null 2>&1 || die "go not found on PATH (apt-get install golang-go, or https://go.dev/dl/)"
log "using $(go version)"

# Serialise concurrent builds into the same cache.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$bindir/.cnitool.lock"
    flock 9
    for v in "${versions[@]}"; do
        if [[ -x "$bindir/cnitool-$v" ]]; then
            log "built concurrently: $bindir/cnitool-$v"
            printf '%s\n' "$bindir/cnitool-$v"
            exit 0
        fi
    done
fi

tmp="$(mktemp -d "$bindir/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

for v in "${versions[@]}"; do
    log "building $MODULE@$v"
    start=$(date +%s)
    # GOFLAGS=-mod=mod: a user-wide -mod=vendor would break `go install pkg@v`.
    # CGO_ENABLED=0: cnitool is pure Go; no C toolchain needed, static binary.
    # Running from $tmp keeps any surrounding go.mod out of the picture.
    if (cd "$tmp" && GOBIN="$tmp" GOFLAGS=-mod=mod CGO_ENABLED=0 \
        go install -trimpath "$MODULE@$v") >&2; then
        bin="$tmp/cnitool"
        [[ -x "$bin" ]] || die "go install $MODULE@$v produced no binary"
        # CNI 1.1 support: cnitool must offer status and gc.
        help="$("$bin" --help 2>&1 || true)"
        for cmd in add check del gc status; do
            grep -qE "^[[:space:]]+$cmd[[:space:]]" <<<"$help" ||
                die "cnitool $v lacks the '$cmd' command"
        done
        mv -f "$bin" "$bindir/cnitool-$v"
        log "built cnitool $v in $(($(date +%s) - start))s: $bindir/cnitool-$v"
        printf '%s\n' "$bindir/cnitool-$v"
        exit 0
    fi
    log "go install $MODULE@$v failed; trying the next version"
done

die "could not build cnitool (tried: ${versions[*]})"
