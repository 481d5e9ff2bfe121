// GGUF reader and writer: round trips, the shared test files, malformed files
// (each asserted to fail with a message that names the problem), a random
// mutation loop, and model files that are valid GGUF but not valid models.
#define MINIGPT_IMPLEMENTATION
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "minigpt.hpp"
#include "test_util.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

using namespace minigpt;
using minigpt::detail::GgufFile;
using minigpt::detail::GgufKV;
using minigpt::detail::GgufTensor;
using minigpt::detail::GgufType;
using minigpt::detail::GgufWriter;
using minigpt::detail::Type;

namespace {

using Bytes = std::vector<uint8_t>;

// memcmp that accepts empty (possibly null) ranges.
bool same_bytes(const uint8_t* a, const uint8_t* b, uint64_t n) {
    return n == 0 || std::memcmp(a, b, static_cast<size_t>(n)) == 0;
}

// Parses a copy of the bytes held in an allocation of exactly their size, so
// that AddressSanitizer reports any read past the end.
struct Parsed {
    std::unique_ptr<uint8_t[]> buf;
    size_t size = 0;
    GgufFile file;
    Status st;
};

std::unique_ptr<Parsed> parse_bytes(const uint8_t* data, size_t n) {
    std::unique_ptr<Parsed> p(new Parsed);
    p->buf.reset(new uint8_t[n ? n : 1]);
    if (n) std::memcpy(p->buf.get(), data, n);
    p->size = n;
    p->st = p->file.parse(p->buf.get(), n);
    return p;
}
std::unique_ptr<Parsed> parse_bytes(const Bytes& b) { return parse_bytes(b.data(), b.size()); }

// Offset of the first occurrence of `s` in b (the test files are built so that
// names are unique).
size_t find_str(const Bytes& b, const std::string& s) {
    auto it = std::search(b.begin(), b.end(), s.begin(), s.end());
    REQUIRE_MESSAGE(it != b.end(), "'" << s << "' not found in the file");
    return static_cast<size_t>(it - b.begin());
}

template <typename T>
void poke(Bytes& b, size_t off, T v) {
    REQUIRE(off + sizeof(T) <= b.size());
    std::memcpy(b.data() + off, &v, sizeof(T));
}
template <typename T>
T peek(const Bytes& b, size_t off) {
    REQUIRE(off + sizeof(T) <= b.size());
    T v;
    std::memcpy(&v, b.data() + off, sizeof(T));
    return v;
}

// Where a metadata entry's fields are, found from its key.
struct KvPos {
    size_t key_len;  // the u64 length before the key
    size_t type;     // u32 value type
    size_t value;    // start of the value
};
KvPos kv_pos(const Bytes& b, const std::string& key) {
    size_t k = find_str(b, key);
    REQUIRE(k >= 8);
    REQUIRE(peek<uint64_t>(b, k - 8) == key.size());
    return {k - 8, k + key.size(), k + key.size() + 4};
}

// Where a tensor info entry's fields are, found from its name.
struct TensorPos {
    size_t name_len, n_dims, dims, type, offset;
};
TensorPos tensor_pos(const Bytes& b, const std::string& name) {
    size_t k = find_str(b, name);
    REQUIRE(k >= 8);
    REQUIRE(peek<uint64_t>(b, k - 8) == name.size());
    TensorPos p;
    p.name_len = k - 8;
    p.n_dims = k + name.size();
    uint32_t nd = peek<uint32_t>(b, p.n_dims);
    REQUIRE(nd >= 1);
    REQUIRE(nd <= 4);
    p.dims = p.n_dims + 4;
    p.type = p.dims + 8 * nd;
    p.offset = p.type + 4;
    return p;
}

Bytes pattern(size_t n, uint32_t seed) {
    Bytes v(n);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; ++i) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v[i] = static_cast<uint8_t>(x);
    }
    return v;
}

void add(GgufWriter& w, const std::string& name, Type type, std::vector<int64_t> ne, uint32_t seed) {
    detail::TypeInfo ti = detail::type_info(type);
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    Bytes data = pattern(static_cast<size_t>(n / ti.block_size) * ti.block_bytes, seed);
    Status st = w.add_tensor(name, type, ne, data.data(), data.size());
    REQUIRE_MESSAGE(st.ok(), st.to_string());
}

// A small valid file with every kind of entry the malformed cases patch.
GgufWriter small_writer() {
    GgufWriter w;
    w.set_string("general.architecture", "test");
    w.set_u32("test.count", 7);
    w.set_array("tok.list", std::vector<std::string>{"ab", "cde", ""});
    w.set_array("test.f32s", std::vector<float>{1.5f, -2.0f, 3.25f});
    w.set_string("dup.key1", "x");
    w.set_string("dup.key2", "y");
    add(w, "t.aaa", Type::F32, {4, 2}, 1);
    add(w, "t.bbb", Type::Q8_0, {32, 2}, 2);
    add(w, "t.ccc", Type::F16, {3}, 3);
    return w;
}

// The malformed-file check: not ok, and the message mentions each of `needles`.
void expect_fail(const Bytes& b, std::initializer_list<const char*> needles, const char* what) {
    auto p = parse_bytes(b);
    INFO(std::string(what));
    INFO("message: " << p->st.to_string());
    CHECK_FALSE(p->st.ok());
    CHECK_FALSE(p->st.message().empty());
    for (const char* n : needles)
        CHECK_MESSAGE(p->st.message().find(n) != std::string::npos, "expected '" << std::string(n) << "'");
}

// Two parses of the same file give the same entries (pointers compared relative to each file's base).
void check_same(const GgufFile& a, const GgufFile& b) {
    CHECK(a.version == b.version);
    CHECK(a.alignment == b.alignment);
    CHECK(a.data_offset == b.data_offset);
    REQUIRE(a.kvs.size() == b.kvs.size());
    for (size_t i = 0; i < a.kvs.size(); ++i) {
        const GgufKV &x = a.kvs[i], &y = b.kvs[i];
        INFO("key " << x.key);
        CHECK(x.key == y.key);
        CHECK(x.type == y.type);
        CHECK(x.elem == y.elem);
        CHECK(x.length == y.length);
        CHECK(x.data - a.base() == y.data - b.base());
        REQUIRE(x.strings.size() == y.strings.size());
        size_t differ = 0;  // one assertion per key, not per string: vocabularies are large
        for (size_t k = 0; k < x.strings.size(); ++k) differ += x.strings[k] != y.strings[k];
        CHECK(differ == 0);
    }
    REQUIRE(a.tensors.size() == b.tensors.size());
    for (size_t i = 0; i < a.tensors.size(); ++i) {
        const GgufTensor &x = a.tensors[i], &y = b.tensors[i];
        INFO("tensor " << x.name);
        CHECK(x.name == y.name);
        CHECK(x.type == y.type);
        CHECK(x.n_dims == y.n_dims);
        for (int d = 0; d < 4; ++d) CHECK(x.ne[d] == y.ne[d]);
        CHECK(x.offset == y.offset);
        CHECK(x.nbytes == y.nbytes);
        CHECK(x.data - a.base() == y.data - b.base());
        CHECK(same_bytes(x.data, y.data, x.nbytes));
    }
    CHECK(a.size() == b.size());
    CHECK(same_bytes(a.base(), b.base(), a.size()));
}

// Rebuilds a parsed file with the writer: every entry and tensor copied.
Bytes rewrite(const GgufFile& f) {
    GgufWriter w;
    for (const GgufKV& kv : f.kvs) {
        Status st = w.copy_kv(f, kv);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
    }
    for (const GgufTensor& t : f.tensors) {
        std::vector<int64_t> ne(t.ne, t.ne + t.n_dims);
        Status st = w.add_tensor_view(t.name, static_cast<Type>(t.type), ne, t.data, static_cast<size_t>(t.nbytes));
        REQUIRE_MESSAGE(st.ok(), st.to_string());
    }
    return w.bytes();
}

