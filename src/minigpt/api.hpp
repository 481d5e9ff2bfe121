// api: every public declaration. This part is the manual of the library.
#pragma once
#include "config.hpp"

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
