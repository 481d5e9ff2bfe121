// Checks the generated Unicode tables against the Unicode Character Database
// for every code point, and the UTF-8 decoder on well-formed and malformed input.
#define MINIGPT_IMPLEMENTATION
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
#include "minigpt.hpp"
#include "test_util.hpp"

#include <cstdint>
#include <string>
#include <vector>

using namespace minigpt;
using namespace minigpt::detail;

namespace {

const char* const kCategoryNames[] = {"Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd",
                                      "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm",
                                      "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co"};

// The UCD directory: $MINIGPT_UCD_DIR, else Debian's unicode-data location.
std::string ucd_file(const char* name) {
    const char* e = std::getenv("MINIGPT_UCD_DIR");
    std::string path = std::string(e && *e ? e : "/usr/share/unicode") + "/" + name;
    if (!test_util::file_exists(path))
        FAIL("Unicode Character Database file not found: " << path
                                                           << " (install the Debian package unicode-data, or set MINIGPT_UCD_DIR)");
    return path;
}

int category_index(const std::string& gc) {
    for (int i = 0; i < uc_count; ++i)
        if (gc == kCategoryNames[i]) return i;
    return -1;
}

// General category of every code point from UnicodeData.txt (Cn where unlisted).
std::vector<uint8_t> read_categories() {
    std::string text = test_util::read_file(ucd_file("UnicodeData.txt"));
    std::vector<uint8_t> cat(0x110000, uc_Cn);
    long range_first = -1;
    size_t pos = 0, lines = 0;
    while (pos < text.size()) {
        size_t end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        std::string line = text.substr(pos, end - pos);
        pos = end + 1;
        size_t s1 = line.find(';'), s2 = line.find(';', s1 + 1), s3 = line.find(';', s2 + 1);
        if (s1 == std::string::npos || s2 == std::string::npos || s3 == std::string::npos) continue;
        long cp = std::stol(line.substr(0, s1), nullptr, 16);
        std::string name = line.substr(s1 + 1, s2 - s1 - 1);
        int c = category_index(line.substr(s2 + 1, s3 - s2 - 1));
        REQUIRE_MESSAGE(c >= 0, "unknown category in: " << line);
        REQUIRE(cp < 0x110000);
        ++lines;
        if (name.size() > 8 && name.compare(name.size() - 8, 8, ", First>") == 0) {
            range_first = cp;
            continue;
        }
        if (name.size() > 7 && name.compare(name.size() - 7, 7, ", Last>") == 0) {
            REQUIRE(range_first >= 0);
            for (long k = range_first; k <= cp; ++k) cat[static_cast<size_t>(k)] = static_cast<uint8_t>(c);
            range_first = -1;
            continue;
        }
        cat[static_cast<size_t>(cp)] = static_cast<uint8_t>(c);
    }
    REQUIRE_MESSAGE(lines > 30000, "UnicodeData.txt looks truncated (" << lines << " lines)");
    return cat;
}

std::vector<bool> read_white_space() {
    std::string text = test_util::read_file(ucd_file("PropList.txt"));
    std::vector<bool> ws(0x110000, false);
    size_t pos = 0;
    int n = 0;
    while (pos < text.size()) {
        size_t end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        std::string line = text.substr(pos, end - pos);
        pos = end + 1;
        size_t semi = line.find(';');
        if (line.empty() || line[0] == '#' || semi == std::string::npos) continue;
        size_t hash = line.find('#');
        std::string prop = line.substr(semi + 1, hash == std::string::npos ? std::string::npos : hash - semi - 1);
        prop.erase(0, prop.find_first_not_of(' '));
        prop.erase(prop.find_last_not_of(' ') + 1);
        if (prop != "White_Space") continue;
        std::string range = line.substr(0, semi);
        size_t dots = range.find("..");
        long a = std::stol(range.substr(0, dots), nullptr, 16);
        long b = dots == std::string::npos ? a : std::stol(range.substr(dots + 2), nullptr, 16);
        for (long k = a; k <= b; ++k) ws[static_cast<size_t>(k)] = true;
        ++n;
    }
    REQUIRE_MESSAGE(n > 5, "no White_Space entries found in PropList.txt");
    return ws;
}

}  // namespace