// An array value nested `depth` levels deep, the innermost holding two u8:
// depth-1 headers "array of 1 array", then "array of 2 u8" and the bytes 1, 2.
Bytes nested_array_value(int depth) {
    Bytes v;
    auto put32 = [&v](uint32_t x) { v.insert(v.end(), reinterpret_cast<uint8_t*>(&x), reinterpret_cast<uint8_t*>(&x) + 4); };
    auto put64 = [&v](uint64_t x) { v.insert(v.end(), reinterpret_cast<uint8_t*>(&x), reinterpret_cast<uint8_t*>(&x) + 8); };
    for (int d = 1; d < depth; ++d) {
        put32(static_cast<uint32_t>(GgufType::array));
        put64(1);
    }
    put32(static_cast<uint32_t>(GgufType::u8));
    put64(2);
    v.push_back(1);
    v.push_back(2);
    return v;
}

std::vector<std::string> gguf_files_in(const std::string& dir) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
        if (e.path().extension() == ".gguf") out.push_back(e.path().string());
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// Writer -> reader round trips
// ---------------------------------------------------------------------------

TEST_CASE("gguf writer: every value type round-trips") {
    GgufWriter w;
    w.set_u8("v.u8", 250);
    w.set_i8("v.i8", -120);
    w.set_u16("v.u16", 65000);
    w.set_i16("v.i16", -32000);
    w.set_u32("v.u32", 4000000000u);
    w.set_i32("v.i32", -2000000000);
    w.set_u64("v.u64", 0x8000000000000001ull);
    w.set_i64("v.i64", -0x7000000000000000ll);
    w.set_f32("v.f32", 0.1f);
    w.set_f64("v.f64", -1e300);
    w.set_bool("v.true", true);
    w.set_bool("v.false", false);
    w.set_string("v.str", "hello");
    w.set_string("v.empty", "");
    w.set_string("v.binary", std::string("a\0b\xff", 4));
    w.set_array("a.u8", std::vector<uint8_t>{0, 255});
    w.set_array("a.i8", std::vector<int8_t>{-128, 127});
    w.set_array("a.u16", std::vector<uint16_t>{1, 65535});
    w.set_array("a.i16", std::vector<int16_t>{-32768, 5});
    w.set_array("a.u32", std::vector<uint32_t>{3, 4294967295u});
    w.set_array("a.i32", std::vector<int32_t>{-7, 2147483647});
    w.set_array("a.u64", std::vector<uint64_t>{9, 1ull << 60});
    w.set_array("a.i64", std::vector<int64_t>{-9, -(1ll << 60)});
    w.set_array("a.f32", std::vector<float>{0.5f, -3.0f, 1e-8f});
    w.set_array("a.f64", std::vector<double>{0.25, 1e200});
    w.set_array("a.bool", std::vector<bool>{true, false, true});
    w.set_array("a.empty", std::vector<int32_t>{});
    w.set_array("a.str", std::vector<std::string>{"x", "", "<0x0A>", std::string("\0z", 2)});
    w.set_array("a.strempty", std::vector<std::string>{});
    Bytes nested = nested_array_value(3);
    w.set_raw("a.nested", GgufType::array, nested.data(), nested.size());
    // Replacing keeps the first position.
    w.set_u32("v.replaced", 1);
    w.set_string("v.after", "after");
    w.set_i32("v.replaced", -5);
    CHECK(w.kv_count() == 32);
    CHECK(w.remove("v.after"));
    CHECK_FALSE(w.remove("v.after"));
    w.set_string("v.after", "again");

    Bytes b = w.bytes();
    auto p = parse_bytes(b);
    REQUIRE_MESSAGE(p->st.ok(), p->st.to_string());
    const GgufFile& f = p->file;
    CHECK(f.version == 3);
    CHECK(f.tensors.empty());
    CHECK(b.size() == 1022);  // no tensors: the file ends right after the metadata, unpadded
    CHECK(f.data_offset == 1024);
    REQUIRE(f.kvs.size() == 32);
    const char* order[] = {"v.u8", "v.i8", "v.u16", "v.i16", "v.u32", "v.i32", "v.u64", "v.i64",
                           "v.f32", "v.f64", "v.true", "v.false", "v.str", "v.empty", "v.binary", "a.u8",
                           "a.i8", "a.u16", "a.i16", "a.u32", "a.i32", "a.u64", "a.i64", "a.f32",
                           "a.f64", "a.bool", "a.empty", "a.str", "a.strempty", "a.nested", "v.replaced", "v.after"};
    for (size_t i = 0; i < 32; ++i) CHECK(f.kvs[i].key == order[i]);

    Status st;
    int64_t iv = 0;
    double dv = 0;
    bool bv = false;
    std::string_view sv;
    CHECK(f.get_int("v.u8", iv, st)); CHECK(iv == 250);
    CHECK(f.get_int("v.i8", iv, st)); CHECK(iv == -120);
    CHECK(f.get_int("v.u16", iv, st)); CHECK(iv == 65000);
    CHECK(f.get_int("v.i16", iv, st)); CHECK(iv == -32000);
    CHECK(f.get_int("v.u32", iv, st)); CHECK(iv == 4000000000ll);
    CHECK(f.get_int("v.i32", iv, st)); CHECK(iv == -2000000000);
    CHECK(f.get_int("v.i64", iv, st)); CHECK(iv == -0x7000000000000000ll);
    CHECK(f.get_int("v.replaced", iv, st)); CHECK(iv == -5);
    CHECK(f.find("v.replaced")->type == GgufType::i32);
    CHECK(st.ok());
    // A u64 above the int64 range is not an int64, and says so.
    CHECK_FALSE(f.get_int("v.u64", iv, st));
    CHECK(st.message().find("v.u64") != std::string::npos);
    st = Status();
    CHECK(detail::read_le<uint64_t>(f.find("v.u64")->data) == 0x8000000000000001ull);
    CHECK(f.get_float("v.f32", dv, st)); CHECK(dv == doctest::Approx(0.1).epsilon(1e-7));
    CHECK(detail::read_le<float>(f.find("v.f32")->data) == 0.1f);
    CHECK(f.get_float("v.f64", dv, st)); CHECK(dv == -1e300);
    CHECK(f.get_bool("v.true", bv, st)); CHECK(bv);
    CHECK(f.get_bool("v.false", bv, st)); CHECK_FALSE(bv);
    CHECK(f.get_string("v.str", sv, st)); CHECK(sv == "hello");
    CHECK(f.get_string("v.empty", sv, st)); CHECK(sv.empty());
    CHECK(f.get_string("v.binary", sv, st)); CHECK(sv == std::string_view("a\0b\xff", 4));
    CHECK(f.get_string("v.after", sv, st)); CHECK(sv == "again");
    CHECK(st.ok());
    // Wrong-type access reports the key.
    CHECK_FALSE(f.get_string("v.u8", sv, st));
    CHECK(st.message().find("v.u8") != std::string::npos);
    st = Status();

    auto arr = [&](const char* key, GgufType elem, uint64_t n) -> const GgufKV* {
        Status s;
        const GgufKV* kv = f.get_array(key, s);
        INFO(key);
        REQUIRE(kv != nullptr);
        CHECK(kv->elem == elem);
        CHECK(kv->length == n);
        return kv;
    };
    const GgufKV* a = arr("a.u8", GgufType::u8, 2);
    CHECK(GgufFile::array_int(*a, 0) == 0); CHECK(GgufFile::array_int(*a, 1) == 255);
    a = arr("a.i8", GgufType::i8, 2);
    CHECK(GgufFile::array_int(*a, 0) == -128); CHECK(GgufFile::array_int(*a, 1) == 127);
    a = arr("a.u16", GgufType::u16, 2);
    CHECK(GgufFile::array_int(*a, 1) == 65535);
    a = arr("a.i16", GgufType::i16, 2);
    CHECK(GgufFile::array_int(*a, 0) == -32768); CHECK(GgufFile::array_int(*a, 1) == 5);
    a = arr("a.u32", GgufType::u32, 2);
    CHECK(GgufFile::array_int(*a, 1) == 4294967295ll);
    a = arr("a.i32", GgufType::i32, 2);
    CHECK(GgufFile::array_int(*a, 0) == -7); CHECK(GgufFile::array_int(*a, 1) == 2147483647);
    a = arr("a.u64", GgufType::u64, 2);
    CHECK(GgufFile::array_int(*a, 1) == (1ll << 60));
    a = arr("a.i64", GgufType::i64, 2);
    CHECK(GgufFile::array_int(*a, 1) == -(1ll << 60));
    a = arr("a.f32", GgufType::f32, 3);
    CHECK(GgufFile::array_number(*a, 0) == 0.5); CHECK(GgufFile::array_number(*a, 1) == -3.0);
    CHECK(static_cast<float>(GgufFile::array_number(*a, 2)) == 1e-8f);
    a = arr("a.f64", GgufType::f64, 2);
    CHECK(GgufFile::array_number(*a, 1) == 1e200);
    a = arr("a.bool", GgufType::boolean, 3);
    CHECK(GgufFile::array_int(*a, 0) == 1); CHECK(GgufFile::array_int(*a, 1) == 0); CHECK(GgufFile::array_int(*a, 2) == 1);
    CHECK(GgufFile::array_int(*a, 3) == 0);  // out of range reads nothing
    arr("a.empty", GgufType::i32, 0);
    a = arr("a.str", GgufType::string, 4);
    REQUIRE(a->strings.size() == 4);
    CHECK(a->strings[0] == "x"); CHECK(a->strings[1].empty()); CHECK(a->strings[2] == "<0x0A>");
    CHECK(a->strings[3] == std::string_view("\0z", 2));
    arr("a.strempty", GgufType::string, 0);
    const GgufKV* nk = f.find("a.nested");
    REQUIRE(nk != nullptr);
    CHECK(nk->type == GgufType::array);
    CHECK(nk->elem == GgufType::array);
    CHECK(nk->length == 1);

    // Copying every entry through the writer rebuilds the same bytes.
    CHECK(rewrite(f) == b);
}

