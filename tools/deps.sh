# shellcheck shell=bash
# Installs the build and test dependencies that are missing (Debian/Ubuntu).
# Sourced by tools/test-all.sh and tools/run-default.sh; defines minigpt_install_deps.
# Usage: minigpt_install_deps [all|build]
#   build: compiler, CMake, Ninja (enough for tools/run-default.sh)
#   all:   also clang (+ sanitizer and libFuzzer runtimes), Meson, Python 3, pkg-config,
#          doctest, Google Benchmark, valgrind, the aarch64 cross-compiler and qemu-user

# Prints the Debian packages of the given set that are not installed yet.
minigpt_missing_packages() {
    local set="${1:-all}"
    local missing=()
    command -v g++ >/dev/null 2>&1 || missing+=(g++)
    command -v cmake >/dev/null 2>&1 || missing+=(cmake)
    command -v ninja >/dev/null 2>&1 || missing+=(ninja-build)
    if [ "$set" = all ]; then
        command -v clang++ >/dev/null 2>&1 || missing+=(clang)
        command -v meson >/dev/null 2>&1 || missing+=(meson)
        command -v python3 >/dev/null 2>&1 || missing+=(python3)
        [ -f /usr/include/doctest/doctest.h ] || missing+=(doctest-dev)
        [ -f /usr/include/benchmark/benchmark.h ] || missing+=(libbenchmark-dev)
        # UnicodeData.txt and PropList.txt, for tests/test_unicode.cpp and tools/gen_unicode.py.
        [ -f /usr/share/unicode/UnicodeData.txt ] || missing+=(unicode-data)
        command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
        # tools/test-valgrind.sh and tools/test-neon.sh (aarch64 cross-compiler, qemu).
        command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
        command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || missing+=(g++-aarch64-linux-gnu)
        command -v qemu-aarch64 >/dev/null 2>&1 || missing+=(qemu-user)
        # The sanitizer runtimes of clang are only "recommended" by the clang package.
        if command -v dpkg-query >/dev/null 2>&1 &&
            ! dpkg-query -W -f='${Status}' libclang-rt-dev 2>/dev/null | grep -q 'ok installed'; then
            missing+=(libclang-rt-dev)
        fi
    fi
    echo "${missing[@]+"${missing[@]}"}"
}

minigpt_install_deps() {
    local missing
    missing="$(minigpt_missing_packages "${1:-all}")"
    if [ -z "$missing" ]; then
        return 0
    fi
    echo "deps: installing $missing"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "deps: apt-get not found; install these yourself: $missing" >&2
        return 1
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "deps: not root and no sudo; install these yourself: $missing" >&2
            return 1
        fi
    fi
    # shellcheck disable=SC2086
    "${sudo[@]+"${sudo[@]}"}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        "${sudo[@]+"${sudo[@]}"}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
}
