// Shared helpers for the tests: where the test data lives, and file reading.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

namespace test_util {

// The test-data directory: $MINIGPT_DATA_DIR, else the directory the build was
// configured with (MINIGPT_TEST_DATA_DIR), else ../shared/data.
inline std::string data_dir() {
    if (const char* e = std::getenv("MINIGPT_DATA_DIR")) {
        if (*e) return e;
    }
#ifdef MINIGPT_TEST_DATA_DIR
    return MINIGPT_TEST_DATA_DIR;
#else
    return "../shared/data";
#endif
}

inline bool file_exists(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return f.good();
}

// Full path of a file under the data directory. A missing file fails the test
// with a message that says where it looked.
inline std::string data_path(const std::string& rel) {
    std::string p = data_dir() + "/" + rel;
    if (!file_exists(p)) {
        FAIL("test data not found: " << p
                                     << " (set MINIGPT_DATA_DIR or configure MINIGPT_TEST_DATA_DIR to the shared data directory)");
    }
    return p;
}

inline std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    REQUIRE_MESSAGE(f.good(), "cannot read " << path);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

inline std::vector<float> read_f32(const std::string& path) {
    std::string bytes = read_file(path);
    std::vector<float> v(bytes.size() / sizeof(float));
    if (!v.empty()) std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
    return v;
}

// Integers in order from a text such as "[1, 2, 3]" or "1 2 3".
inline std::vector<int> parse_ints(const std::string& s) {
    std::vector<int> out;
    size_t i = 0;
    while (i < s.size()) {
        if ((s[i] >= '0' && s[i] <= '9') || (s[i] == '-' && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '9')) {
            size_t j = i + 1;
            while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
            out.push_back(std::atoi(s.substr(i, j - i).c_str()));
            i = j;
        } else {
            ++i;
        }
    }
    return out;
}

// The integers of a JSON array value `"key": [ ... ]` in a JSON text.
inline std::vector<int> json_int_array(const std::string& json, const std::string& key) {
    size_t k = json.find("\"" + key + "\"");
    if (k == std::string::npos) return {};
    size_t a = json.find('[', k), b = json.find(']', a);
    if (a == std::string::npos || b == std::string::npos) return {};
    return parse_ints(json.substr(a, b - a + 1));
}

}  // namespace test_util