TEST_CASE("gguf writer: tensors with 1 to 4 dimensions round-trip") {
    struct Spec {
        const char* name;
        Type type;
        std::vector<int64_t> ne;
    };
    const Spec specs[] = {
        {"one.f32", Type::F32, {7}},
        {"two.f16", Type::F16, {5, 3}},
        {"three.q8_0", Type::Q8_0, {64, 2, 3}},
        {"four.q4_k", Type::Q4_K, {256, 1, 2, 2}},
        {"four.bf16", Type::BF16, {1, 2, 3, 4}},
        {"empty.f32", Type::F32, {0, 4}},
        {"two.q4_0", Type::Q4_0, {32, 5}},
        {"one.i8", Type::I8, {3}},
    };
    for (uint64_t align : {uint64_t(0), uint64_t(1), uint64_t(64), uint64_t(4096)}) {
        INFO("alignment " << align);
        GgufWriter w;
        w.set_string("general.name", "tensors");
        if (align) w.set_u32("general.alignment", static_cast<uint32_t>(align));
        const uint64_t eff = align ? align : 32;
        CHECK(w.alignment() == eff);
        std::vector<Bytes> datas;
        uint32_t seed = 10;
        for (const Spec& s : specs) {
            detail::TypeInfo ti = detail::type_info(s.type);
            int64_t n = 1;
            for (int64_t d : s.ne) n *= d;
            datas.push_back(pattern(static_cast<size_t>(n / ti.block_size) * ti.block_bytes, seed++));
            Status st = w.add_tensor(s.name, s.type, s.ne, datas.back().data(), datas.back().size());
            REQUIRE_MESSAGE(st.ok(), st.to_string());
        }
        CHECK(w.tensor_count() == 8);
        Bytes b = w.bytes();
        auto p = parse_bytes(b);
        REQUIRE_MESSAGE(p->st.ok(), p->st.to_string());
        const GgufFile& f = p->file;
        CHECK(f.alignment == eff);
        CHECK(f.data_offset % eff == 0);
        REQUIRE(f.tensors.size() == 8);
        for (size_t i = 0; i < 8; ++i) {
            const GgufTensor& t = f.tensors[i];
            INFO(specs[i].name);
            CHECK(t.name == specs[i].name);
            CHECK(t.type == static_cast<uint32_t>(specs[i].type));
            CHECK(t.n_dims == static_cast<int>(specs[i].ne.size()));
            for (int d = 0; d < 4; ++d) CHECK(t.ne[d] == (d < t.n_dims ? specs[i].ne[static_cast<size_t>(d)] : 1));
            CHECK(t.offset % eff == 0);
            CHECK(t.nbytes == datas[i].size());
            CHECK(same_bytes(t.data, datas[i].data(), datas[i].size()));
            CHECK(f.find_tensor(specs[i].name) == &t);
        }
        CHECK(f.find_tensor("nope") == nullptr);
        CHECK(rewrite(f) == b);

        // write_file streams the same bytes, and both ways of opening read them back.
        std::string path = "/tmp/minigpt_test_gguf_" + std::to_string(align) + ".gguf";
        Status st = w.write_file(path);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
        for (bool mm : {true, false}) {
            detail::FileBytes fb;
            st = fb.open(path, mm);
            REQUIRE_MESSAGE(st.ok(), st.to_string());
            CHECK(fb.mapped() == mm);
            REQUIRE(fb.size() == b.size());
            CHECK(same_bytes(fb.data(), b.data(), b.size()));
            GgufFile g;
            st = g.parse(fb.data(), fb.size());
            REQUIRE_MESSAGE(st.ok(), st.to_string());
            check_same(f, g);
        }
        std::remove(path.c_str());
    }
}

TEST_CASE("gguf writer: rejects bad tensors and bad alignment") {
    GgufWriter w;
    float d[64] = {};
    Status st = w.add_tensor("w", Type::F32, {4, 4}, d, 60);
    CHECK(st.code() == StatusCode::invalid_argument);
    CHECK(st.message().find("'w'") != std::string::npos);
    st = w.add_tensor("noshape", Type::F32, {}, d, 4);
    CHECK(st.message().find("noshape") != std::string::npos);
    st = w.add_tensor("five", Type::F32, {1, 1, 1, 1, 1}, d, 4);
    CHECK(st.message().find("five") != std::string::npos);
    st = w.add_tensor("neg", Type::F32, {-1}, d, 4);
    CHECK(st.message().find("neg") != std::string::npos);
    st = w.add_tensor("rows", Type::Q8_0, {16}, d, 17);
    CHECK(st.message().find("block size") != std::string::npos);
    st = w.add_tensor("type", static_cast<Type>(5), {16}, d, 16);
    CHECK(st.message().find("unknown tensor type 5") != std::string::npos);
    st = w.add_tensor("big", Type::F32, {1ll << 40, 1ll << 40}, d, 4);
    CHECK(st.message().find("overflows") != std::string::npos);
    st = w.add_tensor("nodata", Type::F32, {4}, nullptr, 16);
    CHECK(st.message().find("nodata") != std::string::npos);
    CHECK(w.tensor_count() == 0);
    REQUIRE(w.add_tensor("ok", Type::F32, {16}, d, 64).ok());
    st = w.add_tensor("ok", Type::F32, {16}, d, 64);
    CHECK(st.message().find("duplicate tensor name 'ok'") != std::string::npos);
    CHECK(w.tensor_count() == 1);

    // A copy of the writer owns its tensor data: it outlives the original.
    Bytes from_copy;
    {
        std::unique_ptr<GgufWriter> orig(new GgufWriter(small_writer()));
        GgufWriter copy = *orig;
        Bytes expect = orig->bytes();
        orig.reset();
        from_copy = copy.bytes();
        CHECK(from_copy == expect);
    }
    CHECK(parse_bytes(from_copy)->st.ok());

    CHECK(w.check().ok());
    w.set_u32("general.alignment", 3);
    CHECK(w.alignment() == 32);
    st = w.write_file("/tmp/minigpt_test_gguf_never.gguf");
    CHECK_FALSE(st.ok());
    CHECK(st.message().find("general.alignment") != std::string::npos);
    w.set_string("general.alignment", "32");
    CHECK_FALSE(w.check().ok());
    w.set_i32("general.alignment", -32);
    CHECK_FALSE(w.check().ok());
    w.set_u64("general.alignment", 16);
    CHECK(w.check().ok());
    CHECK(w.alignment() == 16);

    st = w.write_file("/nonexistent-dir/x.gguf");
    CHECK(st.code() == StatusCode::io_error);
    CHECK(st.message().find("/nonexistent-dir/x.gguf") != std::string::npos);
}

