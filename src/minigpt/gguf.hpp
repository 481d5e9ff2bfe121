// gguf: the tensor type table, a validating GGUF reader over a byte range, and
// the file mapping (POSIX mmap, Windows MapViewOfFile, or a plain read).
#pragma once
#include "base.hpp"

#if defined(MINIGPT_WINDOWS)
#  ifndef WIN32_LEAN_AND_MEAN
#    define WIN32_LEAN_AND_MEAN
#  endif
#  ifndef NOMINMAX
#    define NOMINMAX
#  endif
#  include <windows.h>
#else
#  include <fcntl.h>
#  include <sys/mman.h>
#  include <sys/stat.h>
#  include <unistd.h>
#endif

MINIGPT_NS_BEGIN
namespace detail {

// ---------------------------------------------------------------------------
// Tensor types, numbered as in GGUF files.
// ---------------------------------------------------------------------------
enum class Type : uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21,
    IQ2_S = 22, IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28,
    IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

struct TypeInfo {
    const char* name;     // nullptr: no such type id
    int64_t block_size;   // elements per block
    uint64_t block_bytes; // bytes per block
};

// Layout of every type id a GGUF file may name, supported or not, so that an
// unsupported tensor can still be sized and named in an error message.
inline TypeInfo type_info(uint32_t id) {
    switch (id) {
        case 0: return {"F32", 1, 4};
        case 1: return {"F16", 1, 2};
        case 2: return {"Q4_0", 32, 18};
        case 3: return {"Q4_1", 32, 20};
        case 6: return {"Q5_0", 32, 22};
        case 7: return {"Q5_1", 32, 24};
        case 8: return {"Q8_0", 32, 34};
        case 9: return {"Q8_1", 32, 36};
        case 10: return {"Q2_K", 256, 84};
        case 11: return {"Q3_K", 256, 110};
        case 12: return {"Q4_K", 256, 144};
        case 13: return {"Q5_K", 256, 176};
        case 14: return {"Q6_K", 256, 210};
        case 15: return {"Q8_K", 256, 292};
        case 16: return {"IQ2_XXS", 256, 66};
        case 17: return {"IQ2_XS", 256, 74};
        case 18: return {"IQ3_XXS", 256, 98};
        case 19: return {"IQ1_S", 256, 50};
        case 20: return {"IQ4_NL", 32, 18};
        case 21: return {"IQ3_S", 256, 110};
        case 22: return {"IQ2_S", 256, 82};
        case 23: return {"IQ4_XS", 256, 136};
        case 24: return {"I8", 1, 1};
        case 25: return {"I16", 1, 2};
        case 26: return {"I32", 1, 4};
        case 27: return {"I64", 1, 8};
        case 28: return {"F64", 1, 8};
        case 29: return {"IQ1_M", 256, 56};
        case 30: return {"BF16", 1, 2};
        case 34: return {"TQ1_0", 256, 54};
        case 35: return {"TQ2_0", 256, 66};
        case 39: return {"MXFP4", 32, 17};
        default: return {nullptr, 0, 0};
    }
}
inline TypeInfo type_info(Type t) { return type_info(static_cast<uint32_t>(t)); }
inline const char* type_name(uint32_t id) {
    const char* n = type_info(id).name;
    return n ? n : "unknown";
}
inline const char* type_name(Type t) { return type_name(static_cast<uint32_t>(t)); }

// Bytes of a row of n elements (n must be a multiple of the block size).
inline size_t row_bytes(Type t, int64_t n) {
    TypeInfo ti = type_info(t);
    return static_cast<size_t>(n / ti.block_size) * static_cast<size_t>(ti.block_bytes);
}

// ---------------------------------------------------------------------------
// Metadata values.
// ---------------------------------------------------------------------------
enum class GgufType : uint32_t {
    u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
    string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12,
};

inline const char* gguf_type_name(GgufType t) {
    static const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                  "string", "array", "u64", "i64", "f64"};
    uint32_t i = static_cast<uint32_t>(t);
    return i < 13 ? names[i] : "unknown";
}

// Size of a fixed-size value type; 0 for string, array and unknown types.
inline size_t gguf_scalar_size(GgufType t) {
    switch (t) {
        case GgufType::u8: case GgufType::i8: case GgufType::boolean: return 1;
        case GgufType::u16: case GgufType::i16: return 2;
        case GgufType::u32: case GgufType::i32: case GgufType::f32: return 4;
        case GgufType::u64: case GgufType::i64: case GgufType::f64: return 8;
        default: return 0;
    }
}

