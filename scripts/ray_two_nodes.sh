#!/usr/bin/env bash
# Two Ray nodes on this machine -- a head (`ray start --head`) and a second node that joins it through its
# address (`ray start --address`) -- then `viewal experiment ... --ray 127.0.0.1:PORT` on that cluster.
#
# Usage: scripts/ray_two_nodes.sh DATA OUT [more viewal experiment arguments]
#   e.g. scripts/ray_two_nodes.sh data/demo runs/two_nodes --methods view_entropy --cycles 1 --size 96x128
# Environment: RAY_PORT (default 6391), CPUS_PER_NODE (default 1), PYTHON (default .venv/bin/python).
#
# Ray 2.60 binds a multi-node cluster to the machine's interface address even when told 127.0.0.1 (it
# resolves loopback to that address); run this only where such local traffic is allowed. It has not been run
# to the end yet (docs/scale.md). Each node runs in the foreground of its own `ray start --block` process, started here and stopped here by
# its process id when the script ends (no `ray stop`, which would stop every Ray process of the machine).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
    sed -n '2,10p' "$0"
    exit 2
fi
DATA=$1; OUT=$2; shift 2
PORT=${RAY_PORT:-6391}
CPUS=${CPUS_PER_NODE:-1}
PYTHON=${PYTHON:-.venv/bin/python}
RAY=$(dirname "$PYTHON")/ray
export NUMBA_THREADING_LAYER=omp
export RAY_worker_niceness=${RAY_worker_niceness:-0}  # Ray's default (15) starves workers on a shared machine
LOGS=$(mktemp -d)
pids=()
cleanup() {  # SIGINT lets `ray start --block` stop its node; SIGTERM after 20 s if it has not
    for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    for _ in $(seq 20); do
        alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && return
        sleep 1
    done
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

"$RAY" start --head --port "$PORT" --num-cpus "$CPUS" --include-dashboard=false \
    --disable-usage-stats --block \
    > "$LOGS/head.log" 2>&1 &
pids+=($!)
for _ in $(seq 120); do  # the head is up when a client can see it
    if "$PYTHON" -c "import ray; ray.init(address='127.0.0.1:$PORT', log_to_driver=False); ray.shutdown()" \
        > /dev/null 2>&1; then break; fi
    sleep 2
done
"$RAY" start --address "127.0.0.1:$PORT" --num-cpus "$CPUS" --disable-usage-stats --block \
    > "$LOGS/node2.log" 2>&1 &
pids+=($!)
"$PYTHON" - "$PORT" <<'EOF'
import sys, time
import ray
ray.init(address=f"127.0.0.1:{sys.argv[1]}", log_to_driver=False)
for _ in range(120):
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) >= 2:
        break
    time.sleep(2)
print(f"ray_two_nodes: {len(alive)} nodes alive, {int(ray.cluster_resources().get('CPU', 0))} CPUs")
ray.shutdown()
sys.exit(0 if len(alive) >= 2 else 1)
EOF
"$PYTHON" -m viewal.cli experiment --data "$DATA" --out "$OUT" --ray "127.0.0.1:$PORT" "$@"
echo "ray_two_nodes: done; node logs in $LOGS"
