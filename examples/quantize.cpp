// minigpt-quantize: converts the weights of a GGUF model to another type, the
// way llama.cpp's llama-quantize does without an importance matrix.
//
//   minigpt-quantize IN.gguf OUT.gguf TYPE [--pure]
//
// TYPE: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL
// (any case). Norms, biases and other 1-D tensors keep their type. With --pure
// every 2-D weight gets TYPE; without it llama.cpp's default mixture for the
// file type is used (Q3_K/Q4_K/Q5_K mean Q3_K_M/Q4_K_M/Q5_K_M, output.weight
// becomes Q6_K for the quantized types, ...). Rows whose length does not fit
// the type's block fall back as llama.cpp does (Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0,
// Q5_K -> Q5_1, Q6_K -> Q8_0, then F16).
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"
#include "common.hpp"

#include <string>

namespace {

using namespace examples;
namespace md = minigpt::detail;

void usage(FILE* out) {
    std::fprintf(out,
                 "usage: minigpt-quantize IN.gguf OUT.gguf TYPE [--pure]\n"
                 "\n"
                 "Converts the weights of a GGUF model to TYPE.\n"
                 "\n"
                 "TYPE: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL\n"
                 "      (Q3_K, Q4_K and Q5_K give llama.cpp's _M mixtures unless --pure)\n"
                 "\n"
                 "options:\n"
                 "  -h, --help   show this help and exit\n"
                 "  --pure       every 2-D weight gets TYPE (no mixture)\n");
}

std::string shape_string(const md::QuantizeTensorReport& r) {
    std::string s = "[";
    for (int d = 0; d < r.n_dims; ++d) {
        if (d) s += ", ";
        s += std::to_string(r.ne[d]);
    }
    return s + "]";
}

}  // namespace

int main(int argc, char** argv) {
    prog_name() = "minigpt-quantize";
    std::vector<std::string> pos;
    bool pure = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "-h" || a == "--help") {
            usage(stdout);
            return 0;
        } else if (a == "--pure") {
            pure = true;
        } else if (a.size() > 1 && a[0] == '-') {
            fail("unknown option " + a + " (see --help)");
        } else {
            pos.push_back(a);
        }
    }
    if (pos.size() != 3) {
        usage(stderr);
        fail("expected IN.gguf OUT.gguf TYPE");
    }
    md::Type type;
    if (!md::parse_quant_type(pos[2], type))
        fail("unknown type '" + pos[2] + "' (use F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL)");

    md::FileBytes bytes;
    minigpt::Status st = bytes.open(pos[0], true);
    if (!st.ok()) fail(st.to_string());
    md::GgufFile in;
    st = in.parse(bytes.data(), bytes.size());
    if (!st.ok()) fail(pos[0] + ": " + st.to_string());

    std::printf("%s: %s -> %s, type %s%s (file type %d)\n", prog_name(), pos[0].c_str(), pos[1].c_str(),
                md::type_name(type), pure ? " --pure" : "", md::quant_ftype_of(type));
    uint64_t total_in = 0, total_out = 0;
    const auto t0 = std::chrono::steady_clock::now();
    md::GgufWriter out;
    st = md::quantize_model(in, type, pure, out, [&](const md::QuantizeTensorReport& r) {
        total_in += r.bytes_in;
        total_out += r.bytes_out;
        std::printf("[%3d/%3d] %-36s %-18s %6s -> %-6s %9.3f MiB -> %9.3f MiB\n", r.index + 1, r.count, r.name.c_str(),
                    shape_string(r).c_str(), md::type_name(r.type_in), md::type_name(r.type_out), mib(r.bytes_in),
                    mib(r.bytes_out));
        std::fflush(stdout);
    });
    if (!st.ok()) fail(pos[0] + ": " + st.to_string());
    st = out.write_file(pos[1]);
    if (!st.ok()) fail(st.to_string());
    std::printf("tensor data: %.3f MiB -> %.3f MiB (%.1f%%), %.0f ms\n", mib(total_in), mib(total_out),
                total_in ? 100.0 * static_cast<double>(total_out) / static_cast<double>(total_in) : 0.0, ms_since(t0));
    return 0;
}