struct GgufKV {
    std::string key;
    GgufType type = GgufType::u8;
    const uint8_t* data = nullptr;   // scalar: the value; string: its bytes; array: first element
    uint64_t length = 0;             // string: bytes; array: element count
    GgufType elem = GgufType::u8;    // arrays: element type
    std::vector<std::string_view> strings;  // arrays of strings, validated at parse time
};

struct GgufTensor {
    std::string name;
    uint32_t type = 0;
    int n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};   // ne[0] is the row length (contiguous)
    uint64_t offset = 0;            // from the start of the data section
    uint64_t nbytes = 0;
    const uint8_t* data = nullptr;
    int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

template <typename T>
inline T read_le(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}

// A parsed GGUF file. It does not own the bytes it points into.
class GgufFile {
public:
    uint32_t version = 0;
    uint64_t alignment = 32;
    uint64_t data_offset = 0;  // start of the tensor data section
    std::vector<GgufKV> kvs;
    std::vector<GgufTensor> tensors;

    // Validates the whole file: every count, length, offset and extent.
    Status parse(const uint8_t* data, size_t size);

    const GgufKV* find(std::string_view key) const {
        auto it = kv_index_.find(std::string(key));
        return it == kv_index_.end() ? nullptr : &kvs[it->second];
    }
    const GgufTensor* find_tensor(std::string_view name) const {
        auto it = tensor_index_.find(std::string(name));
        return it == tensor_index_.end() ? nullptr : &tensors[it->second];
    }

    // Typed getters: return false when the key is absent. A present key of an
    // incompatible type gives a bad_format Status through `st`.
    bool get_int(std::string_view key, int64_t& out, Status& st) const;
    bool get_float(std::string_view key, double& out, Status& st) const;
    bool get_bool(std::string_view key, bool& out, Status& st) const;
    bool get_string(std::string_view key, std::string_view& out, Status& st) const;
    // Array of the given element kind; false when absent.
    const GgufKV* get_array(std::string_view key, Status& st) const;

    // Element i of an array whose elements are numbers, converted.
    static double array_number(const GgufKV& kv, uint64_t i);
    static int64_t array_int(const GgufKV& kv, uint64_t i);

    const uint8_t* base() const { return base_; }
    size_t size() const { return size_; }

private:
    const uint8_t* base_ = nullptr;
    size_t size_ = 0;
    std::unordered_map<std::string, size_t> kv_index_;
    std::unordered_map<std::string, size_t> tensor_index_;
};

// Bounds-checked cursor over the file bytes.
class GgufCursor {
public:
    GgufCursor(const uint8_t* p, size_t n) : base_(p), size_(n) {}
    size_t pos() const { return pos_; }
    size_t left() const { return size_ - pos_; }
    const uint8_t* at() const { return base_ + pos_; }
    bool take(size_t n) {
        if (n > left()) return false;
        pos_ += n;
        return true;
    }
    template <typename T>
    bool read(T& v) {
        if (sizeof(T) > left()) return false;
        v = read_le<T>(base_ + pos_);
        pos_ += sizeof(T);
        return true;
    }
    bool read_string(std::string_view& s) {
        uint64_t n;
        if (!read(n)) return false;
        if (n > left()) return false;
        s = std::string_view(reinterpret_cast<const char*>(at()), static_cast<size_t>(n));
        pos_ += static_cast<size_t>(n);
        return true;
    }

private:
    const uint8_t* base_;
    size_t size_;
    size_t pos_ = 0;
};

inline Status gguf_truncated(const char* what, size_t pos) {
    return error(StatusCode::bad_format, "GGUF file truncated while reading %s at offset %zu", what, pos);
}

