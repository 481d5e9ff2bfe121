#!/usr/bin/env bash
# Builds minigpt-generate (g++ -O1 -g, no -march: valgrind does not emulate
# AVX-512, and the kernels pick their instruction set from what the CPU reports)
# and runs a short generation with stories260K under valgrind memcheck:
# no invalid read or write, no use of uninitialised memory, no leak.
# Exits non-zero when valgrind reports anything or the generation fails.
#
#   tools/test-valgrind.sh [build-dir]
#
# Environment:
#   MINIGPT_DATA_DIR  the test data directory (default: ../shared/data from the repository)
#   CXX               the compiler (default g++)
#   VALGRIND_THREADS  -t for minigpt-generate (default 2: the pool of threads is exercised too)
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-${TMPDIR:-/tmp}/minigpt-valgrind-build}
DATA=${MINIGPT_DATA_DIR:-$ROOT/../shared/data}
CXX=${CXX:-g++}
THREADS=${VALGRIND_THREADS:-2}
MODEL="$DATA/models/stories260K.gguf"

if ! command -v valgrind >/dev/null 2>&1; then
    echo "test-valgrind: valgrind not found" >&2
    exit 2
fi
if [ ! -f "$MODEL" ]; then
    echo "test-valgrind: model not found: $MODEL (set MINIGPT_DATA_DIR)" >&2
    exit 2
fi
mkdir -p "$BUILD" || exit 2

echo "test-valgrind: building $BUILD/minigpt-generate"
"$CXX" -std=c++17 -O1 -g -Wall -Wextra -I"$ROOT" "$ROOT/examples/generate.cpp" -o "$BUILD/minigpt-generate" -lpthread || {
    echo "test-valgrind: build failed" >&2
    exit 1
}

status=0
run() {
    local name=$1
    shift
    echo "test-valgrind: $name: valgrind $BUILD/minigpt-generate $*"
    if valgrind --error-exitcode=1 --leak-check=full --show-leak-kinds=definite,indirect,possible \
        --errors-for-leak-kinds=definite,indirect,possible --track-origins=yes \
        --log-file="$BUILD/valgrind-$name.log" \
        "$BUILD/minigpt-generate" "$@" >"$BUILD/out-$name.txt" 2>"$BUILD/err-$name.txt"; then
        grep -E "ERROR SUMMARY|in use at exit" "$BUILD/valgrind-$name.log" | sed 's/^==[0-9]*== */    /'
        echo "test-valgrind: $name: clean ($(wc -c <"$BUILD/out-$name.txt") bytes of text)"
    else
        echo "test-valgrind: $name: FAILED (valgrind log: $BUILD/valgrind-$name.log)" >&2
        cat "$BUILD/err-$name.txt" >&2
        grep -E "^==[0-9]+== " "$BUILD/valgrind-$name.log" | head -60 >&2
        status=1
    fi
}

# Greedy and sampled generation, the model mapped and read into memory.
run greedy-mmap -m "$MODEL" -p "Once upon a time" -n 16 -t "$THREADS" --temp 0
run sampled-read -m "$MODEL" -p "Once upon a time" -n 16 -t 1 --temp 0.8 -s 42 --no-mmap

if [ $status -eq 0 ]; then echo "test-valgrind: OK"; else echo "test-valgrind: FAILED" >&2; fi
exit $status
