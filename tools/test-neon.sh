#!/usr/bin/env bash
# Cross-compiles the kernel and model tests for AArch64 and runs them under
# qemu-user, once per -march variant:
#   armv8-a                  NEON baseline (no SDOT, fp16 by conversion)
#   armv8.2-a+dotprod+fp16   SDOT integer dot products, fp16 vector arithmetic
# The header alone is compiled with -fno-exceptions -fno-rtti (first variant);
# for each variant, tests/test_kernels.cpp (every NEON kernel against the scalar ones) and
# tests/test_model.cpp (all of it for the dotprod variant, the golden-logits
# cases for the baseline), all with -O2 -Wall -Wextra -Werror, statically
# linked. A test runs under qemu while the next binary compiles (at most one
# of each at a time). Exits non-zero when anything fails to build or a test fails.
#
#   tools/test-neon.sh [build-dir]      (default: build/neon in the repository)
#
# Environment:
#   MINIGPT_DATA_DIR  the test data directory (default ../shared/data from the repository root)
#   NEON_MARCHS       space-separated -march values (default: the two above)
#   NEON_MODEL_FULL   1: run all of test_model.cpp for every variant
#   AARCH64_CXX       the cross compiler (default aarch64-linux-gnu-g++)
#   QEMU              the user-mode emulator (default qemu-aarch64, else qemu-aarch64-static)
# Missing tools (g++-aarch64-linux-gnu, qemu-user, doctest-dev) are installed
# with apt-get the way tools/deps.sh does it.
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
BUILD="${1:-$ROOT/build/neon}"
DATA_DIR="$(realpath -m "${MINIGPT_DATA_DIR:-../shared/data}")"
MARCHS="${NEON_MARCHS:-armv8-a armv8.2-a+dotprod+fp16}"
CROSS="${AARCH64_CXX:-aarch64-linux-gnu-g++}"
START=$SECONDS

# shellcheck source=tools/deps.sh
source "$ROOT/tools/deps.sh"

# shellcheck disable=SC2317  # called from minigpt_install_deps
# The packages this script needs that are missing. It replaces the package
# list of tools/deps.sh in this process only, so that minigpt_install_deps
# installs these.
minigpt_missing_packages() {
    local missing=()
    command -v "$CROSS" >/dev/null 2>&1 || missing+=(g++-aarch64-linux-gnu)
    if [ -z "${QEMU:-}" ] && ! command -v qemu-aarch64 >/dev/null 2>&1 &&
        ! command -v qemu-aarch64-static >/dev/null 2>&1; then
        missing+=(qemu-user)
    fi
    [ -f /usr/include/doctest/doctest.h ] || missing+=(doctest-dev)
    echo "${missing[@]+"${missing[@]}"}"
}
minigpt_install_deps neon || { echo "test-neon: missing tools could not be installed" >&2; exit 2; }

if [ -z "${QEMU:-}" ]; then
    if command -v qemu-aarch64 >/dev/null 2>&1; then QEMU=qemu-aarch64; else QEMU=qemu-aarch64-static; fi
fi
for tool in "$CROSS" "$QEMU"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "test-neon: $tool not found" >&2; exit 2; }
done
if [ ! -d "$DATA_DIR" ]; then
    echo "test-neon: test data directory $DATA_DIR not found (set MINIGPT_DATA_DIR)" >&2
    exit 2
fi

mkdir -p "$BUILD/include"
# The cross compiler does not search /usr/include; doctest is header-only, so
# a directory holding just a link to it is enough.
ln -sfn /usr/include/doctest "$BUILD/include/doctest"
cat >"$BUILD/header_only.cpp" <<'EOF'
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"
int main() {
    using namespace minigpt::detail;
    const float x[5] = {1, 2, 3, 4, 5};
    return vec_dot_fn(Type::Q4_K) != nullptr && dot_f32(x, x, 5) == 55.0f ? 0 : 1;
}
EOF

FLAGS=(-std=c++17 -O2 -Wall -Wextra -Werror -I"$ROOT" -I"$ROOT/tests" -isystem "$BUILD/include"
    -DMINIGPT_TEST_DATA_DIR="\"$DATA_DIR\"")