// Skips one value of type t (recursing into arrays), checking every length.
inline Status gguf_skip_value(GgufCursor& c, GgufType t, const std::string& key, int depth) {
    size_t sz = gguf_scalar_size(t);
    if (sz) {
        if (!c.take(sz)) return gguf_truncated(("value of key '" + key + "'").c_str(), c.pos());
        return Status();
    }
    if (t == GgufType::string) {
        std::string_view s;
        if (!c.read_string(s))
            return error(StatusCode::bad_format, "key '%s': string length runs past the end of the file", key.c_str());
        return Status();
    }
    if (t == GgufType::array) {
        if (depth >= 8) return error(StatusCode::bad_format, "key '%s': arrays nested too deeply", key.c_str());
        uint32_t et;
        uint64_t n;
        if (!c.read(et) || !c.read(n)) return gguf_truncated(("array header of key '" + key + "'").c_str(), c.pos());
        GgufType e = static_cast<GgufType>(et);
        size_t esz = gguf_scalar_size(e);
        if (esz) {
            uint64_t total;
            if (mul_overflows(n, esz, &total) || total > c.left())
                return error(StatusCode::bad_format, "key '%s': array of %llu elements runs past the end of the file",
                             key.c_str(), (unsigned long long)n);
            c.take(static_cast<size_t>(total));
            return Status();
        }
        if (e != GgufType::string && e != GgufType::array)
            return error(StatusCode::bad_format, "key '%s': unknown array element type %u", key.c_str(), et);
        // Every element takes at least 8 bytes: reject absurd counts before looping.
        if (n > c.left() / 8)
            return error(StatusCode::bad_format, "key '%s': array of %llu elements runs past the end of the file",
                         key.c_str(), (unsigned long long)n);
        for (uint64_t i = 0; i < n; ++i) {
            Status st = gguf_skip_value(c, e, key, depth + 1);
            if (!st.ok()) return st;
        }
        return Status();
    }
    return error(StatusCode::bad_format, "key '%s': unknown value type %u", key.c_str(), static_cast<uint32_t>(t));
}

