// Helpers shared by the example programs: one-line errors, strict number
// parsing, file reading and small formatting helpers.
#pragma once
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace examples {

// The program name used in error messages.
inline const char*& prog_name() {
    static const char* name = "minigpt";
    return name;
}

// Every failure is one line on stderr and exit status 1.
[[noreturn]] inline void fail(const std::string& message) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s: error: %s\n", prog_name(), message.c_str());
    std::exit(1);
}

// Decimal integers only: an optional sign and digits, nothing before or after.
enum class IntParse { ok, junk, range };

inline IntParse parse_long_long(const char* s, long long& out) {
    const char* d = (*s == '-' || *s == '+') ? s + 1 : s;
    if (*d < '0' || *d > '9') return IntParse::junk;
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(s, &end, 10);
    if (*end != '\0') return IntParse::junk;
    if (errno == ERANGE) return IntParse::range;
    out = v;
    return IntParse::ok;
}

inline int parse_int(const std::string& flag, const char* s, long long lo, long long hi) {
    long long v = 0;
    IntParse r = parse_long_long(s, v);
    if (r == IntParse::junk) fail("invalid integer '" + std::string(s) + "' for " + flag);
    if (r == IntParse::range || v < lo || v > hi) {
        fail("value " + std::string(s) + " for " + flag + " is out of range [" + std::to_string(lo) + ", " +
             std::to_string(hi) + "]");
    }
    return static_cast<int>(v);
}

// Decimal numbers such as 0.8, -1, 1e-3; no leading spaces, no trailing junk.
inline float parse_float(const std::string& flag, const char* s, double lo, double hi, bool lo_open = false) {
    const char* d = (*s == '-' || *s == '+') ? s + 1 : s;
    const bool starts_ok = (*d >= '0' && *d <= '9') || (*d == '.' && d[1] >= '0' && d[1] <= '9');
    errno = 0;
    char* end = nullptr;
    const double v = starts_ok ? std::strtod(s, &end) : 0.0;
    if (!starts_ok || *end != '\0' || std::isnan(v)) fail("invalid number '" + std::string(s) + "' for " + flag);
    if (errno == ERANGE || std::isinf(v) || v > hi || v < lo || (lo_open && v == lo)) {
        char range[96];
        std::snprintf(range, sizeof range, "%s%g, %g]", lo_open ? "(" : "[", lo, hi);
        fail("value " + std::string(s) + " for " + flag + " is out of range " + range);
    }
    return static_cast<float>(v);
}

inline bool read_text_file(const std::string& path, std::string& out) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return false;
    out.clear();
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    bool ok = !std::ferror(f);
    std::fclose(f);
    return ok;
}

inline double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

inline double mib(uint64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

// The KV cache's type from -ctk / -ctv (--cache-type-k / --cache-type-v), f32
// or f16. Keys and values share it: either option sets it, and f16 given to
// one of them wins over the other's f32.
struct CacheTypeArgs {
    std::string k = "f32", v = "f32";
    // True when flag is one of the options; its value is then taken from next().
    template <class Next>
    bool parse(const std::string& flag, Next&& next) {
        const bool is_k = flag == "-ctk" || flag == "--cache-type-k";
        if (!is_k && flag != "-ctv" && flag != "--cache-type-v") return false;
        const std::string t = next();
        if (t != "f32" && t != "f16") fail("cache type '" + t + "' is not supported (f32 or f16)");
        (is_k ? k : v) = t;
        return true;
    }
    const std::string& type() const { return k != "f32" ? k : v; }
};

}  // namespace examples
