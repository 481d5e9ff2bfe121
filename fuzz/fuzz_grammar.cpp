// Fuzz target: the GBNF parser and the grammar matcher. The input is GBNF
// text, optionally followed by a NUL byte and a text to feed the matcher of
// a grammar that parsed. The matcher must agree with itself: can_accept(b)
// predicts accept(b), a refused byte leaves the state unchanged, a copy
// behaves like the original, and reset() returns to the start.
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"
#include "fuzz_util.hpp"

#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    size_t nul = in.find('\0');
    std::string_view gbnf = in.substr(0, nul);
    std::string_view text = nul == std::string_view::npos ? std::string_view() : in.substr(nul + 1);
    if (text.size() > 128) text = text.substr(0, 128);

    std::shared_ptr<const minigpt::Grammar> g;
    minigpt::Status st = minigpt::Grammar::parse(gbnf, g);
    if (!st.ok()) {
        FUZZ_CHECK(!g, "a failed parse returned a grammar");
        FUZZ_CHECK(!st.message().empty(), "a failed parse without a message");
        return 0;
    }
    FUZZ_CHECK(g && g->n_rules() > 0, "a parsed grammar without rules");

    minigpt::GrammarMatcher m(g);
    FUZZ_CHECK(m.has_grammar(), "the matcher lost its grammar");
    const bool accepting_at_start = m.is_accepting();
    std::string taken;
    for (size_t i = 0; i < text.size(); ++i) {
        std::string_view b = text.substr(i, 1);
        bool can = m.can_accept(b);
        bool was_accepting = m.is_accepting();
        bool did = m.accept(b);
        FUZZ_CHECK(can == did, "can_accept says %d but accept says %d at byte %zu", can, did, i);
        if (did) {
            taken += b;
        } else {
            FUZZ_CHECK(m.is_accepting() == was_accepting, "a refused byte changed the state");
        }
        if (m.is_complete()) FUZZ_CHECK(m.is_accepting(), "complete but not accepting");
    }

    // The bytes taken, fed in one call to a fresh matcher, give the same state.
    minigpt::GrammarMatcher fresh(g);
    FUZZ_CHECK(fresh.accept(taken), "%zu bytes taken one by one are refused in one call", taken.size());
    FUZZ_CHECK(fresh.is_accepting() == m.is_accepting() && fresh.is_complete() == m.is_complete(),
               "one call and byte by byte disagree");

    minigpt::GrammarMatcher copy(m);
    FUZZ_CHECK(copy.is_accepting() == m.is_accepting(), "a copy differs");
    const char probe[] = {'a', '0', ' ', '"', '{'};
    for (char c : probe) {
        std::string_view b(&c, 1);
        FUZZ_CHECK(copy.can_accept(b) == m.can_accept(b), "a copy accepts differently");
    }
    m.reset();
    FUZZ_CHECK(m.is_accepting() == accepting_at_start, "reset() did not return to the start");
    return 0;
}