inline Status GgufFile::parse(const uint8_t* data, size_t size) {
    *this = GgufFile();
    base_ = data;
    size_ = size;
    GgufCursor c(data, size);

    if (size < 4 || std::memcmp(data, "GGUF", 4) != 0)
        return error(StatusCode::bad_format, "not a GGUF file (bad magic)");
    c.take(4);
    if (!c.read(version)) return gguf_truncated("the version", c.pos());
    if (version != 2 && version != 3) {
        if (version == 0x03000000 || version == 0x02000000)
            return error(StatusCode::unsupported, "big-endian GGUF files are not supported");
        return error(StatusCode::unsupported, "GGUF version %u is not supported (only 2 and 3)", version);
    }
    uint64_t n_tensors, n_kv;
    if (!c.read(n_tensors)) return gguf_truncated("the tensor count", c.pos());
    if (!c.read(n_kv)) return gguf_truncated("the metadata count", c.pos());
    // A key-value pair takes at least 12 bytes and a tensor entry at least 24.
    if (n_kv > c.left() / 12)
        return error(StatusCode::bad_format, "metadata count %llu is larger than the file can hold", (unsigned long long)n_kv);
    if (n_tensors > c.left() / 24)
        return error(StatusCode::bad_format, "tensor count %llu is larger than the file can hold", (unsigned long long)n_tensors);

    // Counts are only bounded by the file size here: reserve modestly so that a
    // corrupt count cannot ask for many times the file's size up front.
    kvs.reserve(static_cast<size_t>(std::min<uint64_t>(n_kv, 4096)));
    for (uint64_t i = 0; i < n_kv; ++i) {
        GgufKV kv;
        std::string_view key;
        if (!c.read_string(key))
            return error(StatusCode::bad_format, "metadata entry %llu: key runs past the end of the file", (unsigned long long)i);
        kv.key.assign(key.data(), key.size());
        uint32_t t;
        if (!c.read(t)) return gguf_truncated(("type of key '" + kv.key + "'").c_str(), c.pos());
        kv.type = static_cast<GgufType>(t);
        if (t > 12) return error(StatusCode::bad_format, "key '%s': unknown value type %u", kv.key.c_str(), t);
        if (kv.type == GgufType::string) {
            std::string_view s;
            if (!c.read_string(s))
                return error(StatusCode::bad_format, "key '%s': string length runs past the end of the file", kv.key.c_str());
            kv.data = reinterpret_cast<const uint8_t*>(s.data());
            kv.length = s.size();
        } else if (kv.type == GgufType::array) {
            uint32_t et;
            if (!c.read(et) || !c.read(kv.length))
                return gguf_truncated(("array header of key '" + kv.key + "'").c_str(), c.pos());
            kv.elem = static_cast<GgufType>(et);
            if (et > 12) return error(StatusCode::bad_format, "key '%s': unknown array element type %u", kv.key.c_str(), et);
            kv.data = c.at();
            if (kv.elem == GgufType::string) {
                if (kv.length > c.left() / 8)
                    return error(StatusCode::bad_format, "key '%s': array of %llu strings runs past the end of the file",
                                 kv.key.c_str(), (unsigned long long)kv.length);
                kv.strings.reserve(static_cast<size_t>(std::min<uint64_t>(kv.length, 1u << 20)));
                for (uint64_t k = 0; k < kv.length; ++k) {
                    std::string_view s;
                    if (!c.read_string(s))
                        return error(StatusCode::bad_format, "key '%s': string %llu runs past the end of the file",
                                     kv.key.c_str(), (unsigned long long)k);
                    kv.strings.push_back(s);
                }
            } else {
                // Arrays of arrays: walk the nested values with the generic walker.
                GgufCursor probe = c;
                uint64_t n = kv.length;
                size_t esz = gguf_scalar_size(kv.elem);
                if (esz) {
                    uint64_t total;
                    if (mul_overflows(n, esz, &total) || total > c.left())
                        return error(StatusCode::bad_format, "key '%s': array of %llu elements runs past the end of the file",
                                     kv.key.c_str(), (unsigned long long)n);
                    c.take(static_cast<size_t>(total));
                } else {
                    if (n > c.left() / 8)
                        return error(StatusCode::bad_format, "key '%s': array of %llu elements runs past the end of the file",
                                     kv.key.c_str(), (unsigned long long)n);
                    for (uint64_t k = 0; k < n; ++k) {
                        Status st = gguf_skip_value(probe, kv.elem, kv.key, 1);
                        if (!st.ok()) return st;
                    }
                    c = probe;
                }
            }
        } else {
            kv.data = c.at();
            if (!c.take(gguf_scalar_size(kv.type)))
                return gguf_truncated(("value of key '" + kv.key + "'").c_str(), c.pos());
        }
        if (kv_index_.count(kv.key))
            return error(StatusCode::bad_format, "duplicate metadata key '%s'", kv.key.c_str());
        kv_index_.emplace(kv.key, kvs.size());
        kvs.push_back(std::move(kv));
    }

    Status st;
    int64_t align = 32;
    if (get_int("general.alignment", align, st)) {
        if (align <= 0 || align > (1 << 30) || (align & (align - 1)) != 0)
            return error(StatusCode::bad_format, "general.alignment %lld is not a power of two", (long long)align);
    } else if (!st.ok()) {
        return st;
    }
    alignment = static_cast<uint64_t>(align);

    tensors.reserve(static_cast<size_t>(std::min<uint64_t>(n_tensors, 4096)));
    for (uint64_t i = 0; i < n_tensors; ++i) {
        GgufTensor t;
        std::string_view name;
        if (!c.read_string(name))
            return error(StatusCode::bad_format, "tensor entry %llu: name runs past the end of the file", (unsigned long long)i);
        t.name.assign(name.data(), name.size());
        const char* tn = t.name.c_str();
        uint32_t n_dims;
        if (!c.read(n_dims)) return gguf_truncated(("tensor '" + t.name + "'").c_str(), c.pos());
        if (n_dims < 1 || n_dims > 4)
            return error(StatusCode::bad_format, "tensor '%s': %u dimensions (1 to 4 are allowed)", tn, n_dims);
        t.n_dims = static_cast<int>(n_dims);
        for (uint32_t d = 0; d < n_dims; ++d) {
            uint64_t ne;
            if (!c.read(ne)) return gguf_truncated(("shape of tensor '" + t.name + "'").c_str(), c.pos());
            if (ne > (uint64_t(1) << 40))
                return error(StatusCode::bad_format, "tensor '%s': dimension %u is %llu, which is absurd", tn, d,
                             (unsigned long long)ne);
            t.ne[d] = static_cast<int64_t>(ne);
        }
        if (!c.read(t.type) || !c.read(t.offset)) return gguf_truncated(("tensor '" + t.name + "'").c_str(), c.pos());
        TypeInfo ti = type_info(t.type);
        if (!ti.name) return error(StatusCode::bad_format, "tensor '%s': unknown tensor type %u", tn, t.type);
        uint64_t n_el = 1;
        for (int d = 0; d < 4; ++d) {
            if (mul_overflows(n_el, static_cast<uint64_t>(t.ne[d]), &n_el) || n_el > (uint64_t(1) << 50))
                return error(StatusCode::bad_format, "tensor '%s': element count overflows", tn);
        }
        if (t.ne[0] % ti.block_size != 0)
            return error(StatusCode::bad_format, "tensor '%s': row length %lld is not a multiple of the %s block size %lld",
                         tn, (long long)t.ne[0], ti.name, (long long)ti.block_size);
        if (mul_overflows(n_el / static_cast<uint64_t>(ti.block_size), ti.block_bytes, &t.nbytes))
            return error(StatusCode::bad_format, "tensor '%s': byte size overflows", tn);
        if (t.offset % alignment != 0)
            return error(StatusCode::bad_format, "tensor '%s': data offset %llu is not aligned to %llu", tn,
                         (unsigned long long)t.offset, (unsigned long long)alignment);
        if (tensor_index_.count(t.name)) return error(StatusCode::bad_format, "duplicate tensor name '%s'", tn);
        tensor_index_.emplace(t.name, tensors.size());
        tensors.push_back(std::move(t));
    }

    // The data section starts at the next multiple of the alignment.
    uint64_t pos = c.pos();
    uint64_t aligned = (pos + alignment - 1) / alignment * alignment;
    if (n_tensors > 0 && aligned > size)
        return error(StatusCode::bad_format, "GGUF file truncated before the tensor data section");
    data_offset = aligned;

    // Extents: inside the file and not overlapping one another.
    std::vector<size_t> order(tensors.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return tensors[a].offset < tensors[b].offset; });
    uint64_t prev_end = 0;
    const char* prev_name = nullptr;
    for (size_t k = 0; k < order.size(); ++k) {
        GgufTensor& t = tensors[order[k]];
        uint64_t start, end;
        if (add_overflows(data_offset, t.offset, &start) || add_overflows(start, t.nbytes, &end) || end > size)
            return error(StatusCode::bad_format, "tensor '%s': data (%llu bytes at offset %llu) extends past the end of the file",
                         t.name.c_str(), (unsigned long long)t.nbytes, (unsigned long long)t.offset);
        t.data = data + start;
        if (t.nbytes == 0) continue;  // an empty tensor occupies no bytes
        if (prev_name && start < prev_end)
            return error(StatusCode::bad_format, "tensor '%s': data overlaps tensor '%s'", t.name.c_str(), prev_name);
        prev_end = end;
        prev_name = t.name.c_str();
    }
    return Status();
}

