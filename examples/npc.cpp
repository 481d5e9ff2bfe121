// minigpt-npc: a text game loop with several NPCs sharing one Model. Each NPC
// has its own Context (its memory) and persona; replies are generated on worker
// threads while the main loop keeps ticking at a fixed rate. Walking away from
// an NPC cancels its reply, and one NPC answers with a JSON action constrained
// by a grammar.
//
//   minigpt-npc -m model.gguf --demo      (a scripted session that exits)
//   minigpt-npc -m model.gguf             (type: talk <npc> <text> | leave | json <npc> | quit)
#define MINIGPT_IMPLEMENTATION
#include "minigpt.hpp"
#include "common.hpp"

#include <atomic>
#include <iostream>
#include <mutex>
#include <thread>
#include <vector>

namespace {

using namespace examples;
using Clock = std::chrono::steady_clock;

struct Npc {
    std::string name;
    std::string persona;                 // the prompt that starts every reply
    std::unique_ptr<minigpt::Context> ctx;
    std::thread worker;
    std::atomic<bool> busy{false};
    std::atomic<bool> cancel{false};
    std::mutex mu;
    std::string said;                    // text produced so far (guarded by mu)
    std::string outcome;                 // "done", "cancelled", or an error
};

struct Game {
    std::shared_ptr<minigpt::Model> model;
    std::vector<std::unique_ptr<Npc>> npcs;
    std::shared_ptr<const minigpt::Grammar> action_grammar;
    int n_predict = 48;
    uint64_t seed = 1;
    int near = -1;  // the NPC the player stands next to
    // The last frame whose input has been handled. A reply asked for in frame
    // f starts once frame f's input is done, so a command later in the same
    // frame (walking away at once) always finds the NPC busy.
    std::atomic<int> input_done{-1};
};

// Starts a reply on a worker thread, asked for in `frame`. With `json`, the
// reply is constrained to {"action": "...", "line": "..."}.
void start_reply(Game& g, int who, const std::string& player_line, bool json, int frame) {
    Npc& n = *g.npcs[static_cast<size_t>(who)];
    if (n.busy.load()) return;
    if (n.worker.joinable()) n.worker.join();
    n.busy = true;
    n.cancel = false;
    {
        std::lock_guard<std::mutex> lock(n.mu);
        n.said.clear();
        n.outcome.clear();
    }
    const std::string prompt = n.persona + " The traveler said: \"" + player_line + "\" " + n.name + " answered:";
    const uint64_t seed = g.seed++;
    n.worker = std::thread([&g, &n, prompt, seed, json, frame] {
        while (g.input_done.load() < frame && !n.cancel.load()) std::this_thread::sleep_for(std::chrono::microseconds(100));
        minigpt::SamplerParams sp;
        sp.temperature = 0.8f;
        sp.seed = seed;
        minigpt::Sampler sampler(sp);
        minigpt::Status st;
        if (json) st = sampler.set_grammar(g.action_grammar, *g.model);
        std::vector<int32_t> toks;
        if (st) st = g.model->tokenize(prompt, toks);
        n.ctx->reset();  // a fresh scene each time; the persona is the memory here
        minigpt::GenerateParams gp;
        gp.n_predict = json ? 160 : g.n_predict;
        if (!json) gp.stop = {"\n", "The traveler"};
        if (st && !n.cancel.load()) {
            st = minigpt::generate(*n.ctx, sampler, toks, gp, [&n](std::string_view s) {
                std::lock_guard<std::mutex> lock(n.mu);
                n.said.append(s.data(), s.size());
                return !n.cancel.load();
            });
        }
        std::lock_guard<std::mutex> lock(n.mu);
        n.outcome = !st ? st.to_string() : n.cancel.load() ? "cancelled" : "done";
        n.busy = false;
    });
}

std::string snapshot(Npc& n) {
    std::lock_guard<std::mutex> lock(n.mu);
    std::string s = n.said;
    if (s.size() > 60) s = "..." + s.substr(s.size() - 57);
    for (char& c : s)
        if (c == '\n') c = ' ';
    return s;
}

int find_npc(const Game& g, const std::string& name) {
    for (size_t i = 0; i < g.npcs.size(); ++i)
        if (g.npcs[i]->name.find(name) == 0) return static_cast<int>(i);
    return -1;
}

// One scripted or typed command.
bool command(Game& g, const std::string& line, int frame) {
    std::string verb = line.substr(0, line.find(' '));
    std::string rest = line.size() > verb.size() ? line.substr(verb.size() + 1) : "";
    if (verb == "quit") return false;
    if (verb == "leave") {
        if (g.near >= 0) {
            Npc& n = *g.npcs[static_cast<size_t>(g.near)];
            std::printf("[frame %4d] the player walks away from %s%s\n", frame, n.name.c_str(),
                        n.busy.load() ? " (reply cancelled)" : "");
            n.cancel = true;
        }
        g.near = -1;
        return true;
    }
    if (verb == "talk" || verb == "json") {
        std::string who = rest.substr(0, rest.find(' '));
        std::string text = rest.size() > who.size() ? rest.substr(who.size() + 1) : "What do you do next?";
        int i = find_npc(g, who);
        if (i < 0) {
            std::printf("[frame %4d] nobody called '%s' here\n", frame, who.c_str());
            return true;
        }
        g.near = i;
        std::printf("[frame %4d] player to %s: %s%s\n", frame, g.npcs[static_cast<size_t>(i)]->name.c_str(),
                    text.c_str(), verb == "json" ? " (asks for a JSON action)" : "");
        start_reply(g, i, text, verb == "json", frame);
        return true;
    }
    std::printf("commands: talk <npc> <text> | json <npc> [text] | leave | quit\n");
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    prog_name() = "minigpt-npc";
    std::string model_path;
    bool demo = false;
    int n_threads = 1, fps = 20;
    Game g;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) fail("missing value for " + a);
            return argv[++i];
        };
        if (a == "-h" || a == "--help") {
            std::printf("usage: minigpt-npc -m MODEL [--demo] [-n N] [-t THREADS_PER_NPC] [--fps N] [-s SEED]\n");
            return 0;
        } else if (a == "-m" || a == "--model") {
            model_path = value();
        } else if (a == "--demo") {
            demo = true;
        } else if (a == "-n" || a == "--n-predict") {
            g.n_predict = parse_int(a, value(), 1, 4096);
        } else if (a == "-t" || a == "--threads") {
            n_threads = parse_int(a, value(), 1, 64);
        } else if (a == "--fps") {
            fps = parse_int(a, value(), 1, 1000);
        } else if (a == "-s" || a == "--seed") {
            g.seed = static_cast<uint64_t>(parse_int(a, value(), 0, INT_MAX));
        } else {
            fail("unknown argument '" + a + "' (see --help)");
        }
    }
    if (model_path.empty()) fail("no model given: use -m FILE");
    minigpt::Status st = minigpt::Model::load(model_path, {}, g.model);
    if (!st) fail("cannot load model '" + model_path + "': " + st.to_string());
    std::string gbnf = minigpt::Grammar::json_object_gbnf({"action", "line"});
    st = minigpt::Grammar::parse(gbnf, g.action_grammar);
    if (!st) fail("grammar: " + st.to_string());

    const char* people[][2] = {
        {"Mira", "Mira the blacksmith was tired but kind."},
        {"Tom", "Tom the farmer loved his cows and talked a lot."},
        {"Guard", "The old guard watched the gate of the town."},
    };
    for (auto& p : people) {
        auto n = std::make_unique<Npc>();
        n->name = p[0];
        n->persona = p[1];
        minigpt::ContextParams cp;
        cp.n_ctx = 256;
        cp.n_threads = n_threads;
        st = minigpt::Context::create(g.model, cp, n->ctx);
        if (!st) fail("cannot create a context: " + st.to_string());
        g.npcs.push_back(std::move(n));
    }

    // The scripted session: frame -> command.
    const std::vector<std::pair<int, std::string>> script = {
        {2, "talk Mira Good morning! Can you fix my sword?"},
        {4, "talk Tom How are the cows today?"},
        {4, "leave"},  // walks away at once: Tom's reply is cancelled
        {8, "json Guard May I enter the town?"},
        {12, "talk Mira Thank you, friend."},
    };
    size_t next = 0;
    const auto tick = std::chrono::microseconds(1000000 / fps);
    auto deadline = Clock::now();
    double worst_late_ms = 0;
    int frame = 0;
    bool running = true;
    std::vector<std::string> last_seen(g.npcs.size());
    std::printf("minigpt-npc: %zu NPCs on one model, %d frames/s\n", g.npcs.size(), fps);
    while (running) {
        // Input: the script in --demo, else one line per frame when available.
        if (demo) {
            while (next < script.size() && script[next].first <= frame) running = command(g, script[next++].second, frame);
            bool idle = next >= script.size();
            for (auto& n : g.npcs) idle = idle && !n->busy.load();
            if (idle && frame > 0) running = false;
        } else if (frame % fps == 0) {
            std::printf("> ");
            std::fflush(stdout);
            std::string line;
            if (!std::getline(std::cin, line)) line = "quit";
            running = command(g, line, frame);
            deadline = Clock::now();
        }
        g.input_done = frame;
        // Frame: report what each NPC has said since the last frame.
        for (size_t i = 0; i < g.npcs.size(); ++i) {
            std::string s = snapshot(*g.npcs[i]);
            if (s != last_seen[i] && !s.empty())
                std::printf("[frame %4d] %-5s: %s\n", frame, g.npcs[i]->name.c_str(), s.c_str());
            last_seen[i] = s;
        }
        ++frame;
        deadline += tick;
        const auto now = Clock::now();
        if (now > deadline) worst_late_ms = std::max(worst_late_ms, std::chrono::duration<double, std::milli>(now - deadline).count());
        std::this_thread::sleep_until(deadline);
        if (frame > fps * 120) running = false;  // a two-minute cap for the demo
    }
    for (auto& n : g.npcs) {
        n->cancel = true;
        if (n->worker.joinable()) n->worker.join();
    }
    std::printf("\nminigpt-npc: %d frames; the main loop was never more than %.1f ms late\n", frame, worst_late_ms);
    for (auto& n : g.npcs) {
        std::lock_guard<std::mutex> lock(n->mu);
        std::printf("  %-5s %-9s %s\n", n->name.c_str(), n->outcome.empty() ? "idle" : n->outcome.c_str(), n->said.c_str());
    }
    return 0;
}
