// config: version, platform and SIMD selection, configuration macros.
#pragma once

#define MINIGPT_VERSION_MAJOR 0
#define MINIGPT_VERSION_MINOR 1
#define MINIGPT_VERSION_PATCH 0
#define MINIGPT_VERSION_STRING "0.1.0"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#if __cplusplus < 201703L && !(defined(_MSVC_LANG) && _MSVC_LANG >= 201703L)
#error "minigpt.hpp needs C++17"
#endif

// The public names live in a versioned inline namespace so that two copies of
// different versions can be linked into one program without colliding.
#define MINIGPT_NS_BEGIN namespace minigpt { inline namespace v0 {
#define MINIGPT_NS_END } }

// SIMD selection happens at compile time from the compiler's target flags.
#if !defined(MINIGPT_NO_SIMD)
#  if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
      defined(__AVX512DQ__) && defined(__FMA__) && defined(__F16C__) && !defined(MINIGPT_NO_AVX512)
#    define MINIGPT_AVX512 1
#  endif
#  if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#    define MINIGPT_AVX2 1
#  endif
#  if (defined(__ARM_NEON) || defined(__ARM_NEON__)) && defined(__aarch64__) && !defined(MINIGPT_NO_NEON)
#    define MINIGPT_NEON 1
#  endif
#endif

#if defined(MINIGPT_NO_THREADS)
#  define MINIGPT_THREADS 0
#else
#  define MINIGPT_THREADS 1
#endif

#if defined(MINIGPT_MALLOC) != defined(MINIGPT_FREE)
#error "define MINIGPT_MALLOC and MINIGPT_FREE together, or neither"
#endif

#if !defined(MINIGPT_ASSERT)
#  include <cassert>
#  define MINIGPT_ASSERT(x) assert(x)
#endif

// Unrolling hint for the SIMD kernels' register tiles: an array of accumulators
// indexed by a loop variable stays in registers only when the loop is unrolled.
#if defined(__clang__)
#  define MINIGPT_PRAGMA(x) _Pragma(#x)
#  define MINIGPT_UNROLL(n) MINIGPT_PRAGMA(unroll n)
#elif defined(__GNUC__)
#  define MINIGPT_PRAGMA(x) _Pragma(#x)
#  define MINIGPT_UNROLL(n) MINIGPT_PRAGMA(GCC unroll n)
#else
#  define MINIGPT_UNROLL(n)
#endif

#if defined(_WIN32)
#  define MINIGPT_WINDOWS 1
#endif