inline bool GgufFile::get_int(std::string_view key, int64_t& out, Status& st) const {
    const GgufKV* kv = find(key);
    if (!kv) return false;
    const uint8_t* p = kv->data;
    switch (kv->type) {
        case GgufType::u8: out = read_le<uint8_t>(p); return true;
        case GgufType::i8: out = read_le<int8_t>(p); return true;
        case GgufType::u16: out = read_le<uint16_t>(p); return true;
        case GgufType::i16: out = read_le<int16_t>(p); return true;
        case GgufType::u32: out = read_le<uint32_t>(p); return true;
        case GgufType::i32: out = read_le<int32_t>(p); return true;
        case GgufType::i64: out = read_le<int64_t>(p); return true;
        case GgufType::u64: {
            uint64_t v = read_le<uint64_t>(p);
            if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) break;
            out = static_cast<int64_t>(v);
            return true;
        }
        default: break;
    }
    st = error(StatusCode::bad_format, "key '%s' should be an integer but is %s", kv->key.c_str(), gguf_type_name(kv->type));
    return false;
}

inline bool GgufFile::get_float(std::string_view key, double& out, Status& st) const {
    const GgufKV* kv = find(key);
    if (!kv) return false;
    if (kv->type == GgufType::f32) { out = read_le<float>(kv->data); return true; }
    if (kv->type == GgufType::f64) { out = read_le<double>(kv->data); return true; }
    int64_t v;
    Status ignored;
    if (get_int(key, v, ignored)) { out = static_cast<double>(v); return true; }
    st = error(StatusCode::bad_format, "key '%s' should be a number but is %s", kv->key.c_str(), gguf_type_name(kv->type));
    return false;
}

inline bool GgufFile::get_bool(std::string_view key, bool& out, Status& st) const {
    const GgufKV* kv = find(key);
    if (!kv) return false;
    if (kv->type == GgufType::boolean) { out = kv->data[0] != 0; return true; }
    st = error(StatusCode::bad_format, "key '%s' should be a bool but is %s", kv->key.c_str(), gguf_type_name(kv->type));
    return false;
}

inline bool GgufFile::get_string(std::string_view key, std::string_view& out, Status& st) const {
    const GgufKV* kv = find(key);
    if (!kv) return false;
    if (kv->type == GgufType::string) {
        out = std::string_view(reinterpret_cast<const char*>(kv->data), static_cast<size_t>(kv->length));
        return true;
    }
    st = error(StatusCode::bad_format, "key '%s' should be a string but is %s", kv->key.c_str(), gguf_type_name(kv->type));
    return false;
}

inline const GgufKV* GgufFile::get_array(std::string_view key, Status& st) const {
    const GgufKV* kv = find(key);
    if (!kv) return nullptr;
    if (kv->type == GgufType::array && kv->elem != GgufType::array) return kv;
    st = error(StatusCode::bad_format, "key '%s' should be a flat array but is %s", kv->key.c_str(), gguf_type_name(kv->type));
    return nullptr;
}

