#!/usr/bin/env bash
# Two Ray nodes on this machine -- a head (`ray start --head`) and a second node that joins it by address
# (`ray start --address`) -- then `viewal experiment ... --ray HEAD:PORT` on that cluster.
#
# Usage: scripts/ray_two_nodes.sh DATA OUT [more viewal experiment arguments]
#   e.g. scripts/ray_two_nodes.sh data/demo runs/two_nodes --methods view_entropy --cycles 1 --size 96x128
# Environment: RAY_PORT (default 6391), CPUS_PER_NODE (default 1), PYTHON (default .venv/bin/python),
#   KEEP_LOGS=1 keeps the run's temp dir (node logs, Ray's session dir) also on success.
#
# Each node is a host of its own: a network namespace made here (`ip netns add`), the two joined by a veth
# pair, the head at 10.88.0.1 and the second node at 10.88.0.2. Those addresses exist only inside the two
# namespaces (no route out of them), so the cluster's traffic never leaves them. A multi-node Ray does not run
# on 127.0.0.1 (it rewrites loopback to the machine's interface address), hence the namespaces. Needs root
# (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2; without them it stops with a message. The driver (the
# experiment) runs in the head's namespace. The cluster uses a token made for this run (RAY_AUTH_MODE=token,
# RAY_AUTH_TOKEN_PATH in the run's temp dir), not the user's ~/.ray/auth_token.
# Teardown, also on error or Ctrl-C: SIGTERM to the two `ray start --block` processes started here (each
# drains and stops its node), SIGKILL after 60 s to whatever still runs in the two namespaces (only processes
# started here run there), then the namespaces are deleted (the veth pair with them). No `ray stop`, which
# would stop every Ray process of the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
    sed -n '2,8p' "$0"
    exit 2
fi
DATA=$1; OUT=$2; shift 2
PORT=${RAY_PORT:-6391}
CPUS=${CPUS_PER_NODE:-1}
PYTHON=${PYTHON:-.venv/bin/python}
RAY=$(dirname "$PYTHON")/ray
HEAD_IP=10.88.0.1
NODE_IP=10.88.0.2
export NUMBA_THREADING_LAYER=omp
export RAY_worker_niceness=${RAY_worker_niceness:-0}  # Ray's default (15) starves workers on a shared machine
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1           # a multi-node cluster (a test may have switched it off)

say() { echo "ray_two_nodes: $*"; }
die() { echo "ray_two_nodes: $*" >&2; exit 3; }
command -v ip > /dev/null || die "needs iproute2's 'ip' (apt-get install iproute2)"
[ -x "$RAY" ] || die "no $RAY: pip install 'viewal[ray]' into the venv of $PYTHON"

TMP=$(mktemp -d /tmp/vray.XXXXXX)  # short: Ray's socket paths under it must stay below 108 characters
NS_HEAD=viewal-ray-$$-head
NS_NODE=viewal-ray-$$-node
VETH_HEAD=vr$$h
VETH_NODE=vr$$n
pids=()
made=()
cleanup() {
    local rc=$?
    if [ ${#made[@]} = 0 ]; then rm -rf "$TMP"; return; fi  # nothing was set up
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 60); do
        alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 1
    done
    for ns in "${made[@]}"; do
        left=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -n "$left" ] && kill -KILL $left 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done
    if [ $rc != 0 ]; then echo "ray_two_nodes: failed (exit $rc); node logs in $TMP" >&2
    elif [ "${KEEP_LOGS:-0}" = 1 ]; then echo "ray_two_nodes: node logs in $TMP"
    else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! ip netns add "$NS_HEAD" 2> "$TMP/netns.err"; then
    die "cannot make a network namespace ($(head -c 200 "$TMP/netns.err")): this script needs root" \
        "(CAP_SYS_ADMIN and CAP_NET_ADMIN) to give each Ray node its own address"
fi
made+=("$NS_HEAD")
ip netns add "$NS_NODE"
made+=("$NS_NODE")
ip link add "$VETH_HEAD" type veth peer name "$VETH_NODE"
ip link set "$VETH_HEAD" netns "$NS_HEAD"
ip link set "$VETH_NODE" netns "$NS_NODE"
ip -n "$NS_HEAD" addr add "$HEAD_IP/24" dev "$VETH_HEAD"
ip -n "$NS_NODE" addr add "$NODE_IP/24" dev "$VETH_NODE"
for ns in "$NS_HEAD" "$NS_NODE"; do ip -n "$ns" link set lo up; done
ip -n "$NS_HEAD" link set "$VETH_HEAD" up
ip -n "$NS_NODE" link set "$VETH_NODE" up

export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$TMP/token"
(umask 077; "$PYTHON" -c "import secrets; print(secrets.token_hex(32))" > "$RAY_AUTH_TOKEN_PATH")

wait_started() {  # LOG PID NAME: until `ray start` says the node runs (it then blocks), or it died
    for _ in $(seq 150); do
        grep -q "Ray runtime started" "$1" && return 0
        kill -0 "$2" 2>/dev/null || { tail -n 20 "$1" >&2; die "the $3 node did not start (log: $1)"; }
        sleep 2
    done
    tail -n 20 "$1" >&2
    die "the $3 node did not start within 300 s (log: $1)"
}

ip netns exec "$NS_HEAD" "$RAY" start --head --node-ip-address "$HEAD_IP" --port "$PORT" --num-cpus "$CPUS" \
    --include-dashboard=false --disable-usage-stats --temp-dir "$TMP/ray" --block > "$TMP/head.log" 2>&1 &
pids+=($!)
wait_started "$TMP/head.log" "${pids[0]}" head
ip netns exec "$NS_NODE" "$RAY" start --address "$HEAD_IP:$PORT" --node-ip-address "$NODE_IP" --num-cpus "$CPUS" \
    --disable-usage-stats --block > "$TMP/node2.log" 2>&1 &
pids+=($!)
wait_started "$TMP/node2.log" "${pids[1]}" second

ip netns exec "$NS_HEAD" "$PYTHON" - "$HEAD_IP:$PORT" <<'EOF'
import sys, time
import ray
ray.init(address=sys.argv[1], log_to_driver=False)
for _ in range(60):
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) >= 2:
        break
    time.sleep(2)
addrs = ", ".join(sorted(n["NodeManagerAddress"] for n in alive))
print(f"ray_two_nodes: {len(alive)} nodes alive ({addrs}), {int(ray.cluster_resources().get('CPU', 0))} CPUs",
      flush=True)
ray.shutdown()
sys.exit(0 if len(alive) >= 2 else 1)
EOF
ip netns exec "$NS_HEAD" "$PYTHON" -m viewal.cli experiment --data "$DATA" --out "$OUT" --ray "$HEAD_IP:$PORT" "$@"
say "done"
