// reference-engine.cpp: the reference model of `cargo xtask crossval`, in plain C++17.
//
//   reference-engine [--precision f64|f32|bf16] MODEL_DIR PROMPT_FILE STEPS
//
// Reads MODEL_DIR/config.json (Hugging Face Llama field names) and MODEL_DIR/model.safetensors
// (F32 weights, Llama tensor names), tokenizes PROMPT_FILE one token per byte, runs a prefill
// (seq 0) and STEPS greedy decode steps (seq 1..STEPS), and prints the STEPS + 1 sampled tokens
// on stdout, separated by spaces. Errors go to stderr with exit code 2.
//
// It is a line-by-line port of crates/reference-engine (the Rust reference): the same loops in
// the same order, recording the same names, shapes and context (seq, layer, stage) through
// tensor_trace.hpp, so trace-diff pairs every record with the Rust run's. --precision picks the
// arithmetic, as reference_engine::Precision does (one template on the float type):
//
//   f64   (default) f64 throughout; records F64
//   f32   the same loops in f32 (weights, activations, sums, eps, theta, the attention scale);
//         records F32
//   bf16  f32 arithmetic, weights and every traced activation rounded to bf16 (round to
//         nearest even) once computed, and silu(gate) before it multiplies up; records BF16
//
// In every mode the traces are byte-identical to the Rust reference's in the same mode. Run it
// with TENSOR_TRACE_DIR (and TENSOR_TRACE_VALUES=1 for raw values) to trace it; without, it
// runs untraced. No dependency beyond the standard library and tensor_trace.hpp:
//
//   c++ -std=c++17 -O2 -ffp-contract=off -I crates/trace-ffi/include
//       crates/trace-ffi/examples/reference-engine.cpp target/release/libtrace_ffi.a
//       -lpthread -ldl -lm -o reference-engine
//
// (one command; `cargo xtask crossval --reference cpp` builds and runs it for you).
//
// -ffp-contract=off keeps a*b+c as two rounded operations, as Rust computes it: fused
// multiply-adds would make the results differ from the Rust reference in the last bits. For the
// same reason every constant is converted to the float type before it enters an expression
// (T(1) / x, never 1.0 / x, which would compute in double and round twice).

#include "tensor_trace.hpp"

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

template <class T>
using Vec = std::vector<T>;

[[noreturn]] void fail(const std::string& message) { throw std::runtime_error(message); }

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("cannot read " + path + ": " + std::strerror(errno));
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) fail("cannot read " + path);
    return bytes;
}

// ---------------------------------------------------------------------------------------------
// JSON: just enough for config.json and the safetensors header (RFC 8259, no extensions).

struct Json {
    enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
    bool boolean = false;
    double number = 0;
    std::string string;
    std::vector<Json> array;
    std::vector<std::pair<std::string, Json>> object;  // in file order

    const Json* find(const std::string& key) const {
        for (const auto& kv : object)
            if (kv.first == key) return &kv.second;
        return nullptr;
    }
};

class JsonParser {
public:
    JsonParser(const std::string& text, std::string what) : s_(text), what_(std::move(what)) {}

    Json parse_document() {
        Json v = value(0);
        space();
        if (i_ != s_.size()) error("unexpected data after the JSON value");
        return v;
    }

private:
    const std::string& s_;
    std::string what_;
    std::size_t i_ = 0;

    [[noreturn]] void error(const std::string& message) const {
        fail(what_ + ": invalid JSON at byte " + std::to_string(i_) + ": " + message);
    }
    void space() {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
            ++i_;
    }
    bool eat(char c) {
        space();
        if (i_ < s_.size() && s_[i_] == c) {
            ++i_;
            return true;
        }
        return false;
    }
    void expect(char c) {
        if (!eat(c)) error(std::string("expected '") + c + "'");
    }
    bool literal(const char* word) {
        const std::size_t n = std::strlen(word);
        if (s_.compare(i_, n, word) != 0) return false;
        i_ += n;
        return true;
    }