TEST_CASE("general category of every code point agrees with UnicodeData.txt") {
    std::vector<uint8_t> cat = read_categories();
    int mismatches = 0;
    for (uint32_t cp = 0; cp < 0x110000; ++cp) {
        UnicodeCategory got = unicode_category(cp);
        if (got != cat[cp] && ++mismatches <= 10)
            CHECK_MESSAGE(got == cat[cp], "U+" << std::hex << cp << ": table says " << kCategoryNames[got]
                                                << ", UnicodeData.txt says " << kCategoryNames[cat[cp]]);
    }
    CHECK(mismatches == 0);
    CHECK(unicode_category(0x110000) == uc_Cn);
    CHECK(unicode_category(0xFFFFFFFFu) == uc_Cn);
}

TEST_CASE("flags of every code point: category classes, White_Space, case") {
    std::vector<uint8_t> cat = read_categories();
    std::vector<bool> ws = read_white_space();
    int mismatches = 0;
    for (uint32_t cp = 0; cp < 0x110000; ++cp) {
        const char* gc = kCategoryNames[cat[cp]];
        uint16_t want = 0;
        switch (gc[0]) {
            case 'L': want = uf_letter; break;
            case 'M': want = uf_mark; break;
            case 'N': want = uf_number; break;
            case 'P': want = uf_punct; break;
            case 'S': want = uf_symbol; break;
            case 'Z': want = uf_separator; break;
            default: want = uf_other; break;
        }
        if (cat[cp] == uc_Lu) want |= uf_upper;
        if (cat[cp] == uc_Ll) want |= uf_lower;
        if (ws[cp]) want |= uf_space;
        uint16_t got = unicode_flags(cp);
        if (got != want && ++mismatches <= 10)
            CHECK_MESSAGE(got == want, "U+" << std::hex << cp << " (" << gc << "): flags " << got << ", expected " << want);
    }
    CHECK(mismatches == 0);
    // Spot checks that do not depend on the database files.
    CHECK((unicode_flags('A') & (uf_letter | uf_upper)) == (uf_letter | uf_upper));
    CHECK((unicode_flags(0x3000) & uf_space) != 0);
    CHECK((unicode_flags(0x4E2D) & uf_letter) != 0);
    CHECK((unicode_flags(0x1F600) & uf_symbol) != 0);
    CHECK((unicode_flags(0x0661) & uf_number) != 0);
    CHECK((unicode_flags(0x200B) & uf_space) == 0);  // ZERO WIDTH SPACE is Cf, not White_Space
}

TEST_CASE("UTF-8 decoding: every byte of any input is consumed once") {
    auto dec = [](const std::string& s, size_t i, size_t* len) { return utf8_decode(s.data(), s.size(), i, len); };
    size_t len = 0;
    CHECK(dec("a", 0, &len) == 'a');
    CHECK(len == 1);
    CHECK(dec("\xC3\xA9", 0, &len) == 0xE9);
    CHECK(len == 2);
    CHECK(dec("\xE4\xB8\xAD", 0, &len) == 0x4E2D);
    CHECK(len == 3);
    CHECK(dec("\xF0\x9F\x98\x80", 0, &len) == 0x1F600);
    CHECK(len == 4);
    const char* bad[] = {"\x80", "\xC3", "\xC0\xAF", "\xE0\x80\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xFF", "\xE4\xB8"};
    for (const char* b : bad) {
        CAPTURE(b);
        CHECK(dec(b, 0, &len) == 0xFFFD);
        CHECK(len == 1);
    }
    std::string round;
    for (uint32_t cp : {0x24u, 0xA2u, 0x939u, 0x20ACu, 0xD55Cu, 0x10348u, 0x10FFFFu}) {
        round.clear();
        utf8_append(round, cp);
        CHECK(dec(round, 0, &len) == cp);
        CHECK(len == round.size());
    }
}
