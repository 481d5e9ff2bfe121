// gguf_writer: builds GGUF v3 files (metadata, tensor infos, aligned tensor data)
// in memory or streams them to a file.
#pragma once
#include "gguf.hpp"

#include <cstdio>
#include <type_traits>

MINIGPT_NS_BEGIN
namespace detail {

// The GGUF value type of a C++ number type, for GgufWriter::set_array.
template <typename T> struct GgufTypeOf;
template <> struct GgufTypeOf<uint8_t> { static constexpr GgufType value = GgufType::u8; };
template <> struct GgufTypeOf<int8_t> { static constexpr GgufType value = GgufType::i8; };
template <> struct GgufTypeOf<uint16_t> { static constexpr GgufType value = GgufType::u16; };
template <> struct GgufTypeOf<int16_t> { static constexpr GgufType value = GgufType::i16; };
template <> struct GgufTypeOf<uint32_t> { static constexpr GgufType value = GgufType::u32; };
template <> struct GgufTypeOf<int32_t> { static constexpr GgufType value = GgufType::i32; };
template <> struct GgufTypeOf<uint64_t> { static constexpr GgufType value = GgufType::u64; };
template <> struct GgufTypeOf<int64_t> { static constexpr GgufType value = GgufType::i64; };
template <> struct GgufTypeOf<float> { static constexpr GgufType value = GgufType::f32; };
template <> struct GgufTypeOf<double> { static constexpr GgufType value = GgufType::f64; };
template <> struct GgufTypeOf<bool> { static constexpr GgufType value = GgufType::boolean; };

// Builds a GGUF version 3 file. Metadata keys keep their insertion order and
// setting a key again replaces its value in place. Tensors are laid out in the
// order they are added, each at an offset that is a multiple of the alignment
// (general.alignment when it holds a valid power of two, else 32).
//
// The writer does not second-guess metadata: bytes() serializes exactly what
// was set (which is how tests build files with odd values), while write_file()
// first runs check().
class GgufWriter {
public:
    void set_u8(const std::string& key, uint8_t v) { set_scalar(key, GgufType::u8, &v, sizeof v); }
    void set_i8(const std::string& key, int8_t v) { set_scalar(key, GgufType::i8, &v, sizeof v); }
    void set_u16(const std::string& key, uint16_t v) { set_scalar(key, GgufType::u16, &v, sizeof v); }
    void set_i16(const std::string& key, int16_t v) { set_scalar(key, GgufType::i16, &v, sizeof v); }
    void set_u32(const std::string& key, uint32_t v) { set_scalar(key, GgufType::u32, &v, sizeof v); }
    void set_i32(const std::string& key, int32_t v) { set_scalar(key, GgufType::i32, &v, sizeof v); }
    void set_u64(const std::string& key, uint64_t v) { set_scalar(key, GgufType::u64, &v, sizeof v); }
    void set_i64(const std::string& key, int64_t v) { set_scalar(key, GgufType::i64, &v, sizeof v); }
    void set_f32(const std::string& key, float v) { set_scalar(key, GgufType::f32, &v, sizeof v); }
    void set_f64(const std::string& key, double v) { set_scalar(key, GgufType::f64, &v, sizeof v); }
    void set_bool(const std::string& key, bool v) {
        uint8_t b = v ? 1 : 0;
        set_scalar(key, GgufType::boolean, &b, 1);
    }
    void set_string(const std::string& key, std::string_view v) {
        std::vector<uint8_t> p;
        put_string(p, v);
        set_raw(key, GgufType::string, p.data(), p.size());
    }