    Json value(int depth) {
        if (depth > 64) error("nested deeper than 64 levels");
        space();
        if (i_ >= s_.size()) error("unexpected end of input");
        Json v;
        const char c = s_[i_];
        if (c == '{') {
            ++i_;
            v.kind = Json::Object;
            if (eat('}')) return v;
            do {
                space();
                std::string key = string();
                expect(':');
                v.object.emplace_back(std::move(key), value(depth + 1));
            } while (eat(','));
            expect('}');
        } else if (c == '[') {
            ++i_;
            v.kind = Json::Array;
            if (eat(']')) return v;
            do v.array.push_back(value(depth + 1));
            while (eat(','));
            expect(']');
        } else if (c == '"') {
            v.kind = Json::String;
            v.string = string();
        } else if (literal("true")) {
            v.kind = Json::Bool;
            v.boolean = true;
        } else if (literal("false")) {
            v.kind = Json::Bool;
        } else if (literal("null")) {
            v.kind = Json::Null;
        } else {
            v.kind = Json::Number;
            v.number = number();
        }
        return v;
    }

    double number() {
        const std::size_t start = i_;
        while (i_ < s_.size() && std::strchr("+-0123456789.eE", s_[i_]) != nullptr) ++i_;
        const std::string text = s_.substr(start, i_ - start);
        char* end = nullptr;
        const double x = std::strtod(text.c_str(), &end);
        if (text.empty() || end != text.c_str() + text.size()) error("expected a value");
        return x;
    }

    unsigned hex4() {
        if (i_ + 4 > s_.size()) error("truncated \\u escape");
        unsigned u = 0;
        for (int k = 0; k < 4; ++k) {
            const char h = s_[i_++];
            u <<= 4;
            if (h >= '0' && h <= '9') u |= unsigned(h - '0');
            else if (h >= 'a' && h <= 'f') u |= unsigned(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') u |= unsigned(h - 'A' + 10);
            else error("bad hex digit in \\u escape");
        }
        return u;
    }

    std::string string() {
        if (i_ >= s_.size() || s_[i_] != '"') error("expected a string");
        ++i_;
        std::string out;
        while (true) {
            if (i_ >= s_.size()) error("unterminated string");
            const char c = s_[i_++];
            if (c == '"') return out;
            if (static_cast<unsigned char>(c) < 0x20) error("control character in a string");
            if (c != '\\') {
                out += c;
                continue;
            }
            if (i_ >= s_.size()) error("unterminated string");
            const char e = s_[i_++];
            switch (e) {
                case '"': case '\\': case '/': out += e; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    unsigned cp = hex4();
                    if (cp >= 0xD800 && cp < 0xDC00 && literal("\\u")) {
                        const unsigned low = hex4();
                        if (low < 0xDC00 || low >= 0xE000) error("unpaired surrogate");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    } else if (cp >= 0xD800 && cp < 0xE000) {
                        error("unpaired surrogate");
                    }
                    utf8(cp, out);
                    break;
                }
                default: error(std::string("bad escape \\") + e);
            }
        }
    }

    static void utf8(unsigned cp, std::string& out) {
        if (cp < 0x80) {
            out += char(cp);
        } else if (cp < 0x800) {
            out += char(0xC0 | (cp >> 6));
            out += char(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += char(0xE0 | (cp >> 12));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        } else {
            out += char(0xF0 | (cp >> 18));
            out += char(0x80 | ((cp >> 12) & 0x3F));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        }
    }
};

// A non-negative integer that a double holds exactly (every size and offset here).
std::size_t json_size(const Json* v, const std::string& what) {
    if (v == nullptr) fail(what + ": missing");
    if (v->kind != Json::Number || !(v->number >= 0) || v->number > 9007199254740992.0 ||
        std::floor(v->number) != v->number)
        fail(what + ": expected a non-negative integer");
    return static_cast<std::size_t>(v->number);
}

double json_number(const Json* v, const std::string& what) {
    if (v == nullptr) fail(what + ": missing");
    if (v->kind != Json::Number) fail(what + ": expected a number");
    return v->number;
}

// ---------------------------------------------------------------------------------------------
// Model files.

struct Config {
    std::size_t vocab_size, hidden_size, intermediate_size, num_hidden_layers;
    std::size_t num_attention_heads, num_key_value_heads;
    double rms_norm_eps, rope_theta;

