#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang (AddressSanitizer +
# UndefinedBehaviorSanitizer) and runs each one for FUZZ_SECONDS on a
# temporary copy of its committed seed corpus (text seeds and the inputs of past
# findings) plus the binary seeds fuzz_make_seeds writes (tiny GGUF models made
# with the library's own writer), FUZZ_JOBS targets at a time.
# Prints the executions of every target; exits non-zero on any crash, leak,
# timeout or out-of-memory (the inputs are kept and their paths printed).
#
#   tools/test-fuzz.sh [build-dir]
#
# Environment:
#   FUZZ_SECONDS      seconds per target (default 60)
#   FUZZ_JOBS         targets run at the same time (default 2)
#   FUZZ_TARGETS      space-separated subset, e.g. "fuzz_gguf fuzz_grammar" (default: all)
#   FUZZ_BUILD_JOBS   parallel compile jobs (default 1)
#   CXX               the clang++ to use (default: clang++, else clang++-14)
#   MINIGPT_DATA_DIR  the test data directory (vocabularies for the tokenizer and chat targets)
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-${TMPDIR:-/tmp}/minigpt-fuzz-build}
SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
JOBS=${FUZZ_JOBS:-2}
BUILD_JOBS=${FUZZ_BUILD_JOBS:-1}

if [ -z "${CXX:-}" ]; then
    if command -v clang++ >/dev/null 2>&1; then CXX=clang++
    elif command -v clang++-14 >/dev/null 2>&1; then CXX=clang++-14
    else echo "test-fuzz: clang++ not found (libFuzzer needs clang)" >&2; exit 2
    fi
fi
if ! "$CXX" --version 2>/dev/null | grep -qi clang; then
    echo "test-fuzz: CXX=$CXX is not clang (libFuzzer needs clang)" >&2
    exit 2
fi

DATA_ARGS=()
if [ -n "${MINIGPT_DATA_DIR:-}" ]; then DATA_ARGS=(-DMINIGPT_DATA_DIR="$MINIGPT_DATA_DIR"); fi

# Ninja builds the targets side by side (make builds the targets named on one
# command line one after the other).
GENERATOR=()
if command -v ninja >/dev/null 2>&1; then GENERATOR=(-G Ninja); fi
if [ -f "$BUILD/CMakeCache.txt" ] && ! grep -q "^CMAKE_GENERATOR:INTERNAL=${GENERATOR[1]:-Unix Makefiles}\$" "$BUILD/CMakeCache.txt"; then
    rm -rf "$BUILD"  # (configured with another generator)
fi

echo "== configure ($BUILD, $CXX)"
mkdir -p "$BUILD"
# Line tables (-g1) are enough for the stack traces of a finding, and
# compile a fifth faster than full debug information.
cmake -S "$ROOT" -B "$BUILD" "${GENERATOR[@]}" \
    -DCMAKE_CXX_COMPILER="$CXX" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
    -DMINIGPT_FUZZ=ON \
    -DMINIGPT_BUILD_TESTS=OFF -DMINIGPT_BUILD_EXAMPLES=OFF -DMINIGPT_BUILD_BENCH=OFF -DMINIGPT_INSTALL=OFF \
    "${DATA_ARGS[@]}" >"$BUILD/configure.log" 2>&1 || {
    cat "$BUILD/configure.log" >&2
    echo "test-fuzz: configure failed" >&2
    exit 1
}

TARGETS=${FUZZ_TARGETS:-}
if [ -z "$TARGETS" ]; then
    for f in "$ROOT"/fuzz/fuzz_*.cpp; do TARGETS="$TARGETS $(basename "$f" .cpp)"; done
fi

echo "== build:$TARGETS"
# shellcheck disable=SC2086
if ! cmake --build "$BUILD" -j "$BUILD_JOBS" --target $TARGETS fuzz_make_seeds; then
    echo "test-fuzz: build failed" >&2
    exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/minigpt-fuzz.XXXXXX")
if ! "$BUILD/fuzz_make_seeds" "$WORK/seeds" >"$WORK/make_seeds.log" 2>&1; then
    cat "$WORK/make_seeds.log" >&2
    echo "test-fuzz: fuzz_make_seeds failed" >&2
    exit 1
fi
echo "== run: ${SECONDS_PER_TARGET}s per target, $JOBS at a time (work dir $WORK)"

run_one() {
    local t=$1 name=${1#fuzz_}
    local dir="$WORK/$name"
    mkdir -p "$dir/corpus" "$dir/artifacts"
    if [ -d "$ROOT/fuzz/corpus/$name" ]; then cp "$ROOT/fuzz/corpus/$name"/* "$dir/corpus/" 2>/dev/null; fi
    if [ -d "$WORK/seeds/$name" ]; then cp "$WORK/seeds/$name"/* "$dir/corpus/" 2>/dev/null; fi
    # The outer timeout only guards against a hung process; libFuzzer itself
    # stops after -max_total_time and reports slow inputs through -timeout.
    timeout -k 10 $((SECONDS_PER_TARGET + 300)) \
        "$BUILD/$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=25 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "$dir/corpus" >"$dir/log.txt" 2>&1
    echo $? >"$dir/rc"
}

for t in $TARGETS; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
    run_one "$t" &
done
wait

status=0
printf '%-22s %-8s %14s %10s\n' target result executions corpus
for t in $TARGETS; do
    name=${t#fuzz_}
    dir="$WORK/$name"
    rc=$(cat "$dir/rc" 2>/dev/null || echo 99)
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$dir/log.txt" | tail -n 1 | grep -o '[0-9]*$')
    corpus=$(find "$dir/corpus" -type f | wc -l)
    if [ "$rc" = 0 ]; then result=ok; else result="FAIL($rc)"; status=1; fi
    printf '%-22s %-8s %14s %10s\n' "$t" "$result" "${execs:-?}" "$corpus"
done

if [ "$status" != 0 ]; then
    for t in $TARGETS; do
        name=${t#fuzz_}
        dir="$WORK/$name"
        [ "$(cat "$dir/rc" 2>/dev/null)" = 0 ] && continue
        echo
        echo "== $t failed; end of its log ($dir/log.txt):"
        grep -v '^#[0-9]' "$dir/log.txt" | tail -n 40
        for a in "$dir"/artifacts/*; do
            [ -e "$a" ] && echo "input: $a  (reproduce: $BUILD/$t $a; add it to fuzz/corpus/$name/ once fixed)"
        done
    done
    echo "test-fuzz: FAILED (work dir kept: $WORK)" >&2
    exit 1
fi
rm -rf "$WORK"
echo "test-fuzz: all targets ran ${SECONDS_PER_TARGET}s without findings"