    // Array of numbers (or bools); the element type follows T.
    template <typename T>
    void set_array(const std::string& key, const std::vector<T>& values) {
        constexpr GgufType et = GgufTypeOf<T>::value;
        std::vector<uint8_t> p;
        put(p, static_cast<uint32_t>(et));
        put(p, static_cast<uint64_t>(values.size()));
        for (size_t i = 0; i < values.size(); ++i) {
            T v = values[i];
            if constexpr (std::is_same<T, bool>::value) {
                p.push_back(v ? 1 : 0);
            } else {
                put(p, v);
            }
        }
        set_raw(key, GgufType::array, p.data(), p.size());
    }
    void set_array(const std::string& key, const std::vector<std::string>& values) {
        std::vector<uint8_t> p;
        put(p, static_cast<uint32_t>(GgufType::string));
        put(p, static_cast<uint64_t>(values.size()));
        for (const std::string& s : values) put_string(p, s);
        set_raw(key, GgufType::array, p.data(), p.size());
    }
    // Array of n fixed-size elements of type elem, given as their little-endian bytes.
    Status set_array_raw(const std::string& key, GgufType elem, const void* data, uint64_t n) {
        size_t esz = gguf_scalar_size(elem);
        if (!esz)
            return error(StatusCode::invalid_argument, "GGUF writer: key '%s': set_array_raw needs a fixed-size element type",
                         key.c_str());
        uint64_t total;
        if (mul_overflows(n, esz, &total) || total > std::numeric_limits<size_t>::max() / 2)
            return error(StatusCode::invalid_argument, "GGUF writer: key '%s': array too large", key.c_str());
        std::vector<uint8_t> p;
        put(p, static_cast<uint32_t>(elem));
        put(p, n);
        const uint8_t* b = static_cast<const uint8_t*>(data);
        if (total) p.insert(p.end(), b, b + total);
        set_raw(key, GgufType::array, p.data(), p.size());
        return Status();
    }

    // Stores a value exactly as given: `value` holds the bytes that follow the
    // type field in the file. Nothing is checked, so this can also express
    // values the typed setters cannot (nested arrays, deliberately bad data).
    void set_raw(const std::string& key, GgufType type, const void* value, size_t nbytes) {
        const uint8_t* b = static_cast<const uint8_t*>(value);
        Entry e;
        e.key = key;
        e.type = type;
        if (nbytes) e.value.assign(b, b + nbytes);
        auto it = kv_index_.find(key);
        if (it != kv_index_.end()) {
            kvs_[it->second] = std::move(e);
        } else {
            kv_index_.emplace(key, kvs_.size());
            kvs_.push_back(std::move(e));
        }
    }

    // Copies one metadata entry of a parsed file (any type, nested arrays included).
    Status copy_kv(const GgufFile& file, const GgufKV& kv);

    bool has(const std::string& key) const { return kv_index_.count(key) != 0; }
    bool remove(const std::string& key) {
        auto it = kv_index_.find(key);
        if (it == kv_index_.end()) return false;
        kvs_.erase(kvs_.begin() + static_cast<std::ptrdiff_t>(it->second));
        kv_index_.clear();
        for (size_t i = 0; i < kvs_.size(); ++i) kv_index_.emplace(kvs_[i].key, i);
        return true;
    }
    size_t kv_count() const { return kvs_.size(); }
    size_t tensor_count() const { return tensors_.size(); }

    // Adds a tensor, copying its data. ne has 1 to 4 dimensions, ne[0] being the
    // row length; nbytes must be exactly what the type and shape need.
    Status add_tensor(const std::string& name, Type type, std::vector<int64_t> ne, const void* data, size_t nbytes) {
        return add(name, type, std::move(ne), data, nbytes, true);
    }
    // The same without the copy: `data` must stay valid until the last bytes()/write_file().
    Status add_tensor_view(const std::string& name, Type type, std::vector<int64_t> ne, const void* data, size_t nbytes) {
        return add(name, type, std::move(ne), data, nbytes, false);
    }

    // The alignment the layout uses.
    uint64_t alignment() const;
    // OK when general.alignment (if set) is an integer power of two.
    Status check() const;

