// Matrix-vector / matrix-matrix kernel benchmarks (Google Benchmark).
//
//   g++ -O2 -march=native -std=c++17 -I. bench/bench_kernels.cpp -o bench_kernels -lbenchmark -lpthread
//
// Every case runs matmul_rows (or the packed GEMM, gemm_*) over all rows of one
// weight matrix on one thread.
// bytes_per_second is the weight bytes read (the bound for decode, m=1);
// items_per_second is floating-point operations (2 per multiply-add).
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

namespace {

using minigpt::detail::Type;
namespace md = minigpt::detail;

using MatmulFn = void (*)(Type, const void*, size_t, int64_t, int64_t, int64_t, const void*, size_t, int64_t, float*,
                          int64_t, int64_t);

// Quick deterministic pseudo-random floats in about [-1, 1).
struct Lcg {
    uint64_t s;
    float next() {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        return static_cast<float>(static_cast<int32_t>(s >> 32)) * (1.0f / 2147483648.0f);
    }
};

struct Problem {
    std::vector<uint8_t> W, A;
    std::vector<float> Y;
    size_t wrb = 0, arb = 0;
};

// Types quantize_row cannot produce as weights get random bytes with a small
// fp16 scale (and min) written into every block.
bool has_weight_quantizer(Type t) {
    return t == Type::F32 || t == Type::F16 || t == Type::BF16 || t == Type::Q8_0 || t == Type::Q4_0;
}
void random_blocks(Type t, Lcg& rng, uint8_t* row, size_t bytes) {
    for (size_t i = 0; i < bytes; ++i) row[i] = static_cast<uint8_t>(rng.next() * 128.0f + 128.0f);
    int od = 0, om = -1;
    switch (t) {
        case Type::Q4_1: case Type::Q5_1: case Type::Q4_K: case Type::Q5_K: om = 2; break;
        case Type::Q2_K: od = offsetof(md::BlockQ2_K, d), om = offsetof(md::BlockQ2_K, dmin); break;
        case Type::Q3_K: od = offsetof(md::BlockQ3_K, d); break;
        case Type::Q6_K: od = offsetof(md::BlockQ6_K, d); break;
        default: break;
    }
    const size_t bb = md::type_info(t).block_bytes;
    const uint16_t h = md::fp32_to_fp16(0.01f);
    for (size_t off = 0; off + bb <= bytes; off += bb) {
        std::memcpy(row + off + od, &h, 2);
        if (om >= 0) std::memcpy(row + off + om, &h, 2);
    }
}

// Weights and activations are built once per (type, rows, cols, m) and reused.
const Problem& problem(Type t, int64_t rows, int64_t n, int64_t m) {
    static std::map<std::tuple<int, int64_t, int64_t, int64_t>, std::unique_ptr<Problem>> cache;
    auto key = std::make_tuple(static_cast<int>(t), rows, n, m);
    auto it = cache.find(key);
    if (it != cache.end()) return *it->second;
    auto p = std::make_unique<Problem>();
    const Type at = md::vec_dot_type(t);
    p->wrb = md::row_bytes(t, n);
    p->arb = md::row_bytes(at, n);
    p->W.resize(p->wrb * rows);
    p->A.resize(p->arb * m);
    p->Y.resize(static_cast<size_t>(rows * m));
    Lcg rng{static_cast<uint64_t>(rows * 31 + n)};
    std::vector<float> tmp(static_cast<size_t>(n));
    for (int64_t r = 0; r < rows; ++r) {
        if (!has_weight_quantizer(t)) {
            random_blocks(t, rng, p->W.data() + r * p->wrb, p->wrb);
            continue;
        }
        for (auto& v : tmp) v = rng.next();
        md::quantize_row(t, tmp.data(), p->W.data() + r * p->wrb, n);
    }
    for (int64_t j = 0; j < m; ++j) {
        for (auto& v : tmp) v = rng.next();
        md::quantize_row(at, tmp.data(), p->A.data() + j * p->arb, n);
    }
    return *(cache[key] = std::move(p));
}

void run_matmul(benchmark::State& state, MatmulFn fn, Type t, int64_t rows, int64_t n, int64_t m) {
    const Problem& p = problem(t, rows, n, m);
    std::vector<float> Y(static_cast<size_t>(rows * m));
    for (auto _ : state) {
        fn(t, p.W.data(), p.wrb, n, 0, rows, p.A.data(), p.arb, m, Y.data(), rows, 0);
        benchmark::DoNotOptimize(Y.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(p.wrb) * rows);
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 2 * rows * n * m);
}

// The packed GEMM of prompt processing: packing the m activation rows plus
// the product over all weight rows, on one thread.
void run_gemm(benchmark::State& state, Type t, int64_t rows, int64_t n, int64_t m) {
    const Problem& p = problem(t, rows, n, m);
    const md::GemmKind kind = md::gemm_kind(t, n);
    md::Buffer<uint8_t> panels, tile;
    if (kind == md::GemmKind::none || !panels.allocate(md::gemm_panel_bytes(t, n, m)) ||
        !tile.allocate(md::gemm_tile_bytes(t, n))) {
        state.SkipWithError("no packed GEMM for this type in this build");
        return;
    }
    std::vector<float> Y(static_cast<size_t>(rows * m));
    const int64_t n_panels = (m + md::kGemmCols - 1) / md::kGemmCols;
    for (auto _ : state) {
        md::gemm_pack_panels(t, p.A.data(), p.arb, n, m, 0, n_panels, panels.data());
        md::gemm_rows(t, p.W.data(), p.wrb, n, 0, rows, panels.data(), m, Y.data(), rows, tile.data());
        benchmark::DoNotOptimize(Y.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(p.wrb) * rows);
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 2 * rows * n * m);
}

// Activation conversion to Q8_0 (done once per matmul input in the forward pass).
void run_quantize_q8_0(benchmark::State& state, int64_t n) {
    std::vector<float> x(static_cast<size_t>(n));
    Lcg rng{7};
    for (auto& v : x) v = rng.next();
    std::vector<uint8_t> y(md::row_bytes(Type::Q8_0, n));
    for (auto _ : state) {
        md::quantize_row(Type::Q8_0, x.data(), y.data(), n);
        benchmark::DoNotOptimize(y.data());
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * n * 4);
}

}  // namespace