    std::size_t head_dim() const { return hidden_size / num_attention_heads; }
};

Config read_config(const std::string& path) {
    const Json doc = JsonParser(read_file(path), path).parse_document();
    if (doc.kind != Json::Object) fail(path + ": expected a JSON object");
    auto size = [&](const char* key) { return json_size(doc.find(key), path + ": " + key); };
    auto number = [&](const char* key) { return json_number(doc.find(key), path + ": " + key); };
    Config c{size("vocab_size"),          size("hidden_size"),
             size("intermediate_size"),   size("num_hidden_layers"),
             size("num_attention_heads"), size("num_key_value_heads"),
             number("rms_norm_eps"),      number("rope_theta")};
    const bool ok = c.vocab_size > 0 && c.hidden_size > 0 && c.num_attention_heads > 0 &&
                    c.num_key_value_heads > 0 && c.hidden_size % c.num_attention_heads == 0 &&
                    c.num_attention_heads % c.num_key_value_heads == 0 && c.head_dim() % 2 == 0;
    if (!ok)
        fail(path + ": inconsistent sizes (hidden must split into heads of even size, query " +
             "heads into key/value groups)");
    return c;
}

// A row-major [rows, cols] matrix, stored as a linear layer stores it: [out, in].
template <class T>
struct Matrix {
    std::size_t rows = 0, cols = 0;
    Vec<T> data;

    const T* row(std::size_t r) const { return &data[r * cols]; }
    // x · Wᵀ for each input row of x: out[t][o] = Σ_i x[t][i] · W[o][i].
    Vec<T> apply(const Vec<T>& x) const;
};

// model.safetensors: an 8-byte little-endian header length, a JSON header mapping each tensor
// name to {dtype, shape, data_offsets: [begin, end)} (offsets into the data after the header),
// then the data.
class SafeTensors {
public:
    explicit SafeTensors(const std::string& path) : path_(path), bytes_(read_file(path)) {
        if (bytes_.size() < 8) fail(path_ + ": " + std::to_string(bytes_.size()) +
                                    " bytes, too short for a safetensors file (8-byte header size)");
        std::uint64_t n = 0;
        for (int k = 7; k >= 0; --k) n = (n << 8) | static_cast<unsigned char>(bytes_[k]);
        if (n > bytes_.size() - 8)
            fail(path_ + ": header of " + std::to_string(n) + " bytes, but the file has only " +
                 std::to_string(bytes_.size() - 8) + " after the size");
        header_ = JsonParser(bytes_.substr(8, n), path_ + " header").parse_document();
        if (header_.kind != Json::Object) fail(path_ + ": the header is not a JSON object");
        data_start_ = 8 + static_cast<std::size_t>(n);
    }

