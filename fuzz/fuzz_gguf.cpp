// Fuzz target: the GGUF reader over arbitrary bytes.
//
// Every file the reader accepts is walked completely (metadata getters, array
// elements, every byte of every tensor) so that AddressSanitizer sees any
// extent the reader failed to check, and is then written back with
// GgufWriter: the copy must parse again with the same keys and tensors.
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"
#include "fuzz_util.hpp"

#include <cstdint>
#include <cstring>
#include <vector>

namespace md = minigpt::detail;

namespace {

// Touches the bytes so that a read outside the input is reported.
volatile uint8_t g_sink;

void touch(const uint8_t* p, size_t n) {
    uint8_t acc = 0;
    for (size_t i = 0; i < n; ++i) acc = static_cast<uint8_t>(acc + p[i]);
    g_sink = acc;
}

void walk(const md::GgufFile& f) {
    for (const md::GgufKV& kv : f.kvs) {
        minigpt::Status st;
        int64_t i64;
        double d;
        bool b;
        std::string_view sv;
        f.get_int(kv.key, i64, st);
        f.get_float(kv.key, d, st);
        f.get_bool(kv.key, b, st);
        if (f.get_string(kv.key, sv, st)) touch(reinterpret_cast<const uint8_t*>(sv.data()), sv.size());
        if (const md::GgufKV* arr = f.get_array(kv.key, st)) {
            if (arr->elem == md::GgufType::string) {
                FUZZ_CHECK(arr->strings.size() == arr->length, "key '%s': %zu strings parsed, %llu declared",
                           kv.key.c_str(), arr->strings.size(), (unsigned long long)arr->length);
                for (std::string_view s : arr->strings) touch(reinterpret_cast<const uint8_t*>(s.data()), s.size());
            } else {
                uint64_t n = arr->length < 4096 ? arr->length : 4096;
                for (uint64_t k = 0; k < n; ++k) {
                    d = md::GgufFile::array_number(*arr, k);
                    i64 = md::GgufFile::array_int(*arr, k);
                }
                if (arr->length) {
                    // The last element must lie inside the file.
                    d = md::GgufFile::array_number(*arr, arr->length - 1);
                }
            }
        }
        (void)i64;
        (void)d;
        (void)b;
    }
    for (const md::GgufTensor& t : f.tensors) {
        FUZZ_CHECK(t.data >= f.base() && t.nbytes <= static_cast<uint64_t>(f.base() + f.size() - t.data),
                   "tensor '%s' lies outside the file", t.name.c_str());
        touch(t.data, static_cast<size_t>(t.nbytes));
        FUZZ_CHECK(f.find_tensor(t.name) == &t, "tensor '%s' is not found by name", t.name.c_str());
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    md::GgufFile f;
    minigpt::Status st = f.parse(data, size);
    if (!st.ok()) {
        FUZZ_CHECK(!st.message().empty(), "an error without a message");
        return 0;
    }
    walk(f);

    // Write it back and parse the copy.
    md::GgufWriter w;
    for (const md::GgufKV& kv : f.kvs) {
        st = w.copy_kv(f, kv);
        FUZZ_CHECK(st.ok(), "copy_kv('%s') failed on a parsed file: %s", kv.key.c_str(), st.to_string().c_str());
    }
    for (const md::GgufTensor& t : f.tensors) {
        std::vector<int64_t> ne(t.ne, t.ne + t.n_dims);
        st = w.add_tensor_view(t.name, static_cast<md::Type>(t.type), ne, t.data, static_cast<size_t>(t.nbytes));
        FUZZ_CHECK(st.ok(), "add_tensor_view('%s') failed on a parsed file: %s", t.name.c_str(),
                   st.to_string().c_str());
    }
    // The copy holds the input's keys and tensor bytes plus at most one
    // alignment (no larger than the input) of padding per tensor.
    std::vector<uint8_t> copy = w.bytes();
    md::GgufFile g;
    st = g.parse(copy.data(), copy.size());
    FUZZ_CHECK(st.ok(), "the written copy does not parse: %s", st.to_string().c_str());
    FUZZ_CHECK(g.kvs.size() == f.kvs.size() && g.tensors.size() == f.tensors.size(),
               "the copy has %zu keys / %zu tensors instead of %zu / %zu", g.kvs.size(), g.tensors.size(),
               f.kvs.size(), f.tensors.size());
    for (size_t i = 0; i < f.tensors.size(); ++i) {
        const md::GgufTensor& a = f.tensors[i];
        const md::GgufTensor* b = g.find_tensor(a.name);
        FUZZ_CHECK(b && b->type == a.type && b->nbytes == a.nbytes, "tensor '%s' changed in the copy", a.name.c_str());
        FUZZ_CHECK(a.nbytes == 0 || std::memcmp(a.data, b->data, static_cast<size_t>(a.nbytes)) == 0,
                   "tensor '%s': data changed in the copy", a.name.c_str());
    }
    for (const md::GgufKV& kv : f.kvs) {
        const md::GgufKV* o = g.find(kv.key);
        FUZZ_CHECK(o && o->type == kv.type && o->length == kv.length, "key '%s' changed in the copy", kv.key.c_str());
    }
    return 0;
}