// ---------------------------------------------------------------------------
// The shared test files
// ---------------------------------------------------------------------------

TEST_CASE("gguf reader: stories260K") {
    std::string path = test_util::data_path("models/stories260K.gguf");
    detail::FileBytes fb;
    Status st = fb.open(path, true);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    GgufFile f;
    st = f.parse(fb.data(), fb.size());
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    CHECK(f.kvs.size() == 19);
    CHECK(f.tensors.size() == 48);
    std::string_view arch;
    CHECK(f.get_string("general.architecture", arch, st));
    CHECK(arch == "llama");
    int64_t n_embd = 0;
    CHECK(f.get_int("llama.embedding_length", n_embd, st));
    CHECK(n_embd == 64);
    const GgufTensor* te = f.find_tensor("token_embd.weight");
    REQUIRE(te != nullptr);
    CHECK(te->type == static_cast<uint32_t>(Type::F32));
    CHECK(te->ne[0] == 64);
    CHECK(te->ne[1] == 512);
    Status ast;
    const GgufKV* toks = f.get_array("tokenizer.ggml.tokens", ast);
    REQUIRE(toks != nullptr);
    CHECK(toks->strings.size() == 512);
    CHECK(toks->strings[1] == "<s>");

    // The writer rebuilds a file that parses to the same content.
    Bytes again = rewrite(f);
    auto p = parse_bytes(again);
    REQUIRE_MESSAGE(p->st.ok(), p->st.to_string());
    REQUIRE(p->file.tensors.size() == f.tensors.size());
    REQUIRE(p->file.kvs.size() == f.kvs.size());
    for (size_t i = 0; i < f.kvs.size(); ++i) CHECK(p->file.kvs[i].key == f.kvs[i].key);
    for (size_t i = 0; i < f.tensors.size(); ++i) {
        const GgufTensor &x = f.tensors[i], &y = p->file.tensors[i];
        CHECK(x.name == y.name);
        CHECK(x.nbytes == y.nbytes);
        CHECK(same_bytes(x.data, y.data, x.nbytes));
    }
}

TEST_CASE("gguf reader: every shared model and vocabulary parses, mapped or read") {
    std::string models = test_util::data_path("golden/models");
    std::string vocab = test_util::data_path("vocab");
    std::vector<std::string> files = gguf_files_in(models);
    std::vector<std::string> vf = gguf_files_in(vocab);
    CHECK(files.size() >= 20);
    CHECK(vf.size() >= 11);
    files.insert(files.end(), vf.begin(), vf.end());
    files.push_back(test_util::data_path("models/stories260K.gguf"));
    for (const std::string& path : files) {
        INFO(path);
        detail::FileBytes mapped, read;
        Status st = mapped.open(path, true);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
        st = read.open(path, false);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
        CHECK(mapped.mapped());
        CHECK_FALSE(read.mapped());
        // Both hold every byte of the file (read to the last one); on Linux,
        // files of 2 MiB or more start at a 2 MiB boundary (huge pages).
        REQUIRE(mapped.size() == read.size());
        CHECK(same_bytes(mapped.data(), read.data(), read.size()));
#if defined(__linux__)
        if (read.size() >= (size_t(2) << 20)) {
            CHECK(reinterpret_cast<uintptr_t>(mapped.data()) % (size_t(2) << 20) == 0);
            CHECK(reinterpret_cast<uintptr_t>(read.data()) % (size_t(2) << 20) == 0);
        }
#endif
        GgufFile a, b;
        st = a.parse(mapped.data(), mapped.size());
        CHECK_MESSAGE(st.ok(), st.to_string());
        st = b.parse(read.data(), read.size());
        CHECK_MESSAGE(st.ok(), st.to_string());
        CHECK(a.kvs.size() > 0);
        std::string_view s;
        Status gs;
        CHECK(a.get_string("general.architecture", s, gs));
        check_same(a, b);
        bool is_vocab = path.find("/vocab/") != std::string::npos;
        if (is_vocab) CHECK(a.tensors.empty());
        else CHECK(a.tensors.size() > 0);
    }
}

TEST_CASE("gguf reader: open errors") {
    detail::FileBytes fb;
    Status st = fb.open("/nonexistent/minigpt.gguf", true);
    CHECK(st.code() == StatusCode::io_error);
    CHECK(st.message().find("/nonexistent/minigpt.gguf") != std::string::npos);
    st = fb.open("/tmp", false);
    CHECK_FALSE(st.ok());
    std::string empty = "/tmp/minigpt_test_gguf_empty.gguf";
    std::FILE* f = std::fopen(empty.c_str(), "wb");
    REQUIRE(f != nullptr);
    std::fclose(f);
    st = fb.open(empty, true);
    CHECK_FALSE(st.ok());
    CHECK(st.message().find("empty") != std::string::npos);
    std::remove(empty.c_str());
}

