#!/bin/sh
# The container's entrypoint: `peer start` configured from environment
# variables (as well as flags), or any other `peer` command.
#
#   entrypoint.sh [start] [FLAG…]   start a peer: the variables below, then FLAGs (flags win)
#   entrypoint.sh COMMAND [ARG…]    any other peer command (status, stop, export, eval…) on $PEER_DATA_DIR
#
# Variables (unset or empty: the peer's default):
#   PEER_DATA_DIR        data dir (default /data; also PEER_HOME for the other commands)
#   PEER_LISTEN          addresses to listen on, comma- or space-separated (default /ip4/0.0.0.0/tcp/4001)
#   PEER_JOIN            join tokens or /p2p/ multiaddrs to join through, comma- or space-separated
#   PEER_JOIN_FILE       wait for this file (written by another peer's PEER_ANNOUNCE_FILE) and join with what it holds
#   PEER_JOIN_WAIT       seconds to wait for PEER_JOIN_FILE (default 300)
#   PEER_ANNOUNCE_FILE   once this peer is up, write how to join it (its join token) here, mode 0600
#   PEER_OPEN            1/true: an open swarm (no swarm key)
#   PEER_ALLOW           allow-list file of peer ids
#   PEER_MDNS            0/false: no mDNS discovery
#   PEER_BACKEND PEER_LOG_LEVEL PEER_MIN_PEERS PEER_HEARTBEAT_MS PEER_MEMBER_TIMEOUT PEER_JOIN_TIMEOUT
#   PEER_ROUND_TIMEOUT PEER_STEP_TIMEOUT PEER_CHECKPOINT_EVERY PEER_PROGRESS_EVERY
#   PEER_EXIT_WHEN_DONE  1/true: exit 0 when the job is done
#   the job (for the peer that creates the swarm): PEER_JOB (a file) PEER_DATASET PEER_MODEL PEER_HIDDEN
#   PEER_BATCH_SIZE PEER_LR PEER_OPTIMIZER PEER_EPOCHS PEER_SEED PEER_SHARDS PEER_SYNC_EVERY PEER_OUTER_LR
#   PEER_OUTER_MOMENTUM
#   PEER_NODE            the Node.js 24 binary (default: node on PATH)
#
# The peer is exec'd: it is the container's main process and gets its signals
# (SIGTERM: finish the step, checkpoint, release the shards, exit 0).
set -eu
set -f # no globbing of the split lists below

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
PEER_BIN=${PEER_BIN:-$here/../bin/peer.js}
PEER_NODE=${PEER_NODE:-node}
PEER_DATA_DIR=${PEER_DATA_DIR:-/data}
PEER_HOME=$PEER_DATA_DIR
export PEER_HOME

die () {
  printf 'entrypoint: %s\n' "$*" >&2
  exit 2
}

truthy () {
  case $(printf '%s' "$1" | tr '[:upper:]' '[:lower:]') in
    1|true|yes|on) return 0 ;;
    ''|0|false|no|off) return 1 ;;
    *) die "expected 1/true or 0/false, got '$1'" ;;
  esac
}

command=${1:-start}
[ $# -gt 0 ] && shift
if [ "$command" != start ]; then
  exec "$PEER_NODE" "$PEER_BIN" "$command" "$@"
fi

# the flags given on the command line go last (so they win over the variables)
given=$#

set -- "$@" --data-dir "$PEER_DATA_DIR"
for a in $(printf '%s' "${PEER_LISTEN:-}" | tr ',' ' '); do set -- "$@" --listen "$a"; done
for a in $(printf '%s' "${PEER_JOIN:-}" | tr ',' ' '); do set -- "$@" --join "$a"; done

if [ -n "${PEER_JOIN_FILE:-}" ]; then
  wait_s=${PEER_JOIN_WAIT:-300}
  waited=0
  while [ ! -s "$PEER_JOIN_FILE" ]; do
    [ "$waited" -ge "$wait_s" ] && { printf 'entrypoint: %s did not appear within %s s (is the peer that announces itself there up?)\n' "$PEER_JOIN_FILE" "$wait_s" >&2; exit 1; }
    [ "$waited" -eq 0 ] && printf 'entrypoint: waiting for %s to join through it\n' "$PEER_JOIN_FILE" >&2
    sleep 1
    waited=$((waited + 1))
  done
  how=$(head -n 1 "$PEER_JOIN_FILE")
  set -- "$@" --join "$how"
  # an address, not a token: the announcing peer's swarm is open
  case $how in /*) set -- "$@" --open ;; esac
fi

if [ -n "${PEER_OPEN:-}" ] && truthy "$PEER_OPEN"; then set -- "$@" --open; fi
if [ -n "${PEER_MDNS:-}" ] && ! truthy "$PEER_MDNS"; then set -- "$@" --no-mdns; fi
if [ -n "${PEER_EXIT_WHEN_DONE:-}" ] && truthy "$PEER_EXIT_WHEN_DONE"; then set -- "$@" --exit-when-done; fi

# VARIABLE=--flag pairs whose value is passed on as it is (the peer validates it)
for pair in \
  PEER_ALLOW=--allow PEER_BACKEND=--backend PEER_LOG_LEVEL=--log-level PEER_MIN_PEERS=--min-peers \
  PEER_HEARTBEAT_MS=--heartbeat-ms PEER_MEMBER_TIMEOUT=--member-timeout PEER_JOIN_TIMEOUT=--join-timeout \
  PEER_ROUND_TIMEOUT=--round-timeout PEER_STEP_TIMEOUT=--step-timeout PEER_CHECKPOINT_EVERY=--checkpoint-every \
  PEER_PROGRESS_EVERY=--progress-every PEER_JOB=--job PEER_DATASET=--dataset PEER_MODEL=--model \
  PEER_HIDDEN=--hidden PEER_BATCH_SIZE=--batch-size PEER_LR=--lr PEER_OPTIMIZER=--optimizer PEER_EPOCHS=--epochs \
  PEER_SEED=--seed PEER_SHARDS=--shards PEER_SYNC_EVERY=--sync-every PEER_OUTER_LR=--outer-lr \
  PEER_OUTER_MOMENTUM=--outer-momentum
do
  name=${pair%%=*}
  eval "value=\${$name:-}"
  if [ -n "$value" ]; then set -- "$@" "${pair#*=}" "$value"; fi
done

# move the flags given on the command line behind the ones from the variables
i=0
while [ "$i" -lt "$given" ]; do
  set -- "$@" "$1"
  shift
  i=$((i + 1))
done

if [ -n "${PEER_ANNOUNCE_FILE:-}" ]; then
  # in the background: it waits for this peer's API, writes the file, and exits
  "$PEER_NODE" "$here/announce.ts" "$PEER_DATA_DIR" "$PEER_ANNOUNCE_FILE" &
fi

exec "$PEER_NODE" "$PEER_BIN" start "$@"
