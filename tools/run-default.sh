#!/usr/bin/env bash
# Builds minigpt-generate (CMake, Release, build/release) and runs it on the
# stories260K test model with the prompt "Once upon a time". Extra arguments
# are passed to minigpt-generate, e.g. `bash tools/run-default.sh -n 64`.
#
# Environment: MINIGPT_DATA_DIR (default ../shared/data from the repository root),
#              JOBS (default 2).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=tools/deps.sh
source tools/deps.sh
minigpt_install_deps build

JOBS="${JOBS:-2}"
DATA_DIR="$(realpath -m "${MINIGPT_DATA_DIR:-../shared/data}")"
MODEL="$DATA_DIR/models/stories260K.gguf"
DIR="$ROOT/build/release"

cmake -S . -B "$DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DMINIGPT_BUILD_TESTS=OFF -DMINIGPT_BUILD_BENCH=OFF -DMINIGPT_BUILD_EXAMPLES=ON \
    -DMINIGPT_DATA_DIR="$DATA_DIR" >/dev/null
cmake --build "$DIR" -j"$JOBS" --target minigpt-generate

if [ ! -f "$MODEL" ]; then
    echo "run-default: model not found: $MODEL (set MINIGPT_DATA_DIR to the test data directory)" >&2
    exit 1
fi
exec "$DIR/minigpt-generate" -m "$MODEL" -p "Once upon a time" "$@"