#if defined(__linux__) && defined(MADV_HUGEPAGE) && defined(POSIX_FADV_DONTNEED)
// A file written in pieces smaller than 2 MiB is cached in small pages, and a
// mapping of it stays in them. 9 MiB files: four whole 2 MiB parts and a tail.
// With last_whole, the last whole part is written at once (cached in a 2 MiB
// page, where the kernel caches such writes so) and the rest in pieces.
namespace {
constexpr size_t kPagesFile = size_t(9) << 20;
uint8_t page_test_byte(size_t i) { return static_cast<uint8_t>((i * 2654435761u) >> 13); }
std::string write_in_pieces(const char* name, bool last_whole = false, size_t size = kPagesFile) {
    const std::string path = (std::filesystem::temp_directory_path() / name).string();
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    REQUIRE_MESSAGE(fd >= 0, path);
    std::vector<uint8_t> piece(size_t(64) << 10);
    size_t written = 0;
    std::vector<uint8_t> part(size_t(2) << 20);
    for (size_t at = 0; at < size;) {
        std::vector<uint8_t>& b = last_whole && at == (size_t(6) << 20) ? part : piece;
        for (size_t i = 0; i < b.size(); ++i) b[i] = page_test_byte(at + i);
        if (::write(fd, b.data(), b.size()) == static_cast<ssize_t>(b.size())) written += b.size();
        at += b.size();
    }
    REQUIRE(written == size);
    REQUIRE(::fdatasync(fd) == 0);
    ::close(fd);
    return path;
}
void drop_from_cache(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    CHECK(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
    ::close(fd);
}
// KiB of the file that a fresh mapping maps in 2 MiB pages once every byte is read.
long long huge_kib_after_reading(const std::string& path, bool reread, size_t size = kPagesFile) {
    const long long before = detail::file_pmd_kib();
    detail::FileBytes fb;
    Status st = fb.open(path, true, reread);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
    REQUIRE(fb.size() == size);
    size_t wrong = 0;
    for (size_t i = 0; i < fb.size(); ++i) wrong += fb.data()[i] != page_test_byte(i);
    CHECK(wrong == 0);
    return detail::file_pmd_kib() - before;
}
}  // namespace

TEST_CASE("file mapping: model files come into 2 MiB pages (cached in 4 KiB pages, or read from the disk)") {
    REQUIRE(detail::file_pmd_kib() >= 0);
    // Whether this kernel caches such a file in 2 MiB pages when it reads it
    // anew (a file dropped from the cache, then mapped and read).
    const std::string probe = write_in_pieces("minigpt_test_pages_probe.bin");
    drop_from_cache(probe);
    const bool kernel_can = huge_kib_after_reading(probe, false) > 0;
    std::remove(probe.c_str());
    INFO("this kernel caches a file read anew in 2 MiB pages: " << kernel_can);

    const std::string kept = write_in_pieces("minigpt_test_pages_kept.bin");
    const long long kept_kib = huge_kib_after_reading(kept, false);
    std::remove(kept.c_str());
    const std::string reread = write_in_pieces("minigpt_test_pages_reread.bin");
    const long long reread_kib = huge_kib_after_reading(reread, true);
    std::remove(reread.c_str());
    // The loader looks at the last whole part first: here it is cached in a
    // 2 MiB page and the one before it is not.
    const std::string mixed = write_in_pieces("minigpt_test_pages_mixed.bin", true);
    const long long mixed_kib = huge_kib_after_reading(mixed, true);
    std::remove(mixed.c_str());
    INFO("mapped as cached: " << kept_kib << " KiB in 2 MiB pages; with reread: " << reread_kib << ", last part written whole: " << mixed_kib);
    if (kernel_can) {
        // The four whole parts; without reread they stay in small pages where
        // the writes left them so (on kernels that cache writes in 2 MiB pages
        // the two are the same).
        CHECK(reread_kib >= 4 * 2048);
        CHECK(reread_kib >= kept_kib);
        CHECK(mixed_kib >= 4 * 2048);
    } else {
        CHECK(reread_kib == 0);
        CHECK(mixed_kib == 0);
    }

    // A file not in the cache, with more whole parts (20) than the loader
    // looks at (8): those it touches are read in one page each, and read-ahead
    // from a part next to one already cached reads the rest of its window in
    // small pages; read-ahead is off, so every whole part comes in one page.
    const size_t cold_size = size_t(41) << 20;
    const std::string cold = write_in_pieces("minigpt_test_pages_cold.bin", false, cold_size);
    drop_from_cache(cold);
    const long long cold_kib = huge_kib_after_reading(cold, true, cold_size);
    std::remove(cold.c_str());
    INFO("a file read from the disk: " << cold_kib << " KiB in 2 MiB pages");
    if (kernel_can) CHECK(cold_kib >= 20 * 2048);
    else CHECK(cold_kib == 0);
}
#endif

// ---------------------------------------------------------------------------
// Malformed files
// ---------------------------------------------------------------------------

TEST_CASE("gguf malformed: every truncation of a small file") {
    // With tensors: the last tensor's data ends before the file's final padding,
    // so exactly the prefixes that still hold all of it are valid (trimming the
    // padding changes nothing the reader needs); every shorter prefix must fail.
    Bytes full = small_writer().bytes();
    auto p = parse_bytes(full);
    REQUIRE_MESSAGE(p->st.ok(), p->st.to_string());
    uint64_t need = 0;
    for (const GgufTensor& t : p->file.tensors)
        need = std::max<uint64_t>(need, p->file.data_offset + t.offset + t.nbytes);
    REQUIRE(need <= full.size());
    REQUIRE(need > p->file.data_offset);
    int failed = 0;
    for (size_t n = 0; n <= full.size(); ++n) {
        auto q = parse_bytes(full.data(), n);
        INFO("prefix of " << n << " bytes: " << q->st.to_string());
        CHECK(q->st.ok() == (n >= need));
        if (!q->st.ok()) {
            ++failed;
            CHECK(q->st.code() == StatusCode::bad_format);
            CHECK_FALSE(q->st.message().empty());
        }
    }
    CHECK(failed == static_cast<int>(need));

    // Without tensors a file ends right after its metadata: every proper prefix fails.
    GgufWriter m;
    m.set_string("general.architecture", "test");
    m.set_array("tok.list", std::vector<std::string>{"a", "bc"});
    m.set_array("f", std::vector<float>{1, 2});
    m.set_u8("b", 1);
    Bytes meta = m.bytes();
    for (size_t n = 0; n < meta.size(); ++n) {
        auto q = parse_bytes(meta.data(), n);
        INFO("prefix of " << n << " bytes");
        CHECK_FALSE(q->st.ok());
        CHECK_FALSE(q->st.message().empty());
    }
    CHECK(parse_bytes(meta)->st.ok());
    // A cut inside a value names the key it was reading.
    KvPos kp = kv_pos(meta, "tok.list");
    auto q = parse_bytes(meta.data(), kp.value + 14);
    CHECK(q->st.message().find("tok.list") != std::string::npos);
}

TEST_CASE("gguf malformed: header") {
    const Bytes good = small_writer().bytes();
    REQUIRE(parse_bytes(good)->st.ok());
    Bytes b;

    b = good; b[0] = 'X';
    expect_fail(b, {"magic"}, "bad magic");
    expect_fail(Bytes{'G', 'G', 'U'}, {"magic"}, "three bytes");
    expect_fail(Bytes{}, {"magic"}, "empty");

    b = good; poke<uint32_t>(b, 4, 1);
    expect_fail(b, {"version 1"}, "version 1");
    b = good; poke<uint32_t>(b, 4, 4);
    expect_fail(b, {"version 4"}, "version 4");
    b = good; b[4] = 0; b[5] = 0; b[6] = 0; b[7] = 3;
    expect_fail(b, {"big-endian"}, "big-endian version 3");
    CHECK(parse_bytes(b)->st.code() == StatusCode::unsupported);

    b = good; poke<uint64_t>(b, 16, uint64_t(1) << 60);
    expect_fail(b, {"metadata count"}, "absurd kv count");
    b = good; poke<uint64_t>(b, 16, ~uint64_t(0));
    expect_fail(b, {"metadata count"}, "kv count 2^64-1");
    b = good; poke<uint64_t>(b, 8, ~uint64_t(0));
    expect_fail(b, {"tensor count"}, "absurd tensor count");
    b = good; poke<uint64_t>(b, 8, uint64_t(1) << 40);
    expect_fail(b, {"tensor count"}, "tensor count 2^40");
    // One entry more than present: the reader runs into the tensor infos and fails somewhere.
    b = good; poke<uint64_t>(b, 16, peek<uint64_t>(b, 16) + 1);
    CHECK_FALSE(parse_bytes(b)->st.ok());
}

TEST_CASE("gguf malformed: metadata") {
    const Bytes good = small_writer().bytes();
    REQUIRE(parse_bytes(good)->st.ok());
    Bytes b;

    // Key length past the end: the key has no name yet, the entry number is given.
    b = good; poke<uint64_t>(b, 24, uint64_t(1) << 40);
    expect_fail(b, {"metadata entry 0", "key"}, "key length past the end");

    KvPos arch = kv_pos(good, "general.architecture");
    b = good; poke<uint64_t>(b, arch.value, uint64_t(1) << 40);
    expect_fail(b, {"general.architecture", "string"}, "string value length past the end");
    b = good; poke<uint64_t>(b, arch.value, ~uint64_t(0));
    expect_fail(b, {"general.architecture"}, "string value length 2^64-1");

    KvPos list = kv_pos(good, "tok.list");
    // tok.list: u32 elem, u64 n, then "ab" (8+2 bytes), then "cde".
    b = good; poke<uint64_t>(b, list.value + 12 + 10, uint64_t(1) << 33);
    expect_fail(b, {"tok.list", "string 1"}, "string in an array past the end");
    b = good; poke<uint64_t>(b, list.value + 4, uint64_t(1) << 62);
    expect_fail(b, {"tok.list", "past the end"}, "string array count past the end");
    // Too many strings: the following entries are read as strings until one runs past the end.
    b = good; poke<uint64_t>(b, list.value + 4, 1000);
    expect_fail(b, {"tok.list", "past the end"}, "string array count too large");

    KvPos f32s = kv_pos(good, "test.f32s");
    b = good; poke<uint64_t>(b, f32s.value + 4, uint64_t(1) << 62);
    expect_fail(b, {"test.f32s", "past the end"}, "array count overflowing the byte size");
    b = good; poke<uint64_t>(b, f32s.value + 4, 100000);
    expect_fail(b, {"test.f32s", "past the end"}, "array count past the end");

    KvPos count = kv_pos(good, "test.count");
    b = good; poke<uint32_t>(b, count.type, 13);
    expect_fail(b, {"test.count", "unknown value type 13"}, "unknown value type");
    b = good; poke<uint32_t>(b, count.type, 0xFFFFFFFFu);
    expect_fail(b, {"test.count", "unknown value type"}, "value type 2^32-1");
    b = good; poke<uint32_t>(b, f32s.value, 13);
    expect_fail(b, {"test.f32s", "unknown array element type 13"}, "unknown array element type");
    b = good; poke<uint32_t>(b, f32s.value, 0x80000000u);
    expect_fail(b, {"test.f32s", "unknown array element type"}, "array element type 2^31");

    // Two keys of the same length: make the second a copy of the first.
    KvPos d2 = kv_pos(good, "dup.key2");
    b = good; b[d2.type - 1] = '1';
    expect_fail(b, {"duplicate", "dup.key1"}, "duplicate key");

    // A 0-length key is legal GGUF; a 0-length string value too.
    b = good; poke<uint64_t>(b, arch.value, 0);
    CHECK_FALSE(parse_bytes(b)->st.ok());  // the 4 bytes "test" are now read as the next key length
}

TEST_CASE("gguf malformed: general.alignment") {
    auto with_alignment = [](void (*set)(GgufWriter&)) {
        GgufWriter w = small_writer();
        set(w);
        return w.bytes();
    };
    expect_fail(with_alignment([](GgufWriter& w) { w.set_u32("general.alignment", 0); }), {"general.alignment", "0"},
                "alignment 0");
    expect_fail(with_alignment([](GgufWriter& w) { w.set_u32("general.alignment", 3); }), {"general.alignment", "3"},
                "alignment 3");
    expect_fail(with_alignment([](GgufWriter& w) { w.set_i32("general.alignment", -64); }), {"general.alignment"},
                "alignment -64");
    expect_fail(with_alignment([](GgufWriter& w) { w.set_u64("general.alignment", uint64_t(1) << 40); }),
                {"general.alignment"}, "alignment 2^40");
    expect_fail(with_alignment([](GgufWriter& w) { w.set_string("general.alignment", "32"); }),
                {"general.alignment", "string"}, "alignment as a string");
    expect_fail(with_alignment([](GgufWriter& w) { w.set_f32("general.alignment", 32.0f); }),
                {"general.alignment", "f32"}, "alignment as a float");
    expect_fail(with_alignment([](GgufWriter& w) { w.set_array("general.alignment", std::vector<uint32_t>{32}); }),
                {"general.alignment"}, "alignment as an array");
    // A valid one is used for the layout.
    Bytes ok = with_alignment([](GgufWriter& w) { w.set_u32("general.alignment", 128); });
    auto p = parse_bytes(ok);
    REQUIRE_MESSAGE(p->st.ok(), p->st.to_string());
    CHECK(p->file.alignment == 128);
    CHECK(p->file.data_offset % 128 == 0);
    for (const GgufTensor& t : p->file.tensors) CHECK(t.offset % 128 == 0);
}

TEST_CASE("gguf malformed: nested arrays") {
    for (int depth : {2, 3, 8}) {
        GgufWriter w = small_writer();
        Bytes v = nested_array_value(depth);
        w.set_raw("deep.array", GgufType::array, v.data(), v.size());
        auto p = parse_bytes(w.bytes());
        INFO("depth " << depth);
        CHECK_MESSAGE(p->st.ok(), p->st.to_string());
        CHECK(p->file.find("test.count") != nullptr);  // entries after it are read correctly
    }
    for (int depth : {9, 64, 100000}) {
        GgufWriter w = small_writer();
        Bytes v = nested_array_value(depth);
        w.set_raw("deep.array", GgufType::array, v.data(), v.size());
        INFO("depth " << depth);
        expect_fail(w.bytes(), {"deep.array", "nested too deeply"}, "deeply nested array");
    }
    // A nested array whose inner count runs past the end.
    GgufWriter w = small_writer();
    Bytes v = nested_array_value(3);
    poke<uint64_t>(v, 4 + 8 + 4, uint64_t(1) << 50);  // count of the second level
    w.set_raw("deep.array", GgufType::array, v.data(), v.size());
    expect_fail(w.bytes(), {"deep.array", "past the end"}, "nested array count past the end");
    // A nested array with an unknown inner element type.
    w = small_writer();
    v = nested_array_value(2);
    poke<uint32_t>(v, 12, 77u);
    w.set_raw("deep.array", GgufType::array, v.data(), v.size());
    expect_fail(w.bytes(), {"deep.array", "unknown array element type 77"}, "nested unknown element type");
}

TEST_CASE("gguf malformed: tensor infos") {
    const Bytes good = small_writer().bytes();
    auto gp = parse_bytes(good);
    REQUIRE(gp->st.ok());
    const TensorPos a = tensor_pos(good, "t.aaa");
    const TensorPos q = tensor_pos(good, "t.bbb");
    const TensorPos c = tensor_pos(good, "t.ccc");
    Bytes b;

    b = good; poke<uint64_t>(b, a.name_len, uint64_t(1) << 40);
    expect_fail(b, {"tensor entry 0", "name"}, "tensor name past the end");

    b = good; poke<uint32_t>(b, a.type, 4);  // a retired type id
    expect_fail(b, {"t.aaa", "unknown tensor type 4"}, "unknown tensor type 4");
    b = good; poke<uint32_t>(b, q.type, 1000);
    expect_fail(b, {"t.bbb", "unknown tensor type 1000"}, "unknown tensor type 1000");

    b = good; poke<uint32_t>(b, a.n_dims, 0);
    expect_fail(b, {"t.aaa", "0 dimensions"}, "n_dims 0");
    b = good; poke<uint32_t>(b, a.n_dims, 5);
    expect_fail(b, {"t.aaa", "5 dimensions"}, "n_dims 5");
    b = good; poke<uint32_t>(b, c.n_dims, 0xFFFFFFFFu);
    expect_fail(b, {"t.ccc", "dimensions"}, "n_dims 2^32-1");

    b = good; poke<uint64_t>(b, a.dims, uint64_t(1) << 40); poke<uint64_t>(b, a.dims + 8, uint64_t(1) << 40);
    expect_fail(b, {"t.aaa", "element count overflows"}, "element count overflow");
    b = good; poke<uint64_t>(b, a.dims + 8, ~uint64_t(0));
    expect_fail(b, {"t.aaa", "dimension 1"}, "negative dimension");

    b = good; poke<uint64_t>(b, q.dims, 33);
    expect_fail(b, {"t.bbb", "block size"}, "row length not a multiple of the block size");

    b = good; poke<uint64_t>(b, c.dims, 3 + 16);
    expect_fail(b, {"t.ccc", "past the end"}, "data past the end (shape grown)");
    b = good; poke<uint64_t>(b, c.offset, uint64_t(1) << 20);
    expect_fail(b, {"t.ccc", "past the end"}, "data past the end (offset moved)");
    b = good; poke<uint64_t>(b, c.offset, ~uint64_t(0) - 31);
    expect_fail(b, {"t.ccc", "past the end"}, "offset that overflows");

    b = good; poke<uint64_t>(b, q.offset, peek<uint64_t>(b, q.offset) + 1);
    expect_fail(b, {"t.bbb", "not aligned"}, "unaligned offset");

    // t.bbb moved onto t.aaa's bytes.
    b = good; poke<uint64_t>(b, q.offset, peek<uint64_t>(b, a.offset));
    expect_fail(b, {"overlaps", "t.aaa", "t.bbb"}, "two tensors overlapping");
    // t.aaa grown into t.bbb (32 bytes of data, padding to 32, then t.bbb).
    b = good; poke<uint64_t>(b, a.dims + 8, 3);
    expect_fail(b, {"overlaps", "t.aaa", "t.bbb"}, "a tensor grown into the next");

    b = good; b[q.n_dims - 1] = 'a'; b[q.n_dims - 2] = 'a'; b[q.n_dims - 3] = 'a';
    expect_fail(b, {"duplicate tensor name", "t.aaa"}, "duplicate tensor name");

    // The data section itself cut off: the header says it exists.
    b = good; b.resize(static_cast<size_t>(gp->file.data_offset) - 1);
    expect_fail(b, {"truncated"}, "file ends before the data section");
}

TEST_CASE("gguf malformed: random mutations never crash") {
    GgufWriter w = small_writer();
    Bytes extra = nested_array_value(3);
    w.set_raw("deep.array", GgufType::array, extra.data(), extra.size());
    const Bytes good = w.bytes();
    REQUIRE(parse_bytes(good)->st.ok());
    uint64_t state = 0x9E3779B97F4A7C15ull;
    auto next = [&]() {
        state += 0x9E3779B97F4A7C15ull;
        uint64_t z = state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    };
    const uint64_t interesting[] = {0, 1, 2, 3, 4, 5, 8, 9, 12, 13, 31, 32, 33, 255, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                                    uint64_t(1) << 32, uint64_t(1) << 40, uint64_t(1) << 62, ~uint64_t(0)};
    int ok = 0, failed = 0;
    for (int iter = 0; iter < 5000; ++iter) {
        Bytes b = good;
        int n_mut = 1 + static_cast<int>(next() % 4);
        for (int m = 0; m < n_mut; ++m) {
            size_t pos = static_cast<size_t>(next() % b.size());
            switch (next() % 6) {
                case 0: b[pos] = static_cast<uint8_t>(next()); break;
                case 1: b[pos] ^= static_cast<uint8_t>(1u << (next() % 8)); break;
                case 2: {
                    uint32_t v = static_cast<uint32_t>(interesting[next() % (sizeof interesting / sizeof interesting[0])]);
                    if (pos + 4 <= b.size()) std::memcpy(b.data() + pos, &v, 4);
                    break;
                }
                case 3: {
                    uint64_t v = interesting[next() % (sizeof interesting / sizeof interesting[0])];
                    if (pos + 8 <= b.size()) std::memcpy(b.data() + pos, &v, 8);
                    break;
                }
                case 4: b.resize(pos + 1); break;
                default: {
                    // Patch a u64 in the header region where the counts and lengths are.
                    size_t hp = static_cast<size_t>(next() % std::min<size_t>(b.size(), 400));
                    uint64_t v = interesting[next() % (sizeof interesting / sizeof interesting[0])];
                    if (hp + 8 <= b.size()) std::memcpy(b.data() + hp, &v, 8);
                    break;
                }
            }
        }
        auto p = parse_bytes(b);
        if (p->st.ok()) {
            ++ok;
            // Whatever parsed must describe bytes inside the buffer.
            const uint8_t* lo = p->buf.get();
            const uint8_t* hi = lo + p->size;
            for (const GgufTensor& t : p->file.tensors) {
                CHECK(t.data >= lo);
                CHECK(t.nbytes <= static_cast<uint64_t>(hi - t.data));
            }
            for (const GgufKV& kv : p->file.kvs) {
                if (kv.type == GgufType::string) CHECK(kv.length <= static_cast<uint64_t>(hi - kv.data));
                for (std::string_view s : kv.strings)
                    CHECK((reinterpret_cast<const uint8_t*>(s.data()) >= lo &&
                           reinterpret_cast<const uint8_t*>(s.data()) + s.size() <= hi));
            }
        } else {
            ++failed;
            CHECK_FALSE(p->st.message().empty());
        }
    }
    MESSAGE("mutations: " << ok << " parsed, " << failed << " rejected");
    CHECK(failed > 2500);
    CHECK(ok > 0);
}

// ---------------------------------------------------------------------------
// Valid GGUF, invalid model
// ---------------------------------------------------------------------------

namespace {

struct ModelSpec {
    int n_embd = 32, n_layer = 1, n_head = 2, n_head_kv = 2, n_ff = 64, n_vocab = 260;
};

std::vector<float> weights(size_t n, uint32_t seed) {
    std::vector<float> v(n);
    uint32_t x = seed * 747796405u + 2891336453u;
    for (size_t i = 0; i < n; ++i) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v[i] = (static_cast<float>(x % 2001) - 1000.0f) * 2e-5f;
    }
    return v;
}

void add_f32(GgufWriter& w, const std::string& name, std::vector<int64_t> ne, uint32_t seed) {
    size_t n = 1;
    for (int64_t d : ne) n *= static_cast<size_t>(d);
    std::vector<float> v = weights(n, seed);
    Status st = w.add_tensor(name, Type::F32, ne, v.data(), v.size() * sizeof(float));
    REQUIRE_MESSAGE(st.ok(), st.to_string());
}

// A tiny llama model with a SentencePiece vocabulary: <unk>, <s>, </s> and the 256 byte tokens
// (and a few normal pieces to reach n_vocab). `skip` names a key or tensor to leave out.
GgufWriter tiny_llama(const ModelSpec& m, const std::string& skip = "") {
    GgufWriter w;
    auto keep = [&](const std::string& k) { return k != skip; };
    if (keep("general.architecture")) w.set_string("general.architecture", "llama");
    w.set_string("general.name", "tiny");
    w.set_u32("llama.context_length", 64);
    if (keep("llama.embedding_length")) w.set_u32("llama.embedding_length", static_cast<uint32_t>(m.n_embd));
    w.set_u32("llama.block_count", static_cast<uint32_t>(m.n_layer));
    w.set_u32("llama.feed_forward_length", static_cast<uint32_t>(m.n_ff));
    w.set_u32("llama.attention.head_count", static_cast<uint32_t>(m.n_head));
    w.set_u32("llama.attention.head_count_kv", static_cast<uint32_t>(m.n_head_kv));
    w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    w.set_f32("llama.rope.freq_base", 10000.0f);
    w.set_string("tokenizer.ggml.model", "llama");
    std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
    std::vector<float> scores = {0, 0, 0};
    std::vector<int32_t> types = {2, 3, 3};
    for (int i = 0; i < 256; ++i) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "<0x%02X>", i);
        tokens.push_back(buf);
        scores.push_back(0);
        types.push_back(6);
    }
    for (int i = 0; static_cast<int>(tokens.size()) < m.n_vocab; ++i) {
        tokens.push_back(std::string("\xe2\x96\x81") + static_cast<char>('a' + i % 26) + std::to_string(i));
        scores.push_back(-static_cast<float>(i));
        types.push_back(1);
    }
    if (keep("tokenizer.ggml.tokens")) w.set_array("tokenizer.ggml.tokens", tokens);
    w.set_array("tokenizer.ggml.scores", scores);
    w.set_array("tokenizer.ggml.token_type", types);
    w.set_u32("tokenizer.ggml.bos_token_id", 1);
    w.set_u32("tokenizer.ggml.eos_token_id", 2);
    w.set_u32("tokenizer.ggml.unknown_token_id", 0);

    const int64_t E = m.n_embd, V = m.n_vocab, F = m.n_ff;
    const int64_t hd = m.n_embd / m.n_head, KV = hd * m.n_head_kv;
    uint32_t seed = 1;
    auto t = [&](const std::string& name, std::vector<int64_t> ne) {
        if (keep(name)) add_f32(w, name, ne, seed);
        ++seed;
    };
    t("token_embd.weight", {E, V});
    t("output_norm.weight", {E});
    t("output.weight", {E, V});
    for (int l = 0; l < m.n_layer; ++l) {
        std::string b = "blk." + std::to_string(l) + ".";
        t(b + "attn_norm.weight", {E});
        t(b + "attn_q.weight", {E, E});
        t(b + "attn_k.weight", {E, KV});
        t(b + "attn_v.weight", {E, KV});
        t(b + "attn_output.weight", {E, E});
        t(b + "ffn_norm.weight", {E});
        t(b + "ffn_gate.weight", {E, F});
        t(b + "ffn_up.weight", {E, F});
        t(b + "ffn_down.weight", {F, E});
    }
    return w;
}