inline double GgufFile::array_number(const GgufKV& kv, uint64_t i) {
    size_t esz = gguf_scalar_size(kv.elem);
    if (!esz || i >= kv.length) return 0;
    const uint8_t* p = kv.data + i * esz;
    switch (kv.elem) {
        case GgufType::u8: return read_le<uint8_t>(p);
        case GgufType::i8: return read_le<int8_t>(p);
        case GgufType::u16: return read_le<uint16_t>(p);
        case GgufType::i16: return read_le<int16_t>(p);
        case GgufType::u32: return read_le<uint32_t>(p);
        case GgufType::i32: return read_le<int32_t>(p);
        case GgufType::f32: return read_le<float>(p);
        case GgufType::boolean: return p[0] != 0;
        case GgufType::u64: return static_cast<double>(read_le<uint64_t>(p));
        case GgufType::i64: return static_cast<double>(read_le<int64_t>(p));
        case GgufType::f64: return read_le<double>(p);
        default: return 0;
    }
}

inline int64_t GgufFile::array_int(const GgufKV& kv, uint64_t i) {
    size_t esz = gguf_scalar_size(kv.elem);
    if (!esz || i >= kv.length) return 0;
    const uint8_t* p = kv.data + i * esz;
    switch (kv.elem) {
        case GgufType::u64: return static_cast<int64_t>(read_le<uint64_t>(p));
        case GgufType::i64: return read_le<int64_t>(p);
        default: {
            // Float elements: NaN gives 0 and out-of-range values saturate
            // (casting them directly would be undefined behaviour).
            double d = array_number(kv, i);
            if (!(d == d)) return 0;
            if (d >= 9223372036854775807.0) return std::numeric_limits<int64_t>::max();
            if (d <= -9223372036854775808.0) return std::numeric_limits<int64_t>::min();
            return static_cast<int64_t>(d);
        }
    }
}

// ---------------------------------------------------------------------------
// The bytes of a model file: mapped, read into memory, or borrowed.
// ---------------------------------------------------------------------------
class FileBytes {
public:
    FileBytes() = default;
    FileBytes(const FileBytes&) = delete;
    FileBytes& operator=(const FileBytes&) = delete;
    ~FileBytes() { close(); }

    // reread: see map_model_file (POSIX mappings only). Model::load passes
    // ModelParams::reread_small_pages; a caller that reads the file once (its
    // header, or every tensor once) gains nothing from it.
    Status open(const std::string& path, bool use_mmap, bool reread = false);
    // Reads the whole file through the host's FileIO hooks.
    Status open_with(const std::string& path, const FileIO& io) {
        close();
        if (!io.size || !io.read) return error(StatusCode::invalid_argument, "FileIO needs both size and read");
        uint64_t n = 0;
        if (!io.size(io.user, path.c_str(), &n)) return error(StatusCode::io_error, "%s: cannot open file", path.c_str());
        if (n == 0) return error(StatusCode::bad_format, "%s: the file is empty", path.c_str());
        if (n > std::numeric_limits<size_t>::max() / 2 || !owned_.allocate(static_cast<size_t>(n)))
            return error(StatusCode::out_of_memory, "%s: cannot allocate %llu bytes", path.c_str(), (unsigned long long)n);
        const size_t chunk = size_t(1) << 26;
        for (uint64_t off = 0; off < n; off += chunk) {
            const size_t len = static_cast<size_t>(std::min<uint64_t>(chunk, n - off));
            if (!io.read(io.user, path.c_str(), off, owned_.data() + off, len)) {
                owned_.release();
                return error(StatusCode::io_error, "%s: read failed at offset %llu", path.c_str(), (unsigned long long)off);
            }
        }
        data_ = owned_.data();
        size_ = static_cast<size_t>(n);
        return Status();
    }
    void borrow(const void* data, size_t size) {
        close();
        data_ = static_cast<const uint8_t*>(data);
        size_ = size;
    }
    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    bool mapped() const { return mapped_; }

private:
    void close();
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    bool mapped_ = false;
    Buffer<uint8_t> owned_;
#if defined(MINIGPT_WINDOWS)
    HANDLE mapping_ = nullptr;
#endif
};

inline void FileBytes::close() {
    if (mapped_ && data_) {
#if defined(MINIGPT_WINDOWS)
        UnmapViewOfFile(data_);
        if (mapping_) CloseHandle(mapping_);
        mapping_ = nullptr;
#else
        munmap(const_cast<uint8_t*>(data_), size_);
#endif
    }
    owned_.release();
    data_ = nullptr;
    size_ = 0;
    mapped_ = false;
}

