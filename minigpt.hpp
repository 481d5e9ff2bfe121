// ---- manual.hpp ----
/* minigpt.hpp - run GPT-style language models (GGUF files) on the CPU.
   One C++17 header, no dependency beyond the standard library and the OS.

QUICK START
    // In exactly one .cpp file:
    #define MINIGPT_IMPLEMENTATION

    std::shared_ptr<minigpt::Model> model;
    minigpt::Status st = minigpt::Model::load("model.gguf", {}, model);
    if (!st) { fprintf(stderr, "%s\n", st.to_string().c_str()); return 1; }
    std::unique_ptr<minigpt::Context> ctx;
    minigpt::Context::create(model, {}, ctx);
    std::vector<int32_t> prompt;
    model->tokenize("Once upon a time", prompt);
    minigpt::Sampler sampler;
    minigpt::generate(*ctx, sampler, prompt, {}, [](std::string_view s) {
        fwrite(s.data(), 1, s.size(), stdout); return true; });

CONFIGURATION (define before including)
    MINIGPT_IMPLEMENTATION   compile the implementation (one translation unit only)
    MINIGPT_NO_SIMD          scalar kernels only
    MINIGPT_NO_AVX512        do not use AVX-512 even when the compiler targets it
    MINIGPT_NO_NEON          do not use NEON even when the compiler targets it (aarch64)
    MINIGPT_NO_THREADS       no thread pool: everything runs on the calling thread
    MINIGPT_ASSERT(x)        internal invariant checks (default: assert)
    MINIGPT_MALLOC(n)/MINIGPT_FREE(p)
                             allocator for the large buffers (KV cache, scratch);
                             define both or neither
    SIMD kernels are chosen from the compiler's target flags (-mavx2 -mfma -mf16c,
    -mavx512f ..., -march=native; NEON on aarch64).

THREAD SAFETY
    A Model is immutable after load: share it between any number of Contexts and
    threads. A Context is used by one thread at a time. A Sampler is not shared.
    set_hooks() is called once, before any other call.

ERRORS
    Every fallible call returns a Status (code + message). Nothing throws, exits
    or aborts on bad input: GGUF files are untrusted and every offset, count and
    size in them is checked. Builds with -fno-exceptions -fno-rtti.

VERSION
    MINIGPT_VERSION_MAJOR / _MINOR / _PATCH, MINIGPT_VERSION_STRING.
    The license (MIT) is at the end of this file.
*/

#ifndef MINIGPT_HPP_INCLUDED
#define MINIGPT_HPP_INCLUDED

// ---- config.hpp ----
// config: version, platform and SIMD selection, configuration macros.

#define MINIGPT_VERSION_MAJOR 0
#define MINIGPT_VERSION_MINOR 1
#define MINIGPT_VERSION_PATCH 0
#define MINIGPT_VERSION_STRING "0.1.0"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#if __cplusplus < 201703L && !(defined(_MSVC_LANG) && _MSVC_LANG >= 201703L)
#error "minigpt.hpp needs C++17"
#endif

// The public names live in a versioned inline namespace so that two copies of
// different versions can be linked into one program without colliding.
#define MINIGPT_NS_BEGIN namespace minigpt { inline namespace v0 {
#define MINIGPT_NS_END } }

// SIMD selection happens at compile time from the compiler's target flags.
#if !defined(MINIGPT_NO_SIMD)
#  if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
      defined(__AVX512DQ__) && defined(__FMA__) && defined(__F16C__) && !defined(MINIGPT_NO_AVX512)
#    define MINIGPT_AVX512 1
#  endif
#  if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#    define MINIGPT_AVX2 1
#  endif
#  if (defined(__ARM_NEON) || defined(__ARM_NEON__)) && defined(__aarch64__) && !defined(MINIGPT_NO_NEON)
#    define MINIGPT_NEON 1
#  endif
#endif

#if defined(MINIGPT_NO_THREADS)
#  define MINIGPT_THREADS 0
#else
#  define MINIGPT_THREADS 1
#endif

#if defined(MINIGPT_MALLOC) != defined(MINIGPT_FREE)
#error "define MINIGPT_MALLOC and MINIGPT_FREE together, or neither"
#endif

#if !defined(MINIGPT_ASSERT)
#  include <cassert>
#  define MINIGPT_ASSERT(x) assert(x)
#endif

// Unrolling hint for the SIMD kernels' register tiles: an array of accumulators
// indexed by a loop variable stays in registers only when the loop is unrolled.
#if defined(__clang__)
#  define MINIGPT_PRAGMA(x) _Pragma(#x)
#  define MINIGPT_UNROLL(n) MINIGPT_PRAGMA(unroll n)
#elif defined(__GNUC__)
#  define MINIGPT_PRAGMA(x) _Pragma(#x)
#  define MINIGPT_UNROLL(n) MINIGPT_PRAGMA(GCC unroll n)
#else
#  define MINIGPT_UNROLL(n)
#endif

#if defined(_WIN32)
#  define MINIGPT_WINDOWS 1
#endif

// ---- api.hpp ----
// api: every public declaration. This part is the manual of the library.

MINIGPT_NS_BEGIN

// ---------------------------------------------------------------------------
// Status: every fallible call returns one. No exception ever leaves the API.
// When the library is built with exceptions, a std::bad_alloc (or other standard
// exception) raised inside Model::load, load_from_memory, tokenize,
// Context::create, eval, state_save, state_load, generate, score_continuation,
// perplexity, Grammar::parse, Sampler::set_grammar and chat_apply is caught
// there and returned as StatusCode::out_of_memory (other exceptions: internal).
// ---------------------------------------------------------------------------
enum class StatusCode {
    ok = 0,
    invalid_argument,  // a caller-supplied value is out of range
    io_error,          // the file could not be opened, mapped or read
    bad_format,        // the GGUF file (or other input) is malformed
    unsupported,       // well-formed but not supported (architecture, tensor type...)
    out_of_memory,     // an allocation failed or a memory limit would be exceeded
    context_full,      // the tokens do not fit in the context window
    aborted,           // the abort callback asked to stop
    internal,          // a bug: please report it
};

const char* status_code_name(StatusCode code);

class Status {
public:
    Status() = default;
    Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
    static Status ok_status() { return Status(); }

    bool ok() const { return code_ == StatusCode::ok; }
    explicit operator bool() const { return ok(); }
    StatusCode code() const { return code_; }
    const std::string& message() const { return message_; }
    // "bad_format: tensor 'blk.0.attn_q.weight': data extends past the end of the file"
    std::string to_string() const;

private:
    StatusCode code_ = StatusCode::ok;
    std::string message_;
};

// ---------------------------------------------------------------------------
// Host hooks. All optional; the defaults use the C runtime and stay silent.
// ---------------------------------------------------------------------------
enum class LogLevel { debug = 0, info, warn, error };
using LogFn = void (*)(void* user, LogLevel level, const char* message);

// Replaces the pool of threads: run fn(user_arg, i) for every i in [0, n)
// and return when all calls have finished. Calls may run concurrently.
using ParallelForFn = void (*)(void* host_user, int n, void (*fn)(void* arg, int i), void* arg);

struct Hooks {
    LogFn log = nullptr;           // nullptr: silent
    void* log_user = nullptr;
    LogLevel log_level = LogLevel::info;
    // Allocator for the large buffers (KV cache, scratch, files read into memory).
    // Set both or neither; nullptr uses malloc/free (or MINIGPT_MALLOC/MINIGPT_FREE).
    void* (*alloc)(void* user, size_t size) = nullptr;
    void (*free)(void* user, void* ptr) = nullptr;
    void* alloc_user = nullptr;
};
// Sets the process-wide hooks. Call before creating models; not thread-safe.
void set_hooks(const Hooks& hooks);

// ---------------------------------------------------------------------------
// Model: immutable weights + vocabulary + metadata, shared by any number of
// Contexts on any number of threads.
// ---------------------------------------------------------------------------
// Host file access: when ModelParams::file_io is set, Model::load reads the
// file through it (into memory) instead of opening it itself.
struct FileIO {
    void* user = nullptr;
    // Size of the file in bytes; false when it cannot be opened.
    bool (*size)(void* user, const char* path, uint64_t* size) = nullptr;
    // Reads n bytes at offset into dst; false on failure.
    bool (*read)(void* user, const char* path, uint64_t offset, void* dst, size_t n) = nullptr;
};

struct ModelParams {
    bool use_mmap = true;      // map the file; false reads it into memory
    // Linux, mapped: a file that the page cache holds in 4 KiB pages (one just
    // written in smaller pieces: downloaded, copied) is dropped from the cache
    // and read anew in 2 MiB pages, where the kernel can cache it so; streaming
    // the weights through 4 KiB pages walks the page tables at every page.
    // false: the file is mapped in the pages the cache holds it in.
    bool reread_small_pages = true;
    bool vocab_only = false;   // load the tokenizer only (tensors are not required)
    const FileIO* file_io = nullptr;  // optional host file access (see FileIO)
    // A byte-level BPE vocabulary names its pre-tokenizer in tokenizer.ggml.pre.
    // An unknown name fails the load with StatusCode::unsupported; with this set,
    // llama.cpp's "default" pre-tokenizer rules are used instead (as llama.cpp does).
    bool bpe_unknown_pre_as_default = false;
};

struct ModelInfo {
    std::string architecture;   // general.architecture, e.g. "llama"
    std::string name;           // general.name, if present
    int n_vocab = 0;
    int n_ctx_train = 0;        // the context length the model was trained with
    int n_embd = 0;
    int n_layer = 0;
    int n_head = 0;
    int n_head_kv = 0;
    int head_dim = 0;
    int n_ff = 0;
    float rope_freq_base = 10000.0f;
    float norm_eps = 1e-5f;
    uint64_t n_params = 0;       // number of weights
    uint64_t weight_bytes = 0;   // bytes of tensor data
    std::string type_summary;    // e.g. "Q8_0: 22 tensors, F32: 11 tensors"
};

class Model {
public:
    // Loads a GGUF file. On failure `out` is left empty and the Status says why.
    static Status load(const std::string& path, const ModelParams& params, std::shared_ptr<Model>& out);
    // Loads from a caller-owned buffer that must stay valid and unchanged while the model lives.
    static Status load_from_memory(const void* data, size_t size, const ModelParams& params,
                                   std::shared_ptr<Model>& out);

    ~Model();
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    const ModelInfo& info() const;

    // Text -> token ids. add_bos follows the model's tokenizer.ggml.add_bos_token when
    // `add_special` is true. With parse_special, control tokens written in the text
    // (e.g. "<s>") become their ids; otherwise they are ordinary text.
    Status tokenize(std::string_view text, std::vector<int32_t>& out, bool add_special = true,
                    bool parse_special = false) const;
    // The bytes of one token (control tokens give "" unless render_special).
    std::string token_to_piece(int32_t token, bool render_special = false) const;
    // Token ids -> text. Byte tokens are joined, so split UTF-8 characters are rebuilt.
    std::string detokenize(const std::vector<int32_t>& tokens, bool render_special = false) const;

    int32_t token_bos() const;
    int32_t token_eos() const;
    bool is_eog(int32_t token) const;  // end of generation (EOS, EOT...)
    int n_vocab() const;

    struct Impl;
    const Impl& impl() const { return *impl_; }

private:
    Model();
    std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------
// Context: KV cache + scratch + threads. One per conversation / NPC. A Context
// is used by one thread at a time; different Contexts may run concurrently.
// ---------------------------------------------------------------------------
struct ContextParams {
    // Context window in tokens; 0 = the model's training context (at most 4096).
    // Negative values and values above 1048576 give StatusCode::invalid_argument.
    int n_ctx = 0;
    int n_batch = 512;    // prompt tokens evaluated per forward pass; 0 = 512; capped at n_ctx
    // 0 = number of hardware threads; outside [0, 1024] gives StatusCode::invalid_argument.
    int n_threads = 0;
    // Optional host job system (see ParallelForFn). nullptr uses the built-in pool.
    ParallelForFn parallel_for = nullptr;
    void* parallel_for_user = nullptr;
    // Polled between layers and during attention, possibly from worker threads;
    // returning true makes eval() return StatusCode::aborted (the tokens of the
    // interrupted batch are not added to the context).
    bool (*abort_callback)(void* user) = nullptr;
    void* abort_user = nullptr;
    // When the window is full: false gives StatusCode::context_full; true drops
    // the older half of the tokens after the first n_keep and goes on (not for
    // models with learned absolute positions, such as GPT-2).
    bool context_shift = false;
    int n_keep = 0;
    // Store the cached keys and values as F16 instead of F32: half the KV cache
    // memory; results then carry F16 rounding of K and V (as llama.cpp's default
    // cache does).
    bool kv_f16 = false;
    // Upper bound on the bytes Context::create allocates for the KV cache plus
    // scratch buffers (what kv_cache_bytes() + scratch_bytes() report). When the
    // context would need more, create() fails with StatusCode::out_of_memory,
    // naming both sizes, before anything is allocated. 0: no limit.
    size_t max_memory_bytes = 0;
};

class Context {
public:
    static Status create(std::shared_ptr<const Model> model, const ContextParams& params,
                         std::unique_ptr<Context>& out);
    ~Context();
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    // Appends tokens to the sequence and evaluates them (in batches of n_batch).
    // Afterwards logits() holds the prediction after the last token. When
    // `all_logits` is non-null it receives n * n_vocab floats, one row per token.
    Status eval(const int32_t* tokens, size_t n, std::vector<float>* all_logits = nullptr);
    Status eval(const std::vector<int32_t>& tokens, std::vector<float>* all_logits = nullptr) {
        return eval(tokens.data(), tokens.size(), all_logits);
    }
    // Last row of logits (n_vocab floats); valid after a successful eval.
    const float* logits() const;

    int n_past() const;       // tokens in the KV cache
    int n_ctx() const;
    int n_threads() const;
    void reset();             // forget every token
    Status truncate(int n);   // keep the first n tokens of the cache
    // Drops tokens [n_keep, n_keep + n_discard) and moves the later ones down,
    // re-rotating their cached keys (what context_shift does when the window is full).
    Status shift(int n_keep, int n_discard);

    // The whole state (tokens, KV cache, last logits) as bytes, and back. A state
    // loads only into a context of the same model with n_ctx >= its token count.
    Status state_save(std::vector<uint8_t>& out) const;
    Status state_load(const uint8_t* data, size_t size);

    const Model& model() const;
    const std::vector<int32_t>& tokens() const;  // the tokens in the KV cache
    size_t kv_cache_bytes() const;
    size_t scratch_bytes() const;

    struct Impl;

private:
    Context();
    std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------
// Grammar: constrains generated text to a formal language written in a subset
// of llama.cpp's GBNF:
//     name ::= alternatives      rules; names are [a-zA-Z0-9_-]+
//     a b | c                    sequence and alternation; ( ... ) groups
//     "text"                     literal; escapes \n \t \r \\ \" \xNN \uNNNN \UNNNNNNNN
//     [a-z0-9_]  [^"\\]          character class, negated class; .  any character
//     x*  x+  x?  x{m}  x{m,}  x{m,n}   repetition (m, n <= 1000)
//     # comment                  to the end of the line
// A rule may continue over several lines; it ends where the next `name ::=`
// begins. Text is matched as Unicode code points (UTF-8). Left-recursive rules
// (a rule that can reach itself before matching a character) are refused.
// ---------------------------------------------------------------------------
class Grammar {
public:
    // Parses GBNF text; `root` names the start rule. Errors give the line and column.
    static Status parse(std::string_view gbnf, std::shared_ptr<const Grammar>& out,
                        std::string_view root = "root");
    // A grammar for one JSON value (object, array, string, number, true, false,
    // null) with bounded whitespace between tokens.
    static const char* json_gbnf();
    // GBNF for one JSON object with exactly these keys, in this order, each with
    // a string value of at most max_string_chars characters, e.g. for {"action",
    // "line"}: {"action": "wave", "line": "Hello!"}. Every sentence of this
    // grammar is finite, so constrained generation always ends.
    static std::string json_object_gbnf(const std::vector<std::string>& string_keys,
                                        int max_string_chars = 48);

    ~Grammar();
    Grammar(const Grammar&) = delete;
    Grammar& operator=(const Grammar&) = delete;
    size_t n_rules() const;  // including the rules made for groups and repetitions

    struct Impl;
    const Impl& impl() const { return *impl_; }

private:
    Grammar();
    std::unique_ptr<Impl> impl_;
};

// Follows text through a grammar, byte by byte: a UTF-8 character may be split
// over several accept() calls (as it is over several tokens).
class GrammarMatcher {
public:
    GrammarMatcher();  // no grammar: accepts nothing
    explicit GrammarMatcher(std::shared_ptr<const Grammar> grammar);
    ~GrammarMatcher();
    GrammarMatcher(const GrammarMatcher& other);
    GrammarMatcher& operator=(const GrammarMatcher& other);

    bool has_grammar() const;
    const std::shared_ptr<const Grammar>& grammar() const;
    // Whether the bytes can follow the text accepted so far (a prefix of some sentence).
    bool can_accept(std::string_view bytes) const;
    // Appends the bytes; false (and no change) when they cannot follow.
    bool accept(std::string_view bytes);
    bool is_accepting() const;  // the text so far is a whole sentence
    bool is_complete() const;   // ... and nothing more can follow it
    void reset();               // back to the empty text

    struct Impl;
    const Impl& impl() const { return *impl_; }

private:
    std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------
// Sampler: turns logits into a token. Same params + seed = same tokens, at any
// thread count.
// ---------------------------------------------------------------------------
struct SamplerParams {
    float temperature = 0.8f;     // <= 0: greedy (argmax)
    int top_k = 40;               // <= 0: off
    float top_p = 0.95f;          // >= 1: off; <= 0 keeps the single most likely token
    float min_p = 0.05f;          // <= 0: off
    float repeat_penalty = 1.0f;  // 1 (or <= 0): off
    int repeat_last_n = 64;       // recent accepted tokens the penalty looks at; 0: off, -1: all since reset()
    uint64_t seed = 0xC0FFEEu;
};

class Sampler {
public:
    explicit Sampler(const SamplerParams& params = SamplerParams());
    // Picks a token from n_vocab logits (not modified).
    int32_t sample(const float* logits, int n_vocab);
    // Records a token in the history the repetition penalty looks at
    // (sample() does not; generate() calls it for prompt and output).
    // With a grammar set, accept(token) also advances the grammar when `token`
    // is the one the latest sample() returned and it was not yet accepted; so
    // prompt tokens (accepted before any sample()) never move the grammar.
    void accept(int32_t token);
    // The same, with an explicit choice of whether the grammar takes the token.
    // Returns false when the grammar cannot take it (its state is then unchanged).
    bool accept(int32_t token, bool advance_grammar);
    void reset();  // clears the history, reseeds and restarts the grammar
    const SamplerParams& params() const { return params_; }

    // Grammar-constrained sampling. While a grammar is set, every token whose
    // text cannot continue the grammar gets probability 0 before any other
    // filter; end-of-generation tokens are allowed only where the text so far
    // is a whole sentence, and once nothing more can follow, sample() returns
    // the model's EOS token (or another end-of-generation token). The token
    // texts of `model` are read once here; logits passed to sample() must be
    // for that model's vocabulary. nullptr removes the grammar.
    Status set_grammar(std::shared_ptr<const Grammar> grammar, const Model& model);
    void reset_grammar();  // restarts the grammar only (history and seed stay)
    // The grammar state (no grammar when none is set).
    const GrammarMatcher& grammar() const { return grammar_; }

    // The candidates that survive the filters, for inspection and tests:
    // after apply_filters, `ids`/`probs` hold the kept tokens and their
    // normalized probabilities, most likely first.
    void apply_filters(const float* logits, int n_vocab, std::vector<int32_t>& ids,
                       std::vector<float>& probs) const;

private:
    SamplerParams params_;
    uint64_t rng_state_ = 0;
    std::vector<int32_t> history_;
    std::vector<std::pair<float, int32_t>> scratch_;
    // Grammar: the matcher, the token texts of the vocabulary, the token the
    // latest sample() returned (-1 when none is pending) and a logits buffer.
    struct GrammarVocab;
    GrammarMatcher grammar_;
    std::shared_ptr<const GrammarVocab> grammar_vocab_;
    int32_t grammar_pending_ = -1;
    std::vector<float> grammar_logits_;
    double next_uniform();
    int32_t sample_filtered(const float* logits, int n_vocab);
    const float* grammar_mask(const float* logits, int n_vocab, std::vector<float>& buf) const;
};

// ---------------------------------------------------------------------------
// Generation loop.
// ---------------------------------------------------------------------------
struct GenerateParams {
    int n_predict = 128;   // tokens to generate; < 0 = until end of generation or full context
    bool stop_at_eog = true;
    // Generation stops when the text contains one of these; the stop string and
    // what follows it are never passed to the callback.
    std::vector<std::string> stop;
};

struct GenerateStats {
    int n_prompt = 0;          // prompt tokens evaluated
    int n_generated = 0;       // tokens generated
    double prompt_seconds = 0;
    double generate_seconds = 0;
    bool hit_eog = false;
    bool hit_stop = false;      // a stop string ended generation
    double prompt_tps() const { return prompt_seconds > 0 ? n_prompt / prompt_seconds : 0; }
    double generate_tps() const { return generate_seconds > 0 ? n_generated / generate_seconds : 0; }
};

// Receives text as it is produced, always whole UTF-8 characters. Return false to stop.
using TextCallback = std::function<bool(std::string_view text)>;

// Evaluates `prompt` after what the context already holds, then samples up to
// n_predict tokens, streaming their text to on_text.
Status generate(Context& ctx, Sampler& sampler, const std::vector<int32_t>& prompt,
                const GenerateParams& params, const TextCallback& on_text,
                GenerateStats* stats = nullptr);

// ---------------------------------------------------------------------------
// Scoring.
// ---------------------------------------------------------------------------
// Sum of log-probabilities (natural log) of `continuation` following `prompt`
// (the prompt is evaluated from an empty context, which is reset afterwards).
Status score_continuation(Context& ctx, const std::vector<int32_t>& prompt,
                          const std::vector<int32_t>& continuation, double& logprob,
                          std::vector<double>* per_token = nullptr);

struct TokenProb {
    int32_t token;
    float prob;
};
// The n most likely next tokens after what ctx holds (softmax of ctx.logits()).
std::vector<TokenProb> top_tokens(const Context& ctx, int n);

// ---------------------------------------------------------------------------
// Perplexity, as llama.cpp's perplexity tool computes it: the tokens are cut
// into chunks of ctx.n_ctx() (the tail is dropped); each chunk, its first token
// replaced by BOS, is evaluated from an empty cache, and only the predictions
// of its second half are scored.
// ---------------------------------------------------------------------------
struct PerplexityResult {
    double ppl = 0;
    double ppl_err = 0;             // the +/- figure: ppl * standard error of the mean NLL
    int n_chunks = 0;
    int count = 0;                  // scored predictions
    std::vector<double> running;    // PPL after each chunk
};
using PerplexityProgress = std::function<void(int chunk, int n_chunks, double running_ppl)>;
Status perplexity(Context& ctx, const std::vector<int32_t>& tokens, PerplexityResult& out,
                  const PerplexityProgress& progress = nullptr);

// ---------------------------------------------------------------------------
// Chat templates.
// The Jinja template in a model's tokenizer.chat_template is not executed: its
// family is recognised by marker substrings (as llama.cpp does) and the
// conversation is rendered by a built-in formatter for that family, with the
// same text as llama.cpp's llama_chat_apply_template. The text has no leading
// BOS (tokenize with add_special adds it); tokenize it with parse_special so
// that markers such as <|im_start|> become their control tokens.
// Names: chatml, llama2, llama2-sys, llama2-sys-bos, llama2-sys-strip,
// mistral-v1, mistral-v3, mistral-v3-tekken, mistral-v7, mistral-v7-tekken,
// llama3, phi3, phi4, zephyr, gemma, deepseek (DeepSeek Coder: "### Instruction:"),
// deepseek2 (DeepSeek LLM / V2: "User: ...\n\nAssistant:"), deepseek3.
// Zephyr ends turns with the EOS text: "<|endoftext|>" when the template writes
// it, else the model's EOS token ("</s>" when no model is given).
// ---------------------------------------------------------------------------
struct ChatMessage {
    std::string role;     // "system", "user" or "assistant"
    std::string content;
};
// The family name of a Jinja chat template (or of a template name), or nullptr
// when it is not recognised.
const char* chat_template_name(std::string_view jinja_template);
// Every supported template name.
std::vector<std::string> chat_template_names();
// Renders `messages` with the template named by template_name (a name from the
// list above, or a Jinja template text), or, when it is empty, with the model's
// tokenizer.chat_template. add_generation_prompt appends the assistant header.
// An unknown or absent template gives StatusCode::unsupported.
Status chat_apply(const Model& model, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                  std::string& out, std::string_view template_name = {});
Status chat_apply(std::string_view template_name, const std::vector<ChatMessage>& messages,
                  bool add_generation_prompt, std::string& out);

// ---------------------------------------------------------------------------
// Small utilities.
// ---------------------------------------------------------------------------
// Length of the longest prefix of s[0..n) that ends on a whole UTF-8 character.
size_t utf8_complete_prefix(const char* s, size_t n);
bool utf8_valid(std::string_view s);

MINIGPT_NS_END

#endif // MINIGPT_HPP_INCLUDED

#if defined(MINIGPT_IMPLEMENTATION) && !defined(MINIGPT_IMPLEMENTATION_INCLUDED)
#define MINIGPT_IMPLEMENTATION_INCLUDED

// ---- base.hpp ----
// base: Status, host hooks (logger, allocator), aligned buffers, UTF-8, timing.

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

// ---- gguf.hpp ----
// gguf: the tensor type table, a validating GGUF reader over a byte range, and
// the file mapping (POSIX mmap, Windows MapViewOfFile, or a plain read).

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

// ---- gguf_writer.hpp ----
// gguf_writer: builds GGUF v3 files (metadata, tensor infos, aligned tensor data)
// in memory or streams them to a file.

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

// ---- quant.hpp ----
// quant: half-precision conversions, block formats (Q8_0, Q4_0, Q4_1, Q5_0,
// Q5_1, IQ4_NL, the K-quants Q2_K..Q6_K, and the activation formats Q8_1 and
// Q8_K), and row quantization / dequantization. Everything here is portable scalar code; the
// one exception is the Q8_0 activation quantizer, which has an AVX2 / AVX-512
// path that produces bit-identical blocks.

#if defined(MINIGPT_AVX2) || defined(MINIGPT_AVX512)
#  include <immintrin.h>
#endif

MINIGPT_NS_BEGIN
namespace detail {

inline uint32_t f32_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline float bits_f32(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// ---------------------------------------------------------------------------
// IEEE half (binary16) and bfloat16.
// ---------------------------------------------------------------------------
inline float fp16_to_fp32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu;
    const uint32_t mant = h & 0x3FFu;
    if (exp == 0) {
        // Zero or subnormal: mant * 2^-24 is exact in float.
        float v = static_cast<float>(mant) * 5.9604644775390625e-08f;
        return bits_f32(f32_bits(v) | sign);
    }
    if (exp == 31) {  // inf, or NaN: payload kept and made quiet, as the F16C instructions do
        return bits_f32(sign | 0x7F800000u | (mant << 13) | (mant ? 0x00400000u : 0u));
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

// Round to nearest, ties to even. Overflow gives inf; NaN stays a (quiet) NaN.
inline uint16_t fp32_to_fp16(float f) {
    const uint32_t x = f32_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7FFFFFFFu;
    if (ax >= 0x7F800000u) {  // inf or nan
        if (ax == 0x7F800000u) return static_cast<uint16_t>(sign | 0x7C00u);
        return static_cast<uint16_t>(sign | 0x7E00u | ((ax >> 13) & 0x3FFu));
    }
    if (ax >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520 rounds to inf
    if (ax >= 0x38800000u) {                                              // normal half
        uint32_t r = ax - 0x38000000u + 0xFFFu + ((ax >> 13) & 1u);
        return static_cast<uint16_t>(sign | (r >> 13));
    }
    // Subnormal half (or zero): count units of 2^-24.
    const uint32_t e = ax >> 23;
    if (e < 102) return static_cast<uint16_t>(sign);  // below 2^-25 (a tie at 2^-25 goes to 0)
    const uint32_t m = (ax & 0x7FFFFFu) | 0x800000u;
    const uint32_t s = 126u - e;  // 14..24
    uint32_t q = m >> s;
    const uint32_t rem = m & ((1u << s) - 1u);
    const uint32_t half = 1u << (s - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;  // may carry into the smallest normal
    return static_cast<uint16_t>(sign | q);
}

inline float bf16_to_fp32(uint16_t h) { return bits_f32(static_cast<uint32_t>(h) << 16); }

inline uint16_t fp32_to_bf16(float f) {
    const uint32_t x = f32_bits(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
    return static_cast<uint16_t>((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

// ---------------------------------------------------------------------------
// Block formats (ggml layout).
// ---------------------------------------------------------------------------
constexpr int QK8_0 = 32;
constexpr int QK4_0 = 32;

// 32 values: value[j] = qs[j] * d.
struct BlockQ8_0 {
    uint16_t d;  // fp16 scale
    int8_t qs[QK8_0];
};
// 32 values: element j < 16 is the low nibble of qs[j], element j + 16 the high
// nibble; value = (nibble - 8) * d.
struct BlockQ4_0 {
    uint16_t d;  // fp16 scale
    uint8_t qs[QK4_0 / 2];
};
static_assert(sizeof(BlockQ8_0) == 34, "BlockQ8_0 must be 34 bytes");
static_assert(sizeof(BlockQ4_0) == 18, "BlockQ4_0 must be 18 bytes");
static_assert(alignof(BlockQ8_0) == 2 && alignof(BlockQ4_0) == 2, "blocks are 2-byte aligned");

// 32 values: element j < 16 is the low nibble of qs[j], j + 16 the high
// nibble; value = nibble * d + m.
struct BlockQ4_1 {
    uint16_t d;  // fp16 scale
    uint16_t m;  // fp16 minimum
    uint8_t qs[16];
};
// 32 values of 5 bits: the low 4 bits as in Q4_0, bit 4 of element j is bit j
// of the little-endian 32-bit qh; value = (q - 16) * d.
struct BlockQ5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[16];
};
// As Q5_0 without the offset: value = q * d + m.
struct BlockQ5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[16];
};
// Activation format for Q4_1 / Q5_1: value = qs[j] * d; s = fp16(d * sum(qs))
// with d the unrounded float scale.
struct BlockQ8_1 {
    uint16_t d;
    uint16_t s;
    int8_t qs[32];
};
// 32 values; the nibbles (placed as in Q4_0) index a fixed non-linear table:
// value = d * kIQ4NLValues[nibble].
struct BlockIQ4_NL {
    uint16_t d;
    uint8_t qs[16];
};

constexpr int QK_K = 256;

// K-quant super-blocks of 256 values.
// Q2_K: 16 sub-blocks of 16; scales[k] has a 4-bit scale (low) and a 4-bit min
// (high). The 2-bit values are in qs: element 128*h + 32*j + l is bits 2j..2j+1
// of qs[32*h + l]; value = d * (sc & 15) * q - dmin * (sc >> 4).
struct BlockQ2_K {
    uint8_t scales[16];
    uint8_t qs[64];
    uint16_t d;
    uint16_t dmin;
};
// Q3_K: 16 sub-blocks of 16 with 6-bit scales (offset 32) packed in 12 bytes;
// low 2 bits as in Q2_K, the third bit of element 128*h + 32*j + l is bit
// 4*h + j of hmask[l]; value = d * (scale - 32) * (q2 - (bit ? 0 : 4)).
struct BlockQ3_K {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12];
    uint16_t d;
};
// Q4_K: 8 sub-blocks of 32 with 6-bit scales and mins packed in 12 bytes.
// Element 64*j + l (l < 32) is the low nibble of qs[32*j + l], element
// 64*j + 32 + l the high nibble; value = d * sc * q - dmin * m.
struct BlockQ4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[128];
};
// Q5_K: Q4_K plus a fifth bit: bit 2j of qh[l] for element 64*j + l, bit 2j+1
// for element 64*j + 32 + l.
struct BlockQ5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
};
// Q6_K: 16 sub-blocks of 16 with signed 8-bit scales. In each half h of 128
// values, element l (< 32) is low nibble of ql[64h + l] | bits 0-1 of
// qh[32h + l] << 4, element l + 32: low nibble of ql[64h + 32 + l] | bits 2-3,
// element l + 64: high nibble of ql[64h + l] | bits 4-5, element l + 96: high
// nibble of ql[64h + 32 + l] | bits 6-7; value = d * scale * (q - 32).
struct BlockQ6_K {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
};
// Activation format for the K-quants: value = qs[j] * d; bsums[k] is the sum
// of qs[16k .. 16k + 15].
struct BlockQ8_K {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
};
static_assert(sizeof(BlockQ4_1) == 20, "BlockQ4_1 must be 20 bytes");
static_assert(sizeof(BlockQ5_0) == 22, "BlockQ5_0 must be 22 bytes");
static_assert(sizeof(BlockQ5_1) == 24, "BlockQ5_1 must be 24 bytes");
static_assert(sizeof(BlockQ8_1) == 36, "BlockQ8_1 must be 36 bytes");
static_assert(sizeof(BlockIQ4_NL) == 18, "BlockIQ4_NL must be 18 bytes");
static_assert(sizeof(BlockQ2_K) == 84, "BlockQ2_K must be 84 bytes");
static_assert(sizeof(BlockQ3_K) == 110, "BlockQ3_K must be 110 bytes");
static_assert(sizeof(BlockQ4_K) == 144, "BlockQ4_K must be 144 bytes");
static_assert(sizeof(BlockQ5_K) == 176, "BlockQ5_K must be 176 bytes");
static_assert(sizeof(BlockQ6_K) == 210, "BlockQ6_K must be 210 bytes");
static_assert(sizeof(BlockQ8_K) == 292, "BlockQ8_K must be 292 bytes");

// The 16 levels of IQ4_NL.
alignas(16) constexpr int8_t kIQ4NLValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                                 1,    13,   25,  38,  53,  69,  89,  113};

inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// Scale and min of sub-block j (0..7) from the 12 packed bytes of Q4_K / Q5_K:
// j < 4: low 6 bits of bytes j and j + 4; j >= 4: nibbles of byte j + 4 with the
// top 2 bits of bytes j - 4 (scale) and j (min) on top.
inline void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// The 16 six-bit scales of Q3_K, minus 32: byte k holds the low 4 bits of scale
// k (k < 8) or of scale k - 8 in its high nibble; bytes 8..11 hold the top 2
// bits, those of scale k at bits 2*(k/4) and 2*(k/4)+1 of byte 8 + k % 4.
inline void scales_q3_k(const uint8_t* s, int8_t out[16]) {
    for (int k = 0; k < 16; ++k) {
        const int low = k < 8 ? (s[k] & 0x0F) : (s[k - 8] >> 4);
        const int high = (s[8 + (k & 3)] >> (2 * (k >> 2))) & 3;
        out[k] = static_cast<int8_t>((low | (high << 4)) - 32);
    }
}

// Types the kernels can compute with.
inline bool type_supported(Type t) {
    switch (t) {
        case Type::F32: case Type::F16: case Type::BF16: case Type::Q8_0: case Type::Q4_0:
        case Type::Q4_1: case Type::Q5_0: case Type::Q5_1: case Type::IQ4_NL:
        case Type::Q2_K: case Type::Q3_K: case Type::Q4_K: case Type::Q5_K: case Type::Q6_K: return true;
        default: return false;
    }
}

// The format an activation row is converted to before its dot product with a
// weight row of type `weight` (what llama.cpp does, so results match it).
inline Type vec_dot_type(Type weight) {
    switch (weight) {
        case Type::F16: return Type::F16;
        case Type::BF16: return Type::BF16;
        case Type::Q8_0: case Type::Q4_0: case Type::Q5_0: case Type::IQ4_NL: return Type::Q8_0;
        case Type::Q4_1: case Type::Q5_1: return Type::Q8_1;
        case Type::Q2_K: case Type::Q3_K: case Type::Q4_K: case Type::Q5_K: case Type::Q6_K: return Type::Q8_K;
        default: return Type::F32;
    }
}

// ---------------------------------------------------------------------------
// Quantization.
// ---------------------------------------------------------------------------

// Q8_0 the way llama.cpp's x86 build quantizes activations:
// d = fp16(amax / 127), q = rint(x * (127 / amax)) with ties to even; an
// all-zero block gives d = 0, q = 0.
inline void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n) {
    const int64_t nb = n / QK8_0;
    for (int64_t b = 0; b < nb; ++b) {
        const float* xb = x + b * QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(xb[j]));
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[b].d = fp32_to_fp16(d);
        for (int j = 0; j < QK8_0; ++j) {
            float v = std::nearbyint(xb[j] * id);
            v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);  // also maps NaN to 0 below
            y[b].qs[j] = (v == v) ? static_cast<int8_t>(v) : int8_t(0);
        }
    }
}

#if defined(MINIGPT_AVX512) || defined(MINIGPT_AVX2)
// Same result as quantize_row_q8_0_ref, 8 floats at a time.
inline void quantize_row_q8_0_simd(const float* x, BlockQ8_0* y, int64_t n) {
    const int64_t nb = n / QK8_0;
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    const __m256 lim = _mm256_set1_ps(127.0f);
    for (int64_t b = 0; b < nb; ++b) {
        const float* xb = x + b * QK8_0;
        __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
        __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign_mask, v0), _mm256_andnot_ps(sign_mask, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign_mask, v2), _mm256_andnot_ps(sign_mask, v3)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        if (!(amax == amax) || amax > 3.0e38f) {  // NaN or inf inside: take the careful path
            quantize_row_q8_0_ref(xb, y + b, QK8_0);
            continue;
        }
        y[b].d = fp32_to_fp16(amax / 127.0f);
        const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
        const int r = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        v0 = _mm256_min_ps(_mm256_round_ps(_mm256_mul_ps(v0, id), r), lim);
        v1 = _mm256_min_ps(_mm256_round_ps(_mm256_mul_ps(v1, id), r), lim);
        v2 = _mm256_min_ps(_mm256_round_ps(_mm256_mul_ps(v2, id), r), lim);
        v3 = _mm256_min_ps(_mm256_round_ps(_mm256_mul_ps(v3, id), r), lim);
        v0 = _mm256_max_ps(v0, _mm256_sub_ps(_mm256_setzero_ps(), lim));
        v1 = _mm256_max_ps(v1, _mm256_sub_ps(_mm256_setzero_ps(), lim));
        v2 = _mm256_max_ps(v2, _mm256_sub_ps(_mm256_setzero_ps(), lim));
        v3 = _mm256_max_ps(v3, _mm256_sub_ps(_mm256_setzero_ps(), lim));
        __m256i i0 = _mm256_cvtps_epi32(v0), i1 = _mm256_cvtps_epi32(v1);
        __m256i i2 = _mm256_cvtps_epi32(v2), i3 = _mm256_cvtps_epi32(v3);
        // Pack 32-bit -> 16-bit -> 8-bit; packs interleave 128-bit lanes, so fix the order after.
        __m256i p01 = _mm256_packs_epi32(i0, i1);
        __m256i p23 = _mm256_packs_epi32(i2, i3);
        __m256i p = _mm256_packs_epi16(p01, p23);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs), p);
    }
}
#endif

inline void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n) {
#if defined(MINIGPT_AVX512) || defined(MINIGPT_AVX2)
    quantize_row_q8_0_simd(x, y, n);
#else
    quantize_row_q8_0_ref(x, y, n);
#endif
}

// Q4_0 as llama.cpp's reference quantizer: d = (signed value of largest
// magnitude) / -8, q = min(15, trunc(x / d + 8.5)).
inline void quantize_row_q4_0(const float* x, BlockQ4_0* y, int64_t n) {
    const int64_t nb = n / QK4_0;
    for (int64_t b = 0; b < nb; ++b) {
        const float* xb = x + b * QK4_0;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK4_0; ++j) {
            if (amax < std::fabs(xb[j])) {
                amax = std::fabs(xb[j]);
                max = xb[j];
            }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = fp32_to_fp16(d);
        auto q = [id](float v) -> uint8_t {
            float t = v * id + 8.5f;
            if (!(t >= 0.0f)) return 0;  // also NaN
            if (t >= 15.0f) return 15;
            return static_cast<uint8_t>(t);
        };
        for (int j = 0; j < QK4_0 / 2; ++j)
            y[b].qs[j] = static_cast<uint8_t>(q(xb[j]) | (q(xb[j + QK4_0 / 2]) << 4));
    }
}

// Q8_1 as llama.cpp's x86 build quantizes activations: the Q8_0 rounding, and
// s = fp16(d * sum(q)) with d = amax / 127 as a float.
inline void quantize_row_q8_1(const float* x, BlockQ8_1* y, int64_t n) {
    const int64_t nb = n / QK8_0;
    for (int64_t b = 0; b < nb; ++b) {
        const float* xb = x + b * QK8_0;
        BlockQ8_0 t;
        quantize_row_q8_0(xb, &t, QK8_0);
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(xb[j]));
        const float d = amax / 127.0f;
        int sum = 0;
        for (int j = 0; j < QK8_0; ++j) sum += t.qs[j];
        y[b].d = t.d;
        y[b].s = fp32_to_fp16(d * static_cast<float>(sum));
        std::memcpy(y[b].qs, t.qs, sizeof t.qs);
    }
}

// Q8_K as llama.cpp quantizes activations for the K-quants: the value of
// largest magnitude keeps its sign (the first one on ties), iscale = -127 / max,
// q = min(127, rint(iscale * x)) with ties to even, d = 1 / iscale. An all-zero
// block gives d = 0 and q = 0.
inline void quantize_row_q8_k(const float* x, BlockQ8_K* y, int64_t n) {
    const int64_t nb = n / QK_K;
    for (int64_t b = 0; b < nb; ++b) {
        const float* xb = x + b * QK_K;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK_K; ++j) {
            const float ax = std::fabs(xb[j]);
            if (ax > amax) {
                amax = ax;
                max = xb[j];
            }
        }
        if (!(amax > 0.0f) || amax > 3.0e38f) {  // all zero (or not finite): a zero block
            y[b].d = 0.0f;
            std::memset(y[b].qs, 0, sizeof y[b].qs);
            std::memset(y[b].bsums, 0, sizeof y[b].bsums);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; ++j) {
            float v = std::nearbyint(iscale * xb[j]);
            v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
            y[b].qs[j] = (v == v) ? static_cast<int8_t>(v) : int8_t(0);
        }
        for (int k = 0; k < QK_K / 16; ++k) {
            int sum = 0;
            for (int j = 0; j < 16; ++j) sum += y[b].qs[16 * k + j];
            y[b].bsums[k] = static_cast<int16_t>(sum);
        }
        y[b].d = 1.0f / iscale;
    }
}

// Converts n floats to type t (n a multiple of the block size).
inline void quantize_row(Type t, const float* x, void* y, int64_t n) {
    switch (t) {
        case Type::F32:
            if (n > 0) std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
            break;
        case Type::F16: {
            uint16_t* o = static_cast<uint16_t*>(y);
            int64_t i = 0;
#if defined(MINIGPT_AVX512) || defined(MINIGPT_AVX2)
            for (; i + 8 <= n; i += 8) {
                __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                _mm_storeu_si128(reinterpret_cast<__m128i*>(o + i), h);
            }
#endif
            for (; i < n; ++i) o[i] = fp32_to_fp16(x[i]);
            break;
        }
        case Type::BF16: {
            uint16_t* o = static_cast<uint16_t*>(y);
            for (int64_t i = 0; i < n; ++i) o[i] = fp32_to_bf16(x[i]);
            break;
        }
        case Type::Q8_0: quantize_row_q8_0(x, static_cast<BlockQ8_0*>(y), n); break;
        case Type::Q4_0: quantize_row_q4_0(x, static_cast<BlockQ4_0*>(y), n); break;
        case Type::Q8_1: quantize_row_q8_1(x, static_cast<BlockQ8_1*>(y), n); break;
        case Type::Q8_K: quantize_row_q8_k(x, static_cast<BlockQ8_K*>(y), n); break;
        default: MINIGPT_ASSERT(false && "quantize_row: unsupported type"); break;
    }
}

// Converts n values of type t to floats.
inline void dequantize_row(Type t, const void* x, float* y, int64_t n) {
    switch (t) {
        case Type::F32:
            if (n > 0) std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
            break;
        case Type::F16: {
            const uint16_t* h = static_cast<const uint16_t*>(x);
            int64_t i = 0;
#if defined(MINIGPT_AVX512) || defined(MINIGPT_AVX2)
            for (; i + 8 <= n; i += 8)
                _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
#endif
            for (; i < n; ++i) y[i] = fp16_to_fp32(h[i]);
            break;
        }
        case Type::BF16: {
            const uint16_t* h = static_cast<const uint16_t*>(x);
            for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_fp32(h[i]);
            break;
        }
        case Type::Q8_0: {
            const BlockQ8_0* b = static_cast<const BlockQ8_0*>(x);
            for (int64_t i = 0; i < n / QK8_0; ++i) {
                const float d = fp16_to_fp32(b[i].d);
                for (int j = 0; j < QK8_0; ++j) y[i * QK8_0 + j] = b[i].qs[j] * d;
            }
            break;
        }
        case Type::Q4_0: {
            const BlockQ4_0* b = static_cast<const BlockQ4_0*>(x);
            for (int64_t i = 0; i < n / QK4_0; ++i) {
                const float d = fp16_to_fp32(b[i].d);
                float* o = y + i * QK4_0;
                for (int j = 0; j < QK4_0 / 2; ++j) {
                    o[j] = static_cast<float>((b[i].qs[j] & 0x0F) - 8) * d;
                    o[j + QK4_0 / 2] = static_cast<float>((b[i].qs[j] >> 4) - 8) * d;
                }
            }
            break;
        }
        case Type::Q4_1: {
            const BlockQ4_1* b = static_cast<const BlockQ4_1*>(x);
            for (int64_t i = 0; i < n / 32; ++i) {
                const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
                float* o = y + i * 32;
                for (int j = 0; j < 16; ++j) {
                    o[j] = static_cast<float>(b[i].qs[j] & 0x0F) * d + m;
                    o[j + 16] = static_cast<float>(b[i].qs[j] >> 4) * d + m;
                }
            }
            break;
        }
        case Type::Q5_0: {
            const BlockQ5_0* b = static_cast<const BlockQ5_0*>(x);
            for (int64_t i = 0; i < n / 32; ++i) {
                const float d = fp16_to_fp32(b[i].d);
                const uint32_t qh = load_u32(b[i].qh);
                float* o = y + i * 32;
                for (int j = 0; j < 16; ++j) {
                    const int q0 = (b[i].qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
                    const int q1 = (b[i].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
                    o[j] = static_cast<float>(q0 - 16) * d;
                    o[j + 16] = static_cast<float>(q1 - 16) * d;
                }
            }
            break;
        }
        case Type::Q5_1: {
            const BlockQ5_1* b = static_cast<const BlockQ5_1*>(x);
            for (int64_t i = 0; i < n / 32; ++i) {
                const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
                const uint32_t qh = load_u32(b[i].qh);
                float* o = y + i * 32;
                for (int j = 0; j < 16; ++j) {
                    const int q0 = (b[i].qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
                    const int q1 = (b[i].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
                    o[j] = static_cast<float>(q0) * d + m;
                    o[j + 16] = static_cast<float>(q1) * d + m;
                }
            }
            break;
        }
        case Type::Q8_1: {
            const BlockQ8_1* b = static_cast<const BlockQ8_1*>(x);
            for (int64_t i = 0; i < n / 32; ++i) {
                const float d = fp16_to_fp32(b[i].d);
                for (int j = 0; j < 32; ++j) y[i * 32 + j] = b[i].qs[j] * d;
            }
            break;
        }
        case Type::IQ4_NL: {
            const BlockIQ4_NL* b = static_cast<const BlockIQ4_NL*>(x);
            for (int64_t i = 0; i < n / 32; ++i) {
                const float d = fp16_to_fp32(b[i].d);
                float* o = y + i * 32;
                for (int j = 0; j < 16; ++j) {
                    o[j] = d * kIQ4NLValues[b[i].qs[j] & 0x0F];
                    o[j + 16] = d * kIQ4NLValues[b[i].qs[j] >> 4];
                }
            }
            break;
        }
        case Type::Q2_K: {
            const BlockQ2_K* b = static_cast<const BlockQ2_K*>(x);
            for (int64_t i = 0; i < n / QK_K; ++i) {
                const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
                float* o = y + i * QK_K;
                for (int h = 0; h < 2; ++h) {
                    const uint8_t* q = b[i].qs + 32 * h;
                    for (int j = 0; j < 4; ++j) {
                        for (int half = 0; half < 2; ++half) {
                            const uint8_t sc = b[i].scales[8 * h + 2 * j + half];
                            const float dl = d * static_cast<float>(sc & 0x0F);
                            const float ml = dmin * static_cast<float>(sc >> 4);
                            for (int l = 0; l < 16; ++l)
                                *o++ = dl * static_cast<float>((q[16 * half + l] >> (2 * j)) & 3) - ml;
                        }
                    }
                }
            }
            break;
        }
        case Type::Q3_K: {
            const BlockQ3_K* b = static_cast<const BlockQ3_K*>(x);
            for (int64_t i = 0; i < n / QK_K; ++i) {
                const float d = fp16_to_fp32(b[i].d);
                int8_t sc[16];
                scales_q3_k(b[i].scales, sc);
                float* o = y + i * QK_K;
                for (int h = 0; h < 2; ++h) {
                    const uint8_t* q = b[i].qs + 32 * h;
                    for (int j = 0; j < 4; ++j) {
                        const int hshift = 4 * h + j;
                        for (int half = 0; half < 2; ++half) {
                            const float dl = d * static_cast<float>(sc[8 * h + 2 * j + half]);
                            for (int l = 16 * half; l < 16 * half + 16; ++l) {
                                const int v = ((q[l] >> (2 * j)) & 3) - 4 + 4 * ((b[i].hmask[l] >> hshift) & 1);
                                *o++ = dl * static_cast<float>(v);
                            }
                        }
                    }
                }
            }
            break;
        }
        case Type::Q4_K: {
            const BlockQ4_K* b = static_cast<const BlockQ4_K*>(x);
            for (int64_t i = 0; i < n / QK_K; ++i) {
                const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
                float* o = y + i * QK_K;
                for (int j = 0; j < 4; ++j) {
                    int sc0, m0, sc1, m1;
                    scale_min_k4(2 * j, b[i].scales, sc0, m0);
                    scale_min_k4(2 * j + 1, b[i].scales, sc1, m1);
                    const float d0 = d * static_cast<float>(sc0), mm0 = dmin * static_cast<float>(m0);
                    const float d1 = d * static_cast<float>(sc1), mm1 = dmin * static_cast<float>(m1);
                    const uint8_t* q = b[i].qs + 32 * j;
                    for (int l = 0; l < 32; ++l) *o++ = d0 * static_cast<float>(q[l] & 0x0F) - mm0;
                    for (int l = 0; l < 32; ++l) *o++ = d1 * static_cast<float>(q[l] >> 4) - mm1;
                }
            }
            break;
        }
        case Type::Q5_K: {
            const BlockQ5_K* b = static_cast<const BlockQ5_K*>(x);
            for (int64_t i = 0; i < n / QK_K; ++i) {
                const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
                float* o = y + i * QK_K;
                for (int j = 0; j < 4; ++j) {
                    int sc0, m0, sc1, m1;
                    scale_min_k4(2 * j, b[i].scales, sc0, m0);
                    scale_min_k4(2 * j + 1, b[i].scales, sc1, m1);
                    const float d0 = d * static_cast<float>(sc0), mm0 = dmin * static_cast<float>(m0);
                    const float d1 = d * static_cast<float>(sc1), mm1 = dmin * static_cast<float>(m1);
                    const uint8_t* q = b[i].qs + 32 * j;
                    const uint8_t u0 = static_cast<uint8_t>(1u << (2 * j)), u1 = static_cast<uint8_t>(2u << (2 * j));
                    for (int l = 0; l < 32; ++l)
                        *o++ = d0 * static_cast<float>((q[l] & 0x0F) + ((b[i].qh[l] & u0) ? 16 : 0)) - mm0;
                    for (int l = 0; l < 32; ++l)
                        *o++ = d1 * static_cast<float>((q[l] >> 4) + ((b[i].qh[l] & u1) ? 16 : 0)) - mm1;
                }
            }
            break;
        }
        case Type::Q6_K: {
            const BlockQ6_K* b = static_cast<const BlockQ6_K*>(x);
            for (int64_t i = 0; i < n / QK_K; ++i) {
                const float d = fp16_to_fp32(b[i].d);
                float* o = y + i * QK_K;
                for (int h = 0; h < 2; ++h) {
                    const uint8_t* ql = b[i].ql + 64 * h;
                    const uint8_t* qh = b[i].qh + 32 * h;
                    const int8_t* sc = b[i].scales + 8 * h;
                    for (int l = 0; l < 32; ++l) {
                        const int is = l / 16;
                        const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
                        const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                        o[128 * h + l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
                        o[128 * h + l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
                        o[128 * h + l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
                        o[128 * h + l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
                    }
                }
            }
            break;
        }
        case Type::Q8_K: {
            const BlockQ8_K* b = static_cast<const BlockQ8_K*>(x);
            for (int64_t i = 0; i < n / QK_K; ++i)
                for (int j = 0; j < QK_K; ++j) y[i * QK_K + j] = b[i].d * b[i].qs[j];
            break;
        }
        default: MINIGPT_ASSERT(false && "dequantize_row: unsupported type"); break;
    }
}

}  // namespace detail
MINIGPT_NS_END

// ---- kernels_scalar.hpp ----
// kernels_scalar: plain C++ kernels. They are the reference every SIMD kernel
// is tested against, and the fallback when no SIMD is compiled in.

MINIGPT_NS_BEGIN
namespace detail {

// Dot product of one weight row (n elements) with one activation row that is
// already in vec_dot_type(weight type) format.
using VecDotFn = float (*)(int64_t n, const void* w, const void* a);

namespace scalar {

inline float vec_dot_f32(int64_t n, const void* w, const void* a) {
    const float* x = static_cast<const float*>(w);
    const float* y = static_cast<const float*>(a);
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i] * y[i]);
    return static_cast<float>(s);
}

inline float vec_dot_f16(int64_t n, const void* w, const void* a) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(fp16_to_fp32(x[i]) * fp16_to_fp32(y[i]));
    return static_cast<float>(s);
}

inline float vec_dot_bf16(int64_t n, const void* w, const void* a) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(bf16_to_fp32(x[i]) * bf16_to_fp32(y[i]));
    return static_cast<float>(s);
}

// Per block: an exact integer sum, times fp16(dw) * fp16(da), accumulated in float.
inline float vec_dot_q8_0(int64_t n, const void* w, const void* a) {
    const BlockQ8_0* x = static_cast<const BlockQ8_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK8_0; ++b) {
        int32_t sumi = 0;
        for (int j = 0; j < QK8_0; ++j) sumi += int32_t(x[b].qs[j]) * int32_t(y[b].qs[j]);
        s += static_cast<float>(sumi) * (fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d));
    }
    return s;
}

inline float vec_dot_q4_0(int64_t n, const void* w, const void* a) {
    const BlockQ4_0* x = static_cast<const BlockQ4_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK4_0; ++b) {
        int32_t sumi = 0;
        for (int j = 0; j < QK4_0 / 2; ++j) {
            sumi += ((x[b].qs[j] & 0x0F) - 8) * int32_t(y[b].qs[j]);
            sumi += ((x[b].qs[j] >> 4) - 8) * int32_t(y[b].qs[j + QK4_0 / 2]);
        }
        s += static_cast<float>(sumi) * (fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d));
    }
    return s;
}

// Q4_1 x Q8_1: sum(q * a) * dw * da + m * s, per block.
inline float vec_dot_q4_1(int64_t n, const void* w, const void* a) {
    const BlockQ4_1* x = static_cast<const BlockQ4_1*>(w);
    const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / 32; ++b) {
        int32_t sumi = 0;
        for (int j = 0; j < 16; ++j) {
            sumi += (x[b].qs[j] & 0x0F) * int32_t(y[b].qs[j]);
            sumi += (x[b].qs[j] >> 4) * int32_t(y[b].qs[j + 16]);
        }
        s += (fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d)) * static_cast<float>(sumi) +
             fp16_to_fp32(x[b].m) * fp16_to_fp32(y[b].s);
    }
    return s;
}

// The 32 five-bit values of a Q5_0 / Q5_1 block (0..31), in element order.
template <class Block>
inline void unpack_q5(const Block& blk, int q[32]) {
    const uint32_t qh = load_u32(blk.qh);
    for (int j = 0; j < 16; ++j) {
        q[j] = (blk.qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
        q[j + 16] = (blk.qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    }
}

inline float vec_dot_q5_0(int64_t n, const void* w, const void* a) {
    const BlockQ5_0* x = static_cast<const BlockQ5_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / 32; ++b) {
        int q[32];
        unpack_q5(x[b], q);
        int32_t sumi = 0;
        for (int j = 0; j < 32; ++j) sumi += (q[j] - 16) * int32_t(y[b].qs[j]);
        s += static_cast<float>(sumi) * (fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d));
    }
    return s;
}

inline float vec_dot_q5_1(int64_t n, const void* w, const void* a) {
    const BlockQ5_1* x = static_cast<const BlockQ5_1*>(w);
    const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / 32; ++b) {
        int q[32];
        unpack_q5(x[b], q);
        int32_t sumi = 0;
        for (int j = 0; j < 32; ++j) sumi += q[j] * int32_t(y[b].qs[j]);
        s += (fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d)) * static_cast<float>(sumi) +
             fp16_to_fp32(x[b].m) * fp16_to_fp32(y[b].s);
    }
    return s;
}

inline float vec_dot_iq4_nl(int64_t n, const void* w, const void* a) {
    const BlockIQ4_NL* x = static_cast<const BlockIQ4_NL*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / 32; ++b) {
        int32_t sumi = 0;
        for (int j = 0; j < 16; ++j) {
            sumi += kIQ4NLValues[x[b].qs[j] & 0x0F] * int32_t(y[b].qs[j]);
            sumi += kIQ4NLValues[x[b].qs[j] >> 4] * int32_t(y[b].qs[j + 16]);
        }
        s += (fp16_to_fp32(x[b].d) * fp16_to_fp32(y[b].d)) * static_cast<float>(sumi);
    }
    return s;
}

// K-quants against Q8_K: per super-block, the integer sum over sub-blocks of
// scale * sum(q * a), times d_w * d_a, minus the min term dmin_w * d_a *
// sum(min * (sum of a over the sub-block)), accumulated in float.
inline float vec_dot_q2_k(int64_t n, const void* w, const void* a) {
    const BlockQ2_K* x = static_cast<const BlockQ2_K*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int32_t summs = 0;
        for (int k = 0; k < 16; ++k) summs += y[b].bsums[k] * (x[b].scales[k] >> 4);
        int32_t isum = 0;
        for (int k = 0; k < 16; ++k) {  // sub-block k: elements 16k .. 16k + 15
            const int h = k / 8, j = (k % 8) / 2, half = k % 2;
            const uint8_t* q = x[b].qs + 32 * h + 16 * half;
            const int8_t* q8 = y[b].qs + 16 * k;
            int32_t sub = 0;
            for (int l = 0; l < 16; ++l) sub += ((q[l] >> (2 * j)) & 3) * int32_t(q8[l]);
            isum += (x[b].scales[k] & 0x0F) * sub;
        }
        const float dall = y[b].d * fp16_to_fp32(x[b].d);
        const float dmin = y[b].d * fp16_to_fp32(x[b].dmin);
        s += dall * static_cast<float>(isum) - dmin * static_cast<float>(summs);
    }
    return s;
}

inline float vec_dot_q3_k(int64_t n, const void* w, const void* a) {
    const BlockQ3_K* x = static_cast<const BlockQ3_K*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int8_t sc[16];
        scales_q3_k(x[b].scales, sc);
        int32_t isum = 0;
        for (int k = 0; k < 16; ++k) {
            const int h = k / 8, j = (k % 8) / 2, half = k % 2;
            const uint8_t* q = x[b].qs + 32 * h + 16 * half;
            const uint8_t* hm = x[b].hmask + 16 * half;
            const int hshift = 4 * h + j;
            const int8_t* q8 = y[b].qs + 16 * k;
            // The values go through a signed array first: g++ 12 -O2 with AVX-512
            // otherwise turns the loop into a dot product that treats them as unsigned.
            int8_t v[16];
            for (int l = 0; l < 16; ++l)
                v[l] = static_cast<int8_t>(((q[l] >> (2 * j)) & 3) - 4 + 4 * ((hm[l] >> hshift) & 1));
            int32_t sub = 0;
            for (int l = 0; l < 16; ++l) sub += int32_t(v[l]) * int32_t(q8[l]);
            isum += sc[k] * sub;
        }
        s += (fp16_to_fp32(x[b].d) * y[b].d) * static_cast<float>(isum);
    }
    return s;
}

// Q4_K and Q5_K share the scale layout; High selects the fifth bit.
template <bool High, class Block>
inline float vec_dot_q45_k(int64_t n, const void* w, const void* a) {
    const Block* x = static_cast<const Block*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int32_t isum = 0, summs = 0;
        for (int k = 0; k < 8; ++k) {  // sub-block k: elements 32k .. 32k + 31
            int sc, m;
            scale_min_k4(k, x[b].scales, sc, m);
            const uint8_t* q = x[b].qs + 32 * (k / 2);
            const int shift = 4 * (k % 2);
            const int8_t* q8 = y[b].qs + 32 * k;
            int32_t sub = 0;
            for (int l = 0; l < 32; ++l) {
                int v = (q[l] >> shift) & 0x0F;
                if constexpr (High) v |= ((reinterpret_cast<const BlockQ5_K*>(x + b)->qh[l] >> k) & 1) << 4;
                sub += v * int32_t(q8[l]);
            }
            isum += sc * sub;
            summs += m * (y[b].bsums[2 * k] + y[b].bsums[2 * k + 1]);
        }
        const float d = y[b].d * fp16_to_fp32(x[b].d);
        const float dmin = y[b].d * fp16_to_fp32(x[b].dmin);
        s += d * static_cast<float>(isum) - dmin * static_cast<float>(summs);
    }
    return s;
}
inline float vec_dot_q4_k(int64_t n, const void* w, const void* a) { return vec_dot_q45_k<false, BlockQ4_K>(n, w, a); }
inline float vec_dot_q5_k(int64_t n, const void* w, const void* a) { return vec_dot_q45_k<true, BlockQ5_K>(n, w, a); }

inline float vec_dot_q6_k(int64_t n, const void* w, const void* a) {
    const BlockQ6_K* x = static_cast<const BlockQ6_K*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int32_t isum = 0;
        for (int h = 0; h < 2; ++h) {
            const uint8_t* ql = x[b].ql + 64 * h;
            const uint8_t* qh = x[b].qh + 32 * h;
            for (int g = 0; g < 4; ++g) {  // elements 128h + 32g + l
                for (int half = 0; half < 2; ++half) {
                    const int k = 8 * h + 2 * g + half;  // sub-block of 16
                    const int8_t* q8 = y[b].qs + 16 * k;
                    int32_t sub = 0;
                    for (int l = 16 * half; l < 16 * half + 16; ++l) {
                        const int lo = g & 1 ? ql[l + 32] : ql[l];
                        const int nib = g < 2 ? (lo & 0x0F) : (lo >> 4);
                        const int q = (nib | (((qh[l] >> (2 * g)) & 3) << 4)) - 32;
                        sub += q * int32_t(q8[l - 16 * half]);
                    }
                    isum += x[b].scales[k] * sub;
                }
            }
        }
        s += (fp16_to_fp32(x[b].d) * y[b].d) * static_cast<float>(isum);
    }
    return s;
}

inline VecDotFn vec_dot_fn(Type wt) {
    switch (wt) {
        case Type::F32: return vec_dot_f32;
        case Type::F16: return vec_dot_f16;
        case Type::BF16: return vec_dot_bf16;
        case Type::Q8_0: return vec_dot_q8_0;
        case Type::Q4_0: return vec_dot_q4_0;
        case Type::Q4_1: return vec_dot_q4_1;
        case Type::Q5_0: return vec_dot_q5_0;
        case Type::Q5_1: return vec_dot_q5_1;
        case Type::IQ4_NL: return vec_dot_iq4_nl;
        case Type::Q2_K: return vec_dot_q2_k;
        case Type::Q3_K: return vec_dot_q3_k;
        case Type::Q4_K: return vec_dot_q4_k;
        case Type::Q5_K: return vec_dot_q5_k;
        case Type::Q6_K: return vec_dot_q6_k;
        default: return nullptr;
    }
}

// Unsupported types give 0 (callers check type_supported first).
inline float vec_dot(Type wt, int64_t n, const void* w, const void* a) {
    VecDotFn f = vec_dot_fn(wt);
    MINIGPT_ASSERT(f != nullptr);
    return f ? f(n, w, a) : 0.0f;
}

inline float dot_f32(const float* a, const float* b, int64_t n) { return vec_dot_f32(n, a, b); }

inline void axpy_f32(int64_t n, float a, const float* x, float* y) {
    for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

inline void scale_f32(int64_t n, float a, float* y) {
    for (int64_t i = 0; i < n; ++i) y[i] *= a;
}

}  // namespace scalar

// Asks for the cache lines of [p, p + bytes) (for writing: `write`) without
// waiting for them. (Written in asm where it can be: g++ 12 deletes a loop of
// nothing but __builtin_prefetch once it is inlined into a caller.)
inline void request_lines(const void* p, size_t bytes, bool write = false) {
    const char* c = static_cast<const char*>(p);
    const char* end = c + bytes;
    for (c -= reinterpret_cast<uintptr_t>(c) & 63; c < end; c += 64) {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
        if (write) __asm__ __volatile__("prefetchw %0" : : "m"(*c));
        else __asm__ __volatile__("prefetcht0 %0" : : "m"(*c));
#elif (defined(__GNUC__) || defined(__clang__)) && defined(__aarch64__)
        if (write) __asm__ __volatile__("prfm pstl1keep, %0" : : "Q"(*c));
        else __asm__ __volatile__("prfm pldl1keep, %0" : : "Q"(*c));
#elif defined(__GNUC__) || defined(__clang__)
        __builtin_prefetch(c, write ? 1 : 0, 3);
#else
        (void)write;
#endif
    }
}

// Software prefetch for one-row products, which stream their weights once: a
// core keeps only so many hardware-prefetched lines in flight, and asking for
// the lines a few KiB ahead of the row being read raises its share of the
// memory bandwidth. ahead(r) is called before row r and requests every line
// up to 6 KiB past the row's end, never past row r_end (the end of the range,
// or of the rows the caller reads next), with the non-temporal hint: the
// weights are read once per token, and lines fetched that way do not push the
// activations, the KV cache and the output rows out of the caches. Measured
// on smollm2-135m generation with 2 threads (variants alternating in one
// process; AVX-512): against 16 KiB ahead into all levels, Q8_0 1.06-1.12x,
// and 2-8 KiB ahead were within a few percent of 6; against no prefetch, Q4_0
// 1.15x, F16 1.06x, BF16 1.12x. Q4_K and Q5_K, whose kernels do more work per
// byte, gain nothing (1.00x, and 0.96x for llama-3.2-1b Q4_K): every one-row
// product asks prefetch_pays.
inline bool prefetch_pays(Type t) {
    return t == Type::Q8_0 || t == Type::Q4_0 || t == Type::F16 || t == Type::BF16;
}

struct RowPrefetch {
    static constexpr size_t kAhead = 6 << 10;
    const char* base;
    size_t stride;
    size_t end;   // offset of the end of row r_end - 1, r_end = max(r1, ahead_end)
    size_t next;  // offset of the first line not yet requested (end when off)
    RowPrefetch(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t ahead_end, bool on)
        : base(static_cast<const char*>(w)),
          stride(row_bytes),
          end(static_cast<size_t>(std::max(r1, ahead_end)) * row_bytes),
          next(on ? static_cast<size_t>(r0) * row_bytes : end) {}
    void ahead(int64_t r) {
        const size_t stop = std::min(end, (static_cast<size_t>(r) + 1) * stride + kAhead);
        for (; next < stop; next += 64) {
#if defined(__GNUC__) || defined(__clang__)
            __builtin_prefetch(base + next, 0, 0);
#endif
        }
    }
};

// Y[j*ldy + r] = dot(W row r, A row j) for r in [r0, r1), j in [0, m), with any
// row kernel. Tiles of weight rows are reused across all activation rows while
// they are hot in cache. Used by the scalar build and as the generic fallback.
// One activation row is one stream, read ahead when prefetch is set (up to
// row ahead_end when that is past r1: the rows the caller reads next).
inline void matmul_rows_generic(VecDotFn dot, const void* W, size_t w_row_bytes, int64_t n, int64_t r0, int64_t r1,
                                const void* A, size_t a_row_bytes, int64_t m, float* Y, int64_t ldy, bool prefetch,
                                int64_t ahead_end = 0) {
    if (!dot || r1 <= r0 || m <= 0) return;
    const uint8_t* w = static_cast<const uint8_t*>(W);
    const uint8_t* act = static_cast<const uint8_t*>(A);
    if (m == 1) {  // one stream through the weights
        RowPrefetch pf(W, w_row_bytes, r0, r1, ahead_end, prefetch);
        for (int64_t r = r0; r < r1; ++r) {
            pf.ahead(r);
            Y[r] = dot(n, w + static_cast<size_t>(r) * w_row_bytes, act);
        }
        return;
    }
    // About 64 KiB of weights per tile, at least 1 and at most 64 rows.
    int64_t tile = w_row_bytes ? static_cast<int64_t>((64u << 10) / w_row_bytes) : 64;
    tile = std::max<int64_t>(1, std::min<int64_t>(64, tile));
    for (int64_t rt = r0; rt < r1; rt += tile) {
        const int64_t re = std::min(r1, rt + tile);
        for (int64_t j = 0; j < m; ++j) {
            const void* aj = act + static_cast<size_t>(j) * a_row_bytes;
            float* yj = Y + j * ldy;
            for (int64_t r = rt; r < re; ++r) yj[r] = dot(n, w + static_cast<size_t>(r) * w_row_bytes, aj);
        }
    }
}

namespace scalar {
inline void matmul_rows(Type wt, const void* W, size_t w_row_bytes, int64_t n, int64_t r0, int64_t r1,
                        const void* A, size_t a_row_bytes, int64_t m, float* Y, int64_t ldy, int64_t ahead_end = 0) {
    matmul_rows_generic(vec_dot_fn(wt), W, w_row_bytes, n, r0, r1, A, a_row_bytes, m, Y, ldy, prefetch_pays(wt), ahead_end);
}
}  // namespace scalar

}  // namespace detail
MINIGPT_NS_END

// ---- kernels_avx2.hpp ----
// kernels_avx2: AVX2 + FMA + F16C versions of the scalar kernels.

#if defined(MINIGPT_AVX2)
#include <immintrin.h>

MINIGPT_NS_BEGIN
namespace detail {
namespace avx2 {

// fp16 scale to float with the F16C instruction.
inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// 8 bf16 values to 8 floats.
inline __m256 load_bf16(const uint16_t* p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
inline __m256 load_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline float vec_dot_f32(int64_t n, const void* w, const void* a) {
    const float* x = static_cast<const float*>(w);
    const float* y = static_cast<const float*>(a);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; ++i) s += x[i] * y[i];
    return s;
}

inline float vec_dot_f16(int64_t n, const void* w, const void* a) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(load_f16(x + i), load_f16(y + i), s0);
        s1 = _mm256_fmadd_ps(load_f16(x + i + 8), load_f16(y + i + 8), s1);
        s2 = _mm256_fmadd_ps(load_f16(x + i + 16), load_f16(y + i + 16), s2);
        s3 = _mm256_fmadd_ps(load_f16(x + i + 24), load_f16(y + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(load_f16(x + i), load_f16(y + i), s0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; ++i) s += h2f(x[i]) * h2f(y[i]);
    return s;
}

inline float vec_dot_bf16(int64_t n, const void* w, const void* a) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(load_bf16(x + i), load_bf16(y + i), s0);
        s1 = _mm256_fmadd_ps(load_bf16(x + i + 8), load_bf16(y + i + 8), s1);
        s2 = _mm256_fmadd_ps(load_bf16(x + i + 16), load_bf16(y + i + 16), s2);
        s3 = _mm256_fmadd_ps(load_bf16(x + i + 24), load_bf16(y + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(load_bf16(x + i), load_bf16(y + i), s0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; ++i) s += bf16_to_fp32(x[i]) * bf16_to_fp32(y[i]);
    return s;
}

// Sum of the 32 products of signed bytes x and y, as 8 int32 lanes:
// |x| (unsigned) times y with x's sign (signed) fits maddubs.
inline __m256i dot_i8(__m256i x, __m256i y) {
    const __m256i ax = _mm256_sign_epi8(x, x);
    const __m256i sy = _mm256_sign_epi8(y, x);
    const __m256i p16 = _mm256_maddubs_epi16(ax, sy);
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

// The 32 nibbles of a Q4_0 block as signed bytes in [-8, 7], in element order.
inline __m256i unpack_q4_0(const uint8_t* qs) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i lo_mask = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(b, lo_mask);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), lo_mask);
    const __m256i v = _mm256_set_m128i(hi, lo);
    return _mm256_sub_epi8(v, _mm256_set1_epi8(8));
}

inline __m256i load_q8(const int8_t* qs) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs)); }

inline float vec_dot_q8_0(int64_t n, const void* w, const void* a) {
    const BlockQ8_0* x = static_cast<const BlockQ8_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    const int64_t nb = n / QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const __m256 d0 = _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d));
        const __m256 d1 = _mm256_set1_ps(h2f(x[b + 1].d) * h2f(y[b + 1].d));
        acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(dot_i8(load_q8(x[b].qs), load_q8(y[b].qs))), acc0);
        acc1 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(dot_i8(load_q8(x[b + 1].qs), load_q8(y[b + 1].qs))), acc1);
    }
    for (; b < nb; ++b) {
        const __m256 d0 = _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d));
        acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(dot_i8(load_q8(x[b].qs), load_q8(y[b].qs))), acc0);
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

inline float vec_dot_q4_0(int64_t n, const void* w, const void* a) {
    const BlockQ4_0* x = static_cast<const BlockQ4_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    const int64_t nb = n / QK4_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const __m256 d0 = _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d));
        const __m256 d1 = _mm256_set1_ps(h2f(x[b + 1].d) * h2f(y[b + 1].d));
        acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(dot_i8(unpack_q4_0(x[b].qs), load_q8(y[b].qs))), acc0);
        acc1 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(dot_i8(unpack_q4_0(x[b + 1].qs), load_q8(y[b + 1].qs))), acc1);
    }
    for (; b < nb; ++b) {
        const __m256 d0 = _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d));
        acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(dot_i8(unpack_q4_0(x[b].qs), load_q8(y[b].qs))), acc0);
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

// ---------------------------------------------------------------------------
// Q4_1, Q5_0, Q5_1, IQ4_NL and the K-quants. Integer products of unsigned
// weight codes and signed activations go through maddubs (two products summed
// into int16, no saturation for these ranges) and madd (into int32); offsets
// such as Q5_0's -16 or Q6_K's -32 are taken out with activation sums.
// ---------------------------------------------------------------------------
inline __m256i mul_sum_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

inline int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

// The 32 nibbles of a 16-byte Q4-style array, unsigned, in element order
// (low nibbles are elements 0..15, high nibbles 16..31).
inline __m256i nibbles32(const uint8_t* qs) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}

// Byte e is 0xFF when bit e of bits is set, else 0.
inline __m256i bits_to_bytes(uint32_t bits) {
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                                          _mm256_setr_epi64x(0x0000000000000000LL, 0x0101010101010101LL,
                                                             0x0202020202020202LL, 0x0303030303030303LL));
    const __m256i sel = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel);
}

// Five-bit codes (0..31) of a Q5_0 / Q5_1 block.
inline __m256i codes_q5(const uint8_t* qs, const uint8_t* qh) {
    return _mm256_or_si256(nibbles32(qs), _mm256_and_si256(bits_to_bytes(load_u32(qh)), _mm256_set1_epi8(0x10)));
}

inline float vec_dot_q4_1(int64_t n, const void* w, const void* a) {
    const BlockQ4_1* x = static_cast<const BlockQ4_1*>(w);
    const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
    __m256 acc = _mm256_setzero_ps();
    float summs = 0.0f;
    for (int64_t b = 0; b < n / 32; ++b) {
        const __m256i p = mul_sum_u8s8(nibbles32(x[b].qs), load_q8(y[b].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), _mm256_cvtepi32_ps(p), acc);
        summs += h2f(x[b].m) * h2f(y[b].s);
    }
    return hsum(acc) + summs;
}

inline float vec_dot_q5_0(int64_t n, const void* w, const void* a) {
    const BlockQ5_0* x = static_cast<const BlockQ5_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    const __m256i sixteen = _mm256_set1_epi8(16);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 32; ++b) {
        const __m256i av = load_q8(y[b].qs);
        const __m256i p = _mm256_sub_epi32(mul_sum_u8s8(codes_q5(x[b].qs, x[b].qh), av), mul_sum_u8s8(sixteen, av));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), _mm256_cvtepi32_ps(p), acc);
    }
    return hsum(acc);
}

inline float vec_dot_q5_1(int64_t n, const void* w, const void* a) {
    const BlockQ5_1* x = static_cast<const BlockQ5_1*>(w);
    const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
    __m256 acc = _mm256_setzero_ps();
    float summs = 0.0f;
    for (int64_t b = 0; b < n / 32; ++b) {
        const __m256i p = mul_sum_u8s8(codes_q5(x[b].qs, x[b].qh), load_q8(y[b].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), _mm256_cvtepi32_ps(p), acc);
        summs += h2f(x[b].m) * h2f(y[b].s);
    }
    return hsum(acc) + summs;
}

inline float vec_dot_iq4_nl(int64_t n, const void* w, const void* a) {
    const BlockIQ4_NL* x = static_cast<const BlockIQ4_NL*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    const __m128i t = _mm_load_si128(reinterpret_cast<const __m128i*>(kIQ4NLValues));
    const __m256i table = _mm256_set_m128i(t, t);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 32; ++b) {
        const __m256i v = _mm256_shuffle_epi8(table, nibbles32(x[b].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), _mm256_cvtepi32_ps(dot_i8(v, load_q8(y[b].qs))),
                              acc);
    }
    return hsum(acc);
}

// Two int16 scales: the first for bytes 0..15 of a 32-byte product, the second
// for bytes 16..31 (two sub-blocks of 16).
inline __m256i scales_pair(int s0, int s1) {
    return _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(s1)), _mm_set1_epi16(static_cast<int16_t>(s0)));
}
inline __m256i shr16(__m256i v, int k) { return _mm256_srl_epi16(v, _mm_cvtsi32_si128(k)); }

inline float vec_dot_q2_k(int64_t n, const void* w, const void* a) {
    const BlockQ2_K* x = static_cast<const BlockQ2_K*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    const __m256i m3 = _mm256_set1_epi8(3);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const uint8_t* sc = x[b].scales;
        int32_t summs = 0;
        for (int k = 0; k < 16; ++k) summs += y[b].bsums[k] * (sc[k] >> 4);
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h) {
            const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs + 32 * h));
            for (int j = 0; j < 4; ++j) {
                const int k = 8 * h + 2 * j;
                const __m256i q = _mm256_and_si256(shr16(qv, 2 * j), m3);
                const __m256i p = _mm256_maddubs_epi16(q, load_q8(y[b].qs + 32 * (k / 2)));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scales_pair(sc[k] & 15, sc[k + 1] & 15)));
            }
        }
        const float dall = y[b].d * h2f(x[b].d);
        const float dmin = y[b].d * h2f(x[b].dmin);
        s += dall * static_cast<float>(hsum_i32(sumi)) - dmin * static_cast<float>(summs);
    }
    return s;
}

inline float vec_dot_q3_k(int64_t n, const void* w, const void* a) {
    const BlockQ3_K* x = static_cast<const BlockQ3_K*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    const __m256i m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int8_t sc[16];
        scales_q3_k(x[b].scales, sc);
        // Codes are stored as q + 4 (0..7): take 4 * sum(scale * a) back out.
        int32_t corr = 0;
        for (int k = 0; k < 16; ++k) corr += sc[k] * y[b].bsums[k];
        const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].hmask));
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h) {
            const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs + 32 * h));
            for (int j = 0; j < 4; ++j) {
                const int k = 8 * h + 2 * j;
                const __m256i hi = _mm256_slli_epi16(_mm256_and_si256(shr16(hm, 4 * h + j), m1), 2);
                const __m256i q = _mm256_or_si256(_mm256_and_si256(shr16(qv, 2 * j), m3), hi);
                const __m256i p = _mm256_maddubs_epi16(q, load_q8(y[b].qs + 16 * k));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scales_pair(sc[k], sc[k + 1])));
            }
        }
        s += (h2f(x[b].d) * y[b].d) * static_cast<float>(hsum_i32(sumi) - 4 * corr);
    }
    return s;
}

template <bool High, class Block>
inline float vec_dot_q45_k(int64_t n, const void* w, const void* a) {
    const Block* x = static_cast<const Block*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m1 = _mm256_set1_epi8(1);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int sc[8], mn[8];
        int32_t summs = 0;
        for (int k = 0; k < 8; ++k) {
            scale_min_k4(k, x[b].scales, sc[k], mn[k]);
            summs += mn[k] * (y[b].bsums[2 * k] + y[b].bsums[2 * k + 1]);
        }
        __m256i hb = _mm256_setzero_si256();
        if constexpr (High) hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const BlockQ5_K*>(x + b)->qh));
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; ++j) {
            const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs + 32 * j));
            __m256i lo = _mm256_and_si256(qv, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qv, 4), m4);
            if constexpr (High) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(shr16(hb, 2 * j), m1), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(shr16(hb, 2 * j + 1), m1), 4));
            }
            const __m256i p0 = _mm256_maddubs_epi16(lo, load_q8(y[b].qs + 64 * j));
            const __m256i p1 = _mm256_maddubs_epi16(hi, load_q8(y[b].qs + 64 * j + 32));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p0, _mm256_set1_epi16(static_cast<int16_t>(sc[2 * j]))));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p1, _mm256_set1_epi16(static_cast<int16_t>(sc[2 * j + 1]))));
        }
        const float d = y[b].d * h2f(x[b].d);
        const float dmin = y[b].d * h2f(x[b].dmin);
        s += d * static_cast<float>(hsum_i32(sumi)) - dmin * static_cast<float>(summs);
    }
    return s;
}
inline float vec_dot_q4_k(int64_t n, const void* w, const void* a) { return vec_dot_q45_k<false, BlockQ4_K>(n, w, a); }
inline float vec_dot_q5_k(int64_t n, const void* w, const void* a) { return vec_dot_q45_k<true, BlockQ5_K>(n, w, a); }

inline float vec_dot_q6_k(int64_t n, const void* w, const void* a) {
    const BlockQ6_K* x = static_cast<const BlockQ6_K*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const int8_t* sc = x[b].scales;
        // Codes are stored as q + 32 (0..63): take 32 * sum(scale * a) back out.
        int32_t corr = 0;
        for (int k = 0; k < 16; ++k) corr += sc[k] * y[b].bsums[k];
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h) {
            const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qh + 32 * h));
            for (int g = 0; g < 4; ++g) {
                const int k = 8 * h + 2 * g;
                const __m256i lo = (g & 1) ? l1 : l0;
                const __m256i nib = g < 2 ? _mm256_and_si256(lo, m4) : _mm256_and_si256(_mm256_srli_epi16(lo, 4), m4);
                const __m256i q = _mm256_or_si256(nib, _mm256_slli_epi16(_mm256_and_si256(shr16(qh, 2 * g), m3), 4));
                const __m256i p = _mm256_maddubs_epi16(q, load_q8(y[b].qs + 16 * k));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scales_pair(sc[k], sc[k + 1])));
            }
        }
        s += (h2f(x[b].d) * y[b].d) * static_cast<float>(hsum_i32(sumi) - 32 * corr);
    }
    return s;
}

inline VecDotFn vec_dot_fn(Type wt) {
    switch (wt) {
        case Type::F32: return vec_dot_f32;
        case Type::F16: return vec_dot_f16;
        case Type::BF16: return vec_dot_bf16;
        case Type::Q8_0: return vec_dot_q8_0;
        case Type::Q4_0: return vec_dot_q4_0;
        case Type::Q4_1: return vec_dot_q4_1;
        case Type::Q5_0: return vec_dot_q5_0;
        case Type::Q5_1: return vec_dot_q5_1;
        case Type::IQ4_NL: return vec_dot_iq4_nl;
        case Type::Q2_K: return vec_dot_q2_k;
        case Type::Q3_K: return vec_dot_q3_k;
        case Type::Q4_K: return vec_dot_q4_k;
        case Type::Q5_K: return vec_dot_q5_k;
        case Type::Q6_K: return vec_dot_q6_k;
        default: return nullptr;
    }
}

inline float vec_dot(Type wt, int64_t n, const void* w, const void* a) {
    VecDotFn f = vec_dot_fn(wt);
    MINIGPT_ASSERT(f != nullptr);
    return f ? f(n, w, a) : 0.0f;
}

inline float dot_f32(const float* a, const float* b, int64_t n) { return vec_dot_f32(n, a, b); }

inline void axpy_f32(int64_t n, float a, const float* x, float* y) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] += a * x[i];
}

inline void scale_f32(int64_t n, float a, float* y) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(va, _mm256_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] *= a;
}

// ---------------------------------------------------------------------------
// Four weight rows against one activation row at once: each activation block
// is loaded and prepared once for four rows.
// ---------------------------------------------------------------------------
inline void dot4_f32(int64_t n, const uint8_t* w, size_t ws, const float* y, float* out) {
    const float* x0 = reinterpret_cast<const float*>(w);
    const float* x1 = reinterpret_cast<const float*>(w + ws);
    const float* x2 = reinterpret_cast<const float*>(w + 2 * ws);
    const float* x3 = reinterpret_cast<const float*>(w + 3 * ws);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(y + i);
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + i), v, s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + i), v, s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + i), v, s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + i), v, s3);
    }
    float r0 = hsum(s0), r1 = hsum(s1), r2 = hsum(s2), r3 = hsum(s3);
    for (; i < n; ++i) {
        r0 += x0[i] * y[i];
        r1 += x1[i] * y[i];
        r2 += x2[i] * y[i];
        r3 += x3[i] * y[i];
    }
    out[0] = r0, out[1] = r1, out[2] = r2, out[3] = r3;
}

template <bool Q4>
inline void dot4_q(int64_t n, const uint8_t* w, size_t ws, const BlockQ8_0* y, float* out) {
    const int64_t nb = n / 32;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < nb; ++b) {
        const __m256i av = load_q8(y[b].qs);
        const float da = h2f(y[b].d);
        __m256 acc[4] = {s0, s1, s2, s3};
        MINIGPT_UNROLL(4)
        for (int k = 0; k < 4; ++k) {
            const uint8_t* row = w + k * ws;
            __m256i xv;
            float dw;
            if constexpr (Q4) {
                const BlockQ4_0* xb = reinterpret_cast<const BlockQ4_0*>(row) + b;
                xv = unpack_q4_0(xb->qs);
                dw = h2f(xb->d);
            } else {
                const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(row) + b;
                xv = load_q8(xb->qs);
                dw = h2f(xb->d);
            }
            const __m256i p = _mm256_madd_epi16(
                _mm256_maddubs_epi16(_mm256_sign_epi8(xv, xv), _mm256_sign_epi8(av, xv)), ones);
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * da), _mm256_cvtepi32_ps(p), acc[k]);
        }
        s0 = acc[0], s1 = acc[1], s2 = acc[2], s3 = acc[3];
    }
    out[0] = hsum(s0), out[1] = hsum(s1), out[2] = hsum(s2), out[3] = hsum(s3);
}

inline void matmul_rows(Type wt, const void* W, size_t w_row_bytes, int64_t n, int64_t r0, int64_t r1,
                        const void* A, size_t a_row_bytes, int64_t m, float* Y, int64_t ldy, int64_t ahead_end = 0) {
    VecDotFn dot = vec_dot_fn(wt);
    if (!dot || r1 <= r0 || m <= 0) return;
    // One activation row: row by row (one stream through memory reads at full
    // bandwidth; four interleaved rows do not). Several: four rows share each
    // activation load.
    if (m == 1 || (wt != Type::F32 && wt != Type::Q8_0 && wt != Type::Q4_0)) {
        matmul_rows_generic(dot, W, w_row_bytes, n, r0, r1, A, a_row_bytes, m, Y, ldy, prefetch_pays(wt), ahead_end);
        return;
    }
    const uint8_t* w = static_cast<const uint8_t*>(W);
    const uint8_t* act = static_cast<const uint8_t*>(A);
    int64_t tile = w_row_bytes ? static_cast<int64_t>((64u << 10) / w_row_bytes) : 64;
    tile = std::max<int64_t>(4, std::min<int64_t>(64, tile & ~int64_t(3)));
    float out[4];
    for (int64_t rt = r0; rt < r1; rt += tile) {
        const int64_t re = std::min(r1, rt + tile);
        for (int64_t j = 0; j < m; ++j) {
            const uint8_t* aj = act + static_cast<size_t>(j) * a_row_bytes;
            float* yj = Y + j * ldy;
            int64_t r = rt;
            for (; r + 4 <= re; r += 4) {
                const uint8_t* wr = w + static_cast<size_t>(r) * w_row_bytes;
                if (wt == Type::F32) dot4_f32(n, wr, w_row_bytes, reinterpret_cast<const float*>(aj), out);
                else if (wt == Type::Q8_0) dot4_q<false>(n, wr, w_row_bytes, reinterpret_cast<const BlockQ8_0*>(aj), out);
                else dot4_q<true>(n, wr, w_row_bytes, reinterpret_cast<const BlockQ8_0*>(aj), out);
                yj[r] = out[0], yj[r + 1] = out[1], yj[r + 2] = out[2], yj[r + 3] = out[3];
            }
            for (; r < re; ++r) yj[r] = dot(n, w + static_cast<size_t>(r) * w_row_bytes, aj);
        }
    }
}

}  // namespace avx2
}  // namespace detail
MINIGPT_NS_END
#endif  // MINIGPT_AVX2

// ---- kernels_avx512.hpp ----
// kernels_avx512: AVX-512 (F/BW/VL/DQ) versions of the scalar kernels, using
// VNNI integer dot products and BF16 dot products when the target has them.
// Conversions use the zero-masking forms with a full mask: the plain forms
// start from an "undefined" register that g++ 12 reports as uninitialized.

#if defined(MINIGPT_AVX512)
#include <immintrin.h>

MINIGPT_NS_BEGIN
namespace detail {
namespace avx512 {

// Horizontal sum through memory (the compiler turns it into register moves);
// this avoids a spurious -Wuninitialized that g++ 12 gives for the reduce intrinsic.
inline float hsum(__m512 v) {
    alignas(64) float t[16];
    _mm512_store_ps(t, v);
    return avx2::hsum(_mm256_add_ps(_mm256_load_ps(t), _mm256_load_ps(t + 8)));
}

inline __mmask16 tail_mask16(int64_t left) {
    return left >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
}

inline float vec_dot_f32(int64_t n, const void* w, const void* a) {
    const float* x = static_cast<const float*>(w);
    const float* y = static_cast<const float*>(a);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), _mm512_loadu_ps(y + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), _mm512_loadu_ps(y + i + 48), s3);
    }
    for (; i < n; i += 16) {
        const __mmask16 k = tail_mask16(n - i);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, x + i), _mm512_maskz_loadu_ps(k, y + i), s0);
    }
    return hsum(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

inline __m512 load_f16(__mmask16 k, const uint16_t* p) { return _mm512_maskz_cvtph_ps(__mmask16(0xFFFF), _mm256_maskz_loadu_epi16(k, p)); }
inline __m512 load_f16(const uint16_t* p) {
    return _mm512_maskz_cvtph_ps(__mmask16(0xFFFF), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

inline float vec_dot_f16(int64_t n, const void* w, const void* a) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(load_f16(x + i), load_f16(y + i), s0);
        s1 = _mm512_fmadd_ps(load_f16(x + i + 16), load_f16(y + i + 16), s1);
        s2 = _mm512_fmadd_ps(load_f16(x + i + 32), load_f16(y + i + 32), s2);
        s3 = _mm512_fmadd_ps(load_f16(x + i + 48), load_f16(y + i + 48), s3);
    }
    for (; i < n; i += 16) {
        const __mmask16 k = tail_mask16(n - i);
        s0 = _mm512_fmadd_ps(load_f16(k, x + i), load_f16(k, y + i), s0);
    }
    return hsum(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

#if defined(__AVX512BF16__)
// 32 bf16 pairs per instruction; the products are exact, the pair sums round once.
inline __m512bh as_bh(__m512i v) { return (__m512bh)v; }

inline float vec_dot_bf16(int64_t n, const void* w, const void* a) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_dpbf16_ps(s0, as_bh(_mm512_loadu_si512(x + i)), as_bh(_mm512_loadu_si512(y + i)));
        s1 = _mm512_dpbf16_ps(s1, as_bh(_mm512_loadu_si512(x + i + 32)), as_bh(_mm512_loadu_si512(y + i + 32)));
    }
    for (; i < n; i += 32) {
        const int64_t left = n - i;
        const __mmask32 k = left >= 32 ? __mmask32(0xFFFFFFFFu) : static_cast<__mmask32>((1u << left) - 1u);
        s0 = _mm512_dpbf16_ps(s0, as_bh(_mm512_maskz_loadu_epi16(k, x + i)), as_bh(_mm512_maskz_loadu_epi16(k, y + i)));
    }
    return hsum(_mm512_add_ps(s0, s1));
}
#else
inline __m512 load_bf16(__mmask16 k, const uint16_t* p) {
    return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(__mmask16(0xFFFF), _mm512_maskz_cvtepu16_epi32(__mmask16(0xFFFF), _mm256_maskz_loadu_epi16(k, p)), 16));
}

inline float vec_dot_bf16(int64_t n, const void* w, const void* a) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(load_bf16(0xFFFF, x + i), load_bf16(0xFFFF, y + i), s0);
        s1 = _mm512_fmadd_ps(load_bf16(0xFFFF, x + i + 16), load_bf16(0xFFFF, y + i + 16), s1);
    }
    for (; i < n; i += 16) {
        const __mmask16 k = tail_mask16(n - i);
        s0 = _mm512_fmadd_ps(load_bf16(k, x + i), load_bf16(k, y + i), s0);
    }
    return hsum(_mm512_add_ps(s0, s1));
}
#endif

// Two 32-byte halves into one 512-bit register.
inline __m512i join(__m256i lo, __m256i hi) {
    return _mm512_maskz_inserti64x4(__mmask8(0xFF), _mm512_castsi256_si512(lo), hi, 1);
}

// Sums of products of unsigned bytes u (0..255) and signed bytes s, 4 at a time,
// into 16 int32 lanes.
inline __m512i dot_u8s8(__m512i u, __m512i s) {
#if defined(__AVX512VNNI__)
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s);
#else
    return _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1));
#endif
}

// Signed x signed byte products: |x| times y with x's sign.
inline __m512i dot_i8(__m512i x, __m512i y) {
    const __m512i ax = _mm512_abs_epi8(x);
    const __m512i sy = _mm512_mask_sub_epi8(y, _mm512_movepi8_mask(x), _mm512_setzero_si512(), y);
    return dot_u8s8(ax, sy);
}

// The 32 nibbles of a Q4_0 block, unsigned (0..15), in element order.
inline __m256i nibbles_q4_0(const uint8_t* qs) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i lo_mask = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), lo_mask), _mm_and_si128(b, lo_mask));
}

inline __m256i load_q8(const int8_t* qs) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs)); }

// Per-lane scales: lanes 0..7 get d0 (first block), lanes 8..15 get d1.
inline __m512 scales2(float d0, float d1) {
    return _mm512_mask_blend_ps(__mmask16(0xFF00), _mm512_set1_ps(d0), _mm512_set1_ps(d1));
}

inline float vec_dot_q8_0(int64_t n, const void* w, const void* a) {
    const BlockQ8_0* x = static_cast<const BlockQ8_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    const int64_t nb = n / QK8_0;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        const __m512i p0 = dot_i8(join(load_q8(x[b].qs), load_q8(x[b + 1].qs)), join(load_q8(y[b].qs), load_q8(y[b + 1].qs)));
        const __m512i p1 =
            dot_i8(join(load_q8(x[b + 2].qs), load_q8(x[b + 3].qs)), join(load_q8(y[b + 2].qs), load_q8(y[b + 3].qs)));
        const __m512 d0 = scales2(avx2::h2f(x[b].d) * avx2::h2f(y[b].d),
                                  avx2::h2f(x[b + 1].d) * avx2::h2f(y[b + 1].d));
        const __m512 d1 = scales2(avx2::h2f(x[b + 2].d) * avx2::h2f(y[b + 2].d),
                                  avx2::h2f(x[b + 3].d) * avx2::h2f(y[b + 3].d));
        acc0 = _mm512_fmadd_ps(d0, _mm512_maskz_cvtepi32_ps(__mmask16(0xFFFF), p0), acc0);
        acc1 = _mm512_fmadd_ps(d1, _mm512_maskz_cvtepi32_ps(__mmask16(0xFFFF), p1), acc1);
    }
    float s = hsum(_mm512_add_ps(acc0, acc1));
    // 0..3 leftover blocks with 256-bit integer dots.
    __m256 acc = _mm256_setzero_ps();
    for (; b < nb; ++b) {
        const __m256 d = _mm256_set1_ps(avx2::h2f(x[b].d) * avx2::h2f(y[b].d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(avx2::dot_i8(load_q8(x[b].qs), load_q8(y[b].qs))), acc);
    }
    return s + avx2::hsum(acc);
}

// The nibbles of two Q4_0 blocks in element order (block b: low nibbles then
// high nibbles, then block b + 1), unsigned: both 16-byte halves are broadcast
// to two 128-bit lanes each, and lanes 1 and 3 take the bytes shifted right by 4.
inline __m512i nibbles2_q4_0(const uint8_t* qs0, const uint8_t* qs1) {
    const __m512i v = _mm512_mask_broadcast_i32x4(_mm512_maskz_broadcast_i32x4(__mmask16(0xFFFF), _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs0))),
                                                  __mmask16(0xFF00), _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs1)));
    return _mm512_and_si512(_mm512_mask_blend_epi64(__mmask8(0xCC), v, _mm512_srli_epi16(v, 4)), _mm512_set1_epi8(0x0F));
}

inline float vec_dot_q4_0(int64_t n, const void* w, const void* a) {
    const BlockQ4_0* x = static_cast<const BlockQ4_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    const int64_t nb = n / QK4_0;
    const __m512i eight = _mm512_set1_epi8(8);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t b = 0;
    // sum((q - 8) * a) = sum(q * a) - sum(8 * a), with q unsigned: no sign fix-up needed.
    for (; b + 4 <= nb; b += 4) {
        const __m512i a0 = join(load_q8(y[b].qs), load_q8(y[b + 1].qs));
        const __m512i a1 = join(load_q8(y[b + 2].qs), load_q8(y[b + 3].qs));
        const __m512i q0 = nibbles2_q4_0(x[b].qs, x[b + 1].qs);
        const __m512i q1 = nibbles2_q4_0(x[b + 2].qs, x[b + 3].qs);
        const __m512i p0 = _mm512_sub_epi32(dot_u8s8(q0, a0), dot_u8s8(eight, a0));
        const __m512i p1 = _mm512_sub_epi32(dot_u8s8(q1, a1), dot_u8s8(eight, a1));
        const __m512 d0 = scales2(avx2::h2f(x[b].d) * avx2::h2f(y[b].d),
                                  avx2::h2f(x[b + 1].d) * avx2::h2f(y[b + 1].d));
        const __m512 d1 = scales2(avx2::h2f(x[b + 2].d) * avx2::h2f(y[b + 2].d),
                                  avx2::h2f(x[b + 3].d) * avx2::h2f(y[b + 3].d));
        acc0 = _mm512_fmadd_ps(d0, _mm512_maskz_cvtepi32_ps(__mmask16(0xFFFF), p0), acc0);
        acc1 = _mm512_fmadd_ps(d1, _mm512_maskz_cvtepi32_ps(__mmask16(0xFFFF), p1), acc1);
    }
    float s = hsum(_mm512_add_ps(acc0, acc1));
    __m256 acc = _mm256_setzero_ps();
    for (; b < nb; ++b) {
        const __m256 d = _mm256_set1_ps(avx2::h2f(x[b].d) * avx2::h2f(y[b].d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(avx2::dot_i8(avx2::unpack_q4_0(x[b].qs), load_q8(y[b].qs))), acc);
    }
    return s + avx2::hsum(acc);
}

// Q4_K / Q5_K: a pair of sub-blocks (64 values: low nibbles, then high) per
// 512-bit step; 16-bit products scaled by the sub-block scales in madd, one
// float update per super-block, one horizontal sum at the end.
// The 8 six-bit scales (bytes 0..7 of the result) and mins (bytes 8..15) of a
// Q4_K / Q5_K super-block, unpacked four at a time (same fields as scale_min_k4).
inline void scales_mins_k4(const uint8_t* q, uint8_t out[16]) {
    uint32_t u[3];
    std::memcpy(u, q, 12);
    const uint32_t low6 = 0x3F3F3F3Fu, low4 = 0x0F0F0F0Fu, low2 = 0x03030303u;
    const uint32_t v[4] = {u[0] & low6, (u[2] & low4) | (((u[0] >> 6) & low2) << 4), u[1] & low6,
                           ((u[2] >> 4) & low4) | (((u[1] >> 6) & low2) << 4)};
    std::memcpy(out, v, 16);
}

// Q4_K / Q5_K: a pair of sub-blocks (64 values: low nibbles, then high) per
// 512-bit step; 16-bit products scaled by the sub-block scales in madd, one
// float update per super-block, one horizontal sum at the end.
template <bool High, class Block>
inline float vec_dot_q45_k(int64_t n, const void* w, const void* a) {
    const Block* x = static_cast<const Block*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m512 acc = _mm512_setzero_ps();
    __m256 acc_min = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; ++b) {
        alignas(16) uint8_t sm[16];
        scales_mins_k4(x[b].scales, sm);
        // sum over sub-blocks of min * (sum of its 32 activations), from the 16-value sums.
        const __m128i mins8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(sm + 8));
        const __m256i mins16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mins8, mins8));
        const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].bsums));
        acc_min = _mm256_fmadd_ps(_mm256_set1_ps(y[b].d * avx2::h2f(x[b].dmin)), _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mins16)), acc_min);
        __m256i hb = _mm256_setzero_si256();
        if constexpr (High) hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const BlockQ5_K*>(x + b)->qh));
        __m512i sumi = _mm512_setzero_si512();
        for (int j = 0; j < 4; ++j) {
            const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs + 32 * j));
            __m256i lo = _mm256_and_si256(qv, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qv, 4), m4);
            if constexpr (High) {
                const __m256i h16 = _mm256_set1_epi8(0x10);
                lo = _mm256_or_si256(lo, _mm256_maskz_mov_epi8(_mm256_test_epi8_mask(hb, _mm256_set1_epi8(static_cast<char>(1u << (2 * j)))), h16));
                hi = _mm256_or_si256(hi, _mm256_maskz_mov_epi8(_mm256_test_epi8_mask(hb, _mm256_set1_epi8(static_cast<char>(2u << (2 * j)))), h16));
            }
            const __m512i p = _mm512_maddubs_epi16(join(lo, hi), _mm512_loadu_si512(y[b].qs + 64 * j));
            const __m512i scv = _mm512_mask_blend_epi16(__mmask32(0xFFFF0000u), _mm512_set1_epi16(sm[2 * j]), _mm512_set1_epi16(sm[2 * j + 1]));
            sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(p, scv));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(y[b].d * avx2::h2f(x[b].d)), _mm512_maskz_cvtepi32_ps(__mmask16(0xFFFF), sumi), acc);
    }
    return hsum(acc) - avx2::hsum(acc_min);
}
inline float vec_dot_q4_k(int64_t n, const void* w, const void* a) { return vec_dot_q45_k<false, BlockQ4_K>(n, w, a); }
inline float vec_dot_q5_k(int64_t n, const void* w, const void* a) { return vec_dot_q45_k<true, BlockQ5_K>(n, w, a); }

// Q4_K / Q5_K weight rows against one Q8_K activation row. The activation is
// rearranged once for all rows: a 64-byte load of a weight's nibbles holds
// sub-blocks 4h, 4h+2 in its low nibbles and 4h+1, 4h+3 in its high ones, so
// the activation bytes are stored in that order, with each sub-block's sum for
// the min term. Per super-block and row: the scales and mins unpacked with
// vector shifts, two maddubs and two word dot products (dpwssd, the sub-block
// scale per lane) per 128 values, one float update.
constexpr int64_t kKBlocks = 64;  // longest row of the matvec path: 64 super-blocks

struct ActK {
    __m512i a[4];  // per half h: the bytes under the low nibbles, then under the high
    __m128i sums;  // the 8 sub-block sums (int16)
    float d;
};

// Scales (bytes 0..7) and mins (bytes 8..15) of a Q4_K / Q5_K super-block: the
// four 32-bit words of scales_mins_k4 in vector lanes.
inline __m128i scales_mins_k4v(const uint8_t* q) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));  // 12 bytes + 4 of the block after them
    __m128i lo = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0));           // u0 u2 u1 u2
    lo = _mm_and_si128(_mm_srlv_epi32(lo, _mm_setr_epi32(0, 0, 0, 4)), _mm_setr_epi32(0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F));
    __m128i hi = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0));           // u0 u0 u1 u1: bits 6-7 to 4-5
    hi = _mm_and_si128(_mm_srli_epi32(hi, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
    return _mm_or_si128(lo, hi);
}

inline __m512i dot_i16_acc(__m512i acc, __m512i a, __m512i b) {
#if defined(__AVX512VNNI__)
    return _mm512_dpwssd_epi32(acc, a, b);
#else
    return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
#endif
}

template <bool High, class Block>
inline void matvec_q45_k(int64_t n, const uint8_t* w, size_t ws, int64_t r0, int64_t r1, const BlockQ8_K* y,
                         float* out) {
    const int64_t nb = n / QK_K;
    if (nb > kKBlocks) {
        matmul_rows_generic(vec_dot_q45_k<High, Block>, w, ws, n, r0, r1, y, 0, 1, out, 0,
                            prefetch_pays(High ? Type::Q5_K : Type::Q4_K));
        return;
    }
    ActK act[kKBlocks];
    for (int64_t b = 0; b < nb; ++b) {
        for (int h = 0; h < 2; ++h) {
            const int8_t* q = y[b].qs + 128 * h;
            act[b].a[2 * h] = join(load_q8(q), load_q8(q + 64));
            act[b].a[2 * h + 1] = join(load_q8(q + 32), load_q8(q + 96));
        }
        const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[b].bsums));
        act[b].sums = _mm256_cvtepi32_epi16(_mm256_madd_epi16(bs, _mm256_set1_epi16(1)));
        act[b].d = y[b].d;
    }
    // Word permutes that spread the scales of the sub-blocks under each vector.
    __m512i idx[4];
    for (int h = 0; h < 2; ++h) {
        for (int k = 0; k < 2; ++k)
            idx[2 * h + k] = _mm512_mask_blend_epi16(__mmask32(0xFFFF0000u), _mm512_set1_epi16(static_cast<short>(4 * h + k)),
                                                     _mm512_set1_epi16(static_cast<short>(4 * h + k + 2)));
    }
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int64_t r = r0; r < r1; ++r) {
        const Block* x = reinterpret_cast<const Block*>(w + static_cast<size_t>(r) * ws);
        __m512 acc = _mm512_setzero_ps();
        __m128 acc_min = _mm_setzero_ps();
        for (int64_t b = 0; b < nb; ++b) {
            const ActK& A = act[b];
            const __m128i sm = scales_mins_k4v(x[b].scales);
            const __m512i sc = _mm512_zextsi128_si512(_mm_cvtepu8_epi16(sm));
            const __m128i mins = _mm_cvtepu8_epi16(_mm_srli_si128(sm, 8));
            uint32_t dbits;
            std::memcpy(&dbits, &x[b].d, 4);  // d, dmin
            const __m128 dd = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(dbits))), _mm_set1_ps(A.d));
            acc_min = _mm_fmadd_ps(_mm_shuffle_ps(dd, dd, 0x55), _mm_cvtepi32_ps(_mm_madd_epi16(mins, A.sums)), acc_min);
            __m512i hb = _mm512_setzero_si512();
            if constexpr (High) hb = _mm512_maskz_broadcast_i64x4(__mmask8(0xFF), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const BlockQ5_K*>(x + b)->qh)));
            __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
            for (int h = 0; h < 2; ++h) {
                const __m512i q = _mm512_loadu_si512(x[b].qs + 64 * h);
                __m512i lo = _mm512_and_si512(q, m4);
                __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
                if constexpr (High) {
                    // bits 4h, 4h+2 (low nibbles of the two halves) and 4h+1, 4h+3 (high ones)
                    const __m512i bl = _mm512_mask_blend_epi8(__mmask64(0xFFFFFFFF00000000ull), _mm512_set1_epi8(static_cast<char>(1u << (4 * h))),
                                                              _mm512_set1_epi8(static_cast<char>(1u << (4 * h + 2))));
                    const __m512i sixteen = _mm512_set1_epi8(0x10);
                    lo = _mm512_mask_add_epi8(lo, _mm512_test_epi8_mask(hb, bl), lo, sixteen);
                    hi = _mm512_mask_add_epi8(hi, _mm512_test_epi8_mask(hb, _mm512_add_epi8(bl, bl)), hi, sixteen);
                }
                s0 = dot_i16_acc(s0, _mm512_maddubs_epi16(lo, A.a[2 * h]), _mm512_permutexvar_epi16(idx[2 * h], sc));
                s1 = dot_i16_acc(s1, _mm512_maddubs_epi16(hi, A.a[2 * h + 1]), _mm512_permutexvar_epi16(idx[2 * h + 1], sc));
            }
            acc = _mm512_fmadd_ps(_mm512_maskz_broadcastss_ps(__mmask16(0xFFFF), dd), _mm512_maskz_cvtepi32_ps(__mmask16(0xFFFF), _mm512_add_epi32(s0, s1)), acc);
        }
        const __m128 m2 = _mm_add_ps(acc_min, _mm_movehl_ps(acc_min, acc_min));
        out[r] = hsum(acc) - _mm_cvtss_f32(_mm_add_ss(m2, _mm_movehdup_ps(m2)));
    }
}

inline VecDotFn vec_dot_fn(Type wt) {
    switch (wt) {
        case Type::F32: return vec_dot_f32;
        case Type::F16: return vec_dot_f16;
        case Type::BF16: return vec_dot_bf16;
        case Type::Q8_0: return vec_dot_q8_0;
        case Type::Q4_0: return vec_dot_q4_0;
        case Type::Q4_K: return vec_dot_q4_k;
        case Type::Q5_K: return vec_dot_q5_k;
        default: return avx2::vec_dot_fn(wt);  // the 256-bit kernels (nullptr if unsupported)
    }
}

inline float vec_dot(Type wt, int64_t n, const void* w, const void* a) {
    VecDotFn f = vec_dot_fn(wt);
    MINIGPT_ASSERT(f != nullptr);
    return f ? f(n, w, a) : 0.0f;
}

inline float dot_f32(const float* a, const float* b, int64_t n) { return vec_dot_f32(n, a, b); }

inline void axpy_f32(int64_t n, float a, const float* x, float* y) {
    const __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        const __mmask16 k = tail_mask16(n - i);
        _mm512_mask_storeu_ps(y + i, k, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(k, x + i), _mm512_maskz_loadu_ps(k, y + i)));
    }
}

inline void scale_f32(int64_t n, float a, float* y) {
    const __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(va, _mm512_loadu_ps(y + i)));
    if (i < n) {
        const __mmask16 k = tail_mask16(n - i);
        _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(va, _mm512_maskz_loadu_ps(k, y + i)));
    }
}

// ---------------------------------------------------------------------------
// Four weight rows against one activation row: the activation is loaded once
// per step and used four times.
// ---------------------------------------------------------------------------
inline void dot4_f32(int64_t n, const uint8_t* w, size_t ws, const float* y, float* out) {
    const float* x0 = reinterpret_cast<const float*>(w);
    const float* x1 = reinterpret_cast<const float*>(w + ws);
    const float* x2 = reinterpret_cast<const float*>(w + 2 * ws);
    const float* x3 = reinterpret_cast<const float*>(w + 3 * ws);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = tail_mask16(n - i);
        const __m512 v = _mm512_maskz_loadu_ps(k, y + i);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, x0 + i), v, s0);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, x1 + i), v, s1);
        s2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, x2 + i), v, s2);
        s3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, x3 + i), v, s3);
    }
    out[0] = hsum(s0), out[1] = hsum(s1);
    out[2] = hsum(s2), out[3] = hsum(s3);
}

// Q8_0 / Q4_0 weights, two blocks per step.
template <bool Q4>
inline __m512i load2_w(const uint8_t* row, int64_t b) {
    if constexpr (Q4) {
        const BlockQ4_0* x = reinterpret_cast<const BlockQ4_0*>(row) + b;
        return join(nibbles_q4_0(x[0].qs), nibbles_q4_0(x[1].qs));
    }
    const BlockQ8_0* x = reinterpret_cast<const BlockQ8_0*>(row) + b;
    return join(load_q8(x[0].qs), load_q8(x[1].qs));
}
template <bool Q4>
inline float load_wd(const uint8_t* row, int64_t b) {
    if constexpr (Q4) return avx2::h2f((reinterpret_cast<const BlockQ4_0*>(row) + b)->d);
    return avx2::h2f((reinterpret_cast<const BlockQ8_0*>(row) + b)->d);
}

template <bool Q4>
inline void dot4_q(int64_t n, const uint8_t* w, size_t ws, const BlockQ8_0* y, float* out) {
    const int64_t nb = n / 32;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    const __m512i eight = _mm512_set1_epi8(8);
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const __m512i av = join(load_q8(y[b].qs), load_q8(y[b + 1].qs));
        const float da0 = avx2::h2f(y[b].d), da1 = avx2::h2f(y[b + 1].d);
        // For Q4_0 weights, (q - 8) * a = q * a - 8 * a; 8 * a is shared by the four rows.
        __m512i a8 = _mm512_setzero_si512();
        if constexpr (Q4) a8 = dot_u8s8(eight, av);
        MINIGPT_UNROLL(4)
        for (int k = 0; k < 4; ++k) {
            const uint8_t* row = w + k * ws;
            const __m512i xv = load2_w<Q4>(row, b);
            __m512i p;
            if constexpr (Q4) {
                p = _mm512_sub_epi32(dot_u8s8(xv, av), a8);
            } else {
                p = dot_i8(xv, av);
            }
            const __m512 d = scales2(load_wd<Q4>(row, b) * da0, load_wd<Q4>(row, b + 1) * da1);
            acc[k] = _mm512_fmadd_ps(d, _mm512_maskz_cvtepi32_ps(__mmask16(0xFFFF), p), acc[k]);
        }
    }
    MINIGPT_UNROLL(4)
    for (int k = 0; k < 4; ++k) out[k] = hsum(acc[k]);
    if (b < nb) {  // one leftover block
        MINIGPT_UNROLL(4)
        for (int k = 0; k < 4; ++k) {
            const uint8_t* row = w + k * ws;
            const float d = load_wd<Q4>(row, b) * avx2::h2f(y[b].d);
            __m256i xv;
            if constexpr (Q4) xv = avx2::unpack_q4_0((reinterpret_cast<const BlockQ4_0*>(row) + b)->qs);
            else xv = load_q8((reinterpret_cast<const BlockQ8_0*>(row) + b)->qs);
            out[k] += d * avx2::hsum(_mm256_cvtepi32_ps(avx2::dot_i8(xv, load_q8(y[b].qs))));
        }
    }
}

// Q8_0 / Q5_0 / Q4_0 weight rows against one Q8_0 activation row, and Q4_1 /
// Q5_1 rows against one Q8_1 row, two blocks per step. What depends only on
// the activation is computed once for all rows: its 64 bytes per pair of
// blocks, the two scales, and a correction that the integer dot product
// starts from. The weight bytes enter vpdpbusd unsigned: Q4_0 nibbles q are,
// and (q - 8) * a = q * a - 8 * a; so are Q5_0 codes (a nibble plus 16 where
// the block's 32 high bits have a one, one bit per byte: a byte-masked add),
// with (q - 16) * a; Q8_0 bytes get their sign bit flipped, and
// (w + 128) * a = w * a + 128 * a. The -8a, -16a or -128a of each 4-byte lane
// is the starting value. Q4_1 / Q5_1 codes need no correction: their value is
// d * q + m, so a block adds d * da * sum(q * a) + m * s, with s = da * sum(a)
// from the Q8_1 block, m * s / 8 in each of its 8 lanes. The weight scales
// (and minima) of a pair are spread over lanes 0..7 and 8..15 by one word
// permute. An odd number of blocks ends in a half pair: the block against the
// activation block and zeros, its scale in lanes 0..7 and zeros above.
// Rows longer than kPairs * 64 values use the vec_dot kernels.
inline constexpr int64_t kPairs = 64;  // (inline: only VNNI builds read it)

// Words k and sizeof(Block) / 2 + k of v (the scales of a pair at v for k = 0,
// the minima for k = 1) over lanes 0..7 and 8..15.
template <class Block, unsigned k>
inline __m512 pair_halves_of(__m512i v) {
    constexpr unsigned w1 = sizeof(Block) / 2 + k;  // word index in the second block
    static_assert(sizeof(Block) % 2 == 0 && w1 < 32, "both words within 64 bytes");
    const __m512i idx = _mm512_mask_blend_epi16(__mmask32(0xFF00), _mm512_set1_epi16(k), _mm512_set1_epi16(w1));
    return _mm512_maskz_cvtph_ps(__mmask16(0xFFFF), _mm512_maskz_extracti64x4_epi64(__mmask8(0xF), _mm512_permutexvar_epi16(idx, v), 0));
}

// One pair of weight blocks (or a half pair: the block alone) as the kernel
// reads it: codes() gives the unsigned bytes of the first block in lanes 0..7
// and of the second in lanes 8..15, scales() and mins() the two scales and
// minima (zero above lane 7 for a half pair, where the activation is zero
// too).
//
// A pair of 4- or 5-bit blocks (36 to 48 bytes) is one masked load when the
// CPU has byte permutes (VBMI): one vpermb puts each block's 16 nibble bytes
// in two 128-bit lanes, a shift of the second lane by 4 and a mask of 0x0F
// make them the codes in element order, and the scales come from the same
// register. The masked load reads no byte past the pair (or the block).
// Otherwise, and for Q8_0 (68 bytes), the blocks' parts are loaded apart.
template <class Block, bool half>
struct PairReader {
    static constexpr bool q8 = std::is_same_v<Block, BlockQ8_0>;
    static constexpr bool q5 = std::is_same_v<Block, BlockQ5_0> || std::is_same_v<Block, BlockQ5_1>;
#if defined(__AVX512VBMI__)
    static constexpr bool one_load = !q8;
#else
    static constexpr bool one_load = false;
#endif
    const Block* x;
    __m512i v;  // the pair's bytes (one_load)

    explicit PairReader(const Block* x_) : x(x_) {
        if constexpr (one_load) {
            const unsigned n = (half ? 1 : 2) * sizeof(Block);
            v = _mm512_maskz_loadu_epi8(__mmask64((uint64_t(1) << n) - 1), x);
        } else {
            v = _mm512_setzero_si512();
        }
    }

    __m512i codes() const {
        const Block* x1 = half ? x : x + 1;
        if constexpr (q8) {
            return _mm512_xor_si512(join(load_q8(x->qs), load_q8(x1->qs)), _mm512_set1_epi8(static_cast<char>(0x80)));
        } else {
            __m512i lo;
            if constexpr (one_load) {
                constexpr unsigned q0 = offsetof(Block, qs), q1 = sizeof(Block) + q0;
                alignas(64) static constexpr uint8_t idx[64] = {
#define MINIGPT_IDX16(b) b, b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8, b + 9, b + 10, b + 11, b + 12, b + 13, b + 14, b + 15
                    MINIGPT_IDX16(q0), MINIGPT_IDX16(q0), MINIGPT_IDX16(q1), MINIGPT_IDX16(q1)
#undef MINIGPT_IDX16
                };
                // (zero-masking forms: see exp16)
                const __m512i bytes = _mm512_maskz_permutexvar_epi8(~__mmask64(0), _mm512_load_si512(idx), v);
                lo = _mm512_and_si512(_mm512_maskz_srlv_epi64(__mmask8(0xFF), bytes, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0)), _mm512_set1_epi8(0x0F));
            } else {
                lo = nibbles2_q4_0(x->qs, x1->qs);
            }
            if constexpr (!q5) {
                return lo;
            } else {
                uint32_t h0, h1 = 0;
                std::memcpy(&h0, x->qh, 4);
                if constexpr (!half) std::memcpy(&h1, x1->qh, 4);
                return _mm512_mask_add_epi8(lo, __mmask64(uint64_t(h0) | uint64_t(h1) << 32), lo, _mm512_set1_epi8(16));
            }
        }
    }

    // Words k of the two blocks (k = 0: the scales, 1: the minima).
    template <unsigned k>
    __m512 halves() const {
        if constexpr (half) {
            uint16_t h;
            std::memcpy(&h, reinterpret_cast<const uint16_t*>(x) + k, 2);
            return _mm512_maskz_mov_ps(__mmask16(0x00FF), _mm512_set1_ps(avx2::h2f(h)));
        } else if constexpr (one_load) {
            return pair_halves_of<Block, k>(v);
        } else {
            constexpr unsigned w1 = sizeof(Block) / 2 + k;
            return pair_halves_of<Block, k>(_mm512_maskz_loadu_epi16(__mmask32((1u << k) | (1u << w1)), x));
        }
    }
    __m512 scales() const { return halves<0>(); }
    __m512 mins() const { return halves<1>(); }
};

template <class Block> inline constexpr Type kPairType = Type::Q8_0;
template <> inline constexpr Type kPairType<BlockQ4_0> = Type::Q4_0;
template <> inline constexpr Type kPairType<BlockQ5_0> = Type::Q5_0;
template <> inline constexpr Type kPairType<BlockQ4_1> = Type::Q4_1;
template <> inline constexpr Type kPairType<BlockQ5_1> = Type::Q5_1;

template <class Block>
inline void matvec_q_pairs(int64_t n, const uint8_t* w, size_t ws, int64_t r0, int64_t r1, const void* a,
                           float* out, int64_t ahead_end) {
    constexpr Type wt = kPairType<Block>;
    VecDotFn dot = vec_dot_fn(wt);
#if defined(__AVX512VNNI__)  // (unsigned bytes up to 255 would saturate maddubs)
    constexpr bool with_min = wt == Type::Q4_1 || wt == Type::Q5_1;
    using ActBlock = std::conditional_t<with_min, BlockQ8_1, BlockQ8_0>;
    const ActBlock* y = static_cast<const ActBlock*>(a);
    const int64_t nb = n / 32, pairs = nb / 2, odd = nb % 2;
    if (pairs + odd <= kPairs) {
        __m512i act[kPairs], start[kPairs];
        __m512 da[kPairs], sa[with_min ? kPairs : 1];
        const char offset = wt == Type::Q4_0 ? 8 : wt == Type::Q5_0 ? 16 : wt == Type::Q8_0 ? static_cast<char>(0x80) : 0;
        for (int64_t p = 0; p < pairs + odd; ++p) {
            const bool half = p == pairs;
            act[p] = join(load_q8(y[2 * p].qs), half ? _mm256_setzero_si256() : load_q8(y[2 * p + 1].qs));
            start[p] = _mm512_sub_epi32(_mm512_setzero_si512(), dot_u8s8(_mm512_set1_epi8(offset), act[p]));
            da[p] = scales2(avx2::h2f(y[2 * p].d), half ? 0.0f : avx2::h2f(y[2 * p + 1].d));
            if constexpr (with_min) sa[p] = scales2(avx2::h2f(y[2 * p].s) / 8, half ? 0.0f : avx2::h2f(y[2 * p + 1].s) / 8);
        }
        RowPrefetch pf(w, ws, r0, r1, ahead_end, prefetch_pays(wt));
        for (int64_t r = r0; r < r1; ++r) {
            pf.ahead(r);
            const Block* x = reinterpret_cast<const Block*>(w + static_cast<size_t>(r) * ws);
            // Block pair p of the row into an accumulator (two accumulators
            // alternate, so that consecutive pairs do not wait on each other).
            auto pair = [&](int64_t p, __m512 acc, auto half) {
                const PairReader<Block, decltype(half)::value> pr(x + 2 * p);
                const __m512i i = _mm512_dpbusd_epi32(start[p], pr.codes(), act[p]);
                const __m512 d = _mm512_mul_ps(da[p], pr.scales());
                acc = _mm512_fmadd_ps(d, _mm512_maskz_cvtepi32_ps(__mmask16(0xFFFF), i), acc);
                if constexpr (with_min) acc = _mm512_fmadd_ps(pr.mins(), sa[p], acc);
                return acc;
            };
            __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
            int64_t p = 0;
            for (; p + 2 <= pairs; p += 2) {
                acc0 = pair(p, acc0, std::false_type());
                acc1 = pair(p + 1, acc1, std::false_type());
            }
            if (p < pairs) acc0 = pair(p, acc0, std::false_type());
            if (odd) acc1 = pair(pairs, acc1, std::true_type());
            out[r] = hsum(_mm512_add_ps(acc0, acc1));
        }
        return;
    }
#endif
    matmul_rows_generic(dot, w, ws, n, r0, r1, a, 0, 1, out, 0, prefetch_pays(wt), ahead_end);
}

inline void matmul_rows(Type wt, const void* W, size_t w_row_bytes, int64_t n, int64_t r0, int64_t r1,
                        const void* A, size_t a_row_bytes, int64_t m, float* Y, int64_t ldy, int64_t ahead_end = 0) {
    VecDotFn dot = vec_dot_fn(wt);
    if (!dot || r1 <= r0 || m <= 0) return;
    // One activation row: row by row (one stream through memory reads at full
    // bandwidth; four interleaved rows do not). Several: four rows share each
    // activation load.
    if (m == 1 && (wt == Type::Q4_0 || wt == Type::Q5_0 || wt == Type::Q8_0 || wt == Type::Q4_1 || wt == Type::Q5_1)) {
        const uint8_t* w = static_cast<const uint8_t*>(W);
        if (wt == Type::Q4_0) matvec_q_pairs<BlockQ4_0>(n, w, w_row_bytes, r0, r1, A, Y, ahead_end);
        else if (wt == Type::Q5_0) matvec_q_pairs<BlockQ5_0>(n, w, w_row_bytes, r0, r1, A, Y, ahead_end);
        else if (wt == Type::Q4_1) matvec_q_pairs<BlockQ4_1>(n, w, w_row_bytes, r0, r1, A, Y, ahead_end);
        else if (wt == Type::Q5_1) matvec_q_pairs<BlockQ5_1>(n, w, w_row_bytes, r0, r1, A, Y, ahead_end);
        else matvec_q_pairs<BlockQ8_0>(n, w, w_row_bytes, r0, r1, A, Y, ahead_end);
        return;
    }
    if (m == 1 && (wt == Type::Q4_K || wt == Type::Q5_K)) {
        const uint8_t* w = static_cast<const uint8_t*>(W);
        const BlockQ8_K* a = static_cast<const BlockQ8_K*>(A);
        if (wt == Type::Q4_K) matvec_q45_k<false, BlockQ4_K>(n, w, w_row_bytes, r0, r1, a, Y);
        else matvec_q45_k<true, BlockQ5_K>(n, w, w_row_bytes, r0, r1, a, Y);
        return;
    }
    if (m == 1 || (wt != Type::F32 && wt != Type::Q8_0 && wt != Type::Q4_0)) {
        matmul_rows_generic(dot, W, w_row_bytes, n, r0, r1, A, a_row_bytes, m, Y, ldy, prefetch_pays(wt), ahead_end);
        return;
    }
    const uint8_t* w = static_cast<const uint8_t*>(W);
    const uint8_t* act = static_cast<const uint8_t*>(A);
    int64_t tile = w_row_bytes ? static_cast<int64_t>((64u << 10) / w_row_bytes) : 64;
    tile = std::max<int64_t>(4, std::min<int64_t>(64, tile & ~int64_t(3)));
    float out[4];
    for (int64_t rt = r0; rt < r1; rt += tile) {
        const int64_t re = std::min(r1, rt + tile);
        for (int64_t j = 0; j < m; ++j) {
            const uint8_t* aj = act + static_cast<size_t>(j) * a_row_bytes;
            float* yj = Y + j * ldy;
            int64_t r = rt;
            for (; r + 4 <= re; r += 4) {
                const uint8_t* wr = w + static_cast<size_t>(r) * w_row_bytes;
                if (wt == Type::F32) dot4_f32(n, wr, w_row_bytes, reinterpret_cast<const float*>(aj), out);
                else if (wt == Type::Q8_0) dot4_q<false>(n, wr, w_row_bytes, reinterpret_cast<const BlockQ8_0*>(aj), out);
                else dot4_q<true>(n, wr, w_row_bytes, reinterpret_cast<const BlockQ8_0*>(aj), out);
                yj[r] = out[0], yj[r + 1] = out[1], yj[r + 2] = out[2], yj[r + 3] = out[3];
            }
            for (; r < re; ++r) yj[r] = dot(n, w + static_cast<size_t>(r) * w_row_bytes, aj);
        }
    }
}

}  // namespace avx512
}  // namespace detail
MINIGPT_NS_END
#endif  // MINIGPT_AVX512

// ---- kernels_neon.hpp ----
// kernels_neon: AArch64 NEON versions of the scalar kernels. The baseline is
// ARMv8.0 (Advanced SIMD); the int8 dot product instruction (SDOT) is used when
// the target has it (__ARM_FEATURE_DOTPROD), the widening fp16 multiply-add
// (FMLAL) for F16 rows when it has __ARM_FEATURE_FP16_FML, and the widening
// bf16 multiply-add (BFMLALB/T) for BF16 rows with
// __ARM_FEATURE_BF16_VECTOR_ARITHMETIC. Without them the halves are converted
// to float, which is exact. Plain fp16 vector arithmetic is not used for dot
// products: products and sums rounded to fp16 would lose far more precision
// than the float kernels keep.

#if defined(MINIGPT_NEON)
#include <arm_neon.h>

MINIGPT_NS_BEGIN
namespace detail {
namespace neon {

// fp16 scale to float with the conversion instruction.
inline float h2f(uint16_t h) { return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0); }

// ---------------------------------------------------------------------------
// Float rows.
// ---------------------------------------------------------------------------
inline float vec_dot_f32(int64_t n, const void* w, const void* a) {
    const float* x = static_cast<const float*>(w);
    const float* y = static_cast<const float*>(a);
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = vfmaq_f32(s0, vld1q_f32(x + i), vld1q_f32(y + i));
        s1 = vfmaq_f32(s1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
        s2 = vfmaq_f32(s2, vld1q_f32(x + i + 8), vld1q_f32(y + i + 8));
        s3 = vfmaq_f32(s3, vld1q_f32(x + i + 12), vld1q_f32(y + i + 12));
    }
    for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(x + i), vld1q_f32(y + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; ++i) s += x[i] * y[i];
    return s;
}

// 8 fp16 values as two float vectors.
inline float32x4_t f16_lo(uint16x8_t v) { return vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(v))); }
inline float32x4_t f16_hi(uint16x8_t v) { return vcvt_high_f32_f16(vreinterpretq_f16_u16(v)); }

// acc0 += products of elements 0..3, acc1 += products of elements 4..7 of 8
// fp16 pairs, with exact products and float sums.
inline void fma_f16x8(float32x4_t& acc0, float32x4_t& acc1, uint16x8_t x, uint16x8_t y) {
#if defined(__ARM_FEATURE_FP16_FML)
    const float16x8_t hx = vreinterpretq_f16_u16(x), hy = vreinterpretq_f16_u16(y);
    acc0 = vfmlalq_low_f16(acc0, hx, hy);
    acc1 = vfmlalq_high_f16(acc1, hx, hy);
#else
    acc0 = vfmaq_f32(acc0, f16_lo(x), f16_lo(y));
    acc1 = vfmaq_f32(acc1, f16_hi(x), f16_hi(y));
#endif
}

inline float vec_dot_f16(int64_t n, const void* w, const void* a) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        fma_f16x8(s0, s1, vld1q_u16(x + i), vld1q_u16(y + i));
        fma_f16x8(s2, s3, vld1q_u16(x + i + 8), vld1q_u16(y + i + 8));
    }
    for (; i + 8 <= n; i += 8) fma_f16x8(s0, s1, vld1q_u16(x + i), vld1q_u16(y + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; ++i) s += h2f(x[i]) * h2f(y[i]);
    return s;
}

// 8 bf16 values: the bits shifted into the top half of a float are exact.
inline float32x4_t bf16_lo(uint16x8_t v) { return vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(v), 16)); }
inline float32x4_t bf16_hi(uint16x8_t v) { return vreinterpretq_f32_u32(vshll_high_n_u16(v, 16)); }

inline void fma_bf16x8(float32x4_t& acc0, float32x4_t& acc1, uint16x8_t x, uint16x8_t y) {
#if defined(__ARM_FEATURE_BF16_VECTOR_ARITHMETIC)
    // Even elements into acc0, odd elements into acc1 (IEEE fused multiply-add
    // of the widened values, so the products are exact).
    const bfloat16x8_t bx = vreinterpretq_bf16_u16(x), by = vreinterpretq_bf16_u16(y);
    acc0 = vbfmlalbq_f32(acc0, bx, by);
    acc1 = vbfmlaltq_f32(acc1, bx, by);
#else
    acc0 = vfmaq_f32(acc0, bf16_lo(x), bf16_lo(y));
    acc1 = vfmaq_f32(acc1, bf16_hi(x), bf16_hi(y));
#endif
}

inline float vec_dot_bf16(int64_t n, const void* w, const void* a) {
    const uint16_t* x = static_cast<const uint16_t*>(w);
    const uint16_t* y = static_cast<const uint16_t*>(a);
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        fma_bf16x8(s0, s1, vld1q_u16(x + i), vld1q_u16(y + i));
        fma_bf16x8(s2, s3, vld1q_u16(x + i + 8), vld1q_u16(y + i + 8));
    }
    for (; i + 8 <= n; i += 8) fma_bf16x8(s0, s1, vld1q_u16(x + i), vld1q_u16(y + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; ++i) s += bf16_to_fp32(x[i]) * bf16_to_fp32(y[i]);
    return s;
}

// ---------------------------------------------------------------------------
// Integer helpers. All weight codes are brought into int8 range first (with
// their offsets applied where that keeps them in range), so one signed
// 8-bit dot product serves every type.
// ---------------------------------------------------------------------------

// acc (4 x int32) += the 16 products of a and b, summed in groups of four.
inline int32x4_t dot_acc(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, a, b);
#else
    // |int8 * int8| <= 16384 fits int16; pairs are added in int32.
    const int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    const int16x8_t hi = vmull_high_s8(a, b);
    return vpadalq_s16(vpadalq_s16(acc, lo), hi);
#endif
}

// Sum of the 16 products of a and b.
inline int32_t dot16(int8x16_t a, int8x16_t b) { return vaddvq_s32(dot_acc(vdupq_n_s32(0), a, b)); }

// Dot of 32 weight codes (two vectors) with 32 activations, as 4 int32 lanes.
inline int32x4_t dot32(int8x16_t w0, int8x16_t w1, const int8_t* q8) {
    return dot_acc(dot_acc(vdupq_n_s32(0), w0, vld1q_s8(q8)), w1, vld1q_s8(q8 + 16));
}

inline int8x16_t low_nibbles(uint8x16_t b) { return vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(0x0F))); }
inline int8x16_t high_nibbles(uint8x16_t b) { return vreinterpretq_s8_u8(vshrq_n_u8(b, 4)); }

// Byte e is 0x10 when bit (16 * part + e) of the little-endian 32 bits at qh is set.
inline uint8x16_t fifth_bits(const uint8_t* qh, int part) {
    const uint8x8_t bytes = vreinterpret_u8_u32(vdup_n_u32(load_u32(qh)));
    static const uint8_t idx[2][16] = {{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
                                       {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3}};
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t spread = vqtbl1q_u8(vcombine_u8(bytes, bytes), vld1q_u8(idx[part]));
    return vandq_u8(vtstq_u8(spread, vld1q_u8(bit)), vdupq_n_u8(0x10));
}

// ---------------------------------------------------------------------------
// 32-element block types.
// ---------------------------------------------------------------------------
inline float vec_dot_q8_0(int64_t n, const void* w, const void* a) {
    const BlockQ8_0* x = static_cast<const BlockQ8_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    const int64_t nb = n / QK8_0;
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const int32x4_t p0 = dot32(vld1q_s8(x[b].qs), vld1q_s8(x[b].qs + 16), y[b].qs);
        const int32x4_t p1 = dot32(vld1q_s8(x[b + 1].qs), vld1q_s8(x[b + 1].qs + 16), y[b + 1].qs);
        acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(p0), h2f(x[b].d) * h2f(y[b].d));
        acc1 = vfmaq_n_f32(acc1, vcvtq_f32_s32(p1), h2f(x[b + 1].d) * h2f(y[b + 1].d));
    }
    for (; b < nb; ++b) {
        const int32x4_t p0 = dot32(vld1q_s8(x[b].qs), vld1q_s8(x[b].qs + 16), y[b].qs);
        acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(p0), h2f(x[b].d) * h2f(y[b].d));
    }
    return vaddvq_f32(vaddq_f32(acc0, acc1));
}

// The 32 nibbles of a Q4_0 block as int8 in [-8, 7]: elements 0..15, 16..31.
inline void unpack_q4_0(const uint8_t* qs, int8x16_t& lo, int8x16_t& hi) {
    const uint8x16_t b = vld1q_u8(qs);
    const int8x16_t eight = vdupq_n_s8(8);
    lo = vsubq_s8(low_nibbles(b), eight);
    hi = vsubq_s8(high_nibbles(b), eight);
}

inline float vec_dot_q4_0(int64_t n, const void* w, const void* a) {
    const BlockQ4_0* x = static_cast<const BlockQ4_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    const int64_t nb = n / QK4_0;
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0;
    int64_t b = 0;
    int8x16_t l0, h0, l1, h1;
    for (; b + 2 <= nb; b += 2) {
        unpack_q4_0(x[b].qs, l0, h0);
        unpack_q4_0(x[b + 1].qs, l1, h1);
        acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(dot32(l0, h0, y[b].qs)), h2f(x[b].d) * h2f(y[b].d));
        acc1 = vfmaq_n_f32(acc1, vcvtq_f32_s32(dot32(l1, h1, y[b + 1].qs)), h2f(x[b + 1].d) * h2f(y[b + 1].d));
    }
    for (; b < nb; ++b) {
        unpack_q4_0(x[b].qs, l0, h0);
        acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(dot32(l0, h0, y[b].qs)), h2f(x[b].d) * h2f(y[b].d));
    }
    return vaddvq_f32(vaddq_f32(acc0, acc1));
}

inline float vec_dot_q4_1(int64_t n, const void* w, const void* a) {
    const BlockQ4_1* x = static_cast<const BlockQ4_1*>(w);
    const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
    float32x4_t acc = vdupq_n_f32(0.0f);
    float summs = 0.0f;
    for (int64_t b = 0; b < n / 32; ++b) {
        const uint8x16_t q = vld1q_u8(x[b].qs);
        const int32x4_t p = dot32(low_nibbles(q), high_nibbles(q), y[b].qs);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), h2f(x[b].d) * h2f(y[b].d));
        summs += h2f(x[b].m) * h2f(y[b].s);
    }
    return vaddvq_f32(acc) + summs;
}

// Five-bit codes (0..31) of a Q5_0 / Q5_1 block, elements 0..15 and 16..31.
inline void codes_q5(const uint8_t* qs, const uint8_t* qh, int8x16_t& lo, int8x16_t& hi) {
    const uint8x16_t q = vld1q_u8(qs);
    lo = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q, vdupq_n_u8(0x0F)), fifth_bits(qh, 0)));
    hi = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q, 4), fifth_bits(qh, 1)));
}

inline float vec_dot_q5_0(int64_t n, const void* w, const void* a) {
    const BlockQ5_0* x = static_cast<const BlockQ5_0*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    const int8x16_t sixteen = vdupq_n_s8(16);
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < n / 32; ++b) {
        int8x16_t lo, hi;
        codes_q5(x[b].qs, x[b].qh, lo, hi);
        const int32x4_t p = dot32(vsubq_s8(lo, sixteen), vsubq_s8(hi, sixteen), y[b].qs);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), h2f(x[b].d) * h2f(y[b].d));
    }
    return vaddvq_f32(acc);
}

inline float vec_dot_q5_1(int64_t n, const void* w, const void* a) {
    const BlockQ5_1* x = static_cast<const BlockQ5_1*>(w);
    const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
    float32x4_t acc = vdupq_n_f32(0.0f);
    float summs = 0.0f;
    for (int64_t b = 0; b < n / 32; ++b) {
        int8x16_t lo, hi;
        codes_q5(x[b].qs, x[b].qh, lo, hi);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(dot32(lo, hi, y[b].qs)), h2f(x[b].d) * h2f(y[b].d));
        summs += h2f(x[b].m) * h2f(y[b].s);
    }
    return vaddvq_f32(acc) + summs;
}

inline float vec_dot_iq4_nl(int64_t n, const void* w, const void* a) {
    const BlockIQ4_NL* x = static_cast<const BlockIQ4_NL*>(w);
    const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
    const int8x16_t table = vld1q_s8(kIQ4NLValues);
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < n / 32; ++b) {
        const uint8x16_t q = vld1q_u8(x[b].qs);
        const int8x16_t lo = vqtbl1q_s8(table, vandq_u8(q, vdupq_n_u8(0x0F)));
        const int8x16_t hi = vqtbl1q_s8(table, vshrq_n_u8(q, 4));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(dot32(lo, hi, y[b].qs)), h2f(x[b].d) * h2f(y[b].d));
    }
    return vaddvq_f32(acc);
}

// ---------------------------------------------------------------------------
// K-quants against Q8_K. Sub-block sums are exact integers, combined with the
// integer scales in int32 exactly as the scalar kernels do.
// ---------------------------------------------------------------------------
inline float vec_dot_q2_k(int64_t n, const void* w, const void* a) {
    const BlockQ2_K* x = static_cast<const BlockQ2_K*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    const uint8x16_t m3 = vdupq_n_u8(3);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const uint8_t* sc = x[b].scales;
        // Sum of min * bsum over the 16 sub-blocks.
        const uint8x16_t scv = vld1q_u8(sc);
        const int16x8_t mins_lo = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(vshrq_n_u8(scv, 4))));
        const int16x8_t mins_hi = vreinterpretq_s16_u16(vmovl_high_u8(vshrq_n_u8(scv, 4)));
        const int16x8_t bs_lo = vld1q_s16(y[b].bsums), bs_hi = vld1q_s16(y[b].bsums + 8);
        int32x4_t mm = vmull_s16(vget_low_s16(mins_lo), vget_low_s16(bs_lo));
        mm = vmlal_high_s16(mm, mins_lo, bs_lo);
        mm = vmlal_s16(mm, vget_low_s16(mins_hi), vget_low_s16(bs_hi));
        mm = vmlal_high_s16(mm, mins_hi, bs_hi);
        const int32_t summs = vaddvq_s32(mm);
        int32_t isum = 0;
        for (int h = 0; h < 2; ++h) {
            uint8x16_t v0 = vld1q_u8(x[b].qs + 32 * h), v1 = vld1q_u8(x[b].qs + 32 * h + 16);
            for (int j = 0; j < 4; ++j) {  // sub-blocks k = 8h + 2j (v0) and 8h + 2j + 1 (v1)
                const int k = 8 * h + 2 * j;
                const int8_t* q8 = y[b].qs + 16 * k;
                const int32_t s0 = dot16(vreinterpretq_s8_u8(vandq_u8(v0, m3)), vld1q_s8(q8));
                const int32_t s1 = dot16(vreinterpretq_s8_u8(vandq_u8(v1, m3)), vld1q_s8(q8 + 16));
                isum += (sc[k] & 0x0F) * s0 + (sc[k + 1] & 0x0F) * s1;
                v0 = vshrq_n_u8(v0, 2);
                v1 = vshrq_n_u8(v1, 2);
            }
        }
        const float dall = y[b].d * h2f(x[b].d);
        const float dmin = y[b].d * h2f(x[b].dmin);
        s += dall * static_cast<float>(isum) - dmin * static_cast<float>(summs);
    }
    return s;
}

inline float vec_dot_q3_k(int64_t n, const void* w, const void* a) {
    const BlockQ3_K* x = static_cast<const BlockQ3_K*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    const uint8x16_t m3 = vdupq_n_u8(3), four = vdupq_n_u8(4);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int8_t sc[16];
        scales_q3_k(x[b].scales, sc);
        const uint8x16_t hm0 = vld1q_u8(x[b].hmask), hm1 = vld1q_u8(x[b].hmask + 16);
        int32_t isum = 0;
        for (int h = 0; h < 2; ++h) {
            uint8x16_t v0 = vld1q_u8(x[b].qs + 32 * h), v1 = vld1q_u8(x[b].qs + 32 * h + 16);
            for (int j = 0; j < 4; ++j) {
                const int k = 8 * h + 2 * j;
                const uint8x16_t bit = vdupq_n_u8(static_cast<uint8_t>(1u << (4 * h + j)));
                // value = low 2 bits - 4, plus 4 when the high bit is set:
                // subtract 4 only where the bit is clear.
                const int8x16_t q0 = vreinterpretq_s8_u8(vsubq_u8(vandq_u8(v0, m3), vbicq_u8(four, vtstq_u8(hm0, bit))));
                const int8x16_t q1 = vreinterpretq_s8_u8(vsubq_u8(vandq_u8(v1, m3), vbicq_u8(four, vtstq_u8(hm1, bit))));
                const int8_t* q8 = y[b].qs + 16 * k;
                isum += sc[k] * dot16(q0, vld1q_s8(q8)) + sc[k + 1] * dot16(q1, vld1q_s8(q8 + 16));
                v0 = vshrq_n_u8(v0, 2);
                v1 = vshrq_n_u8(v1, 2);
            }
        }
        s += (h2f(x[b].d) * y[b].d) * static_cast<float>(isum);
    }
    return s;
}

// Q4_K and Q5_K share the scale layout; High adds the fifth bit.
template <bool High, class Block>
inline float vec_dot_q45_k(int64_t n, const void* w, const void* a) {
    const Block* x = static_cast<const Block*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        uint8x16_t qh0 = vdupq_n_u8(0), qh1 = vdupq_n_u8(0);
        if constexpr (High) {
            const BlockQ5_K* x5 = reinterpret_cast<const BlockQ5_K*>(x + b);
            qh0 = vld1q_u8(x5->qh);
            qh1 = vld1q_u8(x5->qh + 16);
        }
        int32_t isum = 0, summs = 0;
        for (int j = 0; j < 4; ++j) {  // sub-blocks 2j (low nibbles) and 2j + 1 (high nibbles)
            const uint8x16_t q0 = vld1q_u8(x[b].qs + 32 * j), q1 = vld1q_u8(x[b].qs + 32 * j + 16);
            int8x16_t l0 = low_nibbles(q0), l1 = low_nibbles(q1);
            int8x16_t h0 = high_nibbles(q0), h1 = high_nibbles(q1);
            if constexpr (High) {
                const uint8x16_t bl = vdupq_n_u8(static_cast<uint8_t>(1u << (2 * j)));
                const uint8x16_t bh = vdupq_n_u8(static_cast<uint8_t>(1u << (2 * j + 1)));
                const uint8x16_t x10 = vdupq_n_u8(0x10);
                l0 = vorrq_s8(l0, vreinterpretq_s8_u8(vandq_u8(vtstq_u8(qh0, bl), x10)));
                l1 = vorrq_s8(l1, vreinterpretq_s8_u8(vandq_u8(vtstq_u8(qh1, bl), x10)));
                h0 = vorrq_s8(h0, vreinterpretq_s8_u8(vandq_u8(vtstq_u8(qh0, bh), x10)));
                h1 = vorrq_s8(h1, vreinterpretq_s8_u8(vandq_u8(vtstq_u8(qh1, bh), x10)));
            }
            const int8_t* q8 = y[b].qs + 64 * j;
            int sc0, m0, sc1, m1;
            scale_min_k4(2 * j, x[b].scales, sc0, m0);
            scale_min_k4(2 * j + 1, x[b].scales, sc1, m1);
            isum += sc0 * vaddvq_s32(dot32(l0, l1, q8)) + sc1 * vaddvq_s32(dot32(h0, h1, q8 + 32));
            const int16_t* bs = y[b].bsums + 4 * j;
            summs += m0 * (bs[0] + bs[1]) + m1 * (bs[2] + bs[3]);
        }
        const float d = y[b].d * h2f(x[b].d);
        const float dmin = y[b].d * h2f(x[b].dmin);
        s += d * static_cast<float>(isum) - dmin * static_cast<float>(summs);
    }
    return s;
}
inline float vec_dot_q4_k(int64_t n, const void* w, const void* a) { return vec_dot_q45_k<false, BlockQ4_K>(n, w, a); }
inline float vec_dot_q5_k(int64_t n, const void* w, const void* a) { return vec_dot_q45_k<true, BlockQ5_K>(n, w, a); }

inline float vec_dot_q6_k(int64_t n, const void* w, const void* a) {
    const BlockQ6_K* x = static_cast<const BlockQ6_K*>(w);
    const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m3 = vdupq_n_u8(3);
    const int8x16_t off = vdupq_n_s8(32);
    float s = 0.0f;
    for (int64_t b = 0; b < n / QK_K; ++b) {
        int32_t isum = 0;
        for (int h = 0; h < 2; ++h) {
            const uint8_t* ql = x[b].ql + 64 * h;
            const uint8_t* qhp = x[b].qh + 32 * h;
            const uint8x16_t la0 = vld1q_u8(ql), la1 = vld1q_u8(ql + 16);       // elements l and l + 64
            const uint8x16_t lb0 = vld1q_u8(ql + 32), lb1 = vld1q_u8(ql + 48);  // elements l + 32 and l + 96
            uint8x16_t qh0 = vld1q_u8(qhp), qh1 = vld1q_u8(qhp + 16);
            for (int g = 0; g < 4; ++g) {  // elements 128h + 32g + l, l < 32
                const uint8x16_t s0 = g & 1 ? lb0 : la0, s1 = g & 1 ? lb1 : la1;
                const uint8x16_t n0 = g < 2 ? vandq_u8(s0, m4) : vshrq_n_u8(s0, 4);
                const uint8x16_t n1 = g < 2 ? vandq_u8(s1, m4) : vshrq_n_u8(s1, 4);
                const int8x16_t q0 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(n0, vshlq_n_u8(vandq_u8(qh0, m3), 4))), off);
                const int8x16_t q1 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(n1, vshlq_n_u8(vandq_u8(qh1, m3), 4))), off);
                const int k = 8 * h + 2 * g;  // sub-blocks k (l < 16) and k + 1
                const int8_t* q8 = y[b].qs + 16 * k;
                isum += x[b].scales[k] * dot16(q0, vld1q_s8(q8)) + x[b].scales[k + 1] * dot16(q1, vld1q_s8(q8 + 16));
                qh0 = vshrq_n_u8(qh0, 2);
                qh1 = vshrq_n_u8(qh1, 2);
            }
        }
        s += (h2f(x[b].d) * y[b].d) * static_cast<float>(isum);
    }
    return s;
}

inline VecDotFn vec_dot_fn(Type wt) {
    switch (wt) {
        case Type::F32: return vec_dot_f32;
        case Type::F16: return vec_dot_f16;
        case Type::BF16: return vec_dot_bf16;
        case Type::Q8_0: return vec_dot_q8_0;
        case Type::Q4_0: return vec_dot_q4_0;
        case Type::Q4_1: return vec_dot_q4_1;
        case Type::Q5_0: return vec_dot_q5_0;
        case Type::Q5_1: return vec_dot_q5_1;
        case Type::IQ4_NL: return vec_dot_iq4_nl;
        case Type::Q2_K: return vec_dot_q2_k;
        case Type::Q3_K: return vec_dot_q3_k;
        case Type::Q4_K: return vec_dot_q4_k;
        case Type::Q5_K: return vec_dot_q5_k;
        case Type::Q6_K: return vec_dot_q6_k;
        default: return scalar::vec_dot_fn(wt);
    }
}

inline float vec_dot(Type wt, int64_t n, const void* w, const void* a) {
    VecDotFn f = vec_dot_fn(wt);
    MINIGPT_ASSERT(f != nullptr);
    return f ? f(n, w, a) : 0.0f;
}

inline float dot_f32(const float* a, const float* b, int64_t n) { return vec_dot_f32(n, a, b); }

inline void axpy_f32(int64_t n, float a, const float* x, float* y) {
    const float32x4_t va = vdupq_n_f32(a);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_f32(vld1q_f32(y + i), va, vld1q_f32(x + i)));
    for (; i < n; ++i) y[i] += a * x[i];
}

inline void scale_f32(int64_t n, float a, float* y) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_n_f32(vld1q_f32(y + i), a));
    for (; i < n; ++i) y[i] *= a;
}

// ---------------------------------------------------------------------------
// Four weight rows against one activation row at once (F32, Q8_0, Q4_0): the
// activation block is loaded once for four rows.
// ---------------------------------------------------------------------------
inline void dot4_f32(int64_t n, const uint8_t* w, size_t ws, const float* y, float* out) {
    const float* x0 = reinterpret_cast<const float*>(w);
    const float* x1 = reinterpret_cast<const float*>(w + ws);
    const float* x2 = reinterpret_cast<const float*>(w + 2 * ws);
    const float* x3 = reinterpret_cast<const float*>(w + 3 * ws);
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t v = vld1q_f32(y + i);
        s0 = vfmaq_f32(s0, vld1q_f32(x0 + i), v);
        s1 = vfmaq_f32(s1, vld1q_f32(x1 + i), v);
        s2 = vfmaq_f32(s2, vld1q_f32(x2 + i), v);
        s3 = vfmaq_f32(s3, vld1q_f32(x3 + i), v);
    }
    float r0 = vaddvq_f32(s0), r1 = vaddvq_f32(s1), r2 = vaddvq_f32(s2), r3 = vaddvq_f32(s3);
    for (; i < n; ++i) {
        r0 += x0[i] * y[i];
        r1 += x1[i] * y[i];
        r2 += x2[i] * y[i];
        r3 += x3[i] * y[i];
    }
    out[0] = r0, out[1] = r1, out[2] = r2, out[3] = r3;
}

template <bool Q4>
inline void dot4_q(int64_t n, const uint8_t* w, size_t ws, const BlockQ8_0* y, float* out) {
    const int64_t nb = n / 32;
    float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (int64_t b = 0; b < nb; ++b) {
        const int8x16_t a0 = vld1q_s8(y[b].qs), a1 = vld1q_s8(y[b].qs + 16);
        const float da = h2f(y[b].d);
        MINIGPT_UNROLL(4)
        for (int k = 0; k < 4; ++k) {
            const uint8_t* row = w + k * ws;
            int8x16_t x0, x1;
            float dw;
            if constexpr (Q4) {
                const BlockQ4_0* xb = reinterpret_cast<const BlockQ4_0*>(row) + b;
                unpack_q4_0(xb->qs, x0, x1);
                dw = h2f(xb->d);
            } else {
                const BlockQ8_0* xb = reinterpret_cast<const BlockQ8_0*>(row) + b;
                x0 = vld1q_s8(xb->qs);
                x1 = vld1q_s8(xb->qs + 16);
                dw = h2f(xb->d);
            }
            const int32x4_t p = dot_acc(dot_acc(vdupq_n_s32(0), x0, a0), x1, a1);
            acc[k] = vfmaq_n_f32(acc[k], vcvtq_f32_s32(p), dw * da);
        }
    }
    for (int k = 0; k < 4; ++k) out[k] = vaddvq_f32(acc[k]);
}

inline void matmul_rows(Type wt, const void* W, size_t w_row_bytes, int64_t n, int64_t r0, int64_t r1,
                        const void* A, size_t a_row_bytes, int64_t m, float* Y, int64_t ldy, int64_t ahead_end = 0) {
    VecDotFn dot = vec_dot_fn(wt);
    if (!dot || r1 <= r0 || m <= 0) return;
    // One activation row: row by row (a single stream through memory); several:
    // four weight rows share each activation load.
    if (m == 1 || (wt != Type::F32 && wt != Type::Q8_0 && wt != Type::Q4_0)) {
        matmul_rows_generic(dot, W, w_row_bytes, n, r0, r1, A, a_row_bytes, m, Y, ldy, prefetch_pays(wt), ahead_end);
        return;
    }
    const uint8_t* w = static_cast<const uint8_t*>(W);
    const uint8_t* act = static_cast<const uint8_t*>(A);
    int64_t tile = w_row_bytes ? static_cast<int64_t>((64u << 10) / w_row_bytes) : 64;
    tile = std::max<int64_t>(4, std::min<int64_t>(64, tile & ~int64_t(3)));
    float out[4];
    for (int64_t rt = r0; rt < r1; rt += tile) {
        const int64_t re = std::min(r1, rt + tile);
        for (int64_t j = 0; j < m; ++j) {
            const uint8_t* aj = act + static_cast<size_t>(j) * a_row_bytes;
            float* yj = Y + j * ldy;
            int64_t r = rt;
            for (; r + 4 <= re; r += 4) {
                const uint8_t* wr = w + static_cast<size_t>(r) * w_row_bytes;
                if (wt == Type::F32) dot4_f32(n, wr, w_row_bytes, reinterpret_cast<const float*>(aj), out);
                else if (wt == Type::Q8_0) dot4_q<false>(n, wr, w_row_bytes, reinterpret_cast<const BlockQ8_0*>(aj), out);
                else dot4_q<true>(n, wr, w_row_bytes, reinterpret_cast<const BlockQ8_0*>(aj), out);
                yj[r] = out[0], yj[r + 1] = out[1], yj[r + 2] = out[2], yj[r + 3] = out[3];
            }
            for (; r < re; ++r) yj[r] = dot(n, w + static_cast<size_t>(r) * w_row_bytes, aj);
        }
    }
}

}  // namespace neon
}  // namespace detail
MINIGPT_NS_END
#endif  // MINIGPT_NEON

// ---- kernels.hpp ----
// kernels: picks the best compiled kernel set (AVX-512 > AVX2 > NEON > scalar) and
// provides the matrix product used by the forward pass.

MINIGPT_NS_BEGIN
namespace detail {

#if defined(MINIGPT_AVX512)
namespace kernels_best = avx512;
#elif defined(MINIGPT_AVX2)
namespace kernels_best = avx2;
#elif defined(MINIGPT_NEON)
namespace kernels_best = neon;
#else
namespace kernels_best = scalar;
#endif

// The instruction set the kernels were compiled for.
inline const char* simd_name() {
#if defined(MINIGPT_AVX512)
    return "AVX512";
#elif defined(MINIGPT_AVX2)
    return "AVX2";
#elif defined(MINIGPT_NEON)
    return "NEON";
#else
    return "scalar";
#endif
}

// Row dot product for weight type wt (activation in vec_dot_type(wt) format);
// nullptr when wt is not supported. VecDotFn is declared in kernels_scalar.
inline VecDotFn vec_dot_fn(Type wt) { return kernels_best::vec_dot_fn(wt); }

inline float dot_f32(const float* a, const float* b, int64_t n) { return kernels_best::dot_f32(a, b, n); }
inline void axpy_f32(int64_t n, float a, const float* x, float* y) { kernels_best::axpy_f32(n, a, x, y); }
inline void scale_f32(int64_t n, float a, float* y) { kernels_best::scale_f32(n, a, y); }

#if defined(MINIGPT_AVX512)
// e^x for 16 floats: x = n ln2 + r with |r| <= ln2 / 2, e^r by its Taylor
// series to r^7 (truncation below 1e-8 relative), times 2^n with scalef (which
// gives inf and 0 at the ends). Within 2 ulp of std::exp; NaN stays NaN.
inline __m512 exp16(__m512 x) {
    // (zero-masking forms with a full mask: the plain ones start from an
    // "undefined" register that g++ 12 reports as uninitialized)
    const __mmask16 all = 0xFFFF;
    x = _mm512_maskz_max_ps(all, _mm512_set1_ps(-104.0f), _mm512_maskz_min_ps(all, _mm512_set1_ps(89.0f), x));
    const __m512 n = _mm512_maskz_roundscale_ps(all, _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);  // ln2, high part (exact product)
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);     // ln2, the rest
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(all, p, n);
}
#endif

// out[j] = dot(q, k + j * stride) for j < 4: the attention scores of four keys,
// sharing the loads of q and one horizontal reduction.
inline void dot4_keys_f32(const float* q, const float* k, size_t stride, int64_t d, float* out) {
#if defined(MINIGPT_AVX512)
    if (d % 16 == 0) {
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        for (int64_t i = 0; i < d; i += 16) {
            const __m512 qv = _mm512_loadu_ps(q + i);
            a0 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k + i), a0);
            a1 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k + stride + i), a1);
            a2 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k + 2 * stride + i), a2);
            a3 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k + 3 * stride + i), a3);
        }
        const __mmask16 all = 0xFFFF;  // zero-masking forms: see exp16
        // Halves of a0|a1 and a2|a3 added, then quarters, then within each
        // 128-bit lane: lane j ends up holding key j's sum in its first float.
        const __m512 h01 = _mm512_add_ps(_mm512_maskz_shuffle_f32x4(all, a0, a1, 0x44), _mm512_maskz_shuffle_f32x4(all, a0, a1, 0xEE));
        const __m512 h23 = _mm512_add_ps(_mm512_maskz_shuffle_f32x4(all, a2, a3, 0x44), _mm512_maskz_shuffle_f32x4(all, a2, a3, 0xEE));
        __m512 c = _mm512_add_ps(_mm512_maskz_shuffle_f32x4(all, h01, h23, 0x88), _mm512_maskz_shuffle_f32x4(all, h01, h23, 0xDD));
        c = _mm512_add_ps(c, _mm512_maskz_shuffle_ps(all, c, c, 0x4E));
        c = _mm512_add_ps(c, _mm512_maskz_shuffle_ps(all, c, c, 0xB1));
        alignas(64) float t[16];
        _mm512_store_ps(t, c);
        out[0] = t[0], out[1] = t[4], out[2] = t[8], out[3] = t[12];
        return;
    }
#endif
    for (int j = 0; j < 4; ++j) out[j] = dot_f32(q, k + j * stride, d);
}

// o[i] += sum over j < n of w[j] * v[j * stride + i], for i < d: the
// attention's weighted sum of n value rows. The sums stay in registers over
// all the rows, in two sets (even and odd rows) so that consecutive rows do not
// wait on each other; one axpy per row would make each row wait on the stores
// of the one before. Elsewhere, one axpy per row.
inline void weighted_rows_f32(int64_t n, const float* w, const float* v, size_t stride, int64_t d, float* o) {
#if defined(MINIGPT_AVX512)
    if (d % 16 == 0) {
        // Columns [i, i + 16 * C) of all the rows.
        auto columns = [&](int64_t i, auto regs) {
            constexpr int C = decltype(regs)::value;
            // (unrolled, so that the sums stay in registers)
            __m512 a[C], b[C];
            MINIGPT_UNROLL(4)
            for (int k = 0; k < C; ++k) a[k] = _mm512_loadu_ps(o + i + 16 * k), b[k] = _mm512_setzero_ps();
            int64_t j = 0;
            for (; j + 2 <= n; j += 2) {
                const __m512 w0 = _mm512_set1_ps(w[j]), w1 = _mm512_set1_ps(w[j + 1]);
                const float* r0 = v + static_cast<size_t>(j) * stride + i;
                const float* r1 = r0 + stride;
                MINIGPT_UNROLL(4)
                for (int k = 0; k < C; ++k) {
                    a[k] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(r0 + 16 * k), a[k]);
                    b[k] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(r1 + 16 * k), b[k]);
                }
            }
            if (j < n) {
                const __m512 w0 = _mm512_set1_ps(w[j]);
                const float* r0 = v + static_cast<size_t>(j) * stride + i;
                MINIGPT_UNROLL(4)
                for (int k = 0; k < C; ++k) a[k] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(r0 + 16 * k), a[k]);
            }
            MINIGPT_UNROLL(4)
            for (int k = 0; k < C; ++k) _mm512_storeu_ps(o + i + 16 * k, _mm512_add_ps(a[k], b[k]));
        };
        int64_t i = 0;
        for (; i + 64 <= d; i += 64) columns(i, std::integral_constant<int, 4>());
        for (; i < d; i += 16) columns(i, std::integral_constant<int, 1>());
        return;
    }
#endif
    for (int64_t j = 0; j < n; ++j) axpy_f32(d, w[j], v + static_cast<size_t>(j) * stride, o);
}

// y[i] = e^(x[i]) (y may be x).
inline void exp_f32(int64_t n, const float* x, float* y) {
    int64_t i = 0;
#if defined(MINIGPT_AVX512)
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, exp16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 k = static_cast<__mmask16>((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(y + i, k, exp16(_mm512_maskz_loadu_ps(k, x + i)));
        return;
    }
#endif
    for (; i < n; ++i) y[i] = std::exp(x[i]);
}

// The online softmax's two passes over a block of scores. s[i] *= a for
// i < n; returns the largest (-inf when n = 0).
inline float scale_max_f32(int64_t n, float a, float* s) {
    float mx = -std::numeric_limits<float>::infinity();
    int64_t i = 0;
#if defined(MINIGPT_AVX512)
    const __mmask16 all = 0xFFFF;  // zero-masking forms: see exp16
    const __m512 av = _mm512_set1_ps(a);
    __m512 m = _mm512_set1_ps(mx);
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(s + i), av);
        _mm512_storeu_ps(s + i, v);
        m = _mm512_maskz_max_ps(all, m, v);
    }
    if (i < n) {
        const __mmask16 k = static_cast<__mmask16>((1u << (n - i)) - 1u);
        const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, s + i), av);
        _mm512_mask_storeu_ps(s + i, k, v);
        m = _mm512_mask_max_ps(m, k, m, v);
        i = n;
    }
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, m);
    for (float l : lanes) mx = std::max(mx, l);
#endif
    for (; i < n; ++i) {
        s[i] *= a;
        mx = std::max(mx, s[i]);
    }
    return mx;
}

// s[i] = e^(s[i] - m) for i < n; returns their sum, added up in double.
inline double exp_sum_f32(int64_t n, float m, float* s) {
    double sum = 0;
    int64_t i = 0;
#if defined(MINIGPT_AVX512)
    const __m512 mv = _mm512_set1_ps(m);
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    for (; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1u);
        const __m512 e = _mm512_maskz_mov_ps(k, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + i), mv)));
        _mm512_mask_storeu_ps(s + i, k, e);
        // (zero-masking forms: see exp16)
        const __m256 lower = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(__mmask8(0xF), _mm512_castps_pd(e), 0));
        const __m256 upper = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(__mmask8(0xF), _mm512_castps_pd(e), 1));
        lo = _mm512_add_pd(lo, _mm512_maskz_cvtps_pd(__mmask8(0xFF), lower));
        hi = _mm512_add_pd(hi, _mm512_maskz_cvtps_pd(__mmask8(0xFF), upper));
    }
    alignas(64) double lanes[8];
    _mm512_store_pd(lanes, _mm512_add_pd(lo, hi));
    for (double l : lanes) sum += l;
#endif
    for (; i < n; ++i) {
        s[i] = std::exp(s[i] - m);
        sum += s[i];
    }
    return sum;
}

// g[i] = silu(g[i]) * u[i] = g[i] / (1 + e^-g[i]) * u[i].
inline void silu_mul_f32(int64_t n, float* g, const float* u) {
    int64_t i = 0;
#if defined(MINIGPT_AVX512)
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; i + 16 <= n; i += 16) {
        const __m512 x = _mm512_loadu_ps(g + i);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
        _mm512_storeu_ps(g + i, _mm512_mul_ps(_mm512_div_ps(x, _mm512_add_ps(one, e)), _mm512_loadu_ps(u + i)));
    }
#endif
    for (; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

// For every weight row r in [r0, r1) and activation row j in [0, m):
//   Y[j*ldy + r] = dot(W row r, A row j)
// W rows are w_row_bytes apart and hold n elements of type wt; A rows are
// a_row_bytes apart and are already in vec_dot_type(wt) format. Threads may
// call this at the same time on disjoint row ranges (no shared state).
// Unsupported types leave Y untouched (callers check type_supported first).
// With one activation row, the read-ahead may run on to row ahead_end (rows
// the caller reads next), never past r1 when ahead_end is smaller.
inline void matmul_rows(Type wt, const void* W, size_t w_row_bytes, int64_t n, int64_t r0, int64_t r1,
                        const void* A, size_t a_row_bytes, int64_t m, float* Y, int64_t ldy, int64_t ahead_end = 0) {
    MINIGPT_ASSERT(type_supported(wt));
    kernels_best::matmul_rows(wt, W, w_row_bytes, n, r0, r1, A, a_row_bytes, m, Y, ldy, ahead_end);
}

}  // namespace detail
MINIGPT_NS_END

// ---- gemm.hpp ----
// gemm: the matrix-matrix product of prompt processing (several activation rows
// at once) on AVX-512, with packed operands and register tiles.
//
// Y[j][r] = dot(W row r, A row j) for 8 weight rows x 16 activation rows at a
// time. The 16 activation rows are packed once per product into a panel where
// each 64-byte line holds the same 4 bytes (one 32-bit group) of all 16 rows; a
// weight group of 4 bytes is broadcast against that line, so one instruction
// does 16 rows x 4 products and nothing is reduced horizontally until the end.
//
//  - Integer types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q4_K, Q5_K): the
//    activations are already 8-bit blocks (Q8_0/Q8_1/Q8_K); the panel stores
//    them as unsigned bytes (a + 128) with each 32-block's scale and scaled sum.
//    Eight weight rows are unpacked per 32-block into signed bytes with a float
//    scale, a float "min" coefficient and the correction -128 * sum(q), so that
//    a block's integer dot product is exact: sum((a + 128) q) - 128 sum(q).
//    Result per block: d_w d_a dot + min_w * (d_a sum(a)).
//  - BF16: pairs of bf16 with the AVX512-BF16 pair dot product.
//  - F32 / F16: float FMA; F16 weights are widened into the tile (exactly).
// Every result equals the row dot product of kernels_scalar up to the order of
// the float additions (tests/test_kernels.cpp compares them).

MINIGPT_NS_BEGIN
namespace detail {

enum class GemmKind { none, i8, bf16, f32 };

constexpr int kGemmRows = 8;   // weight rows per register tile
constexpr int kGemmCols = 16;  // activation rows per panel
constexpr int kGemmMinRows = 6;  // fewer activation rows use matmul_rows

// The packed product used for weight type wt, or none (use matmul_rows).
inline GemmKind gemm_kind(Type wt, int64_t n) {
#if defined(MINIGPT_AVX512)
    if (n <= 0 || n % 32 != 0) return GemmKind::none;
    switch (wt) {
#if defined(__AVX512VNNI__)
        case Type::Q8_0: case Type::Q4_0: case Type::Q4_1: case Type::Q5_0: case Type::Q5_1: case Type::IQ4_NL:
            return GemmKind::i8;
        case Type::Q2_K: case Type::Q3_K: case Type::Q4_K: case Type::Q5_K: case Type::Q6_K:
            return n % QK_K == 0 ? GemmKind::i8 : GemmKind::none;
#endif
#if defined(__AVX512BF16__)
        case Type::BF16: return GemmKind::bf16;
#endif
        case Type::F32: case Type::F16: return GemmKind::f32;
        default: return GemmKind::none;
    }
#else
    (void)wt;
    (void)n;
    return GemmKind::none;
#endif
}

// Integer types share one scale per block of 32 values, or of 16 for the
// K-quants with 16-value sub-blocks (Q2_K, Q3_K, Q6_K).
inline int gemm_block(Type wt) { return wt == Type::Q2_K || wt == Type::Q3_K || wt == Type::Q6_K ? 16 : 32; }
// Int8 panel, per block of B values: B/4 lines of [16 rows][4 bytes], then
// da[16] (activation scales) and sa[16] (scale times the block's sum).
inline size_t panel_block_i8(int B) { return static_cast<size_t>(B / 4) * 64 + 64 + 64; }
// Int8 weight tile, per block: q[8 rows][B], corr[8] (-128 sum q), scale[8], min[8].
inline size_t tile_block_i8(int B) { return static_cast<size_t>(kGemmRows) * B + 3 * 32; }

// Bytes of the packed activations of m rows of n elements.
inline size_t gemm_panel_bytes(Type wt, int64_t n, int64_t m) {
    const size_t panels = static_cast<size_t>((m + kGemmCols - 1) / kGemmCols);
    const int B = gemm_block(wt);
    switch (gemm_kind(wt, n)) {
        case GemmKind::i8: return panels * static_cast<size_t>(n / B) * panel_block_i8(B);
        case GemmKind::bf16: return panels * static_cast<size_t>(n / 2) * 64;
        case GemmKind::f32: return panels * static_cast<size_t>(n) * 64;
        default: return 0;
    }
}

// Bytes of one thread's weight tile for rows of n elements.
inline size_t gemm_tile_bytes(Type wt, int64_t n) {
    const int B = gemm_block(wt);
    switch (gemm_kind(wt, n)) {
        case GemmKind::i8: return static_cast<size_t>(n / B) * tile_block_i8(B);
        case GemmKind::bf16: return static_cast<size_t>(n) * 2;  // a zero row for missing rows
        case GemmKind::f32: return static_cast<size_t>(n) * kGemmRows * 4;
        default: return 0;
    }
}

// ---------------------------------------------------------------------------
// Packing the activations: panels [p0, p1) of A (m rows in vec_dot_type(wt)
// format, a_row_bytes apart). Rows past m are zero.
// ---------------------------------------------------------------------------
inline void gemm_pack_panels(Type wt, const void* A, size_t a_row_bytes, int64_t n, int64_t m, int64_t p0, int64_t p1,
                             uint8_t* P) {
    const GemmKind kind = gemm_kind(wt, n);
    const Type at = vec_dot_type(wt);
    const uint8_t* act = static_cast<const uint8_t*>(A);
    const size_t panel_bytes = gemm_panel_bytes(wt, n, kGemmCols);
    const int B = gemm_block(wt), G = B / 4;
    const size_t pbb = panel_block_i8(B);
    for (int64_t p = p0; p < p1; ++p) {
        uint8_t* dst = P + static_cast<size_t>(p) * panel_bytes;
        for (int c = 0; c < kGemmCols; ++c) {
            const int64_t j = p * kGemmCols + c;
            const uint8_t* row = j < m ? act + static_cast<size_t>(j) * a_row_bytes : nullptr;
            if (kind == GemmKind::i8) {
                const int64_t nb = n / B;
                for (int64_t b = 0; b < nb; ++b) {
                    uint8_t* pb = dst + static_cast<size_t>(b) * pbb;
                    float* da = reinterpret_cast<float*>(pb + 64 * G);
                    float* sa = reinterpret_cast<float*>(pb + 64 * G + 64);
                    const int8_t* qs = nullptr;
                    float d = 0.0f, s = 0.0f;
                    if (row) {
                        if (at == Type::Q8_0) {
                            const BlockQ8_0* x = reinterpret_cast<const BlockQ8_0*>(row) + b;
                            qs = x->qs;
                            d = fp16_to_fp32(x->d);
                        } else if (at == Type::Q8_1) {
                            const BlockQ8_1* x = reinterpret_cast<const BlockQ8_1*>(row) + b;
                            qs = x->qs;
                            d = fp16_to_fp32(x->d);
                            s = fp16_to_fp32(x->s);
                        } else if (B == 32) {  // Q8_K: 8 blocks of 32 per super-block
                            const BlockQ8_K* x = reinterpret_cast<const BlockQ8_K*>(row) + b / 8;
                            const int sub = static_cast<int>(b % 8);
                            qs = x->qs + 32 * sub;
                            d = x->d;
                            s = d * static_cast<float>(x->bsums[2 * sub] + x->bsums[2 * sub + 1]);
                        } else {  // Q8_K: 16 blocks of 16
                            const BlockQ8_K* x = reinterpret_cast<const BlockQ8_K*>(row) + b / 16;
                            const int sub = static_cast<int>(b % 16);
                            qs = x->qs + 16 * sub;
                            d = x->d;
                            s = d * static_cast<float>(x->bsums[sub]);
                        }
                    }
                    for (int g = 0; g < G; ++g) {
                        uint32_t v = 0x80808080u;
                        if (qs) {
                            std::memcpy(&v, qs + 4 * g, 4);
                            v ^= 0x80808080u;
                        }
                        std::memcpy(pb + 64 * g + 4 * c, &v, 4);
                    }
                    da[c] = d;
                    sa[c] = s;
                }
            } else if (kind == GemmKind::bf16) {
                for (int64_t k = 0; k < n / 2; ++k) {
                    uint32_t v = 0;
                    if (row) std::memcpy(&v, row + 4 * k, 4);
                    std::memcpy(dst + 64 * k + 4 * c, &v, 4);
                }
            } else if (kind == GemmKind::f32) {
                float* out = reinterpret_cast<float*>(dst);
                if (!row) {
                    for (int64_t k = 0; k < n; ++k) out[k * kGemmCols + c] = 0.0f;
                } else if (at == Type::F16) {
                    // Widened a slice at a time with the vector conversion of dequantize_row.
                    float tmp[256];
                    for (int64_t k0 = 0; k0 < n; k0 += 256) {
                        const int64_t len = std::min<int64_t>(256, n - k0);
                        dequantize_row(Type::F16, row + 2 * k0, tmp, len);
                        for (int64_t k = 0; k < len; ++k) out[(k0 + k) * kGemmCols + c] = tmp[k];
                    }
                } else {
                    const float* x = reinterpret_cast<const float*>(row);
                    for (int64_t k = 0; k < n; ++k) out[k * kGemmCols + c] = x[k];
                }
            }
        }
    }
}

// Sub-block b % 8 of Q4_K / Q5_K super-block b / 8: its 32 nibbles are the low
// (shift 0) or high (shift 4) halves of qs[0..31]; Q5_K's fifth bit is bit
// `sub` of qh[l]; value = scale * q + min.
struct KSubBlock {
    const uint8_t* qs;
    const uint8_t* qh;  // nullptr for Q4_K
    int sub, shift;
    float scale, min;
};
inline KSubBlock k_sub_block(Type wt, const uint8_t* row, int64_t b) {
    KSubBlock k;
    k.sub = static_cast<int>(b % 8);
    k.shift = (k.sub & 1) ? 4 : 0;
    const uint8_t* scales;
    uint16_t d, dmin;
    if (wt == Type::Q4_K) {
        const BlockQ4_K* x = reinterpret_cast<const BlockQ4_K*>(row) + b / 8;
        scales = x->scales, k.qs = x->qs, d = x->d, dmin = x->dmin, k.qh = nullptr;
    } else {
        const BlockQ5_K* x = reinterpret_cast<const BlockQ5_K*>(row) + b / 8;
        scales = x->scales, k.qs = x->qs, d = x->d, dmin = x->dmin, k.qh = x->qh;
    }
    k.qs += 32 * (k.sub / 2);
    int sc, m;
    scale_min_k4(k.sub, scales, sc, m);
    k.scale = fp16_to_fp32(d) * static_cast<float>(sc);
    k.min = -fp16_to_fp32(dmin) * static_cast<float>(m);
    return k;
}

// One 16-block (sub-block b % 16 of super-block b / 16) of Q2_K, Q3_K or Q6_K
// as signed bytes, a scale and a min coefficient: value = scale * q + min.
inline void unpack_block16(Type wt, const uint8_t* row, int64_t b, int8_t* q, float& scale, float& mn) {
    const int sub = static_cast<int>(b % 16);
    // Element e = 16 * sub + i of the super-block sits in 32-lane group (e % 128) / 32
    // of half e / 128, at lane e % 32.
    const int h = sub / 8, g = (sub % 8) / 2, l0 = 16 * (sub % 2);
    mn = 0.0f;
    if (wt == Type::Q6_K) {
        const BlockQ6_K* x = reinterpret_cast<const BlockQ6_K*>(row) + b / 16;
        const uint8_t* ql = x->ql + 64 * h + 32 * (g & 1) + l0;
        const uint8_t* qh = x->qh + 32 * h + l0;
        for (int i = 0; i < 16; ++i)
            q[i] = static_cast<int8_t>((((ql[i] >> (4 * (g / 2))) & 15) | (((qh[i] >> (2 * g)) & 3) << 4)) - 32);
        scale = fp16_to_fp32(x->d) * static_cast<float>(x->scales[sub]);
    } else if (wt == Type::Q3_K) {
        const BlockQ3_K* x = reinterpret_cast<const BlockQ3_K*>(row) + b / 16;
        const uint8_t* qs = x->qs + 32 * h + l0;
        const uint8_t* hm = x->hmask + l0;
        for (int i = 0; i < 16; ++i)
            q[i] = static_cast<int8_t>(((qs[i] >> (2 * g)) & 3) - (((hm[i] >> (4 * h + g)) & 1) ? 0 : 4));
        int8_t sc[16];
        scales_q3_k(x->scales, sc);
        scale = fp16_to_fp32(x->d) * static_cast<float>(sc[sub]);
    } else {  // Q2_K
        const BlockQ2_K* x = reinterpret_cast<const BlockQ2_K*>(row) + b / 16;
        const uint8_t* qs = x->qs + 32 * h + l0;
        for (int i = 0; i < 16; ++i) q[i] = static_cast<int8_t>((qs[i] >> (2 * g)) & 3);
        scale = fp16_to_fp32(x->d) * static_cast<float>(x->scales[sub] & 15);
        mn = -fp16_to_fp32(x->dmin) * static_cast<float>(x->scales[sub] >> 4);
    }
}

#if defined(MINIGPT_AVX512)
#if defined(_MSC_VER)
#define MINIGPT_GEMM_INLINE __forceinline
#else
#define MINIGPT_GEMM_INLINE inline __attribute__((always_inline))
#endif
namespace avx512 {

// One 32-block of a weight row as 32 signed bytes, a scale and a min
// coefficient: value = scale * q + min.
MINIGPT_GEMM_INLINE __m256i unpack32(Type wt, const uint8_t* row, int64_t b, float& sc, float& mn) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    mn = 0.0f;
    switch (wt) {
        case Type::Q8_0: {
            const BlockQ8_0* x = reinterpret_cast<const BlockQ8_0*>(row) + b;
            sc = avx2::h2f(x->d);
            return load_q8(x->qs);
        }
        case Type::Q4_0: {
            const BlockQ4_0* x = reinterpret_cast<const BlockQ4_0*>(row) + b;
            sc = avx2::h2f(x->d);
            return _mm256_sub_epi8(nibbles_q4_0(x->qs), _mm256_set1_epi8(8));
        }
        case Type::Q4_1: {
            const BlockQ4_1* x = reinterpret_cast<const BlockQ4_1*>(row) + b;
            sc = avx2::h2f(x->d), mn = avx2::h2f(x->m);
            return nibbles_q4_0(x->qs);
        }
        case Type::Q5_0: {
            const BlockQ5_0* x = reinterpret_cast<const BlockQ5_0*>(row) + b;
            sc = avx2::h2f(x->d);
            const __m256i hi = _mm256_maskz_mov_epi8(static_cast<__mmask32>(load_u32(x->qh)), _mm256_set1_epi8(0x10));
            return _mm256_sub_epi8(_mm256_or_si256(nibbles_q4_0(x->qs), hi), _mm256_set1_epi8(16));
        }
        case Type::Q5_1: {
            const BlockQ5_1* x = reinterpret_cast<const BlockQ5_1*>(row) + b;
            sc = avx2::h2f(x->d), mn = avx2::h2f(x->m);
            const __m256i hi = _mm256_maskz_mov_epi8(static_cast<__mmask32>(load_u32(x->qh)), _mm256_set1_epi8(0x10));
            return _mm256_or_si256(nibbles_q4_0(x->qs), hi);
        }
        case Type::IQ4_NL: {
            const BlockIQ4_NL* x = reinterpret_cast<const BlockIQ4_NL*>(row) + b;
            sc = avx2::h2f(x->d);
            const __m256i table = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(kIQ4NLValues)));
            return _mm256_shuffle_epi8(table, nibbles_q4_0(x->qs));
        }
        case Type::Q4_K: case Type::Q5_K: {
            const KSubBlock k = k_sub_block(wt, row, b);
            sc = k.scale, mn = k.min;
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k.qs));
            __m256i q = _mm256_and_si256(k.shift ? _mm256_srli_epi16(v, 4) : v, m4);
            if (k.qh) {
                const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k.qh));
                const __mmask32 bit = _mm256_test_epi8_mask(h, _mm256_set1_epi8(static_cast<char>(1u << k.sub)));
                q = _mm256_or_si256(q, _mm256_maskz_mov_epi8(bit, _mm256_set1_epi8(0x10)));
            }
            return q;
        }
        default:  // not a 32-block type (gemm_kind never gives one here)
            sc = 0.0f;
            return _mm256_setzero_si256();
    }
}

// -128 * sum(q) of 16 or 32 signed bytes, through unsigned bytes: sum(q + 128) - 128 n.
inline int32_t neg128_sum(__m256i q) {
    const __m256i s4 = _mm256_sad_epu8(_mm256_xor_si256(q, _mm256_set1_epi8(-128)), _mm256_setzero_si256());
    const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
    return static_cast<int32_t>(-128 * (_mm_cvtsi128_si64(s2) + _mm_extract_epi64(s2, 1) - 32 * 128));
}

// Q6_K 16-block with SIMD (unpack_block16 is the reference).
inline __m128i unpack16_q6_k(const uint8_t* row, int64_t b, float& sc) {
    const int sub = static_cast<int>(b % 16), h = sub / 8, g = (sub % 8) / 2, l0 = 16 * (sub % 2);
    const BlockQ6_K* x = reinterpret_cast<const BlockQ6_K*>(row) + b / 16;
    const __m128i ql = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x->ql + 64 * h + 32 * (g & 1) + l0));
    const __m128i qh = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x->qh + 32 * h + l0));
    const __m128i lo = _mm_and_si128(_mm_srl_epi16(ql, _mm_cvtsi32_si128(4 * (g / 2))), _mm_set1_epi8(15));
    const __m128i hi = _mm_and_si128(_mm_srl_epi16(qh, _mm_cvtsi32_si128(2 * g)), _mm_set1_epi8(3));
    sc = avx2::h2f(x->d) * static_cast<float>(x->scales[sub]);
    return _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
}

// Eight weight rows (rows past `rows` are zero) unpacked into the int8 tile;
// instantiated per type so that the unpacking is inlined without a switch.
template <Type wt>
inline void gemm_tile_i8_t(const uint8_t* W, size_t w_row_bytes, int64_t n, int rows, uint8_t* T) {
    const int B = gemm_block(wt);
    const int64_t nb = n / B;
    const size_t tbb = tile_block_i8(B);
    for (int64_t b = 0; b < nb; ++b) {
        uint8_t* tb = T + static_cast<size_t>(b) * tbb;
        int32_t* corr = reinterpret_cast<int32_t*>(tb + kGemmRows * B);
        float* sc = reinterpret_cast<float*>(tb + kGemmRows * B + 32);
        float* mn = reinterpret_cast<float*>(tb + kGemmRows * B + 64);
        for (int r = 0; r < kGemmRows; ++r) {
            const uint8_t* row = W + static_cast<size_t>(r) * w_row_bytes;
            sc[r] = 0.0f, mn[r] = 0.0f;
            if (B == 32) {
                __m256i q = _mm256_setzero_si256();
                if (r < rows) q = unpack32(wt, row, b, sc[r], mn[r]);
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(tb + 32 * r), q);
                corr[r] = neg128_sum(q);
            } else {
                __m128i q = _mm_setzero_si128();
                if (r < rows && wt == Type::Q6_K) {
                    q = unpack16_q6_k(row, b, sc[r]);
                } else if (r < rows) {
                    alignas(16) int8_t t[16];
                    unpack_block16(wt, row, b, t, sc[r], mn[r]);
                    q = _mm_load_si128(reinterpret_cast<const __m128i*>(t));
                }
                _mm_storeu_si128(reinterpret_cast<__m128i*>(tb + 16 * r), q);
                corr[r] = neg128_sum(_mm256_zextsi128_si256(q));  // the zero upper half adds nothing
            }
        }
    }
}

inline void gemm_tile_i8(Type wt, const uint8_t* W, size_t w_row_bytes, int64_t n, int rows, uint8_t* T) {
    switch (wt) {
        case Type::Q8_0: gemm_tile_i8_t<Type::Q8_0>(W, w_row_bytes, n, rows, T); break;
        case Type::Q4_0: gemm_tile_i8_t<Type::Q4_0>(W, w_row_bytes, n, rows, T); break;
        case Type::Q4_1: gemm_tile_i8_t<Type::Q4_1>(W, w_row_bytes, n, rows, T); break;
        case Type::Q5_0: gemm_tile_i8_t<Type::Q5_0>(W, w_row_bytes, n, rows, T); break;
        case Type::Q5_1: gemm_tile_i8_t<Type::Q5_1>(W, w_row_bytes, n, rows, T); break;
        case Type::IQ4_NL: gemm_tile_i8_t<Type::IQ4_NL>(W, w_row_bytes, n, rows, T); break;
        case Type::Q2_K: gemm_tile_i8_t<Type::Q2_K>(W, w_row_bytes, n, rows, T); break;
        case Type::Q3_K: gemm_tile_i8_t<Type::Q3_K>(W, w_row_bytes, n, rows, T); break;
        case Type::Q4_K: gemm_tile_i8_t<Type::Q4_K>(W, w_row_bytes, n, rows, T); break;
        case Type::Q5_K: gemm_tile_i8_t<Type::Q5_K>(W, w_row_bytes, n, rows, T); break;
        case Type::Q6_K: gemm_tile_i8_t<Type::Q6_K>(W, w_row_bytes, n, rows, T); break;
        default: break;
    }
}

inline int32_t load_i32(const uint8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// The 8 x 16 results of a tile into Y (rows r < rows, columns c < cols):
// f[r] holds row r's 16 columns, and Y takes each column's 8 rows in a run,
// so the tile is transposed in registers (within each 128-bit lane, then
// across lanes) and stored 8 floats at a time. (Stored one float at a time,
// the tile's 128 values took a fifth of gemm_rows' time in prompt processing.)
inline void gemm_store(const __m512* f, int rows, int cols, float* Y, int64_t ldy) {
    static_assert(kGemmRows == 8 && kGemmCols == 16, "the transpose is for 8 x 16 tiles");
    // t: rows 2i and 2i + 1 interleaved; u[k], u[k + 4]: in lane L, column
    // 4L + k of rows 0..3 and 4..7.
    const __mmask16 all = 0xFFFF;  // zero-masking forms: see exp16
    __m512 t[8], u[8];
    for (int i = 0; i < 4; ++i) {
        t[2 * i] = _mm512_maskz_unpacklo_ps(all, f[2 * i], f[2 * i + 1]);
        t[2 * i + 1] = _mm512_maskz_unpackhi_ps(all, f[2 * i], f[2 * i + 1]);
    }
    for (int h = 0; h < 2; ++h) {
        const __m512* th = t + 4 * h;
        u[4 * h] = _mm512_maskz_shuffle_ps(all, th[0], th[2], 0x44);
        u[4 * h + 1] = _mm512_maskz_shuffle_ps(all, th[0], th[2], 0xEE);
        u[4 * h + 2] = _mm512_maskz_shuffle_ps(all, th[1], th[3], 0x44);
        u[4 * h + 3] = _mm512_maskz_shuffle_ps(all, th[1], th[3], 0xEE);
    }
    // Lanes 0 and 1 (2 and 3) of u[k] and u[k + 4]: columns k and 4 + k (8 + k
    // and 12 + k), rows 0..7 each.
    const __m512i lanes01 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i lanes23 = _mm512_add_epi32(lanes01, _mm512_set1_epi32(8));
    const __mmask8 m = static_cast<__mmask8>(rows >= 8 ? 0xFF : (1u << rows) - 1);
    auto put = [&](int c, __m256 v) {
        if (c < cols) _mm256_mask_storeu_ps(Y + c * ldy, m, v);
    };
    for (int k = 0; k < 4; ++k) {
        const __m512 a = _mm512_maskz_permutex2var_ps(all, u[k], lanes01, u[k + 4]);
        const __m512 b = _mm512_maskz_permutex2var_ps(all, u[k], lanes23, u[k + 4]);
        put(k, _mm512_maskz_extractf32x8_ps(__mmask8(0xFF), a, 0));
        put(4 + k, _mm512_maskz_extractf32x8_ps(__mmask8(0xFF), a, 1));
        put(8 + k, _mm512_maskz_extractf32x8_ps(__mmask8(0xFF), b, 0));
        put(12 + k, _mm512_maskz_extractf32x8_ps(__mmask8(0xFF), b, 1));
    }
}

template <int B, bool Min>
inline void gemm_kernel_i8(const uint8_t* T, const uint8_t* Pn, int64_t nb, __m512* out) {
    constexpr int G = B / 4;
    constexpr size_t tbb = static_cast<size_t>(kGemmRows) * B + 96, pbb = static_cast<size_t>(G) * 64 + 128;
    __m512 f[kGemmRows];  // local, so that the accumulators stay in registers
    MINIGPT_UNROLL(8)
    for (int r = 0; r < kGemmRows; ++r) f[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* tb = T + static_cast<size_t>(b) * tbb;
        const uint8_t* pb = Pn + static_cast<size_t>(b) * pbb;
        __m512i acc[kGemmRows];
        MINIGPT_UNROLL(8)
        for (int r = 0; r < kGemmRows; ++r) acc[r] = _mm512_set1_epi32(load_i32(tb + kGemmRows * B + 4 * r));
        MINIGPT_UNROLL(8)
        for (int g = 0; g < G; ++g) {
            const __m512i a = _mm512_load_si512(pb + 64 * g);
            MINIGPT_UNROLL(8)
            for (int r = 0; r < kGemmRows; ++r)
                acc[r] = _mm512_dpbusd_epi32(acc[r], a, _mm512_set1_epi32(load_i32(tb + B * r + 4 * g)));
        }
        const __m512 da = _mm512_load_ps(reinterpret_cast<const float*>(pb + 64 * G));
        const float* sc = reinterpret_cast<const float*>(tb + kGemmRows * B + 32);
        MINIGPT_UNROLL(8)
        for (int r = 0; r < kGemmRows; ++r)
            f[r] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(__mmask16(0xFFFF), acc[r]), _mm512_mul_ps(da, _mm512_set1_ps(sc[r])), f[r]);
        if constexpr (Min) {
            const __m512 sa = _mm512_load_ps(reinterpret_cast<const float*>(pb + 64 * G + 64));
            const float* mn = reinterpret_cast<const float*>(tb + kGemmRows * B + 64);
            MINIGPT_UNROLL(8)
            for (int r = 0; r < kGemmRows; ++r) f[r] = _mm512_fmadd_ps(sa, _mm512_set1_ps(mn[r]), f[r]);
        }
    }
    MINIGPT_UNROLL(8)
    for (int r = 0; r < kGemmRows; ++r) out[r] = f[r];
}

// The float kernels: 8 weight rows against one or two panels (Panels == 2:
// 32 activation rows share each weight broadcast, and the 16 accumulators
// hide the FMA latency that 8 leave exposed). Each step k reads 64 bytes of
// every panel: one value of 16 rows (F32) or a pair of bf16 values (BF16).
// Step gives the weight broadcast of row r at step k and the product.
struct GemmStepF32 {
    using Row = const float*;
    using Vec = __m512;
    static Vec load(const uint8_t* p) { return _mm512_load_ps(reinterpret_cast<const float*>(p)); }
    static Vec weight(Row row, int64_t k) { return _mm512_set1_ps(row[k]); }
    static __m512 madd(__m512 acc, Vec a, Vec w) { return _mm512_fmadd_ps(a, w, acc); }
};
#if defined(__AVX512BF16__)
struct GemmStepBF16 {
    using Row = const uint8_t*;
    using Vec = __m512bh;
    static Vec load(const uint8_t* p) { return (__m512bh)_mm512_load_si512(p); }
    static Vec weight(Row row, int64_t k) { return (__m512bh)_mm512_set1_epi32(load_i32(row + 4 * k)); }
    static __m512 madd(__m512 acc, Vec a, Vec w) { return _mm512_dpbf16_ps(acc, a, w); }
};
#endif

template <int Panels, class Step>
inline void gemm_kernel_float(const typename Step::Row* rows, const uint8_t* Pn, size_t panel_bytes, int64_t steps,
                              __m512* out) {
    __m512 f[Panels][kGemmRows];  // local, so that the accumulators stay in registers
    MINIGPT_UNROLL(8)
    for (int r = 0; r < kGemmRows; ++r)
        for (int q = 0; q < Panels; ++q) f[q][r] = _mm512_setzero_ps();
    const uint8_t* P1 = Pn + (Panels > 1 ? panel_bytes : 0);
    for (int64_t k = 0; k < steps; ++k) {
        const typename Step::Vec a0 = Step::load(Pn + 64 * k);
        const typename Step::Vec a1 = Step::load(P1 + 64 * k);
        MINIGPT_UNROLL(8)
        for (int r = 0; r < kGemmRows; ++r) {
            const typename Step::Vec wv = Step::weight(rows[r], k);
            f[0][r] = Step::madd(f[0][r], a0, wv);
            if (Panels > 1) f[Panels - 1][r] = Step::madd(f[Panels - 1][r], a1, wv);
        }
    }
    MINIGPT_UNROLL(8)
    for (int r = 0; r < kGemmRows; ++r)
        for (int q = 0; q < Panels; ++q) out[q * kGemmRows + r] = f[q][r];
}

// Weight rows [r0, r1) against all m packed activation rows.
inline void gemm_rows(Type wt, const void* W, size_t w_row_bytes, int64_t n, int64_t r0, int64_t r1, const uint8_t* P,
                      int64_t m, float* Y, int64_t ldy, uint8_t* tile) {
    const GemmKind kind = gemm_kind(wt, n);
    const uint8_t* w = static_cast<const uint8_t*>(W);
    const int64_t n_panels = (m + kGemmCols - 1) / kGemmCols;
    const size_t panel_bytes = gemm_panel_bytes(wt, n, kGemmCols);
    const bool has_min = wt == Type::Q4_1 || wt == Type::Q5_1 || wt == Type::Q2_K || wt == Type::Q4_K || wt == Type::Q5_K;
    __m512 f[2 * kGemmRows];
    for (int64_t rt = r0; rt < r1; rt += kGemmRows) {
        const int rows = static_cast<int>(std::min<int64_t>(kGemmRows, r1 - rt));
        const uint8_t* wr = w + static_cast<size_t>(rt) * w_row_bytes;
        const uint8_t* brow[kGemmRows];  // (read only by the BF16 kernel)
        const float* frow[kGemmRows];
#if !defined(__AVX512BF16__)
        (void)brow;
#endif
#if !defined(__AVX512VNNI__)
        (void)has_min;
#endif
        // The next tile's rows are requested now and arrive while this one's
        // panels are computed. (Unpacking a tile waited on its rows: 14% of
        // smollm2-135m Q8_0 prompt processing. Requested: pp128 1.054x with
        // 1 thread, 1.042x with 2; Q4_K 1.057x, F16 1.025x.)
        if (rt + kGemmRows < r1)
            request_lines(wr + kGemmRows * w_row_bytes, static_cast<size_t>(std::min<int64_t>(kGemmRows, r1 - rt - kGemmRows)) * w_row_bytes);
        if (kind == GemmKind::i8) {
            gemm_tile_i8(wt, wr, w_row_bytes, n, rows, tile);
        } else if (kind == GemmKind::bf16) {
            std::memset(tile, 0, static_cast<size_t>(n) * 2);
            for (int r = 0; r < kGemmRows; ++r) brow[r] = r < rows ? wr + static_cast<size_t>(r) * w_row_bytes : tile;
        } else {
            float* t = reinterpret_cast<float*>(tile);
            for (int r = 0; r < kGemmRows; ++r) {
                float* dst = t + static_cast<size_t>(r) * n;
                if (r >= rows) {
                    std::memset(dst, 0, static_cast<size_t>(n) * 4);
                } else if (wt == Type::F16) {
                    dequantize_row(Type::F16, wr + static_cast<size_t>(r) * w_row_bytes, dst, n);
                } else {
                    std::memcpy(dst, wr + static_cast<size_t>(r) * w_row_bytes, static_cast<size_t>(n) * 4);
                }
                frow[r] = dst;
            }
        }
        // The tile's results against panel p.
        auto store = [&](const __m512* acc, int64_t p) {
            const int cols = static_cast<int>(std::min<int64_t>(kGemmCols, m - p * kGemmCols));
            gemm_store(acc, rows, cols, Y + p * kGemmCols * ldy + rt, ldy);
        };
        int64_t p = 0;
        if (kind == GemmKind::f32 || kind == GemmKind::bf16) {  // pairs of panels
            for (; p + 2 <= n_panels; p += 2) {
                const uint8_t* Pn = P + static_cast<size_t>(p) * panel_bytes;
#if defined(__AVX512BF16__)
                if (kind == GemmKind::bf16) gemm_kernel_float<2, GemmStepBF16>(brow, Pn, panel_bytes, n / 2, f);
                else
#endif
                    gemm_kernel_float<2, GemmStepF32>(frow, Pn, panel_bytes, n, f);
                store(f, p);
                store(f + kGemmRows, p + 1);
            }
        }
        for (; p < n_panels; ++p) {
            const uint8_t* Pn = P + static_cast<size_t>(p) * panel_bytes;
            if (kind == GemmKind::i8) {
#if defined(__AVX512VNNI__)  // (gemm_kind gives i8 only there: the kernel is vpdpbusd)
                if (gemm_block(wt) == 16) {
                    if (has_min) gemm_kernel_i8<16, true>(tile, Pn, n / 16, f);
                    else gemm_kernel_i8<16, false>(tile, Pn, n / 16, f);
                } else {
                    if (has_min) gemm_kernel_i8<32, true>(tile, Pn, n / 32, f);
                    else gemm_kernel_i8<32, false>(tile, Pn, n / 32, f);
                }
#endif
            } else if (kind == GemmKind::bf16) {
#if defined(__AVX512BF16__)
                gemm_kernel_float<1, GemmStepBF16>(brow, Pn, panel_bytes, n / 2, f);
#endif
            } else {
                gemm_kernel_float<1, GemmStepF32>(frow, Pn, panel_bytes, n, f);
            }
            store(f, p);
        }
    }
}

}  // namespace avx512
#endif  // MINIGPT_AVX512

// For every weight row r in [r0, r1) and activation row j < m:
//   Y[j*ldy + r] = dot(W row r, A row j)
// with A packed by gemm_pack_panels; `tile` holds gemm_tile_bytes. Only for
// gemm_kind(wt, n) != none.
inline void gemm_rows(Type wt, const void* W, size_t w_row_bytes, int64_t n, int64_t r0, int64_t r1, const uint8_t* P,
                      int64_t m, float* Y, int64_t ldy, uint8_t* tile) {
#if defined(MINIGPT_AVX512)
    avx512::gemm_rows(wt, W, w_row_bytes, n, r0, r1, P, m, Y, ldy, tile);
#else
    (void)wt, (void)W, (void)w_row_bytes, (void)n, (void)r0, (void)r1, (void)P, (void)m, (void)Y, (void)ldy, (void)tile;
#endif
}

}  // namespace detail
MINIGPT_NS_END

// ---- quant_ref.hpp ----
// quant_ref: weight quantizers that give the same bytes as llama.cpp's
// reference quantizers (no importance matrix), and the model conversion used by
// minigpt-quantize.
//
// Bit-exactness depends on doing every float operation in the same order and
// precision as the reference, so fused multiply-add contraction is switched off
// for this part (GCC: an optimize pragma around it; clang: a pragma in each
// function body).

#include <functional>

#if defined(__clang__)
#  define MINIGPT_QREF_EXACT _Pragma("clang fp contract(off)")
#else
#  define MINIGPT_QREF_EXACT
#endif
#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC push_options
#  pragma GCC optimize("fp-contract=off")
#endif

MINIGPT_NS_BEGIN
namespace detail {
namespace qref {

constexpr int kQK = 32;        // elements per block of the 32-element types
constexpr int kQKK = 256;      // elements per K-quant super-block
constexpr float kGroupMaxEps = 1e-15f;

// The 16 levels of IQ4_NL.
constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

inline void put_f16(uint8_t* p, float v) {
    const uint16_t h = fp32_to_fp16(v);
    std::memcpy(p, &h, 2);
}
inline float get_f16(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return fp16_to_fp32(h);
}

// Round to nearest (ties to even) through the float mantissa: adding 1.5*2^23
// leaves the rounded integer in the low mantissa bits. Valid for |f| < 2^22.
inline int nearest_int(float f) {
    MINIGPT_QREF_EXACT
    const float v = f + 12582912.0f;
    int32_t i;
    std::memcpy(&i, &v, 4);
    return (i & 0x007FFFFF) - 0x00400000;
}

// C's float -> integer conversion (truncation toward zero), made total: values
// outside the int range (which finite, checked input never produces) saturate.
inline int trunc_int(float v) {
    if (!(v > -2147483520.0f)) return v < 0.0f ? -2147483647 : 0;
    if (!(v < 2147483520.0f)) return 2147483647;
    return static_cast<int>(v);
}

// ---------------------------------------------------------------------------
// 32-element types.
// ---------------------------------------------------------------------------

// Q4_0 (18 bytes: d, 16 bytes of nibbles).
inline void q4_0(const float* x, uint8_t* y, int64_t nb) {
    MINIGPT_QREF_EXACT
    for (int64_t i = 0; i < nb; ++i, x += kQK, y += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < kQK; ++j) {
            if (amax < std::fabs(x[j])) {
                amax = std::fabs(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(y, d);
        for (int j = 0; j < kQK / 2; ++j) {
            const float x0 = x[j] * id;
            const float x1 = x[kQK / 2 + j] * id;
            const int q0 = std::min(15, trunc_int(x0 + 8.5f));
            const int q1 = std::min(15, trunc_int(x1 + 8.5f));
            y[2 + j] = static_cast<uint8_t>((q0 & 0xFF) | ((q1 & 0xFF) << 4));
        }
    }
}

// Q4_1 (20 bytes: d, m, nibbles).
inline void q4_1(const float* x, uint8_t* y, int64_t nb) {
    MINIGPT_QREF_EXACT
    for (int64_t i = 0; i < nb; ++i, x += kQK, y += 20) {
        float min = std::numeric_limits<float>::max();
        float max = -std::numeric_limits<float>::max();
        for (int j = 0; j < kQK; ++j) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(y, d);
        put_f16(y + 2, min);
        for (int j = 0; j < kQK / 2; ++j) {
            const float x0 = (x[j] - min) * id;
            const float x1 = (x[kQK / 2 + j] - min) * id;
            const int q0 = std::min(15, trunc_int(x0 + 0.5f));
            const int q1 = std::min(15, trunc_int(x1 + 0.5f));
            y[4 + j] = static_cast<uint8_t>((q0 & 0xFF) | ((q1 & 0xFF) << 4));
        }
    }
}

// Q5_0 (22 bytes: d, 32 high bits, nibbles).
inline void q5_0(const float* x, uint8_t* y, int64_t nb) {
    MINIGPT_QREF_EXACT
    for (int64_t i = 0; i < nb; ++i, x += kQK, y += 22) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < kQK; ++j) {
            if (amax < std::fabs(x[j])) {
                amax = std::fabs(x[j]);
                max = x[j];
            }
        }
        const float d = max / -16.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(y, d);
        uint32_t qh = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            const float x0 = x[j] * id;
            const float x1 = x[kQK / 2 + j] * id;
            const uint32_t q0 = static_cast<uint32_t>(std::min(31, trunc_int(x0 + 16.5f))) & 0xFFu;
            const uint32_t q1 = static_cast<uint32_t>(std::min(31, trunc_int(x1 + 16.5f))) & 0xFFu;
            y[6 + j] = static_cast<uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= ((q0 & 0x10u) >> 4) << j;
            qh |= ((q1 & 0x10u) >> 4) << (j + kQK / 2);
        }
        std::memcpy(y + 2, &qh, 4);
    }
}

// Q5_1 (24 bytes: d, m, 32 high bits, nibbles).
inline void q5_1(const float* x, uint8_t* y, int64_t nb) {
    MINIGPT_QREF_EXACT
    for (int64_t i = 0; i < nb; ++i, x += kQK, y += 24) {
        float min = std::numeric_limits<float>::max();
        float max = -std::numeric_limits<float>::max();
        for (int j = 0; j < kQK; ++j) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 31.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(y, d);
        put_f16(y + 2, min);
        uint32_t qh = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            const float x0 = (x[j] - min) * id;
            const float x1 = (x[kQK / 2 + j] - min) * id;
            const uint32_t q0 = static_cast<uint32_t>(trunc_int(x0 + 0.5f)) & 0xFFu;
            const uint32_t q1 = static_cast<uint32_t>(trunc_int(x1 + 0.5f)) & 0xFFu;
            y[8 + j] = static_cast<uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= ((q0 & 0x10u) >> 4) << j;
            qh |= ((q1 & 0x10u) >> 4) << (j + kQK / 2);
        }
        std::memcpy(y + 4, &qh, 4);
    }
}

// Q8_0 (34 bytes: d, 32 signed bytes). Unlike the activation quantizer in
// quant.hpp, the reference rounds half away from zero.
inline void q8_0(const float* x, uint8_t* y, int64_t nb) {
    MINIGPT_QREF_EXACT
    for (int64_t i = 0; i < nb; ++i, x += kQK, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(y, d);
        for (int j = 0; j < kQK; ++j) {
            const int q = std::max(-128, std::min(127, trunc_int(std::round(x[j] * id))));
            y[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(q));
        }
    }
}

// Index of the level nearest to v in a sorted table of n (a power of two)
// levels; a value exactly half-way goes to the upper level. The comparison is
// made on doubled values, which is exact.
inline int best_index_int8(int n, const int8_t* val, float v) {
    MINIGPT_QREF_EXACT
    const float v2 = v + v;
    int idx = 0;
    for (int step = n >> 1; step > 0; step >>= 1) {
        const int j = idx + step;
        idx = (v2 >= static_cast<float>(val[j - 1] + val[j])) ? j : idx;
    }
    return idx;
}

// IQ4_NL (18 bytes: d, nibbles that index kIq4nlValues), as llama.cpp's
// quantize_iq4_nl without an importance matrix: weights x^2 and a search over
// 15 candidate scales.
inline void iq4_nl(const float* x, uint8_t* y, int64_t nb) {
    MINIGPT_QREF_EXACT
    const int8_t* values = kIq4nlValues;
    const int ntry = 7;
    for (int64_t ib = 0; ib < nb; ++ib, x += kQK, y += 18) {
        float weight[kQK];
        uint8_t L[kQK];
        for (int j = 0; j < kQK; ++j) weight[j] = x[j] * x[j];
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < kQK; ++j) {
            const float ax = std::fabs(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        float scale = 0.0f;
        if (!(amax < kGroupMaxEps)) {
            float d = -max / static_cast<float>(values[0]);
            float id = 1.0f / d;
            float sumqx = 0.0f, sumq2 = 0.0f;
            for (int j = 0; j < kQK; ++j) {
                const float al = id * x[j];
                const int l = best_index_int8(16, values, al);
                const float q = values[l];
                const float w = weight[j];
                sumqx += w * q * x[j];
                sumq2 += w * q * q;
            }
            d = sumq2 > 0.0f ? sumqx / sumq2 : 0.0f;
            float best = d * sumqx;
            for (int itry = -ntry; itry <= ntry; ++itry) {
                id = static_cast<float>(itry + values[0]) / max;
                sumqx = sumq2 = 0.0f;
                for (int j = 0; j < kQK; ++j) {
                    const float al = id * x[j];
                    const int l = best_index_int8(16, values, al);
                    const float q = values[l];
                    const float w = weight[j];
                    sumqx += w * q * x[j];
                    sumq2 += w * q * q;
                }
                if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
                    d = sumqx / sumq2;
                    best = d * sumqx;
                }
            }
            scale = d;
        }
        put_f16(y, scale);
        const float id = scale != 0.0f ? 1.0f / scale : 0.0f;
        for (int j = 0; j < kQK; ++j) L[j] = static_cast<uint8_t>(best_index_int8(16, values, id * x[j]));
        for (int j = 0; j < 16; ++j) y[2 + j] = static_cast<uint8_t>(L[j] | (L[16 + j] << 4));
    }
}

// ---------------------------------------------------------------------------
// K-quant helpers.
// ---------------------------------------------------------------------------

// Symmetric levels in [-nmax, nmax-1] with x^2 weights and a search over 19
// scales (make_qx_quants with rmse_type 1 and no importance weights). L gets
// the levels offset by nmax.
inline float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
    MINIGPT_QREF_EXACT
    float max = 0.0f, amax = 0.0f;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.0f;
    }
    float iscale = static_cast<float>(-nmax) / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = std::max(-nmax, std::min(nmax - 1, l));
        L[i] = static_cast<int8_t>(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * static_cast<float>(l);
        suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
        sumlx = suml2 = 0.0f;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * x[i]);
            l = std::max(-nmax, std::min(nmax - 1, l));
            const float w = x[i] * x[i];
            sumlx += w * x[i] * static_cast<float>(l);
            suml2 += w * static_cast<float>(l) * static_cast<float>(l);
        }
        if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                const int l = nearest_int(iscale * x[i]);
                L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// Symmetric 3-bit levels refined by coordinate descent (make_q3_quants with
// do_rmse). L gets the levels offset by nmax.
inline float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
    MINIGPT_QREF_EXACT
    float max = 0.0f, amax = 0.0f;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.0f;
    }
    const float iscale = static_cast<float>(-nmax) / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = std::max(-nmax, std::min(nmax - 1, l));
        L[i] = static_cast<int8_t>(l);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * static_cast<float>(l);
        suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i];
            const float li = static_cast<float>(L[i]);
            float slx = sumlx - w * x[i] * li;
            if (slx > 0.0f) {
                float sl2 = suml2 - w * li * li;
                int new_l = nearest_int(x[i] * sl2 / slx);
                new_l = std::max(-nmax, std::min(nmax - 1, new_l));
                if (new_l != L[i]) {
                    const float nl = static_cast<float>(new_l);
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = static_cast<int8_t>(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Asymmetric levels [0, nmax] with a minimum: a weighted least-squares fit
// tried at nstep+1 scales (make_qkx2_quants). Returns the scale; *the_min gets
// the (non-negative) offset to subtract.
inline float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                              uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
    MINIGPT_QREF_EXACT
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0.0f) min = 0.0f;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.0f;
    }
    float iscale = static_cast<float>(nmax) / (max - min);
    float scale = 1.0f / iscale;
    float best_error = 0.0f;
    for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
        float diff = scale * static_cast<float>(L[i]) + min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * (x[i] - min));
            l = std::max(0, std::min(nmax, l));
            Laux[i] = static_cast<uint8_t>(l);
            const float w = weights[i];
            const float fl = static_cast<float>(l);
            sum_l += w * fl;
            sum_l2 += w * fl * fl;
            sum_xl += w * fl * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0.0f) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0.0f) {
                this_min = 0.0f;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0.0f;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
                diff = use_mad ? std::fabs(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

// The 6-bit scale and min of sub-block j from the 12 packed bytes of Q4_K/Q5_K.
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// ---------------------------------------------------------------------------
// K-quants (256-element super-blocks).
// ---------------------------------------------------------------------------

// Q2_K (84 bytes: scales[16] (low nibble scale, high nibble min), qs[64], d, dmin).
inline void q2_K(const float* x, uint8_t* y, int64_t nb) {
    MINIGPT_QREF_EXACT
    for (int64_t i = 0; i < nb; ++i, x += kQKK, y += 84) {
        uint8_t L[kQKK], Laux[16];
        float weights[16], mins[16], scales[16];
        uint8_t* sc = y;
        uint8_t* qs = y + 16;
        float max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0.0f) {
            const float iscale = 15.0f / max_scale;
            for (int j = 0; j < 16; ++j) sc[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
            put_f16(y + 80, max_scale / 15.0f);
        } else {
            for (int j = 0; j < 16; ++j) sc[j] = 0;
            put_f16(y + 80, 0.0f);
        }
        if (max_min > 0.0f) {
            const float iscale = 15.0f / max_min;
            for (int j = 0; j < 16; ++j) sc[j] = static_cast<uint8_t>(sc[j] | (nearest_int(iscale * mins[j]) << 4));
            put_f16(y + 82, max_min / 15.0f);
        } else {
            put_f16(y + 82, 0.0f);
        }
        const float dd = get_f16(y + 80), dmin = get_f16(y + 82);
        for (int j = 0; j < 16; ++j) {
            const float d = dd * static_cast<float>(sc[j] & 0xF);
            if (d == 0.0f) continue;
            const float dm = dmin * static_cast<float>(sc[j] >> 4);
            for (int ii = 0; ii < 16; ++ii) {
                const int l = nearest_int((x[16 * j + ii] + dm) / d);
                L[16 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(3, l)));
            }
        }
        for (int j = 0; j < kQKK; j += 128) {
            for (int l = 0; l < 32; ++l) {
                qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                                     (L[j + l + 96] << 6));
            }
        }
    }
}

// Q3_K (110 bytes: hmask[32], qs[64], scales[12] (6-bit, offset 32), d).
inline void q3_K(const float* x, uint8_t* y, int64_t nb) {
    MINIGPT_QREF_EXACT
    for (int64_t i = 0; i < nb; ++i, x += kQKK, y += 110) {
        int8_t L[kQKK];
        float scales[16];
        uint8_t* hmask = y;
        uint8_t* qs = y + 32;
        uint8_t* sc = y + 96;
        float max_scale = 0.0f, amax = 0.0f;
        for (int j = 0; j < 16; ++j) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            const float scale = std::fabs(scales[j]);
            if (scale > amax) {
                amax = scale;
                max_scale = scales[j];
            }
        }
        std::memset(sc, 0, 12);
        if (max_scale != 0.0f) {
            const float iscale = -32.0f / max_scale;
            for (int j = 0; j < 16; ++j) {
                int l = static_cast<int8_t>(nearest_int(iscale * scales[j]));
                l = std::max(-32, std::min(31, l)) + 32;
                if (j < 8) {
                    sc[j] = static_cast<uint8_t>(l & 0xF);
                } else {
                    sc[j - 8] = static_cast<uint8_t>(sc[j - 8] | ((l & 0xF) << 4));
                }
                l >>= 4;
                sc[j % 4 + 8] = static_cast<uint8_t>(sc[j % 4 + 8] | (l << (2 * (j / 4))));
            }
            put_f16(y + 108, 1.0f / iscale);
        } else {
            put_f16(y + 108, 0.0f);
        }
        const float dd = get_f16(y + 108);
        for (int j = 0; j < 16; ++j) {
            int s = j < 8 ? (sc[j] & 0xF) : (sc[j - 8] >> 4);
            s = (s | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
            const float d = dd * static_cast<float>(s);
            if (d == 0.0f) continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = nearest_int(x[16 * j + ii] / d);
                l = std::max(-4, std::min(3, l));
                L[16 * j + ii] = static_cast<int8_t>(l + 4);
            }
        }
        std::memset(hmask, 0, 32);
        int m = 0;
        uint8_t hm = 1;
        for (int j = 0; j < kQKK; ++j) {
            if (L[j] > 3) {
                hmask[m] = static_cast<uint8_t>(hmask[m] | hm);
                L[j] = static_cast<int8_t>(L[j] - 4);
            }
            if (++m == 32) {
                m = 0;
                hm = static_cast<uint8_t>(hm << 1);
            }
        }
        for (int j = 0; j < kQKK; j += 128) {
            for (int l = 0; l < 32; ++l) {
                qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                                     (L[j + l + 96] << 6));
            }
        }
    }
}

// Shared by Q4_K and Q5_K: eight 32-element sub-blocks fitted with a scale and
// a min, then both quantized to 6 bits and packed into 12 bytes. Fills L with
// levels in [0, nmax] and writes d (y[0..1]), dmin (y[2..3]) and scales (y[4..15]).
inline void qk_scales_mins(const float* x, uint8_t* y, uint8_t* L, int nmax, float rmin, float rdelta, int nstep) {
    MINIGPT_QREF_EXACT
    uint8_t Laux[32];
    float weights[32], mins[8], scales[8];
    uint8_t* sc = y + 4;
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; ++j) {
        float sum_x2 = 0.0f;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = std::sqrt(sum_x2 / 32.0f);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    for (int j = 0; j < 8; ++j) {
        uint8_t ls = static_cast<uint8_t>(nearest_int(inv_scale * scales[j]));
        uint8_t lm = static_cast<uint8_t>(nearest_int(inv_min * mins[j]));
        ls = std::min<uint8_t>(63, ls);
        lm = std::min<uint8_t>(63, lm);
        if (j < 4) {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
            sc[j - 4] = static_cast<uint8_t>(sc[j - 4] | ((ls >> 4) << 6));
            sc[j] = static_cast<uint8_t>(sc[j] | ((lm >> 4) << 6));
        }
    }
    put_f16(y, max_scale / 63.0f);
    put_f16(y + 2, max_min / 63.0f);
    const float dd = get_f16(y), dmin = get_f16(y + 2);
    for (int j = 0; j < 8; ++j) {
        uint8_t s, m;
        get_scale_min_k4(j, sc, &s, &m);
        const float d = dd * static_cast<float>(s);
        if (d == 0.0f) continue;
        const float dm = dmin * static_cast<float>(m);
        for (int ii = 0; ii < 32; ++ii) {
            const int l = nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
        }
    }
}

// Q4_K (144 bytes: d, dmin, scales[12], qs[128]).
inline void q4_K(const float* x, uint8_t* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQKK, y += 144) {
        uint8_t L[kQKK];
        qk_scales_mins(x, y, L, 15, -1.0f, 0.1f, 20);
        uint8_t* q = y + 16;
        for (int j = 0; j < kQKK; j += 64, q += 32) {
            for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
        }
    }
}

// Q5_K (176 bytes: d, dmin, scales[12], qh[32], qs[128]).
inline void q5_K(const float* x, uint8_t* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += kQKK, y += 176) {
        uint8_t L[kQKK];
        qk_scales_mins(x, y, L, 31, -0.5f, 0.1f, 15);
        uint8_t* qh = y + 16;
        uint8_t* ql = y + 48;
        std::memset(qh, 0, 32);
        uint8_t m1 = 1, m2 = 2;
        for (int n = 0; n < kQKK; n += 64, ql += 32) {
            for (int j = 0; j < 32; ++j) {
                int l1 = L[n + j];
                if (l1 > 15) {
                    l1 -= 16;
                    qh[j] = static_cast<uint8_t>(qh[j] | m1);
                }
                int l2 = L[n + j + 32];
                if (l2 > 15) {
                    l2 -= 16;
                    qh[j] = static_cast<uint8_t>(qh[j] | m2);
                }
                ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
            }
            m1 = static_cast<uint8_t>(m1 << 2);
            m2 = static_cast<uint8_t>(m2 << 2);
        }
    }
}

// Q6_K (210 bytes: ql[128], qh[64], scales[16] (int8), d).
inline void q6_K(const float* x, uint8_t* y, int64_t nb) {
    MINIGPT_QREF_EXACT
    for (int64_t i = 0; i < nb; ++i, x += kQKK, y += 210) {
        int8_t L[kQKK];
        float scales[16];
        float max_scale = 0.0f, max_abs_scale = 0.0f;
        for (int ib = 0; ib < 16; ++ib) {
            const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            const float abs_scale = std::fabs(scale);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }
        if (max_abs_scale < kGroupMaxEps) {
            std::memset(y, 0, 210);
            continue;
        }
        int8_t* sc = reinterpret_cast<int8_t*>(y + 192);
        const float iscale = -128.0f / max_scale;
        put_f16(y + 208, 1.0f / iscale);
        for (int ib = 0; ib < 16; ++ib) sc[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
        const float dd = get_f16(y + 208);
        for (int j = 0; j < 16; ++j) {
            const float d = dd * static_cast<float>(sc[j]);
            if (d == 0.0f) continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = nearest_int(x[16 * j + ii] / d);
                l = std::max(-32, std::min(31, l));
                L[16 * j + ii] = static_cast<int8_t>(l + 32);
            }
        }
        uint8_t* ql = y;
        uint8_t* qh = y + 128;
        for (int j = 0; j < kQKK; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; ++l) {
                const int q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF;
                const int q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
                ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
                qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                             ((L[j + l + 96] >> 4) << 6));
            }
        }
    }
}

}  // namespace qref

// Types quantize_weights can produce.
inline bool quantize_weights_supported(Type t) {
    switch (t) {
        case Type::F32: case Type::F16: case Type::BF16: case Type::Q8_0: case Type::Q4_0: case Type::Q4_1:
        case Type::Q5_0: case Type::Q5_1: case Type::Q2_K: case Type::Q3_K: case Type::Q4_K: case Type::Q5_K:
        case Type::Q6_K: case Type::IQ4_NL:
            return true;
        default:
            return false;
    }
}

// Converts n_rows rows of n_per_row floats to type t, exactly as llama.cpp's
// llama-quantize does without an importance matrix. y receives
// n_rows * row_bytes(t, n_per_row) bytes.
inline Status quantize_weights(Type t, const float* x, void* y, int64_t n_rows, int64_t n_per_row) {
    if (!quantize_weights_supported(t))
        return error(StatusCode::unsupported, "quantizing to %s is not supported", type_name(t));
    if (n_rows < 0 || n_per_row < 0)
        return error(StatusCode::invalid_argument, "quantize: negative shape %lld x %lld", (long long)n_rows,
                     (long long)n_per_row);
    const TypeInfo ti = type_info(t);
    if (n_per_row % ti.block_size != 0)
        return error(StatusCode::invalid_argument, "quantize: row length %lld is not a multiple of the %s block size %lld",
                     (long long)n_per_row, ti.name, (long long)ti.block_size);
    uint64_t n = 0;
    if (mul_overflows(static_cast<uint64_t>(n_rows), static_cast<uint64_t>(n_per_row), &n) || n > (uint64_t(1) << 50))
        return error(StatusCode::invalid_argument, "quantize: element count overflows");
    if (n == 0) return Status();
    if (!x || !y) return error(StatusCode::invalid_argument, "quantize: null buffer");
    const bool is_float = t == Type::F32 || t == Type::F16 || t == Type::BF16;
    if (!is_float) {
        // The block quantizers convert scaled values to integers; NaN or inf
        // would make those conversions meaningless.
        for (uint64_t i = 0; i < n; ++i) {
            if (!std::isfinite(x[i]))
                return error(StatusCode::invalid_argument, "quantize: value %llu (row %llu) is not finite",
                             (unsigned long long)i, (unsigned long long)(i / static_cast<uint64_t>(n_per_row)));
        }
    }
    uint8_t* out = static_cast<uint8_t*>(y);
    const int64_t nb = static_cast<int64_t>(n / static_cast<uint64_t>(ti.block_size));
    switch (t) {
        case Type::F32: std::memcpy(out, x, static_cast<size_t>(n) * 4); break;
        case Type::F16:
            for (uint64_t i = 0; i < n; ++i) {
                const uint16_t h = fp32_to_fp16(x[i]);
                std::memcpy(out + 2 * i, &h, 2);
            }
            break;
        case Type::BF16:
            for (uint64_t i = 0; i < n; ++i) {
                const uint16_t h = fp32_to_bf16(x[i]);
                std::memcpy(out + 2 * i, &h, 2);
            }
            break;
        case Type::Q4_0: qref::q4_0(x, out, nb); break;
        case Type::Q4_1: qref::q4_1(x, out, nb); break;
        case Type::Q5_0: qref::q5_0(x, out, nb); break;
        case Type::Q5_1: qref::q5_1(x, out, nb); break;
        case Type::Q8_0: qref::q8_0(x, out, nb); break;
        case Type::IQ4_NL: qref::iq4_nl(x, out, nb); break;
        case Type::Q2_K: qref::q2_K(x, out, nb); break;
        case Type::Q3_K: qref::q3_K(x, out, nb); break;
        case Type::Q4_K: qref::q4_K(x, out, nb); break;
        case Type::Q5_K: qref::q5_K(x, out, nb); break;
        case Type::Q6_K: qref::q6_K(x, out, nb); break;
        default: return error(StatusCode::internal, "quantize: unhandled type %s", type_name(t));
    }
    return Status();
}

// ---------------------------------------------------------------------------
// Whole-model quantization (minigpt-quantize).
// ---------------------------------------------------------------------------

// llama.cpp's llama_ftype number for a file whose weights are mostly of type t
// (the K-quants map to their _M mixtures); -1 when t is not a target type.
inline int quant_ftype_of(Type t) {
    switch (t) {
        case Type::F32: return 0;
        case Type::F16: return 1;
        case Type::Q4_0: return 2;
        case Type::Q4_1: return 3;
        case Type::Q8_0: return 7;
        case Type::Q5_0: return 8;
        case Type::Q5_1: return 9;
        case Type::Q2_K: return 10;
        case Type::Q3_K: return 12;
        case Type::Q4_K: return 15;
        case Type::Q5_K: return 17;
        case Type::Q6_K: return 18;
        case Type::IQ4_NL: return 25;
        case Type::BF16: return 32;
        default: return -1;
    }
}

// Parses a target type name (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K
// Q4_K Q5_K Q6_K IQ4_NL), ignoring case.
inline bool parse_quant_type(std::string_view s, Type& out) {
    static const Type targets[] = {Type::F32,  Type::F16,  Type::BF16, Type::Q8_0, Type::Q4_0,
                                   Type::Q4_1, Type::Q5_0, Type::Q5_1, Type::Q2_K, Type::Q3_K,
                                   Type::Q4_K, Type::Q5_K, Type::Q6_K, Type::IQ4_NL};
    for (Type t : targets) {
        const char* n = type_name(t);
        if (std::strlen(n) != s.size()) continue;
        bool same = true;
        for (size_t i = 0; i < s.size() && same; ++i) {
            char c = s[i];
            if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
            same = c == n[i];
        }
        if (same) {
            out = t;
            return true;
        }
    }
    return false;
}

// What quantize_model did with one tensor, for progress output.
struct QuantizeTensorReport {
    std::string name;
    int n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};
    Type type_in = Type::F32;
    Type type_out = Type::F32;
    uint64_t bytes_in = 0;
    uint64_t bytes_out = 0;
    int index = 0;   // 0-based position in the output file
    int count = 0;   // number of tensors
};

namespace qref {

// llama.cpp's rule for which tensors are quantized at all: weights of two or
// more dimensions, except norms, positional / token-type embeddings and a few
// small special-purpose tensors.
inline bool tensor_allows_quantization(const GgufTensor& t) {
    if (t.n_dims < 2) return false;
    const std::string& n = t.name;
    if (n.size() < 6 || n.compare(n.size() - 6, 6, "weight") != 0) return false;
    static const char* const excluded[] = {
        "_norm.weight", "ffn_gate_inp.weight", "altup", "laurel", "per_layer_model_proj", "ssm_conv1d",
        "shortconv.conv.weight", "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight",
        "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
        "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
        "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight",
        ".position_embd", ".rel_pos", ".patch_embd", ".patch_merger"};
    for (const char* e : excluded) {
        if (n.find(e) != std::string::npos) return false;
    }
    return n != "position_embd.weight" && n != "token_types.weight";
}

// The layer of "blk.N...." names, -1 for the others (llama.cpp's tensor order
// is by this number, then by name).
inline int tensor_layer(const std::string& name) {
    if (name.compare(0, 4, "blk.") != 0) return -1;
    size_t i = 4;
    long v = 0;
    if (i >= name.size() || name[i] < '0' || name[i] > '9') return -1;
    while (i < name.size() && name[i] >= '0' && name[i] <= '9' && v < 100000000) v = v * 10 + (name[i++] - '0');
    if (i >= name.size() || name[i] != '.') return -1;
    return static_cast<int>(v);
}

enum class Category { token_embd, attn_q, attn_v, attn_k, attn_qkv, attn_kv_b, attn_output, ffn_up, ffn_gate,
                      ffn_down, output, other };

inline Category tensor_category(const std::string& n) {
    auto has = [&n](const char* s) { return n.find(s) != std::string::npos; };
    if (n == "output.weight") return Category::output;
    if (n == "token_embd.weight" || n == "per_layer_token_embd.weight") return Category::token_embd;
    if (has("attn_qkv.weight")) return Category::attn_qkv;
    if (has("attn_kv_b.weight")) return Category::attn_kv_b;
    if (has("attn_v.weight")) return Category::attn_v;
    if (has("attn_k.weight")) return Category::attn_k;
    if (has("attn_q.weight")) return Category::attn_q;
    if (has("attn_output.weight")) return Category::attn_output;
    if (has("ffn_up")) return Category::ffn_up;
    if (has("ffn_gate")) return Category::ffn_gate;
    if (has("ffn_down")) return Category::ffn_down;
    return Category::other;
}

// Model facts the mixture rules look at.
struct MixState {
    int ftype = 0;
    bool falcon = false;
    bool tied = true;          // no output.weight: token_embd doubles as the output
    int n_gqa = 1;
    int n_expert = 1;
    int n_layer = 0;
    int n_attention_wv = 0;
    int i_attention_wv = 0;
    int i_ffn_down = 0;
};

inline bool use_more_bits(int i_layer, int n_layers) {
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

// llama.cpp's default mixture for the file types minigpt-quantize offers
// (Q2_K, Q3_K_M, Q4_K_M, Q5_K_M, Q6_K and the 32-element types).
inline Type mixture_type(MixState& s, Type new_type, const GgufTensor& t, Category cat) {
    enum { Q2_K = 10, Q3_K_M = 12, Q4_K_M = 15, Q5_K_M = 17, IQ4_NL = 25 };
    const int ft = s.ftype;
    if (cat == Category::output || (s.tied && cat == Category::token_embd)) {
        if (s.falcon || t.ne[0] % type_info(new_type).block_size != 0) return Type::Q8_0;
        return new_type != Type::Q8_0 ? Type::Q6_K : new_type;
    }
    if (cat == Category::token_embd) return new_type;
    if (cat == Category::attn_v || cat == Category::attn_qkv || cat == Category::attn_kv_b) {
        if (ft == Q2_K) new_type = s.n_gqa >= 4 ? Type::Q4_K : Type::Q3_K;
        else if (ft == Q3_K_M) new_type = s.i_attention_wv < 2 ? Type::Q5_K : Type::Q4_K;
        else if (ft == IQ4_NL && s.n_gqa >= 4) new_type = Type::Q5_K;
        else if ((ft == Q4_K_M || ft == Q5_K_M) && use_more_bits(s.i_attention_wv, s.n_attention_wv)) new_type = Type::Q6_K;
        if (s.n_expert == 8) new_type = Type::Q8_0;
        ++s.i_attention_wv;
        return new_type;
    }
    if (cat == Category::attn_k) return s.n_expert == 8 ? Type::Q8_0 : new_type;
    if (cat == Category::ffn_down) {
        int i_layer = s.i_ffn_down;
        const int n_layer = s.n_layer;
        if (s.n_expert > 1) i_layer = tensor_layer(t.name);
        if (ft == Q2_K) new_type = Type::Q3_K;
        else if (ft == Q3_K_M)
            new_type = i_layer < n_layer / 16 ? Type::Q5_K
                       : (!s.falcon || use_more_bits(i_layer, n_layer)) ? Type::Q4_K : Type::Q3_K;
        else if (ft == Q4_K_M) {
            if (s.falcon) new_type = i_layer < n_layer / 16 ? Type::Q6_K : use_more_bits(i_layer, n_layer) ? Type::Q5_K : Type::Q4_K;
            else if (use_more_bits(i_layer, n_layer)) new_type = Type::Q6_K;
        } else if (i_layer < n_layer / 8 && ft == IQ4_NL) new_type = Type::Q5_K;
        else if (ft == Q5_K_M && use_more_bits(i_layer, n_layer)) new_type = Type::Q6_K;
        ++s.i_ffn_down;
        return new_type;
    }
    if (cat == Category::attn_output) {
        if (!s.falcon) {
            if (s.n_expert == 8) {
                if (ft == Q2_K || ft == Q3_K_M || ft == IQ4_NL || ft == Q4_K_M) new_type = Type::Q5_K;
            } else {
                if (ft == Q2_K) new_type = Type::Q3_K;
                else if (ft == Q3_K_M) new_type = Type::Q4_K;
            }
        }
        return new_type;
    }
    return new_type;
}

// llama.cpp's fallback for rows that do not fit the chosen type's block.
inline Type fallback_type(const GgufTensor& t, Type target) {
    if (t.ne[0] % type_info(target).block_size == 0) return target;
    Type r;
    switch (target) {
        case Type::Q2_K: case Type::Q3_K: r = Type::Q4_0; break;
        case Type::Q4_K: r = Type::Q5_0; break;
        case Type::Q5_K: r = Type::Q5_1; break;
        case Type::Q6_K: r = Type::Q8_0; break;
        default: r = Type::F16; break;  // the 32-element types (llama.cpp has no fallback for them)
    }
    if (t.ne[0] % type_info(r).block_size != 0) r = Type::F16;
    return r;
}

}  // namespace qref

// Quantizes every weight of `in` to t (llama.cpp's --pure when `pure`, else
// its default mixture for the file type of t) and adds metadata and tensors to
// `out`, in llama.cpp's tensor order. Tensors that are not quantized (norms,
// biases, 1-D tensors) are copied unchanged. Inputs must be F32, F16 or BF16
// for the tensors that change type. `out` owns copies of everything it gets.
inline Status quantize_model(const GgufFile& in, Type t, bool pure, GgufWriter& out,
                             const std::function<void(const QuantizeTensorReport&)>& on_tensor = nullptr) {
    const int ftype = quant_ftype_of(t);
    if (ftype < 0) return error(StatusCode::unsupported, "quantize: %s is not a target type", type_name(t));

    for (const GgufKV& kv : in.kvs) {
        if (kv.key == "split.no" || kv.key == "split.count" || kv.key == "split.tensors.count") continue;
        Status st = out.copy_kv(in, kv);
        if (!st.ok()) return st;
    }
    out.set_u32("general.quantization_version", 2);
    out.set_u32("general.file_type", static_cast<uint32_t>(ftype));

    qref::MixState ms;
    ms.ftype = ftype;
    Status st;
    std::string_view arch;
    if (in.get_string("general.architecture", arch, st)) {
        ms.falcon = arch == "falcon";
        const std::string a(arch);
        int64_t v = 0, heads = 0;
        Status ignore;
        if (in.get_int(a + ".block_count", v, ignore) && v > 0 && v < (1 << 20)) ms.n_layer = static_cast<int>(v);
        if (in.get_int(a + ".expert_count", v, ignore) && v > 1 && v < (1 << 20)) ms.n_expert = static_cast<int>(v);
        if (in.get_int(a + ".attention.head_count", heads, ignore) && heads > 0 &&
            in.get_int(a + ".attention.head_count_kv", v, ignore) && v > 0 && heads % v == 0 && heads / v < (1 << 20))
            ms.n_gqa = static_cast<int>(heads / v);
    } else if (!st.ok()) {
        return st;
    }

    std::vector<size_t> order(in.tensors.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        const std::string& na = in.tensors[a].name;
        const std::string& nb = in.tensors[b].name;
        const int la = qref::tensor_layer(na), lb = qref::tensor_layer(nb);
        if (la != lb) return la < lb;
        return na < nb;
    });
    int n_ffn_down = 0;
    for (const GgufTensor& tt : in.tensors) {
        const qref::Category c = qref::tensor_category(tt.name);
        if (c == qref::Category::attn_v || c == qref::Category::attn_qkv || c == qref::Category::attn_kv_b) ++ms.n_attention_wv;
        if (c == qref::Category::ffn_down) ++n_ffn_down;
        if (c == qref::Category::output) ms.tied = false;
    }
    if (ms.n_layer == 0) ms.n_layer = n_ffn_down;

    const bool quantized_target = t != Type::F32 && t != Type::F16 && t != Type::BF16;
    Buffer<float> f32;
    Buffer<uint8_t> q;
    for (size_t k = 0; k < order.size(); ++k) {
        const GgufTensor& ten = in.tensors[order[k]];
        const Type tin = static_cast<Type>(ten.type);
        Type tout = tin;
        if (qref::tensor_allows_quantization(ten)) {
            tout = t;
            if (quantized_target) {
                if (!pure) tout = qref::mixture_type(ms, tout, ten, qref::tensor_category(ten.name));
                tout = qref::fallback_type(ten, tout);
            } else if (ten.ne[0] % type_info(tout).block_size != 0) {
                tout = Type::F16;
            }
        }
        std::vector<int64_t> ne(ten.ne, ten.ne + ten.n_dims);
        QuantizeTensorReport rep;
        rep.name = ten.name;
        rep.n_dims = ten.n_dims;
        for (int d = 0; d < 4; ++d) rep.ne[d] = ten.ne[d];
        rep.type_in = tin;
        rep.type_out = tout;
        rep.bytes_in = ten.nbytes;
        rep.index = static_cast<int>(k);
        rep.count = static_cast<int>(order.size());
        if (tout == tin) {
            st = out.add_tensor(ten.name, tin, ne, ten.data, static_cast<size_t>(ten.nbytes));
            if (!st.ok()) return st;
            rep.bytes_out = ten.nbytes;
        } else {
            if (tin != Type::F32 && tin != Type::F16 && tin != Type::BF16)
                return error(StatusCode::unsupported, "tensor '%s': converting %s to %s is not supported (inputs must be F32, F16 or BF16)",
                             ten.name.c_str(), type_name(tin), type_name(tout));
            if (!quantize_weights_supported(tout))
                return error(StatusCode::unsupported, "tensor '%s': quantizing to %s is not supported", ten.name.c_str(),
                             type_name(tout));
            const uint64_t n = static_cast<uint64_t>(ten.n_elements());
            const int64_t n_per_row = ten.ne[0];
            const int64_t n_rows = n_per_row > 0 ? static_cast<int64_t>(n / static_cast<uint64_t>(n_per_row)) : 0;
            const size_t out_bytes = static_cast<size_t>(n_rows) * row_bytes(tout, n_per_row);
            if (f32.size() < n && !f32.allocate(static_cast<size_t>(n)))
                return error(StatusCode::out_of_memory, "tensor '%s': cannot allocate %llu floats", ten.name.c_str(),
                             (unsigned long long)n);
            if (q.size() < out_bytes && !q.allocate(out_bytes))
                return error(StatusCode::out_of_memory, "tensor '%s': cannot allocate %zu bytes", ten.name.c_str(), out_bytes);
            if (tin == Type::F32) {
                if (n) std::memcpy(f32.data(), ten.data, static_cast<size_t>(n) * 4);
            } else {
                for (uint64_t i = 0; i < n; ++i) {
                    uint16_t h;
                    std::memcpy(&h, ten.data + 2 * i, 2);
                    f32[i] = tin == Type::F16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
                }
            }
            st = quantize_weights(tout, f32.data(), q.data(), n_rows, n_per_row);
            if (!st.ok()) return error(st.code(), "tensor '%s': %s", ten.name.c_str(), st.message().c_str());
            st = out.add_tensor(ten.name, tout, ne, q.data(), out_bytes);
            if (!st.ok()) return st;
            rep.bytes_out = out_bytes;
        }
        if (on_tensor) on_tensor(rep);
    }
    return Status();
}

}  // namespace detail
MINIGPT_NS_END

#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC pop_options
#endif

// ---- threads.hpp ----
// threads: a persistent pool that runs parallel_for jobs. Workers spin for a
// short while after a job (the next one usually follows within microseconds
// during a forward pass), then sleep on a condition variable, so an idle
// host never pays for them. Before it spins, a worker may read a stretch of
// memory it was given (set_idle_read): the start of its share of the next
// product, which the caller's serial work would otherwise leave unread.

#if MINIGPT_THREADS
#  include <condition_variable>
#  include <mutex>
#  include <thread>
#endif

MINIGPT_NS_BEGIN
namespace detail {

using TaskFn = void (*)(void* arg, int i);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

class ThreadPool {
public:
    ThreadPool() = default;
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;
    ~ThreadPool() { stop(); }

    // Starts n_threads - 1 workers (the caller of run() is the n-th thread).
    Status start(int n_threads) {
        stop();
#if MINIGPT_THREADS
        n_threads_ = n_threads < 1 ? 1 : n_threads;
        idle_.reset(new IdleRead[static_cast<size_t>(n_threads_)]);
        workers_.reserve(static_cast<size_t>(n_threads_ - 1));
        for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
#else
        (void)n_threads;
        n_threads_ = 1;
#endif
        return Status();
    }

    int size() const { return n_threads_; }

    // Worker `slot` (1 ... size() - 1) reads bytes [p, p + n) once it has no
    // task left in a job, until the next job starts; n = 0: nothing; other
    // slots: ignored. Called by the thread that calls run(). The range must
    // stay readable while the pool runs. It holds until set again. (The
    // caller of run() reads nothing while it waits for the workers' last
    // tasks: its reads take bandwidth from them, and smollm2-135m Q8_0
    // generation was 0.93-0.96x as fast with them.)
    void set_idle_read(int slot, const void* p, size_t n) {
#if MINIGPT_THREADS
        if (slot < 1 || slot >= n_threads_) return;
        // A worker may be reading the old range: the sequence number, odd
        // while the two words change, lets it tell a torn pair (seqlock).
        IdleRead& r = idle_[slot];
        const uint32_t s = r.seq.load(std::memory_order_relaxed);
        r.seq.store(s + 1, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_release);
        r.p.store(static_cast<const uint8_t*>(p), std::memory_order_relaxed);
        r.n.store(n, std::memory_order_relaxed);
        r.seq.store(s + 2, std::memory_order_release);
#else
        (void)slot, (void)p, (void)n;
#endif
    }

    // Runs fn(arg, i) for every i in [0, n_tasks) and returns when all are done.
    void run(int n_tasks, TaskFn fn, void* arg) {
        if (n_tasks <= 0) return;
#if MINIGPT_THREADS
        if (n_threads_ > 1 && n_tasks > 1) {
            // No task of the previous job is pending here, so no worker can be
            // running one. A worker may still be in its claim loop, though, and
            // take a task of this job the moment next_ is published: the
            // function, its argument and the pending count are stored first.
            job_fn_.store(fn, std::memory_order_relaxed);
            job_arg_.store(arg, std::memory_order_relaxed);
            pending_.store(n_tasks, std::memory_order_relaxed);
            ++job_id_;
            next_.store(pack(job_id_, static_cast<uint64_t>(n_tasks), 0), std::memory_order_release);
            {
                std::lock_guard<std::mutex> lock(mutex_);
                generation_.fetch_add(1, std::memory_order_release);
            }
            wake_.notify_all();
            work();
            // Wait for the tasks the workers took.
            int spins = 0;
            while (pending_.load(std::memory_order_acquire) != 0) {
                if (++spins < 100000) {
                    cpu_relax();
                } else {
                    std::unique_lock<std::mutex> lock(mutex_);
                    done_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
                }
            }
            return;
        }
#endif
        for (int i = 0; i < n_tasks; ++i) fn(arg, i);
    }

private:
#if MINIGPT_THREADS
    // The task counter packs the job id, the task count and the next index, so
    // that a compare-exchange made from a stale view of a finished job fails
    // (different job, or no task left); the worker then reads the counter again
    // and may take a task of the new job, whose count run() set beforehand.
    static constexpr int kIndexBits = 22;
    static uint64_t pack(uint64_t job, uint64_t tasks, uint64_t index) {
        return (job << (2 * kIndexBits)) | (tasks << kIndexBits) | index;
    }
    bool claim(int& index) {
        uint64_t v = next_.load(std::memory_order_acquire);
        const uint64_t mask = (uint64_t(1) << kIndexBits) - 1;
        for (;;) {
            const uint64_t tasks = (v >> kIndexBits) & mask, i = v & mask;
            if (i >= tasks) return false;
            if (next_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
                index = static_cast<int>(i);
                return true;
            }
        }
    }

    void work() {
        int i;
        while (claim(i)) {
            job_fn_.load(std::memory_order_relaxed)(job_arg_.load(std::memory_order_relaxed), i);
            if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                std::lock_guard<std::mutex> lock(mutex_);
                done_.notify_all();
            }
        }
    }

    // One load per cache line, four lines per look at the job counter. A range
    // being set meanwhile is not read.
    void idle_read(int slot, uint64_t seen) {
        IdleRead& r = idle_[slot];
        const uint32_t s = r.seq.load(std::memory_order_acquire);
        const uint8_t* p = r.p.load(std::memory_order_relaxed);
        size_t n = r.n.load(std::memory_order_relaxed) & ~size_t(255);
        std::atomic_thread_fence(std::memory_order_acquire);
        if ((s & 1) != 0 || r.seq.load(std::memory_order_relaxed) != s) n = 0;
        unsigned sum = 0;
        for (size_t o = 0; o < n && generation_.load(std::memory_order_relaxed) == seen; o += 256)
            sum += unsigned(p[o]) + unsigned(p[o + 64]) + unsigned(p[o + 128]) + unsigned(p[o + 192]);
        r.sink = sum;  // (keeps the loads)
    }

    void worker_loop(int slot) {
        uint64_t seen = generation_.load(std::memory_order_acquire);
        for (;;) {
            // Spin briefly for the next job, then sleep.
            int spins = 0;
            while (generation_.load(std::memory_order_acquire) == seen && !quit_.load(std::memory_order_acquire)) {
                if (++spins < 20000) {
                    cpu_relax();
                    continue;
                }
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] {
                    return generation_.load(std::memory_order_acquire) != seen || quit_.load(std::memory_order_acquire);
                });
            }
            if (quit_.load(std::memory_order_acquire)) return;
            seen = generation_.load(std::memory_order_acquire);
            work();
            idle_read(slot, seen);
        }
    }
#endif

    void stop() {
#if MINIGPT_THREADS
        if (!workers_.empty()) {
            {
                std::lock_guard<std::mutex> lock(mutex_);
                quit_.store(true, std::memory_order_release);
            }
            wake_.notify_all();
            for (auto& t : workers_) t.join();
            workers_.clear();
        }
        quit_.store(false);
#endif
        n_threads_ = 1;
    }

    int n_threads_ = 1;
#if MINIGPT_THREADS
    std::vector<std::thread> workers_;
    struct alignas(64) IdleRead {  // (a cache line each: written by the caller, read by one worker)
        std::atomic<uint32_t> seq{0};
        std::atomic<const uint8_t*> p{nullptr};
        std::atomic<size_t> n{0};
        volatile unsigned sink = 0;
    };
    std::unique_ptr<IdleRead[]> idle_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    std::atomic<uint64_t> generation_{0};
    std::atomic<bool> quit_{false};
    std::atomic<uint64_t> next_{0};
    std::atomic<int> pending_{0};
    std::atomic<TaskFn> job_fn_{nullptr};
    std::atomic<void*> job_arg_{nullptr};
    uint64_t job_id_ = 0;  // written by the thread that calls run()
#endif
};

// Runs tasks on the host's parallel_for when one is set, else on the pool.
struct Parallel {
    ThreadPool* pool = nullptr;
    ParallelForFn host = nullptr;
    void* host_user = nullptr;
    int n_threads = 1;

    // The pool's idle reads (see ThreadPool::set_idle_read); a host's job
    // system gets none.
    void set_idle_read(int slot, const void* p, size_t n) const {
        if (pool && !host) pool->set_idle_read(slot, p, n);
    }

    void run(int n_tasks, TaskFn fn, void* arg) const {
        if (n_tasks <= 0) return;
        if (n_tasks == 1) { fn(arg, 0); return; }
        if (host) { host(host_user, n_tasks, fn, arg); return; }
        if (pool) { pool->run(n_tasks, fn, arg); return; }
        for (int i = 0; i < n_tasks; ++i) fn(arg, i);
    }

    // Calls f(begin, end, chunk) on chunks of [0, n) in parallel; chunk sizes are
    // multiples of `grain` and there are at most 4 * n_threads chunks.
    template <typename F>
    void for_range(int64_t n, int64_t grain, F&& f) const {
        if (n <= 0) return;
        if (grain < 1) grain = 1;
        int64_t max_chunks = (n + grain - 1) / grain;
        int64_t chunks = std::min<int64_t>(max_chunks, n_threads > 1 ? n_threads * 4 : 1);
        if (chunks <= 1) { f(int64_t(0), n, 0); return; }
        int64_t per = ((n + chunks - 1) / chunks + grain - 1) / grain * grain;
        chunks = (n + per - 1) / per;
        struct Ctx { F* f; int64_t n, per; } c{&f, n, per};
        run(static_cast<int>(chunks), [](void* a, int i) {
            Ctx* c = static_cast<Ctx*>(a);
            int64_t b = static_cast<int64_t>(i) * c->per;
            int64_t e = std::min(c->n, b + c->per);
            if (b < e) (*c->f)(b, e, i);
        }, &c);
    }
};

}  // namespace detail
MINIGPT_NS_END

// ---- unicode.hpp ----
// unicode: the general category and White_Space property of every code point
// (range tables generated from the Unicode Character Database by
// tools/gen_unicode.py), a forgiving UTF-8 decoder, and the per-code-point
// flags the byte-level BPE pre-tokenizers test.

#include <vector>

MINIGPT_NS_BEGIN
namespace detail {

// General categories; the order is the one tools/gen_unicode.py encodes.
enum UnicodeCategory : uint8_t {
    uc_Cn = 0, uc_Lu, uc_Ll, uc_Lt, uc_Lm, uc_Lo, uc_Mn, uc_Mc, uc_Me, uc_Nd, uc_Nl, uc_No, uc_Pc, uc_Pd, uc_Ps,
    uc_Pe, uc_Pi, uc_Pf, uc_Po, uc_Sm, uc_Sc, uc_Sk, uc_So, uc_Zs, uc_Zl, uc_Zp, uc_Cc, uc_Cf, uc_Cs, uc_Co,
    uc_count
};

// BEGIN GENERATED by tools/gen_unicode.py from the Unicode Character Database 15.0.0 (UnicodeData.txt, PropList.txt). Do not edit.
inline constexpr uint32_t kUnicodeCategoryRuns[4007] = {
    0x0000001A, 0x00000417, 0x00000432, 0x00000494, 0x000004B2, 0x0000050E, 0x0000052F, 0x00000552, 0x00000573, 0x00000592,
    0x000005AD, 0x000005D2, 0x00000609, 0x00000752, 0x00000793, 0x000007F2, 0x00000821, 0x00000B6E, 0x00000B92, 0x00000BAF,
    0x00000BD5, 0x00000BEC, 0x00000C15, 0x00000C22, 0x00000F6E, 0x00000F93, 0x00000FAF, 0x00000FD3, 0x00000FFA, 0x00001417,
    0x00001432, 0x00001454, 0x000014D6, 0x000014F2, 0x00001515, 0x00001536, 0x00001545, 0x00001570, 0x00001593, 0x000015BB,
    0x000015D6, 0x000015F5, 0x00001616, 0x00001633, 0x0000164B, 0x00001695, 0x000016A2, 0x000016D2, 0x00001715, 0x0000172B,
    0x00001745, 0x00001771, 0x0000178B, 0x000017F2, 0x00001801, 0x00001AF3, 0x00001B01, 0x00001BE2, 0x00001EF3, 0x00001F02,
    0x00002001, 0x00002022, 0x00002041, 0x00002062, 0x00002081, 0x000020A2, 0x000020C1, 0x000020E2, 0x00002101, 0x00002122,
    0x00002141, 0x00002162, 0x00002181, 0x000021A2, 0x000021C1, 0x000021E2, 0x00002201, 0x00002222, 0x00002241, 0x00002262,
    0x00002281, 0x000022A2, 0x000022C1, 0x000022E2, 0x00002301, 0x00002322, 0x00002341, 0x00002362, 0x00002381, 0x000023A2,
    0x000023C1, 0x000023E2, 0x00002401, 0x00002422, 0x00002441, 0x00002462, 0x00002481, 0x000024A2, 0x000024C1, 0x000024E2,
    0x00002501, 0x00002522, 0x00002541, 0x00002562, 0x00002581, 0x000025A2, 0x000025C1, 0x000025E2, 0x00002601, 0x00002622,
    0x00002641, 0x00002662, 0x00002681, 0x000026A2, 0x000026C1, 0x000026E2, 0x00002721, 0x00002742, 0x00002761, 0x00002782,
    0x000027A1, 0x000027C2, 0x000027E1, 0x00002802, 0x00002821, 0x00002842, 0x00002861, 0x00002882, 0x000028A1, 0x000028C2,
    0x000028E1, 0x00002902, 0x00002941, 0x00002962, 0x00002981, 0x000029A2, 0x000029C1, 0x000029E2, 0x00002A01, 0x00002A22,
    0x00002A41, 0x00002A62, 0x00002A81, 0x00002AA2, 0x00002AC1, 0x00002AE2, 0x00002B01, 0x00002B22, 0x00002B41, 0x00002B62,
    0x00002B81, 0x00002BA2, 0x00002BC1, 0x00002BE2, 0x00002C01, 0x00002C22, 0x00002C41, 0x00002C62, 0x00002C81, 0x00002CA2,
    0x00002CC1, 0x00002CE2, 0x00002D01, 0x00002D22, 0x00002D41, 0x00002D62, 0x00002D81, 0x00002DA2, 0x00002DC1, 0x00002DE2,
    0x00002E01, 0x00002E22, 0x00002E41, 0x00002E62, 0x00002E81, 0x00002EA2, 0x00002EC1, 0x00002EE2, 0x00002F01, 0x00002F42,
    0x00002F61, 0x00002F82, 0x00002FA1, 0x00002FC2, 0x00003021, 0x00003062, 0x00003081, 0x000030A2, 0x000030C1, 0x00003102,
    0x00003121, 0x00003182, 0x000031C1, 0x00003242, 0x00003261, 0x000032A2, 0x000032C1, 0x00003322, 0x00003381, 0x000033C2,
    0x000033E1, 0x00003422, 0x00003441, 0x00003462, 0x00003481, 0x000034A2, 0x000034C1, 0x00003502, 0x00003521, 0x00003542,
    0x00003581, 0x000035A2, 0x000035C1, 0x00003602, 0x00003621, 0x00003682, 0x000036A1, 0x000036C2, 0x000036E1, 0x00003722,
    0x00003765, 0x00003781, 0x000037A2, 0x00003805, 0x00003881, 0x000038A3, 0x000038C2, 0x000038E1, 0x00003903, 0x00003922,
    0x00003941, 0x00003963, 0x00003982, 0x000039A1, 0x000039C2, 0x000039E1, 0x00003A02, 0x00003A21, 0x00003A42, 0x00003A61,
    0x00003A82, 0x00003AA1, 0x00003AC2, 0x00003AE1, 0x00003B02, 0x00003B21, 0x00003B42, 0x00003B61, 0x00003B82, 0x00003BC1,
    0x00003BE2, 0x00003C01, 0x00003C22, 0x00003C41, 0x00003C62, 0x00003C81, 0x00003CA2, 0x00003CC1, 0x00003CE2, 0x00003D01,
    0x00003D22, 0x00003D41, 0x00003D62, 0x00003D81, 0x00003DA2, 0x00003DC1, 0x00003DE2, 0x00003E21, 0x00003E43, 0x00003E62,
    0x00003E81, 0x00003EA2, 0x00003EC1, 0x00003F22, 0x00003F41, 0x00003F62, 0x00003F81, 0x00003FA2, 0x00003FC1, 0x00003FE2,
    0x00004001, 0x00004022, 0x00004041, 0x00004062, 0x00004081, 0x000040A2, 0x000040C1, 0x000040E2, 0x00004101, 0x00004122,
    0x00004141, 0x00004162, 0x00004181, 0x000041A2, 0x000041C1, 0x000041E2, 0x00004201, 0x00004222, 0x00004241, 0x00004262,
    0x00004281, 0x000042A2, 0x000042C1, 0x000042E2, 0x00004301, 0x00004322, 0x00004341, 0x00004362, 0x00004381, 0x000043A2,
    0x000043C1, 0x000043E2, 0x00004401, 0x00004422, 0x00004441, 0x00004462, 0x00004481, 0x000044A2, 0x000044C1, 0x000044E2,
    0x00004501, 0x00004522, 0x00004541, 0x00004562, 0x00004581, 0x000045A2, 0x000045C1, 0x000045E2, 0x00004601, 0x00004622,
    0x00004641, 0x00004662, 0x00004741, 0x00004782, 0x000047A1, 0x000047E2, 0x00004821, 0x00004842, 0x00004861, 0x000048E2,
    0x00004901, 0x00004922, 0x00004941, 0x00004962, 0x00004981, 0x000049A2, 0x000049C1, 0x000049E2, 0x00005285, 0x000052A2,
    0x00005604, 0x00005855, 0x000058C4, 0x00005A55, 0x00005C04, 0x00005CB5, 0x00005D84, 0x00005DB5, 0x00005DC4, 0x00005DF5,
    0x00006006, 0x00006E01, 0x00006E22, 0x00006E41, 0x00006E62, 0x00006E84, 0x00006EB5, 0x00006EC1, 0x00006EE2, 0x00006F00,
    0x00006F44, 0x00006F62, 0x00006FD2, 0x00006FE1, 0x00007000, 0x00007095, 0x000070C1, 0x000070F2, 0x00007101, 0x00007160,
    0x00007181, 0x000071A0, 0x000071C1, 0x00007202, 0x00007221, 0x00007440, 0x00007461, 0x00007582, 0x000079E1, 0x00007A02,
    0x00007A41, 0x00007AA2, 0x00007B01, 0x00007B22, 0x00007B41, 0x00007B62, 0x00007B81, 0x00007BA2, 0x00007BC1, 0x00007BE2,
    0x00007C01, 0x00007C22, 0x00007C41, 0x00007C62, 0x00007C81, 0x00007CA2, 0x00007CC1, 0x00007CE2, 0x00007D01, 0x00007D22,
    0x00007D41, 0x00007D62, 0x00007D81, 0x00007DA2, 0x00007DC1, 0x00007DE2, 0x00007E81, 0x00007EA2, 0x00007ED3, 0x00007EE1,
    0x00007F02, 0x00007F21, 0x00007F62, 0x00007FA1, 0x00008602, 0x00008C01, 0x00008C22, 0x00008C41, 0x00008C62, 0x00008C81,
    0x00008CA2, 0x00008CC1, 0x00008CE2, 0x00008D01, 0x00008D22, 0x00008D41, 0x00008D62, 0x00008D81, 0x00008DA2, 0x00008DC1,
    0x00008DE2, 0x00008E01, 0x00008E22, 0x00008E41, 0x00008E62, 0x00008E81, 0x00008EA2, 0x00008EC1, 0x00008EE2, 0x00008F01,
    0x00008F22, 0x00008F41, 0x00008F62, 0x00008F81, 0x00008FA2, 0x00008FC1, 0x00008FE2, 0x00009001, 0x00009022, 0x00009056,
    0x00009066, 0x00009108, 0x00009141, 0x00009162, 0x00009181, 0x000091A2, 0x000091C1, 0x000091E2, 0x00009201, 0x00009222,
    0x00009241, 0x00009262, 0x00009281, 0x000092A2, 0x000092C1, 0x000092E2, 0x00009301, 0x00009322, 0x00009341, 0x00009362,
    0x00009381, 0x000093A2, 0x000093C1, 0x000093E2, 0x00009401, 0x00009422, 0x00009441, 0x00009462, 0x00009481, 0x000094A2,
    0x000094C1, 0x000094E2, 0x00009501, 0x00009522, 0x00009541, 0x00009562, 0x00009581, 0x000095A2, 0x000095C1, 0x000095E2,
    0x00009601, 0x00009622, 0x00009641, 0x00009662, 0x00009681, 0x000096A2, 0x000096C1, 0x000096E2, 0x00009701, 0x00009722,
    0x00009741, 0x00009762, 0x00009781, 0x000097A2, 0x000097C1, 0x000097E2, 0x00009801, 0x00009842, 0x00009861, 0x00009882,
    0x000098A1, 0x000098C2, 0x000098E1, 0x00009902, 0x00009921, 0x00009942, 0x00009961, 0x00009982, 0x000099A1, 0x000099C2,
    0x00009A01, 0x00009A22, 0x00009A41, 0x00009A62, 0x00009A81, 0x00009AA2, 0x00009AC1, 0x00009AE2, 0x00009B01, 0x00009B22,
    0x00009B41, 0x00009B62, 0x00009B81, 0x00009BA2, 0x00009BC1, 0x00009BE2, 0x00009C01, 0x00009C22, 0x00009C41, 0x00009C62,
    0x00009C81, 0x00009CA2, 0x00009CC1, 0x00009CE2, 0x00009D01, 0x00009D22, 0x00009D41, 0x00009D62, 0x00009D81, 0x00009DA2,
    0x00009DC1, 0x00009DE2, 0x00009E01, 0x00009E22, 0x00009E41, 0x00009E62, 0x00009E81, 0x00009EA2, 0x00009EC1, 0x00009EE2,
    0x00009F01, 0x00009F22, 0x00009F41, 0x00009F62, 0x00009F81, 0x00009FA2, 0x00009FC1, 0x00009FE2, 0x0000A001, 0x0000A022,
    0x0000A041, 0x0000A062, 0x0000A081, 0x0000A0A2, 0x0000A0C1, 0x0000A0E2, 0x0000A101, 0x0000A122, 0x0000A141, 0x0000A162,
    0x0000A181, 0x0000A1A2, 0x0000A1C1, 0x0000A1E2, 0x0000A201, 0x0000A222, 0x0000A241, 0x0000A262, 0x0000A281, 0x0000A2A2,
    0x0000A2C1, 0x0000A2E2, 0x0000A301, 0x0000A322, 0x0000A341, 0x0000A362, 0x0000A381, 0x0000A3A2, 0x0000A3C1, 0x0000A3E2,
    0x0000A401, 0x0000A422, 0x0000A441, 0x0000A462, 0x0000A481, 0x0000A4A2, 0x0000A4C1, 0x0000A4E2, 0x0000A501, 0x0000A522,
    0x0000A541, 0x0000A562, 0x0000A581, 0x0000A5A2, 0x0000A5C1, 0x0000A5E2, 0x0000A600, 0x0000A621, 0x0000AAE0, 0x0000AB24,
    0x0000AB52, 0x0000AC02, 0x0000B132, 0x0000B14D, 0x0000B160, 0x0000B1B6, 0x0000B1F4, 0x0000B200, 0x0000B226, 0x0000B7CD,
    0x0000B7E6, 0x0000B812, 0x0000B826, 0x0000B872, 0x0000B886, 0x0000B8D2, 0x0000B8E6, 0x0000B900, 0x0000BA05, 0x0000BD60,
    0x0000BDE5, 0x0000BE72, 0x0000BEA0, 0x0000C01B, 0x0000C0D3, 0x0000C132, 0x0000C174, 0x0000C192, 0x0000C1D6, 0x0000C206,
    0x0000C372, 0x0000C39B, 0x0000C3B2, 0x0000C405, 0x0000C804, 0x0000C825, 0x0000C966, 0x0000CC09, 0x0000CD52, 0x0000CDC5,
    0x0000CE06, 0x0000CE25, 0x0000DA92, 0x0000DAA5, 0x0000DAC6, 0x0000DBBB, 0x0000DBD6, 0x0000DBE6, 0x0000DCA4, 0x0000DCE6,
    0x0000DD36, 0x0000DD46, 0x0000DDC5, 0x0000DE09, 0x0000DF45, 0x0000DFB6, 0x0000DFE5, 0x0000E012, 0x0000E1C0, 0x0000E1FB,
    0x0000E205, 0x0000E226, 0x0000E245, 0x0000E606, 0x0000E960, 0x0000E9A5, 0x0000F4C6, 0x0000F625, 0x0000F640, 0x0000F809,
    0x0000F945, 0x0000FD66, 0x0000FE84, 0x0000FED6, 0x0000FEF2, 0x0000FF44, 0x0000FF60, 0x0000FFA6, 0x0000FFD4, 0x00010005,
    0x000102C6, 0x00010344, 0x00010366, 0x00010484, 0x000104A6, 0x00010504, 0x00010526, 0x000105C0, 0x00010612, 0x000107E0,
    0x00010805, 0x00010B26, 0x00010B80, 0x00010BD2, 0x00010BE0, 0x00010C05, 0x00010D60, 0x00010E05, 0x00011115, 0x00011125,
    0x000111E0, 0x0001121B, 0x00011240, 0x00011306, 0x00011405, 0x00011924, 0x00011946, 0x00011C5B, 0x00011C66, 0x00012067,
    0x00012085, 0x00012746, 0x00012767, 0x00012786, 0x000127A5, 0x000127C7, 0x00012826, 0x00012927, 0x000129A6, 0x000129C7,
    0x00012A05, 0x00012A26, 0x00012B05, 0x00012C46, 0x00012C92, 0x00012CC9, 0x00012E12, 0x00012E24, 0x00012E45, 0x00013026,
    0x00013047, 0x00013080, 0x000130A5, 0x000131A0, 0x000131E5, 0x00013220, 0x00013265, 0x00013520, 0x00013545, 0x00013620,
    0x00013645, 0x00013660, 0x000136C5, 0x00013740, 0x00013786, 0x000137A5, 0x000137C7, 0x00013826, 0x000138A0, 0x000138E7,
    0x00013920, 0x00013967, 0x000139A6, 0x000139C5, 0x000139E0, 0x00013AE7, 0x00013B00, 0x00013B85, 0x00013BC0, 0x00013BE5,
    0x00013C46, 0x00013C80, 0x00013CC9, 0x00013E05, 0x00013E54, 0x00013E8B, 0x00013F56, 0x00013F74, 0x00013F85, 0x00013FB2,
    0x00013FC6, 0x00013FE0, 0x00014026, 0x00014067, 0x00014080, 0x000140A5, 0x00014160, 0x000141E5, 0x00014220, 0x00014265,
    0x00014520, 0x00014545, 0x00014620, 0x00014645, 0x00014680, 0x000146A5, 0x000146E0, 0x00014705, 0x00014740, 0x00014786,
    0x000147A0, 0x000147C7, 0x00014826, 0x00014860, 0x000148E6, 0x00014920, 0x00014966, 0x000149C0, 0x00014A26, 0x00014A40,
    0x00014B25, 0x00014BA0, 0x00014BC5, 0x00014BE0, 0x00014CC9, 0x00014E06, 0x00014E45, 0x00014EA6, 0x00014ED2, 0x00014EE0,
    0x00015026, 0x00015067, 0x00015080, 0x000150A5, 0x000151C0, 0x000151E5, 0x00015240, 0x00015265, 0x00015520, 0x00015545,
    0x00015620, 0x00015645, 0x00015680, 0x000156A5, 0x00015740, 0x00015786, 0x000157A5, 0x000157C7, 0x00015826, 0x000158C0,
    0x000158E6, 0x00015927, 0x00015940, 0x00015967, 0x000159A6, 0x000159C0, 0x00015A05, 0x00015A20, 0x00015C05, 0x00015C46,
    0x00015C80, 0x00015CC9, 0x00015E12, 0x00015E34, 0x00015E40, 0x00015F25, 0x00015F46, 0x00016000, 0x00016026, 0x00016047,
    0x00016080, 0x000160A5, 0x000161A0, 0x000161E5, 0x00016220, 0x00016265, 0x00016520, 0x00016545, 0x00016620, 0x00016645,
    0x00016680, 0x000166A5, 0x00016740, 0x00016786, 0x000167A5, 0x000167C7, 0x000167E6, 0x00016807, 0x00016826, 0x000168A0,
    0x000168E7, 0x00016920, 0x00016967, 0x000169A6, 0x000169C0, 0x00016AA6, 0x00016AE7, 0x00016B00, 0x00016B85, 0x00016BC0,
    0x00016BE5, 0x00016C46, 0x00016C80, 0x00016CC9, 0x00016E16, 0x00016E25, 0x00016E4B, 0x00016F00, 0x00017046, 0x00017065,
    0x00017080, 0x000170A5, 0x00017160, 0x000171C5, 0x00017220, 0x00017245, 0x000172C0, 0x00017325, 0x00017360, 0x00017385,
    0x000173A0, 0x000173C5, 0x00017400, 0x00017465, 0x000174A0, 0x00017505, 0x00017560, 0x000175C5, 0x00017740, 0x000177C7,
    0x00017806, 0x00017827, 0x00017860, 0x000178C7, 0x00017920, 0x00017947, 0x000179A6, 0x000179C0, 0x00017A05, 0x00017A20,
    0x00017AE7, 0x00017B00, 0x00017CC9, 0x00017E0B, 0x00017E76, 0x00017F34, 0x00017F56, 0x00017F60, 0x00018006, 0x00018027,
    0x00018086, 0x000180A5, 0x000181A0, 0x000181C5, 0x00018220, 0x00018245, 0x00018520, 0x00018545, 0x00018740, 0x00018786,
    0x000187A5, 0x000187C6, 0x00018827, 0x000188A0, 0x000188C6, 0x00018920, 0x00018946, 0x000189C0, 0x00018AA6, 0x00018AE0,
    0x00018B05, 0x00018B60, 0x00018BA5, 0x00018BC0, 0x00018C05, 0x00018C46, 0x00018C80, 0x00018CC9, 0x00018E00, 0x00018EF2,
    0x00018F0B, 0x00018FF6, 0x00019005, 0x00019026, 0x00019047, 0x00019092, 0x000190A5, 0x000191A0, 0x000191C5, 0x00019220,
    0x00019245, 0x00019520, 0x00019545, 0x00019680, 0x000196A5, 0x00019740, 0x00019786, 0x000197A5, 0x000197C7, 0x000197E6,
    0x00019807, 0x000198A0, 0x000198C6, 0x000198E7, 0x00019920, 0x00019947, 0x00019986, 0x000199C0, 0x00019AA7, 0x00019AE0,
    0x00019BA5, 0x00019BE0, 0x00019C05, 0x00019C46, 0x00019C80, 0x00019CC9, 0x00019E00, 0x00019E25, 0x00019E67, 0x00019E80,
    0x0001A006, 0x0001A047, 0x0001A085, 0x0001A1A0, 0x0001A1C5, 0x0001A220, 0x0001A245, 0x0001A766, 0x0001A7A5, 0x0001A7C7,
    0x0001A826, 0x0001A8A0, 0x0001A8C7, 0x0001A920, 0x0001A947, 0x0001A9A6, 0x0001A9C5, 0x0001A9F6, 0x0001AA00, 0x0001AA85,
    0x0001AAE7, 0x0001AB0B, 0x0001ABE5, 0x0001AC46, 0x0001AC80, 0x0001ACC9, 0x0001AE0B, 0x0001AF36, 0x0001AF45, 0x0001B000,
    0x0001B026, 0x0001B047, 0x0001B080, 0x0001B0A5, 0x0001B2E0, 0x0001B345, 0x0001B640, 0x0001B665, 0x0001B780, 0x0001B7A5,
    0x0001B7C0, 0x0001B805, 0x0001B8E0, 0x0001B946, 0x0001B960, 0x0001B9E7, 0x0001BA46, 0x0001BAA0, 0x0001BAC6, 0x0001BAE0,
    0x0001BB07, 0x0001BC00, 0x0001BCC9, 0x0001BE00, 0x0001BE47, 0x0001BE92, 0x0001BEA0, 0x0001C025, 0x0001C626, 0x0001C645,
    0x0001C686, 0x0001C760, 0x0001C7F4, 0x0001C805, 0x0001C8C4, 0x0001C8E6, 0x0001C9F2, 0x0001CA09, 0x0001CB52, 0x0001CB80,
    0x0001D025, 0x0001D060, 0x0001D085, 0x0001D0A0, 0x0001D0C5, 0x0001D160, 0x0001D185, 0x0001D480, 0x0001D4A5, 0x0001D4C0,
    0x0001D4E5, 0x0001D626, 0x0001D645, 0x0001D686, 0x0001D7A5, 0x0001D7C0, 0x0001D805, 0x0001D8A0, 0x0001D8C4, 0x0001D8E0,
    0x0001D906, 0x0001D9E0, 0x0001DA09, 0x0001DB40, 0x0001DB85, 0x0001DC00, 0x0001E005, 0x0001E036, 0x0001E092, 0x0001E276,
    0x0001E292, 0x0001E2B6, 0x0001E306, 0x0001E356, 0x0001E409, 0x0001E54B, 0x0001E696, 0x0001E6A6, 0x0001E6D6, 0x0001E6E6,
    0x0001E716, 0x0001E726, 0x0001E74E, 0x0001E76F, 0x0001E78E, 0x0001E7AF, 0x0001E7C7, 0x0001E805, 0x0001E900, 0x0001E925,
    0x0001EDA0, 0x0001EE26, 0x0001EFE7, 0x0001F006, 0x0001F0B2, 0x0001F0C6, 0x0001F105, 0x0001F1A6, 0x0001F300, 0x0001F326,
    0x0001F7A0, 0x0001F7D6, 0x0001F8C6, 0x0001F8F6, 0x0001F9A0, 0x0001F9D6, 0x0001FA12, 0x0001FAB6, 0x0001FB32, 0x0001FB60,
    0x00020005, 0x00020567, 0x000205A6, 0x00020627, 0x00020646, 0x00020707, 0x00020726, 0x00020767, 0x000207A6, 0x000207E5,
    0x00020809, 0x00020952, 0x00020A05, 0x00020AC7, 0x00020B06, 0x00020B45, 0x00020BC6, 0x00020C25, 0x00020C47, 0x00020CA5,
    0x00020CE7, 0x00020DC5, 0x00020E26, 0x00020EA5, 0x00021046, 0x00021067, 0x000210A6, 0x000210E7, 0x000211A6, 0x000211C5,
    0x000211E7, 0x00021209, 0x00021347, 0x000213A6, 0x000213D6, 0x00021401, 0x000218C0, 0x000218E1, 0x00021900, 0x000219A1,
    0x000219C0, 0x00021A02, 0x00021F72, 0x00021F84, 0x00021FA2, 0x00022005, 0x00024920, 0x00024945, 0x000249C0, 0x00024A05,
    0x00024AE0, 0x00024B05, 0x00024B20, 0x00024B45, 0x00024BC0, 0x00024C05, 0x00025120, 0x00025145, 0x000251C0, 0x00025205,
    0x00025620, 0x00025645, 0x000256C0, 0x00025705, 0x000257E0, 0x00025805, 0x00025820, 0x00025845, 0x000258C0, 0x00025905,
    0x00025AE0, 0x00025B05, 0x00026220, 0x00026245, 0x000262C0, 0x00026305, 0x00026B60, 0x00026BA6, 0x00026C12, 0x00026D2B,
    0x00026FA0, 0x00027005, 0x00027216, 0x00027340, 0x00027401, 0x00027EC0, 0x00027F02, 0x00027FC0, 0x0002800D, 0x00028025,
    0x0002CDB6, 0x0002CDD2, 0x0002CDE5, 0x0002D017, 0x0002D025, 0x0002D36E, 0x0002D38F, 0x0002D3A0, 0x0002D405, 0x0002DD72,
    0x0002DDCA, 0x0002DE25, 0x0002DF20, 0x0002E005, 0x0002E246, 0x0002E2A7, 0x0002E2C0, 0x0002E3E5, 0x0002E646, 0x0002E687,
    0x0002E6B2, 0x0002E6E0, 0x0002E805, 0x0002EA46, 0x0002EA80, 0x0002EC05, 0x0002EDA0, 0x0002EDC5, 0x0002EE20, 0x0002EE46,
    0x0002EE80, 0x0002F005, 0x0002F686, 0x0002F6C7, 0x0002F6E6, 0x0002F7C7, 0x0002F8C6, 0x0002F8E7, 0x0002F926, 0x0002FA92,
    0x0002FAE4, 0x0002FB12, 0x0002FB74, 0x0002FB85, 0x0002FBA6, 0x0002FBC0, 0x0002FC09, 0x0002FD40, 0x0002FE0B, 0x0002FF40,
    0x00030012, 0x000300CD, 0x000300F2, 0x00030166, 0x000301DB, 0x000301E6, 0x00030209, 0x00030340, 0x00030405, 0x00030864,
    0x00030885, 0x00030F20, 0x00031005, 0x000310A6, 0x000310E5, 0x00031526, 0x00031545, 0x00031560, 0x00031605, 0x00031EC0,
    0x00032005, 0x000323E0, 0x00032406, 0x00032467, 0x000324E6, 0x00032527, 0x00032580, 0x00032607, 0x00032646, 0x00032667,
    0x00032726, 0x00032780, 0x00032816, 0x00032820, 0x00032892, 0x000328C9, 0x00032A05, 0x00032DC0, 0x00032E05, 0x00032EA0,
    0x00033005, 0x00033580, 0x00033605, 0x00033940, 0x00033A09, 0x00033B4B, 0x00033B60, 0x00033BD6, 0x00034005, 0x000342E6,
    0x00034327, 0x00034366, 0x00034380, 0x000343D2, 0x00034405, 0x00034AA7, 0x00034AC6, 0x00034AE7, 0x00034B06, 0x00034BE0,
    0x00034C06, 0x00034C27, 0x00034C46, 0x00034C67, 0x00034CA6, 0x00034DA7, 0x00034E66, 0x00034FA0, 0x00034FE6, 0x00035009,
    0x00035140, 0x00035209, 0x00035340, 0x00035412, 0x000354E4, 0x00035512, 0x000355C0, 0x00035606, 0x000357C8, 0x000357E6,
    0x000359E0, 0x00036006, 0x00036087, 0x000360A5, 0x00036686, 0x000366A7, 0x000366C6, 0x00036767, 0x00036786, 0x000367A7,
    0x00036846, 0x00036867, 0x000368A5, 0x000369A0, 0x00036A09, 0x00036B52, 0x00036C36, 0x00036D66, 0x00036E96, 0x00036FB2,
    0x00036FE0, 0x00037006, 0x00037047, 0x00037065, 0x00037427, 0x00037446, 0x000374C7, 0x00037506, 0x00037547, 0x00037566,
    0x000375C5, 0x00037609, 0x00037745, 0x00037CC6, 0x00037CE7, 0x00037D06, 0x00037D47, 0x00037DA6, 0x00037DC7, 0x00037DE6,
    0x00037E47, 0x00037E80, 0x00037F92, 0x00038005, 0x00038487, 0x00038586, 0x00038687, 0x000386C6, 0x00038700, 0x00038772,
    0x00038809, 0x00038940, 0x000389A5, 0x00038A09, 0x00038B45, 0x00038F04, 0x00038FD2, 0x00039002, 0x00039120, 0x00039201,
    0x00039760, 0x000397A1, 0x00039812, 0x00039900, 0x00039A06, 0x00039A72, 0x00039A86, 0x00039C27, 0x00039C46, 0x00039D25,
    0x00039DA6, 0x00039DC5, 0x00039E86, 0x00039EA5, 0x00039EE7, 0x00039F06, 0x00039F45, 0x00039F60, 0x0003A002, 0x0003A584,
    0x0003AD62, 0x0003AF04, 0x0003AF22, 0x0003B364, 0x0003B806, 0x0003C001, 0x0003C022, 0x0003C041, 0x0003C062, 0x0003C081,
    0x0003C0A2, 0x0003C0C1, 0x0003C0E2, 0x0003C101, 0x0003C122, 0x0003C141, 0x0003C162, 0x0003C181, 0x0003C1A2, 0x0003C1C1,
    0x0003C1E2, 0x0003C201, 0x0003C222, 0x0003C241, 0x0003C262, 0x0003C281, 0x0003C2A2, 0x0003C2C1, 0x0003C2E2, 0x0003C301,
    0x0003C322, 0x0003C341, 0x0003C362, 0x0003C381, 0x0003C3A2, 0x0003C3C1, 0x0003C3E2, 0x0003C401, 0x0003C422, 0x0003C441,
    0x0003C462, 0x0003C481, 0x0003C4A2, 0x0003C4C1, 0x0003C4E2, 0x0003C501, 0x0003C522, 0x0003C541, 0x0003C562, 0x0003C581,
    0x0003C5A2, 0x0003C5C1, 0x0003C5E2, 0x0003C601, 0x0003C622, 0x0003C641, 0x0003C662, 0x0003C681, 0x0003C6A2, 0x0003C6C1,
    0x0003C6E2, 0x0003C701, 0x0003C722, 0x0003C741, 0x0003C762, 0x0003C781, 0x0003C7A2, 0x0003C7C1, 0x0003C7E2, 0x0003C801,
    0x0003C822, 0x0003C841, 0x0003C862, 0x0003C881, 0x0003C8A2, 0x0003C8C1, 0x0003C8E2, 0x0003C901, 0x0003C922, 0x0003C941,
    0x0003C962, 0x0003C981, 0x0003C9A2, 0x0003C9C1, 0x0003C9E2, 0x0003CA01, 0x0003CA22, 0x0003CA41, 0x0003CA62, 0x0003CA81,
    0x0003CAA2, 0x0003CAC1, 0x0003CAE2, 0x0003CB01, 0x0003CB22, 0x0003CB41, 0x0003CB62, 0x0003CB81, 0x0003CBA2, 0x0003CBC1,
    0x0003CBE2, 0x0003CC01, 0x0003CC22, 0x0003CC41, 0x0003CC62, 0x0003CC81, 0x0003CCA2, 0x0003CCC1, 0x0003CCE2, 0x0003CD01,
    0x0003CD22, 0x0003CD41, 0x0003CD62, 0x0003CD81, 0x0003CDA2, 0x0003CDC1, 0x0003CDE2, 0x0003CE01, 0x0003CE22, 0x0003CE41,
    0x0003CE62, 0x0003CE81, 0x0003CEA2, 0x0003CEC1, 0x0003CEE2, 0x0003CF01, 0x0003CF22, 0x0003CF41, 0x0003CF62, 0x0003CF81,
    0x0003CFA2, 0x0003CFC1, 0x0003CFE2, 0x0003D001, 0x0003D022, 0x0003D041, 0x0003D062, 0x0003D081, 0x0003D0A2, 0x0003D0C1,
    0x0003D0E2, 0x0003D101, 0x0003D122, 0x0003D141, 0x0003D162, 0x0003D181, 0x0003D1A2, 0x0003D1C1, 0x0003D1E2, 0x0003D201,
    0x0003D222, 0x0003D241, 0x0003D262, 0x0003D281, 0x0003D2A2, 0x0003D3C1, 0x0003D3E2, 0x0003D401, 0x0003D422, 0x0003D441,
    0x0003D462, 0x0003D481, 0x0003D4A2, 0x0003D4C1, 0x0003D4E2, 0x0003D501, 0x0003D522, 0x0003D541, 0x0003D562, 0x0003D581,
    0x0003D5A2, 0x0003D5C1, 0x0003D5E2, 0x0003D601, 0x0003D622, 0x0003D641, 0x0003D662, 0x0003D681, 0x0003D6A2, 0x0003D6C1,
    0x0003D6E2, 0x0003D701, 0x0003D722, 0x0003D741, 0x0003D762, 0x0003D781, 0x0003D7A2, 0x0003D7C1, 0x0003D7E2, 0x0003D801,
    0x0003D822, 0x0003D841, 0x0003D862, 0x0003D881, 0x0003D8A2, 0x0003D8C1, 0x0003D8E2, 0x0003D901, 0x0003D922, 0x0003D941,
    0x0003D962, 0x0003D981, 0x0003D9A2, 0x0003D9C1, 0x0003D9E2, 0x0003DA01, 0x0003DA22, 0x0003DA41, 0x0003DA62, 0x0003DA81,
    0x0003DAA2, 0x0003DAC1, 0x0003DAE2, 0x0003DB01, 0x0003DB22, 0x0003DB41, 0x0003DB62, 0x0003DB81, 0x0003DBA2, 0x0003DBC1,
    0x0003DBE2, 0x0003DC01, 0x0003DC22, 0x0003DC41, 0x0003DC62, 0x0003DC81, 0x0003DCA2, 0x0003DCC1, 0x0003DCE2, 0x0003DD01,
    0x0003DD22, 0x0003DD41, 0x0003DD62, 0x0003DD81, 0x0003DDA2, 0x0003DDC1, 0x0003DDE2, 0x0003DE01, 0x0003DE22, 0x0003DE41,
    0x0003DE62, 0x0003DE81, 0x0003DEA2, 0x0003DEC1, 0x0003DEE2, 0x0003DF01, 0x0003DF22, 0x0003DF41, 0x0003DF62, 0x0003DF81,
    0x0003DFA2, 0x0003DFC1, 0x0003DFE2, 0x0003E101, 0x0003E202, 0x0003E2C0, 0x0003E301, 0x0003E3C0, 0x0003E402, 0x0003E501,
    0x0003E602, 0x0003E701, 0x0003E802, 0x0003E8C0, 0x0003E901, 0x0003E9C0, 0x0003EA02, 0x0003EB00, 0x0003EB21, 0x0003EB40,
    0x0003EB61, 0x0003EB80, 0x0003EBA1, 0x0003EBC0, 0x0003EBE1, 0x0003EC02, 0x0003ED01, 0x0003EE02, 0x0003EFC0, 0x0003F002,
    0x0003F103, 0x0003F202, 0x0003F303, 0x0003F402, 0x0003F503, 0x0003F602, 0x0003F6A0, 0x0003F6C2, 0x0003F701, 0x0003F783,
    0x0003F7B5, 0x0003F7C2, 0x0003F7F5, 0x0003F842, 0x0003F8A0, 0x0003F8C2, 0x0003F901, 0x0003F983, 0x0003F9B5, 0x0003FA02,
    0x0003FA80, 0x0003FAC2, 0x0003FB01, 0x0003FB80, 0x0003FBB5, 0x0003FC02, 0x0003FD01, 0x0003FDB5, 0x0003FE00, 0x0003FE42,
    0x0003FEA0, 0x0003FEC2, 0x0003FF01, 0x0003FF83, 0x0003FFB5, 0x0003FFE0, 0x00040017, 0x0004017B, 0x0004020D, 0x000402D2,
    0x00040310, 0x00040331, 0x0004034E, 0x00040370, 0x000403B1, 0x000403CE, 0x000403F0, 0x00040412, 0x00040518, 0x00040539,
    0x0004055B, 0x000405F7, 0x00040612, 0x00040730, 0x00040751, 0x00040772, 0x000407EC, 0x00040832, 0x00040893, 0x000408AE,
    0x000408CF, 0x000408F2, 0x00040A53, 0x00040A72, 0x00040A8C, 0x00040AB2, 0x00040BF7, 0x00040C1B, 0x00040CA0, 0x00040CDB,
    0x00040E0B, 0x00040E24, 0x00040E40, 0x00040E8B, 0x00040F53, 0x00040FAE, 0x00040FCF, 0x00040FE4, 0x0004100B, 0x00041153,
    0x000411AE, 0x000411CF, 0x000411E0, 0x00041204, 0x000413A0, 0x00041414, 0x00041820, 0x00041A06, 0x00041BA8, 0x00041C26,
    0x00041C48, 0x00041CA6, 0x00041E20, 0x00042016, 0x00042041, 0x00042076, 0x000420E1, 0x00042116, 0x00042142, 0x00042161,
    0x000421C2, 0x00042201, 0x00042262, 0x00042296, 0x000422A1, 0x000422D6, 0x00042313, 0x00042321, 0x000423D6, 0x00042481,
    0x000424B6, 0x000424C1, 0x000424F6, 0x00042501, 0x00042536, 0x00042541, 0x000425D6, 0x000425E2, 0x00042601, 0x00042682,
    0x000426A5, 0x00042722, 0x00042756, 0x00042782, 0x000427C1, 0x00042813, 0x000428A1, 0x000428C2, 0x00042956, 0x00042973,
    0x00042996, 0x000429C2, 0x000429F6, 0x00042A0B, 0x00042C0A, 0x00043061, 0x00043082, 0x000430AA, 0x0004312B, 0x00043156,
    0x00043180, 0x00043213, 0x000432B6, 0x00043353, 0x00043396, 0x00043413, 0x00043436, 0x00043473, 0x00043496, 0x000434D3,
    0x000434F6, 0x000435D3, 0x000435F6, 0x000439D3, 0x00043A16, 0x00043A53, 0x00043A76, 0x00043A93, 0x00043AB6, 0x00043E93,
    0x00046016, 0x0004610E, 0x0004612F, 0x0004614E, 0x0004616F, 0x00046196, 0x00046413, 0x00046456, 0x0004652E, 0x0004654F,
    0x00046576, 0x00046F93, 0x00046FB6, 0x00047373, 0x00047696, 0x00047B93, 0x00047C56, 0x000484E0, 0x00048816, 0x00048960,
    0x00048C0B, 0x00049396, 0x00049D4B, 0x0004A016, 0x0004B6F3, 0x0004B716, 0x0004B833, 0x0004B856, 0x0004BF13, 0x0004C016,
    0x0004CDF3, 0x0004CE16, 0x0004ED0E, 0x0004ED2F, 0x0004ED4E, 0x0004ED6F, 0x0004ED8E, 0x0004EDAF, 0x0004EDCE, 0x0004EDEF,
    0x0004EE0E, 0x0004EE2F, 0x0004EE4E, 0x0004EE6F, 0x0004EE8E, 0x0004EEAF, 0x0004EECB, 0x0004F296, 0x0004F813, 0x0004F8AE,
    0x0004F8CF, 0x0004F8F3, 0x0004FCCE, 0x0004FCEF, 0x0004FD0E, 0x0004FD2F, 0x0004FD4E, 0x0004FD6F, 0x0004FD8E, 0x0004FDAF,
    0x0004FDCE, 0x0004FDEF, 0x0004FE13, 0x00050016, 0x00052013, 0x0005306E, 0x0005308F, 0x000530AE, 0x000530CF, 0x000530EE,
    0x0005310F, 0x0005312E, 0x0005314F, 0x0005316E, 0x0005318F, 0x000531AE, 0x000531CF, 0x000531EE, 0x0005320F, 0x0005322E,
    0x0005324F, 0x0005326E, 0x0005328F, 0x000532AE, 0x000532CF, 0x000532EE, 0x0005330F, 0x00053333, 0x00053B0E, 0x00053B2F,
    0x00053B4E, 0x00053B6F, 0x00053B93, 0x00053F8E, 0x00053FAF, 0x00053FD3, 0x00056016, 0x00056613, 0x000568B6, 0x000568F3,
    0x000569B6, 0x00056E80, 0x00056ED6, 0x000572C0, 0x000572F6, 0x00058001, 0x00058602, 0x00058C01, 0x00058C22, 0x00058C41,
    0x00058CA2, 0x00058CE1, 0x00058D02, 0x00058D21, 0x00058D42, 0x00058D61, 0x00058D82, 0x00058DA1, 0x00058E22, 0x00058E41,
    0x00058E62, 0x00058EA1, 0x00058EC2, 0x00058F84, 0x00058FC1, 0x00059022, 0x00059041, 0x00059062, 0x00059081, 0x000590A2,
    0x000590C1, 0x000590E2, 0x00059101, 0x00059122, 0x00059141, 0x00059162, 0x00059181, 0x000591A2, 0x000591C1, 0x000591E2,
    0x00059201, 0x00059222, 0x00059241, 0x00059262, 0x00059281, 0x000592A2, 0x000592C1, 0x000592E2, 0x00059301, 0x00059322,
    0x00059341, 0x00059362, 0x00059381, 0x000593A2, 0x000593C1, 0x000593E2, 0x00059401, 0x00059422, 0x00059441, 0x00059462,
    0x00059481, 0x000594A2, 0x000594C1, 0x000594E2, 0x00059501, 0x00059522, 0x00059541, 0x00059562, 0x00059581, 0x000595A2,
    0x000595C1, 0x000595E2, 0x00059601, 0x00059622, 0x00059641, 0x00059662, 0x00059681, 0x000596A2, 0x000596C1, 0x000596E2,
    0x00059701, 0x00059722, 0x00059741, 0x00059762, 0x00059781, 0x000597A2, 0x000597C1, 0x000597E2, 0x00059801, 0x00059822,
    0x00059841, 0x00059862, 0x00059881, 0x000598A2, 0x000598C1, 0x000598E2, 0x00059901, 0x00059922, 0x00059941, 0x00059962,
    0x00059981, 0x000599A2, 0x000599C1, 0x000599E2, 0x00059A01, 0x00059A22, 0x00059A41, 0x00059A62, 0x00059A81, 0x00059AA2,
    0x00059AC1, 0x00059AE2, 0x00059B01, 0x00059B22, 0x00059B41, 0x00059B62, 0x00059B81, 0x00059BA2, 0x00059BC1, 0x00059BE2,
    0x00059C01, 0x00059C22, 0x00059C41, 0x00059C62, 0x00059CB6, 0x00059D61, 0x00059D82, 0x00059DA1, 0x00059DC2, 0x00059DE6,
    0x00059E41, 0x00059E62, 0x00059E80, 0x00059F32, 0x00059FAB, 0x00059FD2, 0x0005A002, 0x0005A4C0, 0x0005A4E2, 0x0005A500,
    0x0005A5A2, 0x0005A5C0, 0x0005A605, 0x0005AD00, 0x0005ADE4, 0x0005AE12, 0x0005AE20, 0x0005AFE6, 0x0005B005, 0x0005B2E0,
    0x0005B405, 0x0005B4E0, 0x0005B505, 0x0005B5E0, 0x0005B605, 0x0005B6E0, 0x0005B705, 0x0005B7E0, 0x0005B805, 0x0005B8E0,
    0x0005B905, 0x0005B9E0, 0x0005BA05, 0x0005BAE0, 0x0005BB05, 0x0005BBE0, 0x0005BC06, 0x0005C012, 0x0005C050, 0x0005C071,
    0x0005C090, 0x0005C0B1, 0x0005C0D2, 0x0005C130, 0x0005C151, 0x0005C172, 0x0005C190, 0x0005C1B1, 0x0005C1D2, 0x0005C2ED,
    0x0005C312, 0x0005C34D, 0x0005C372, 0x0005C390, 0x0005C3B1, 0x0005C3D2, 0x0005C410, 0x0005C431, 0x0005C44E, 0x0005C46F,
    0x0005C48E, 0x0005C4AF, 0x0005C4CE, 0x0005C4EF, 0x0005C50E, 0x0005C52F, 0x0005C552, 0x0005C5E4, 0x0005C612, 0x0005C74D,
    0x0005C792, 0x0005C80D, 0x0005C832, 0x0005C84E, 0x0005C872, 0x0005CA16, 0x0005CA52, 0x0005CAAE, 0x0005CACF, 0x0005CAEE,
    0x0005CB0F, 0x0005CB2E, 0x0005CB4F, 0x0005CB6E, 0x0005CB8F, 0x0005CBAD, 0x0005CBC0, 0x0005D016, 0x0005D340, 0x0005D376,
    0x0005DE80, 0x0005E016, 0x0005FAC0, 0x0005FE16, 0x0005FF80, 0x00060017, 0x00060032, 0x00060096, 0x000600A4, 0x000600C5,
    0x000600EA, 0x0006010E, 0x0006012F, 0x0006014E, 0x0006016F, 0x0006018E, 0x000601AF, 0x000601CE, 0x000601EF, 0x0006020E,
    0x0006022F, 0x00060256, 0x0006028E, 0x000602AF, 0x000602CE, 0x000602EF, 0x0006030E, 0x0006032F, 0x0006034E, 0x0006036F,
    0x0006038D, 0x000603AE, 0x000603CF, 0x00060416, 0x0006042A, 0x00060546, 0x000605C7, 0x0006060D, 0x00060624, 0x000606D6,
    0x0006070A, 0x00060764, 0x00060785, 0x000607B2, 0x000607D6, 0x00060800, 0x00060825, 0x000612E0, 0x00061326, 0x00061375,
    0x000613A4, 0x000613E5, 0x0006140D, 0x00061425, 0x00061F72, 0x00061F84, 0x00061FE5, 0x00062000, 0x000620A5, 0x00062600,
    0x00062625, 0x000631E0, 0x00063216, 0x0006324B, 0x000632D6, 0x00063405, 0x00063816, 0x00063C80, 0x00063E05, 0x00064016,
    0x000643E0, 0x0006440B, 0x00064556, 0x0006490B, 0x00064A16, 0x00064A2B, 0x00064C16, 0x0006500B, 0x00065156, 0x0006562B,
    0x00065816, 0x00068005, 0x0009B816, 0x0009C005, 0x001402A4, 0x001402C5, 0x001491A0, 0x00149216, 0x001498E0, 0x00149A05,
    0x00149F04, 0x00149FD2, 0x0014A005, 0x0014C184, 0x0014C1B2, 0x0014C205, 0x0014C409, 0x0014C545, 0x0014C580, 0x0014C801,
    0x0014C822, 0x0014C841, 0x0014C862, 0x0014C881, 0x0014C8A2, 0x0014C8C1, 0x0014C8E2, 0x0014C901, 0x0014C922, 0x0014C941,
    0x0014C962, 0x0014C981, 0x0014C9A2, 0x0014C9C1, 0x0014C9E2, 0x0014CA01, 0x0014CA22, 0x0014CA41, 0x0014CA62, 0x0014CA81,
    0x0014CAA2, 0x0014CAC1, 0x0014CAE2, 0x0014CB01, 0x0014CB22, 0x0014CB41, 0x0014CB62, 0x0014CB81, 0x0014CBA2, 0x0014CBC1,
    0x0014CBE2, 0x0014CC01, 0x0014CC22, 0x0014CC41, 0x0014CC62, 0x0014CC81, 0x0014CCA2, 0x0014CCC1, 0x0014CCE2, 0x0014CD01,
    0x0014CD22, 0x0014CD41, 0x0014CD62, 0x0014CD81, 0x0014CDA2, 0x0014CDC5, 0x0014CDE6, 0x0014CE08, 0x0014CE72, 0x0014CE86,
    0x0014CFD2, 0x0014CFE4, 0x0014D001, 0x0014D022, 0x0014D041, 0x0014D062, 0x0014D081, 0x0014D0A2, 0x0014D0C1, 0x0014D0E2,
    0x0014D101, 0x0014D122, 0x0014D141, 0x0014D162, 0x0014D181, 0x0014D1A2, 0x0014D1C1, 0x0014D1E2, 0x0014D201, 0x0014D222,
    0x0014D241, 0x0014D262, 0x0014D281, 0x0014D2A2, 0x0014D2C1, 0x0014D2E2, 0x0014D301, 0x0014D322, 0x0014D341, 0x0014D362,
    0x0014D384, 0x0014D3C6, 0x0014D405, 0x0014DCCA, 0x0014DE06, 0x0014DE52, 0x0014DF00, 0x0014E015, 0x0014E2E4, 0x0014E415,
    0x0014E441, 0x0014E462, 0x0014E481, 0x0014E4A2, 0x0014E4C1, 0x0014E4E2, 0x0014E501, 0x0014E522, 0x0014E541, 0x0014E562,
    0x0014E581, 0x0014E5A2, 0x0014E5C1, 0x0014E5E2, 0x0014E641, 0x0014E662, 0x0014E681, 0x0014E6A2, 0x0014E6C1, 0x0014E6E2,
    0x0014E701, 0x0014E722, 0x0014E741, 0x0014E762, 0x0014E781, 0x0014E7A2, 0x0014E7C1, 0x0014E7E2, 0x0014E801, 0x0014E822,
    0x0014E841, 0x0014E862, 0x0014E881, 0x0014E8A2, 0x0014E8C1, 0x0014E8E2, 0x0014E901, 0x0014E922, 0x0014E941, 0x0014E962,
    0x0014E981, 0x0014E9A2, 0x0014E9C1, 0x0014E9E2, 0x0014EA01, 0x0014EA22, 0x0014EA41, 0x0014EA62, 0x0014EA81, 0x0014EAA2,
    0x0014EAC1, 0x0014EAE2, 0x0014EB01, 0x0014EB22, 0x0014EB41, 0x0014EB62, 0x0014EB81, 0x0014EBA2, 0x0014EBC1, 0x0014EBE2,
    0x0014EC01, 0x0014EC22, 0x0014EC41, 0x0014EC62, 0x0014EC81, 0x0014ECA2, 0x0014ECC1, 0x0014ECE2, 0x0014ED01, 0x0014ED22,
    0x0014ED41, 0x0014ED62, 0x0014ED81, 0x0014EDA2, 0x0014EDC1, 0x0014EDE2, 0x0014EE04, 0x0014EE22, 0x0014EF21, 0x0014EF42,
    0x0014EF61, 0x0014EF82, 0x0014EFA1, 0x0014EFE2, 0x0014F001, 0x0014F022, 0x0014F041, 0x0014F062, 0x0014F081, 0x0014F0A2,
    0x0014F0C1, 0x0014F0E2, 0x0014F104, 0x0014F135, 0x0014F161, 0x0014F182, 0x0014F1A1, 0x0014F1C2, 0x0014F1E5, 0x0014F201,
    0x0014F222, 0x0014F241, 0x0014F262, 0x0014F2C1, 0x0014F2E2, 0x0014F301, 0x0014F322, 0x0014F341, 0x0014F362, 0x0014F381,
    0x0014F3A2, 0x0014F3C1, 0x0014F3E2, 0x0014F401, 0x0014F422, 0x0014F441, 0x0014F462, 0x0014F481, 0x0014F4A2, 0x0014F4C1,
    0x0014F4E2, 0x0014F501, 0x0014F522, 0x0014F541, 0x0014F5E2, 0x0014F601, 0x0014F6A2, 0x0014F6C1, 0x0014F6E2, 0x0014F701,
    0x0014F722, 0x0014F741, 0x0014F762, 0x0014F781, 0x0014F7A2, 0x0014F7C1, 0x0014F7E2, 0x0014F801, 0x0014F822, 0x0014F841,
    0x0014F862, 0x0014F881, 0x0014F902, 0x0014F921, 0x0014F942, 0x0014F960, 0x0014FA01, 0x0014FA22, 0x0014FA40, 0x0014FA62,
    0x0014FA80, 0x0014FAA2, 0x0014FAC1, 0x0014FAE2, 0x0014FB01, 0x0014FB22, 0x0014FB40, 0x0014FE44, 0x0014FEA1, 0x0014FEC2,
    0x0014FEE5, 0x0014FF04, 0x0014FF42, 0x0014FF65, 0x00150046, 0x00150065, 0x001500C6, 0x001500E5, 0x00150166, 0x00150185,
    0x00150467, 0x001504A6, 0x001504E7, 0x00150516, 0x00150586, 0x001505A0, 0x0015060B, 0x001506D6, 0x00150714, 0x00150736,
    0x00150740, 0x00150805, 0x00150E92, 0x00150F00, 0x00151007, 0x00151045, 0x00151687, 0x00151886, 0x001518C0, 0x001519D2,
    0x00151A09, 0x00151B40, 0x00151C06, 0x00151E45, 0x00151F12, 0x00151F65, 0x00151F92, 0x00151FA5, 0x00151FE6, 0x00152009,
    0x00152145, 0x001524C6, 0x001525D2, 0x00152605, 0x001528E6, 0x00152A47, 0x00152A80, 0x00152BF2, 0x00152C05, 0x00152FA0,
    0x00153006, 0x00153067, 0x00153085, 0x00153666, 0x00153687, 0x001536C6, 0x00153747, 0x00153786, 0x001537C7, 0x00153832,
    0x001539C0, 0x001539E4, 0x00153A09, 0x00153B40, 0x00153BD2, 0x00153C05, 0x00153CA6, 0x00153CC4, 0x00153CE5, 0x00153E09,
    0x00153F45, 0x00153FE0, 0x00154005, 0x00154526, 0x001545E7, 0x00154626, 0x00154667, 0x001546A6, 0x001546E0, 0x00154805,
    0x00154866, 0x00154885, 0x00154986, 0x001549A7, 0x001549C0, 0x00154A09, 0x00154B40, 0x00154B92, 0x00154C05, 0x00154E04,
    0x00154E25, 0x00154EF6, 0x00154F45, 0x00154F67, 0x00154F86, 0x00154FA7, 0x00154FC5, 0x00155606, 0x00155625, 0x00155646,
    0x001556A5, 0x001556E6, 0x00155725, 0x001557C6, 0x00155805, 0x00155826, 0x00155845, 0x00155860, 0x00155B65, 0x00155BA4,
    0x00155BD2, 0x00155C05, 0x00155D67, 0x00155D86, 0x00155DC7, 0x00155E12, 0x00155E45, 0x00155E64, 0x00155EA7, 0x00155EC6,
    0x00155EE0, 0x00156025, 0x001560E0, 0x00156125, 0x001561E0, 0x00156225, 0x001562E0, 0x00156405, 0x001564E0, 0x00156505,
    0x001565E0, 0x00156602, 0x00156B75, 0x00156B84, 0x00156C02, 0x00156D24, 0x00156D55, 0x00156D80, 0x00156E02, 0x00157805,
    0x00157C67, 0x00157CA6, 0x00157CC7, 0x00157D06, 0x00157D27, 0x00157D72, 0x00157D87, 0x00157DA6, 0x00157DC0, 0x00157E09,
    0x00157F40, 0x00158005, 0x001AF480, 0x001AF605, 0x001AF8E0, 0x001AF965, 0x001AFF80, 0x001B001C, 0x001C001D, 0x001F2005,
    0x001F4DC0, 0x001F4E05, 0x001F5B40, 0x001F6002, 0x001F60E0, 0x001F6262, 0x001F6300, 0x001F63A5, 0x001F63C6, 0x001F63E5,
    0x001F6533, 0x001F6545, 0x001F66E0, 0x001F6705, 0x001F67A0, 0x001F67C5, 0x001F67E0, 0x001F6805, 0x001F6840, 0x001F6865,
    0x001F68A0, 0x001F68C5, 0x001F7655, 0x001F7860, 0x001F7A65, 0x001FA7CF, 0x001FA7EE, 0x001FA816, 0x001FAA05, 0x001FB200,
    0x001FB245, 0x001FB900, 0x001FB9F6, 0x001FBA00, 0x001FBE05, 0x001FBF94, 0x001FBFB6, 0x001FC006, 0x001FC212, 0x001FC2EE,
    0x001FC30F, 0x001FC332, 0x001FC340, 0x001FC406, 0x001FC612, 0x001FC62D, 0x001FC66C, 0x001FC6AE, 0x001FC6CF, 0x001FC6EE,
    0x001FC70F, 0x001FC72E, 0x001FC74F, 0x001FC76E, 0x001FC78F, 0x001FC7AE, 0x001FC7CF, 0x001FC7EE, 0x001FC80F, 0x001FC82E,
    0x001FC84F, 0x001FC86E, 0x001FC88F, 0x001FC8B2, 0x001FC8EE, 0x001FC90F, 0x001FC932, 0x001FC9AC, 0x001FCA12, 0x001FCA60,
    0x001FCA92, 0x001FCB0D, 0x001FCB2E, 0x001FCB4F, 0x001FCB6E, 0x001FCB8F, 0x001FCBAE, 0x001FCBCF, 0x001FCBF2, 0x001FCC53,
    0x001FCC6D, 0x001FCC93, 0x001FCCE0, 0x001FCD12, 0x001FCD34, 0x001FCD52, 0x001FCD80, 0x001FCE05, 0x001FCEA0, 0x001FCEC5,
    0x001FDFA0, 0x001FDFFB, 0x001FE000, 0x001FE032, 0x001FE094, 0x001FE0B2, 0x001FE10E, 0x001FE12F, 0x001FE152, 0x001FE173,
    0x001FE192, 0x001FE1AD, 0x001FE1D2, 0x001FE209, 0x001FE352, 0x001FE393, 0x001FE3F2, 0x001FE421, 0x001FE76E, 0x001FE792,
    0x001FE7AF, 0x001FE7D5, 0x001FE7EC, 0x001FE815, 0x001FE822, 0x001FEB6E, 0x001FEB93, 0x001FEBAF, 0x001FEBD3, 0x001FEBEE,
    0x001FEC0F, 0x001FEC32, 0x001FEC4E, 0x001FEC6F, 0x001FEC92, 0x001FECC5, 0x001FEE04, 0x001FEE25, 0x001FF3C4, 0x001FF405,
    0x001FF7E0, 0x001FF845, 0x001FF900, 0x001FF945, 0x001FFA00, 0x001FFA45, 0x001FFB00, 0x001FFB45, 0x001FFBA0, 0x001FFC14,
    0x001FFC53, 0x001FFC75, 0x001FFC96, 0x001FFCB4, 0x001FFCE0, 0x001FFD16, 0x001FFD33, 0x001FFDB6, 0x001FFDE0, 0x001FFF3B,
    0x001FFF96, 0x001FFFC0, 0x00200005, 0x00200180, 0x002001A5, 0x002004E0, 0x00200505, 0x00200760, 0x00200785, 0x002007C0,
    0x002007E5, 0x002009C0, 0x00200A05, 0x00200BC0, 0x00201005, 0x00201F60, 0x00202012, 0x00202060, 0x002020EB, 0x00202680,
    0x002026F6, 0x0020280A, 0x00202EAB, 0x00202F36, 0x0020314B, 0x00203196, 0x002031E0, 0x00203216, 0x002033A0, 0x00203416,
    0x00203420, 0x00203A16, 0x00203FA6, 0x00203FC0, 0x00205005, 0x002053A0, 0x00205405, 0x00205A20, 0x00205C06, 0x00205C2B,
    0x00205F80, 0x00206005, 0x0020640B, 0x00206480, 0x002065A5, 0x0020682A, 0x00206845, 0x0020694A, 0x00206960, 0x00206A05,
    0x00206EC6, 0x00206F60, 0x00207005, 0x002073C0, 0x002073F2, 0x00207405, 0x00207880, 0x00207905, 0x00207A12, 0x00207A2A,
    0x00207AC0, 0x00208001, 0x00208502, 0x00208A05, 0x002093C0, 0x00209409, 0x00209540, 0x00209601, 0x00209A80, 0x00209B02,
    0x00209F80, 0x0020A005, 0x0020A500, 0x0020A605, 0x0020AC80, 0x0020ADF2, 0x0020AE01, 0x0020AF60, 0x0020AF81, 0x0020B160,
    0x0020B181, 0x0020B260, 0x0020B281, 0x0020B2C0, 0x0020B2E2, 0x0020B440, 0x0020B462, 0x0020B640, 0x0020B662, 0x0020B740,
    0x0020B762, 0x0020B7A0, 0x0020C005, 0x0020E6E0, 0x0020E805, 0x0020EAC0, 0x0020EC05, 0x0020ED00, 0x0020F004, 0x0020F0C0,
    0x0020F0E4, 0x0020F620, 0x0020F644, 0x0020F760, 0x00210005, 0x002100C0, 0x00210105, 0x00210120, 0x00210145, 0x002106C0,
    0x002106E5, 0x00210720, 0x00210785, 0x002107A0, 0x002107E5, 0x00210AC0, 0x00210AF2, 0x00210B0B, 0x00210C05, 0x00210EF6,
    0x00210F2B, 0x00211005, 0x002113E0, 0x002114EB, 0x00211600, 0x00211C05, 0x00211E60, 0x00211E85, 0x00211EC0, 0x00211F6B,
    0x00212005, 0x002122CB, 0x00212380, 0x002123F2, 0x00212405, 0x00212740, 0x002127F2, 0x00212800, 0x00213005, 0x00213700,
    0x0021378B, 0x002137C5, 0x0021380B, 0x00213A00, 0x00213A4B, 0x00214005, 0x00214026, 0x00214080, 0x002140A6, 0x002140E0,
    0x00214186, 0x00214205, 0x00214280, 0x002142A5, 0x00214300, 0x00214325, 0x002146C0, 0x00214706, 0x00214760, 0x002147E6,
    0x0021480B, 0x00214920, 0x00214A12, 0x00214B20, 0x00214C05, 0x00214FAB, 0x00214FF2, 0x00215005, 0x002153AB, 0x00215400,
    0x00215805, 0x00215916, 0x00215925, 0x00215CA6, 0x00215CE0, 0x00215D6B, 0x00215E12, 0x00215EE0, 0x00216005, 0x002166C0,
    0x00216732, 0x00216805, 0x00216AC0, 0x00216B0B, 0x00216C05, 0x00216E60, 0x00216F0B, 0x00217005, 0x00217240, 0x00217332,
    0x002173A0, 0x0021752B, 0x00217600, 0x00218005, 0x00218920, 0x00219001, 0x00219660, 0x00219802, 0x00219E60, 0x00219F4B,
    0x0021A005, 0x0021A486, 0x0021A500, 0x0021A609, 0x0021A740, 0x0021CC0B, 0x0021CFE0, 0x0021D005, 0x0021D540, 0x0021D566,
    0x0021D5AD, 0x0021D5C0, 0x0021D605, 0x0021D640, 0x0021DFA6, 0x0021E005, 0x0021E3AB, 0x0021E4E5, 0x0021E500, 0x0021E605,
    0x0021E8C6, 0x0021EA2B, 0x0021EAB2, 0x0021EB40, 0x0021EE05, 0x0021F046, 0x0021F0D2, 0x0021F140, 0x0021F605, 0x0021F8AB,
    0x0021F980, 0x0021FC05, 0x0021FEE0, 0x00220007, 0x00220026, 0x00220047, 0x00220065, 0x00220706, 0x002208F2, 0x002209C0,
    0x00220A4B, 0x00220CC9, 0x00220E06, 0x00220E25, 0x00220E66, 0x00220EA5, 0x00220EC0, 0x00220FE6, 0x00221047, 0x00221065,
    0x00221607, 0x00221666, 0x002216E7, 0x00221726, 0x00221772, 0x002217BB, 0x002217D2, 0x00221846, 0x00221860, 0x002219BB,
    0x002219C0, 0x00221A05, 0x00221D20, 0x00221E09, 0x00221F40, 0x00222006, 0x00222065, 0x002224E6, 0x00222587, 0x002225A6,
    0x002226A0, 0x002226C9, 0x00222812, 0x00222885, 0x002228A7, 0x002228E5, 0x00222900, 0x00222A05, 0x00222E66, 0x00222E92,
    0x00222EC5, 0x00222EE0, 0x00223006, 0x00223047, 0x00223065, 0x00223667, 0x002236C6, 0x002237E7, 0x00223825, 0x002238B2,
    0x00223926, 0x002239B2, 0x002239C7, 0x002239E6, 0x00223A09, 0x00223B45, 0x00223B72, 0x00223B85, 0x00223BB2, 0x00223C00,
    0x00223C2B, 0x00223EA0, 0x00224005, 0x00224240, 0x00224265, 0x00224587, 0x002245E6, 0x00224647, 0x00224686, 0x002246A7,
    0x002246C6, 0x00224712, 0x002247C6, 0x002247E5, 0x00224826, 0x00224840, 0x00225005, 0x002250E0, 0x00225105, 0x00225120,
    0x00225145, 0x002251C0, 0x002251E5, 0x002253C0, 0x002253E5, 0x00225532, 0x00225540, 0x00225605, 0x00225BE6, 0x00225C07,
    0x00225C66, 0x00225D60, 0x00225E09, 0x00225F40, 0x00226006, 0x00226047, 0x00226080, 0x002260A5, 0x002261A0, 0x002261E5,
    0x00226220, 0x00226265, 0x00226520, 0x00226545, 0x00226620, 0x00226645, 0x00226680, 0x002266A5, 0x00226740, 0x00226766,
    0x002267A5, 0x002267C7, 0x00226806, 0x00226827, 0x002268A0, 0x002268E7, 0x00226920, 0x00226967, 0x002269C0, 0x00226A05,
    0x00226A20, 0x00226AE7, 0x00226B00, 0x00226BA5, 0x00226C47, 0x00226C80, 0x00226CC6, 0x00226DA0, 0x00226E06, 0x00226EA0,
    0x00228005, 0x002286A7, 0x00228706, 0x00228807, 0x00228846, 0x002288A7, 0x002288C6, 0x002288E5, 0x00228972, 0x00228A09,
    0x00228B52, 0x00228B80, 0x00228BB2, 0x00228BC6, 0x00228BE5, 0x00228C40, 0x00229005, 0x00229607, 0x00229666, 0x00229727,
    0x00229746, 0x00229767, 0x002297E6, 0x00229827, 0x00229846, 0x00229885, 0x002298D2, 0x002298E5, 0x00229900, 0x00229A09,
    0x00229B40, 0x0022B005, 0x0022B5E7, 0x0022B646, 0x0022B6C0, 0x0022B707, 0x0022B786, 0x0022B7C7, 0x0022B7E6, 0x0022B832,
    0x0022BB05, 0x0022BB86, 0x0022BBC0, 0x0022C005, 0x0022C607, 0x0022C666, 0x0022C767, 0x0022C7A6, 0x0022C7C7, 0x0022C7E6,
    0x0022C832, 0x0022C885, 0x0022C8A0, 0x0022CA09, 0x0022CB40, 0x0022CC12, 0x0022CDA0, 0x0022D005, 0x0022D566, 0x0022D587,
    0x0022D5A6, 0x0022D5C7, 0x0022D606, 0x0022D6C7, 0x0022D6E6, 0x0022D705, 0x0022D732, 0x0022D740, 0x0022D809, 0x0022D940,
    0x0022E005, 0x0022E360, 0x0022E3A6, 0x0022E407, 0x0022E446, 0x0022E4C7, 0x0022E4E6, 0x0022E580, 0x0022E609, 0x0022E74B,
    0x0022E792, 0x0022E7F6, 0x0022E805, 0x0022E8E0, 0x00230005, 0x00230587, 0x002305E6, 0x00230707, 0x00230726, 0x00230772,
    0x00230780, 0x00231401, 0x00231802, 0x00231C09, 0x00231D4B, 0x00231E60, 0x00231FE5, 0x002320E0, 0x00232125, 0x00232140,
    0x00232185, 0x00232280, 0x002322A5, 0x002322E0, 0x00232305, 0x00232607, 0x002326C0, 0x002326E7, 0x00232720, 0x00232766,
    0x002327A7, 0x002327C6, 0x002327E5, 0x00232807, 0x00232825, 0x00232847, 0x00232866, 0x00232892, 0x002328E0, 0x00232A09,
    0x00232B40, 0x00233405, 0x00233500, 0x00233545, 0x00233A27, 0x00233A86, 0x00233B00, 0x00233B46, 0x00233B87, 0x00233C06,
    0x00233C25, 0x00233C52, 0x00233C65, 0x00233C87, 0x00233CA0, 0x00234005, 0x00234026, 0x00234165, 0x00234666, 0x00234727,
    0x00234745, 0x00234766, 0x002347F2, 0x002348E6, 0x00234900, 0x00234A05, 0x00234A26, 0x00234AE7, 0x00234B26, 0x00234B85,
    0x00235146, 0x002352E7, 0x00235306, 0x00235352, 0x002353A5, 0x002353D2, 0x00235460, 0x00235605, 0x00235F20, 0x00236012,
    0x00236140, 0x00238005, 0x00238120, 0x00238145, 0x002385E7, 0x00238606, 0x002386E0, 0x00238706, 0x002387C7, 0x002387E6,
    0x00238805, 0x00238832, 0x002388C0, 0x00238A09, 0x00238B4B, 0x00238DA0, 0x00238E12, 0x00238E45, 0x00239200, 0x00239246,
    0x00239500, 0x00239527, 0x00239546, 0x00239627, 0x00239646, 0x00239687, 0x002396A6, 0x002396E0, 0x0023A005, 0x0023A0E0,
    0x0023A105, 0x0023A140, 0x0023A165, 0x0023A626, 0x0023A6E0, 0x0023A746, 0x0023A760, 0x0023A786, 0x0023A7C0, 0x0023A7E6,
    0x0023A8C5, 0x0023A8E6, 0x0023A900, 0x0023AA09, 0x0023AB40, 0x0023AC05, 0x0023ACC0, 0x0023ACE5, 0x0023AD20, 0x0023AD45,
    0x0023B147, 0x0023B1E0, 0x0023B206, 0x0023B240, 0x0023B267, 0x0023B2A6, 0x0023B2C7, 0x0023B2E6, 0x0023B305, 0x0023B320,
    0x0023B409, 0x0023B540, 0x0023DC05, 0x0023DE66, 0x0023DEA7, 0x0023DEF2, 0x0023DF20, 0x0023E006, 0x0023E045, 0x0023E067,
    0x0023E085, 0x0023E220, 0x0023E245, 0x0023E687, 0x0023E6C6, 0x0023E760, 0x0023E7C7, 0x0023E806, 0x0023E827, 0x0023E846,
    0x0023E872, 0x0023EA09, 0x0023EB40, 0x0023F605, 0x0023F620, 0x0023F80B, 0x0023FAB6, 0x0023FBB4, 0x0023FC36, 0x0023FE40,
    0x0023FFF2, 0x00240005, 0x00247340, 0x0024800A, 0x00248DE0, 0x00248E12, 0x00248EA0, 0x00249005, 0x0024A880, 0x0025F205,
    0x0025FE32, 0x0025FE60, 0x00260005, 0x0026861B, 0x00268806, 0x00268825, 0x002688E6, 0x00268AC0, 0x00288005, 0x0028C8E0,
    0x002D0005, 0x002D4720, 0x002D4805, 0x002D4BE0, 0x002D4C09, 0x002D4D40, 0x002D4DD2, 0x002D4E05, 0x002D57E0, 0x002D5809,
    0x002D5940, 0x002D5A05, 0x002D5DC0, 0x002D5E06, 0x002D5EB2, 0x002D5EC0, 0x002D6005, 0x002D6606, 0x002D66F2, 0x002D6796,
    0x002D6804, 0x002D6892, 0x002D68B6, 0x002D68C0, 0x002D6A09, 0x002D6B40, 0x002D6B6B, 0x002D6C40, 0x002D6C65, 0x002D6F00,
    0x002D6FA5, 0x002D7200, 0x002DC801, 0x002DCC02, 0x002DD00B, 0x002DD2F2, 0x002DD360, 0x002DE005, 0x002DE960, 0x002DE9E6,
    0x002DEA05, 0x002DEA27, 0x002DF100, 0x002DF1E6, 0x002DF264, 0x002DF400, 0x002DFC04, 0x002DFC52, 0x002DFC64, 0x002DFC86,
    0x002DFCA0, 0x002DFE07, 0x002DFE40, 0x002E0005, 0x0030FF00, 0x00310005, 0x00319AC0, 0x0031A005, 0x0031A120, 0x0035FE04,
    0x0035FE80, 0x0035FEA4, 0x0035FF80, 0x0035FFA4, 0x0035FFE0, 0x00360005, 0x00362460, 0x00362645, 0x00362660, 0x00362A05,
    0x00362A60, 0x00362AA5, 0x00362AC0, 0x00362C85, 0x00362D00, 0x00362E05, 0x00365F80, 0x00378005, 0x00378D60, 0x00378E05,
    0x00378FA0, 0x00379005, 0x00379120, 0x00379205, 0x00379340, 0x00379396, 0x003793A6, 0x003793F2, 0x0037941B, 0x00379480,
    0x0039E006, 0x0039E5C0, 0x0039E606, 0x0039E8E0, 0x0039EA16, 0x0039F880, 0x003A0016, 0x003A1EC0, 0x003A2016, 0x003A24E0,
    0x003A2536, 0x003A2CA7, 0x003A2CE6, 0x003A2D56, 0x003A2DA7, 0x003A2E7B, 0x003A2F66, 0x003A3076, 0x003A30A6, 0x003A3196,
    0x003A3546, 0x003A35D6, 0x003A3D60, 0x003A4016, 0x003A4846, 0x003A48B6, 0x003A48C0, 0x003A580B, 0x003A5A80, 0x003A5C0B,
    0x003A5E80, 0x003A6016, 0x003A6AE0, 0x003A6C0B, 0x003A6F20, 0x003A8001, 0x003A8342, 0x003A8681, 0x003A89C2, 0x003A8AA0,
    0x003A8AC2, 0x003A8D01, 0x003A9042, 0x003A9381, 0x003A93A0, 0x003A93C1, 0x003A9400, 0x003A9441, 0x003A9460, 0x003A94A1,
    0x003A94E0, 0x003A9521, 0x003A95A0, 0x003A95C1, 0x003A96C2, 0x003A9740, 0x003A9762, 0x003A9780, 0x003A97A2, 0x003A9880,
    0x003A98A2, 0x003A9A01, 0x003A9D42, 0x003AA081, 0x003AA0C0, 0x003AA0E1, 0x003AA160, 0x003AA1A1, 0x003AA2A0, 0x003AA2C1,
    0x003AA3A0, 0x003AA3C2, 0x003AA701, 0x003AA740, 0x003AA761, 0x003AA7E0, 0x003AA801, 0x003AA8A0, 0x003AA8C1, 0x003AA8E0,
    0x003AA941, 0x003AAA20, 0x003AAA42, 0x003AAD81, 0x003AB0C2, 0x003AB401, 0x003AB742, 0x003ABA81, 0x003ABDC2, 0x003AC101,
    0x003AC442, 0x003AC781, 0x003ACAC2, 0x003ACE01, 0x003AD142, 0x003AD4C0, 0x003AD501, 0x003AD833, 0x003AD842, 0x003ADB73,
    0x003ADB82, 0x003ADC41, 0x003ADF73, 0x003ADF82, 0x003AE2B3, 0x003AE2C2, 0x003AE381, 0x003AE6B3, 0x003AE6C2, 0x003AE9F3,
    0x003AEA02, 0x003AEAC1, 0x003AEDF3, 0x003AEE02, 0x003AF133, 0x003AF142, 0x003AF201, 0x003AF533, 0x003AF542, 0x003AF873,
    0x003AF882, 0x003AF941, 0x003AF962, 0x003AF980, 0x003AF9C9, 0x003B0016, 0x003B4006, 0x003B46F6, 0x003B4766, 0x003B4DB6,
    0x003B4EA6, 0x003B4ED6, 0x003B5086, 0x003B50B6, 0x003B50F2, 0x003B5180, 0x003B5366, 0x003B5400, 0x003B5426, 0x003B5600,
    0x003BE002, 0x003BE145, 0x003BE162, 0x003BE3E0, 0x003BE4A2, 0x003BE560, 0x003C0006, 0x003C00E0, 0x003C0106, 0x003C0320,
    0x003C0366, 0x003C0440, 0x003C0466, 0x003C04A0, 0x003C04C6, 0x003C0560, 0x003C0604, 0x003C0DC0, 0x003C11E6, 0x003C1200,
    0x003C2005, 0x003C25A0, 0x003C2606, 0x003C26E4, 0x003C27C0, 0x003C2809, 0x003C2940, 0x003C29C5, 0x003C29F6, 0x003C2A00,
    0x003C5205, 0x003C55C6, 0x003C55E0, 0x003C5805, 0x003C5D86, 0x003C5E09, 0x003C5F40, 0x003C5FF4, 0x003C6000, 0x003C9A05,
    0x003C9D64, 0x003C9D86, 0x003C9E09, 0x003C9F40, 0x003CFC05, 0x003CFCE0, 0x003CFD05, 0x003CFD80, 0x003CFDA5, 0x003CFDE0,
    0x003CFE05, 0x003CFFE0, 0x003D0005, 0x003D18A0, 0x003D18EB, 0x003D1A06, 0x003D1AE0, 0x003D2001, 0x003D2442, 0x003D2886,
    0x003D2964, 0x003D2980, 0x003D2A09, 0x003D2B40, 0x003D2BD2, 0x003D2C00, 0x003D8E2B, 0x003D9596, 0x003D95AB, 0x003D9614,
    0x003D962B, 0x003D96A0, 0x003DA02B, 0x003DA5D6, 0x003DA5EB, 0x003DA7C0, 0x003DC005, 0x003DC080, 0x003DC0A5, 0x003DC400,
    0x003DC425, 0x003DC460, 0x003DC485, 0x003DC4A0, 0x003DC4E5, 0x003DC500, 0x003DC525, 0x003DC660, 0x003DC685, 0x003DC700,
    0x003DC725, 0x003DC740, 0x003DC765, 0x003DC780, 0x003DC845, 0x003DC860, 0x003DC8E5, 0x003DC900, 0x003DC925, 0x003DC940,
    0x003DC965, 0x003DC980, 0x003DC9A5, 0x003DCA00, 0x003DCA25, 0x003DCA60, 0x003DCA85, 0x003DCAA0, 0x003DCAE5, 0x003DCB00,
    0x003DCB25, 0x003DCB40, 0x003DCB65, 0x003DCB80, 0x003DCBA5, 0x003DCBC0, 0x003DCBE5, 0x003DCC00, 0x003DCC25, 0x003DCC60,
    0x003DCC85, 0x003DCCA0, 0x003DCCE5, 0x003DCD60, 0x003DCD85, 0x003DCE60, 0x003DCE85, 0x003DCF00, 0x003DCF25, 0x003DCFA0,
    0x003DCFC5, 0x003DCFE0, 0x003DD005, 0x003DD140, 0x003DD165, 0x003DD380, 0x003DD425, 0x003DD480, 0x003DD4A5, 0x003DD540,
    0x003DD565, 0x003DD780, 0x003DDE13, 0x003DDE40, 0x003E0016, 0x003E0580, 0x003E0616, 0x003E1280, 0x003E1416, 0x003E15E0,
    0x003E1636, 0x003E1800, 0x003E1836, 0x003E1A00, 0x003E1A36, 0x003E1EC0, 0x003E200B, 0x003E21B6, 0x003E35C0, 0x003E3CD6,
    0x003E4060, 0x003E4216, 0x003E4780, 0x003E4816, 0x003E4920, 0x003E4A16, 0x003E4A40, 0x003E4C16, 0x003E4CC0, 0x003E6016,
    0x003E7F75, 0x003E8016, 0x003EDB00, 0x003EDB96, 0x003EDDA0, 0x003EDE16, 0x003EDFA0, 0x003EE016, 0x003EEEE0, 0x003EEF76,
    0x003EFB40, 0x003EFC16, 0x003EFD80, 0x003EFE16, 0x003EFE20, 0x003F0016, 0x003F0180, 0x003F0216, 0x003F0900, 0x003F0A16,
    0x003F0B40, 0x003F0C16, 0x003F1100, 0x003F1216, 0x003F15C0, 0x003F1616, 0x003F1640, 0x003F2016, 0x003F4A80, 0x003F4C16,
    0x003F4DC0, 0x003F4E16, 0x003F4FA0, 0x003F5016, 0x003F5120, 0x003F5216, 0x003F57C0, 0x003F57F6, 0x003F58C0, 0x003F59D6,
    0x003F5B80, 0x003F5C16, 0x003F5D20, 0x003F5E16, 0x003F5F20, 0x003F6016, 0x003F7260, 0x003F7296, 0x003F7960, 0x003F7E09,
    0x003F7F40, 0x00400005, 0x0054DC00, 0x0054E005, 0x0056E740, 0x0056E805, 0x005703C0, 0x00570405, 0x0059D440, 0x0059D605,
    0x005D7C20, 0x005F0005, 0x005F43C0, 0x00600005, 0x00626960, 0x00626A05, 0x00647600, 0x01C0003B, 0x01C00040, 0x01C0041B,
    0x01C01000, 0x01C02006, 0x01C03E00, 0x01E0001D, 0x01FFFFC0, 0x0200001D, 0x021FFFC0,
};
inline constexpr uint32_t kUnicodeWhiteSpace[11][2] = {
    {0x0009, 0x000D}, {0x0020, 0x0020}, {0x0085, 0x0085}, {0x00A0, 0x00A0}, {0x1680, 0x1680}, {0x2000, 0x200A},
    {0x2028, 0x2028}, {0x2029, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000},
};
// END GENERATED

// Category of a code point by binary search over the runs (Cn beyond U+10FFFF).
inline UnicodeCategory unicode_category_search(uint32_t cp) {
    if (cp > 0x10FFFF) return uc_Cn;
    size_t lo = 0, hi = sizeof kUnicodeCategoryRuns / sizeof kUnicodeCategoryRuns[0];
    // Invariant: run lo starts at or before cp; runs from hi on start after it.
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if ((kUnicodeCategoryRuns[mid] >> 5) <= cp) lo = mid;
        else hi = mid;
    }
    return static_cast<UnicodeCategory>(kUnicodeCategoryRuns[lo] & 31u);
}

inline bool unicode_white_space_search(uint32_t cp) {
    for (const auto& r : kUnicodeWhiteSpace)
        if (cp >= r[0] && cp <= r[1]) return true;
    return false;
}

// Flags per code point: the major class of its category plus White_Space and case.
enum UnicodeFlag : uint16_t {
    uf_letter = 1,       // L*
    uf_mark = 2,         // M*
    uf_number = 4,       // N*
    uf_punct = 8,        // P*
    uf_symbol = 16,      // S*
    uf_separator = 32,   // Z*
    uf_other = 64,       // C* (control, format, surrogate, private use, unassigned)
    uf_space = 128,      // White_Space property
    uf_upper = 256,      // Lu
    uf_lower = 512,      // Ll
};

inline uint16_t unicode_category_flags(UnicodeCategory c) {
    switch (c) {
        case uc_Lu: return uf_letter | uf_upper;
        case uc_Ll: return uf_letter | uf_lower;
        case uc_Lt: case uc_Lm: case uc_Lo: return uf_letter;
        case uc_Mn: case uc_Mc: case uc_Me: return uf_mark;
        case uc_Nd: case uc_Nl: case uc_No: return uf_number;
        case uc_Pc: case uc_Pd: case uc_Ps: case uc_Pe: case uc_Pi: case uc_Pf: case uc_Po: return uf_punct;
        case uc_Sm: case uc_Sc: case uc_Sk: case uc_So: return uf_symbol;
        case uc_Zs: case uc_Zl: case uc_Zp: return uf_separator;
        default: return uf_other;
    }
}

// Flat flag table of the Basic Multilingual Plane, built on first use.
inline const uint16_t* unicode_bmp_flags() {
    static const std::vector<uint16_t> table = [] {
        std::vector<uint16_t> t(0x10000, 0);
        size_t n = sizeof kUnicodeCategoryRuns / sizeof kUnicodeCategoryRuns[0];
        for (size_t i = 0; i < n; ++i) {
            uint32_t first = kUnicodeCategoryRuns[i] >> 5;
            if (first >= 0x10000) break;
            uint32_t last = i + 1 < n ? (kUnicodeCategoryRuns[i + 1] >> 5) : 0x110000;
            if (last > 0x10000) last = 0x10000;
            uint16_t f = unicode_category_flags(static_cast<UnicodeCategory>(kUnicodeCategoryRuns[i] & 31u));
            for (uint32_t c = first; c < last; ++c) t[c] = f;
        }
        for (const auto& r : kUnicodeWhiteSpace)
            for (uint32_t c = r[0]; c <= r[1] && c < 0x10000; ++c) t[c] = static_cast<uint16_t>(t[c] | uf_space);
        return t;
    }();
    return table.data();
}

inline uint16_t unicode_flags(uint32_t cp) {
    if (cp < 0x10000) return unicode_bmp_flags()[cp];
    uint16_t f = unicode_category_flags(unicode_category_search(cp));
    if (unicode_white_space_search(cp)) f = static_cast<uint16_t>(f | uf_space);
    return f;
}

inline UnicodeCategory unicode_category(uint32_t cp) { return unicode_category_search(cp); }

// Decodes the UTF-8 character at s[i] (i < n). A byte that does not start a
// complete, well-formed sequence (bad lead byte, missing or bad continuation
// bytes, overlong form, surrogate, beyond U+10FFFF) decodes to U+FFFD with
// *len = 1, so every byte of any input is consumed exactly once.
inline uint32_t utf8_decode(const char* s, size_t n, size_t i, size_t* len) {
    const unsigned char* u = reinterpret_cast<const unsigned char*>(s);
    unsigned char c = u[i];
    *len = 1;
    if (c < 0x80) return c;
    size_t need;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) { need = 2; cp = c & 0x1Fu; }
    else if ((c & 0xF0) == 0xE0) { need = 3; cp = c & 0x0Fu; }
    else if ((c & 0xF8) == 0xF0) { need = 4; cp = c & 0x07u; }
    else return 0xFFFD;
    if (i + need > n) return 0xFFFD;
    for (size_t k = 1; k < need; ++k) {
        if ((u[i + k] & 0xC0) != 0x80) return 0xFFFD;
        cp = (cp << 6) | (u[i + k] & 0x3Fu);
    }
    if ((need == 2 && cp < 0x80) || (need == 3 && cp < 0x800) || (need == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0xFFFD;
    *len = need;
    return cp;
}

inline void utf8_append(std::string& s, uint32_t cp) {
    if (cp < 0x80) {
        s += static_cast<char>(cp);
    } else if (cp < 0x800) {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        s += static_cast<char>(0xE0 | (cp >> 12));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        s += static_cast<char>(0xF0 | (cp >> 18));
        s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

}  // namespace detail
MINIGPT_NS_END

// ---- tokenizer.hpp ----
// tokenizer: the vocabulary stored in GGUF metadata (tokenizer.ggml.*), the
// SentencePiece-style tokenizer (tokenizer.ggml.model = "llama") and the
// byte-level BPE tokenizer (model "gpt2") with the pre-tokenizers selected by
// tokenizer.ggml.pre, with the same results as llama.cpp, plus token -> text.

#include <queue>

MINIGPT_NS_BEGIN
namespace detail {

// ---------------------------------------------------------------------------
// Vocabulary.
// ---------------------------------------------------------------------------
struct Vocab {
    // GGUF tokenizer.ggml.token_type values. Other values are kept and act like
    // `undefined`: such tokens are never produced as text.
    enum TokenAttr : int32_t {
        undefined = 0, normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6
    };
    // Per-token flags computed by init_vocab.
    enum TokenFlag : uint8_t {
        flag_eog = 1,     // ends generation (EOS, EOT, EOM and end-of-turn texts)
        flag_lstrip = 2,  // when parsed as a special token, eats the whitespace before it
        flag_rstrip = 4,  // ... and after it
    };

    std::string model;                 // tokenizer.ggml.model: "llama" (SPM) or "gpt2" (byte-level BPE)
    std::string name;                  // general.name in lower case (a few rules depend on it)
    std::vector<std::string> text;     // tokenizer.ggml.tokens
    std::vector<float> score;          // tokenizer.ggml.scores (0 if absent)
    std::vector<int32_t> type;         // tokenizer.ggml.token_type (normal if absent)
    int32_t bos = -1, eos = -1, unk = -1, eot = -1, eom = -1, pad = -1;
    bool add_bos = true, add_eos = false, add_space_prefix = true;

    // Byte-level BPE (model "gpt2") only.
    std::string pre;                   // tokenizer.ggml.pre: selects the pre-tokenizer ("" = "default")
    std::vector<std::string> merges;   // tokenizer.ggml.merges, "left right", highest priority first
    bool unknown_pre_as_default = false;  // an unknown `pre` uses the "default" rules instead of failing

    // Indexes, built by init_vocab.
    std::vector<int32_t> slots;        // open-addressing hash table of ids keyed by text; -1 = empty
    std::vector<uint8_t> flags;        // TokenFlag bits per token
    std::vector<int16_t> byte_value;   // the byte of a <0xNN> byte token, else -1
    std::vector<int32_t> specials;     // control / user-defined / unknown tokens, longest text first
    int32_t byte_token[256];           // token for a raw byte in byte fallback, -1 if none
    bool is_bpe = false;               // model "gpt2"
    int pre_index = -1;                // the entry of bpe_pre_tokenizers() in use
    bool ignore_merges = false;        // a pre-token that is itself a token is not merged (Llama 3)
    int32_t bpe_byte_token[256];       // normal token of each byte's byte-to-unicode character, -1 if none
    std::vector<uint64_t> merge_keys;  // open-addressing table (left id << 32 | right id) -> merge
    std::vector<int32_t> merge_rank;   // priority of the merge (index in `merges`)
    std::vector<int32_t> merge_result; // id of the merged token
    // SentencePiece only: where a text may be cut into pieces that are merged
    // independently (see spm_init_split).
    bool spm_split = false;            // a text may be cut before a U+2581
    bool spm_space_runs = false;       // some token holds U+2581 U+2581: never cut between two U+2581
    std::vector<int32_t> spm_cross;    // other tokens holding U+2581 after their first byte
    bool ready = false;                // init_vocab succeeded

    Vocab() {
        std::fill(byte_token, byte_token + 256, -1);
        std::fill(bpe_byte_token, bpe_byte_token + 256, -1);
    }

    int n_vocab() const { return static_cast<int>(text.size()); }
    // Id of the token whose text is exactly `piece`, or -1. With duplicate texts the last id wins.
    int32_t find(std::string_view piece) const;
};

inline uint64_t vocab_hash(std::string_view s) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (char c : s) {
        h ^= static_cast<unsigned char>(c);
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

inline int32_t Vocab::find(std::string_view piece) const {
    if (slots.empty()) return -1;
    size_t mask = slots.size() - 1;
    for (size_t i = static_cast<size_t>(vocab_hash(piece)) & mask;; i = (i + 1) & mask) {
        int32_t id = slots[i];
        if (id < 0) return -1;
        if (text[static_cast<size_t>(id)] == piece) return id;
    }
}

// The texts llama.cpp treats as end of turn, in order of preference, and the
// wider set of texts that end generation.
inline int32_t vocab_find_eot(const Vocab& v) {
    static const char* const names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                        "<EOT>", "_<EOT>", "<\xEF\xBD\x9C\x65nd\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"};
    for (const char* n : names) {
        int32_t id = v.find(n);
        if (id >= 0) return id;
    }
    return -1;
}
inline bool vocab_is_eog_text(std::string_view t) {
    static const char* const names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>",
                                        "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>",
                                        "<|end_of_text|>", "<end_of_utterance>"};
    for (const char* n : names)
        if (t == n) return true;
    return false;
}

inline int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// ---------------------------------------------------------------------------
// Byte-level BPE: the byte <-> unicode mapping, pre-tokenizers, merge table.
// ---------------------------------------------------------------------------

// GPT-2's reversible byte -> code point map: printable bytes (0x21-0x7E,
// 0xA1-0xAC, 0xAE-0xFF) stand for themselves; the other 68 bytes, in order,
// become U+0100, U+0101, ... so that every token text is printable.
inline uint32_t bpe_byte_to_cp(unsigned char b) {
    static const std::vector<uint32_t> table = [] {
        std::vector<uint32_t> t(256);
        uint32_t next = 256;
        for (int c = 0; c < 256; ++c) {
            bool printable = (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
            t[static_cast<size_t>(c)] = printable ? static_cast<uint32_t>(c) : next++;
        }
        return t;
    }();
    return table[b];
}
// The byte a code point of a token text stands for, or -1 if it is not one of the 256.
inline int bpe_cp_to_byte(uint32_t cp) {
    if (cp < 256) {
        bool printable = (cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE);
        return printable ? static_cast<int>(cp) : -1;
    }
    if (cp < 256 + 68) {
        static const std::vector<int16_t> back = [] {
            std::vector<int16_t> t(68, -1);
            for (int c = 0; c < 256; ++c) {
                uint32_t m = bpe_byte_to_cp(static_cast<unsigned char>(c));
                if (m >= 256) t[m - 256] = static_cast<int16_t>(c);
            }
            return t;
        }();
        return back[cp - 256];
    }
    return -1;
}
// Appends the byte-to-unicode form of raw bytes (what token texts are made of).
inline void bpe_encode_bytes(std::string_view bytes, std::string& out) {
    for (char c : bytes) utf8_append(out, bpe_byte_to_cp(static_cast<unsigned char>(c)));
}
// Appends the raw bytes a BPE token text stands for. A code point outside the
// map (not produced by the converter) is copied as it is.
inline void bpe_decode_text(std::string_view text, std::string& out) {
    for (size_t i = 0; i < text.size();) {
        size_t len;
        uint32_t cp = utf8_decode(text.data(), text.size(), i, &len);
        int b = len == 1 && cp == 0xFFFD ? -1 : bpe_cp_to_byte(cp);
        if (b >= 0) out += static_cast<char>(b);
        else out.append(text.data() + i, len);
        i += len;
    }
}

// The split rules. Each one is a hand-written matcher of one regular
// expression of the pre-tokenizers (the expressions as llama.cpp applies
// them); a pre-tokenizer applies its rules in order, each one splitting every
// piece left by the previous rules into its matches and the gaps between them.
enum class BpeRule : uint8_t {
    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
    gpt2,
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    llama3,
    // the same with \p{N} (one digit per piece)
    qwen2,
    // [^\r\n\p{L}\p{N}]?U*W+C?|[^\r\n\p{L}\p{N}]?U+W*C?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
    // with U = a letter but not a-z, W = a letter but not A-Z, C = an optional
    // (?i:'s|'t|'re|'ve|'m|'ll|'d) (llama.cpp's form of the GPT-4o expression)
    gpt4o,
    // the same without C and with \p{N}
    tekken,
    // [!-/:-@\[-`{-~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    deepseek3,
    digit,          // \p{N}
    digits3,        // \p{N}{1,3}
    digits,         // \p{N}+
    ascii_digits3,  // [0-9][0-9][0-9]
    newline,        // [\r\n]
    ws_letters,     // \s?\p{L}+
    ws_punct,       // \s?\p{P}+
    dsllm_letters,  // \s?[A-Za-zµÀ-ÖØ-öø-ƺ...]+ (DeepSeek LLM's explicit letter ranges)
    dsllm_punct,    // \s?[!-/:-~！-／：-～‘-‟　-。]+
    trailing_space, // \s+$
    cjk,            // [一-龥ࠀ-一가-퟿]+
    cjk_kana,       // [一-龥぀-ゟ゠-ヿ]+
    punct_default,  // [\p{P}\$\+<=>\^~\|]+
    punct_falcon,   // [\p{P}\$\+<=>\^~\|`]+
    bloom,          //  ?[^(\s|.,!?…。，、।۔،)]+
};

struct BpePreTokenizer {
    const char* names;      // the tokenizer.ggml.pre values, separated by '|'
    BpeRule rules[6];
    int n_rules;
    bool ignore_merges;     // whole-token pre-tokens skip the merges
    bool add_bos;           // add_bos default (tokenizer.ggml.add_bos_token overrides it)
};

inline const std::vector<BpePreTokenizer>& bpe_pre_tokenizers() {
    using R = BpeRule;
    static const std::vector<BpePreTokenizer> table = {
        {"default", {R::punct_default, R::gpt2, R::digits, R::ascii_digits3}, 4, false, false},
        {"llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2", {R::llama3}, 1, true, true},
        {"dbrx|smaug-bpe|chatglm-bpe|glm4", {R::llama3}, 1, false, false},
        {"qwen2|deepseek-r1-qwen|kormo|megrez|stablelm2|hunyuan|grok-2", {R::qwen2}, 1, false, false},
        {"gpt-2|gpt2|phi-2|jina-es|jina-de|gigachat|jina-v2-es|jina-v2-de|a.x-4.0|mellum|jina-v1-en|jina-v2-code|"
         "roberta-bpe|exaone4|mpt|olmo|gpt-neox|jais|trillion|granite-docling",
         {R::gpt2}, 1, false, false},
        {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b", {R::digit, R::gpt2}, 2, false, false},
        {"falcon", {R::punct_falcon, R::gpt2, R::ascii_digits3}, 3, false, false},
        {"deepseek-llm",
         {R::newline, R::dsllm_letters, R::dsllm_punct, R::trailing_space, R::cjk, R::digits}, 6, false, false},
        {"deepseek-coder", {R::newline, R::ws_letters, R::ws_punct, R::cjk, R::digit}, 5, false, false},
        {"deepseek-v3|hunyuan-dense", {R::digits3, R::cjk_kana, R::deepseek3}, 3, false, false},
        {"gpt-4o|llama4|minimax-m2", {R::gpt4o}, 1, false, false},
        {"tekken", {R::tekken}, 1, true, true},
        {"bloom|poro|poro-chat|gpt3-finnish", {R::bloom}, 1, false, false},
        {"viking", {R::bloom, R::digit}, 2, false, false},
    };
    return table;
}

// Index of the pre-tokenizer for a tokenizer.ggml.pre value, or -1.
inline int bpe_find_pre(std::string_view name) {
    const auto& t = bpe_pre_tokenizers();
    for (size_t i = 0; i < t.size(); ++i) {
        std::string_view names = t[i].names;
        while (!names.empty()) {
            size_t bar = names.find('|');
            if (names.substr(0, bar) == name) return static_cast<int>(i);
            if (bar == std::string_view::npos) break;
            names.remove_prefix(bar + 1);
        }
    }
    return -1;
}

// The text being pre-tokenized, as code points with their flags. An invalid
// UTF-8 byte is one code point U+FFFD (a symbol) that stands for that byte.
struct BpeText {
    std::vector<uint32_t> cp;
    std::vector<uint16_t> fl;
    std::vector<uint32_t> off;     // byte offset of each code point; off[n] = text size
    std::vector<uint32_t> ws_end;  // end of the run of White_Space starting at i (i if none)
    size_t n = 0;

    void assign(std::string_view s) {
        cp.clear();
        fl.clear();
        off.clear();
        for (size_t i = 0; i < s.size();) {
            size_t len;
            uint32_t c = utf8_decode(s.data(), s.size(), i, &len);
            cp.push_back(c);
            fl.push_back(unicode_flags(c));
            off.push_back(static_cast<uint32_t>(i));
            i += len;
        }
        n = cp.size();
        off.push_back(static_cast<uint32_t>(s.size()));
        ws_end.assign(n + 1, 0);
        ws_end[n] = static_cast<uint32_t>(n);
        for (size_t i = n; i-- > 0;)
            ws_end[i] = (fl[i] & uf_space) ? ws_end[i + 1] : static_cast<uint32_t>(i);
    }
    bool L(size_t i) const { return (fl[i] & uf_letter) != 0; }
    bool N(size_t i) const { return (fl[i] & uf_number) != 0; }
    bool P(size_t i) const { return (fl[i] & uf_punct) != 0; }
    bool M(size_t i) const { return (fl[i] & uf_mark) != 0; }
    bool S(size_t i) const { return (fl[i] & uf_symbol) != 0; }
    bool WS(size_t i) const { return (fl[i] & uf_space) != 0; }
    // [^\s\p{L}\p{N}]
    bool other(size_t i) const { return (fl[i] & (uf_space | uf_letter | uf_number)) == 0; }
    bool crlf(size_t i) const { return cp[i] == '\r' || cp[i] == '\n'; }
    size_t wsrun(size_t i, size_t end) const { return std::min<size_t>(ws_end[i], end); }
};

inline bool ascii_lower_eq(uint32_t c, char lower) { return c == static_cast<uint32_t>(lower) || c + 32 == static_cast<uint32_t>(lower); }

// 's 't 're 've 'm 'll 'd at i (t.cp[i] == '\''); returns the end or i.
inline size_t bpe_contraction(const BpeText& t, size_t i, size_t end, bool any_case) {
    if (i + 1 >= end || t.cp[i] != '\'') return i;
    auto is = [&](size_t k, char c) { return any_case ? ascii_lower_eq(t.cp[k], c) : t.cp[k] == static_cast<uint32_t>(c); };
    if (is(i + 1, 's') || is(i + 1, 't') || is(i + 1, 'm') || is(i + 1, 'd')) return i + 2;
    if (i + 2 < end && ((is(i + 1, 'r') && is(i + 2, 'e')) || (is(i + 1, 'v') && is(i + 2, 'e')) ||
                        (is(i + 1, 'l') && is(i + 2, 'l'))))
        return i + 3;
    return i;
}

// \s*[\r\n]+|\s+(?!\S)|\s+ at a White_Space code point i.
inline size_t bpe_match_space_tail(const BpeText& t, size_t i, size_t end) {
    size_t e = t.wsrun(i, end);
    for (size_t k = e; k-- > i;)
        if (t.crlf(k)) return k + 1;
    if (e == end || e - i < 2) return e;
    return e - 1;
}

// DeepSeek LLM's letter class (the explicit ranges of its expression).
inline bool dsllm_letter(uint32_t c) {
    static const uint32_t r[][2] = {
        {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA}, {0x1BC, 0x1BF},
        {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377}, {0x37B, 0x37D}, {0x37F, 0x37F},
        {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C}, {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481},
        {0x48A, 0x52F}, {0x531, 0x556}, {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1C90, 0x1CBA},
        {0x1CBD, 0x1CBF}, {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A}, {0x1E00, 0x1F15},
        {0x1F18, 0x1F1D}, {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59},
        {0x1F5B, 0x1F5B}, {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC},
        {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB},
        {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102}, {0x2107, 0x2107},
        {0x210A, 0x2113}, {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126},
        {0x2128, 0x2128}, {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F},
        {0x2145, 0x2149}, {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4},
        {0x2CEB, 0x2CEE}, {0x2CF2, 0x2CF3}, {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F},
        {0xA771, 0xA787}, {0xA78B, 0xA78E}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17},
        {0xFF21, 0xFF3A}, {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
        {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
    };
    if (c < 0x80) return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    // The ranges are sorted: binary search for the last one starting at or before c.
    size_t lo = 0, hi = sizeof r / sizeof r[0];
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (r[mid][0] <= c) lo = mid;
        else hi = mid;
    }
    return c >= r[lo][0] && c <= r[lo][1];
}

// Matches rule r at code point i of the piece [.., end); returns the end of
// the match, or i when the rule does not match there.
inline size_t bpe_rule_match(BpeRule r, const BpeText& t, size_t i, size_t end) {
    const uint32_t c = t.cp[i];
    const bool has_next = i + 1 < end;
    auto run = [&](size_t k, auto pred) {
        while (k < end && pred(k)) ++k;
        return k;
    };
    auto isL = [&](size_t k) { return t.L(k); };
    auto isN = [&](size_t k) { return t.N(k); };
    auto isOther = [&](size_t k) { return t.other(k); };
    switch (r) {
        case BpeRule::gpt2: {
            size_t e = bpe_contraction(t, i, end, false);
            if (e > i) return e;
            size_t p = (c == ' ' && has_next) ? i + 1 : i;
            if (t.L(p)) return run(p, isL);
            if (t.N(p)) return run(p, isN);
            if (t.other(p)) return run(p, isOther);
            if (t.WS(i)) {
                e = t.wsrun(i, end);
                if (e == end) return e;
                return e - i >= 2 ? e - 1 : i;
            }
            return i;
        }
        case BpeRule::llama3:
        case BpeRule::qwen2: {
            size_t e = bpe_contraction(t, i, end, true);
            if (e > i) return e;
            if (t.L(i)) return run(i, isL);
            if (!t.crlf(i) && !t.N(i) && has_next && t.L(i + 1)) return run(i + 1, isL);
            if (t.N(i)) {
                size_t lim = r == BpeRule::llama3 ? 3 : 1;
                size_t k = i;
                while (k < end && k - i < lim && t.N(k)) ++k;
                return k;
            }
            size_t p = (c == ' ' && has_next && t.other(i + 1)) ? i + 1 : i;
            if (t.other(p)) {
                size_t k = run(p, isOther);
                while (k < end && t.crlf(k)) ++k;
                return k;
            }
            if (t.WS(i)) return bpe_match_space_tail(t, i, end);
            return i;
        }
        case BpeRule::gpt4o:
        case BpeRule::tekken: {
            // U: a letter other than a-z; W: a letter other than A-Z.
            auto U = [&](size_t k) { return t.L(k) && !(t.cp[k] >= 'a' && t.cp[k] <= 'z'); };
            auto W = [&](size_t k) { return t.L(k) && !(t.cp[k] >= 'A' && t.cp[k] <= 'Z'); };
            const bool contr = r == BpeRule::gpt4o;
            size_t p = (!t.crlf(i) && !t.L(i) && !t.N(i) && has_next && t.L(i + 1)) ? i + 1 : i;
            if (t.L(p)) {
                size_t q = run(p, isL);
                size_t u = p;
                while (u < q && U(u)) ++u;
                for (size_t k = u;; --k) {
                    if (k < q && W(k)) {
                        size_t e = k;
                        while (e < q && W(e)) ++e;
                        return contr ? bpe_contraction(t, e, end, true) : e;
                    }
                    if (k == p) break;
                }
                if (u > p) {
                    size_t e = u;
                    while (e < q && W(e)) ++e;
                    return contr ? bpe_contraction(t, e, end, true) : e;
                }
            }
            if (t.N(i)) {
                size_t lim = r == BpeRule::gpt4o ? 3 : 1;
                size_t k = i;
                while (k < end && k - i < lim && t.N(k)) ++k;
                return k;
            }
            p = (c == ' ' && has_next && t.other(i + 1)) ? i + 1 : i;
            if (t.other(p)) {
                size_t k = run(p, isOther);
                while (k < end && (t.crlf(k) || t.cp[k] == '/')) ++k;
                return k;
            }
            if (t.WS(i)) return bpe_match_space_tail(t, i, end);
            return i;
        }
        case BpeRule::deepseek3: {
            // llama.cpp matches \p{S} on ASCII as [$+<=>^`|]: '~' is no symbol here.
            auto PS = [&](size_t k) { return (t.P(k) || t.S(k)) && t.cp[k] != '~'; };
            auto LM = [&](size_t k) { return t.L(k) || t.M(k); };
            auto ascii_alpha = [&](size_t k) { return (t.cp[k] >= 'A' && t.cp[k] <= 'Z') || (t.cp[k] >= 'a' && t.cp[k] <= 'z'); };
            bool ascii_punct = (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
                               (c >= 0x7B && c <= 0x7E);
            if (ascii_punct && has_next && ascii_alpha(i + 1)) return run(i + 1, ascii_alpha);
            if (LM(i)) return run(i, LM);
            if (!t.crlf(i) && !t.L(i) && !PS(i) && has_next && LM(i + 1)) return run(i + 1, LM);
            size_t p = (c == ' ' && has_next && PS(i + 1)) ? i + 1 : i;
            if (PS(p)) {
                size_t k = run(p, PS);
                while (k < end && t.crlf(k)) ++k;
                return k;
            }
            if (t.WS(i)) return bpe_match_space_tail(t, i, end);
            return i;
        }
        case BpeRule::digit: return t.N(i) ? i + 1 : i;
        case BpeRule::digits3: {
            size_t k = i;
            while (k < end && k - i < 3 && t.N(k)) ++k;
            return k;
        }
        case BpeRule::digits: return run(i, isN);
        case BpeRule::ascii_digits3: {
            auto d = [&](size_t k) { return t.cp[k] >= '0' && t.cp[k] <= '9'; };
            return (i + 2 < end && d(i) && d(i + 1) && d(i + 2)) ? i + 3 : i;
        }
        case BpeRule::newline: return t.crlf(i) ? i + 1 : i;
        case BpeRule::ws_letters:
        case BpeRule::ws_punct:
        case BpeRule::dsllm_letters:
        case BpeRule::dsllm_punct: {
            auto in = [&](size_t k) {
                uint32_t x = t.cp[k];
                switch (r) {
                    case BpeRule::ws_letters: return t.L(k);
                    case BpeRule::ws_punct: return t.P(k);
                    case BpeRule::dsllm_letters: return dsllm_letter(x);
                    default:
                        // U+3000 is White_Space, which llama.cpp turns into \v before matching.
                        return (x >= 0x21 && x <= 0x2F) || (x >= 0x3A && x <= 0x7E) || (x >= 0xFF01 && x <= 0xFF0F) ||
                               (x >= 0xFF1A && x <= 0xFF5E) || (x >= 0x2018 && x <= 0x201F) || (x >= 0x3001 && x <= 0x3002);
                }
            };
            size_t p = (t.WS(i) && has_next && in(i + 1)) ? i + 1 : i;
            return in(p) ? run(p, in) : i;
        }
        case BpeRule::trailing_space: return (t.WS(i) && t.wsrun(i, end) == end) ? end : i;
        case BpeRule::cjk:
        case BpeRule::cjk_kana: {
            auto in = [&](size_t k) {
                uint32_t x = t.cp[k];
                if (x >= 0x4E00 && x <= 0x9FA5) return true;
                if (r == BpeRule::cjk) return ((x >= 0x0800 && x <= 0x4E00) || (x >= 0xAC00 && x <= 0xD7FF)) && !t.WS(k);
                return x >= 0x3040 && x <= 0x30FF;
            };
            return run(i, in);
        }
        case BpeRule::punct_default:
        case BpeRule::punct_falcon: {
            auto in = [&](size_t k) {
                uint32_t x = t.cp[k];
                return t.P(k) || x == '$' || x == '+' || x == '<' || x == '=' || x == '>' || x == '^' || x == '~' ||
                       x == '|' || (r == BpeRule::punct_falcon && x == '`');
            };
            return run(i, in);
        }
        case BpeRule::bloom: {
            auto in = [&](size_t k) {
                uint32_t x = t.cp[k];
                return !(t.WS(k) || x == '(' || x == ')' || x == '|' || x == '.' || x == ',' || x == '!' || x == '?' ||
                         x == 0x2026 || x == 0x3002 || x == 0xFF0C || x == 0x3001 || x == 0x0964 || x == 0x06D4 ||
                         x == 0x060C);
            };
            size_t p = (c == ' ' && has_next && in(i + 1)) ? i + 1 : i;
            return in(p) ? run(p, in) : i;
        }
    }
    return i;
}

// Splits text into pre-tokens (byte ranges [first, second)) with the rules of
// pre-tokenizer `pre`.
inline void bpe_pre_tokenize(int pre, std::string_view text, BpeText& t,
                             std::vector<std::pair<uint32_t, uint32_t>>& words) {
    const BpePreTokenizer& pt = bpe_pre_tokenizers()[static_cast<size_t>(pre)];
    t.assign(text);
    std::vector<std::pair<uint32_t, uint32_t>> cur(1, {0u, static_cast<uint32_t>(t.n)}), next;
    if (t.n == 0) cur.clear();
    for (int ri = 0; ri < pt.n_rules; ++ri) {
        next.clear();
        for (const auto& piece : cur) {
            size_t i = piece.first, end = piece.second, gap = i;
            while (i < end) {
                size_t e = bpe_rule_match(pt.rules[ri], t, i, end);
                if (e > i) {
                    if (gap < i) next.push_back({static_cast<uint32_t>(gap), static_cast<uint32_t>(i)});
                    next.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(e)});
                    i = gap = e;
                } else {
                    ++i;
                }
            }
            if (gap < end) next.push_back({static_cast<uint32_t>(gap), static_cast<uint32_t>(end)});
        }
        cur.swap(next);
    }
    words.clear();
    for (const auto& piece : cur) words.push_back({t.off[piece.first], t.off[piece.second]});
}

inline uint64_t bpe_pair_key(int32_t l, int32_t r) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
}
inline size_t bpe_pair_slot(uint64_t key, size_t mask) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return static_cast<size_t>(h ^ (h >> 31)) & mask;
}

// The merge of tokens l and r: its rank (-1 if none) and the merged token.
inline int32_t bpe_find_merge(const Vocab& v, int32_t l, int32_t r, int32_t* merged) {
    if (v.merge_keys.empty() || l < 0 || r < 0) return -1;
    uint64_t key = bpe_pair_key(l, r);
    size_t mask = v.merge_keys.size() - 1;
    for (size_t i = bpe_pair_slot(key, mask);; i = (i + 1) & mask) {
        uint64_t k = v.merge_keys[i];
        if (k == key) {
            *merged = v.merge_result[i];
            return v.merge_rank[i];
        }
        if (k == ~0ull) return -1;
    }
}

// Builds the BPE part of a vocabulary: pre-tokenizer, byte tokens, merge table.
inline Status bpe_init(Vocab& v) {
    v.is_bpe = true;
    std::string pre = v.pre.empty() ? "default" : v.pre;
    v.pre_index = bpe_find_pre(pre);
    if (v.pre_index < 0) {
        if (!v.unknown_pre_as_default)
            return error(StatusCode::unsupported,
                         "BPE pre-tokenizer '%s' (tokenizer.ggml.pre) is not supported; set "
                         "ModelParams::bpe_unknown_pre_as_default to use the 'default' rules instead",
                         pre.c_str());
        log_msg(LogLevel::warn, "unknown BPE pre-tokenizer '%s': using 'default'", pre.c_str());
        v.pre_index = bpe_find_pre("default");
    }
    v.ignore_merges = bpe_pre_tokenizers()[static_cast<size_t>(v.pre_index)].ignore_merges;
    std::string ch;
    for (int b = 0; b < 256; ++b) {
        ch.clear();
        utf8_append(ch, bpe_byte_to_cp(static_cast<unsigned char>(b)));
        // Only normal tokens: some vocabularies add user-defined tokens with the
        // characters of bytes that never occur in UTF-8 (C0, C1, F5-FF); those
        // render as their text, so they cannot stand for a raw byte.
        int32_t id = v.find(ch);
        v.bpe_byte_token[b] = (id >= 0 && v.type[static_cast<size_t>(id)] == Vocab::normal) ? id : -1;
    }
    if (v.merges.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max() / 4))
        return error(StatusCode::bad_format, "too many BPE merges (%zu)", v.merges.size());
    size_t cap = 16;
    while (cap < 2 * v.merges.size()) cap *= 2;
    v.merge_keys.assign(cap, ~0ull);
    v.merge_rank.assign(cap, -1);
    v.merge_result.assign(cap, -1);
    std::string joined;
    size_t skipped = 0;
    for (size_t rank = 0; rank < v.merges.size(); ++rank) {
        const std::string& m = v.merges[rank];
        size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
        if (sp == std::string::npos)
            return error(StatusCode::bad_format, "BPE merge %zu ('%.60s') is not two tokens separated by a space", rank,
                         m.c_str());
        std::string_view a(m.data(), sp), b(m.data() + sp + 1, m.size() - sp - 1);
        int32_t l = v.find(a), r = v.find(b);
        joined.assign(a.data(), a.size());
        joined.append(b.data(), b.size());
        int32_t res = v.find(joined);
        if (l < 0 || r < 0 || res < 0) {
            ++skipped;  // such a merge can never apply to tokens
            continue;
        }
        uint64_t key = bpe_pair_key(l, r);
        size_t mask = cap - 1;
        for (size_t i = bpe_pair_slot(key, mask);; i = (i + 1) & mask) {
            if (v.merge_keys[i] == key) break;  // a repeated merge keeps its first rank
            if (v.merge_keys[i] == ~0ull) {
                v.merge_keys[i] = key;
                v.merge_rank[i] = static_cast<int32_t>(rank);
                v.merge_result[i] = res;
                break;
            }
        }
    }
    if (skipped) log_msg(LogLevel::debug, "%zu BPE merges name texts that are not tokens; ignored", skipped);
    return Status();
}

// Validates the fields of `v` (text, score, type, special ids, model) and builds
// its indexes. load_vocab calls it; tests may fill a Vocab by hand and call it.
// SentencePiece merges only join neighbours whose joined text is a token, so a
// text can be cut at a point that no token can span, and the pieces merged
// independently give the same tokens as the whole. A token spanning the point
// just before a U+2581 holds that U+2581 after its first byte; such tokens are
// found here. Runs of U+2581 (tokens for indentation) are handled by never
// cutting between two U+2581; any other such token blocks the cut points
// inside each of its occurrences. With too many of them the text is not cut.
inline void spm_init_split(Vocab& v) {
    static const char kSpace[] = "\xE2\x96\x81";
    v.spm_split = false;
    v.spm_space_runs = false;
    v.spm_cross.clear();
    for (size_t id = 0; id < v.text.size(); ++id) {
        std::string_view t = v.text[id];
        if (t.size() < 4 || t.find(kSpace, 1) == std::string_view::npos) continue;
        bool run = t.size() % 3 == 0;
        for (size_t k = 0; run && k < t.size(); k += 3) run = t.compare(k, 3, kSpace) == 0;
        if (run) v.spm_space_runs = true;
        else v.spm_cross.push_back(static_cast<int32_t>(id));
    }
    v.spm_split = v.spm_cross.size() <= 64;
    if (!v.spm_split) v.spm_cross.clear();
}

inline Status init_vocab(Vocab& v) {
    v.ready = false;
    v.is_bpe = false;
    if (v.model != "llama" && v.model != "gpt2") {
        if (v.model.empty()) return error(StatusCode::bad_format, "tokenizer model is not set (tokenizer.ggml.model)");
        return error(StatusCode::unsupported,
                     "tokenizer model '%s' is not supported (only 'llama', the SentencePiece tokenizer, and "
                     "'gpt2', byte-level BPE)",
                     v.model.c_str());
    }
    size_t n = v.text.size();
    if (n == 0) return error(StatusCode::bad_format, "the vocabulary is empty (tokenizer.ggml.tokens has no entries)");
    if (n > static_cast<size_t>(std::numeric_limits<int32_t>::max() / 4))
        return error(StatusCode::bad_format, "the vocabulary has too many tokens (%zu)", n);
    if (v.score.empty()) v.score.assign(n, 0.0f);
    if (v.type.empty()) v.type.assign(n, Vocab::normal);
    if (v.score.size() != n)
        return error(StatusCode::bad_format, "tokenizer.ggml.scores has %zu entries but there are %zu tokens",
                     v.score.size(), n);
    if (v.type.size() != n)
        return error(StatusCode::bad_format, "tokenizer.ggml.token_type has %zu entries but there are %zu tokens",
                     v.type.size(), n);
    const struct { const char* what; int32_t id; } ids[] = {
        {"BOS", v.bos}, {"EOS", v.eos}, {"UNK", v.unk}, {"EOT", v.eot}, {"EOM", v.eom}, {"PAD", v.pad}};
    for (const auto& s : ids) {
        if (s.id < -1 || s.id >= static_cast<int32_t>(n))
            return error(StatusCode::bad_format, "%s token id %d is out of range (the vocabulary has %zu tokens)",
                         s.what, s.id, n);
    }

    // Text -> id hash table, at most half full.
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    v.slots.assign(cap, -1);
    size_t mask = cap - 1;
    for (size_t id = 0; id < n; ++id) {
        for (size_t i = static_cast<size_t>(vocab_hash(v.text[id])) & mask;; i = (i + 1) & mask) {
            int32_t cur = v.slots[i];
            if (cur < 0 || v.text[static_cast<size_t>(cur)] == v.text[id]) {
                v.slots[i] = static_cast<int32_t>(id);
                break;
            }
        }
    }

    // End of generation. An end-of-turn-looking token that is not marked as
    // control is made control, as llama.cpp does.
    v.flags.assign(n, 0);
    if (v.eot < 0) v.eot = vocab_find_eot(v);
    if (v.eom < 0) v.eom = v.find("<|eom_id|>");
    for (size_t id = 0; id < n; ++id) {
        if (vocab_is_eog_text(v.text[id])) {
            v.flags[id] |= Vocab::flag_eog;
            if (v.type[id] != Vocab::control) {
                log_msg(LogLevel::warn, "token %zu '%s' looks like a control token but is not marked so; treating it as control",
                        id, v.text[id].c_str());
                v.type[id] = Vocab::control;
            }
        }
    }
    for (int32_t id : {v.eos, v.eot, v.eom})
        if (id >= 0) v.flags[static_cast<size_t>(id)] |= Vocab::flag_eog;

    // Tokens matched in the text before the SPM split, longest first.
    v.specials.clear();
    for (size_t id = 0; id < n; ++id) {
        int32_t t = v.type[id];
        if ((t == Vocab::control || t == Vocab::user_defined || t == Vocab::unknown) && !v.text[id].empty())
            v.specials.push_back(static_cast<int32_t>(id));
    }
    std::stable_sort(v.specials.begin(), v.specials.end(), [&](int32_t a, int32_t b) {
        return v.text[static_cast<size_t>(a)].size() > v.text[static_cast<size_t>(b)].size();
    });
    // Phi-3's special tokens swallow the whitespace that follows them (as in llama.cpp).
    if (v.name.find("phi-3") != std::string::npos || v.name.find("phi3") != std::string::npos) {
        for (int32_t id : v.specials) v.flags[static_cast<size_t>(id)] |= Vocab::flag_rstrip;
        int32_t eos_text = v.find("</s>");
        if (eos_text >= 0) v.flags[static_cast<size_t>(eos_text)] |= Vocab::flag_rstrip;
        for (const char* t : {"<unk>", "<s>", "<|endoftext|>"}) {
            int32_t id = v.find(t);
            if (id >= 0) v.flags[static_cast<size_t>(id)] &= static_cast<uint8_t>(~Vocab::flag_rstrip);
        }
    }

    // Byte tokens: <0xNN> -> NN, and the reverse table for byte fallback.
    v.byte_value.assign(n, -1);
    for (size_t id = 0; id < n; ++id) {
        const std::string& t = v.text[id];
        if (v.type[id] == Vocab::byte && t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
            int hi = hex_digit(t[3]), lo = hex_digit(t[4]);
            if (hi >= 0 && lo >= 0) v.byte_value[id] = static_cast<int16_t>(hi * 16 + lo);
        }
    }
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        int32_t id = v.find(name);
        if (id < 0) {
            char c = static_cast<char>(b);
            id = v.find(std::string_view(&c, 1));
        }
        v.byte_token[b] = id;
    }
    if (v.model == "gpt2") {
        Status st = bpe_init(v);
        if (!st.ok()) return st;
    } else {
        spm_init_split(v);
    }
    v.ready = true;
    return Status();
}

// Reads the tokenizer.ggml.* keys of a GGUF file (a vocab-only file works too).
// With unknown_pre_as_default, a BPE vocabulary whose tokenizer.ggml.pre is not
// known gets llama.cpp's "default" pre-tokenizer instead of an error.
inline Status load_vocab(const GgufFile& f, Vocab& v, bool unknown_pre_as_default = false) {
    v = Vocab();
    v.unknown_pre_as_default = unknown_pre_as_default;
    Status st;
    std::string_view sv;
    if (!f.get_string("tokenizer.ggml.model", sv, st)) {
        if (!st.ok()) return st;
        return error(StatusCode::bad_format, "the file has no tokenizer (tokenizer.ggml.model is missing)");
    }
    v.model.assign(sv.data(), sv.size());
    if (v.model != "llama" && v.model != "gpt2")
        return error(StatusCode::unsupported,
                     "tokenizer model '%s' is not supported (only 'llama', the SentencePiece tokenizer, and "
                     "'gpt2', byte-level BPE)",
                     v.model.c_str());
    const bool bpe = v.model == "gpt2";
    if (bpe) {
        if (f.get_string("tokenizer.ggml.pre", sv, st)) v.pre.assign(sv.data(), sv.size());
        if (!st.ok()) return st;
        const GgufKV* merges = f.get_array("tokenizer.ggml.merges", st);
        if (!st.ok()) return st;
        if (!merges) return error(StatusCode::bad_format, "BPE vocabulary without merges (tokenizer.ggml.merges is missing)");
        if (merges->elem != GgufType::string)
            return error(StatusCode::bad_format, "tokenizer.ggml.merges should be an array of strings but holds %s",
                         gguf_type_name(merges->elem));
        v.merges.reserve(merges->strings.size());
        for (std::string_view m : merges->strings) v.merges.emplace_back(m.data(), m.size());
        // llama.cpp's defaults for BPE: no space prefix, BOS only for the
        // pre-tokenizers that want it, no UNK.
        v.add_space_prefix = false;
        int pre = bpe_find_pre(v.pre.empty() ? "default" : v.pre);
        v.add_bos = pre >= 0 && bpe_pre_tokenizers()[static_cast<size_t>(pre)].add_bos;
    }
    if (f.get_string("general.name", sv, st)) {
        v.name.assign(sv.data(), sv.size());
        for (char& c : v.name)
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    st = Status();

    const GgufKV* tokens = f.get_array("tokenizer.ggml.tokens", st);
    if (!st.ok()) return st;
    if (!tokens) return error(StatusCode::bad_format, "tokenizer.ggml.tokens is missing");
    if (tokens->elem != GgufType::string)
        return error(StatusCode::bad_format, "tokenizer.ggml.tokens should be an array of strings but holds %s",
                     gguf_type_name(tokens->elem));
    size_t n = tokens->strings.size();
    if (n == 0) return error(StatusCode::bad_format, "the vocabulary is empty (tokenizer.ggml.tokens has no entries)");
    if (n > static_cast<size_t>(std::numeric_limits<int32_t>::max() / 4))
        return error(StatusCode::bad_format, "the vocabulary has too many tokens (%zu)", n);
    v.text.reserve(n);
    for (std::string_view s : tokens->strings) v.text.emplace_back(s.data(), s.size());

    auto numeric = [](GgufType t) { return gguf_scalar_size(t) != 0 && t != GgufType::boolean; };
    if (const GgufKV* scores = f.get_array("tokenizer.ggml.scores", st)) {
        if (!numeric(scores->elem))
            return error(StatusCode::bad_format, "tokenizer.ggml.scores should be an array of numbers but holds %s",
                         gguf_type_name(scores->elem));
        if (scores->length != n)
            return error(StatusCode::bad_format, "tokenizer.ggml.scores has %llu entries but there are %zu tokens",
                         (unsigned long long)scores->length, n);
        v.score.resize(n);
        for (size_t i = 0; i < n; ++i) v.score[i] = static_cast<float>(GgufFile::array_number(*scores, i));
    }
    if (!st.ok()) return st;
    if (const GgufKV* types = f.get_array("tokenizer.ggml.token_type", st)) {
        if (!numeric(types->elem) || types->elem == GgufType::f32 || types->elem == GgufType::f64)
            return error(StatusCode::bad_format, "tokenizer.ggml.token_type should be an array of integers but holds %s",
                         gguf_type_name(types->elem));
        if (types->length != n)
            return error(StatusCode::bad_format, "tokenizer.ggml.token_type has %llu entries but there are %zu tokens",
                         (unsigned long long)types->length, n);
        v.type.resize(n);
        for (size_t i = 0; i < n; ++i) {
            int64_t t = GgufFile::array_int(*types, i);
            v.type[i] = (t >= 0 && t <= 6) ? static_cast<int32_t>(t) : static_cast<int32_t>(Vocab::undefined);
        }
    }
    if (!st.ok()) return st;

    // Special ids. SentencePiece defaults: UNK 0, BOS 1, EOS 2. An id outside the
    // vocabulary (often 0xFFFFFFFF for "none") is ignored with a warning and the
    // default is kept, as llama.cpp does.
    v.unk = n > 0 ? 0 : -1;
    v.bos = n > 1 ? 1 : -1;
    v.eos = n > 2 ? 2 : -1;
    if (bpe) {  // llama.cpp's BPE defaults
        v.unk = -1;
        v.bos = v.eos = n > 11 ? 11 : -1;
    }
    const struct { const char* key; int32_t* dst; } keys[] = {
        {"tokenizer.ggml.bos_token_id", &v.bos},     {"tokenizer.ggml.eos_token_id", &v.eos},
        {"tokenizer.ggml.unknown_token_id", &v.unk}, {"tokenizer.ggml.eot_token_id", &v.eot},
        {"tokenizer.ggml.eom_token_id", &v.eom},     {"tokenizer.ggml.padding_token_id", &v.pad},
    };
    for (const auto& k : keys) {
        int64_t id;
        if (!f.get_int(k.key, id, st)) {
            if (!st.ok()) return st;
            continue;
        }
        if (id < 0 || id >= static_cast<int64_t>(n)) {
            log_msg(LogLevel::warn, "%s = %lld is not a token id (the vocabulary has %zu tokens); using %d", k.key,
                    (long long)id, n, *k.dst);
            continue;
        }
        *k.dst = static_cast<int32_t>(id);
    }
    const struct { const char* key; bool* dst; } bools[] = {
        {"tokenizer.ggml.add_bos_token", &v.add_bos},
        {"tokenizer.ggml.add_eos_token", &v.add_eos},
        {"tokenizer.ggml.add_space_prefix", &v.add_space_prefix},
    };
    for (const auto& b : bools) {
        f.get_bool(b.key, *b.dst, st);
        if (!st.ok()) return st;
    }
    return init_vocab(v);
}

// ---------------------------------------------------------------------------
// SentencePiece (BPE mode) tokenization.
// ---------------------------------------------------------------------------

// Length of the UTF-8 character at s[i]: 1 for ASCII and for any byte that does
// not start a complete sequence (those go through byte fallback one by one).
inline size_t utf8_char_at(std::string_view s, size_t i) {
    size_t len = static_cast<size_t>(utf8_len(static_cast<unsigned char>(s[i])));
    if (len == 1 || i + len > s.size()) return 1;
    for (size_t k = 1; k < len; ++k)
        if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 1;
    return len;
}

struct SpmSymbol {
    int32_t prev, next;
    uint32_t off, n;  // bytes [off, off+n) of the piece; n = 0 once merged away
    int32_t id;       // token of a merged symbol; -1 for a single character (looked up at the end)
};
struct SpmBigram {
    float score;
    int32_t left, right;
    uint32_t size;
    int32_t id;
};
// Highest score first; on equal scores the leftmost pair first.
struct SpmBigramOrder {
    bool operator()(const SpmBigram& a, const SpmBigram& b) const {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
};

// The tokens of the short SentencePiece pieces seen so far in one tokenize
// call (words repeat a lot in real text, and a piece's tokens depend on its
// bytes only).
struct PieceCache {
    struct Entry {
        uint64_t hash;
        uint32_t key_off, key_len, ids_off, ids_len;
    };
    static constexpr size_t kMaxKey = 64;             // longer pieces are not cached
    static constexpr size_t kMaxEntries = size_t(1) << 16;
    std::vector<uint32_t> slots;  // open addressing: entry index + 1, 0 = empty
    std::vector<Entry> entries;
    std::string keys;
    std::vector<int32_t> ids;

    // Appends the cached tokens of `key` (hash h) to out; false if not cached.
    bool get(std::string_view key, uint64_t h, std::vector<int32_t>& out) const {
        if (slots.empty()) return false;
        size_t mask = slots.size() - 1;
        for (size_t i = static_cast<size_t>(h) & mask;; i = (i + 1) & mask) {
            uint32_t e = slots[i];
            if (e == 0) return false;
            const Entry& c = entries[e - 1];
            if (c.hash == h && c.key_len == key.size() &&
                std::memcmp(keys.data() + c.key_off, key.data(), key.size()) == 0) {
                out.insert(out.end(), ids.begin() + c.ids_off, ids.begin() + c.ids_off + c.ids_len);
                return true;
            }
        }
    }
    void put(std::string_view key, uint64_t h, const int32_t* tok, size_t n_tok) {
        if (entries.size() >= kMaxEntries) return;
        if (2 * (entries.size() + 1) > slots.size()) {
            size_t cap = slots.empty() ? 1024 : slots.size() * 2;
            slots.assign(cap, 0);
            for (size_t k = 0; k < entries.size(); ++k) place(entries[k].hash, static_cast<uint32_t>(k + 1));
        }
        entries.push_back({h, static_cast<uint32_t>(keys.size()), static_cast<uint32_t>(key.size()),
                           static_cast<uint32_t>(ids.size()), static_cast<uint32_t>(n_tok)});
        keys.append(key.data(), key.size());
        ids.insert(ids.end(), tok, tok + n_tok);
        place(h, static_cast<uint32_t>(entries.size()));
    }

private:
    void place(uint64_t h, uint32_t entry) {
        size_t mask = slots.size() - 1;
        size_t i = static_cast<size_t>(h) & mask;
        while (slots[i] != 0) i = (i + 1) & mask;
        slots[i] = entry;
    }
};

// Buffers reused across the pieces of one text.
struct SpmScratch {
    std::vector<SpmSymbol> sym;
    std::vector<SpmBigram> heap;
    std::vector<uint8_t> blocked;  // 1 where a cut is forbidden (occurrences of Vocab::spm_cross tokens)
    PieceCache cache;
};

// Tokenizes one piece of text whose spaces are already written as U+2581:
// SentencePiece's BPE, which repeatedly joins the neighbouring pair whose
// joined text is the token with the highest score (the leftmost on ties).
inline Status spm_tokenize_piece(const Vocab& v, std::string_view text, SpmScratch& s, std::vector<int32_t>& out) {
    if (text.empty()) return Status();
    std::vector<SpmSymbol>& sym = s.sym;
    sym.clear();
    for (size_t off = 0; off < text.size();) {
        size_t len = utf8_char_at(text, off);
        int32_t idx = static_cast<int32_t>(sym.size());
        sym.push_back({idx - 1, off + len == text.size() ? -1 : idx + 1, static_cast<uint32_t>(off),
                       static_cast<uint32_t>(len), -1});
        off += len;
    }

    std::vector<SpmBigram>& heap = s.heap;
    heap.clear();
    SpmBigramOrder order;
    auto try_pair = [&](int32_t left, int32_t right) {
        if (left < 0 || right < 0) return;
        const SpmSymbol& l = sym[static_cast<size_t>(left)];
        const SpmSymbol& r = sym[static_cast<size_t>(right)];
        std::string_view piece = text.substr(l.off, l.n + r.n);
        int32_t id = v.find(piece);
        if (id < 0) return;
        heap.push_back({v.score[static_cast<size_t>(id)], left, right, static_cast<uint32_t>(piece.size()), id});
        std::push_heap(heap.begin(), heap.end(), order);
    };
    for (size_t i = 1; i < sym.size(); ++i) try_pair(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));

    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), order);
        SpmBigram b = heap.back();
        heap.pop_back();
        SpmSymbol& l = sym[static_cast<size_t>(b.left)];
        SpmSymbol& r = sym[static_cast<size_t>(b.right)];
        // Stale: one side was merged into something else since the pair was
        // queued (sizes only grow, so equal sizes mean unchanged symbols).
        if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;
        l.n += r.n;
        l.id = b.id;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) sym[static_cast<size_t>(r.next)].prev = b.left;
        try_pair(l.prev, b.left);
        try_pair(b.left, l.next);
    }

    for (int32_t i = 0; i >= 0; i = sym[static_cast<size_t>(i)].next) {
        const SpmSymbol& x = sym[static_cast<size_t>(i)];
        std::string_view piece = text.substr(x.off, x.n);
        int32_t id = x.id >= 0 ? x.id : v.find(piece);
        if (id >= 0) {
            out.push_back(id);
            continue;
        }
        // Not a token: one byte token per byte, or UNK when a byte has no token.
        bool bytes_ok = true;
        for (char c : piece) bytes_ok = bytes_ok && v.byte_token[static_cast<unsigned char>(c)] >= 0;
        if (bytes_ok) {
            for (char c : piece) out.push_back(v.byte_token[static_cast<unsigned char>(c)]);
        } else if (v.unk >= 0) {
            out.push_back(v.unk);
        } else {
            return error(StatusCode::invalid_argument,
                         "the text holds a character (first byte 0x%02X) that the vocabulary cannot encode: "
                         "it has neither byte tokens nor an unknown token",
                         static_cast<unsigned>(static_cast<unsigned char>(piece[0])));
        }
    }
    return Status();
}

// A piece through the cache.
inline Status spm_tokenize_cached(const Vocab& v, std::string_view piece, SpmScratch& s, std::vector<int32_t>& out) {
    if (piece.size() > PieceCache::kMaxKey) return spm_tokenize_piece(v, piece, s, out);
    uint64_t h = vocab_hash(piece);
    if (s.cache.get(piece, h, out)) return Status();
    size_t before = out.size();
    Status st = spm_tokenize_piece(v, piece, s, out);
    if (st.ok()) s.cache.put(piece, h, out.data() + before, out.size() - before);
    return st;
}

// Tokenizes a text whose spaces are already written as U+2581: cut before each
// U+2581 that no token can span (see spm_init_split), each piece merged alone.
// A cut there is also a character boundary: utf8_char_at never lets a
// character run into the 0xE2 that starts U+2581, which is not a continuation byte.
inline Status spm_tokenize_text(const Vocab& v, std::string_view text, SpmScratch& s, std::vector<int32_t>& out) {
    if (!v.spm_split) return spm_tokenize_piece(v, text, s, out);
    static const char kSpace[] = "\xE2\x96\x81";
    s.blocked.clear();
    if (!v.spm_cross.empty()) {
        s.blocked.assign(text.size(), 0);
        for (int32_t id : v.spm_cross) {
            std::string_view t = v.text[static_cast<size_t>(id)];
            for (size_t pos = text.find(t); pos != std::string_view::npos; pos = text.find(t, pos + 1))
                for (size_t k = t.find(kSpace, 1); k != std::string_view::npos; k = t.find(kSpace, k + 1))
                    s.blocked[pos + k] = 1;
        }
    }
    size_t start = 0;
    for (size_t p = text.find(kSpace, 1); p != std::string_view::npos; p = text.find(kSpace, p + 3)) {
        if (v.spm_space_runs && p >= 3 && text.compare(p - 3, 3, kSpace) == 0) continue;
        if (!s.blocked.empty() && s.blocked[p]) continue;
        if (p == start) continue;
        Status st = spm_tokenize_cached(v, text.substr(start, p - start), s, out);
        if (!st.ok()) return st;
        start = p;
    }
    return spm_tokenize_cached(v, text.substr(start), s, out);
}

inline bool is_space_byte(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// A run of the input: a token found by special-token matching (id >= 0) or raw text.
struct TextFragment {
    int32_t id;
    size_t off, len;
};

// Splits text at every occurrence of a special token's text, longest tokens
// first. Control and unknown tokens are only matched with parse_special;
// user-defined tokens always are.
inline void split_special(const Vocab& v, std::string_view text, bool parse_special, std::vector<TextFragment>& frags) {
    frags.assign(1, TextFragment{-1, 0, text.size()});
    std::vector<TextFragment> next;
    for (int32_t sid : v.specials) {
        int32_t t = v.type[static_cast<size_t>(sid)];
        if (!parse_special && (t == Vocab::control || t == Vocab::unknown)) continue;
        const std::string& st = v.text[static_cast<size_t>(sid)];
        if (text.find(st) == std::string_view::npos) continue;
        uint8_t fl = v.flags[static_cast<size_t>(sid)];
        next.clear();
        for (const TextFragment& fr : frags) {
            if (fr.id >= 0) {
                next.push_back(fr);
                continue;
            }
            size_t base = fr.off, len = fr.len;
            while (len > 0) {
                size_t m = text.substr(base, len).find(st);
                if (m == std::string_view::npos) {
                    next.push_back({-1, base, len});
                    break;
                }
                size_t left = m;
                if (fl & Vocab::flag_lstrip)
                    while (left > 0 && is_space_byte(text[base + left - 1])) --left;
                if (left > 0) next.push_back({-1, base, left});
                next.push_back({sid, base + m, st.size()});
                size_t roff = base + m + st.size(), rlen = len - m - st.size();
                if (fl & Vocab::flag_rstrip)
                    while (rlen > 0 && is_space_byte(text[roff])) { ++roff; --rlen; }
                base = roff;
                len = rlen;
            }
        }
        frags.swap(next);
    }
}

// ---------------------------------------------------------------------------
// Byte-level BPE tokenization.
// ---------------------------------------------------------------------------

struct BpeSymbol {
    int32_t id;          // token of the bytes so far, -1 if none
    int32_t prev, next;
    uint32_t off, n;     // bytes [off, off+n) of the word; n = 0 once merged away
};
struct BpePair {
    int32_t rank, left, right, left_id, right_id, merged;
};
// Lowest rank first; on equal ranks the leftmost pair first.
struct BpePairOrder {
    bool operator()(const BpePair& a, const BpePair& b) const {
        return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
    }
};

struct BpeScratch {
    BpeText text;
    std::vector<std::pair<uint32_t, uint32_t>> words;
    std::vector<BpeSymbol> sym;
    std::vector<BpePair> heap;
    std::string enc;
};

// Merges one pre-token (raw bytes) and appends its tokens.
inline void bpe_tokenize_word(const Vocab& v, std::string_view word, BpeScratch& s, std::vector<int32_t>& out) {
    if (word.size() == 1) {
        int32_t id = v.bpe_byte_token[static_cast<unsigned char>(word[0])];
        if (id >= 0) {
            out.push_back(id);
            return;
        }
    }
    if (v.ignore_merges) {
        s.enc.clear();
        bpe_encode_bytes(word, s.enc);
        int32_t id = v.find(s.enc);
        if (id >= 0) {
            out.push_back(id);
            return;
        }
    }
    std::vector<BpeSymbol>& sym = s.sym;
    sym.clear();
    for (size_t i = 0; i < word.size(); ++i) {
        int32_t idx = static_cast<int32_t>(i);
        sym.push_back({v.bpe_byte_token[static_cast<unsigned char>(word[i])], idx - 1,
                       i + 1 == word.size() ? -1 : idx + 1, static_cast<uint32_t>(i), 1u});
    }
    std::vector<BpePair>& heap = s.heap;
    heap.clear();
    BpePairOrder order;
    auto try_pair = [&](int32_t l, int32_t r) {
        if (l < 0 || r < 0) return;
        int32_t lid = sym[static_cast<size_t>(l)].id, rid = sym[static_cast<size_t>(r)].id, merged = -1;
        int32_t rank = bpe_find_merge(v, lid, rid, &merged);
        if (rank < 0) return;
        heap.push_back({rank, l, r, lid, rid, merged});
        std::push_heap(heap.begin(), heap.end(), order);
    };
    for (size_t i = 1; i < sym.size(); ++i) try_pair(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), order);
        BpePair p = heap.back();
        heap.pop_back();
        BpeSymbol& l = sym[static_cast<size_t>(p.left)];
        BpeSymbol& r = sym[static_cast<size_t>(p.right)];
        // Stale: a side was merged since the pair was queued (ids only grow, so
        // equal ids mean unchanged symbols).
        if (l.n == 0 || r.n == 0 || l.next != p.right || l.id != p.left_id || r.id != p.right_id) continue;
        l.n += r.n;
        l.id = p.merged;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) sym[static_cast<size_t>(r.next)].prev = p.left;
        try_pair(l.prev, p.left);
        try_pair(p.left, l.next);
    }
    for (int32_t i = 0; i >= 0; i = sym[static_cast<size_t>(i)].next) {
        const BpeSymbol& x = sym[static_cast<size_t>(i)];
        if (x.id >= 0) {
            out.push_back(x.id);
            continue;
        }
        // Not a token (cannot happen after bpe_tokenize_text's byte check): as
        // llama.cpp, emit the single-character tokens of its text that exist.
        s.enc.clear();
        bpe_encode_bytes(word.substr(x.off, x.n), s.enc);
        for (char ch : s.enc) {
            int32_t id = v.find(std::string_view(&ch, 1));
            if (id >= 0) out.push_back(id);
        }
    }
}

// Tokenizes a run of raw text (no special tokens in it). A byte whose
// character is not a token cannot be encoded: an error (llama.cpp drops such
// bytes silently; some vocabularies lack e.g. control bytes or 0xF1).
inline Status bpe_tokenize_text(const Vocab& v, std::string_view text, BpeScratch& s, std::vector<int32_t>& out) {
    for (size_t i = 0; i < text.size(); ++i) {
        unsigned char b = static_cast<unsigned char>(text[i]);
        if (v.bpe_byte_token[b] < 0)
            return error(StatusCode::invalid_argument,
                         "the text holds byte 0x%02X (at offset %zu of a text run) that the vocabulary cannot encode: "
                         "its byte-level BPE has no token for that byte",
                         static_cast<unsigned>(b), i);
    }
    bpe_pre_tokenize(v.pre_index, text, s.text, s.words);
    for (const auto& w : s.words) bpe_tokenize_word(v, text.substr(w.first, w.second - w.first), s, out);
    return Status();
}

// Text -> ids; `out` is replaced. add_special adds BOS (when add_bos) and EOS
// (when add_eos). Every run of raw text that starts the input or follows a
// special token gets a leading space when add_space_prefix is set; the empty
// text gives no tokens besides BOS/EOS.
inline Status tokenize(const Vocab& v, std::string_view text, bool add_special, bool parse_special,
                       std::vector<int32_t>& out) {
    out.clear();
    if (!v.ready) return error(StatusCode::invalid_argument, "the vocabulary is not loaded");
    if (text.size() > (size_t(1) << 29))
        return error(StatusCode::invalid_argument, "text of %zu bytes is too long to tokenize", text.size());
    if (add_special && v.add_bos && v.bos >= 0) out.push_back(v.bos);
    if (!text.empty()) {
        std::vector<TextFragment> frags;
        split_special(v, text, parse_special, frags);
        static const char kSpace[] = "\xE2\x96\x81";  // U+2581, SentencePiece's space
        std::string piece;
        bool prev_special = true;
        BpeScratch bpe;
        SpmScratch spm;
        for (const TextFragment& fr : frags) {
            if (fr.id >= 0) {
                out.push_back(fr.id);
                prev_special = true;
                continue;
            }
            if (v.is_bpe) {
                Status st = bpe_tokenize_text(v, text.substr(fr.off, fr.len), bpe, out);
                if (!st.ok()) {
                    out.clear();
                    return st;
                }
                continue;
            }
            piece.clear();
            if (v.add_space_prefix && prev_special) piece += kSpace;
            for (char c : text.substr(fr.off, fr.len)) {
                if (c == ' ') piece += kSpace;
                else piece += c;
            }
            Status st = spm_tokenize_text(v, piece, spm, out);
            if (!st.ok()) {
                out.clear();
                return st;
            }
            prev_special = false;
        }
    }
    if (add_special && v.add_eos && v.eos >= 0) out.push_back(v.eos);
    return Status();
}

// Appends the bytes of token `id` to out (see token_to_piece).
inline void append_piece(const Vocab& v, int32_t id, bool render_special, std::string& out) {
    if (id < 0 || id >= v.n_vocab()) return;
    size_t i = static_cast<size_t>(id);
    const std::string& t = v.text[i];
    switch (v.type[i]) {
        case Vocab::normal: {
            if (v.is_bpe) {
                bpe_decode_text(t, out);
                break;
            }
            // U+2581 -> ' '
            for (size_t k = 0; k < t.size(); ++k) {
                if (k + 2 < t.size() && t[k] == '\xE2' && t[k + 1] == '\x96' && t[k + 2] == '\x81') {
                    out += ' ';
                    k += 2;
                } else {
                    out += t[k];
                }
            }
            break;
        }
        case Vocab::control:
        case Vocab::unknown:
            if (render_special) out += t;
            break;
        case Vocab::user_defined:
            out += t;
            break;
        case Vocab::byte:
            if (v.byte_value[i] >= 0) out += static_cast<char>(v.byte_value[i]);
            break;
        default:
            break;  // unused and undefined tokens have no text
    }
}

// The bytes of one token: U+2581 becomes ' ' in normal tokens, a <0xNN> token
// is that single raw byte (possibly part of a UTF-8 character), control and
// unknown tokens give "" unless render_special, user-defined tokens give their
// text, unused tokens and out-of-range ids give "".
inline std::string token_to_piece(const Vocab& v, int32_t id, bool render_special) {
    std::string s;
    append_piece(v, id, render_special, s);
    return s;
}

// Ids -> text: the pieces joined, so byte tokens rebuild whole characters. When
// add_space_prefix is set, one leading space of the FIRST token's piece is
// dropped (the space tokenize added). A leading BOS has no space to drop, so the
// text after it keeps its space: this matches llama.cpp's detokenizer with
// remove_special = false. Hence detokenize(tokenize(s, add_special=false)) == s,
// and with BOS first the result is " " + s (or "<s> " + s with render_special).
inline std::string detokenize(const Vocab& v, const int32_t* ids, size_t n, bool render_special) {
    std::string out;
    for (size_t i = 0; i < n; ++i) {
        size_t before = out.size();
        append_piece(v, ids[i], render_special, out);
        if (i == 0 && v.add_space_prefix && out.size() > before && out[before] == ' ') out.erase(before, 1);
    }
    return out;
}

// True for tokens that end generation: EOS, EOT, EOM and tokens such as <|end|> or <|im_end|>.
inline bool is_eog(const Vocab& v, int32_t id) {
    return id >= 0 && id < v.n_vocab() && (v.flags[static_cast<size_t>(id)] & Vocab::flag_eog) != 0;
}

}  // namespace detail
MINIGPT_NS_END

// ---- model.hpp ----
// model: hyperparameters from the GGUF metadata, weights bound by name and
// checked against them, and the Model object (weights + vocabulary).

MINIGPT_NS_BEGIN
namespace detail {

// A weight: a view into the mapped file.
struct Weight {
    const GgufTensor* t = nullptr;
    Type type = Type::F32;
    const uint8_t* data = nullptr;
    int64_t cols = 0;        // ne[0]: the length of a row (the input size of a matmul)
    int64_t rows = 0;        // ne[1]: the number of rows (the output size)
    size_t row_stride = 0;   // bytes per row
    explicit operator bool() const { return data != nullptr; }
};

struct LayerWeights {
    Weight attn_norm, attn_norm_b;           // norm weight (and LayerNorm bias)
    Weight wq, wk, wv, wqkv, wo;             // separate or fused (rows Q, K, V) projections
    Weight bq, bk, bv, bqkv, bo;             // projection biases
    Weight q_norm, k_norm;                   // per-head RMSNorm of q and k
    Weight ffn_norm, ffn_norm_b;
    Weight w_gate, w_up, w_down, b_up, b_down;
};

enum class Arch { llama, qwen2, qwen3, gpt2 };
enum class NormKind { rms, layer };
enum class RopeKind { none, normal, neox };
enum class FfnKind { swiglu, gelu };

// What distinguishes the supported architectures: data for one forward pass.
struct ArchTraits {
    const char* name;
    Arch arch;
    NormKind norm;
    RopeKind rope;
    FfnKind ffn;
    bool qkv_bias;     // biases on the q, k, v projections
    bool qk_norm;      // per-head RMSNorm on q and k before RoPE
    bool fused_qkv;    // one attn_qkv matrix
    bool pos_embd;     // learned absolute position embeddings
    bool all_bias;     // biases on norms, attention output and FFN (GPT-2)
};

inline const ArchTraits* find_arch(std::string_view name) {
    static const ArchTraits table[] = {
        {"llama", Arch::llama, NormKind::rms, RopeKind::normal, FfnKind::swiglu, false, false, false, false, false},
        {"qwen2", Arch::qwen2, NormKind::rms, RopeKind::neox, FfnKind::swiglu, true, false, false, false, false},
        {"qwen3", Arch::qwen3, NormKind::rms, RopeKind::neox, FfnKind::swiglu, false, true, false, false, false},
        {"gpt2", Arch::gpt2, NormKind::layer, RopeKind::none, FfnKind::gelu, false, false, true, true, true},
    };
    for (const ArchTraits& a : table)
        if (name == a.name) return &a;
    return nullptr;
}

struct Hparams {
    ArchTraits traits{};
    int n_vocab = 0, n_ctx_train = 0, n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0;
    int head_dim = 0, n_rot = 0, n_ff = 0;
    float rope_base = 10000.0f, rope_freq_scale = 1.0f, norm_eps = 1e-5f;
    int q_dim() const { return n_head * head_dim; }
    int kv_dim() const { return n_head_kv * head_dim; }
};

}  // namespace detail

struct Model::Impl {
    detail::FileBytes bytes;
    detail::GgufFile gguf;
    detail::Vocab vocab;
    detail::Hparams hp;
    ModelInfo info;
    bool vocab_only = false;
    detail::Weight token_embd, pos_embd, output_norm, output_norm_b, output, rope_freqs;
    std::vector<detail::LayerWeights> layers;

    Status load(const ModelParams& params);
    Status load_hparams();
    Status bind_weights();
    Status bind(const std::string& name, std::initializer_list<int64_t> shape, bool matrix, detail::Weight& w,
                bool required = true);
};

namespace detail {

inline Status missing_key(const std::string& key) {
    return error(StatusCode::bad_format, "required key '%s' is missing", key.c_str());
}

// Reads a positive integer hyperparameter `<arch>.<name>`.
inline Status read_hp_int(const GgufFile& f, const std::string& key, int& out, bool required, int64_t lo = 1,
                          int64_t hi = (int64_t(1) << 24)) {
    Status st;
    int64_t v;
    if (!f.get_int(key, v, st)) {
        if (!st.ok()) return st;
        return required ? missing_key(key) : Status();
    }
    if (v < lo || v > hi)
        return error(StatusCode::bad_format, "key '%s' is %lld, outside [%lld, %lld]", key.c_str(), (long long)v,
                     (long long)lo, (long long)hi);
    out = static_cast<int>(v);
    return Status();
}

inline Status read_hp_float(const GgufFile& f, const std::string& key, float& out) {
    Status st;
    double v;
    if (!f.get_float(key, v, st)) return st;
    if (!(v > 0) || !std::isfinite(v))
        return error(StatusCode::bad_format, "key '%s' is %g, which is not a positive number", key.c_str(), v);
    out = static_cast<float>(v);
    return Status();
}

}  // namespace detail

Status Model::Impl::load_hparams() {
    using namespace detail;
    Status st;
    std::string_view arch_sv;
    if (!gguf.get_string("general.architecture", arch_sv, st)) {
        if (!st.ok()) return st;
        return missing_key("general.architecture");
    }
    std::string arch(arch_sv);
    info.architecture = arch;
    std::string_view name;
    if (gguf.get_string("general.name", name, st)) info.name = std::string(name);
    const ArchTraits* traits = find_arch(arch);
    if (!traits)
        return error(StatusCode::unsupported, "architecture '%s' is not supported (supported: llama, qwen2, qwen3, gpt2)",
                     arch.c_str());

    const std::string p = arch + ".";
    Hparams h;
    h.traits = *traits;
    if (!(st = read_hp_int(gguf, p + "embedding_length", h.n_embd, true)).ok()) return st;
    if (!(st = read_hp_int(gguf, p + "block_count", h.n_layer, true, 1, 4096)).ok()) return st;
    if (!(st = read_hp_int(gguf, p + "attention.head_count", h.n_head, true, 1, 4096)).ok()) return st;
    h.n_head_kv = h.n_head;
    if (!(st = read_hp_int(gguf, p + "attention.head_count_kv", h.n_head_kv, false, 1, 4096)).ok()) return st;
    if (!(st = read_hp_int(gguf, p + "feed_forward_length", h.n_ff, true)).ok()) return st;
    h.n_ctx_train = 2048;
    if (!(st = read_hp_int(gguf, p + "context_length", h.n_ctx_train, false)).ok()) return st;
    if (h.n_embd % h.n_head != 0)
        return error(StatusCode::bad_format, "%s.embedding_length %d is not a multiple of %s.attention.head_count %d",
                     arch.c_str(), h.n_embd, arch.c_str(), h.n_head);
    h.head_dim = h.n_embd / h.n_head;
    if (!(st = read_hp_int(gguf, p + "attention.key_length", h.head_dim, false, 1, 65536)).ok()) return st;
    int v_len = h.head_dim;
    if (!(st = read_hp_int(gguf, p + "attention.value_length", v_len, false, 1, 65536)).ok()) return st;
    if (v_len != h.head_dim)
        return error(StatusCode::unsupported, "%s.attention.value_length %d differs from the key length %d",
                     arch.c_str(), v_len, h.head_dim);
    if (h.n_head % h.n_head_kv != 0)
        return error(StatusCode::bad_format, "%s.attention.head_count %d is not a multiple of head_count_kv %d",
                     arch.c_str(), h.n_head, h.n_head_kv);
    h.n_rot = h.head_dim;
    if (!(st = read_hp_int(gguf, p + "rope.dimension_count", h.n_rot, false, 2, 65536)).ok()) return st;
    if (h.n_rot > h.head_dim || h.n_rot % 2 != 0)
        return error(StatusCode::bad_format, "%s.rope.dimension_count %d does not fit the head size %d", arch.c_str(),
                     h.n_rot, h.head_dim);
    if (!(st = read_hp_float(gguf, p + "rope.freq_base", h.rope_base)).ok()) return st;
    const char* eps_key = h.traits.norm == NormKind::rms ? "attention.layer_norm_rms_epsilon" : "attention.layer_norm_epsilon";
    if (!(st = read_hp_float(gguf, p + eps_key, h.norm_eps)).ok()) return st;
    // RoPE scaling: linear (positions divided by the factor), or per-dimension
    // frequency factors in a rope_freqs tensor (Llama 3.x); nothing else.
    std::string_view scaling;
    double factor = 1;
    if (gguf.get_string(p + "rope.scaling.type", scaling, st)) {
        if (scaling == "linear") {
            if (gguf.get_float(p + "rope.scaling.factor", factor, st) && factor > 0) h.rope_freq_scale = float(1 / factor);
        } else if (scaling != "none" && scaling != "llama3") {
            return error(StatusCode::unsupported, "%s.rope.scaling.type '%.*s' is not supported", arch.c_str(),
                         (int)scaling.size(), scaling.data());
        }
    } else if (gguf.get_float(p + "rope.scale_linear", factor, st) && factor > 0) {
        h.rope_freq_scale = float(1 / factor);
    }
    if (!st.ok()) return st;
    if (h.traits.rope == RopeKind::none) h.n_rot = 0;
    hp = h;
    return Status();
}

Status Model::Impl::bind(const std::string& name, std::initializer_list<int64_t> shape, bool matrix,
                         detail::Weight& w, bool required) {
    using namespace detail;
    const GgufTensor* t = gguf.find_tensor(name);
    if (!t) {
        if (!required) return Status();
        return error(StatusCode::bad_format, "tensor '%s' is missing", name.c_str());
    }
    int64_t want[4] = {1, 1, 1, 1};
    int k = 0;
    for (int64_t d : shape) want[k++] = d;
    for (int d = 0; d < 4; ++d) {
        if (t->ne[d] != want[d])
            return error(StatusCode::bad_format,
                         "tensor '%s' has shape [%lld, %lld, %lld, %lld] but the metadata says [%lld, %lld, %lld, %lld]",
                         name.c_str(), (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                         (long long)t->ne[3], (long long)want[0], (long long)want[1], (long long)want[2],
                         (long long)want[3]);
    }
    Type type = static_cast<Type>(t->type);
    if (matrix ? !type_supported(type) : type != Type::F32)
        return error(StatusCode::unsupported, "tensor '%s' has type %s, which is not supported%s", name.c_str(),
                     type_name(t->type), matrix ? "" : " for a norm or bias (F32 only)");
    w.t = t;
    w.type = type;
    w.data = t->data;
    w.cols = t->ne[0];
    w.rows = t->ne[1];
    w.row_stride = row_bytes(type, w.cols);
    return Status();
}

Status Model::Impl::bind_weights() {
    const detail::Hparams& h = hp;
    const detail::ArchTraits& a = h.traits;
    const int64_t E = h.n_embd, V = h.n_vocab, Q = h.q_dim(), KV = h.kv_dim(), F = h.n_ff, D = h.head_dim;
    Status st;
#define MINIGPT_BIND(...) \
    if (!(st = bind(__VA_ARGS__)).ok()) return st
    MINIGPT_BIND("token_embd.weight", {E, V}, true, token_embd);
    if (a.pos_embd) MINIGPT_BIND("position_embd.weight", {E, h.n_ctx_train}, true, pos_embd);
    MINIGPT_BIND("output_norm.weight", {E}, false, output_norm);
    if (a.all_bias) MINIGPT_BIND("output_norm.bias", {E}, false, output_norm_b);
    MINIGPT_BIND("output.weight", {E, V}, true, output, false);
    if (!output) output = token_embd;  // tied embeddings
    if (h.n_rot > 0) MINIGPT_BIND("rope_freqs.weight", {h.n_rot / 2}, false, rope_freqs, false);
    layers.resize(static_cast<size_t>(h.n_layer));
    for (int l = 0; l < h.n_layer; ++l) {
        detail::LayerWeights& L = layers[static_cast<size_t>(l)];
        const std::string b = "blk." + std::to_string(l) + ".";
        MINIGPT_BIND(b + "attn_norm.weight", {E}, false, L.attn_norm);
        if (a.all_bias) MINIGPT_BIND(b + "attn_norm.bias", {E}, false, L.attn_norm_b);
        if (a.fused_qkv) {
            MINIGPT_BIND(b + "attn_qkv.weight", {E, Q + 2 * KV}, true, L.wqkv);
            if (a.all_bias) MINIGPT_BIND(b + "attn_qkv.bias", {Q + 2 * KV}, false, L.bqkv);
        } else {
            MINIGPT_BIND(b + "attn_q.weight", {E, Q}, true, L.wq);
            MINIGPT_BIND(b + "attn_k.weight", {E, KV}, true, L.wk);
            MINIGPT_BIND(b + "attn_v.weight", {E, KV}, true, L.wv);
            if (a.qkv_bias) {
                MINIGPT_BIND(b + "attn_q.bias", {Q}, false, L.bq);
                MINIGPT_BIND(b + "attn_k.bias", {KV}, false, L.bk);
                MINIGPT_BIND(b + "attn_v.bias", {KV}, false, L.bv);
            }
        }
        if (a.qk_norm) {
            MINIGPT_BIND(b + "attn_q_norm.weight", {D}, false, L.q_norm);
            MINIGPT_BIND(b + "attn_k_norm.weight", {D}, false, L.k_norm);
        }
        MINIGPT_BIND(b + "attn_output.weight", {Q, E}, true, L.wo);
        if (a.all_bias) MINIGPT_BIND(b + "attn_output.bias", {E}, false, L.bo);
        MINIGPT_BIND(b + "ffn_norm.weight", {E}, false, L.ffn_norm);
        if (a.all_bias) MINIGPT_BIND(b + "ffn_norm.bias", {E}, false, L.ffn_norm_b);
        if (a.ffn == detail::FfnKind::swiglu) MINIGPT_BIND(b + "ffn_gate.weight", {E, F}, true, L.w_gate);
        MINIGPT_BIND(b + "ffn_up.weight", {E, F}, true, L.w_up);
        MINIGPT_BIND(b + "ffn_down.weight", {F, E}, true, L.w_down);
        if (a.all_bias) {
            MINIGPT_BIND(b + "ffn_up.bias", {F}, false, L.b_up);
            MINIGPT_BIND(b + "ffn_down.bias", {E}, false, L.b_down);
        }
    }
#undef MINIGPT_BIND
    return Status();
}

Status Model::Impl::load(const ModelParams& params) {
    using namespace detail;
    vocab_only = params.vocab_only;
    Status st = gguf.parse(bytes.data(), bytes.size());
    if (!st.ok()) return st;
    if (!(st = load_vocab(gguf, vocab, params.bpe_unknown_pre_as_default)).ok()) return st;
    info.n_vocab = vocab.n_vocab();
    std::string_view arch;
    Status ignored;
    if (gguf.get_string("general.architecture", arch, ignored)) info.architecture = std::string(arch);
    if (vocab_only) return Status();

    if (!(st = load_hparams()).ok()) return st;
    hp.n_vocab = vocab.n_vocab();
    int64_t v = 0;
    if (gguf.get_int(info.architecture + ".vocab_size", v, st) && v != hp.n_vocab)
        return error(StatusCode::bad_format, "%s.vocab_size is %lld but the vocabulary has %d tokens",
                     info.architecture.c_str(), (long long)v, hp.n_vocab);
    if (!(st = bind_weights()).ok()) return st;

    info.n_ctx_train = hp.n_ctx_train;
    info.n_embd = hp.n_embd;
    info.n_layer = hp.n_layer;
    info.n_head = hp.n_head;
    info.n_head_kv = hp.n_head_kv;
    info.head_dim = hp.head_dim;
    info.n_ff = hp.n_ff;
    info.rope_freq_base = hp.rope_base;
    info.norm_eps = hp.norm_eps;
    // Parameter count and a per-type summary.
    std::vector<std::pair<std::string, int>> counts;
    for (const GgufTensor& t : gguf.tensors) {
        info.n_params += static_cast<uint64_t>(t.n_elements());
        info.weight_bytes += t.nbytes;
        const char* tn = type_name(t.type);
        auto it = std::find_if(counts.begin(), counts.end(), [&](const std::pair<std::string, int>& c) { return c.first == tn; });
        if (it == counts.end()) counts.emplace_back(tn, 1); else ++it->second;
    }
    for (size_t i = 0; i < counts.size(); ++i) {
        if (i) info.type_summary += ", ";
        info.type_summary += counts[i].first + ": " + std::to_string(counts[i].second);
    }
    return Status();
}

Model::Model() : impl_(new Impl) {}
Model::~Model() = default;

Status Model::load(const std::string& path, const ModelParams& params, std::shared_ptr<Model>& out) {
    out.reset();
    return detail::guard("Model::load", [&]() -> Status {
        std::shared_ptr<Model> m(new Model());
        Status st = params.file_io ? m->impl_->bytes.open_with(path, *params.file_io)
                                   : m->impl_->bytes.open(path, params.use_mmap, params.reread_small_pages);
        if (!st.ok()) return st;
        st = m->impl_->load(params);
        if (!st.ok()) return Status(st.code(), path + ": " + st.message());
        const ModelInfo& info = m->impl_->info;
        detail::log_msg(LogLevel::info, "loaded %s: %s, %llu parameters, %.2f MB of weights (%s)%s", path.c_str(),
                        info.architecture.c_str(), static_cast<unsigned long long>(info.n_params),
                        static_cast<double>(info.weight_bytes) / 1e6, info.type_summary.c_str(),
                        m->impl_->bytes.mapped() ? ", memory-mapped" : "");
        out = std::move(m);
        return Status();
    });
}

Status Model::load_from_memory(const void* data, size_t size, const ModelParams& params, std::shared_ptr<Model>& out) {
    out.reset();
    return detail::guard("Model::load_from_memory", [&]() -> Status {
        if (!data || size == 0) return detail::error(StatusCode::invalid_argument, "load_from_memory: empty buffer");
        std::shared_ptr<Model> m(new Model());
        m->impl_->bytes.borrow(data, size);
        Status st = m->impl_->load(params);
        if (!st.ok()) return st;
        out = std::move(m);
        return Status();
    });
}

const ModelInfo& Model::info() const { return impl_->info; }

Status Model::tokenize(std::string_view text, std::vector<int32_t>& out, bool add_special, bool parse_special) const {
    return detail::guard("Model::tokenize", [&]() -> Status {
        return detail::tokenize(impl_->vocab, text, add_special, parse_special, out);
    });
}
std::string Model::token_to_piece(int32_t token, bool render_special) const {
    return detail::token_to_piece(impl_->vocab, token, render_special);
}
std::string Model::detokenize(const std::vector<int32_t>& tokens, bool render_special) const {
    return detail::detokenize(impl_->vocab, tokens.data(), tokens.size(), render_special);
}
int32_t Model::token_bos() const { return impl_->vocab.bos; }
int32_t Model::token_eos() const { return impl_->vocab.eos; }
bool Model::is_eog(int32_t token) const { return detail::is_eog(impl_->vocab, token); }
int Model::n_vocab() const { return impl_->vocab.n_vocab(); }

MINIGPT_NS_END

// ---- forward.hpp ----
// forward: the Context (KV cache, scratch, threads) and the transformer forward
// pass over a batch of tokens: every matrix product sees all the batch's rows
// at once, so a prompt is evaluated as matrices, and decode is the m = 1 case.

MINIGPT_NS_BEGIN
namespace detail {

// An activation matrix converted to the format a weight's dot product wants.
// `packed` says that the prompt GEMM's panels already hold it, packed for
// weights of packed_type with packed_cols columns (valid for the next product).
struct Act {
    const void* data = nullptr;
    size_t stride = 0;  // bytes per row
    Type type = Type::F32;
    bool packed = false;
    Type packed_type = Type::F32;
    int64_t packed_cols = 0;
};

// Parts laid one after the other, part k covering [first[k], first[k + 1]):
// f(k, lo, hi) for the piece [lo, hi) of part k (counted from the part's own
// start) that [b, e) overlaps.
template <class F>
inline void each_part(const int64_t* first, int parts, int64_t b, int64_t e, F&& f) {
    for (int k = 0; k < parts; ++k) {
        const int64_t lo = std::max(b, first[k]) - first[k], hi = std::min(e, first[k + 1]) - first[k];
        if (lo < hi) f(k, lo, hi);
    }
}

// y = x / sqrt(mean(x^2) + eps) * w, the sum accumulated in double (in four
// running sums, so that the adds do not wait on each other one by one).
inline void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    const int64_t n4 = n / 4 * 4;
    for (int64_t i = 0; i < n4; i += 4) {
        s0 += static_cast<double>(x[i] * x[i]);
        s1 += static_cast<double>(x[i + 1] * x[i + 1]);
        s2 += static_cast<double>(x[i + 2] * x[i + 2]);
        s3 += static_cast<double>(x[i + 3] * x[i + 3]);
    }
    for (int64_t i = n4; i < n; ++i) s0 += static_cast<double>(x[i] * x[i]);
    const double sum = (s0 + s1) + (s2 + s3);
    const float mean = static_cast<float>(sum / static_cast<double>(n));
    const float scale = 1.0f / std::sqrt(mean + eps);
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * scale) * w[i];
}

// In-place softmax over n values; returns nothing, values sum to 1.
// Keys per block of the attention's online softmax. Only tests change it (to
// check that the block size does not change the result).
inline int g_attn_block = 256;
// One token's keys are split between the threads from this many per thread on.
inline constexpr int kMinKeysPerRun = 16;

// y = (x - mean) / sqrt(var + eps) * w + b, sums in double.
inline void layer_norm(const float* x, const float* w, const float* b, float* y, int64_t n, float eps) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += x[i];
    const float mean = static_cast<float>(sum / static_cast<double>(n));
    double var = 0;
    for (int64_t i = 0; i < n; ++i) {
        const float d = x[i] - mean;
        y[i] = d;
        var += static_cast<double>(d * d);
    }
    const float scale = 1.0f / std::sqrt(static_cast<float>(var / static_cast<double>(n)) + eps);
    for (int64_t i = 0; i < n; ++i) y[i] = y[i] * scale * w[i] + (b ? b[i] : 0.0f);
}


// GELU (tanh form) evaluated as y = f16(gelu(f16(x))) for |x| < 10, through a
// table over every half-precision value: the numbers GPT-2 models were
// validated with on CPUs.
inline float gelu_exact(float x) {
    const float k = 0.79788456080286535587989211986876f;  // sqrt(2/pi)
    return 0.5f * x * (1.0f + std::tanh(k * x * (1.0f + 0.044715f * x * x)));
}
inline const uint16_t* gelu_table() {
    static const std::vector<uint16_t> table = [] {
        std::vector<uint16_t> t(65536);
        for (uint32_t i = 0; i < 65536; ++i) t[i] = fp32_to_fp16(gelu_exact(fp16_to_fp32(static_cast<uint16_t>(i))));
        return t;
    }();
    return table.data();
}
inline float gelu(float x, const uint16_t* table) {
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    return fp16_to_fp32(table[fp32_to_fp16(x)]);
}

// RoPE angles for one position: cs[2i] = cos(theta_i), cs[2i+1] = sin(theta_i)
// with theta_i = pos * base^(-2i/n_rot) (the power built up by repeated float
// multiplication), divided by the per-pair frequency factor when the model has
// one and scaled by freq_scale (linear RoPE scaling).
inline void rope_angles(int pos, int n_rot, float base, float freq_scale, const float* freq_factors, float* cs) {
    const float theta_scale = std::pow(base, -2.0f / static_cast<float>(n_rot));
    float theta = static_cast<float>(pos);
    for (int i = 0; i < n_rot / 2; ++i) {
        const float t = freq_scale * (freq_factors ? theta / freq_factors[i] : theta);
        cs[2 * i] = std::cos(t);
        cs[2 * i + 1] = std::sin(t);
        theta *= theta_scale;
    }
}

// Rotates the first n_rot values of each of n_heads heads of size head_dim.
inline void rope_apply(float* x, int n_heads, int head_dim, int n_rot, const float* cs, RopeKind kind) {
    for (int h = 0; h < n_heads; ++h) {
        float* v = x + static_cast<size_t>(h) * head_dim;
        const int half = n_rot / 2;
        for (int i = 0; i < half; ++i) {
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const int a = kind == RopeKind::normal ? 2 * i : i;
            const int b = kind == RopeKind::normal ? 2 * i + 1 : i + half;
            const float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

}  // namespace detail

struct Context::Impl {
    std::shared_ptr<const Model> model_ref;
    const Model::Impl* m = nullptr;
    detail::Hparams hp;
    ContextParams params;
    int n_ctx = 0, n_batch = 0, n_threads = 1;
    detail::ThreadPool pool;
    detail::Parallel par;

    // [n_layer][n_ctx][kv_dim] elements of kv_es bytes: F32, or F16 with kv_f16.
    detail::Buffer<uint8_t> kcache, vcache;
    size_t kv_es = 4;
    uint8_t* kv_at(detail::Buffer<uint8_t>& b, int layer, int t) {
        return b.data() + (static_cast<size_t>(layer) * n_ctx + static_cast<size_t>(t)) * hp.kv_dim() * kv_es;
    }
    // n floats into / out of the cache's element type.
    void kv_put(uint8_t* dst, const float* src, int64_t n) const {
        if (kv_es == 4) std::memcpy(dst, src, static_cast<size_t>(n) * 4);
        else detail::quantize_row(detail::Type::F16, src, dst, n);
    }
    void kv_get(const uint8_t* src, float* dst, int64_t n) const {
        if (kv_es == 4) std::memcpy(dst, src, static_cast<size_t>(n) * 4);
        else detail::dequantize_row(detail::Type::F16, src, dst, n);
    }
    detail::Buffer<float> x, xn, q, k, v, qkv, att, gate, up, out, rope_cs, scores;
    // One token's attention over runs of positions (one per thread): each
    // run's output and maximum per head, and its sums (see attention()).
    detail::Buffer<float> parts;
    detail::Buffer<double> part_sums;
    const uint16_t* gelu = nullptr;
    detail::Buffer<uint8_t> act_buf[3];
    size_t act_bytes_per_buf = 0;
    // Packed activations and per-chunk weight tiles of the prompt GEMM.
    detail::Buffer<uint8_t> gemm_panel, gemm_tiles;
    size_t gemm_tile_stride = 0;
    int n_chunks_max = 1;
    int attn_block = 256;  // keys per block of the online softmax (g_attn_block at creation)

    std::vector<float> last_logits;
    std::vector<int32_t> tokens;

    Status init();
    Status forward(const int32_t* toks, int m, float* logits_out, bool all_rows);
    detail::Act make_act(const float* src, int64_t m, int64_t n, detail::Type vt, int slot);
    // Where rows of n values of src go in format vt: in place for F32, else
    // act_buf[slot]; convert_row writes row i there.
    detail::Act act_layout(const float* src, int64_t n, detail::Type vt, int slot) {
        detail::Act a;
        a.type = vt;
        const bool f32 = vt == detail::Type::F32;
        a.stride = f32 ? static_cast<size_t>(n) * sizeof(float) : detail::row_bytes(vt, n);
        a.data = f32 ? static_cast<const void*>(src) : act_buf[slot].data();
        return a;
    }
    void convert_row(const detail::Act& a, const float* src, int64_t n, int slot, int64_t i) {
        if (a.type == detail::Type::F32) return;
        detail::quantize_row(a.type, src + i * n, act_buf[slot].data() + static_cast<size_t>(i) * a.stride, n);
    }
    bool gemm_takes(const detail::Weight& w, int64_t m) const {
        return m >= detail::kGemmMinRows && gemm_panel.data() != nullptr && detail::gemm_kind(w.type, w.cols) != detail::GemmKind::none;
    }
    // The input of a product with weight w, made in one pass on the threads:
    // make(i) writes float row i of src (a residual, a norm, an activation
    // function; cost: about its operations), which is then converted to w's
    // activation format in act_buf[slot] and, when the GEMM takes the batch,
    // packed into the panels right away. Threads take whole panels, so a row
    // is made, converted and packed by one thread.
    template <class F>
    detail::Act prepare(float* src, int64_t m, int64_t n, const detail::Weight& w, int slot, int64_t cost, F&& make) {
        using namespace detail;
        Act a = act_layout(src, n, vec_dot_type(w.type), slot);
        auto make_row = [&](int64_t i) {
            make(i);
            convert_row(a, src, n, slot, i);
        };
        if (!gemm_takes(w, m)) {
            each_row(m, cost, make_row);
            return a;
        }
        const int64_t panels = (m + kGemmCols - 1) / kGemmCols;
        par.for_range(panels, std::max<int64_t>(1, (int64_t(1) << 15) / (kGemmCols * std::max<int64_t>(1, cost))),
                      [&](int64_t b, int64_t e, int) {
                          for (int64_t i = b * kGemmCols; i < std::min(m, e * kGemmCols); ++i) make_row(i);
                          gemm_pack_panels(w.type, a.data, a.stride, n, m, b, e, gemm_panel.data());
                      });
        a.packed = true;
        a.packed_type = w.type;
        a.packed_cols = n;
        return a;
    }
    void matmul(const detail::Weight& w, const detail::Act& a, int64_t m, float* y);
    // f(i) for the rows i < m of a batch, on the threads when the rows hold
    // enough work (cost: about the operations of one row).
    template <class F>
    void each_row(int64_t m, int64_t cost, F&& f) {
        par.for_range(m, std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, cost)), [&](int64_t b, int64_t e, int) {
            for (int64_t i = b; i < e; ++i) f(i);
        });
    }
    void matmul_n(int count, const detail::Weight* const* ws, const detail::Act* const* as, int64_t m, float* const* ys);
    // How a one-pass product's rows split among the threads: the rows of
    // weight i are [first[i], first[i + 1]) of the whole, chunk c is rows
    // [c * grain, (c + 1) * grain).
    struct RowSplit {
        int64_t first[4] = {0, 0, 0, 0};
        int64_t grain = 1;
        int n_chunks = 1;
    };
    RowSplit row_split(int count, const detail::Weight* const* ws, int64_t rows_in) const;
    void read_next(int count, const detail::Weight* const* ws);
    void attention(int layer, int m, int n_past);
    // The attention of several tokens widens an F16 cache kWideRows keys or
    // values at a time. Each of its tasks has this many floats of scratch: a
    // block of scores and 2 x head_dim floats of slack (without it, with tasks
    // 256 floats apart, smollm2-135m pp512 was 2-5% slower), then those rows.
    static constexpr int kWideRows = 32;
    size_t attend_stride() const {
        const size_t D = static_cast<size_t>(hp.head_dim);
        return static_cast<size_t>(attn_block) + 2 * D + (kv_es == 2 ? static_cast<size_t>(kWideRows) * D : 0);
    }
    // One token's attention reads the cache kTokenRows positions at a time.
    // Each of its tasks has this many floats of scratch: a block of scores
    // for every head, then those rows widened from F16.
    static constexpr int kTokenRows = 8;
    size_t token_attention_stride() const {
        return static_cast<size_t>(hp.n_head) * static_cast<size_t>(attn_block) +
               static_cast<size_t>(kTokenRows) * static_cast<size_t>(hp.kv_dim());
    }
    struct alignas(64) Span {  // (a cache line each: the threads update them at once)
        std::atomic<uint64_t> v{0};
    };
    std::vector<Span> spans;  // matmul_n's row chunks, one per thread
    // The abort callback is polled between layers and inside attention; once it
    // says stop, the flag stays set until the forward pass returns.
    std::atomic<bool> abort_flag{false};
    bool aborted() {
        if (abort_flag.load(std::memory_order_relaxed)) return true;
        if (params.abort_callback && params.abort_callback(params.abort_user)) {
            abort_flag.store(true, std::memory_order_relaxed);
            return true;
        }
        return false;
    }
    size_t scratch_bytes() const;
};

Status Context::Impl::init() {
    using namespace detail;
    hp = m->hp;
    if (params.n_ctx < 0) return error(StatusCode::invalid_argument, "n_ctx %d is negative", params.n_ctx);
    n_ctx = params.n_ctx > 0 ? params.n_ctx : std::min(hp.n_ctx_train, 4096);
    if (hp.traits.pos_embd && n_ctx > hp.n_ctx_train)
        return error(StatusCode::invalid_argument, "n_ctx %d exceeds the %d positions this %s model has embeddings for",
                     n_ctx, hp.n_ctx_train, hp.traits.name);
    if (n_ctx > (1 << 20)) return error(StatusCode::invalid_argument, "n_ctx %d is larger than 1048576", n_ctx);
    if (params.n_batch < 0) return error(StatusCode::invalid_argument, "n_batch %d is negative", params.n_batch);
    n_batch = std::min(params.n_batch > 0 ? params.n_batch : 512, n_ctx);
    if (params.n_threads < 0 || params.n_threads > 1024)
        return error(StatusCode::invalid_argument, "n_threads %d is outside [0, 1024]", params.n_threads);
    n_threads = params.n_threads;
#if MINIGPT_THREADS
    if (n_threads == 0) n_threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
#else
    n_threads = 1;
#endif
    n_chunks_max = n_threads > 1 ? n_threads * 4 : 1;
    attn_block = std::max(1, std::min(n_ctx, g_attn_block));

    const size_t B = static_cast<size_t>(n_batch);
    const size_t E = static_cast<size_t>(hp.n_embd), Q = static_cast<size_t>(hp.q_dim()),
                 KV = static_cast<size_t>(hp.kv_dim()), F = static_cast<size_t>(hp.n_ff);
    uint64_t cache_elems;
    if (mul_overflows(static_cast<uint64_t>(hp.n_layer) * static_cast<uint64_t>(n_ctx), KV, &cache_elems) ||
        cache_elems > (uint64_t(1) << 40))
        return error(StatusCode::out_of_memory, "KV cache for n_ctx %d is too large", n_ctx);
    kv_es = params.kv_f16 ? 2 : 4;
    // Every buffer's size first, so that a memory limit is checked before
    // anything is allocated. B <= 2^20 and each width <= 2^24: no overflow.
    const size_t n_max = std::max({E, Q, F});
    const size_t out_elems = B * std::max(E, static_cast<size_t>(hp.n_vocab));
    const size_t rope_elems = B * static_cast<size_t>(std::max(hp.n_rot, 2));
    const size_t qkv_elems = hp.traits.fused_qkv ? B * (Q + 2 * KV) : 0;
    const size_t H = static_cast<size_t>(hp.n_head);
    const size_t scores_elems = std::max(static_cast<size_t>(n_chunks_max) * attend_stride(),
                                         static_cast<size_t>(n_threads) * token_attention_stride());
    const size_t parts_elems = static_cast<size_t>(n_threads) * (Q + H), sums_elems = static_cast<size_t>(n_threads) * H;
    act_bytes_per_buf = B * n_max * sizeof(float);
    // The prompt GEMM's buffers are sized for the widest input row and every
    // packing kind (F32 is the largest).
    gemm_tile_stride = B > 1 ? (n_max * 4 * detail::kGemmRows + 63) / 64 * 64 : 0;
    const size_t panel_bytes = B > 1 ? (B + detail::kGemmCols - 1) / detail::kGemmCols * detail::kGemmCols * n_max * 4 : 0;
    const size_t tiles_bytes = static_cast<size_t>(n_chunks_max) * gemm_tile_stride;
    const uint64_t kv_total = cache_elems * kv_es * 2;
    const uint64_t scratch_total =
        sizeof(float) * (2 * B * E + 2 * B * Q + 2 * B * KV + 2 * B * F + out_elems + rope_elems + qkv_elems + scores_elems + parts_elems) +
        sizeof(double) * sums_elems +
        3 * act_bytes_per_buf + panel_bytes + tiles_bytes;
    if (params.max_memory_bytes > 0 && kv_total + scratch_total > params.max_memory_bytes)
        return error(StatusCode::out_of_memory,
                     "n_ctx %d needs %llu bytes (KV cache %llu + scratch %llu), over the memory limit of %zu bytes", n_ctx,
                     static_cast<unsigned long long>(kv_total + scratch_total), static_cast<unsigned long long>(kv_total),
                     static_cast<unsigned long long>(scratch_total), params.max_memory_bytes);

    if (params.parallel_for) {
        par.host = params.parallel_for;
        par.host_user = params.parallel_for_user;
    } else {
        Status st = pool.start(n_threads);
        if (!st.ok()) return st;
        par.pool = &pool;
    }
    par.n_threads = n_threads;
    spans = std::vector<Span>(static_cast<size_t>(n_threads));

    bool ok = kcache.allocate(cache_elems * kv_es, true) && vcache.allocate(cache_elems * kv_es, true);
    ok = ok && x.allocate(B * E) && xn.allocate(B * E) && q.allocate(B * Q) && k.allocate(B * KV) &&
         v.allocate(B * KV) && att.allocate(B * Q) && gate.allocate(B * F) && up.allocate(B * F) &&
         out.allocate(out_elems) && rope_cs.allocate(rope_elems) && qkv.allocate(qkv_elems) &&
         scores.allocate(scores_elems) && parts.allocate(parts_elems) && part_sums.allocate(sums_elems);
    for (auto& b : act_buf) ok = ok && b.allocate(act_bytes_per_buf);
    ok = ok && gemm_panel.allocate(panel_bytes) && gemm_tiles.allocate(tiles_bytes);
    if (!ok)
        return error(StatusCode::out_of_memory, "cannot allocate the KV cache (%llu bytes) and scratch (%llu bytes) for n_ctx %d",
                     static_cast<unsigned long long>(kv_total), static_cast<unsigned long long>(scratch_total), n_ctx);
    last_logits.assign(static_cast<size_t>(hp.n_vocab), 0.0f);
    if (hp.traits.ffn == FfnKind::gelu) gelu = gelu_table();
    return Status();
}

size_t Context::Impl::scratch_bytes() const {
    size_t s = x.bytes() + xn.bytes() + qkv.bytes() + q.bytes() + k.bytes() + v.bytes() + att.bytes() + gate.bytes() + up.bytes() +
               out.bytes() + rope_cs.bytes() + scores.bytes() + parts.bytes() + part_sums.bytes() + gemm_panel.bytes() + gemm_tiles.bytes();
    for (auto& b : act_buf) s += b.bytes();
    return s;
}

detail::Act Context::Impl::make_act(const float* src, int64_t rows, int64_t n, detail::Type vt, int slot) {
    const detail::Act a = act_layout(src, n, vt, slot);
    if (vt == detail::Type::F32) return a;
    par.for_range(rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, n)), [&](int64_t b, int64_t e, int) {
        for (int64_t r = b; r < e; ++r) convert_row(a, src, n, slot, r);
    });
    return a;
}

void Context::Impl::matmul(const detail::Weight& w, const detail::Act& a, int64_t rows_in, float* y) {
    const detail::Weight* ws[1] = {&w};
    const detail::Act* as[1] = {&a};
    float* ys[1] = {y};
    matmul_n(1, ws, as, rows_in, ys);
}

// Several products of the same activation rows (Q, K, V; gate, up), each
// activation already in its weight's format. With a batch, the weights that
// share packed activations (same rows, type and width) are one GEMM pass over
// all their tiles; for one token, one parallel pass runs over the rows of all
// of them. Either way the threads meet once instead of once per matrix.
void Context::Impl::matmul_n(int count, const detail::Weight* const* ws, const detail::Act* const* as, int64_t rows_in,
                             float* const* ys) {
    using namespace detail;
    MINIGPT_ASSERT(count >= 1 && count <= 3);
    bool all_gemm = true;
    for (int i = 0; i < count; ++i) all_gemm = all_gemm && gemm_takes(*ws[i], rows_in);
    if (all_gemm) {
        uint8_t* P = gemm_panel.data();
        for (int i = 0; i < count;) {
            const Weight* w0 = ws[i];
            const Act& a = *as[i];
            int j = i + 1;
            while (j < count && as[j]->data == a.data && ws[j]->type == w0->type && ws[j]->cols == w0->cols) ++j;
            // prepare() may have packed the first input already.
            if (!(i == 0 && a.packed && a.packed_type == w0->type && a.packed_cols == w0->cols)) {
                const int64_t panels = (rows_in + kGemmCols - 1) / kGemmCols;
                // (chunks small enough to be worth a thread: 64K values packed)
                par.for_range(panels, std::max<int64_t>(1, (int64_t(1) << 16) / (kGemmCols * w0->cols)),
                              [&](int64_t b, int64_t e, int) { gemm_pack_panels(w0->type, a.data, a.stride, w0->cols, rows_in, b, e, P); });
            }
            // The 8-row tiles of weights i..j-1, one after the other.
            int64_t first[4] = {0, 0, 0, 0};
            for (int k = i; k < j; ++k) first[k - i + 1] = first[k - i] + (ws[k]->rows + kGemmRows - 1) / kGemmRows;
            uint8_t* T = gemm_tiles.data();
            const size_t ts = gemm_tile_stride;
            // (256K products per chunk at least)
            const int64_t tile_grain = std::max<int64_t>(1, (int64_t(1) << 18) / (kGemmRows * w0->cols * rows_in));
            par.for_range(first[j - i], tile_grain, [&](int64_t b, int64_t e, int chunk) {
                each_part(first, j - i, b, e, [&](int k, int64_t lo, int64_t hi) {
                    const Weight* wp = ws[i + k];
                    gemm_rows(wp->type, wp->data, wp->row_stride, wp->cols, lo * kGemmRows, std::min(wp->rows, hi * kGemmRows), P,
                              rows_in, ys[i + k], wp->rows, T + static_cast<size_t>(chunk) * ts);
                });
            });
            i = j;
        }
        return;
    }
    // The rows of all weights one after the other, one chunk per thread.
    const RowSplit split = row_split(count, ws, rows_in);
    const int64_t* first = split.first;
    const int64_t total = first[count], grain = split.grain;
    const int n_chunks = split.n_chunks;
    // Rows [b, e); the read-ahead may run on to row `ahead` (within each part).
    auto do_rows = [&](int64_t b, int64_t e, int64_t ahead) {
        each_part(first, count, b, e, [&](int k, int64_t lo, int64_t hi) {
            const Weight* wp = ws[k];
            matmul_rows(wp->type, wp->data, wp->row_stride, wp->cols, lo, hi, as[k]->data, as[k]->stride, rows_in, ys[k],
                        wp->rows, std::min(ahead, first[k + 1]) - first[k]);
        });
    };
    if (n_chunks <= 1 || static_cast<size_t>(n_chunks) > spans.size()) {
        par.for_range(total, grain, [&](int64_t b, int64_t e, int) { do_rows(b, e, e); });
        return;
    }
    // On a shared machine one core often streams slower than the other, so the
    // chunks are not handed out whole: the rows of chunk c not yet taken are
    // [front, back) of spans[c] (offsets in the chunk, one 64-bit word). The
    // thread running task c takes its rows from the front, about 128 KiB at a
    // time; once its chunk is gone it takes rows from the back of the others',
    // about 32 KiB at a time, so both threads read forward and end together.
    // No piece is more than half of what is left of its chunk (nor less than
    // 4 rows): the last rows split between the threads. A piece from the
    // front lets the read-ahead run on into the rows after it, which are most
    // likely the thread's next piece. (smollm2-135m generation, 2 threads,
    // alternating with whole chunks in one process: Q8_0 1.01-1.15x in six
    // runs, F16 1.08x, Q4_0 and Q4_K 1.00-1.02x; llama-3.2-1b Q4_K 0.98x. The
    // read-ahead into the next piece then gave Q8_0 1.03-1.04x, the halving
    // 0.99-1.06x.)
    size_t row_bytes = 1;
    for (int i = 0; i < count; ++i) row_bytes = std::max(row_bytes, ws[i]->row_stride);
    const auto rows_per = [&](size_t bytes) { return std::max<int64_t>(4, static_cast<int64_t>(bytes / row_bytes) / 4 * 4); };
    for (int c = 0; c < n_chunks; ++c)
        spans[static_cast<size_t>(c)].v.store(static_cast<uint64_t>(std::min(total, (c + 1) * grain) - c * grain), std::memory_order_relaxed);
    struct Job {
        decltype(do_rows)* rows;
        Span* spans;
        int n;
        int64_t grain, own, steal;
    } job{&do_rows, spans.data(), n_chunks, grain, rows_per(size_t(128) << 10), rows_per(size_t(32) << 10)};
    par.run(n_chunks, [](void* arg, int c) {
        const Job& j = *static_cast<const Job*>(arg);
        // Up to n rows of chunk ch, from its front or its back; false when none is left.
        auto take = [&](int ch, bool front, int64_t n) {
            std::atomic<uint64_t>& v = j.spans[ch].v;
            uint64_t cur = v.load(std::memory_order_relaxed);
            for (;;) {
                const int64_t f = static_cast<int64_t>(cur >> 32), b = static_cast<int64_t>(cur & 0xFFFFFFFFu);
                if (f >= b) return false;
                const int64_t half = std::max<int64_t>(4, (b - f) / 2 / 4 * 4), k = std::min(n, half);
                const int64_t lo = front ? f : std::max(f, b - k), hi = front ? std::min(b, f + k) : b;
                const uint64_t left = front ? static_cast<uint64_t>(hi) << 32 | static_cast<uint64_t>(b)
                                            : static_cast<uint64_t>(f) << 32 | static_cast<uint64_t>(lo);
                if (v.compare_exchange_weak(cur, left, std::memory_order_relaxed)) {
                    (*j.rows)(ch * j.grain + lo, ch * j.grain + hi, ch * j.grain + (front ? b : hi));
                    return true;
                }
            }
        };
        while (take(c, true, j.own)) {}
        for (int d = 1; d < j.n; ++d)
            while (take((c + d) % j.n, false, j.steal)) {}
    }, &job);
}

Context::Impl::RowSplit Context::Impl::row_split(int count, const detail::Weight* const* ws, int64_t rows_in) const {
    RowSplit s;
    int64_t cols = 1;
    for (int i = 0; i < count; ++i) {
        s.first[i + 1] = s.first[i] + ws[i]->rows;
        cols = std::max(cols, ws[i]->cols);
    }
    const int64_t total = s.first[count];
    // Enough work per chunk that handing it to another thread pays, and one
    // equal chunk per thread: each thread reads one stretch of memory. (Four
    // chunks per thread, claimed as the threads come, were 15-20% slower for
    // smollm2-135m Q8_0 and llama-3.2-1b Q4_K generation, and chunks shrinking
    // from a quarter of the rows to a sixteenth 10-20%: every chunk restarts a
    // memory stream, and every claim moves a shared cache line between the
    // cores.)
    const int64_t min_rows = std::max<int64_t>(4, (int64_t(1) << 14) / (cols * rows_in));
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(std::max(1, n_threads), total / min_rows));
    s.grain = std::max<int64_t>(4, ((total + chunks - 1) / chunks + 3) / 4 * 4);
    s.n_chunks = static_cast<int>((total + s.grain - 1) / s.grain);
    return s;
}

// Between two one-token products the caller works alone (norms, attention's
// merge, activations) while the memory sits idle. So before each product,
// worker c is told where the next product's chunk c starts (the caller claims
// chunk 0 first, and the workers then take the others), and reads its first
// 64 KiB once the current job leaves it idle: its share of the next product
// starts in its cache. No weights (count 0): nothing to read. (Generation,
// 2 threads, against no reads, alternating 64-token runs in one process,
// medians of 21-41 rounds: smollm2-135m Q8_0 in 13 runs 0.97-1.07x, median
// 1.02x; Q4_0 1.02x and 1.03x, Q4_K 0.98x and 1.02x, F16 1.06x; llama-3.2-1b
// Q4_K 1.05x. Reading 32 or 128 KiB: 1.00x and 1.01x of 64.)
void Context::Impl::read_next(int count, const detail::Weight* const* ws) {
    using namespace detail;
    constexpr size_t kBytes = size_t(64) << 10;
    bool row_pass = count > 0;
    for (int i = 0; i < count; ++i) row_pass = row_pass && !gemm_takes(*ws[i], 1);
    const RowSplit split = row_pass ? row_split(count, ws, 1) : RowSplit();
    for (int c = 1; c < n_threads; ++c) {
        const int64_t r = static_cast<int64_t>(c) * split.grain;
        const void* p = nullptr;
        size_t n = 0;
        for (int k = 0; row_pass && c < split.n_chunks && k < count; ++k) {
            if (r >= split.first[k + 1]) continue;
            const Weight& w = *ws[k];
            const int64_t row = r - split.first[k];
            p = w.data + static_cast<size_t>(row) * w.row_stride;
            n = std::min(kBytes, static_cast<size_t>(w.rows - row) * w.row_stride);
            break;
        }
        par.set_idle_read(c, p, n);
    }
}

void Context::Impl::attention(int layer, int m, int n_past) {
    using namespace detail;
    const int H = hp.n_head, D = hp.head_dim, KV = hp.kv_dim(), Qd = hp.q_dim();
    const int group = hp.n_head / hp.n_head_kv;
    const float scale = 1.0f / std::sqrt(static_cast<float>(D));
    const uint8_t* K = kv_at(kcache, layer, 0);
    const uint8_t* V = kv_at(vcache, layer, 0);
    const size_t es = kv_es, row_bytes = static_cast<size_t>(KV) * es;
    // Small heads (a few floats) are done inline: a kernel call per key costs more than the key.
    const bool small = D < 32;
    const int block = attn_block;

    float* const s_base = scores.data();  // the tasks' scratch

    // The online softmax's step: a block of n raw scores s becomes the weights
    // e^(score * scale - mx) under the running maximum mx, added to the
    // running sum. What was summed under a smaller maximum (sum, and o: D
    // floats) is rescaled first, unless this is the first block.
    auto softmax_block = [&](float* s, int n, bool first, float* o, float& mx, double& sum) {
        const float bmax = scale_max_f32(n, scale, s);
        if (bmax > mx) {
            if (!first) {
                const float c = std::exp(mx - bmax);
                scale_f32(D, c, o);
                sum *= c;
            }
            mx = bmax;
        }
        sum += exp_sum_f32(n, mx, s);
    };
    // The raw scores of n keys (rows `stride` floats apart) for query qv into
    // out, four keys at a time; o += the n value rows weighted by w.
    auto key_scores = [&](const float* qv, const float* keys, size_t stride, int n, float* out) {
        int j = 0;
        if (!small)
            for (; j + 4 <= n; j += 4) dot4_keys_f32(qv, keys + static_cast<size_t>(j) * stride, stride, D, out + j);
        for (; j < n; ++j) {
            const float* kt = keys + static_cast<size_t>(j) * stride;
            float acc = 0;
            if (small) {
                for (int d = 0; d < D; ++d) acc += qv[d] * kt[d];
            } else {
                acc = dot_f32(qv, kt, D);
            }
            out[j] = acc;
        }
    };
    auto add_values = [&](const float* w, const float* values, size_t stride, int n, float* o) {
        if (!small) {
            weighted_rows_f32(n, w, values, stride, D, o);
            return;
        }
        for (int j = 0; j < n; ++j)
            for (int d = 0; d < D; ++d) o[d] += w[j] * values[static_cast<size_t>(j) * stride + d];
    };

    // One token: every head at once, over runs of the positions, one run per
    // thread when there are enough keys (the threads share the reads of the
    // cached keys and values, which a token's stream of weights has pushed out
    // of the caches). A position's keys, all KV heads, are one row of the
    // cache, as are its values: a run is read front to back, kTokenRows rows
    // at a time, the next rows requested, and each row serves every head. An
    // F16 cache is widened a few rows at a time. Each run leaves its output
    // per head, not yet divided by the sum, with its maxima and sums; they are
    // then merged per head. (smollm2-135m Q8_0, 2 threads, 32 tokens after
    // 2048, against a job per run and head (each reading strided slices of
    // the rows, an F16 cache widened key by key): 1.00x with an F32 cache,
    // 1.78x with F16.)
    if (m == 1) {
        const int keys = n_past + 1;
        const int runs = std::max(1, std::min(n_threads, keys / kMinKeysPerRun));
        const int per = (keys + runs - 1) / runs;
        float* const po = parts.data();                                // [runs][Qd]
        float* const pm = po + static_cast<size_t>(n_threads) * Qd;    // [runs][H] maxima
        double* const ps = part_sums.data();                           // [runs][H] sums
        const size_t stride = token_attention_stride();
        auto run = [&](int r, float* s) {
            const int t_begin = r * per, t_end = std::min(keys, (r + 1) * per);
            float* const o = po + static_cast<size_t>(r) * Qd;
            float* const mx = pm + static_cast<size_t>(r) * H;
            double* const sum = ps + static_cast<size_t>(r) * H;
            float* const wide = s + static_cast<size_t>(H) * block;
            // Cache rows [t, t + n) as floats, KV apart: in place for F32, widened for F16.
            auto rows_at = [&](const uint8_t* C, int t, int n) -> const float* {
                const uint8_t* p = C + static_cast<size_t>(t) * row_bytes;
                if (es == 4) return reinterpret_cast<const float*>(p);
                dequantize_row(Type::F16, p, wide, static_cast<int64_t>(n) * KV);
                return wide;
            };
            // Rows [a, b) of cache C requested (within the block ending at t1).
            auto request_rows = [&](const uint8_t* C, int a, int b, int t1) {
                b = std::min(b, t1);
                if (a < b) request_lines(C + static_cast<size_t>(a) * row_bytes, static_cast<size_t>(b - a) * row_bytes);
            };
            std::memset(o, 0, sizeof(float) * static_cast<size_t>(Qd));
            for (int h = 0; h < H; ++h) mx[h] = -std::numeric_limits<float>::infinity(), sum[h] = 0;
            for (int t0 = t_begin; t0 < t_end; t0 += block) {
                if (aborted()) return;
                const int t1 = std::min(t_end, t0 + block);
                request_rows(K, t0, t0 + kTokenRows, t1);
                for (int t = t0; t < t1; t += kTokenRows) {  // the block's scores, head h's at s + h * block
                    const int n = std::min(kTokenRows, t1 - t);
                    request_rows(K, t + kTokenRows, t + kTokenRows + n, t1);
                    const float* rows = rows_at(K, t, n);
                    for (int h = 0; h < H; ++h)
                        key_scores(q.data() + static_cast<size_t>(h) * D, rows + static_cast<size_t>(h / group) * D, KV, n,
                                   s + static_cast<size_t>(h) * block + (t - t0));
                }
                for (int h = 0; h < H; ++h)
                    softmax_block(s + static_cast<size_t>(h) * block, t1 - t0, t0 == t_begin, o + static_cast<size_t>(h) * D, mx[h], sum[h]);
                request_rows(V, t0, t0 + kTokenRows, t1);
                for (int t = t0; t < t1; t += kTokenRows) {  // the block's values
                    const int n = std::min(kTokenRows, t1 - t);
                    request_rows(V, t + kTokenRows, t + kTokenRows + n, t1);
                    const float* rows = rows_at(V, t, n);
                    for (int h = 0; h < H; ++h)
                        add_values(s + static_cast<size_t>(h) * block + (t - t0), rows + static_cast<size_t>(h / group) * D, KV, n,
                                   o + static_cast<size_t>(h) * D);
                }
            }
        };
        if (runs == 1) {
            run(0, s_base);
        } else {
            par.for_range(runs, 1, [&](int64_t b, int64_t e, int chunk) {
                for (int64_t r = b; r < e; ++r) run(static_cast<int>(r), s_base + static_cast<size_t>(chunk) * stride);
            });
        }
        if (abort_flag.load(std::memory_order_relaxed)) return;  // (some runs not done)
        for (int h = 0; h < H; ++h) {
            float mx = -std::numeric_limits<float>::infinity();
            for (int r = 0; r < runs; ++r) mx = std::max(mx, pm[static_cast<size_t>(r) * H + h]);
            float* o = att.data() + static_cast<size_t>(h) * D;
            std::memset(o, 0, sizeof(float) * D);
            double sum = 0;
            for (int r = 0; r < runs; ++r) {
                const size_t at = static_cast<size_t>(r) * H + static_cast<size_t>(h);
                const float c = std::exp(pm[at] - mx);
                sum += static_cast<double>(c) * ps[at];
                axpy_f32(D, c, po + static_cast<size_t>(r) * Qd + static_cast<size_t>(h) * D, o);
            }
            scale_f32(D, static_cast<float>(1.0 / sum), o);
        }
        return;
    }

    // Several tokens: one job per row and head. Keys [t_begin, t_end) of head
    // h for query qv, in blocks with a running maximum mx and sum (online
    // softmax): the scores of a whole context row are never stored. o gets
    // the values weighted by e^(score - mx), not yet divided by the sum. s
    // holds a block of scores, then (F16 cache) kWideRows widened rows (see
    // attend_stride).
    auto attend = [&](const float* qv, int h, int t_begin, int t_end, float* s, float* o, float& mx, double& sum) {
        const int kvh = h / group;
        const uint8_t* Kh = K + static_cast<size_t>(kvh) * D * es;
        const uint8_t* Vh = V + static_cast<size_t>(kvh) * D * es;
        // The head's rows [t, t + n) of the cache as floats, `stride` apart:
        // in place for F32, widened into the scratch for F16 (n <= kWideRows).
        auto head_rows = [&](const uint8_t* head, int t, int n, size_t& stride) -> const float* {
            if (es == 4) {
                stride = static_cast<size_t>(KV);
                return reinterpret_cast<const float*>(head + static_cast<size_t>(t) * row_bytes);
            }
            float* wide = s + block + 2 * D;
            for (int i = 0; i < n; ++i)
                dequantize_row(Type::F16, head + static_cast<size_t>(t + i) * row_bytes, wide + static_cast<size_t>(i) * D, D);
            stride = static_cast<size_t>(D);
            return wide;
        };
        const int piece = es == 4 ? block : kWideRows;  // rows per head_rows call
        std::memset(o, 0, sizeof(float) * D);
        mx = -std::numeric_limits<float>::infinity();
        sum = 0;
        for (int t0 = t_begin; t0 < t_end; t0 += block) {
            const int n = std::min(t_end, t0 + block) - t0;
            for (int j0 = 0; j0 < n; j0 += piece) {  // raw scores of the block's keys into s
                const int nj = std::min(piece, n - j0);
                size_t ks;
                const float* keys = head_rows(Kh, t0 + j0, nj, ks);
                key_scores(qv, keys, ks, nj, s + j0);
            }
            softmax_block(s, n, t0 == t_begin, o, mx, sum);
            for (int j0 = 0; j0 < n; j0 += piece) {  // the block's values
                const int nj = std::min(piece, n - j0);
                size_t vs;
                const float* values = head_rows(Vh, t0 + j0, nj, vs);
                add_values(s + j0, values, vs, nj, o);
            }
        }
    };
    // Enough work per chunk that handing it to another thread pays. Jobs run
    // from the last token back: the longest rows are claimed first, and the
    // short ones left at the end even out the threads' finishing times.
    const size_t s_stride = attend_stride();
    const int64_t jobs = static_cast<int64_t>(m) * H;
    const int64_t job_cost = static_cast<int64_t>(n_past + m) * D * 2;
    const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, job_cost));
    par.for_range(jobs, grain, [&](int64_t b, int64_t e, int chunk) {
        float* s = s_base + static_cast<size_t>(chunk) * s_stride;
        for (int64_t job = jobs - 1 - b; job > jobs - 1 - e; --job) {
            if ((job & 15) == 0 && aborted()) return;
            const int i = static_cast<int>(job / H), h = static_cast<int>(job % H);
            const size_t at = static_cast<size_t>(i) * Qd + static_cast<size_t>(h) * D;
            float* o = att.data() + at;
            float mx;
            double sum;
            attend(q.data() + at, h, 0, n_past + i + 1, s, o, mx, sum);
            scale_f32(D, static_cast<float>(1.0 / sum), o);
        }
    });
}

// Evaluates m tokens at positions n_past... Writes the logits of every row
// (all_rows) or of the last row only to logits_out.
Status Context::Impl::forward(const int32_t* toks, int n_tok, float* logits_out, bool all_rows) {
    const int m = n_tok;
    using namespace detail;
    const int n_past = static_cast<int>(tokens.size());
    const int E = hp.n_embd, Qd = hp.q_dim(), KVd = hp.kv_dim(), F = hp.n_ff;
    const Model::Impl& M = *this->m;

    const ArchTraits& arch = hp.traits;
    auto norm = [&](const float* src, const Weight& w, const Weight& b, float* dst) {
        const float* wp = reinterpret_cast<const float*>(w.data);
        if (arch.norm == NormKind::rms) rms_norm(src, wp, dst, E, hp.norm_eps);
        else layer_norm(src, wp, b ? reinterpret_cast<const float*>(b.data) : nullptr, dst, E, hp.norm_eps);
    };

    // Token embeddings (exact dequantization of the rows), plus learned
    // positions, and the RoPE angles of each row's position.
    const float* freq_factors = M.rope_freqs ? reinterpret_cast<const float*>(M.rope_freqs.data) : nullptr;
    each_row(m, 4 * E, [&](int64_t i) {
        const Weight& te = M.token_embd;
        float* xi = x.data() + static_cast<size_t>(i) * E;
        dequantize_row(te.type, te.data + static_cast<size_t>(toks[i]) * te.row_stride, xi, E);
        if (arch.pos_embd) {
            const Weight& pe = M.pos_embd;
            float* tmp = out.data() + static_cast<size_t>(i) * E;
            dequantize_row(pe.type, pe.data + static_cast<size_t>(n_past + i) * pe.row_stride, tmp, E);
            for (int j = 0; j < E; ++j) xi[j] += tmp[j];
        }
        if (hp.n_rot > 0)
            rope_angles(n_past + static_cast<int>(i), hp.n_rot, hp.rope_base, hp.rope_freq_scale, freq_factors,
                        rope_cs.data() + static_cast<size_t>(i) * hp.n_rot);
    });

    // Each pass over the rows between two products does all the per-row work
    // there is at that point. A product's output that adds to the residual
    // stream (attention output, FFN down) waits in `out` until the next pass
    // that reads x: residual_bias is then non-null (pointing at the product's
    // bias, which may be empty).
    const Weight* residual_bias = nullptr;
    auto add_residual = [&](int64_t i) {
        if (!residual_bias) return;
        float* xi = x.data() + static_cast<size_t>(i) * E;
        const float* oi = out.data() + static_cast<size_t>(i) * E;
        const float* b = *residual_bias ? reinterpret_cast<const float*>(residual_bias->data) : nullptr;
        for (int j = 0; j < E; ++j) xi[j] += b ? oi[j] + b[j] : oi[j];
    };
    auto add_row_bias = [](float* y, const Weight& b, int64_t n) {
        if (!b) return;
        const float* bb = reinterpret_cast<const float*>(b.data);
        for (int64_t j = 0; j < n; ++j) y[j] += bb[j];
    };

    // The norm weights and biases that the work between two products reads
    // lie in the memory-mapped file, cold by the time they are used again:
    // a whole token's weights went through the caches since. Each is requested
    // when the product before its use starts, so that its misses overlap the
    // product instead of the time between products, when the threads wait on
    // one another. With one token, so are the cache slots it writes K and V to.
    // (smollm2-135m Q8_0 generation: the FFN norm took 1.4 us per layer, then
    // 0.5.)
    auto request = [](std::initializer_list<const Weight*> ws) {
        for (const Weight* w : ws)
            if (*w) request_lines(w->data, static_cast<size_t>(std::max<int64_t>(1, w->rows)) * w->row_stride);
    };
    request({&M.layers[0].attn_norm, &M.layers[0].attn_norm_b});

    // With one token, each product names the one after it (read_next).
    auto next = [&](std::initializer_list<const Weight*> ws) {
        if (m == 1) read_next(static_cast<int>(ws.size()), ws.begin());
    };
    auto next_qkv = [&](int layer) {
        const LayerWeights& N = M.layers[static_cast<size_t>(layer)];
        if (arch.fused_qkv) next({&N.wqkv});
        else next({&N.wq, &N.wk, &N.wv});
    };
    if (m != 1) read_next(0, nullptr);

    for (int l = 0; l < hp.n_layer; ++l) {
        if (aborted()) return error(StatusCode::aborted, "aborted by the abort callback");
        const LayerWeights& L = M.layers[static_cast<size_t>(l)];

        // Residual, attention norm, Q/K/V input (converted once per format).
        const Weight& w_in = arch.fused_qkv ? L.wqkv : L.wq;
        Act aq = prepare(xn.data(), m, E, w_in, 0, 6 * E, [&](int64_t i) {
            add_residual(i);
            norm(x.data() + static_cast<size_t>(i) * E, L.attn_norm, L.attn_norm_b, xn.data() + static_cast<size_t>(i) * E);
        });
        residual_bias = nullptr;
        request({&L.bq, &L.bk, &L.bv, &L.bqkv, &L.q_norm, &L.k_norm});
        if (m == 1) {
            request_lines(kv_at(kcache, l, n_past), static_cast<size_t>(KVd) * kv_es, true);
            request_lines(kv_at(vcache, l, n_past), static_cast<size_t>(KVd) * kv_es, true);
        }
        next({&L.wo});
        if (arch.fused_qkv) {
            matmul(L.wqkv, aq, m, qkv.data());
        } else {
            const Type tq = aq.type, tk = vec_dot_type(L.wk.type), tv = vec_dot_type(L.wv.type);
            Act ak = tk == tq ? aq : make_act(xn.data(), m, E, tk, 1);
            Act av = tv == tq ? aq : tv == tk ? ak : make_act(xn.data(), m, E, tv, 2);
            const Weight* ws[3] = {&L.wq, &L.wk, &L.wv};
            const Act* as[3] = {&aq, &ak, &av};
            float* ys[3] = {q.data(), k.data(), v.data()};
            matmul_n(3, ws, as, m, ys);
        }
        // Per token: biases, Q/K norms, RoPE, then K and V appended to the cache.
        const float* qn = arch.qk_norm ? reinterpret_cast<const float*>(L.q_norm.data) : nullptr;
        const float* kn = arch.qk_norm ? reinterpret_cast<const float*>(L.k_norm.data) : nullptr;
        each_row(m, 4 * (Qd + 2 * KVd), [&](int64_t i) {
            float* qi = q.data() + static_cast<size_t>(i) * Qd;
            float* ki = k.data() + static_cast<size_t>(i) * KVd;
            float* vi = v.data() + static_cast<size_t>(i) * KVd;
            if (arch.fused_qkv) {
                float* row = qkv.data() + static_cast<size_t>(i) * (Qd + 2 * KVd);
                add_row_bias(row, L.bqkv, Qd + 2 * KVd);
                std::memcpy(qi, row, sizeof(float) * Qd);
                std::memcpy(ki, row + Qd, sizeof(float) * KVd);
                std::memcpy(vi, row + Qd + KVd, sizeof(float) * KVd);
            } else {
                add_row_bias(qi, L.bq, Qd);
                add_row_bias(ki, L.bk, KVd);
                add_row_bias(vi, L.bv, KVd);
            }
            const int D = hp.head_dim;
            if (arch.qk_norm) {  // each head on its own
                auto norm_heads = [&](float* v, int heads, const float* w) {
                    for (int h = 0; h < heads; ++h) rms_norm(v + static_cast<size_t>(h) * D, w, v + static_cast<size_t>(h) * D, D, hp.norm_eps);
                };
                norm_heads(qi, hp.n_head, qn);
                norm_heads(ki, hp.n_head_kv, kn);
            }
            if (arch.rope != RopeKind::none) {
                const float* cs = rope_cs.data() + static_cast<size_t>(i) * hp.n_rot;
                rope_apply(qi, hp.n_head, D, hp.n_rot, cs, arch.rope);
                rope_apply(ki, hp.n_head_kv, D, hp.n_rot, cs, arch.rope);
            }
            const int pos = n_past + static_cast<int>(i);
            kv_put(kv_at(kcache, l, pos), ki, KVd);
            kv_put(kv_at(vcache, l, pos), vi, KVd);
        });

        attention(l, m, n_past);
        if (aborted()) return error(StatusCode::aborted, "aborted by the abort callback");

        Act ao = prepare(att.data(), m, Qd, L.wo, 0, 2 * Qd, [](int64_t) {});
        request({&L.bo, &L.ffn_norm, &L.ffn_norm_b});
        if (arch.ffn == FfnKind::swiglu) next({&L.w_gate, &L.w_up});
        else next({&L.w_up});
        matmul(L.wo, ao, m, out.data());
        residual_bias = &L.bo;

        // Feed-forward: down(silu(gate(x)) * up(x)), or down(gelu(up(x) + b) + b),
        // its input made with the attention's residual and the FFN norm.
        const bool swiglu = arch.ffn == FfnKind::swiglu;
        Act ag = prepare(xn.data(), m, E, swiglu ? L.w_gate : L.w_up, 0, 6 * E, [&](int64_t i) {
            add_residual(i);
            norm(x.data() + static_cast<size_t>(i) * E, L.ffn_norm, L.ffn_norm_b, xn.data() + static_cast<size_t>(i) * E);
        });
        residual_bias = nullptr;
        Act ad;
        if (swiglu) {
            const Type tu = vec_dot_type(L.w_up.type);
            Act au = tu == ag.type ? ag : make_act(xn.data(), m, E, tu, 1);
            const Weight* ws[2] = {&L.w_gate, &L.w_up};
            const Act* as[2] = {&ag, &au};
            float* ys[2] = {gate.data(), up.data()};
            next({&L.w_down});
            matmul_n(2, ws, as, m, ys);
            ad = prepare(gate.data(), m, F, L.w_down, 0, 10 * F, [&](int64_t i) {
                silu_mul_f32(F, gate.data() + static_cast<size_t>(i) * F, up.data() + static_cast<size_t>(i) * F);
            });
        } else {
            request({&L.b_up});
            next({&L.w_down});
            matmul(L.w_up, ag, m, gate.data());
            ad = prepare(gate.data(), m, F, L.w_down, 0, 10 * F, [&](int64_t i) {
                float* gi = gate.data() + static_cast<size_t>(i) * F;
                add_row_bias(gi, L.b_up, F);
                for (int j = 0; j < F; ++j) gi[j] = detail::gelu(gi[j], gelu);
            });
        }
        if (aborted()) return error(StatusCode::aborted, "aborted by the abort callback");
        if (l + 1 < hp.n_layer) request({&L.b_down, &M.layers[static_cast<size_t>(l) + 1].attn_norm, &M.layers[static_cast<size_t>(l) + 1].attn_norm_b});
        else request({&L.b_down, &M.output_norm, &M.output_norm_b});
        if (l + 1 < hp.n_layer) next_qkv(l + 1);
        else next({&M.output});
        matmul(L.w_down, ad, m, out.data());
        residual_bias = &L.b_down;
    }
    if (aborted()) return error(StatusCode::aborted, "aborted by the abort callback");

    // Last residual, output norm and logits for the rows asked for.
    const int first = all_rows ? 0 : m - 1;
    const int rows = m - first;
    Act ao = prepare(xn.data(), rows, E, M.output, 0, 6 * E, [&](int64_t i) {
        add_residual(first + i);
        norm(x.data() + static_cast<size_t>(first + i) * E, M.output_norm, M.output_norm_b, xn.data() + static_cast<size_t>(i) * E);
    });
    next_qkv(0);  // (the next token's)
    matmul(M.output, ao, rows, logits_out);
    tokens.insert(tokens.end(), toks, toks + m);
    return Status();
}

namespace detail {
inline int n_past_of(const Context::Impl& c) { return static_cast<int>(c.tokens.size()); }
}  // namespace detail

Context::Context() : impl_(new Impl) {}
Context::~Context() = default;

Status Context::create(std::shared_ptr<const Model> model, const ContextParams& params, std::unique_ptr<Context>& out) {
    out.reset();
    return detail::guard("Context::create", [&]() -> Status {
        if (!model) return detail::error(StatusCode::invalid_argument, "Context::create: no model");
        if (model->impl().vocab_only)
            return detail::error(StatusCode::invalid_argument, "Context::create: the model was loaded with vocab_only");
        std::unique_ptr<Context> c(new Context());
        c->impl_->model_ref = model;
        c->impl_->m = &model->impl();
        c->impl_->params = params;
        Status st = c->impl_->init();
        if (!st.ok()) return st;
        detail::log_msg(LogLevel::info, "context: %d tokens, KV cache %.2f MB, scratch %.2f MB, %d threads", c->impl_->n_ctx,
                        static_cast<double>(c->kv_cache_bytes()) / 1e6, static_cast<double>(c->scratch_bytes()) / 1e6,
                        c->impl_->n_threads);
        out = std::move(c);
        return Status();
    });
}

Status Context::eval(const int32_t* toks, size_t n, std::vector<float>* all_logits) {
    return detail::guard("Context::eval", [&]() -> Status {
        Impl& c = *impl_;
        if (n == 0) return detail::error(StatusCode::invalid_argument, "eval: no tokens");
        if (!toks) return detail::error(StatusCode::invalid_argument, "eval: null token array");
        const int V = c.hp.n_vocab;
        for (size_t i = 0; i < n; ++i)
            if (toks[i] < 0 || toks[i] >= V)
                return detail::error(StatusCode::invalid_argument, "eval: token id %d at index %zu is outside [0, %d)", toks[i], i, V);
        if (!c.params.context_shift && n > static_cast<size_t>(c.n_ctx) - c.tokens.size())
            return detail::error(StatusCode::context_full, "eval: %zu tokens do not fit: %zu of %d context positions are used",
                                 n, c.tokens.size(), c.n_ctx);
        if (all_logits) all_logits->assign(n * static_cast<size_t>(V), 0.0f);
        size_t done = 0;
        while (done < n) {
            int m = static_cast<int>(std::min(n - done, static_cast<size_t>(c.n_batch)));
            if (c.params.context_shift) {
                // A batch must fit beside the kept prefix once the window has shifted.
                const int room = c.n_ctx - std::max(0, std::min(c.params.n_keep, detail::n_past_of(c)));
                if (room > 0) m = std::min(m, room);
            }
            const bool last = done + static_cast<size_t>(m) == n;
            if (c.tokens.size() + static_cast<size_t>(m) > static_cast<size_t>(c.n_ctx)) {
                // Context shift: drop the older half of what follows the kept prefix.
                const int n_past = detail::n_past_of(c), keep = std::max(0, std::min(c.params.n_keep, n_past));
                const int discard = std::max((n_past - keep) / 2, n_past + m - c.n_ctx);
                if (keep + discard > n_past)
                    return detail::error(StatusCode::context_full,
                                         "eval: no room for %d tokens: %d context positions, %d kept", m, c.n_ctx, keep);
                Status st = shift(keep, discard);
                if (!st.ok()) return st;
            }
            float* dst = all_logits ? all_logits->data() + done * V : c.out.data();
            c.abort_flag.store(false);
            Status st = c.forward(toks + done, m, dst, all_logits != nullptr);
            if (!st.ok()) return st;
            if (last) {
                const float* row = all_logits ? dst + static_cast<size_t>(m - 1) * V : dst;
                std::memcpy(c.last_logits.data(), row, sizeof(float) * V);
            }
            done += static_cast<size_t>(m);
        }
        return Status();
    });
}

Status Context::shift(int n_keep, int n_discard) {
    using namespace detail;
    Impl& c = *impl_;
    const int n_past = detail::n_past_of(c);
    if (n_keep < 0 || n_discard <= 0 || n_keep > n_past || n_discard > n_past - n_keep)
        return error(StatusCode::invalid_argument, "shift: keep %d and discard %d do not fit %d tokens", n_keep, n_discard,
                     n_past);
    const Hparams& hp = c.hp;
    if (hp.traits.pos_embd)
        return error(StatusCode::unsupported, "shift: %s models have absolute position embeddings", hp.traits.name);
    const int KV = hp.kv_dim();
    std::vector<float> cs(static_cast<size_t>(std::max(hp.n_rot, 2)));
    const float* ff = c.m->rope_freqs ? reinterpret_cast<const float*>(c.m->rope_freqs.data) : nullptr;
    if (hp.n_rot > 0) rope_angles(-n_discard, hp.n_rot, hp.rope_base, hp.rope_freq_scale, ff, cs.data());
    std::vector<float> row(static_cast<size_t>(KV));
    const size_t rb = static_cast<size_t>(KV) * c.kv_es;
    for (int l = 0; l < hp.n_layer; ++l) {
        for (int t = n_keep + n_discard; t < n_past; ++t) {
            std::memmove(c.kv_at(c.vcache, l, t - n_discard), c.kv_at(c.vcache, l, t), rb);
            c.kv_get(c.kv_at(c.kcache, l, t), row.data(), KV);
            if (hp.traits.rope != RopeKind::none) rope_apply(row.data(), hp.n_head_kv, hp.head_dim, hp.n_rot, cs.data(), hp.traits.rope);
            c.kv_put(c.kv_at(c.kcache, l, t - n_discard), row.data(), KV);
        }
    }
    c.tokens.erase(c.tokens.begin() + n_keep, c.tokens.begin() + n_keep + n_discard);
    return Status();
}

namespace detail {
constexpr uint32_t kStateMagic = 0x5453474Du;  // "MGST"
constexpr uint32_t kStateVersion = 2;
}  // namespace detail

Status Context::state_save(std::vector<uint8_t>& out) const {
    return detail::guard("Context::state_save", [&]() -> Status {
        const Impl& c = *impl_;
        const detail::Hparams& hp = c.hp;
        const uint32_t head[7] = {detail::kStateMagic, detail::kStateVersion, static_cast<uint32_t>(hp.n_layer),
                                  static_cast<uint32_t>(hp.kv_dim()), static_cast<uint32_t>(hp.n_vocab),
                                  static_cast<uint32_t>(c.tokens.size()), static_cast<uint32_t>(c.kv_es)};
        const size_t n = c.tokens.size(), KV = static_cast<size_t>(hp.kv_dim()) * c.kv_es;  // bytes per cached row
        out.clear();
        out.reserve(sizeof head + n * 4 + c.last_logits.size() * 4 + 2 * hp.n_layer * n * KV);
        auto put = [&](const void* p, size_t bytes) {
            const uint8_t* b = static_cast<const uint8_t*>(p);
            out.insert(out.end(), b, b + bytes);
        };
        put(head, sizeof head);
        put(c.tokens.data(), n * sizeof(int32_t));
        put(c.last_logits.data(), c.last_logits.size() * sizeof(float));
        for (int l = 0; l < hp.n_layer; ++l) {
            const size_t off = static_cast<size_t>(l) * c.n_ctx * KV;
            put(c.kcache.data() + off, n * KV);
            put(c.vcache.data() + off, n * KV);
        }
        return Status();
    });
}

Status Context::state_load(const uint8_t* data, size_t size) {
    return detail::guard("Context::state_load", [&]() -> Status {
        using namespace detail;
        Impl& c = *impl_;
        const Hparams& hp = c.hp;
        uint32_t head[7];
        if (!data || size < sizeof head) return error(StatusCode::bad_format, "state_load: the state is truncated");
        std::memcpy(head, data, sizeof head);
        if (head[0] != kStateMagic || head[1] != kStateVersion)
            return error(StatusCode::bad_format, "state_load: not a minigpt state (or another version)");
        if (head[2] != static_cast<uint32_t>(hp.n_layer) || head[3] != static_cast<uint32_t>(hp.kv_dim()) ||
            head[4] != static_cast<uint32_t>(hp.n_vocab))
            return error(StatusCode::invalid_argument, "state_load: the state belongs to a different model");
        if (head[6] != c.kv_es)
            return error(StatusCode::invalid_argument, "state_load: the state's KV cache is %s, this context's is %s",
                         head[6] == 2 ? "F16" : "F32", c.kv_es == 2 ? "F16" : "F32");
        const size_t n = head[5], KV = static_cast<size_t>(hp.kv_dim()) * c.kv_es;  // bytes per cached row
        if (n > static_cast<size_t>(c.n_ctx))
            return error(StatusCode::context_full, "state_load: %zu tokens do not fit a context of %d", n, c.n_ctx);
        const size_t need = sizeof head + n * 4 + static_cast<size_t>(hp.n_vocab) * 4 + 2 * static_cast<size_t>(hp.n_layer) * n * KV;
        if (size != need) return error(StatusCode::bad_format, "state_load: %zu bytes, expected %zu", size, need);
        const uint8_t* p = data + sizeof head;
        std::vector<int32_t> toks(n);
        std::memcpy(toks.data(), p, n * 4);
        p += n * 4;
        for (int32_t t : toks)
            if (t < 0 || t >= hp.n_vocab) return error(StatusCode::bad_format, "state_load: token id %d out of range", t);
        std::memcpy(c.last_logits.data(), p, static_cast<size_t>(hp.n_vocab) * 4);
        p += static_cast<size_t>(hp.n_vocab) * 4;
        for (int l = 0; l < hp.n_layer; ++l) {
            const size_t off = static_cast<size_t>(l) * c.n_ctx * KV;
            std::memcpy(c.kcache.data() + off, p, n * KV);
            p += n * KV;
            std::memcpy(c.vcache.data() + off, p, n * KV);
            p += n * KV;
        }
        c.tokens = std::move(toks);
        return Status();
    });
}

const float* Context::logits() const { return impl_->last_logits.data(); }
int Context::n_past() const { return static_cast<int>(impl_->tokens.size()); }
int Context::n_ctx() const { return impl_->n_ctx; }
int Context::n_threads() const { return impl_->n_threads; }
void Context::reset() { impl_->tokens.clear(); }
Status Context::truncate(int n) {
    if (n < 0 || n > n_past())
        return detail::error(StatusCode::invalid_argument, "truncate: %d is outside [0, %d]", n, n_past());
    impl_->tokens.resize(static_cast<size_t>(n));
    return Status();
}
const Model& Context::model() const { return *impl_->model_ref; }
const std::vector<int32_t>& Context::tokens() const { return impl_->tokens; }
size_t Context::kv_cache_bytes() const { return impl_->kcache.bytes() + impl_->vcache.bytes(); }
size_t Context::scratch_bytes() const { return impl_->scratch_bytes(); }

MINIGPT_NS_END

// ---- grammar.hpp ----
// grammar: a parser for a subset of GBNF (the grammar notation of llama.cpp)
// and a matcher that follows the text produced so far through the grammar.
//
// A grammar is a list of rules; each rule is a list of alternatives separated
// by `alt` and closed by `end`; an alternative is a sequence of elements that
// are either a reference to a rule or a character class (a literal "abc" is
// three one-character classes). Repetitions and parenthesised groups become
// generated rules. The matcher keeps a set of stacks of element positions:
// the top of each stack is the character class that may come next, the
// positions below it are where to go on when the referenced rules end. An
// empty stack means the text so far is a whole sentence.

#include <algorithm>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

MINIGPT_NS_BEGIN
namespace detail {

enum class GrammarOp : uint8_t { end, alt, ref, cls };

struct GrammarElem {
    GrammarOp op;
    uint32_t value;  // rule index for ref, class index for cls
};

// A set of code points: sorted, disjoint, non-adjacent closed ranges, or the
// complement of such a set.
struct GrammarClass {
    bool negated = false;
    std::vector<std::pair<uint32_t, uint32_t>> ranges;
};

// Limits that keep hostile grammar text from using unbounded time or memory.
constexpr uint32_t kGrammarMaxRepeat = 1000;          // m and n of {m,n}
constexpr size_t kGrammarMaxElems = size_t(1) << 20;  // elements after expansion
constexpr int kGrammarMaxNesting = 200;               // depth of ( ... )
constexpr size_t kGrammarMaxStacks = 4096;            // stacks a state may hold
constexpr size_t kGrammarMaxExpand = 100000;          // expansion steps per character

struct GrammarData {
    std::vector<GrammarElem> elems;               // every rule, one after another
    std::vector<std::vector<uint32_t>> alt_starts;  // per rule: first element of each alternative
    std::vector<std::string> rule_names;
    std::vector<GrammarClass> classes;
    uint32_t root = 0;
};

inline bool grammar_class_has(const GrammarClass& c, uint32_t cp) {
    bool in = false;
    for (const auto& r : c.ranges) {
        if (cp < r.first) break;
        if (cp <= r.second) {
            in = true;
            break;
        }
    }
    return in != c.negated;
}

// Whether some code point in [lo, hi] belongs to the class.
inline bool grammar_class_meets(const GrammarClass& c, uint32_t lo, uint32_t hi) {
    if (!c.negated) {
        for (const auto& r : c.ranges) {
            if (r.first <= hi && lo <= r.second) return true;
        }
        return false;
    }
    // Ranges are merged, so [lo, hi] is excluded only when one range covers it.
    for (const auto& r : c.ranges) {
        if (r.first <= lo && hi <= r.second) return false;
    }
    return true;
}

inline void grammar_class_normalize(GrammarClass& c) {
    auto& v = c.ranges;
    std::sort(v.begin(), v.end());
    size_t w = 0;
    for (size_t r = 0; r < v.size(); ++r) {
        if (w > 0 && v[r].first <= v[w - 1].second + 1) {
            v[w - 1].second = std::max(v[w - 1].second, v[r].second);
        } else {
            v[w++] = v[r];
        }
    }
    v.resize(w);
}

class GbnfParser {
public:
    explicit GbnfParser(std::string_view src) : s_(src) {}

    Status run(std::string_view root_name, GrammarData& out) {
        skip_space();
        if (p_ >= s_.size()) return fail(p_, "the grammar has no rules");
        while (p_ < s_.size()) {
            const size_t name_at = p_;
            std::string name;
            if (!parse_name(name)) return fail(p_, "expected a rule name, found %s", what_is_here().c_str());
            skip_space();
            if (s_.compare(p_, 3, "::=") != 0)
                return fail(p_, "expected '::=' after rule name '%s'", name.c_str());
            p_ += 3;
            const uint32_t id = rule_id(name, name_at);
            if (defined_[id]) return fail(name_at, "rule '%s' is defined twice", name.c_str());
            defined_[id] = true;
            Status st = parse_alternates(id, 0);
            if (!st.ok()) return st;
            skip_space();
            if (p_ < s_.size() && !is_name_char(s_[p_]))
                return fail(p_, "unexpected %s", what_is_here().c_str());
        }
        for (size_t i = 0; i < rules_.size(); ++i) {
            if (!defined_[i])
                return fail(first_use_[i], "undefined rule '%s'", names_[i].c_str());
        }
        auto it = ids_.find(std::string(root_name));
        if (it == ids_.end())
            return error(StatusCode::bad_format, "grammar: no rule named '%.*s' (the start rule)",
                         static_cast<int>(std::min<size_t>(root_name.size(), 100)), root_name.data());
        Status st = check_left_recursion();
        if (!st.ok()) return st;

        out = GrammarData();
        out.root = it->second;
        out.rule_names = names_;
        out.classes = std::move(classes_);
        out.alt_starts.resize(rules_.size());
        size_t total = 0;
        for (const auto& r : rules_) total += r.size();
        out.elems.reserve(total);
        for (size_t i = 0; i < rules_.size(); ++i) {
            const uint32_t base = static_cast<uint32_t>(out.elems.size());
            out.alt_starts[i].push_back(base);
            for (size_t k = 0; k < rules_[i].size(); ++k) {
                if (rules_[i][k].op == GrammarOp::alt) out.alt_starts[i].push_back(base + static_cast<uint32_t>(k) + 1);
                out.elems.push_back(rules_[i][k]);
            }
        }
        return Status();
    }

private:
    std::string_view s_;
    size_t p_ = 0;
    std::vector<std::vector<GrammarElem>> rules_;
    std::vector<std::string> names_;
    std::vector<bool> defined_;
    std::vector<size_t> first_use_;
    std::unordered_map<std::string, uint32_t> ids_;
    std::vector<GrammarClass> classes_;
    std::unordered_map<uint32_t, uint32_t> char_classes_;  // one-character classes, shared
    size_t n_elems_ = 0;

    static bool is_name_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    }

    // "line L, column C" of a byte offset; columns count characters.
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    Status fail(size_t at, const char* fmt, ...) const {
        int line = 1, col = 1;
        for (size_t i = 0; i < at && i < s_.size(); ++i) {
            const unsigned char c = static_cast<unsigned char>(s_[i]);
            if (c == '\n') {
                ++line;
                col = 1;
            } else if ((c & 0xC0) != 0x80) {
                ++col;
            }
        }
        char buf[400];
        va_list ap;
        va_start(ap, fmt);
        std::vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        return error(StatusCode::bad_format, "grammar: line %d, column %d: %s", line, col, buf);
    }

    std::string what_is_here() const {
        if (p_ >= s_.size()) return "the end of the text";
        const unsigned char c = static_cast<unsigned char>(s_[p_]);
        char buf[32];
        if (c >= 0x20 && c < 0x7F) std::snprintf(buf, sizeof buf, "'%c'", c);
        else std::snprintf(buf, sizeof buf, "byte 0x%02X", c);
        return buf;
    }

    void skip_space() {
        while (p_ < s_.size()) {
            const char c = s_[p_];
            if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
                ++p_;
            } else if (c == '#') {
                while (p_ < s_.size() && s_[p_] != '\n') ++p_;
            } else {
                break;
            }
        }
    }

    bool parse_name(std::string& name) {
        const size_t b = p_;
        while (p_ < s_.size() && is_name_char(s_[p_])) ++p_;
        name.assign(s_.data() + b, p_ - b);
        return p_ > b;
    }

    uint32_t rule_id(const std::string& name, size_t used_at) {
        auto it = ids_.find(name);
        if (it != ids_.end()) return it->second;
        const uint32_t id = static_cast<uint32_t>(rules_.size());
        ids_.emplace(name, id);
        names_.push_back(name);
        rules_.emplace_back();
        defined_.push_back(false);
        first_use_.push_back(used_at);
        return id;
    }

    uint32_t new_rule(const std::string& base) {
        std::string name;
        for (int k = static_cast<int>(rules_.size());; ++k) {
            name = base + "_" + std::to_string(k);
            if (ids_.find(name) == ids_.end()) break;
        }
        const uint32_t id = rule_id(name, p_);
        defined_[id] = true;
        return id;
    }

    uint32_t add_class(GrammarClass c) {
        grammar_class_normalize(c);
        classes_.push_back(std::move(c));
        return static_cast<uint32_t>(classes_.size() - 1);
    }

    uint32_t char_class(uint32_t cp) {
        auto it = char_classes_.find(cp);
        if (it != char_classes_.end()) return it->second;
        GrammarClass c;
        c.ranges.emplace_back(cp, cp);
        const uint32_t id = add_class(std::move(c));
        char_classes_.emplace(cp, id);
        return id;
    }

    static int hex_value(char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }

    // One character of a literal or class at p_: an escape or a UTF-8 sequence.
    Status parse_char(uint32_t& cp) {
        const size_t at = p_;
        const unsigned char c = static_cast<unsigned char>(s_[p_]);
        if (c == '\\') {
            if (p_ + 1 >= s_.size()) return fail(at, "unfinished escape at the end of the text");
            const char e = s_[p_ + 1];
            p_ += 2;
            int digits = 0;
            switch (e) {
                case 'n': cp = '\n'; return Status();
                case 't': cp = '\t'; return Status();
                case 'r': cp = '\r'; return Status();
                case '\\': case '"': case '[': case ']': case '-': case '/': case '\'': case '^':
                    cp = static_cast<unsigned char>(e);
                    return Status();
                case 'x': digits = 2; break;
                case 'u': digits = 4; break;
                case 'U': digits = 8; break;
                default:
                    return fail(at, "unknown escape '\\%c'", (e >= 0x20 && e < 0x7F) ? e : '?');
            }
            uint64_t v = 0;
            for (int i = 0; i < digits; ++i) {
                const int h = p_ < s_.size() ? hex_value(s_[p_]) : -1;
                if (h < 0) return fail(at, "escape '\\%c' needs %d hex digits", e, digits);
                v = v * 16 + static_cast<uint64_t>(h);
                ++p_;
            }
            if (v > 0x10FFFF) return fail(at, "escape names code point 0x%llX, past U+10FFFF",
                                          static_cast<unsigned long long>(v));
            cp = static_cast<uint32_t>(v);
            return Status();
        }
        if (c < 0x80) {
            cp = c;
            ++p_;
            return Status();
        }
        int len = 0;
        uint32_t v = 0;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1Fu; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; v = c & 0x0Fu; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; v = c & 0x07u; }
        else return fail(at, "invalid UTF-8 byte 0x%02X", c);
        if (p_ + static_cast<size_t>(len) > s_.size()) return fail(at, "truncated UTF-8 sequence");
        for (int i = 1; i < len; ++i) {
            const unsigned char d = static_cast<unsigned char>(s_[p_ + static_cast<size_t>(i)]);
            if ((d & 0xC0) != 0x80) return fail(at, "invalid UTF-8 sequence");
            v = (v << 6) | (d & 0x3Fu);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (v < min_cp[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
            return fail(at, "invalid UTF-8 sequence");
        p_ += static_cast<size_t>(len);
        cp = v;
        return Status();
    }

    Status push(std::vector<GrammarElem>& out, GrammarElem e) {
        if (++n_elems_ > kGrammarMaxElems) return fail(p_, "the grammar is too large");
        out.push_back(e);
        return Status();
    }

    Status parse_alternates(uint32_t rule, int depth) {
        if (depth > kGrammarMaxNesting) return fail(p_, "groups are nested too deeply");
        std::vector<GrammarElem> out;
        const std::string base = names_[rule];
        Status st = parse_sequence(out, base, depth);
        if (!st.ok()) return st;
        while (p_ < s_.size() && s_[p_] == '|') {
            ++p_;
            st = push(out, GrammarElem{GrammarOp::alt, 0});
            if (!st.ok()) return st;
            st = parse_sequence(out, base, depth);
            if (!st.ok()) return st;
        }
        st = push(out, GrammarElem{GrammarOp::end, 0});
        if (!st.ok()) return st;
        rules_[rule] = std::move(out);
        return Status();
    }

    Status parse_sequence(std::vector<GrammarElem>& out, const std::string& base, int depth) {
        size_t last_sym = static_cast<size_t>(-1);
        for (;;) {
            skip_space();
            if (p_ >= s_.size()) break;
            const char c = s_[p_];
            const size_t at = p_;
            Status st;
            if (c == '"') {
                last_sym = out.size();
                ++p_;
                for (;;) {
                    if (p_ >= s_.size() || s_[p_] == '\n') return fail(at, "unterminated literal");
                    if (s_[p_] == '"') {
                        ++p_;
                        break;
                    }
                    uint32_t cp = 0;
                    st = parse_char(cp);
                    if (!st.ok()) return st;
                    st = push(out, GrammarElem{GrammarOp::cls, char_class(cp)});
                    if (!st.ok()) return st;
                }
            } else if (c == '[') {
                last_sym = out.size();
                ++p_;
                GrammarClass cls;
                if (p_ < s_.size() && s_[p_] == '^') {
                    cls.negated = true;
                    ++p_;
                }
                for (;;) {
                    if (p_ >= s_.size()) return fail(at, "unterminated character class");
                    if (s_[p_] == ']') {
                        ++p_;
                        break;
                    }
                    uint32_t lo = 0, hi = 0;
                    st = parse_char(lo);
                    if (!st.ok()) return st;
                    hi = lo;
                    if (p_ + 1 < s_.size() && s_[p_] == '-' && s_[p_ + 1] != ']') {
                        const size_t range_at = p_;
                        ++p_;
                        st = parse_char(hi);
                        if (!st.ok()) return st;
                        if (hi < lo) return fail(range_at, "character range ends before it starts");
                    }
                    cls.ranges.emplace_back(lo, hi);
                }
                if (cls.ranges.empty()) return fail(at, "empty character class");
                st = push(out, GrammarElem{GrammarOp::cls, add_class(std::move(cls))});
                if (!st.ok()) return st;
            } else if (c == '.') {
                last_sym = out.size();
                ++p_;
                GrammarClass any;
                any.negated = true;
                st = push(out, GrammarElem{GrammarOp::cls, add_class(std::move(any))});
                if (!st.ok()) return st;
            } else if (c == '(') {
                last_sym = out.size();
                ++p_;
                const uint32_t sub = new_rule(base);
                st = parse_alternates(sub, depth + 1);
                if (!st.ok()) return st;
                skip_space();
                if (p_ >= s_.size() || s_[p_] != ')')
                    return fail(p_, "expected ')' to close the group opened at %s", where(at).c_str());
                ++p_;
                st = push(out, GrammarElem{GrammarOp::ref, sub});
                if (!st.ok()) return st;
            } else if (is_name_char(c)) {
                std::string name;
                parse_name(name);
                const size_t after = p_;
                skip_space();
                if (s_.compare(p_, 3, "::=") == 0) {  // the next rule begins
                    p_ = at;
                    break;
                }
                p_ = after;
                last_sym = out.size();
                st = push(out, GrammarElem{GrammarOp::ref, rule_id(name, at)});
                if (!st.ok()) return st;
            } else if (c == '*' || c == '+' || c == '?' || c == '{') {
                if (last_sym == static_cast<size_t>(-1))
                    return fail(at, "'%c' repeats nothing (it must follow an item)", c);
                uint32_t lo = 0, hi = 0;
                const uint32_t inf = static_cast<uint32_t>(-1);
                ++p_;
                if (c == '*') { lo = 0; hi = inf; }
                else if (c == '+') { lo = 1; hi = inf; }
                else if (c == '?') { lo = 0; hi = 1; }
                else {
                    st = parse_bounds(at, lo, hi);
                    if (!st.ok()) return st;
                }
                st = repeat(out, last_sym, lo, hi, base);
                if (!st.ok()) return st;
                last_sym = static_cast<size_t>(-1);  // "a**" is not allowed
            } else {
                break;  // '|', ')' or something the caller reports
            }
        }
        return Status();
    }

    std::string where(size_t at) const {
        Status s = fail(at, "x");
        // "grammar: line L, column C: x" -> "line L, column C"
        const std::string& m = s.message();
        const size_t b = m.find("line");
        const size_t e = m.rfind(':');
        return (b != std::string::npos && e != std::string::npos && e > b) ? m.substr(b, e - b) : m;
    }

    Status parse_number(size_t at, uint32_t& v) {
        skip_space();
        if (p_ >= s_.size() || s_[p_] < '0' || s_[p_] > '9') return fail(at, "expected a number in '{...}'");
        uint64_t x = 0;
        while (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9') {
            x = x * 10 + static_cast<uint64_t>(s_[p_] - '0');
            if (x > kGrammarMaxRepeat) return fail(at, "repetition count is larger than %u", kGrammarMaxRepeat);
            ++p_;
        }
        v = static_cast<uint32_t>(x);
        skip_space();
        return Status();
    }

    Status parse_bounds(size_t at, uint32_t& lo, uint32_t& hi) {
        Status st = parse_number(at, lo);
        if (!st.ok()) return st;
        if (p_ < s_.size() && s_[p_] == '}') {
            ++p_;
            hi = lo;
            return Status();
        }
        if (p_ >= s_.size() || s_[p_] != ',') return fail(at, "expected ',' or '}' in '{...}'");
        ++p_;
        skip_space();
        if (p_ < s_.size() && s_[p_] == '}') {
            ++p_;
            hi = static_cast<uint32_t>(-1);
            return Status();
        }
        st = parse_number(at, hi);
        if (!st.ok()) return st;
        if (p_ >= s_.size() || s_[p_] != '}') return fail(at, "expected '}' to close '{...}'");
        ++p_;
        if (hi < lo) return fail(at, "repetition {%u,%u} has its maximum below its minimum", lo, hi);
        return Status();
    }

    // Replaces out[from..] (one item: a literal, a class or a reference) by
    // lo copies of it followed by a generated rule for the optional part.
    Status repeat(std::vector<GrammarElem>& out, size_t from, uint32_t lo, uint32_t hi, const std::string& base) {
        const std::vector<GrammarElem> item(out.begin() + static_cast<std::ptrdiff_t>(from), out.end());
        out.resize(from);
        if (item.empty()) return Status();  // a repeated "" is still ""
        const uint64_t copies = static_cast<uint64_t>(lo) + (hi == static_cast<uint32_t>(-1) ? 1 : hi - lo);
        if (copies * (item.size() + 3) > kGrammarMaxElems - n_elems_) return fail(p_, "the grammar is too large");
        Status st;
        for (uint32_t i = 0; i < lo; ++i) {
            for (const GrammarElem& e : item) {
                st = push(out, e);
                if (!st.ok()) return st;
            }
        }
        if (hi == static_cast<uint32_t>(-1)) {
            // r ::= item r |
            const uint32_t r = new_rule(base);
            std::vector<GrammarElem> body(item);
            body.push_back(GrammarElem{GrammarOp::ref, r});
            body.push_back(GrammarElem{GrammarOp::alt, 0});
            body.push_back(GrammarElem{GrammarOp::end, 0});
            n_elems_ += body.size();
            rules_[r] = std::move(body);
            return push(out, GrammarElem{GrammarOp::ref, r});
        }
        // r1 ::= item | ; rk ::= item r(k-1) | ; then a reference to r(hi-lo).
        uint32_t prev = 0;
        for (uint32_t k = 0; k < hi - lo; ++k) {
            const uint32_t r = new_rule(base);
            std::vector<GrammarElem> body(item);
            if (k > 0) body.push_back(GrammarElem{GrammarOp::ref, prev});
            body.push_back(GrammarElem{GrammarOp::alt, 0});
            body.push_back(GrammarElem{GrammarOp::end, 0});
            n_elems_ += body.size();
            rules_[r] = std::move(body);
            prev = r;
        }
        if (hi > lo) return push(out, GrammarElem{GrammarOp::ref, prev});
        return Status();
    }

    // A rule that can reach itself without consuming a character would make
    // the matcher expand forever; such grammars are refused.
    Status check_left_recursion() const {
        const size_t n = rules_.size();
        std::vector<char> nullable(n, 0);
        for (bool changed = true; changed;) {
            changed = false;
            for (size_t r = 0; r < n; ++r) {
                if (nullable[r]) continue;
                bool all = true;  // every element of the current alternative so far is nullable
                for (const GrammarElem& e : rules_[r]) {
                    if (e.op == GrammarOp::alt || e.op == GrammarOp::end) {
                        if (all) {
                            nullable[r] = 1;
                            changed = true;
                            break;
                        }
                        all = true;
                    } else if (all) {
                        if (e.op == GrammarOp::cls || !nullable[e.value]) all = false;
                    }
                }
            }
        }
        // Edges r -> s when s can come first in r; look for a cycle.
        std::vector<std::vector<uint32_t>> first(n);
        for (size_t r = 0; r < n; ++r) {
            bool lead = true;
            for (const GrammarElem& e : rules_[r]) {
                if (e.op == GrammarOp::alt || e.op == GrammarOp::end) {
                    lead = true;
                } else if (lead) {
                    if (e.op == GrammarOp::ref) first[r].push_back(e.value);
                    if (e.op == GrammarOp::cls || !nullable[e.value]) lead = false;
                }
            }
        }
        std::vector<char> color(n, 0);  // 0 new, 1 on the path, 2 done
        std::vector<std::pair<uint32_t, size_t>> path;
        for (size_t s = 0; s < n; ++s) {
            if (color[s]) continue;
            path.emplace_back(static_cast<uint32_t>(s), 0);
            color[s] = 1;
            while (!path.empty()) {
                auto& top = path.back();
                if (top.second < first[top.first].size()) {
                    const uint32_t nx = first[top.first][top.second++];
                    if (color[nx] == 1)
                        return error(StatusCode::bad_format,
                                     "grammar: rule '%s' is left-recursive (it can reach itself without "
                                     "matching a character; a repetition of something that can be empty does this)",
                                     names_[nx].c_str());
                    if (color[nx] == 0) {
                        color[nx] = 1;
                        path.emplace_back(nx, 0);
                    }
                } else {
                    color[top.first] = 2;
                    path.pop_back();
                }
            }
        }
        return Status();
    }
};

// ---------------------------------------------------------------------------
// Matcher state.
// ---------------------------------------------------------------------------
using GrammarStack = std::vector<uint32_t>;

struct GrammarState {
    std::vector<GrammarStack> stacks;
    // An unfinished UTF-8 character: its bits so far, bytes still to come,
    // and its total length.
    uint32_t partial = 0;
    uint8_t remain = 0;
    uint8_t length = 0;
};

inline bool grammar_is_stop(const GrammarData& g, uint32_t pos) {
    const GrammarOp op = g.elems[pos].op;
    return op == GrammarOp::end || op == GrammarOp::alt;
}

struct GrammarStackHash {
    size_t operator()(const GrammarStack& s) const {
        uint64_t h = 0xcbf29ce484222325ull;
        for (uint32_t v : s) h = (h ^ v) * 0x100000001b3ull;
        return static_cast<size_t>(h ^ (h >> 29));
    }
};

// Expands stacks for one step of the matcher. Stacks met before in the same
// step are skipped, so ambiguous grammars do not repeat work, and the total
// number of steps is bounded (a pathological grammar then loses some stacks
// instead of taking unbounded time).
struct GrammarExpander {
    const GrammarData& g;
    std::vector<GrammarStack>& out;
    // Stacks met so far: a short list while few (the usual case), a hash set after.
    std::vector<GrammarStack> seen_few;
    std::unordered_set<GrammarStack, GrammarStackHash> seen_many;
    std::vector<GrammarStack> todo;
    size_t steps = 0;

    GrammarExpander(const GrammarData& gd, std::vector<GrammarStack>& o) : g(gd), out(o) {}

    // Adds to `out` every stack reachable from `stack` by entering rules until
    // a character class (or nothing) is on top. False when the budget is spent.
    bool expand(GrammarStack stack);
    // True the first time a stack is offered.
    bool first_visit(const GrammarStack& st) {
        if (seen_many.empty()) {
            for (const GrammarStack& s : seen_few) {
                if (s == st) return false;
            }
            if (seen_few.size() < 16) {
                seen_few.push_back(st);
                return true;
            }
            seen_many.insert(seen_few.begin(), seen_few.end());
        }
        return seen_many.insert(st).second;
    }
};

inline bool GrammarExpander::expand(GrammarStack stack) {
    todo.clear();
    todo.push_back(std::move(stack));
    while (!todo.empty()) {
        if (++steps > kGrammarMaxExpand) return false;
        GrammarStack st = std::move(todo.back());
        todo.pop_back();
        if (!first_visit(st)) continue;
        if (st.empty() || g.elems[st.back()].op == GrammarOp::cls) {
            out.push_back(std::move(st));
            continue;
        }
        const uint32_t pos = st.back();
        const GrammarElem e = g.elems[pos];
        st.pop_back();
        if (!grammar_is_stop(g, pos + 1)) st.push_back(pos + 1);
        const auto& alts = g.alt_starts[e.value];
        for (size_t i = 0; i < alts.size(); ++i) {
            if (i + 1 == alts.size()) {
                if (!grammar_is_stop(g, alts[i])) st.push_back(alts[i]);
                todo.push_back(std::move(st));
            } else {
                GrammarStack ns = st;
                if (!grammar_is_stop(g, alts[i])) ns.push_back(alts[i]);
                todo.push_back(std::move(ns));
            }
        }
    }
    return true;
}

inline void grammar_dedupe(std::vector<GrammarStack>& stacks) {
    std::sort(stacks.begin(), stacks.end());
    stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
    if (stacks.size() > kGrammarMaxStacks) stacks.resize(kGrammarMaxStacks);
}

inline void grammar_initial(const GrammarData& g, GrammarState& s) {
    s = GrammarState();
    GrammarExpander ex(g, s.stacks);
    for (uint32_t a : g.alt_starts[g.root]) {
        GrammarStack st;
        if (!grammar_is_stop(g, a)) st.push_back(a);
        if (!ex.expand(std::move(st))) break;
    }
    grammar_dedupe(s.stacks);
}

// The stacks after the code point cp, into out (partial state cleared).
inline void grammar_advance_cp(const GrammarData& g, const std::vector<GrammarStack>& in, uint32_t cp,
                               GrammarState& out) {
    out.stacks.clear();
    out.partial = 0;
    out.remain = 0;
    out.length = 0;
    GrammarExpander ex(g, out.stacks);
    for (const GrammarStack& st : in) {
        if (st.empty()) continue;
        const uint32_t pos = st.back();
        if (!grammar_class_has(g.classes[g.elems[pos].value], cp)) continue;
        GrammarStack ns(st.begin(), st.end() - 1);
        if (!grammar_is_stop(g, pos + 1)) ns.push_back(pos + 1);
        if (!ex.expand(std::move(ns))) break;
    }
    grammar_dedupe(out.stacks);
}

inline uint32_t grammar_min_cp(int length) {
    return length == 2 ? 0x80u : length == 3 ? 0x800u : length == 4 ? 0x10000u : 0u;
}

// Whether the state can still go on (or end).
inline bool grammar_alive(const GrammarData& g, const GrammarState& s) {
    if (s.remain == 0) return !s.stacks.empty();
    const unsigned shift = 6u * s.remain;
    uint32_t lo = s.partial << shift;
    uint32_t hi = lo | ((1u << shift) - 1u);
    lo = std::max(lo, grammar_min_cp(s.length));
    hi = std::min(hi, 0x10FFFFu);
    if (lo > hi) return false;
    for (const GrammarStack& st : s.stacks) {
        if (!st.empty() && grammar_class_meets(g.classes[g.elems[st.back()].value], lo, hi)) return true;
    }
    return false;
}

// The state after one more byte, into out; returns whether it is alive.
inline bool grammar_advance_byte(const GrammarData& g, const GrammarState& in, unsigned char b, GrammarState& out) {
    if (in.remain == 0) {
        if (b < 0x80) {
            grammar_advance_cp(g, in.stacks, b, out);
            return !out.stacks.empty();
        }
        uint8_t len = 0;
        uint32_t v = 0;
        if (b >= 0xC2 && b <= 0xDF) { len = 2; v = b & 0x1Fu; }
        else if (b >= 0xE0 && b <= 0xEF) { len = 3; v = b & 0x0Fu; }
        else if (b >= 0xF0 && b <= 0xF4) { len = 4; v = b & 0x07u; }
        else return false;  // not a lead byte
        out.stacks = in.stacks;
        out.partial = v;
        out.remain = static_cast<uint8_t>(len - 1);
        out.length = len;
        return grammar_alive(g, out);
    }
    if ((b & 0xC0) != 0x80) return false;
    const uint32_t v = (in.partial << 6) | (b & 0x3Fu);
    if (in.remain == 1) {
        if (v < grammar_min_cp(in.length) || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return false;
        grammar_advance_cp(g, in.stacks, v, out);
        return !out.stacks.empty();
    }
    out.stacks = in.stacks;
    out.partial = v;
    out.remain = static_cast<uint8_t>(in.remain - 1);
    out.length = in.length;
    return grammar_alive(g, out);
}

// The state after the bytes; false (out unspecified) when they do not fit.
inline bool grammar_advance_bytes(const GrammarData& g, const GrammarState& in, std::string_view bytes,
                                  GrammarState& out) {
    if (bytes.empty()) {
        out = in;
        return true;
    }
    GrammarState tmp[2];
    const GrammarState* cur = &in;
    for (size_t i = 0; i < bytes.size(); ++i) {
        GrammarState& nx = (i + 1 == bytes.size()) ? out : tmp[i & 1];
        if (!grammar_advance_byte(g, *cur, static_cast<unsigned char>(bytes[i]), nx)) return false;
        cur = &nx;
    }
    return true;
}

inline bool grammar_accepting(const GrammarState& s) {
    if (s.remain != 0) return false;
    for (const GrammarStack& st : s.stacks) {
        if (st.empty()) return true;
    }
    return false;
}

inline bool grammar_complete(const GrammarState& s) {
    return s.remain == 0 && s.stacks.size() == 1 && s.stacks[0].empty();
}

// Marks in `allowed` (indexed by token id) the tokens of `order` whose bytes
// can follow state `cur`. `order` lists token ids sorted by their bytes, so
// tokens that share a prefix share the work for it: the states after each
// byte of the previous token are kept and reused, and once a prefix is dead
// every token that starts with it is rejected without further work.
inline void grammar_allowed_tokens(const GrammarData& g, const GrammarState& cur,
                                   const std::vector<std::string>& pieces, const std::vector<int32_t>& order,
                                   std::vector<uint8_t>& allowed) {
    allowed.assign(pieces.size(), 0);
    std::vector<GrammarState> level(1, cur);  // level[d]: the state after d bytes of the previous token
    std::vector<uint8_t> alive(1, grammar_alive(g, cur) ? 1 : 0);
    size_t computed = 0;  // level[0..computed] hold the states for the previous token
    const std::string* prev = nullptr;
    for (int32_t id : order) {
        if (id < 0 || static_cast<size_t>(id) >= pieces.size()) continue;
        const std::string& p = pieces[static_cast<size_t>(id)];
        size_t d = 0;
        if (prev) {
            const size_t m = std::min(std::min(prev->size(), p.size()), computed);
            while (d < m && (*prev)[d] == p[d]) ++d;
        }
        bool ok = alive[d] != 0;
        while (ok && d < p.size()) {
            if (level.size() < d + 2) {
                level.resize(d + 2);
                alive.resize(d + 2);
            }
            ok = grammar_advance_byte(g, level[d], static_cast<unsigned char>(p[d]), level[d + 1]);
            alive[d + 1] = ok ? 1 : 0;
            ++d;
        }
        computed = d;
        allowed[static_cast<size_t>(id)] = (ok && d == p.size()) ? 1 : 0;
        prev = &p;
    }
}

}  // namespace detail

// ---------------------------------------------------------------------------
// Public classes.
// ---------------------------------------------------------------------------
struct Grammar::Impl {
    detail::GrammarData data;
};

Grammar::Grammar() : impl_(new Impl()) {}
Grammar::~Grammar() = default;

Status Grammar::parse(std::string_view gbnf, std::shared_ptr<const Grammar>& out, std::string_view root) {
    out.reset();
    return detail::guard("Grammar::parse", [&]() -> Status {
        std::shared_ptr<Grammar> g(new (std::nothrow) Grammar());
        if (!g || !g->impl_) return detail::error(StatusCode::out_of_memory, "grammar: out of memory");
        detail::GbnfParser parser(gbnf);
        Status st = parser.run(root, g->impl_->data);
        if (!st.ok()) return st;
        out = std::move(g);
        return Status();
    });
}

size_t Grammar::n_rules() const { return impl_->data.alt_starts.size(); }

const char* Grammar::json_gbnf() {
    return R"GBNF(# JSON (RFC 8259) text: one value, optionally followed by whitespace.
root   ::= value
value  ::= object | array | string | number | ("true" | "false" | "null") ws

object ::= "{" ws ( member ( "," ws member )* )? "}" ws
member ::= string ":" ws value
array  ::= "[" ws ( value ( "," ws value )* )? "]" ws

string ::= "\"" char* "\"" ws
char   ::= [^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )

number ::= "-"? ( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )? ws

# Whitespace is bounded so that a model cannot pad forever.
ws     ::= | " " | "\n" [ \t]{0,20}
)GBNF";
}

std::string Grammar::json_object_gbnf(const std::vector<std::string>& string_keys, int max_string_chars) {
    if (max_string_chars < 0) max_string_chars = 0;
    if (max_string_chars > static_cast<int>(detail::kGrammarMaxRepeat))
        max_string_chars = static_cast<int>(detail::kGrammarMaxRepeat);
    // A key as a GBNF literal of the JSON string "key".
    auto key_literal = [](const std::string& k) {
        std::string s = "\"\\\"";
        for (unsigned char c : k) {
            if (c == '"' || c == '\\') {
                // JSON needs \" or \\ in the key, and GBNF needs each of those escaped again.
                s += "\\\\";
                s += c == '"' ? "\\\"" : "\\\\";
            } else if (c < 0x20) {
                char buf[16];
                std::snprintf(buf, sizeof buf, "\\\\u%04x", c);
                s += buf;
            } else {
                s += static_cast<char>(c);
            }
        }
        s += "\\\"\"";
        return s;
    };
    std::string g = "root   ::= \"{\" ws ";
    for (size_t i = 0; i < string_keys.size(); ++i) {
        if (i > 0) g += "\",\" ws ";
        g += key_literal(string_keys[i]);
        g += " ws \":\" ws string ws ";
    }
    g += "\"}\"\n";
    g += "string ::= \"\\\"\" char{0," + std::to_string(max_string_chars) + "} \"\\\"\"\n";
    g += "char   ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} )\n";
    g += "ws     ::= \" \"?\n";
    return g;
}

struct GrammarMatcher::Impl {
    std::shared_ptr<const Grammar> grammar;
    detail::GrammarState state;
};

GrammarMatcher::GrammarMatcher() : impl_(new Impl()) {}
GrammarMatcher::GrammarMatcher(std::shared_ptr<const Grammar> grammar) : impl_(new Impl()) {
    impl_->grammar = std::move(grammar);
    reset();
}
GrammarMatcher::~GrammarMatcher() = default;
GrammarMatcher::GrammarMatcher(const GrammarMatcher& o) : impl_(new Impl(*o.impl_)) {}
GrammarMatcher& GrammarMatcher::operator=(const GrammarMatcher& o) {
    if (this != &o) *impl_ = *o.impl_;
    return *this;
}

bool GrammarMatcher::has_grammar() const { return impl_->grammar != nullptr; }
const std::shared_ptr<const Grammar>& GrammarMatcher::grammar() const { return impl_->grammar; }

void GrammarMatcher::reset() {
    if (impl_->grammar) detail::grammar_initial(impl_->grammar->impl().data, impl_->state);
    else impl_->state = detail::GrammarState();
}

bool GrammarMatcher::can_accept(std::string_view bytes) const {
    if (!impl_->grammar) return false;
    detail::GrammarState next;
    return detail::grammar_advance_bytes(impl_->grammar->impl().data, impl_->state, bytes, next);
}

bool GrammarMatcher::accept(std::string_view bytes) {
    if (!impl_->grammar) return false;
    detail::GrammarState next;
    if (!detail::grammar_advance_bytes(impl_->grammar->impl().data, impl_->state, bytes, next)) return false;
    impl_->state = std::move(next);
    return true;
}

bool GrammarMatcher::is_accepting() const { return detail::grammar_accepting(impl_->state); }
bool GrammarMatcher::is_complete() const { return detail::grammar_complete(impl_->state); }

MINIGPT_NS_END

// ---- sampler.hpp ----
// sampler: repetition penalty, top-k, top-p, min-p, temperature and a seeded
// draw, in that order. The result depends only on the logits, the history and
// the seed: no threads, no clocks, no global state. An optional grammar
// (grammar.hpp) masks the tokens that cannot continue it before the filters.

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

MINIGPT_NS_BEGIN
namespace detail {

// A candidate is (value, token id). The value is a logit until the last step,
// then the token's probability.
using SamplerCandidate = std::pair<float, int32_t>;

// Descending value; on equal values the lower id first. A strict total order
// on finite values, so every sort and selection below gives the same result
// with every standard library. A function object so that it is inlined.
struct SamplerBefore {
    bool operator()(const SamplerCandidate& a, const SamplerCandidate& b) const {
        if (a.first != b.first) return a.first > b.first;
        return a.second < b.second;
    }
};

// splitmix64: a 64-bit state advanced by a constant and mixed on output.
inline uint64_t splitmix64_next(uint64_t& state) {
    state += 0x9E3779B97F4A7C15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Keeps the candidates for which keep(c) is true, in their current order.
template <typename Pred>
inline void sampler_keep_if(std::vector<SamplerCandidate>& cand, Pred keep) {
    size_t w = 0;
    for (size_t r = 0; r < cand.size(); ++r) {
        if (keep(cand[r])) cand[w++] = cand[r];
    }
    cand.resize(w);
}

inline float sampler_max_value(const std::vector<SamplerCandidate>& cand) {
    float m = cand[0].first;
    for (const SamplerCandidate& c : cand) m = std::max(m, c.first);
    return m;
}

// Applies every filter of `p` to the logits and leaves in `cand` the tokens
// that may be drawn, each with its probability (> 0; they sum to 1 up to
// rounding). Returns true when `cand` is sorted most likely first; when no
// filter needed an ordering, the tokens stay in id order. `cand` is empty when
// no token can be drawn (n_vocab <= 0, or every logit is NaN or -inf).
inline bool sampler_filter(const SamplerParams& p, const std::vector<int32_t>& history,
                           const float* logits, int n_vocab, std::vector<SamplerCandidate>& cand) {
    cand.clear();
    if (!logits || n_vocab <= 0) return true;
    cand.resize(static_cast<size_t>(n_vocab));
    for (int i = 0; i < n_vocab; ++i) cand[static_cast<size_t>(i)] = SamplerCandidate(logits[i], i);

    // 1. Repetition penalty over the last repeat_last_n accepted tokens, each
    // distinct token once: a positive logit is divided by the penalty, any
    // other multiplied by it.
    const float penalty = p.repeat_penalty;
    if (p.repeat_last_n != 0 && penalty > 0.0f && std::isfinite(penalty) && penalty != 1.0f &&
        !history.empty()) {
        size_t n = history.size();
        if (p.repeat_last_n > 0 && static_cast<size_t>(p.repeat_last_n) < n) n = static_cast<size_t>(p.repeat_last_n);
        std::vector<int32_t> recent(history.end() - static_cast<std::ptrdiff_t>(n), history.end());
        std::sort(recent.begin(), recent.end());
        recent.erase(std::unique(recent.begin(), recent.end()), recent.end());
        for (int32_t t : recent) {
            if (t < 0 || t >= n_vocab) continue;
            float& l = cand[static_cast<size_t>(t)].first;
            if (l > 0.0f) l /= penalty;
            else l *= penalty;
        }
    }

    // 2. NaN and -inf can never be drawn. If some logits are +inf (the
    // penalty keeps +inf as it is), those tokens share all the probability.
    bool any_pos_inf = false;
    size_t w = 0;
    for (size_t r = 0; r < cand.size(); ++r) {
        const float l = cand[r].first;
        if (l - l == 0.0f) cand[w++] = cand[r];  // finite: inf - inf and NaN - NaN are NaN
        else if (l > 0.0f) any_pos_inf = true;
    }
    cand.resize(w);
    if (any_pos_inf) {
        cand.clear();
        for (int i = 0; i < n_vocab; ++i) {
            if (std::isinf(logits[i]) && logits[i] > 0.0f) cand.push_back(SamplerCandidate(0.0f, i));
        }
    }
    if (cand.empty()) return true;

    // 3. Greedy: the highest logit, the lowest id on ties.
    if (!(p.temperature > 0.0f)) {
        SamplerCandidate best = cand[0];
        for (const SamplerCandidate& c : cand) {
            if (c.first > best.first) best = c;
        }
        cand.assign(1, SamplerCandidate(1.0f, best.second));
        return true;
    }

    bool sorted = false;

    // 4. Top-k: the k highest logits (lowest ids on ties), without sorting
    // the whole vocabulary.
    if (p.top_k > 0 && static_cast<size_t>(p.top_k) < cand.size()) {
        const auto kth = cand.begin() + p.top_k;
        std::nth_element(cand.begin(), kth - 1, cand.end(), SamplerBefore());
        cand.resize(static_cast<size_t>(p.top_k));
        std::sort(cand.begin(), cand.end(), SamplerBefore());
        sorted = true;
    }

    // 5. Top-p: the smallest most-likely-first prefix whose probability
    // (softmax over the remaining candidates, before temperature) reaches
    // top_p; at least one token. The prefix is sorted in growing slices so a
    // large vocabulary is not fully sorted when a few tokens carry the mass.
    if (p.top_p < 1.0f && cand.size() > 1) {
        const double top_p = static_cast<double>(p.top_p);
        const double lmax = static_cast<double>(sampler_max_value(cand));
        double sum = 0.0;
        for (const SamplerCandidate& c : cand) sum += std::exp(static_cast<double>(c.first) - lmax);
        // cand[0, done) is sorted and holds the `done` best candidates.
        size_t done = sorted ? cand.size() : 0;
        size_t m = std::min<size_t>(cand.size(), 64);
        size_t keep = cand.size();
        double cum = 0.0;
        size_t i = 0;
        for (;;) {
            if (m > done) {
                const auto first = cand.begin() + static_cast<std::ptrdiff_t>(done);
                const auto mid = cand.begin() + static_cast<std::ptrdiff_t>(m);
                std::nth_element(first, mid - 1, cand.end(), SamplerBefore());
                std::sort(first, mid, SamplerBefore());
                done = m;
            }
            bool found = false;
            for (; i < m; ++i) {
                cum += std::exp(static_cast<double>(cand[i].first) - lmax) / sum;
                if (cum >= top_p) {
                    keep = i + 1;
                    found = true;
                    break;
                }
            }
            if (found || m == cand.size()) break;  // rounding may leave the total below top_p: keep all
            m = std::min(cand.size(), m * 4);
        }
        cand.resize(keep);
        sorted = true;
    }

    // 6. Min-p: keep tokens whose probability is at least min_p times the
    // top probability, i.e. exp(logit - max logit) >= min_p. The top token
    // always stays.
    if (p.min_p > 0.0f && cand.size() > 1) {
        const float lmax = sampler_max_value(cand);
        const double min_p = static_cast<double>(p.min_p);
        sampler_keep_if(cand, [&](const SamplerCandidate& c) {
            return c.first == lmax ||
                   std::exp(static_cast<double>(c.first) - static_cast<double>(lmax)) >= min_p;
        });
    }

    // 7. Temperature, then the softmax. Tokens whose probability rounds to 0
    // can never be drawn and are dropped.
    {
        const double t = static_cast<double>(p.temperature);
        const double lmax = static_cast<double>(sampler_max_value(cand));
        double sum = 0.0;
        for (const SamplerCandidate& c : cand) sum += std::exp((static_cast<double>(c.first) - lmax) / t);
        for (SamplerCandidate& c : cand) {
            c.first = static_cast<float>(std::exp((static_cast<double>(c.first) - lmax) / t) / sum);
        }
        sampler_keep_if(cand, [](const SamplerCandidate& c) { return c.first > 0.0f; });
    }
    return sorted;
}

}  // namespace detail

// The vocabulary as the grammar sees it, read once by set_grammar.
struct Sampler::GrammarVocab {
    std::vector<std::string> pieces;  // bytes of each token (control tokens: empty)
    std::vector<uint8_t> is_eog;      // end-of-generation tokens
    std::vector<int32_t> order;       // tokens with bytes that are not EOG, sorted by bytes
    std::vector<int32_t> eog;         // the EOG tokens, allowed where the grammar may end
    int32_t eos = -1;                 // returned by sample() once the grammar is complete
};

Sampler::Sampler(const SamplerParams& params) : params_(params), rng_state_(params.seed) {}

Status Sampler::set_grammar(std::shared_ptr<const Grammar> grammar, const Model& model) {
    return detail::guard("Sampler::set_grammar", [&]() -> Status {
        grammar_pending_ = -1;
        if (!grammar) {
            grammar_ = GrammarMatcher();
            grammar_vocab_.reset();
            return Status();
        }
        const int n = model.n_vocab();
        if (n <= 0) return detail::error(StatusCode::invalid_argument, "set_grammar: the model has no vocabulary");
        std::shared_ptr<GrammarVocab> v = std::make_shared<GrammarVocab>();
        v->pieces.resize(static_cast<size_t>(n));
        v->is_eog.assign(static_cast<size_t>(n), 0);
        for (int i = 0; i < n; ++i) {
            const size_t k = static_cast<size_t>(i);
            v->pieces[k] = model.token_to_piece(i, false);
            if (model.is_eog(i)) {
                v->is_eog[k] = 1;
                v->eog.push_back(i);
            } else if (!v->pieces[k].empty()) {
                v->order.push_back(i);
            }
        }
        const std::vector<std::string>& pieces = v->pieces;
        std::stable_sort(v->order.begin(), v->order.end(),
                         [&](int32_t a, int32_t b) { return pieces[static_cast<size_t>(a)] < pieces[static_cast<size_t>(b)]; });
        const int32_t eos = model.token_eos();
        if (eos >= 0 && eos < n) v->eos = eos;
        else if (!v->eog.empty()) v->eos = v->eog[0];
        grammar_ = GrammarMatcher(std::move(grammar));
        grammar_vocab_ = std::move(v);
        return Status();
    });
}

void Sampler::reset_grammar() {
    grammar_.reset();
    grammar_pending_ = -1;
}

// Copies the logits into buf with -inf for every token the grammar rules out.
const float* Sampler::grammar_mask(const float* logits, int n_vocab, std::vector<float>& buf) const {
    const GrammarVocab& v = *grammar_vocab_;
    const detail::GrammarData& g = grammar_.grammar()->impl().data;
    const detail::GrammarState& state = grammar_.impl().state;
    buf.assign(static_cast<size_t>(n_vocab), -std::numeric_limits<float>::infinity());
    std::vector<uint8_t> allowed;
    detail::grammar_allowed_tokens(g, state, v.pieces, v.order, allowed);
    for (int32_t id : v.order) {
        if (id < n_vocab && allowed[static_cast<size_t>(id)]) buf[static_cast<size_t>(id)] = logits[id];
    }
    if (detail::grammar_accepting(state)) {
        for (int32_t id : v.eog) {
            if (id < n_vocab) buf[static_cast<size_t>(id)] = logits[id];
        }
    }
    return buf.data();
}

double Sampler::next_uniform() {
    // The top 53 bits give a double in [0, 1) with every value equally likely.
    return static_cast<double>(detail::splitmix64_next(rng_state_) >> 11) * (1.0 / 9007199254740992.0);
}

void Sampler::accept(int32_t token) {
    const bool sampled = grammar_pending_ >= 0 && token == grammar_pending_;
    accept(token, sampled);
}

bool Sampler::accept(int32_t token, bool advance_grammar) {
    grammar_pending_ = -1;
    history_.push_back(token);
    // With a window, drop old tokens now and then so that the history stays
    // small without shifting it on every call. A negative window keeps all.
    if (params_.repeat_last_n >= 0) {
        const size_t window = static_cast<size_t>(params_.repeat_last_n);
        if (history_.size() >= 2 * window + 64) {
            history_.erase(history_.begin(), history_.end() - static_cast<std::ptrdiff_t>(window));
        }
    }
    if (!advance_grammar || !grammar_vocab_ || !grammar_.has_grammar()) return true;
    const GrammarVocab& v = *grammar_vocab_;
    if (token < 0 || static_cast<size_t>(token) >= v.pieces.size()) return false;
    const size_t k = static_cast<size_t>(token);
    // An end-of-generation token ends the text: it fits where the grammar may end.
    if (v.is_eog[k]) return grammar_.is_accepting();
    if (v.pieces[k].empty()) return false;
    return grammar_.accept(v.pieces[k]);
}

void Sampler::reset() {
    history_.clear();
    rng_state_ = params_.seed;
    reset_grammar();
}

void Sampler::apply_filters(const float* logits, int n_vocab, std::vector<int32_t>& ids,
                            std::vector<float>& probs) const {
    std::vector<detail::SamplerCandidate> cand;
    std::vector<float> masked;
    const float* lp = logits;
    if (grammar_vocab_ && grammar_.has_grammar() && logits && n_vocab > 0) lp = grammar_mask(logits, n_vocab, masked);
    const bool sorted = detail::sampler_filter(params_, history_, lp, n_vocab, cand);
    if (!sorted) std::sort(cand.begin(), cand.end(), detail::SamplerBefore());
    ids.resize(cand.size());
    probs.resize(cand.size());
    for (size_t i = 0; i < cand.size(); ++i) {
        ids[i] = cand[i].second;
        probs[i] = cand[i].first;
    }
}

int32_t Sampler::sample(const float* logits, int n_vocab) {
    const float* lp = logits;
    if (grammar_vocab_ && grammar_.has_grammar() && logits && n_vocab > 0) {
        if (grammar_.is_complete()) {  // nothing can follow: end the text
            grammar_pending_ = grammar_vocab_->eos;
            return grammar_pending_;
        }
        lp = grammar_mask(logits, n_vocab, grammar_logits_);
    }
    const int32_t tok = sample_filtered(lp, n_vocab);
    if (grammar_vocab_) grammar_pending_ = tok;
    return tok;
}

int32_t Sampler::sample_filtered(const float* logits, int n_vocab) {
    detail::sampler_filter(params_, history_, logits, n_vocab, scratch_);
    if (scratch_.empty()) return -1;
    if (!(params_.temperature > 0.0f)) return scratch_[0].second;  // greedy: no draw
    double total = 0.0;
    for (const detail::SamplerCandidate& c : scratch_) total += static_cast<double>(c.first);
    const double u = next_uniform() * total;
    double cum = 0.0;
    for (const detail::SamplerCandidate& c : scratch_) {
        cum += static_cast<double>(c.first);
        if (u < cum) return c.second;
    }
    return scratch_.back().second;  // u landed on the rounding slack at the end
}

MINIGPT_NS_END

// ---- session.hpp ----
// session: the generation loop: prompt evaluation, sampling, and streaming of
// text in whole UTF-8 characters.

MINIGPT_NS_BEGIN
namespace detail {

// Collects token bytes and hands out only whole UTF-8 characters.
class Utf8Stream {
public:
    // Appends bytes; returns the longest complete prefix and keeps the rest.
    std::string push(const std::string& bytes) {
        pending_ += bytes;
        size_t n = utf8_complete_prefix(pending_.data(), pending_.size());
        std::string out = pending_.substr(0, n);
        pending_.erase(0, n);
        return out;
    }
    // What is left at the end: an unfinished character becomes U+FFFD.
    std::string finish() {
        std::string out = pending_.empty() ? std::string() : std::string("\xEF\xBF\xBD");
        pending_.clear();
        return out;
    }

private:
    std::string pending_;
};

// Holds back text that could be the beginning of a stop string.
class StopMatcher {
public:
    explicit StopMatcher(const std::vector<std::string>& stops) : stops_(stops) {}

    // Adds text; returns what can be emitted. Sets `stopped` when a stop string
    // appeared: the text before it is returned and the rest dropped.
    std::string push(const std::string& text, bool& stopped) {
        held_ += text;
        size_t first = std::string::npos;
        for (const std::string& s : stops_) {
            if (s.empty()) continue;
            size_t p = held_.find(s);
            if (p < first) first = p;
        }
        if (first != std::string::npos) {
            stopped = true;
            std::string out = held_.substr(0, first);
            held_.clear();
            return out;
        }
        // Keep the longest suffix that is a proper prefix of a stop string.
        size_t keep = 0;
        for (const std::string& s : stops_) {
            for (size_t k = std::min(s.size() - (s.empty() ? 0 : 1), held_.size()); k > keep; --k) {
                if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
                    keep = k;
                    break;
                }
            }
        }
        size_t cut = utf8_complete_prefix(held_.data(), held_.size() - keep);
        std::string out = held_.substr(0, cut);
        held_.erase(0, cut);
        return out;
    }
    std::string finish() {
        std::string out;
        out.swap(held_);
        return out;
    }

private:
    const std::vector<std::string>& stops_;
    std::string held_;
};

}  // namespace detail

Status generate(Context& ctx, Sampler& sampler, const std::vector<int32_t>& prompt, const GenerateParams& params,
                const TextCallback& on_text, GenerateStats* stats) {
    return detail::guard("generate", [&]() -> Status {
        using namespace detail;
        GenerateStats local;
        GenerateStats& s = stats ? *stats : local;
        s = GenerateStats();
        const Model& model = ctx.model();
        const int n_vocab = model.n_vocab();

        if (prompt.empty() && ctx.n_past() == 0)
            return error(StatusCode::invalid_argument, "generate: empty prompt and empty context");
        if (prompt.size() >= static_cast<size_t>(ctx.n_ctx()) - static_cast<size_t>(ctx.n_past()))
            return error(StatusCode::context_full, "generate: the prompt has %zu tokens but only %d of the %d context positions are free",
                         prompt.size(), ctx.n_ctx() - ctx.n_past(), ctx.n_ctx());

        for (int32_t t : prompt) sampler.accept(t);
        if (!prompt.empty()) {
            double t0 = now_seconds();
            Status st = ctx.eval(prompt);
            if (!st.ok()) return st;
            s.prompt_seconds = now_seconds() - t0;
            s.n_prompt = static_cast<int>(prompt.size());
        }

        Utf8Stream stream;
        StopMatcher stops(params.stop);
        bool keep_going = true;
        double t0 = now_seconds();
        for (int i = 0; params.n_predict < 0 || i < params.n_predict; ++i) {
            int32_t tok = sampler.sample(ctx.logits(), n_vocab);
            if (tok < 0) {
                s.generate_seconds = now_seconds() - t0;
                return error(StatusCode::internal, "generate: no token can be sampled (every logit is NaN or -inf, or a grammar allows no token)");
            }
            sampler.accept(tok);
            if (params.stop_at_eog && model.is_eog(tok)) {
                s.hit_eog = true;
                break;
            }
            ++s.n_generated;
            bool stopped = false;
            std::string text = stops.push(stream.push(model.token_to_piece(tok)), stopped);
            if (!text.empty() && on_text && !on_text(text)) {
                keep_going = false;
                break;
            }
            if (stopped) {
                s.hit_stop = true;
                keep_going = false;
                break;
            }
            // The last requested token needs no evaluation.
            if (params.n_predict >= 0 && i + 1 == params.n_predict) break;
            Status st = ctx.eval(&tok, 1);
            if (st.code() == StatusCode::context_full) break;  // the window is full (and may not shift)
            if (!st.ok()) {
                s.generate_seconds = now_seconds() - t0;
                return st;
            }
        }
        s.generate_seconds = now_seconds() - t0;
        if (keep_going) {
            bool stopped = false;
            std::string tail = stops.push(stream.finish(), stopped);
            if (!stopped) tail += stops.finish();
            s.hit_stop = stopped;
            if (!tail.empty() && on_text) on_text(tail);
        }
        return Status();
    });
}

Status score_continuation(Context& ctx, const std::vector<int32_t>& prompt, const std::vector<int32_t>& continuation,
                          double& logprob, std::vector<double>* per_token) {
    return detail::guard("score_continuation", [&]() -> Status {
        using namespace detail;
        logprob = 0;
        if (per_token) per_token->clear();
        if (prompt.empty()) return error(StatusCode::invalid_argument, "score_continuation: empty prompt");
        if (continuation.empty()) return Status();
        std::vector<int32_t> all(prompt);
        all.insert(all.end(), continuation.begin(), continuation.end() - 1);
        ctx.reset();
        std::vector<float> logits;
        Status st = ctx.eval(all, &logits);
        ctx.reset();
        if (!st.ok()) return st;
        const int V = ctx.model().n_vocab();
        for (size_t i = 0; i < continuation.size(); ++i) {
            const int32_t tok = continuation[i];
            if (tok < 0 || tok >= V) return error(StatusCode::invalid_argument, "score_continuation: token %d out of range", tok);
            const float* row = logits.data() + (prompt.size() - 1 + i) * static_cast<size_t>(V);
            float mx = row[0];
            for (int v = 1; v < V; ++v) mx = std::max(mx, row[v]);
            double sum = 0;
            for (int v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
            const double lp = static_cast<double>(row[tok]) - mx - std::log(sum);
            logprob += lp;
            if (per_token) per_token->push_back(lp);
        }
        return Status();
    });
}

std::vector<TokenProb> top_tokens(const Context& ctx, int n) {
    std::vector<TokenProb> out;
    const int V = ctx.model().n_vocab();
    if (n <= 0 || ctx.n_past() == 0) return out;
    const float* row = ctx.logits();
    float mx = row[0];
    for (int v = 1; v < V; ++v) mx = std::max(mx, row[v]);
    double sum = 0;
    for (int v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
    std::vector<int32_t> ids(static_cast<size_t>(V));
    for (int v = 0; v < V; ++v) ids[static_cast<size_t>(v)] = v;
    n = std::min(n, V);
    std::partial_sort(ids.begin(), ids.begin() + n, ids.end(),
                      [&](int32_t a, int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
    for (int i = 0; i < n; ++i)
        out.push_back({ids[static_cast<size_t>(i)], static_cast<float>(std::exp(static_cast<double>(row[ids[static_cast<size_t>(i)]]) - mx) / sum)});
    return out;
}

Status perplexity(Context& ctx, const std::vector<int32_t>& tokens, PerplexityResult& out,
                  const PerplexityProgress& progress) {
    return detail::guard("perplexity", [&]() -> Status {
        using namespace detail;
        out = PerplexityResult();
        const int n_ctx = ctx.n_ctx();
        const int n_vocab = ctx.model().n_vocab();
        if (n_ctx < 4) return error(StatusCode::invalid_argument, "perplexity: n_ctx %d is too small", n_ctx);
        const int n_chunks = static_cast<int>(tokens.size() / static_cast<size_t>(n_ctx));
        if (n_chunks == 0)
            return error(StatusCode::invalid_argument, "perplexity: %zu tokens are fewer than one chunk of %d", tokens.size(), n_ctx);
        const int32_t bos = ctx.model().token_bos();
        std::vector<int32_t> chunk(static_cast<size_t>(n_ctx));
        std::vector<float> logits;
        double nll_sum = 0, nll2_sum = 0;
        int count = 0;
        for (int c = 0; c < n_chunks; ++c) {
            std::copy(tokens.begin() + static_cast<size_t>(c) * n_ctx, tokens.begin() + static_cast<size_t>(c + 1) * n_ctx,
                      chunk.begin());
            if (bos >= 0) chunk[0] = bos;
            ctx.reset();
            Status st = ctx.eval(chunk, &logits);
            if (!st.ok()) return st;
            for (int j = n_ctx / 2; j < n_ctx - 1; ++j) {
                const float* row = logits.data() + static_cast<size_t>(j) * n_vocab;
                float mx = row[0];
                for (int v = 1; v < n_vocab; ++v) mx = std::max(mx, row[v]);
                double sum = 0;
                for (int v = 0; v < n_vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
                const double nll = std::log(sum) + mx - row[chunk[static_cast<size_t>(j) + 1]];
                nll_sum += nll;
                nll2_sum += nll * nll;
                ++count;
            }
            const double running = std::exp(nll_sum / count);
            out.running.push_back(running);
            if (progress) progress(c + 1, n_chunks, running);
        }
        ctx.reset();
        const double mean = nll_sum / count, mean2 = nll2_sum / count;
        out.ppl = std::exp(mean);
        out.ppl_err = count > 1 ? out.ppl * std::sqrt(std::max(0.0, mean2 - mean * mean) / (count - 1)) : 0;
        out.n_chunks = n_chunks;
        out.count = count;
        return Status();
    });
}

MINIGPT_NS_END

// ---- chat.hpp ----
// chat: chat templates. The Jinja template a model ships in
// tokenizer.chat_template is not interpreted; its family is recognised from
// marker substrings (the rules llama.cpp's llm_chat_detect_template uses) and
// the conversation is rendered by a fixed formatter for that family, with the
// same output as llama.cpp's llm_chat_apply_template.

#include <string>

MINIGPT_NS_BEGIN

namespace detail {

enum class ChatFamily {
    chatml,
    llama2,
    llama2_sys,
    llama2_sys_bos,
    llama2_sys_strip,
    mistral_v1,
    mistral_v3,
    mistral_v3_tekken,
    mistral_v7,
    mistral_v7_tekken,
    llama3,
    phi3,
    phi4,
    zephyr,
    gemma,
    deepseek,
    deepseek2,
    deepseek3,
    unknown,
};

struct ChatFamilyName {
    const char* name;
    ChatFamily family;
};

inline const ChatFamilyName* chat_family_table(size_t& n) {
    static const ChatFamilyName table[] = {
        {"chatml", ChatFamily::chatml},
        {"llama2", ChatFamily::llama2},
        {"llama2-sys", ChatFamily::llama2_sys},
        {"llama2-sys-bos", ChatFamily::llama2_sys_bos},
        {"llama2-sys-strip", ChatFamily::llama2_sys_strip},
        {"mistral-v1", ChatFamily::mistral_v1},
        {"mistral-v3", ChatFamily::mistral_v3},
        {"mistral-v3-tekken", ChatFamily::mistral_v3_tekken},
        {"mistral-v7", ChatFamily::mistral_v7},
        {"mistral-v7-tekken", ChatFamily::mistral_v7_tekken},
        {"llama3", ChatFamily::llama3},
        {"phi3", ChatFamily::phi3},
        {"phi4", ChatFamily::phi4},
        {"zephyr", ChatFamily::zephyr},
        {"gemma", ChatFamily::gemma},
        {"deepseek", ChatFamily::deepseek},
        {"deepseek2", ChatFamily::deepseek2},
        {"deepseek3", ChatFamily::deepseek3},
    };
    n = sizeof(table) / sizeof(table[0]);
    return table;
}

inline const char* chat_family_name(ChatFamily f) {
    size_t n = 0;
    const ChatFamilyName* t = chat_family_table(n);
    for (size_t i = 0; i < n; ++i) {
        if (t[i].family == f) return t[i].name;
    }
    return nullptr;
}

// DeepSeek's markers use U+FF5C FULLWIDTH VERTICAL LINE and U+2581 LOWER ONE
// EIGHTH BLOCK (as the word separator). Literals are split after each \x
// escape so that a following hex-digit letter does not extend the escape.
#define MINIGPT_CHAT_BAR "\xef\xbd\x9c"
#define MINIGPT_CHAT_SEP "\xe2\x96\x81"
constexpr const char* kDsUser = "<" MINIGPT_CHAT_BAR "User" MINIGPT_CHAT_BAR ">";
constexpr const char* kDsAssistant = "<" MINIGPT_CHAT_BAR "Assistant" MINIGPT_CHAT_BAR ">";
constexpr const char* kDsEos = "<" MINIGPT_CHAT_BAR "end" MINIGPT_CHAT_SEP "of" MINIGPT_CHAT_SEP "sentence" MINIGPT_CHAT_BAR ">";
#undef MINIGPT_CHAT_BAR
#undef MINIGPT_CHAT_SEP

// What detection found: the family and, for Zephyr, the end-of-turn text when
// the template writes it literally ("" means: the model's EOS text).
struct ChatDetected {
    ChatFamily family = ChatFamily::unknown;
    std::string_view zephyr_eot;
};

inline ChatDetected chat_detect(std::string_view tmpl) {
    ChatDetected d;
    // A template name is accepted wherever a template is.
    size_t n = 0;
    const ChatFamilyName* table = chat_family_table(n);
    for (size_t i = 0; i < n; ++i) {
        if (tmpl == table[i].name) {
            d.family = table[i].family;
            return d;
        }
    }
    auto has = [tmpl](const char* s) { return tmpl.find(s) != std::string_view::npos; };

    if (has("<|im_start|>")) {
        if (has("<|im_sep|>")) d.family = ChatFamily::phi4;
        // SmolVLM uses <|im_start|> as its BOS but is not ChatML: unsupported.
        else if (!has("<end_of_utterance>")) d.family = ChatFamily::chatml;
        return d;
    }
    if (tmpl.substr(0, 7) == "mistral" || has("[INST]")) {
        if (has("[SYSTEM_PROMPT]")) {
            d.family = ChatFamily::mistral_v7;
        } else if (has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]")) {
            // Mistral's official v1 / v3 / v3-tekken templates.
            if (has(" [INST]")) d.family = ChatFamily::mistral_v1;
            else if (has("\"[INST]\"")) d.family = ChatFamily::mistral_v3_tekken;
            else d.family = ChatFamily::mistral_v3;
        } else if (has("content.strip()")) {
            d.family = ChatFamily::llama2_sys_strip;
        } else if (has("bos_token + '[INST]")) {
            d.family = ChatFamily::llama2_sys_bos;
        } else if (has("<<SYS>>")) {
            d.family = ChatFamily::llama2_sys;
        } else {
            d.family = ChatFamily::llama2;
        }
        return d;
    }
    if (has("<|assistant|>") && has("<|end|>")) {
        d.family = ChatFamily::phi3;
        return d;
    }
    if (has("[gMASK]<sop>")) return d;  // ChatGLM 4: unsupported
    if (has("<|assistant|>") && has("<|user|>")) {
        // llama.cpp reads this as Falcon 3 (with a literal "</s>") or GLM-Edge.
        // Zephyr templates have the same markers and end every turn with EOS:
        // literally "<|endoftext|>" (StableLM 2 Zephyr) or eos_token (Zephyr 7B).
        if (has("<|endoftext|>")) {
            d.family = ChatFamily::zephyr;
            d.zephyr_eot = "<|endoftext|>";
        } else if (!has("</s>") && has("eos_token")) {
            d.family = ChatFamily::zephyr;
        }
        return d;
    }
    if (has("<|{{ item['role'] }}|>") && has("<|begin_of_image|>")) return d;  // GLM-Edge
    if (has("<|user|>") && has("<|endoftext|>")) {
        d.family = ChatFamily::zephyr;
        d.zephyr_eot = "<|endoftext|>";
        return d;
    }
    if (has("bos_token + message['role']")) return d;  // Monarch: unsupported
    if (has("<start_of_turn>")) {
        d.family = ChatFamily::gemma;
        return d;
    }
    if (has("'\\n\\nAssistant: ' + eos_token")) return d;  // Orion: unsupported
    if (has("GPT4 Correct ")) return d;                     // OpenChat: unsupported
    if (has("USER: ") && has("ASSISTANT: ")) return d;      // Vicuna: unsupported
    if (has("### Instruction:") && has("<|EOT|>")) {
        d.family = ChatFamily::deepseek;  // DeepSeek Coder
        return d;
    }
    if (has("<|START_OF_TURN_TOKEN|>") && has("<|USER_TOKEN|>")) return d;  // Command-R: unsupported
    if (has("<|start_header_id|>") && has("<|end_header_id|>")) {
        d.family = ChatFamily::llama3;
        return d;
    }
    if (has("[gMASK]sop")) return d;  // ChatGLM 3: unsupported
    if (has("'Assistant: ' + message['content'] + eos_token")) {
        d.family = ChatFamily::deepseek2;  // DeepSeek LLM chat, DeepSeek V2
        return d;
    }
    if (has(kDsAssistant) && has(kDsUser) && has(kDsEos)) {
        d.family = ChatFamily::deepseek3;
        return d;
    }
    return d;
}

inline bool chat_is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// Whitespace trimmed from both ends (the C locale's isspace set).
inline std::string_view chat_trim(std::string_view s) {
    size_t b = 0, e = s.size();
    while (b < e && chat_is_space(s[b])) ++b;
    while (e > b && chat_is_space(s[e - 1])) --e;
    return s.substr(b, e - b);
}

inline void chat_render_llama2(ChatFamily f, const std::vector<ChatMessage>& msgs, std::string& out) {
    const bool system_block = f != ChatFamily::llama2;
    const bool bos_inside = f == ChatFamily::llama2_sys_bos;
    const bool strip = f == ChatFamily::llama2_sys_strip;
    // The first [INST] has no BOS before it: the tokenizer adds that one.
    out += "[INST] ";
    bool in_turn = true;
    for (const ChatMessage& m : msgs) {
        std::string_view content = strip ? chat_trim(m.content) : std::string_view(m.content);
        if (!in_turn) {
            out += bos_inside ? "<s>[INST] " : "[INST] ";
            in_turn = true;
        }
        if (m.role == "system") {
            if (system_block) {
                out += "<<SYS>>\n";
                out += content;
                out += "\n<</SYS>>\n\n";
            } else {
                out += content;
                out += '\n';
            }
        } else if (m.role == "user") {
            out += content;
            out += " [/INST]";
        } else {
            out += content;
            out += "</s>";
            in_turn = false;
        }
    }
}

inline void chat_render_mistral(ChatFamily f, const std::vector<ChatMessage>& msgs, std::string& out) {
    const char* lead = f == ChatFamily::mistral_v1 ? " " : "";
    const char* gap = f == ChatFamily::mistral_v3_tekken ? "" : " ";
    const bool trim_reply = f == ChatFamily::mistral_v3;
    bool in_turn = false;
    for (const ChatMessage& m : msgs) {
        if (!in_turn) {
            out += lead;
            out += "[INST]";
            out += gap;
            in_turn = true;
        }
        if (m.role == "system") {
            out += m.content;
            out += "\n\n";
        } else if (m.role == "user") {
            out += m.content;
            out += lead;
            out += "[/INST]";
        } else {
            out += gap;
            out += trim_reply ? chat_trim(m.content) : std::string_view(m.content);
            out += "</s>";
            in_turn = false;
        }
    }
}

inline void chat_render(ChatFamily f, const std::vector<ChatMessage>& msgs, bool add_ass, std::string_view eot,
                        std::string& out) {
    out.clear();
    switch (f) {
        case ChatFamily::chatml:
            for (const ChatMessage& m : msgs) {
                out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
            }
            if (add_ass) out += "<|im_start|>assistant\n";
            break;
        case ChatFamily::llama2:
        case ChatFamily::llama2_sys:
        case ChatFamily::llama2_sys_bos:
        case ChatFamily::llama2_sys_strip:
            chat_render_llama2(f, msgs, out);
            break;
        case ChatFamily::mistral_v1:
        case ChatFamily::mistral_v3:
        case ChatFamily::mistral_v3_tekken:
            chat_render_mistral(f, msgs, out);
            break;
        case ChatFamily::mistral_v7:
        case ChatFamily::mistral_v7_tekken: {
            const char* gap = f == ChatFamily::mistral_v7 ? " " : "";
            for (const ChatMessage& m : msgs) {
                if (m.role == "system") {
                    out += std::string("[SYSTEM_PROMPT]") + gap + m.content + "[/SYSTEM_PROMPT]";
                } else if (m.role == "user") {
                    out += std::string("[INST]") + gap + m.content + "[/INST]";
                } else {
                    out += gap + m.content + "</s>";
                }
            }
            break;
        }
        case ChatFamily::llama3:
            for (const ChatMessage& m : msgs) {
                out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n";
                out += chat_trim(m.content);
                out += "<|eot_id|>";
            }
            if (add_ass) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
            break;
        case ChatFamily::phi3:
            for (const ChatMessage& m : msgs) out += "<|" + m.role + "|>\n" + m.content + "<|end|>\n";
            if (add_ass) out += "<|assistant|>\n";
            break;
        case ChatFamily::phi4:
            for (const ChatMessage& m : msgs) out += "<|im_start|>" + m.role + "<|im_sep|>" + m.content + "<|im_end|>";
            if (add_ass) out += "<|im_start|>assistant<|im_sep|>";
            break;
        case ChatFamily::zephyr:
            for (const ChatMessage& m : msgs) {
                out += "<|" + m.role + "|>\n" + m.content;
                out += eot;
                out += '\n';
            }
            if (add_ass) out += "<|assistant|>\n";
            break;
        case ChatFamily::gemma: {
            // Gemma has no system turn: system text goes at the top of the next user turn.
            std::string system;
            for (const ChatMessage& m : msgs) {
                if (m.role == "system") {
                    system += chat_trim(m.content);
                    continue;
                }
                const bool model = m.role == "assistant";
                out += "<start_of_turn>";
                out += model ? std::string("model") : m.role;
                out += '\n';
                if (!system.empty() && !model) {
                    out += system + "\n\n";
                    system.clear();
                }
                out += chat_trim(m.content);
                out += "<end_of_turn>\n";
            }
            if (add_ass) out += "<start_of_turn>model\n";
            break;
        }
        case ChatFamily::deepseek:
            for (const ChatMessage& m : msgs) {
                if (m.role == "system") out += m.content;
                else if (m.role == "user") out += "### Instruction:\n" + m.content + "\n";
                else if (m.role == "assistant") out += "### Response:\n" + m.content + "\n<|EOT|>\n";
            }
            if (add_ass) out += "### Response:\n";
            break;
        case ChatFamily::deepseek2:
            for (const ChatMessage& m : msgs) {
                if (m.role == "system") out += m.content + "\n\n";
                else if (m.role == "user") out += "User: " + m.content + "\n\n";
                else if (m.role == "assistant") out += "Assistant: " + m.content + kDsEos;
            }
            if (add_ass) out += "Assistant:";
            break;
        case ChatFamily::deepseek3:
            for (const ChatMessage& m : msgs) {
                if (m.role == "system") out += m.content + "\n\n";
                else if (m.role == "user") out += kDsUser + m.content;
                else if (m.role == "assistant") out += kDsAssistant + m.content + kDsEos;
            }
            if (add_ass) out += kDsAssistant;
            break;
        case ChatFamily::unknown:
            break;
    }
}

// A short, printable excerpt of a template or name for error messages.
inline std::string chat_excerpt(std::string_view s) {
    std::string e;
    for (size_t i = 0; i < s.size() && e.size() < 48; ++i) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c == '\n') e += "\\n";
        else if (c < 0x20 || c >= 0x7f) e += '?';
        else e += static_cast<char>(c);
    }
    if (s.size() > 48) e += "...";
    return e;
}

inline std::string chat_name_list() {
    std::string s;
    size_t n = 0;
    const ChatFamilyName* t = chat_family_table(n);
    for (size_t i = 0; i < n; ++i) {
        if (i) s += ", ";
        s += t[i].name;
    }
    return s;
}

inline Status chat_apply_detected(const ChatDetected& d, std::string_view model_eos,
                                  const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                  std::string& out) {
    std::string_view eot = d.zephyr_eot;
    if (eot.empty()) eot = model_eos.empty() ? std::string_view("</s>") : model_eos;
    chat_render(d.family, messages, add_generation_prompt, eot, out);
    return Status();
}

}  // namespace detail

const char* chat_template_name(std::string_view jinja_template) {
    return detail::chat_family_name(detail::chat_detect(jinja_template).family);
}

std::vector<std::string> chat_template_names() {
    std::vector<std::string> names;
    size_t n = 0;
    const detail::ChatFamilyName* t = detail::chat_family_table(n);
    for (size_t i = 0; i < n; ++i) names.emplace_back(t[i].name);
    return names;
}

Status chat_apply(std::string_view template_name, const std::vector<ChatMessage>& messages,
                  bool add_generation_prompt, std::string& out) {
    out.clear();
    return detail::guard("chat_apply", [&]() -> Status {
        const detail::ChatDetected d = detail::chat_detect(template_name);
        if (d.family == detail::ChatFamily::unknown) {
            return detail::error(StatusCode::unsupported, "unknown chat template '%s' (supported: %s)",
                                 detail::chat_excerpt(template_name).c_str(), detail::chat_name_list().c_str());
        }
        return detail::chat_apply_detected(d, {}, messages, add_generation_prompt, out);
    });
}

Status chat_apply(const Model& model, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                  std::string& out, std::string_view template_name) {
    out.clear();
    return detail::guard("chat_apply", [&]() -> Status {
        std::string_view tmpl = template_name;
        const bool from_model = tmpl.empty();
        if (from_model) {
            Status st;
            if (!model.impl().gguf.get_string("tokenizer.chat_template", tmpl, st)) {
                if (!st.ok()) return st;
                return detail::error(StatusCode::unsupported,
                                     "the model has no chat template (tokenizer.chat_template); pass a template name "
                                     "(supported: %s)",
                                     detail::chat_name_list().c_str());
            }
        }
        const detail::ChatDetected d = detail::chat_detect(tmpl);
        if (d.family == detail::ChatFamily::unknown) {
            if (from_model) {
                return detail::error(StatusCode::unsupported,
                                     "the model's chat template is not a known family ('%s'); pass a template name "
                                     "(supported: %s)",
                                     detail::chat_excerpt(tmpl).c_str(), detail::chat_name_list().c_str());
            }
            return detail::error(StatusCode::unsupported, "unknown chat template '%s' (supported: %s)",
                                 detail::chat_excerpt(tmpl).c_str(), detail::chat_name_list().c_str());
        }
        // Templates that write eos_token get the model's own EOS text.
        std::string eos;
        if (model.token_eos() >= 0) eos = model.token_to_piece(model.token_eos(), true);
        return detail::chat_apply_detected(d, eos, messages, add_generation_prompt, out);
    });
}

MINIGPT_NS_END

#endif // MINIGPT_IMPLEMENTATION

// ---- license.hpp ----
/*
------------------------------------------------------------------------------
minigpt.hpp is available under the MIT License.

Copyright (c) 2026 the minigpt.hpp authors

Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of
the Software, and to permit persons to whom the Software is furnished to do so,
subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS
FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR
COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER
IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
------------------------------------------------------------------------------
*/