Status load_model(const Bytes& b, std::shared_ptr<Model>& out) {
    return Model::load_from_memory(b.data(), b.size(), ModelParams(), out);
}

void expect_bad_model(const Bytes& b, std::initializer_list<const char*> needles, const char* what) {
    INFO(std::string(what));
    REQUIRE_MESSAGE(parse_bytes(b)->st.ok(), "the file itself should be valid GGUF");
    std::shared_ptr<Model> m;
    Status st = load_model(b, m);
    INFO("status: " << st.to_string());
    CHECK_FALSE(st.ok());
    CHECK(m == nullptr);
    for (const char* n : needles)
        CHECK_MESSAGE(st.message().find(n) != std::string::npos, "expected '" << std::string(n) << "'");
}

}  // namespace

TEST_CASE("model: valid GGUF files that are not valid models") {
    const ModelSpec spec;
    {
        Bytes good = tiny_llama(spec).bytes();
        std::shared_ptr<Model> m;
        Status st = load_model(good, m);
        REQUIRE_MESSAGE(st.ok(), st.to_string());
        REQUIRE(m != nullptr);
        CHECK(m->n_vocab() == 260);
        CHECK(m->info().n_embd == 32);
        CHECK(m->info().n_layer == 1);
        CHECK(m->info().n_head == 2);
        CHECK(m->info().n_ff == 64);
        CHECK(m->token_bos() == 1);
        CHECK(m->token_eos() == 2);
    }

    expect_bad_model(tiny_llama(spec, "general.architecture").bytes(), {"general.architecture"},
                     "general.architecture missing");
    {
        GgufWriter w = tiny_llama(spec);
        w.set_string("general.architecture", "mamba9");
        expect_bad_model(w.bytes(), {"mamba9"}, "unknown architecture");
    }
    {
        GgufWriter w = tiny_llama(spec);
        w.set_u32("general.architecture", 7);
        expect_bad_model(w.bytes(), {"general.architecture"}, "architecture that is not a string");
    }
    expect_bad_model(tiny_llama(spec, "llama.embedding_length").bytes(), {"llama.embedding_length"},
                     "llama.embedding_length missing");
    {
        GgufWriter w = tiny_llama(spec);
        w.set_u32("llama.attention.head_count", 0);
        expect_bad_model(w.bytes(), {"llama.attention.head_count"}, "head_count 0");
    }
    {
        GgufWriter w = tiny_llama(spec);
        w.set_string("llama.block_count", "one");
        expect_bad_model(w.bytes(), {"llama.block_count"}, "block_count of the wrong type");
    }
    expect_bad_model(tiny_llama(spec, "token_embd.weight").bytes(), {"token_embd.weight"}, "token_embd.weight missing");
    expect_bad_model(tiny_llama(spec, "blk.0.ffn_down.weight").bytes(), {"blk.0.ffn_down.weight"},
                     "a layer tensor missing");
    {
        // attn_q with its dimensions swapped the wrong way: [E, E/2].
        GgufWriter w = tiny_llama(spec, "blk.0.attn_q.weight");
        add_f32(w, "blk.0.attn_q.weight", {32, 16}, 99);
        expect_bad_model(w.bytes(), {"blk.0.attn_q.weight"}, "attn_q.weight with the wrong shape");
    }
    {
        GgufWriter w = tiny_llama(spec, "blk.0.attn_q.weight");
        add_f32(w, "blk.0.attn_q.weight", {32, 32, 2}, 99);
        expect_bad_model(w.bytes(), {"blk.0.attn_q.weight"}, "attn_q.weight with an extra dimension");
    }
    {
        // 3 heads do not divide 32.
        GgufWriter w = tiny_llama(spec);
        w.set_u32("llama.attention.head_count", 3);
        w.set_u32("llama.attention.head_count_kv", 3);
        expect_bad_model(w.bytes(), {"head_count"}, "n_head not dividing n_embd");
    }
    {
        GgufWriter w = tiny_llama(spec);
        w.set_u32("llama.attention.head_count_kv", 3);
        expect_bad_model(w.bytes(), {"head_count_kv"}, "n_head not a multiple of n_head_kv");
    }
    expect_bad_model(tiny_llama(spec, "tokenizer.ggml.tokens").bytes(), {"tokenizer.ggml.tokens"},
                     "tokenizer tokens missing");
    {
        // A weight of a type we do not support: IQ2_XXS. Its rows must be multiples of
        // 256, so this case uses a model with n_embd 256.
        ModelSpec s256;
        s256.n_embd = 256;
        s256.n_head = 4;
        s256.n_head_kv = 4;
        GgufWriter w2 = tiny_llama(s256, "blk.0.ffn_up.weight");
        Bytes iq = pattern(static_cast<size_t>(64) * 66, 6);
        Status st = w2.add_tensor("blk.0.ffn_up.weight", Type::IQ2_XXS, {256, 64}, iq.data(), iq.size());
        REQUIRE_MESSAGE(st.ok(), st.to_string());
        expect_bad_model(w2.bytes(), {"blk.0.ffn_up.weight", "IQ2_XXS"}, "unsupported tensor type");
        // The same model with ffn_up in F32 loads, so the type is the only problem.
        std::shared_ptr<Model> m;
        Status ok = load_model(tiny_llama(s256).bytes(), m);
        CHECK_MESSAGE(ok.ok(), ok.to_string());
    }
    {
        // A norm stored as F16 instead of F32.
        GgufWriter w = tiny_llama(spec, "output_norm.weight");
        Bytes h = pattern(32 * 2, 7);
        REQUIRE(w.add_tensor("output_norm.weight", Type::F16, {32}, h.data(), h.size()).ok());
        expect_bad_model(w.bytes(), {"output_norm.weight", "F16"}, "norm of an unsupported type");
    }
}

