// base: Status, host hooks (logger, allocator), aligned buffers, UTF-8, timing.
#pragma once
#include "api.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <limits>
#include <new>
#include <type_traits>
#include <unordered_map>
#include <utility>

#if !defined(MINIGPT_WINDOWS)
#  include <sys/mman.h>
#  include <unistd.h>
#endif

MINIGPT_NS_BEGIN

const char* status_code_name(StatusCode code) {
    switch (code) {
        case StatusCode::ok: return "ok";
        case StatusCode::invalid_argument: return "invalid_argument";
        case StatusCode::io_error: return "io_error";
        case StatusCode::bad_format: return "bad_format";
        case StatusCode::unsupported: return "unsupported";
        case StatusCode::out_of_memory: return "out_of_memory";
        case StatusCode::context_full: return "context_full";
        case StatusCode::aborted: return "aborted";
        case StatusCode::internal: return "internal";
    }
    return "unknown";
}

std::string Status::to_string() const {
    if (ok()) return "ok";
    std::string s = status_code_name(code_);
    if (!message_.empty()) {
        s += ": ";
        s += message_;
    }
    return s;
}

namespace detail {

inline Hooks& hooks() {
    static Hooks h;
    return h;
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
inline void log_msg(LogLevel level, const char* fmt, ...) {
    const Hooks& h = hooks();
    if (!h.log || level < h.log_level) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    h.log(h.log_user, level, buf);
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
inline Status error(StatusCode code, const char* fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return Status(code, buf);
}

// Runs f, which returns a Status. When exceptions are enabled, an exception
// thrown inside the library by the standard library (std::bad_alloc from a
// container, std::system_error from starting a thread) becomes a Status here,
// so that none leaves a public entry point.
template <typename F>
inline Status guard(const char* what, F&& f) {
#if defined(__cpp_exceptions)
    try {
        return f();
    } catch (const std::bad_alloc&) {
        return error(StatusCode::out_of_memory, "%s: out of memory", what);
    } catch (const std::exception& e) {
        return error(StatusCode::internal, "%s: %s", what, e.what());
    }
#else
    (void)what;
    return f();
#endif
}

// The host's allocator hooks take the large buffers when both are set.
inline bool hooks_allocate() {
    const Hooks& h = hooks();
    return h.alloc && h.free;
}

// Large buffers (KV cache, scratch) go through MINIGPT_MALLOC when it is defined.
inline void* raw_alloc(size_t n) {
    const Hooks& h = hooks();
    if (hooks_allocate()) return h.alloc(h.alloc_user, n);
#if defined(MINIGPT_MALLOC)
    return MINIGPT_MALLOC(n);
#else
    return std::malloc(n);
#endif
}
inline void raw_free(void* p) {
    const Hooks& h = hooks();
    if (hooks_allocate()) {
        h.free(h.alloc_user, p);
        return;
    }
#if defined(MINIGPT_FREE)
    MINIGPT_FREE(p);
#else
    std::free(p);
#endif
}

#if !defined(MINIGPT_WINDOWS)
// Large arrays that are read through every token (the weights, the KV cache)
// go to 2 MiB pages where the kernel has transparent huge pages (madvise mode
// included): with 4 KiB pages, streaming them walks the page tables once per
// page. On the development machine a 700 MB model generated 21-25 instead of
// 34 tokens/s with one thread, and generation after 2000 tokens ran about 20%
// faster. The mapping starts at a 2 MiB boundary (a reservation of n + 2 MiB,
// the rest given back) and is marked MADV_HUGEPAGE. A file mapping (fd >= 0)
// of a file the page cache holds in small pages stays in them; one read through
// such a mapping fills the cache with huge ones. fd < 0: anonymous, writable
// memory. Returns MAP_FAILED on failure; munmap(p, n) releases it.
inline void* map_huge_aligned(size_t n, int fd) {
    const int prot = fd < 0 ? PROT_READ | PROT_WRITE : PROT_READ;
    const int flags = fd < 0 ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED;
#if defined(MADV_HUGEPAGE)
    const size_t huge = size_t(2) << 20;
    const long page_l = sysconf(_SC_PAGESIZE);
    const size_t page = page_l > 0 ? static_cast<size_t>(page_l) : 4096;
    if (n >= huge && n <= std::numeric_limits<size_t>::max() - 2 * huge && huge % page == 0) {
        void* res = mmap(nullptr, n + huge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (res != MAP_FAILED) {
            const uintptr_t base = reinterpret_cast<uintptr_t>(res);
            const uintptr_t at = (base + huge - 1) & ~static_cast<uintptr_t>(huge - 1);
            void* p = mmap(reinterpret_cast<void*>(at), n, prot, flags | MAP_FIXED, fd, 0);
            if (p == MAP_FAILED) {
                munmap(res, n + huge);
            } else {
                const uintptr_t end = at + (n + page - 1) / page * page, res_end = base + n + huge;
                if (at > base) munmap(res, at - base);
                if (res_end > end) munmap(reinterpret_cast<void*>(end), res_end - end);
                madvise(p, n, MADV_HUGEPAGE);  // advice only: its failure changes nothing
                return p;
            }
        }
    }
#endif
    return mmap(nullptr, n, prot, flags, fd, 0);
}
#endif

// A 64-byte aligned, uninitialised array of T that owns its memory.
template <typename T>
class Buffer {
public:
    Buffer() = default;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    Buffer(Buffer&& o) noexcept { swap(o); }
    Buffer& operator=(Buffer&& o) noexcept { swap(o); return *this; }
    ~Buffer() { release(); }

    // Returns false (and holds nothing) when the allocation fails or overflows.
    // huge: in 2 MiB pages (map_huge_aligned) from 2 MiB on, unless the host
    // allocates (allocator hooks or MINIGPT_MALLOC) or the system has no mmap.
    bool allocate(size_t n, bool huge = false) {
        release();
        if (n == 0) return true;
        if (n > (std::numeric_limits<size_t>::max() - 64) / sizeof(T)) return false;
#if !defined(MINIGPT_WINDOWS) && !defined(MINIGPT_MALLOC)
        if (huge && n * sizeof(T) >= (size_t(2) << 20) && !hooks_allocate()) {
            void* p = map_huge_aligned(n * sizeof(T), -1);
            if (p != MAP_FAILED) {
                raw_ = p;
                map_bytes_ = n * sizeof(T);
                data_ = static_cast<T*>(p);
                size_ = n;
                return true;
            }
        }
#else
        (void)huge;
#endif
        raw_ = raw_alloc(n * sizeof(T) + 64);
        if (!raw_) return false;
        uintptr_t a = (reinterpret_cast<uintptr_t>(raw_) + 63) & ~uintptr_t(63);
        data_ = reinterpret_cast<T*>(a);
        size_ = n;
        return true;
    }
    void release() {
        if (map_bytes_) {
#if !defined(MINIGPT_WINDOWS)
            munmap(raw_, map_bytes_);
#endif
        } else if (raw_) {
            raw_free(raw_);
        }
        raw_ = nullptr;
        map_bytes_ = 0;
        data_ = nullptr;
        size_ = 0;
    }
    T* data() { return data_; }
    const T* data() const { return data_; }
    size_t size() const { return size_; }
    size_t bytes() const { return size_ * sizeof(T); }
    T& operator[](size_t i) { return data_[i]; }
    const T& operator[](size_t i) const { return data_[i]; }

private:
    void swap(Buffer& o) {
        std::swap(raw_, o.raw_);
        std::swap(data_, o.data_);
        std::swap(size_, o.size_);
        std::swap(map_bytes_, o.map_bytes_);
    }
    void* raw_ = nullptr;
    T* data_ = nullptr;
    size_t size_ = 0;
    size_t map_bytes_ = 0;  // raw_ is a mapping of this many bytes (0: from raw_alloc)
};

inline double now_seconds() {
    using clock = std::chrono::steady_clock;
    return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

// Checked arithmetic for sizes read from untrusted files.
inline bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
    if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return true;
    *out = a * b;
    return false;
}
inline bool add_overflows(uint64_t a, uint64_t b, uint64_t* out) {
    if (b > std::numeric_limits<uint64_t>::max() - a) return true;
    *out = a + b;
    return false;
}

// Number of bytes of the UTF-8 sequence that starts with byte c (1 for invalid lead bytes).
inline int utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
}

}  // namespace detail

size_t utf8_complete_prefix(const char* s, size_t n) {
    // Look back at most 3 bytes for the lead byte of an unfinished character.
    size_t back = 0;
    while (back < 4 && back < n) {
        unsigned char c = static_cast<unsigned char>(s[n - 1 - back]);
        if ((c & 0xC0) != 0x80) {  // a lead byte or ASCII
            int len = detail::utf8_len(c);
            if (len > 1 && (size_t)len > back + 1) return n - 1 - back;  // incomplete
            return n;
        }
        ++back;
    }
    return n;  // only continuation bytes: invalid, hand them out as they are
}

bool utf8_valid(std::string_view s) {
    size_t i = 0, n = s.size();
    while (i < n) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) { ++i; continue; }
        uint32_t cp;
        int len;
        if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
        else return false;
        if (i + len > n) return false;
        for (int k = 1; k < len; ++k) {
            unsigned char cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return false;
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

void set_hooks(const Hooks& h) { detail::hooks() = h; }

MINIGPT_NS_END