SYSROOT=/usr/aarch64-linux-gnu
RESULTS="$BUILD/results"
: >"$RESULTS"

# Results are lines "pass|fail <label>" in $RESULTS, so that the test runs,
# which go on in the background while the next binary compiles, can add theirs.
ok() { echo "pass $1" >>"$RESULTS"; echo "  ok    $1 ($((SECONDS - START))s)"; }
bad() {
    echo "fail $1" >>"$RESULTS"
    echo "  FAIL  $1 (log: $2)"
    tail -n 30 "$2" | sed 's/^/        /'
}

# compile <label> <log> <g++ arguments...>
compile() {
    local label="$1" log="$2"
    shift 2
    if nice -n 5 "$CROSS" "$@" >"$log" 2>&1; then ok "$label"; return 0; fi
    bad "$label" "$log"
    return 1
}

# run <label> <log> <binary> [doctest arguments...]
run() {
    local label="$1" log="$2" bin="$3"
    shift 3
    if "$QEMU" -L "$SYSROOT" "$bin" "$@" >"$log" 2>&1; then
        ok "$label [$(grep -o 'assertions: *[0-9]*' "$log" | tr -s ' ')]"
        return 0
    fi
    bad "$label" "$log"
    return 1
}

# At most one test runs in the background while the next compile goes on.
RUNNER=
run_bg() {
    wait_runner
    run "$@" &
    RUNNER=$!
}
wait_runner() {
    if [ -n "$RUNNER" ]; then wait "$RUNNER" || true; fi
    RUNNER=
}

# The kernel test: every kernel set, plus a check that dispatch picked NEON.
run_kernels() {
    local dir="$1" label="$2"
    if run "$label" "$dir/test_kernels.log" "$dir/test_kernels"; then
        if grep -q "kernels: NEON" "$dir/test_kernels.log"; then
            ok "$label: dispatch uses the NEON kernels"
        else
            bad "$label: dispatch uses the NEON kernels" "$dir/test_kernels.log"
        fi
    fi
}

first=1
for march in $MARCHS; do
    tag="${march//[^A-Za-z0-9.]/_}"
    dir="$BUILD/$tag"
    mkdir -p "$dir"
    echo "== -march=$march ($((SECONDS - START))s)"

    if [ "$first" = 1 ]; then
        compile "$march: header alone, -fno-exceptions -fno-rtti" "$dir/header.log" "${FLAGS[@]}" \
            -march="$march" -fno-exceptions -fno-rtti -c "$BUILD/header_only.cpp" -o "$dir/header_only.o"
    fi
    first=0

    if compile "$march: build test_kernels" "$dir/test_kernels.build.log" "${FLAGS[@]}" -march="$march" \
        "$ROOT/tests/test_kernels.cpp" -o "$dir/test_kernels" -static -pthread; then
        wait_runner
        run_kernels "$dir" "$march: test_kernels" &
        RUNNER=$!
    fi

    # The baseline build runs the golden-logits cases; test_kernels already
    # compares each of its kernels with the scalar ones.
    model_args=()
    if [ "${NEON_MODEL_FULL:-0}" != 1 ] && [[ "$march" != *dotprod* ]]; then
        model_args=(-tc="golden logits*")
    fi
    if compile "$march: build test_model" "$dir/test_model.build.log" "${FLAGS[@]}" -march="$march" \
        "$ROOT/tests/test_model.cpp" -o "$dir/test_model" -static -pthread; then
        label="$march: test_model"
        if [ "${#model_args[@]}" -gt 0 ]; then label+=" ${model_args[*]}"; fi
        run_bg "$label" "$dir/test_model.log" "$dir/test_model" "${model_args[@]+"${model_args[@]}"}"
    fi
done
wait_runner

passed=$(grep -c '^pass ' "$RESULTS")
failed=$(grep -c '^fail ' "$RESULTS")
echo "test-neon: $passed passed, $failed failed ($((SECONDS - START))s)"
if [ "$failed" -ne 0 ]; then
    sed -n 's/^fail /  failed: /p' "$RESULTS"
    exit 1
fi
exit 0