TEST_CASE("array_int of float elements: NaN gives 0, out-of-range values saturate (no undefined cast)") {
    GgufWriter w;
    w.set_array("a.f32", std::vector<float>{std::nanf(""), 1e30f, -1e30f, 2.9f, -2.9f});
    w.set_array("a.f64", std::vector<double>{9.3e18, -9.3e18, 1e300});
    Bytes b = w.bytes();
    auto p = parse_bytes(b);
    REQUIRE_MESSAGE(p->st.ok(), p->st.to_string());
    const GgufKV* f32 = p->file.find("a.f32");
    const GgufKV* f64 = p->file.find("a.f64");
    REQUIRE(f32 != nullptr);
    REQUIRE(f64 != nullptr);
    const int64_t hi = std::numeric_limits<int64_t>::max(), lo = std::numeric_limits<int64_t>::min();
    CHECK(GgufFile::array_int(*f32, 0) == 0);
    CHECK(GgufFile::array_int(*f32, 1) == hi);
    CHECK(GgufFile::array_int(*f32, 2) == lo);
    CHECK(GgufFile::array_int(*f32, 3) == 2);
    CHECK(GgufFile::array_int(*f32, 4) == -2);
    CHECK(GgufFile::array_int(*f64, 0) == hi);
    CHECK(GgufFile::array_int(*f64, 1) == lo);
    CHECK(GgufFile::array_int(*f64, 2) == hi);
}