    // The F32 tensor `name`, which must have exactly `shape`.
    Vec<float> f32(const std::string& name, const std::vector<std::size_t>& shape) const {
        const std::string what = path_ + ": tensor " + name;
        const Json* t = header_.find(name);
        if (t == nullptr || t->kind != Json::Object) fail(what + ": not in the file");
        const Json* dtype = t->find("dtype");
        const Json* dims = t->find("shape");
        const Json* offsets = t->find("data_offsets");
        if (dtype == nullptr || dtype->kind != Json::String) fail(what + ": no dtype");
        if (dims == nullptr || dims->kind != Json::Array) fail(what + ": no shape");
        if (offsets == nullptr || offsets->kind != Json::Array || offsets->array.size() != 2)
            fail(what + ": data_offsets is not [begin, end]");
        std::vector<std::size_t> found;
        for (const Json& d : dims->array) found.push_back(json_size(&d, what + ": shape"));
        if (dtype->string != "F32" || found != shape)
            fail(what + ": expected F32 " + show(shape) + ", found " + dtype->string + " " +
                 show(found));
        const std::size_t begin = json_size(&offsets->array[0], what + ": data_offsets");
        const std::size_t end = json_size(&offsets->array[1], what + ": data_offsets");
        std::size_t count = 1;
        for (std::size_t d : shape) count *= d;
        if (begin > end || end > bytes_.size() - data_start_ || end - begin != 4 * count)
            fail(what + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                 "] do not hold " + std::to_string(count) + " F32 values within the " +
                 std::to_string(bytes_.size() - data_start_) + " data bytes");
        Vec<float> out(count);
        const char* p = bytes_.data() + data_start_ + begin;
        for (std::size_t k = 0; k < count; ++k, p += 4) {
            std::uint32_t bits = 0;  // little-endian on any host
            for (int b = 3; b >= 0; --b) bits = (bits << 8) | static_cast<unsigned char>(p[b]);
            std::memcpy(&out[k], &bits, sizeof(float));
        }
        return out;
    }

private:
    std::string path_;
    std::string bytes_;
    Json header_;
    std::size_t data_start_ = 0;

    static std::string show(const std::vector<std::size_t>& shape) {
        std::string s = "[";
        for (std::size_t k = 0; k < shape.size(); ++k)
            s += (k ? ", " : "") + std::to_string(shape[k]);
        return s + "]";
    }
};

// ---------------------------------------------------------------------------------------------
// The math, one function per formula, as in the Rust reference.

// bfloat16 of `x`, rounded to nearest even, as the half crate (Rust) rounds: the top 16 bits of
// the binary32, plus one when the dropped half is more than a tie or a tie with an odd result.
// A NaN stays a (quiet) NaN.
tt::bf16_bits to_bf16(float x) {
    std::uint32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u)
        return tt::bf16_bits{static_cast<std::uint16_t>((bits >> 16) | 0x0040u)};
    const std::uint32_t round_bit = 0x8000u;
    std::uint32_t top = bits >> 16;
    if ((bits & round_bit) != 0 && (bits & (3 * round_bit - 1)) != 0) ++top;
    return tt::bf16_bits{static_cast<std::uint16_t>(top)};
}

float from_bf16(tt::bf16_bits h) {
    const std::uint32_t bits = static_cast<std::uint32_t>(h.bits) << 16;
    float x;
    std::memcpy(&x, &bits, sizeof x);
    return x;
}

