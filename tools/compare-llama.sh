#!/usr/bin/env bash
# Side-by-side speed of minigpt-bench and llama.cpp's llama-bench on the same GGUF
# files, in one run: the two tools take turns for each model and round, and the
# table reports the median tokens/s of each and their ratio.
#
#   LLAMA_BENCH=/path/to/llama-bench tools/compare-llama.sh [options] MODEL.gguf...
#
# Options: -p N (prompt tokens, 128), -n N (generated tokens, 64), -t N (threads, 2),
#          -r N (repetitions per run, 3), --rounds K (alternating runs, 3),
#          -d N (tokens already in the context when each test starts, 0),
#          -ctk f32|f16 (the KV cache's type for both tools; unset: each tool's default,
#          f32 for minigpt-bench and f16 for llama-bench).
# Environment: LLAMA_BENCH (required), MINIGPT_BENCH (default build/release/minigpt-bench).
# llama.cpp is not part of this project: build it elsewhere and point LLAMA_BENCH at it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
P=128 N=64 T=2 R=3 ROUNDS=3 D=0
models=() cache=()
while [ $# -gt 0 ]; do
    case "$1" in
        -p) P="$2"; shift 2 ;;
        -n) N="$2"; shift 2 ;;
        -t) T="$2"; shift 2 ;;
        -d) D="$2"; shift 2 ;;
        -ctk) cache=(-ctk "$2" -ctv "$2"); shift 2 ;;
        -r) R="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) models+=("$1"); shift ;;
    esac
done
MINIGPT_BENCH="${MINIGPT_BENCH:-$ROOT/build/release/minigpt-bench}"
: "${LLAMA_BENCH:?set LLAMA_BENCH to the path of the llama-bench program of llama.cpp}"
[ ${#models[@]} -gt 0 ] || { echo "usage: $0 [options] MODEL.gguf..." >&2; exit 2; }
[ -x "$MINIGPT_BENCH" ] || { echo "no minigpt-bench at $MINIGPT_BENCH (build it, or set MINIGPT_BENCH)" >&2; exit 2; }
[ -x "$LLAMA_BENCH" ] || { echo "no llama-bench at $LLAMA_BENCH" >&2; exit 2; }

out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for model in "${models[@]}"; do
    for round in $(seq "$ROUNDS"); do
        echo "round $round: $(basename "$model")" >&2
        "$MINIGPT_BENCH" -m "$model" -p "$P" -n "$N" -d "$D" -t "$T" -r "$R" ${cache[@]+"${cache[@]}"} -o jsonl 2>/dev/null |
            sed 's/^/minigpt /' >>"$out"
        LD_LIBRARY_PATH="$(dirname "$LLAMA_BENCH")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
            "$LLAMA_BENCH" -m "$model" -p "$P" -n "$N" -d "$D" -t "$T" -r "$R" ${cache[@]+"${cache[@]}"} -o jsonl 2>/dev/null |
            sed 's/^/llama /' >>"$out"
    done
done

python3 - "$out" <<'EOF'
import json, os, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    tool, _, js = line.partition(" ")
    try:
        r = json.loads(js)
    except ValueError:
        continue
    test = "pp%d" % r["n_prompt"] if r["n_prompt"] else "tg%d" % r["n_gen"]
    if r.get("n_depth"):
        test += " @ d%d" % r["n_depth"]
    runs.setdefault((r["model_filename"], test), {}).setdefault(tool, []).append(r["avg_ts"])
print("| model | test | minigpt t/s | llama.cpp t/s | ratio |")
print("|---|---|---:|---:|---:|")
for (model, test), by_tool in runs.items():
    a = statistics.median(by_tool.get("minigpt", [0.0]))
    b = statistics.median(by_tool.get("llama", [0.0]))
    ratio = "%.2fx" % (a / b) if b > 0 else "n/a"
    print("| %s | %s | %.1f | %.1f | %s |" % (os.path.basename(model), test, a, b, ratio))
EOF
