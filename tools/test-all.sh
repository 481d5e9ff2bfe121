#!/usr/bin/env bash
# shellcheck disable=SC2317  # the stage functions are called indirectly through stage()
# The full test run of minigpt.hpp (what CI runs):
#   1. minigpt.hpp matches its parts; meson.build lists every test/example/benchmark;
#      the example in README.md compiles; the implementation compiles without
#      warnings for AVX-512 without VNNI/BF16 and for AVX2 (g++ and clang++);
#      the kernel tests pass when built for AVX-512 VNNI without VBMI/BF16
#   2. CMake + Ninja, g++, Release, -Werror: build everything, ctest; minigpt-generate
#      --temp 0 on stories260K reproduces the reference greedy text
#   3. CMake + clang++ with AddressSanitizer + UndefinedBehaviorSanitizer: tests
#   4. CMake + g++ -O1: examples with -fno-exceptions -fno-rtti, scalar kernels (MINIGPT_NO_SIMD), ctest
#   5. Meson (optimization 0): build everything, meson test
#   6. cmake --install into a prefix; build tests/consumer against it (find_package and
#      pkg-config/Meson) and run it
#   7. libFuzzer: every fuzz/ target 20 s (FUZZ_SECONDS) with AddressSanitizer + UndefinedBehaviorSanitizer
#      (tools/test-fuzz.sh)
#   8. aarch64: NEON kernels and model tests cross-compiled and run under qemu
#      (tools/test-neon.sh)
#   9. valgrind memcheck on minigpt-generate with stories260K (tools/test-valgrind.sh)
# Missing tools are installed with apt-get (tools/deps.sh). Every stage runs even when
# an earlier one failed; the last line is "test-all: N passed, M failed" and the exit
# status is non-zero when anything failed.
#
# Environment: MINIGPT_DATA_DIR (default ../shared/data from the repository root),
#              JOBS (default 2).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=tools/deps.sh
source tools/deps.sh

JOBS="${JOBS:-2}"
DATA_DIR="$(realpath -m "${MINIGPT_DATA_DIR:-../shared/data}")"
export MINIGPT_DATA_DIR="$DATA_DIR"
MODEL="$DATA_DIR/models/stories260K.gguf"
BUILD="$ROOT/build"
mkdir -p "$BUILD"
RESULTS="$BUILD/test-all.results"
: >"$RESULTS"
START_TIME=$SECONDS

# One line per result: "pass|fail <count> <label>".
record() { echo "$1 $2 $3" >>"$RESULTS"; }
fail_count() { awk '$1 == "fail" { n += $2 } END { print n + 0 }' "$RESULTS"; }

header() { printf '\n==== test-all: %s (%ds) ====\n' "$1" $((SECONDS - START_TIME)); }

# Runs a stage function in a subshell with errexit on, so that one failing
# command ends that stage only. A stage that fails without recording a result
# of its own counts as one failure.
stage() {
    local name="$1"
    shift
    header "$name"
    local before rc
    before="$(fail_count)"
    set +e
    (
        set -euo pipefail
        "$@"
    )
    rc=$?
    set -e
    if [ "$rc" -ne 0 ] && [ "$(fail_count)" = "$before" ]; then
        record fail 1 "$name"
    fi
    return 0
}

# check <label> <command...>: runs a command and records it as one result.
check() {
    local label="$1"
    shift
    if "$@"; then
        record pass 1 "$label"
    else
        record fail 1 "$label"
        return 1
    fi
}

# cmake_build <dir> <targets...>: builds, keeping going past errors so that the
# tests that do compile still run. A build error is recorded as one failure.
cmake_build() {
    local dir="$1"
    shift
    local targets=()
    local t
    for t in "$@"; do targets+=(--target "$t"); done
    if ! cmake --build "$dir" -j"$JOBS" "${targets[@]+"${targets[@]}"}" -- -k 0; then
        record fail 1 "build:$(basename "$dir")"
        return 0
    fi
}

# run_ctest <label> <dir> [VAR=value...]: runs ctest and records every test.
run_ctest() {
    local label="$1" dir="$2"
    shift 2
    local log="$dir/test-all-ctest.log" rc
    set +e
    (cd "$dir" && env "$@" ctest --output-on-failure -j"$JOBS") 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    local summary total failed
    summary="$(grep -E '[0-9]+ tests? failed out of [0-9]+' "$log" | tail -1 || true)"
    if [ -z "$summary" ]; then
        record fail 1 "$label:ctest-no-summary"
        return 1
    fi
    total="$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$summary")"
    failed="$(sed -E 's/.* ([0-9]+) tests? failed.*/\1/' <<<"$summary")"
    record pass $((total - failed)) "$label"
    while read -r name; do
        [ -n "$name" ] && record fail 1 "$label:$name"
    done < <(sed -n '/The following tests FAILED:/,$p' "$log" | sed -nE 's/^[[:space:]]+[0-9]+ - ([^ ]+) .*/\1/p')
    return "$rc"
}