// Rust's float sum starts from -0.0 (the additive identity), so an all-negative-zero sum stays
// -0.0.
template <class T>
T dot(const T* a, const T* b, std::size_t n) {
    T s = -T(0);
    for (std::size_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}

template <class T>
Vec<T> Matrix<T>::apply(const Vec<T>& x) const {
    Vec<T> out;
    out.reserve(x.size() / cols * rows);
    for (std::size_t t = 0; t < x.size() / cols; ++t)
        for (std::size_t o = 0; o < rows; ++o) out.push_back(dot(&x[t * cols], row(o), cols));
    return out;
}

// RMSNorm of each row: x / sqrt(mean(x²) + eps) · w.
template <class T>
Vec<T> rms_norm(const Vec<T>& x, const Vec<T>& w, T eps) {
    const std::size_t n = w.size();
    Vec<T> out;
    out.reserve(x.size());
    for (std::size_t r = 0; r < x.size(); r += n) {
        const T ms = dot(&x[r], &x[r], n) / static_cast<T>(n);
        const T inv = T(1) / std::sqrt(ms + eps);
        for (std::size_t i = 0; i < n; ++i) out.push_back(x[r + i] * inv * w[i]);
    }
    return out;
}

// Rotary embedding, "rotate half": dimension c pairs with c + D/2, rotated by pos·theta^(-2c/D).
template <class T>
Vec<T> rope(const T* x, std::size_t d, std::size_t pos, T theta) {
    const std::size_t half = d / 2;
    Vec<T> out(d);
    for (std::size_t c = 0; c < half; ++c) {
        const T freq = std::pow(theta, T(-2) * static_cast<T>(c) / static_cast<T>(d));
        const T angle = static_cast<T>(pos) * freq;
        const T sn = std::sin(angle), cs = std::cos(angle);
        out[c] = x[c] * cs - x[c + half] * sn;
        out[c + half] = x[c + half] * cs + x[c] * sn;
    }
    return out;
}

template <class T>
Vec<T> softmax(const Vec<T>& s) {
    T max = -std::numeric_limits<T>::infinity();
    for (T v : s) max = std::fmax(max, v);
    Vec<T> out;
    T sum = -T(0);
    for (T v : s) {
        out.push_back(std::exp(v - max));
        sum += out.back();
    }
    for (T& v : out) v /= sum;
    return out;
}

template <class T>
T silu(T x) {
    return x / (T(1) + std::exp(-x));
}

// Index of the largest value; the first one on ties.
template <class T>
std::size_t argmax(const Vec<T>& v) {
    std::size_t best = 0;
    for (std::size_t i = 0; i < v.size(); ++i)
        if (v[i] > v[best]) best = i;
    return best;
}

// ---------------------------------------------------------------------------------------------
// The model.

enum class Precision { F64, F32, Bf16 };

template <class T>
struct Block {
    Vec<T> attn_norm, ffn_norm;
    Matrix<T> wq, wk, wv, wo, w_gate, w_up, w_down;
};

// Per-layer key/value cache: keys[kv_head][position] is one D-vector.
template <class T>
struct Cache {
    std::vector<std::vector<Vec<T>>> keys, values;
};

// One pass: every record carries seq, layer and the name without "blk{i}/" as stage. In BF16
// mode values are rounded to bf16 at each point and recorded as BF16.
struct Pass {
    std::int64_t seq;
    bool bf16;

    template <class T>
    T round_one(T v) const {
        return bf16 ? static_cast<T>(from_bf16(to_bf16(static_cast<float>(v)))) : v;
    }

    template <class T>
    Vec<T> round(Vec<T> v) const {
        if (bf16)
            for (T& x : v) x = round_one(x);
        return v;
    }

    // A traced point: rounds `v` in place (BF16 mode), then records it.
    template <class T>
    void point(const std::string& name, std::int64_t layer,
               std::initializer_list<std::size_t> shape, Vec<T>& v) const {
        if (bf16) v = round(std::move(v));
        rounded(name, layer, shape, v);
    }

    // Records `v`, already rounded where the precision rounds, with the precision's dtype.
    template <class T>
    void rounded(const std::string& name, std::int64_t layer,
                 std::initializer_list<std::size_t> shape, const Vec<T>& v) const {
        if (!bf16) return record(name, layer, shape, v);
        std::vector<tt::bf16_bits> halves;
        halves.reserve(v.size());
        for (T x : v) halves.push_back(to_bf16(static_cast<float>(x)));
        record(name, layer, shape, halves);
    }

    template <class E>
    void record(const std::string& name, std::int64_t layer,
                std::initializer_list<std::size_t> shape, const std::vector<E>& v) const {
        std::size_t count = 1;
        for (std::size_t d : shape) count *= d;
        if (count != v.size()) fail("internal: " + name + " shape does not match its data");
        const std::vector<std::int64_t> dims(shape.begin(), shape.end());
        const std::string stage = name.substr(name.rfind('/') + 1);  // npos + 1 == 0
        tt::record(name, v.data(), dims, tt::context().seq(seq).layer(layer).stage(stage.c_str()));
    }
};

// The model computing in T (double for F64, float for F32 and BF16).
template <class T>
class Model {
public:
    Model(const std::string& dir, Precision precision)
        : cfg_(read_config(dir + "/config.json")), bf16_(precision == Precision::Bf16) {
        const SafeTensors st(dir + "/model.safetensors");
        // The file's f32 values, rounded to bf16 in BF16 mode.
        auto vec = [&](const std::string& name, std::size_t n) {
            Vec<T> out;
            for (float w : st.f32(name, {n}))
                out.push_back(bf16_ ? from_bf16(to_bf16(w)) : static_cast<T>(w));
            return out;
        };
        auto matrix = [&](const std::string& name, std::size_t rows, std::size_t cols) {
            Matrix<T> m{rows, cols, {}};
            for (float w : st.f32(name, {rows, cols}))
                m.data.push_back(bf16_ ? from_bf16(to_bf16(w)) : static_cast<T>(w));
            return m;
        };
        const std::size_t e = cfg_.hidden_size, f = cfg_.intermediate_size, v = cfg_.vocab_size;
        const std::size_t kv = cfg_.num_key_value_heads * cfg_.head_dim();
        for (std::size_t i = 0; i < cfg_.num_hidden_layers; ++i) {
            const std::string p = "model.layers." + std::to_string(i);
            blocks_.push_back(Block<T>{
                vec(p + ".input_layernorm.weight", e),
                vec(p + ".post_attention_layernorm.weight", e),
                matrix(p + ".self_attn.q_proj.weight", e, e),
                matrix(p + ".self_attn.k_proj.weight", kv, e),
                matrix(p + ".self_attn.v_proj.weight", kv, e),
                matrix(p + ".self_attn.o_proj.weight", e, e),
                matrix(p + ".mlp.gate_proj.weight", f, e),
                matrix(p + ".mlp.up_proj.weight", f, e),
                matrix(p + ".mlp.down_proj.weight", e, f),
            });
        }
        embed_ = matrix("model.embed_tokens.weight", v, e);
        norm_ = vec("model.norm.weight", e);
        lm_head_ = matrix("lm_head.weight", v, e);
    }

    // Greedy generation: a prefill over `prompt` (seq 0), then `steps` decode steps, each
    // feeding back the previous token. Returns the steps + 1 sampled tokens.
    std::vector<std::uint32_t> generate(const std::vector<std::uint32_t>& prompt,
                                        std::size_t steps) const {
        if (prompt.empty()) fail("the prompt must hold at least one token");
        std::vector<Cache<T>> caches(cfg_.num_hidden_layers);
        std::vector<std::uint32_t> out, input = prompt;
        for (std::size_t seq = 0; seq <= steps; ++seq) {
            const std::uint32_t next = forward(input, Pass{static_cast<std::int64_t>(seq), bf16_}, caches);
            out.push_back(next);
            input = {next};
        }
        return out;
    }

private:
    Config cfg_;
    bool bf16_;
    Matrix<T> embed_, lm_head_;
    std::vector<Block<T>> blocks_;
    Vec<T> norm_;

    // One pass over `tokens`, appending to the caches; returns the greedy next token.
    std::uint32_t forward(const std::vector<std::uint32_t>& tokens, const Pass& tr,
                          std::vector<Cache<T>>& caches) const {
        const Config& c = cfg_;
        const std::size_t t_len = tokens.size(), e = c.hidden_size, f = c.intermediate_size;
        const std::size_t h_n = c.num_attention_heads, kv_n = c.num_key_value_heads;
        const std::size_t d = c.head_dim();
        const T eps = static_cast<T>(c.rms_norm_eps), theta = static_cast<T>(c.rope_theta);
        const std::size_t start = caches[0].keys.empty() ? 0 : caches[0].keys[0].size();

        tr.record("tokens", -1, {t_len}, tokens);
        Vec<T> x;
        for (std::uint32_t tok : tokens) {
            if (tok >= c.vocab_size)
                fail("token " + std::to_string(tok) + " is outside the vocabulary of " +
                     std::to_string(c.vocab_size));
            x.insert(x.end(), embed_.row(tok), embed_.row(tok) + e);
        }
        tr.point("embed", -1, {t_len, e}, x);

        for (std::size_t i = 0; i < blocks_.size(); ++i) {
            const Block<T>& b = blocks_[i];
            Cache<T>& cache = caches[i];
            const auto layer = static_cast<std::int64_t>(i);
            auto n = [&](const char* point) { return "blk" + std::to_string(i) + "/" + point; };

            Vec<T> h = rms_norm(x, b.attn_norm, eps);
            tr.point(n("attn_norm"), layer, {t_len, e}, h);
            Vec<T> q = b.wq.apply(h), k = b.wk.apply(h), v = b.wv.apply(h);
            tr.point(n("q"), layer, {t_len, h_n * d}, q);
            tr.point(n("k"), layer, {t_len, kv_n * d}, k);
            tr.point(n("v"), layer, {t_len, kv_n * d}, v);

            // Heads first: out[h][t] is the (rotated) D-vector of head h at token t.
            auto heads = [&](const Vec<T>& m, std::size_t count, bool rotate) {
                std::vector<std::vector<Vec<T>>> out(count);
                for (std::size_t hd = 0; hd < count; ++hd)
                    for (std::size_t t = 0; t < t_len; ++t) {
                        const T* row = &m[(t * count + hd) * d];
                        out[hd].push_back(rotate ? tr.round(rope(row, d, start + t, theta))
                                                 : Vec<T>(row, row + d));
                    }
                return out;
            };
            auto flatten = [](const std::vector<std::vector<Vec<T>>>& m) {
                Vec<T> out;
                for (const auto& head : m)
                    for (const Vec<T>& row : head) out.insert(out.end(), row.begin(), row.end());
                return out;
            };
            const auto q_rope = heads(q, h_n, true);
            const auto k_rope = heads(k, kv_n, true);
            const auto v_heads = heads(v, kv_n, false);
            tr.rounded(n("q_rope"), layer, {h_n, t_len, d}, flatten(q_rope));
            tr.rounded(n("k_rope"), layer, {kv_n, t_len, d}, flatten(k_rope));

            if (cache.keys.empty()) {
                cache.keys.resize(kv_n);
                cache.values.resize(kv_n);
            }
            for (std::size_t g = 0; g < kv_n; ++g) {
                cache.keys[g].insert(cache.keys[g].end(), k_rope[g].begin(), k_rope[g].end());
                cache.values[g].insert(cache.values[g].end(), v_heads[g].begin(), v_heads[g].end());
            }
            const std::size_t l_len = start + t_len;

            // probs[h][t][j]: token t (absolute position start + t) attends to positions j <= it.
            const T scale = T(1) / std::sqrt(static_cast<T>(d));
            Vec<T> probs(h_n * t_len * l_len, T(0)), ctx(t_len * h_n * d, T(0));
            for (std::size_t hd = 0; hd < h_n; ++hd) {
                const std::size_t g = hd / (h_n / kv_n);
                for (std::size_t t = 0; t < t_len; ++t) {
                    const std::size_t visible = start + t + 1;
                    Vec<T> scores;
                    for (std::size_t j = 0; j < visible; ++j)
                        scores.push_back(dot(q_rope[hd][t].data(), cache.keys[g][j].data(), d) * scale);
                    // The context is a weighted sum of the probabilities as stored.
                    const Vec<T> p = tr.round(softmax(scores));
                    for (std::size_t j = 0; j < visible; ++j) {
                        probs[(hd * t_len + t) * l_len + j] = p[j];
                        for (std::size_t ch = 0; ch < d; ++ch)
                            ctx[t * h_n * d + hd * d + ch] += p[j] * cache.values[g][j][ch];
                    }
                }
            }
            tr.rounded(n("attn_probs"), layer, {h_n, t_len, l_len}, probs);
            tr.point(n("attn_ctx"), layer, {t_len, h_n * d}, ctx);
            Vec<T> attn_out = b.wo.apply(ctx);
            tr.point(n("attn_out"), layer, {t_len, e}, attn_out);
            Vec<T> x_mid(x.size());
            for (std::size_t j = 0; j < x.size(); ++j) x_mid[j] = x[j] + attn_out[j];
            tr.point(n("ffn_inp"), layer, {t_len, e}, x_mid);

            Vec<T> hn = rms_norm(x_mid, b.ffn_norm, eps);
            tr.point(n("ffn_norm"), layer, {t_len, e}, hn);
            Vec<T> gate = b.w_gate.apply(hn), up = b.w_up.apply(hn);
            tr.point(n("ffn_gate"), layer, {t_len, f}, gate);
            tr.point(n("ffn_up"), layer, {t_len, f}, up);
            Vec<T> act(gate.size());
            for (std::size_t j = 0; j < gate.size(); ++j) act[j] = tr.round_one(silu(gate[j])) * up[j];
            tr.point(n("ffn_act"), layer, {t_len, f}, act);
            Vec<T> ffn_out = b.w_down.apply(act);
            tr.point(n("ffn_out"), layer, {t_len, e}, ffn_out);
            for (std::size_t j = 0; j < x.size(); ++j) x[j] = x_mid[j] + ffn_out[j];
            tr.point(n("l_out"), layer, {t_len, e}, x);
        }

        Vec<T> out = rms_norm(x, norm_, eps);
        tr.point("out_norm", -1, {t_len, e}, out);
        Vec<T> logits = lm_head_.apply(Vec<T>(out.end() - static_cast<std::ptrdiff_t>(e), out.end()));
        tr.point("logits", -1, {c.vocab_size}, logits);
        const std::vector<std::uint32_t> next{static_cast<std::uint32_t>(argmax(logits))};
        tr.record("next_token", -1, {1}, next);
        return next[0];
    }
};

template <class T>
std::vector<std::uint32_t> generate(const std::string& dir, Precision precision,
                                    const std::vector<std::uint32_t>& prompt, std::size_t steps) {
    return Model<T>(dir, precision).generate(prompt, steps);
}

Precision parse_precision(const std::string& s) {
    if (s == "f64") return Precision::F64;
    if (s == "f32") return Precision::F32;
    if (s == "bf16") return Precision::Bf16;
    fail("--precision " + s + ": expected f64, f32 or bf16");
}

std::size_t parse_steps(const std::string& s) {
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
    if (s.empty() || s[0] == '-' || *end != '\0' || errno == ERANGE || v > 1000000)
        fail("STEPS " + s + ": expected an integer from 0 to 1000000");
    return static_cast<std::size_t>(v);
}

}  // namespace