int main(int argc, char** argv) {
    const Type types[] = {Type::F32,  Type::F16,  Type::BF16,   Type::Q8_0, Type::Q4_0, Type::Q4_1, Type::Q5_0,
                          Type::Q5_1, Type::IQ4_NL, Type::Q2_K, Type::Q3_K, Type::Q4_K, Type::Q5_K, Type::Q6_K};
    struct Shape {
        int64_t rows, cols;
    };
    const Shape shapes[] = {{4096, 4096}, {1536, 768}};
    for (const Shape& s : shapes) {
        for (Type t : types) {
            const std::string base = std::string(md::type_name(t)) + "/" + std::to_string(s.rows) + "x" +
                                     std::to_string(s.cols);
            // Scalar reference only for decode (m=1): it is slow.
            benchmark::RegisterBenchmark(("matvec_scalar/" + base + "/m1").c_str(), run_matmul,
                                         md::scalar::matmul_rows, t, s.rows, s.cols, int64_t(1))
                ->Unit(benchmark::kMicrosecond);
            for (int64_t m : {int64_t(1), int64_t(32)}) {
                benchmark::RegisterBenchmark(
                    (std::string("matmul_") + md::simd_name() + "/" + base + "/m" + std::to_string(m)).c_str(),
                    run_matmul, md::matmul_rows, t, s.rows, s.cols, m)
                    ->Unit(benchmark::kMicrosecond);
            }
            if (md::gemm_kind(t, s.cols) != md::GemmKind::none)
                benchmark::RegisterBenchmark((std::string("gemm_") + md::simd_name() + "/" + base + "/m128").c_str(),
                                             run_gemm, t, s.rows, s.cols, int64_t(128))
                    ->Unit(benchmark::kMicrosecond);
        }
    }
    benchmark::RegisterBenchmark("quantize_q8_0/4096", run_quantize_q8_0, int64_t(4096));
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    std::printf("kernels: %s\n", md::simd_name());
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