#if defined(MINIGPT_WINDOWS)
inline Status FileBytes::open(const std::string& path, bool use_mmap, bool) {
    close();
    int wlen = MultiByteToWideChar(CP_UTF8, 0, path.c_str(), -1, nullptr, 0);
    if (wlen <= 0) return error(StatusCode::io_error, "%s: invalid file name", path.c_str());
    std::wstring wpath(static_cast<size_t>(wlen), L'\0');
    MultiByteToWideChar(CP_UTF8, 0, path.c_str(), -1, &wpath[0], wlen);
    HANDLE f = CreateFileW(wpath.c_str(), GENERIC_READ, FILE_SHARE_READ, nullptr, OPEN_EXISTING,
                           FILE_ATTRIBUTE_NORMAL, nullptr);
    if (f == INVALID_HANDLE_VALUE) return error(StatusCode::io_error, "%s: cannot open file", path.c_str());
    LARGE_INTEGER sz;
    if (!GetFileSizeEx(f, &sz)) {
        CloseHandle(f);
        return error(StatusCode::io_error, "%s: cannot get the file size", path.c_str());
    }
    size_t n = static_cast<size_t>(sz.QuadPart);
    if (n == 0) {
        CloseHandle(f);
        return error(StatusCode::bad_format, "%s: the file is empty", path.c_str());
    }
    if (use_mmap) {
        HANDLE m = CreateFileMappingW(f, nullptr, PAGE_READONLY, 0, 0, nullptr);
        CloseHandle(f);
        if (!m) return error(StatusCode::io_error, "%s: cannot map the file", path.c_str());
        void* p = MapViewOfFile(m, FILE_MAP_READ, 0, 0, 0);
        if (!p) {
            CloseHandle(m);
            return error(StatusCode::io_error, "%s: cannot map the file", path.c_str());
        }
        mapping_ = m;
        data_ = static_cast<const uint8_t*>(p);
        size_ = n;
        mapped_ = true;
        return Status();
    }
    if (!owned_.allocate(n)) {
        CloseHandle(f);
        return error(StatusCode::out_of_memory, "%s: cannot allocate %zu bytes", path.c_str(), n);
    }
    size_t done = 0;
    while (done < n) {
        DWORD chunk = static_cast<DWORD>(std::min<size_t>(n - done, 1u << 30)), got = 0;
        if (!ReadFile(f, owned_.data() + done, chunk, &got, nullptr) || got == 0) {
            CloseHandle(f);
            owned_.release();
            return error(StatusCode::io_error, "%s: read failed", path.c_str());
        }
        done += got;
    }
    CloseHandle(f);
    data_ = owned_.data();
    size_ = n;
    return Status();
}
#else
#if defined(__linux__) && defined(MADV_HUGEPAGE) && defined(POSIX_FADV_DONTNEED)
// This process's file bytes mapped in 2 MiB pages (FilePmdMapped in
// /proc/self/smaps_rollup), in KiB; -1 when unknown.
inline long long file_pmd_kib() {
    FILE* f = std::fopen("/proc/self/smaps_rollup", "re");
    if (!f) return -1;
    char line[256];
    long long kib = -1;
    while (std::fgets(line, sizeof line, f))
        if (std::strncmp(line, "FilePmdMapped:", 14) == 0) {
            kib = std::strtoll(line + 14, nullptr, 10);
            break;
        }
    std::fclose(f);
    return kib;
}

// Touches the file page at p (a 2 MiB boundary of a file mapping not yet
// touched there) and tells whether the kernel mapped those 2 MiB as one page.
inline bool touch_maps_huge(const uint8_t* p) {
    const long long before = file_pmd_kib();
    if (before < 0) return false;
    (void)*static_cast<const volatile uint8_t*>(p);
    return file_pmd_kib() - before >= 2048;
}
#endif