int main(int argc, char** argv) {
    const char* usage = "usage: %s [--precision f64|f32|bf16] MODEL_DIR PROMPT_FILE STEPS\n";
    // --precision P (or --precision=P) anywhere; three positional arguments.
    std::vector<std::string> args;
    std::string precision_name = "f64";
    for (int k = 1; k < argc; ++k) {
        const std::string a = argv[k];
        if (a == "--precision" && k + 1 < argc) {
            precision_name = argv[++k];
        } else if (a.rfind("--precision=", 0) == 0) {
            precision_name = a.substr(std::strlen("--precision="));
        } else if (a == "--precision") {
            std::fprintf(stderr, "reference-engine: error: --precision needs a value\n");
            std::fprintf(stderr, usage, argv[0]);
            return 2;
        } else {
            args.push_back(a);
        }
    }
    if (args.size() != 3) {
        std::fprintf(stderr, usage, argv[0]);
        return 2;
    }
    try {
        tt::scope trace;  // checks the header against the library; flushes at the end
        const Precision precision = parse_precision(precision_name);
        const std::size_t steps = parse_steps(args[2]);
        const std::string prompt_bytes = read_file(args[1]);
        const std::vector<std::uint32_t> prompt(
            reinterpret_cast<const unsigned char*>(prompt_bytes.data()),
            reinterpret_cast<const unsigned char*>(prompt_bytes.data()) + prompt_bytes.size());
        const std::vector<std::uint32_t> tokens =
            precision == Precision::F64 ? generate<double>(args[0], precision, prompt, steps)
                                        : generate<float>(args[0], precision, prompt, steps);
        trace.flush();
        for (std::size_t k = 0; k < tokens.size(); ++k)
            std::printf("%s%u", k ? " " : "", static_cast<unsigned>(tokens[k]));
        std::printf("\n");
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "reference-engine: error: %s\n", e.what());
        return 2;
    }
}
