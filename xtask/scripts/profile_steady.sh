#!/bin/bash
# Profiles flowtop's steady state in a private network namespace (as root):
#
#   profile_steady.sh FLOWTOP N OUTDIR [perf|callgrind]
#
# Inserts N UDP entries (ct_insert.py), then
#  - perf (default): times `conntrack -L` and `flowtop --once --json` (user/sys
#    from /usr/bin/time), runs `flowtop --json -t 1 -4UnG --no-sysctl` and
#    samples it with `perf record -e cpu-clock -g` for 15 s once the table is
#    loaded (kernel and user stacks); OUTDIR/perf.data, OUTDIR/times.txt;
#  - callgrind: `--once --json` and, zeroed after the initial dump, 20 s of
#    `--json -t 1` under valgrind --tool=callgrind (instruction counts that do
#    not drift): OUTDIR/cg.once, OUTDIR/cg.steady.1, OUTDIR/steady.stats.
# The namespace and every process it starts are removed on exit.
set -eu
FT=$1; N=$2; OUT=$3; MODE=${4:-perf}
HERE=$(cd "$(dirname "$0")" && pwd)
NS=ftprof-$$
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
mkdir -p "$OUT"
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" sysctl -qw net.netfilter.nf_conntrack_acct=1
ip netns exec "$NS" python3 "$HERE/ct_insert.py" "$N" >/dev/null
wait_for_table() { # FILE: until N snapshot lines
    for _ in $(seq 1 600); do
        sleep 0.5
        [ "$(grep -c '"snapshot"' "$1" || true)" -ge "$N" ] && return 0
    done
    return 1
}
if [ "$MODE" = perf ]; then
    {
        for i in 1 2 3; do
            /usr/bin/time -f "conntrack -L: %e s wall, %U s user, %S s sys" ip netns exec "$NS" sh -c "conntrack -L >/dev/null 2>&1"
            /usr/bin/time -f "flowtop --once --json: %e s wall, %U s user, %S s sys" ip netns exec "$NS" "$FT" --once --json -4UnG --no-sysctl >/dev/null
        done
    } 2>&1 | tee "$OUT/times.txt"
    ip netns exec "$NS" "$FT" --json -t 1 -4UnG --no-sysctl >"$OUT/steady.json" 2>/dev/null &
    PIDS+=($!)
    wait_for_table "$OUT/steady.json"
    sleep 3
    perf record -q -e cpu-clock -g -o "$OUT/perf.data" -p "${PIDS[0]}" -- sleep 15 2>/dev/null
else
    ip netns exec "$NS" valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.once" \
        "$FT" --once --json -4UnG --no-sysctl >/dev/null 2>"$OUT/cg.once.err"
    ip netns exec "$NS" valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.steady" \
        "$FT" --json -t 1 -4UnG --no-sysctl >"$OUT/steady.json" 2>"$OUT/cg.steady.err" &
    PIDS+=($!)
    wait_for_table "$OUT/steady.json"
    sleep 3
    callgrind_control -z "$OUT/cg.steady" >/dev/null 2>&1 || callgrind_control -z >/dev/null
    sleep 20
    callgrind_control -d "$OUT/cg.steady" >/dev/null 2>&1 || callgrind_control -d >/dev/null
    sleep 2
fi
