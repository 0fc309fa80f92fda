#!/usr/bin/env bash
# Builds a real Kubernetes control plane for the lab's `--datastore kube`:
# kube-apiserver, kube-controller-manager and kubectl from the
# k8s.io/kubernetes Go module at a pinned release, and etcd from its Go
# module, caching the binaries outside the repository.
#
#   tests/kube/build.sh          # prints the cache's bin directory as the last line
#   KUBE_VERSION=v1.36.3 tests/kube/build.sh
#
# Cache: ${WEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft}/kube-<version>/
# {kube-apiserver,kube-controller-manager,kubectl,etcd}. A complete cached set
# is reused without invoking Go. Logs go to stderr; stdout carries only the
# directory, so callers can do  KUBE_BIN=$(tests/kube/build.sh)
#
# k8s.io/kubernetes cannot be `go install`ed at a version: its go.mod points
# its staging modules (k8s.io/api, k8s.io/apiserver, ...) at local
# directories. A throwaway module requires it and replaces every staging
# module with its published v0.x release, which is what the upstream repo
# contains at that tag. etcd's server module does the same with its
# siblings and gets the same treatment.
#
# Needs: Go on PATH (a too-old one fetches the toolchain the modules name via
# GOTOOLCHAIN=auto), the Go module proxy on the first run, ~3 GB in the Go
# caches.
#
# Why etcd is built too: Debian bookworm's etcd-server is 3.4.23. Tried as the
# lab's etcd, kube-apiserver v1.37.2 starts on it but logs "RequestWatchProgress
# feature is not supported" and falls back from consistent reads out of its
# watch cache to quorum reads from etcd: a different read path from any real
# v1.37 cluster (which runs etcd 3.5/3.6), under exactly the list+watch traffic
# weftd generates. Building etcd v3.6 from its module takes under a minute.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"

log() { printf 'kube/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

cache="${WEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft}"
out="$cache/kube-$KUBE_VERSION-etcd-$ETCD_VERSION"
bins=(kube-apiserver kube-controller-manager kubectl etcd)
mkdir -p "$out"

complete() {
    local b
    for b in "${bins[@]}"; do [[ -x "$out/$b" ]] || return 1; done
}
if complete; then
    log "cached: $out"
    printf '%s\n' "$out"
    exit 0
fi

command -v go >/dev/null 2>&1 || die "go not found on PATH (apt-get install golang-go)"
command -v jq >/dev/null 2>&1 || die "jq not found on PATH (apt-get install jq)"
log "using $(go version)"

# Serialise concurrent builds into the same cache.
exec 9>"$out/.lock"
flock 9
if complete; then
    log "built concurrently: $out"
    printf '%s\n' "$out"
    exit 0
fi

tmp="$(mktemp -d "$cache/.kube-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
start=$(date +%s)

# wrapper DIR MODULE VERSION: a module in DIR that requires MODULE@VERSION
# and replaces each of its local-path replacements with PREFIX@PUBVERSION.
wrapper() {
    local dir=$1 module=$2 version=$3
    mkdir -p "$dir"
    local gomod
    gomod="$(cd "$dir" && go mod download -json "$module@$version" | jq -r .GoMod)"
    [[ -f "$gomod" ]] || die "no go.mod for $module@$version"
    {
        echo "module weft.dev/build/$(basename "$dir")"
        echo
        grep -m1 '^go ' "$gomod"
        echo
        echo "require $module $version"
        echo
        echo "replace ("
        # "k8s.io/api => ./staging/src/k8s.io/api" and
        # "go.etcd.io/etcd/api/v3 => ../api" both become pinned releases.
        sed -n 's#^[[:space:]]*\([^[:space:]]*\) => \.\.*/.*$#\1#p' "$gomod" | while read -r dep; do
            [[ "$dep" == "$module" ]] && continue
            echo "    $dep => $dep $(pubversion "$dep")"
        done
        echo ")"
    } >"$dir/go.mod"
}

# The published version of a replaced sibling module.
pubversion() {
    case "$1" in
        k8s.io/*) echo "v0.${KUBE_VERSION#v1.}" ;;
        go.etcd.io/etcd/*) echo "$ETCD_VERSION" ;;
        *) die "do not know the release of $1" ;;
    esac
}

ldflags_kube() {
    local v=${KUBE_VERSION#v} pkg=k8s.io/component-base/version
    local minor=${v#*.}
    minor=${minor%%.*}
    echo "-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor" \
        "-X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z" \
        "-X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
}

log "k8s.io/kubernetes $KUBE_VERSION: resolving"
wrapper "$tmp/mod-kube" k8s.io/kubernetes "$KUBE_VERSION"
(cd "$tmp/mod-kube" && go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" >&2)
for b in kube-apiserver kube-controller-manager kubectl; do
    [[ -x "$out/$b" ]] && continue
    log "building $b"
    t=$(date +%s)
    (cd "$tmp/mod-kube" && go build -trimpath -ldflags "$(ldflags_kube)" -o "$tmp/$b" "k8s.io/kubernetes/cmd/$b") >&2
    mv -f "$tmp/$b" "$out/$b"
    log "built $b in $(($(date +%s) - t))s"
done

if [[ ! -x "$out/etcd" ]]; then
    log "go.etcd.io/etcd/server/v3 $ETCD_VERSION: resolving"
    wrapper "$tmp/mod-etcd" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
    (cd "$tmp/mod-etcd" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2)
    t=$(date +%s)
    (cd "$tmp/mod-etcd" && go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3) >&2
    mv -f "$tmp/etcd" "$out/etcd"
    log "built etcd in $(($(date +%s) - t))s"
fi

complete || die "incomplete build in $out"
log "control plane built in $(($(date +%s) - start))s: $out"
printf '%s\n' "$out"
