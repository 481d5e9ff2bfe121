#!/bin/sh
# Runs the example programs the way users do and checks what they print.
#   run_examples.sh BIN_DIR MODEL_PATH EXAMPLE
# EXAMPLE: chat | npc | perplexity | quantize | bench
set -eu
bin="$1"
model="$2"
data="$(dirname "$(dirname "$model")")"
case "$3" in
chat)
    # A piped conversation: a reply, then /quit ends with status 0.
    out=$(printf 'Hello\n/quit\n' | "$bin/minigpt-chat" -m "$model" -n 16 2>&1)
    echo "$out"
    echo "$out" | grep -Eq 'turn 1: [0-9]+ prompt tokens evaluated'
    echo "$out" | grep -q 'tokens/s\]'
    ;;
npc)
    out=$("$bin/minigpt-npc" -m "$model" --demo 2>&1)
    echo "$out"
    echo "$out" | grep -q 'reply cancelled'
    echo "$out" | grep -Eq 'Guard +done +\{ *"action"'
    ;;
perplexity)
    out=$("$bin/minigpt-perplexity" -m "$model" -f "$data/models/stories260K.ppl.txt" -c 128 2>&1)
    echo "$out"
    echo "$out" | tail -n 1 | grep -q '^PPL = 2\.939[0-9] +/- 0\.185'
    ;;
quantize)
    tmp="${TMPDIR:-/tmp}/minigpt-quantize-test.$$.gguf"
    "$bin/minigpt-quantize" "$model" "$tmp" Q8_0
    out=$("$bin/minigpt-generate" -m "$tmp" -n 8 --temp 0 2>&1)
    rm -f "$tmp"
    echo "$out"
    echo "$out" | grep -q 'Once upon a time'
    ;;
bench)
    # A random-weight model of a real shape, then both tests on it (md and jsonl).
    tmp="${TMPDIR:-/tmp}/minigpt-bench-test.$$.gguf"
    "$bin/minigpt-bench" --make-model stories15M --type Q8_0 -o "$tmp"
    out=$("$bin/minigpt-bench" -m "$tmp" -p 16 -n 4 -r 1 -t 2 2>&1)
    js=$("$bin/minigpt-bench" -m "$tmp" -p 16 -n 4 -r 1 -t 2 -o jsonl --no-bandwidth 2>/dev/null)
    # A list of thread counts: one row per count and test.
    tl=$("$bin/minigpt-bench" -m "$tmp" -p 16 -n 0 -r 1 -t 1,2 -o jsonl --no-bandwidth 2>/dev/null)
    # A context filled with 40 tokens first (the jsonl run with an F16 KV cache).
    dp=$("$bin/minigpt-bench" -m "$tmp" -p 8 -n 4 -d 40 -r 1 -t 2 --no-bandwidth 2>/dev/null)
    dj=$("$bin/minigpt-bench" -m "$tmp" -p 0 -n 4 -d 40 -r 1 -t 2 -ctk f16 -o jsonl --no-bandwidth 2>/dev/null)
    rm -f "$tmp"
    echo "$out"
    echo "$js"
    echo "$tl"
    echo "$dp"
    echo "$dj"
    echo "$dp" | grep -Eq '\| pp8 @ d40 \| [0-9.]+ ± [0-9.]+ \|'
    echo "$dp" | grep -Eq '\| tg4 @ d40 \| [0-9.]+ ± [0-9.]+ \|'
    echo "$dj" | grep -q '"n_prompt": 0, "n_gen": 4, "n_depth": 40,'
    echo "$dj" | grep -q '"type_k": "f16", "type_v": "f16"'
    echo "$js" | grep -q '"type_k": "f32", "type_v": "f32"'
    echo "$tl" | grep -q '"n_prompt": 16, "n_gen": 0, "n_depth": 0, "n_threads": 1,'
    echo "$tl" | grep -q '"n_prompt": 16, "n_gen": 0, "n_depth": 0, "n_threads": 2,'
    test "$(echo "$tl" | wc -l)" -eq 2
    echo "$out" | grep -Eq '\| pp16 \| [0-9.]+ ± [0-9.]+ \|'
    echo "$out" | grep -Eq '\| tg4 \| [0-9.]+ ± [0-9.]+ \|'
    echo "$out" | grep -q 'memory read bandwidth'
    # Linux: how much of the mapped file is in 2 MiB pages, after the tests.
    if [ "$(uname -s)" = Linux ]; then
        echo "$out" | grep -Eq 'minigpt-bench-test.*: [0-9.]+ of the [0-9.]+ MiB of the file in memory are mapped in 2 MiB pages'
    fi
    # tg rows: a share of the bandwidth measured before each repetition (a percentage above 0).
    echo "$out" | grep -Eq '\| tg4 \| .* \| [0-9.]+ MiB \| [0-9]+\.[0-9]% of [0-9.]+ GB/s \|'
    if echo "$out" | grep -Eq '\| tg4 \| .* \| 0\.0% of'; then echo "tg4 used no bandwidth" >&2; exit 1; fi
    echo "$js" | grep -q '"n_prompt": 16, "n_gen": 0'
    echo "$js" | grep -q '"avg_ts"'
    ;;
*)
    echo "unknown example $3" >&2
    exit 2
    ;;
esac
