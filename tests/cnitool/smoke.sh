#!/usr/bin/env bash
# Smoke test for cnitool built by build.sh: add, check, status, gc and del of
# a conflist, run the way the project runs every plugin — inside a node
# network namespace created here, with a pod namespace created here, both
# removed on exit (also on failure or ^C). Needs root.
#
#   tests/cnitool/smoke.sh                      # reference bridge + host-local
#   tests/cnitool/smoke.sh --weft target/release/weft
#
# cnitool keeps libcni's cache in /var/lib/cni with no way to move it, so it
# runs in a private mount namespace where /var/lib is a scratch directory:
# nothing under the real /var/lib is touched.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
log() { printf 'cnitool/smoke.sh: %s\n' "$*" >&2; }

weft=""
if [[ "${1:-}" == "--weft" ]]; then
    weft="$(readlink -f "${2:?--weft needs a path}")"
    [[ -x "$weft" ]] || { log "not executable: $weft"; exit 1; }
fi
[[ $(id -u) -eq 0 ]] || { log "needs root (creates network namespaces)"; exit 1; }

cnitool="$("$here/build.sh" | tail -n1)"
node="weftctn-$$"
pod="weftctp-$$"
work="$(mktemp -d /var/tmp/weft-cnitool-XXXXXX)"
cleanup() {
    ip netns del "$pod" 2>/dev/null || true
    ip netns del "$node" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

ip netns add "$node"
ip netns add "$pod"
ip -n "$node" link set lo up
mkdir -p "$work/net.d" "$work/varlib" "$work/bin" "$work/data"

if [[ -n "$weft" ]]; then
    ln -s "$weft" "$work/bin/weft"
    cni_path="$work/bin:/usr/lib/cni"
    net=weftsmoke
    cat >"$work/net.d/10-weft.conflist" <<JSON
{"cniVersion":"1.1.0","name":"$net","plugins":[
  {"type":"weft","podCIDRs":["10.244.0.0/16"],"dataDir":"$work/data"}]}
JSON
else
    cni_path="/usr/lib/cni"
    net=refsmoke
    # Debian's plugins (1.1.1) speak spec <= 1.0.0; no ipMasq: no iptables.
    cat >"$work/net.d/10-ref.conflist" <<JSON
{"cniVersion":"1.0.0","name":"$net","plugins":[
  {"type":"bridge","bridge":"weftbr1","isGateway":true,"ipMasq":false,
   "ipam":{"type":"host-local","ranges":[[{"subnet":"10.246.0.0/24"}]],"dataDir":"$work/data"}}]}
JSON
fi

# In the node netns (ip netns exec gives a new, slave mount namespace;
# unshare makes a private one on top) with /var/lib replaced by scratch.
cnitool() {
    ip netns exec "$node" unshare --mount --propagation private \
        sh -c 'mount --bind "$1" /var/lib && shift && exec "$@"' sh "$work/varlib" \
        env NETCONFPATH="$work/net.d" CNI_PATH="$cni_path" \
        CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=smoke;K8S_POD_NAME=pod-0" \
        "$cnitool" "$@"
}

log "cnitool: $cnitool; network: $net; node netns: $node"
log "add";    cnitool add "$net" "/run/netns/$pod"
ip -n "$pod" -o addr show dev eth0 | grep -q inet || { log "no address on eth0"; exit 1; }
log "check";  cnitool check "$net" "/run/netns/$pod"
# libcni skips STATUS for a network below cniVersion 1.1.0 (the reference).
log "status"; cnitool status "$net" "/run/netns/$pod"
log "del";    cnitool del "$net" "/run/netns/$pod"
ip -n "$pod" link show eth0 >/dev/null 2>&1 && { log "eth0 still there after del"; exit 1; }
log "add again, then gc with no valid attachments (removes it)"
cnitool add "$net" "/run/netns/$pod" >/dev/null
cnitool gc "$net" "/run/netns/$pod"
ip -n "$pod" link show eth0 >/dev/null 2>&1 && { log "eth0 still there after gc"; exit 1; }
log "ok"