# ---------------------------------------------------------------------------
stage_consistency() {
    local bad=0
    check "header_is_fresh" python3 tools/amalgamate.py --check || bad=1

    # Meson has no glob: every source that CMake picks up must be listed in meson.build.
    local missing=() f n
    for f in tests/test_*.cpp examples/*.cpp bench/*.cpp; do
        [ -e "$f" ] || continue
        n="$(basename "$f" .cpp)"
        grep -q "^ *'$n',\$" meson.build || missing+=("$f")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        record pass 1 "meson_lists_every_source"
    else
        echo "meson.build does not list: ${missing[*]}" >&2
        record fail 1 "meson_lists_every_source"
        bad=1
    fi

    # The example in README.md must compile (syntax and semantics, no link).
    local readme_cpp="$BUILD/readme_example.cpp"
    awk '/^```cpp/ { f = 1; next } /^```/ { f = 0 } f' README.md >"$readme_cpp"
    check "readme_example_compiles" g++ -std=c++17 -Wall -Wextra -Werror -fsyntax-only -I"$ROOT" "$readme_cpp" || bad=1

    # The implementation compiles without warnings for instruction sets the
    # machine's own builds do not take: AVX-512 without VNNI and BF16
    # (Skylake-X), and AVX2 only, with g++ and clang++. A real compile, not
    # -fsyntax-only: an intrinsic of a missing extension fails only once it is
    # inlined.
    local isa cxx
    for isa in "-mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c" "-march=x86-64-v3"; do
        for cxx in g++ clang++; do
            # shellcheck disable=SC2086  # $isa is a list of flags
            check "header_compiles:$cxx:${isa%% *}" "$cxx" -std=c++17 -O1 $isa -Wall -Wextra -Werror -c -o /dev/null \
                -x c++ -DMINIGPT_IMPLEMENTATION minigpt.hpp || bad=1
        done
    done

    # AVX-512 with VNNI but without VBMI and BF16 (Cascade Lake) is a subset of
    # this machine's instruction set: the kernel tests built for it run here and
    # test the paths a native build never takes (the one-row Q4_0/Q5_0 product
    # then loads a pair of blocks in parts; the BF16 products convert).
    if grep -qw avx512_vnni /proc/cpuinfo; then
        check "test_kernels:cascadelake" kernels_for_isa -march=cascadelake || bad=1
    else
        echo "note: this CPU has no AVX-512 VNNI, so the Cascade Lake kernel tests do not run here" >&2
    fi

    local hv mv
    hv="$(sed -nE 's/^#define MINIGPT_VERSION_STRING "([^"]+)".*/\1/p' minigpt.hpp)"
    mv="$(sed -nE "s/^ *version: '([^']+)'.*/\1/p" meson.build | head -1)"
    if [ -n "$hv" ] && [ "$hv" = "$mv" ]; then
        record pass 1 "meson_version_matches_header"
    else
        echo "meson.build version '$mv' differs from MINIGPT_VERSION_STRING '$hv'" >&2
        record fail 1 "meson_version_matches_header"
        bad=1
    fi
    return "$bad"
}

# Builds tests/test_kernels.cpp for the instruction set given by the flags and runs it.
kernels_for_isa() {
    local exe="$BUILD/test_kernels${1//[^a-z0-9]/_}"
    g++ -std=c++17 -O1 "$@" -Wall -Wextra -Werror -I"$ROOT" tests/test_kernels.cpp -o "$exe" -lpthread && "$exe"
}

