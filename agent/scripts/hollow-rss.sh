#!/usr/bin/env bash
# Measures berth-agent with N hollow nodes against one berth-server on loopback:
# time to N Ready nodes, agent RSS and CPU over a steady-state window, then with P pods
# bound round-robin. Stops both processes it started (by PID) on exit.
#
#   agent/scripts/hollow-rss.sh [BIN_DIR=/work/main/target/debug] [N=1000] [P=2000] [WINDOW_S=60]
set -euo pipefail
BIN=${1:-/work/main/target/debug}; N=${2:-1000}; P=${3:-2000}; WINDOW=${4:-60}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
read -r P1 P2 P3 < <(python3 -c "
import socket
ss=[socket.socket() for _ in range(3)]
[s.bind(('127.0.0.1',0)) for s in ss]
print(*[s.getsockname()[1] for s in ss])")
API=http://127.0.0.1:$P3
SERVER=""; AGENT=""
cleanup() { for p in $AGENT $SERVER; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
"$BIN/berth-server" --insecure --name s0 --data-dir "$WORK/s0" --listen-client-urls "http://127.0.0.1:$P1" \
  --listen-peer-urls "http://127.0.0.1:$P2" --listen-api-url "$API" --log-level warn >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do curl -sf "$API/api/v1/namespaces/kube-node-lease" >/dev/null && break; sleep 0.2; done
start=$(date +%s.%N)
"$BIN/berth-agent" --server "$API" --node-name hollow --runtime fake --fake-nodes "$N" --listen-port 0 \
  --data-dir "$WORK/agent" --log-level warn >"$WORK/agent.log" 2>&1 &
AGENT=$!
ready_nodes() { curl -s "$API/api/v1/nodes" | python3 -c "
import json,sys
d=json.load(sys.stdin)
print(sum(1 for n in d['items'] if any(c['type']=='Ready' and c['status']=='True' for c in n.get('status',{}).get('conditions',[]))))"; }
for _ in $(seq 1 600); do [ "$(ready_nodes)" = "$N" ] && break; sleep 0.5; done
echo "nodes Ready: $(ready_nodes)/$N after $(python3 -c "print(round($(date +%s.%N)-$start,1))") s"
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)
a0=$(cpu $AGENT); s0=$(cpu $SERVER); sleep "$WINDOW"; a1=$(cpu $AGENT); s1=$(cpu $SERVER)
echo "steady state over ${WINDOW}s: agent $(python3 -c "print(round(($a1-$a0)/$tck/$WINDOW*100,1))")% of a core, server $(python3 -c "print(round(($s1-$s0)/$tck/$WINDOW*100,1))")%"
echo "agent $(grep VmRSS /proc/$AGENT/status)"
if [ "$P" -gt 0 ]; then
  python3 "$HERE/hollow_pods.py" "$API" "$P" "$N"
  echo "agent with $P pods: $(grep VmRSS /proc/$AGENT/status)"
fi
grep -ci "error\|panic" "$WORK/agent.log" | sed 's/^/agent log error lines: /' || true