    std::vector<uint8_t> bytes() const;
    Status write_file(const std::string& path) const;

private:
    struct Entry {
        std::string key;
        GgufType type = GgufType::u8;
        std::vector<uint8_t> value;
    };
    struct Tensor {
        std::string name;
        Type type = Type::F32;
        std::vector<int64_t> ne;
        std::vector<uint8_t> owned;      // the data when copied in...
        const uint8_t* view = nullptr;   // ...or the caller's bytes (add_tensor_view)
        bool owns = false;
        size_t nbytes = 0;
        // Resolved on use so that copies of the writer point at their own bytes.
        const uint8_t* data() const { return owns ? owned.data() : view; }
    };

    template <typename T>
    static void put(std::vector<uint8_t>& out, T v) {
        uint8_t b[sizeof(T)];
        std::memcpy(b, &v, sizeof(T));
        out.insert(out.end(), b, b + sizeof(T));
    }
    static void put_string(std::vector<uint8_t>& out, std::string_view s) {
        put(out, static_cast<uint64_t>(s.size()));
        out.insert(out.end(), s.begin(), s.end());
    }
    void set_scalar(const std::string& key, GgufType type, const void* v, size_t n) { set_raw(key, type, v, n); }
    // general.alignment: 0 when absent, 1 when a usable power of two (stored in v), -1 otherwise.
    int alignment_kv(uint64_t& v) const;

    Status add(const std::string& name, Type type, std::vector<int64_t> ne, const void* data, size_t nbytes, bool copy);
    // Header, metadata, tensor infos and the padding up to the data section;
    // offsets[i] is tensor i's offset inside the data section, and data_size
    // the size of that section (every tensor padded to the alignment).
    void layout(std::vector<uint8_t>& head, std::vector<uint64_t>& offsets, uint64_t& data_size) const;