# The greedy continuation printed by minigpt-generate must be a prefix of the
# reference text (prompt + 200 greedy tokens computed by llama.cpp).
generate_matches_reference() {
    local LC_ALL=C  # lengths in bytes
    local exe="$1" ref="$DATA_DIR/models/stories260K.greedy200.txt" out
    out="$("$exe" -m "$MODEL" -p "Once upon a time" -n 32 --temp 0 -t 2)"
    printf 'minigpt-generate: %s\n' "$out"
    if [ ${#out} -le 16 ]; then
        echo "minigpt-generate printed no continuation" >&2
        return 1
    fi
    if [ "$(head -c ${#out} "$ref")" != "$out" ]; then
        echo "minigpt-generate's greedy text differs from $ref:" >&2
        echo "  expected: $(head -c ${#out} "$ref")" >&2
        return 1
    fi
}

# ---------------------------------------------------------------------------
stage_gcc() {
    local dir="$BUILD/gcc"
    cmake -S . -B "$dir" -G Ninja -DCMAKE_CXX_COMPILER=g++ -DCMAKE_BUILD_TYPE=Release \
        -DMINIGPT_WERROR=ON -DMINIGPT_DATA_DIR="$DATA_DIR"
    cmake_build "$dir"
    local bad=0
    run_ctest gcc "$dir" || bad=1
    if [ -x "$dir/minigpt-generate" ]; then
        check "gcc:minigpt-generate-greedy" generate_matches_reference "$dir/minigpt-generate" || bad=1
    fi
    return "$bad"
}

# ---------------------------------------------------------------------------
stage_sanitize() {
    local dir="$BUILD/clang-asan"
    # -O0 keeps this build fast (instrumented -O2 compiles 4x slower) and the
    # sanitizer reports precise; asserts stay on.
    cmake -S . -B "$dir" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug \
        -DCMAKE_CXX_FLAGS_DEBUG="-O0 -g1" \
        -DMINIGPT_WERROR=ON -DMINIGPT_SANITIZE=address,undefined \
        -DMINIGPT_BUILD_EXAMPLES=OFF -DMINIGPT_BUILD_BENCH=OFF -DMINIGPT_DATA_DIR="$DATA_DIR"
    cmake_build "$dir"
    run_ctest clang-asan "$dir" ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
}

# ThreadSanitizer on the tests that run contexts, the pool and host job systems
# on several threads.
stage_tsan() {
    local dir="$BUILD/clang-tsan"
    cmake -S . -B "$dir" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
        -DMINIGPT_WERROR=ON -DMINIGPT_SANITIZE=thread \
        -DMINIGPT_BUILD_EXAMPLES=OFF -DMINIGPT_BUILD_BENCH=OFF -DMINIGPT_DATA_DIR="$DATA_DIR"
    cmake_build "$dir" test_session test_threads test_model
    check "clang-tsan:test_session" env TSAN_OPTIONS=halt_on_error=1 "$dir/test_session"
    # (generation on 2 threads and on a host job system: the row products' shared spans)
    check "clang-tsan:test_model threads" env TSAN_OPTIONS=halt_on_error=1 "$dir/test_model" -tc="*thread count*"
    check "clang-tsan:test_threads" env TSAN_OPTIONS=halt_on_error=1 "$dir/test_threads"
}

# ---------------------------------------------------------------------------
stage_scalar() {
    local dir="$BUILD/gcc-scalar-noexcept"
    # -O1: this stage checks the configuration (no SIMD, no exceptions), not
    # the optimizer; it compiles in two thirds of the -O2 time.
    cmake -S . -B "$dir" -G Ninja -DCMAKE_CXX_COMPILER=g++ -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" \
        -DMINIGPT_WERROR=ON -DMINIGPT_NO_EXCEPTIONS=ON -DCMAKE_CXX_FLAGS=-DMINIGPT_NO_SIMD \
        -DMINIGPT_BUILD_BENCH=OFF -DMINIGPT_DATA_DIR="$DATA_DIR"
    cmake_build "$dir"
    run_ctest gcc-scalar "$dir"
}

# ---------------------------------------------------------------------------
stage_meson() {
    local dir="$BUILD/meson"
    # Given explicitly: --reconfigure does not apply changed default_options.
    # Optimization 0: this stage checks the Meson build (the optimizer's
    # warnings are stage 2's and 4's). It builds in 134 s here where -O1 took
    # about 185, and its tests then run 28 s instead of 8.
    local opts=(-Doptimization=0 -Ddebug=false -Ddata_dir="$DATA_DIR" -Dwerror=true)
    if [ -f "$dir/meson-private/coredata.dat" ]; then
        meson setup --reconfigure "$dir" "${opts[@]}"
    else
        rm -rf "$dir"
        meson setup "$dir" "${opts[@]}"
    fi
    if ! ninja -C "$dir" -j"$JOBS" -k 0; then
        record fail 1 "build:meson"
    fi
    # meson test refuses to run anything when one test program is missing, so
    # after a partial build run the tests that were built and count the others.
    local runnable=() missing=() kind name
    while read -r kind name; do
        if [ "$kind" = ok ]; then runnable+=("$name"); else missing+=("$name"); fi
    done < <(meson introspect --tests "$dir" | python3 -c '
import json, os, sys
for t in json.load(sys.stdin):
    print("ok" if os.path.exists(t["cmd"][0]) else "missing", t["name"])')
    for name in "${missing[@]+"${missing[@]}"}"; do
        echo "meson: $name was not built"
        record fail 1 "meson:$name"
    done
    if [ ${#runnable[@]} -eq 0 ]; then
        return 1
    fi
    local log="$dir/test-all-meson.log" rc
    set +e
    meson test -C "$dir" --print-errorlogs --num-processes "$JOBS" --no-rebuild "${runnable[@]}" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    [ ${#missing[@]} -eq 0 ] || rc=1
    local ok failed
    ok="$(sed -nE 's/^Ok:[[:space:]]+([0-9]+).*/\1/p' "$log" | tail -1)"
    failed="$(sed -nE 's/^(Fail|Timeout|Unexpected Pass):[[:space:]]+([0-9]+).*/\2/p' "$log" | awk '{ n += $1 } END { print n + 0 }')"
    if [ -z "$ok" ]; then
        record fail 1 "meson:no-summary"
        return 1
    fi
    record pass "$ok" meson
    local name
    while read -r name; do
        [ -n "$name" ] && record fail 1 "meson:$name"
    done < <(sed -nE 's/^ *[0-9]+\/[0-9]+ +([^ ]+) +(FAIL|TIMEOUT|UNEXPECTEDPASS).*/\1/p' "$log" | sort -u)
    if [ "$failed" -ne 0 ] && ! grep -qE '^fail [0-9]+ meson:' "$RESULTS"; then
        record fail "$failed" meson
    fi
    return "$rc"
}

# ---------------------------------------------------------------------------
stage_install() {
    local dir="$BUILD/install" prefix="$BUILD/prefix"
    rm -rf "$prefix" "$BUILD/consumer" "$BUILD/consumer-meson"
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DMINIGPT_BUILD_TESTS=OFF -DMINIGPT_BUILD_EXAMPLES=OFF -DMINIGPT_BUILD_BENCH=OFF
    cmake --install "$dir" --prefix "$prefix"
    local bad=0

    if cmake -S tests/consumer -B "$BUILD/consumer" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_PREFIX_PATH="$prefix" && cmake --build "$BUILD/consumer" -j"$JOBS"; then
        check "consumer:find_package" "$BUILD/consumer/minigpt-consumer" "$MODEL" || bad=1
    else
        record fail 1 "consumer:find_package-build"
        bad=1
    fi

    if PKG_CONFIG_PATH="$prefix/share/pkgconfig" meson setup "$BUILD/consumer-meson" tests/consumer &&
        ninja -C "$BUILD/consumer-meson" -j"$JOBS"; then
        check "consumer:meson-pkg-config" "$BUILD/consumer-meson/minigpt-consumer" "$MODEL" || bad=1
    else
        record fail 1 "consumer:meson-pkg-config-build"
        bad=1
    fi
    return "$bad"
}

# ---------------------------------------------------------------------------
stage_fuzz() {
    check "fuzz:all-targets" env FUZZ_SECONDS="${FUZZ_SECONDS:-20}" FUZZ_BUILD_JOBS="$JOBS" CXX=clang++ \
        bash tools/test-fuzz.sh "$BUILD/fuzz"
}

stage_neon() {
    check "neon:qemu-aarch64" bash tools/test-neon.sh "$BUILD/neon"
}

stage_valgrind() {
    check "valgrind:minigpt-generate" bash tools/test-valgrind.sh "$BUILD/valgrind"
}

# ---------------------------------------------------------------------------
# Everything runs from one function so that bash has read the whole file before
# the first stage starts (editing the script during a run cannot break the run).
main() {
    header "dependencies"
    minigpt_install_deps all
    echo "data directory: $DATA_DIR"
    [ -d "$DATA_DIR" ] || echo "WARNING: $DATA_DIR does not exist: tests that need the data will fail (set MINIGPT_DATA_DIR)"
    stage "1/9 header freshness and build lists" stage_consistency
    stage "2/9 CMake + g++ Release -Werror: everything, ctest" stage_gcc
    stage "3/9 CMake + clang++ address,undefined sanitizers: tests" stage_sanitize
    stage "3b/9 CMake + clang++ ThreadSanitizer: threading tests" stage_tsan
    stage "4/9 CMake + g++ MINIGPT_NO_SIMD, examples with -fno-exceptions -fno-rtti: ctest" stage_scalar
    stage "5/9 Meson: build, meson test" stage_meson
    stage "6/9 install + tests/consumer (find_package, pkg-config)" stage_install
    stage "7/9 libFuzzer targets with address,undefined sanitizers" stage_fuzz
    stage "8/9 aarch64 NEON under qemu" stage_neon
    stage "9/9 valgrind memcheck: minigpt-generate" stage_valgrind
    header "summary"
    PASSED="$(awk '$1 == "pass" { n += $2 } END { print n + 0 }' "$RESULTS")"
    FAILED="$(fail_count)"
    if [ "$FAILED" -ne 0 ]; then
        echo "failed:"
        awk '$1 == "fail" { print "  " $3 ($2 > 1 ? " (" $2 ")" : "") }' "$RESULTS"
    fi
    echo "test-all: $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}

main "$@"
exit $?