// Maps file fd (n bytes) for reading, in 2 MiB pages where it can
// (map_huge_aligned). The kernel maps a file in 2 MiB pages only where its
// page cache holds it in 2 MiB pages, which depends on how the file was read:
// - A fault in a mapping marked MADV_HUGEPAGE reads 2 MiB at a time, but a
//   read-ahead window that runs into a part already cached (one the loader
//   touched) reads the rest of the window in smaller pages: a cold
//   smollm2-135m Q8_0 file came back with 6 of its 68 parts in small pages,
//   each right after a touched one, and llama-3.2-1b Q4_K with 6 of its 332.
//   So read-ahead is switched off for the whole mapping (MADV_RANDOM), and
//   stays off once a part of the file has been seen mapped as one page: every
//   fault then reads its 2 MiB part, in one page.
//   (Where the kernel cannot cache the file so, read-ahead stays on: a fault
//   might read a single 4 KiB page otherwise.)
// - A file written in pieces smaller than 2 MiB (copied, downloaded, or written
//   tensor by tensor) stays cached in small pages until the cache lets it go,
//   and streaming such weights walks the page tables at every 4 KiB. With
//   reread (Linux, files of 4 MiB or more), up to 8 whole parts of the file,
//   spread over it, are touched. If one maps in small pages, that part is
//   dropped from the page cache and touched again, and if it then maps as one
//   page, the whole file is dropped (posix_fadvise DONTNEED: the pages no
//   process maps, once written to disk) and is read anew, in 2 MiB pages, as
//   the weights are first used; *dropped tells. Where the kernel or the file
//   system cannot cache the file so, only that part was read again.
// Without reread, the last whole part alone is touched, to see whether the
// kernel caches this file in 2 MiB pages.
inline void* map_model_file(size_t n, int fd, bool reread, bool* dropped) {
    *dropped = false;
    void* p = map_huge_aligned(n, fd);
#if defined(__linux__) && defined(MADV_HUGEPAGE) && defined(POSIX_FADV_DONTNEED)
    const size_t huge = size_t(2) << 20;
    if (p == MAP_FAILED || n < 2 * huge || (reinterpret_cast<uintptr_t>(p) & (huge - 1)) != 0) return p;
    // (parts touched with read-ahead off: no part being read ahead escapes a drop)
    (void)madvise(p, n, MADV_RANDOM);
    auto touch = [&](size_t at) { return touch_maps_huge(static_cast<const uint8_t*>(p) + at); };
    const size_t parts = n / huge, samples = reread ? std::min<size_t>(8, parts) : 1;
    size_t small = n;  // (none)
    bool one_page = false;  // some part mapped as one page
    for (size_t i = 0; i < samples && small == n; ++i) {
        const size_t at = (parts - 1 - i * parts / samples) * huge;  // (the last part first)
        if (touch(at)) one_page = true;
        else small = at;
    }
    if (reread && small != n) {
        munmap(p, n);  // (so that our small pages of that part do not keep it cached)
        (void)fdatasync(fd);  // (pages not yet written to disk are not dropped)
        (void)posix_fadvise(fd, static_cast<off_t>(small), static_cast<off_t>(huge), POSIX_FADV_DONTNEED);
        p = map_huge_aligned(n, fd);
        if (p != MAP_FAILED) (void)madvise(p, n, MADV_RANDOM);
        one_page = p != MAP_FAILED && touch(small);
        if (one_page) *dropped = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0;
    }
    if (p != MAP_FAILED && !one_page) (void)madvise(p, n, MADV_NORMAL);
#else
    (void)reread;
#endif
    return p;
}

inline Status FileBytes::open(const std::string& path, bool use_mmap, bool reread) {
    close();
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return error(StatusCode::io_error, "%s: cannot open file: %s", path.c_str(), std::strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        ::close(fd);
        return error(StatusCode::io_error, "%s: not a regular file", path.c_str());
    }
    size_t n = static_cast<size_t>(sb.st_size);
    if (n == 0) {
        ::close(fd);
        return error(StatusCode::bad_format, "%s: the file is empty", path.c_str());
    }
    if (use_mmap) {
        bool dropped = false;
        void* p = map_model_file(n, fd, reread, &dropped);
        ::close(fd);
        if (p == MAP_FAILED) return error(StatusCode::io_error, "%s: mmap failed: %s", path.c_str(), std::strerror(errno));
        if (dropped) log_msg(LogLevel::info, "%s: was cached in 4 KiB pages; read anew in 2 MiB pages", path.c_str());
        data_ = static_cast<const uint8_t*>(p);
        size_ = n;
        mapped_ = true;
        return Status();
    }
    if (!owned_.allocate(n, true)) {
        ::close(fd);
        return error(StatusCode::out_of_memory, "%s: cannot allocate %zu bytes", path.c_str(), n);
    }
    size_t done = 0;
    while (done < n) {
        ssize_t got = ::read(fd, owned_.data() + done, n - done);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            ::close(fd);
            owned_.release();
            return error(StatusCode::io_error, "%s: read failed", path.c_str());
        }
        done += static_cast<size_t>(got);
    }
    ::close(fd);
    data_ = owned_.data();
    size_ = n;
    return Status();
}
#endif

}  // namespace detail
MINIGPT_NS_END