    std::vector<Entry> kvs_;
    std::unordered_map<std::string, size_t> kv_index_;
    std::vector<Tensor> tensors_;
    std::unordered_map<std::string, size_t> tensor_index_;
};

inline Status GgufWriter::copy_kv(const GgufFile& file, const GgufKV& kv) {
    const uint8_t* end = file.base() + file.size();
    if (kv.type == GgufType::string) {
        set_string(kv.key, std::string_view(reinterpret_cast<const char*>(kv.data), static_cast<size_t>(kv.length)));
        return Status();
    }
    size_t sz = gguf_scalar_size(kv.type);
    if (sz) {
        if (!kv.data || kv.data < file.base() || static_cast<size_t>(end - kv.data) < sz)
            return error(StatusCode::invalid_argument, "GGUF writer: key '%s' does not belong to this file", kv.key.c_str());
        set_raw(kv.key, kv.type, kv.data, sz);
        return Status();
    }
    if (kv.type != GgufType::array)
        return error(StatusCode::invalid_argument, "GGUF writer: key '%s' has unknown type %u", kv.key.c_str(),
                     static_cast<uint32_t>(kv.type));
    if (kv.elem == GgufType::string) {
        std::vector<uint8_t> p;
        put(p, static_cast<uint32_t>(GgufType::string));
        put(p, static_cast<uint64_t>(kv.strings.size()));
        for (std::string_view s : kv.strings) put_string(p, s);
        set_raw(kv.key, GgufType::array, p.data(), p.size());
        return Status();
    }
    if (!kv.data || kv.data < file.base() || kv.data > end)
        return error(StatusCode::invalid_argument, "GGUF writer: key '%s' does not belong to this file", kv.key.c_str());
    // Measure the elements with the reader's walker, then copy them verbatim.
    GgufCursor c(kv.data, static_cast<size_t>(end - kv.data));
    for (uint64_t i = 0; i < kv.length; ++i) {
        Status st = gguf_skip_value(c, kv.elem, kv.key, 1);
        if (!st.ok()) return st;
    }
    std::vector<uint8_t> p;
    put(p, static_cast<uint32_t>(kv.elem));
    put(p, kv.length);
    p.insert(p.end(), kv.data, kv.data + c.pos());
    set_raw(kv.key, GgufType::array, p.data(), p.size());
    return Status();
}

inline Status GgufWriter::add(const std::string& name, Type type, std::vector<int64_t> ne, const void* data,
                              size_t nbytes, bool copy) {
    const char* tn = name.c_str();
    TypeInfo ti = type_info(type);
    if (!ti.name)
        return error(StatusCode::invalid_argument, "GGUF writer: tensor '%s': unknown tensor type %u", tn,
                     static_cast<uint32_t>(type));
    if (ne.empty() || ne.size() > 4)
        return error(StatusCode::invalid_argument, "GGUF writer: tensor '%s': %zu dimensions (1 to 4 are allowed)", tn,
                     ne.size());
    if (tensor_index_.count(name))
        return error(StatusCode::invalid_argument, "GGUF writer: duplicate tensor name '%s'", tn);
    uint64_t n_el = 1;
    for (size_t d = 0; d < ne.size(); ++d) {
        if (ne[d] < 0)
            return error(StatusCode::invalid_argument, "GGUF writer: tensor '%s': dimension %zu is negative", tn, d);
        if (mul_overflows(n_el, static_cast<uint64_t>(ne[d]), &n_el) || n_el > (uint64_t(1) << 50))
            return error(StatusCode::invalid_argument, "GGUF writer: tensor '%s': element count overflows", tn);
    }
    if (ne[0] % ti.block_size != 0)
        return error(StatusCode::invalid_argument,
                     "GGUF writer: tensor '%s': row length %lld is not a multiple of the %s block size %lld", tn,
                     (long long)ne[0], ti.name, (long long)ti.block_size);
    uint64_t need = n_el / static_cast<uint64_t>(ti.block_size) * ti.block_bytes;
    if (need != nbytes)
        return error(StatusCode::invalid_argument, "GGUF writer: tensor '%s': %zu bytes given, the %s shape needs %llu", tn,
                     nbytes, ti.name, (unsigned long long)need);
    if (nbytes && !data) return error(StatusCode::invalid_argument, "GGUF writer: tensor '%s': no data", tn);
    Tensor t;
    t.name = name;
    t.type = type;
    t.ne = std::move(ne);
    t.nbytes = nbytes;
    const uint8_t* b = static_cast<const uint8_t*>(data);
    t.owns = copy;
    if (copy) {
        if (nbytes) t.owned.assign(b, b + nbytes);
    } else {
        t.view = b;
    }
    tensor_index_.emplace(name, tensors_.size());
    tensors_.push_back(std::move(t));
    return Status();
}

inline int GgufWriter::alignment_kv(uint64_t& v) const {
    auto it = kv_index_.find("general.alignment");
    if (it == kv_index_.end()) return 0;
    const Entry& e = kvs_[it->second];
    const uint8_t* p = e.value.data();
    if (gguf_scalar_size(e.type) == 0 || e.value.size() != gguf_scalar_size(e.type)) return -1;
    int64_t s = 0;
    switch (e.type) {
        case GgufType::u8: v = read_le<uint8_t>(p); break;
        case GgufType::u16: v = read_le<uint16_t>(p); break;
        case GgufType::u32: v = read_le<uint32_t>(p); break;
        case GgufType::u64: v = read_le<uint64_t>(p); break;
        case GgufType::i8: s = read_le<int8_t>(p); v = static_cast<uint64_t>(s); break;
        case GgufType::i16: s = read_le<int16_t>(p); v = static_cast<uint64_t>(s); break;
        case GgufType::i32: s = read_le<int32_t>(p); v = static_cast<uint64_t>(s); break;
        case GgufType::i64: s = read_le<int64_t>(p); v = static_cast<uint64_t>(s); break;
        default: return -1;  // f32, f64, bool
    }
    if (s < 0 || v == 0 || v > (uint64_t(1) << 30) || (v & (v - 1)) != 0) return -1;
    return 1;
}

inline uint64_t GgufWriter::alignment() const {
    uint64_t v = 32;
    return alignment_kv(v) == 1 ? v : 32;
}

inline Status GgufWriter::check() const {
    uint64_t v = 0;
    if (alignment_kv(v) < 0) {
        auto it = kv_index_.find("general.alignment");
        return error(StatusCode::invalid_argument,
                     "GGUF writer: general.alignment must be an integer power of two (it is a %s value)",
                     gguf_type_name(kvs_[it->second].type));
    }
    return Status();
}

inline void GgufWriter::layout(std::vector<uint8_t>& head, std::vector<uint64_t>& offsets, uint64_t& data_size) const {
    const uint64_t align = alignment();
    head.clear();
    head.insert(head.end(), {'G', 'G', 'U', 'F'});
    put(head, static_cast<uint32_t>(3));
    put(head, static_cast<uint64_t>(tensors_.size()));
    put(head, static_cast<uint64_t>(kvs_.size()));
    for (const Entry& e : kvs_) {
        put_string(head, e.key);
        put(head, static_cast<uint32_t>(e.type));
        head.insert(head.end(), e.value.begin(), e.value.end());
    }
    offsets.assign(tensors_.size(), 0);
    uint64_t off = 0;
    for (size_t i = 0; i < tensors_.size(); ++i) {
        const Tensor& t = tensors_[i];
        put_string(head, t.name);
        put(head, static_cast<uint32_t>(t.ne.size()));
        for (int64_t d : t.ne) put(head, static_cast<uint64_t>(d));
        put(head, static_cast<uint32_t>(t.type));
        put(head, off);
        offsets[i] = off;
        off = (off + t.nbytes + align - 1) / align * align;
    }
    data_size = off;
    // The data section starts at an aligned offset; a file without tensors ends
    // right after its metadata.
    if (!tensors_.empty()) head.resize((head.size() + align - 1) / align * align, 0);
}

inline std::vector<uint8_t> GgufWriter::bytes() const {
    std::vector<uint8_t> out;
    std::vector<uint64_t> offsets;
    uint64_t data_size = 0;
    layout(out, offsets, data_size);
    size_t base = out.size();
    out.resize(base + static_cast<size_t>(data_size), 0);
    for (size_t i = 0; i < tensors_.size(); ++i) {
        if (tensors_[i].nbytes) std::memcpy(out.data() + base + offsets[i], tensors_[i].data(), tensors_[i].nbytes);
    }
    return out;
}

inline Status GgufWriter::write_file(const std::string& path) const {
    Status st = check();
    if (!st.ok()) return st;
    std::vector<uint8_t> head;
    std::vector<uint64_t> offsets;
    uint64_t data_size = 0;
    layout(head, offsets, data_size);
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return error(StatusCode::io_error, "%s: cannot create file: %s", path.c_str(), std::strerror(errno));
    bool ok = std::fwrite(head.data(), 1, head.size(), f) == head.size();
    static const uint8_t zeros[64] = {};
    uint64_t pos = 0;  // inside the data section
    for (size_t i = 0; ok && i < tensors_.size(); ++i) {
        while (ok && pos < offsets[i]) {
            size_t n = static_cast<size_t>(std::min<uint64_t>(sizeof zeros, offsets[i] - pos));
            ok = std::fwrite(zeros, 1, n, f) == n;
            pos += n;
        }
        const Tensor& t = tensors_[i];
        if (ok && t.nbytes) ok = std::fwrite(t.data(), 1, t.nbytes, f) == t.nbytes;
        pos += t.nbytes;
    }
    while (ok && pos < data_size) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(sizeof zeros, data_size - pos));
        ok = std::fwrite(zeros, 1, n, f) == n;
        pos += n;
    }
    if (std::fclose(f) != 0) ok = false;
    if (!ok) return error(StatusCode::io_error, "%s: write failed", path.c_str());
    return Status();
}

}  // namespace detail
MINIGPT_NS_END
