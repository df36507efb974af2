// llama-trace: runs a GGUF model with llama.cpp (prompt + N greedy decode steps) and records
// every named tensor of llama.cpp's compute graph that tensor-trace asks for, through the C ABI
// of trace-ffi (tensor_trace.h), from llama.cpp's eval callback (`cb_eval`).
//
//   llama-trace MODEL.gguf PROMPT_FILE STEPS [--threads N]
//
// The prompt file's bytes are the prompt's token ids (one token per byte: the crossval's
// synthetic model has a byte-level vocabulary, written as `tokenizer.ggml.model = "none"`, so
// llama.cpp's tokenizer is never used). Prints the STEPS + 1 generated token ids on stdout, the
// first from the prefill. Tracing is configured by the environment, as everywhere in
// tensor-trace (TENSOR_TRACE_DIR, TENSOR_TRACE_FILTER, TENSOR_TRACE_VALUES, ...); with tracing
// off no callback is installed, so the untraced run is llama.cpp's own.
//
// What a record is:
//   name   ggml's tensor name (llama.cpp's graph callback names them `NAME-LAYER`, e.g.
//          `attn_norm-0`, or `NAME` outside the layers, e.g. `result_norm`). A name met again
//          in the same graph evaluation gets `#k` appended (k = 1, 2, ...): llama.cpp gives the
//          same name to several nodes (`Qcur-0` is the Q projection, its 3-D reshape and its
//          RoPE output), and tensor-trace matches records by (name, occurrence), so each
//          record name must occur once per forward pass.
//   seq    0 for the prefill, s for decode step s.
//   layer  the `-L` suffix of ggml's name, -1 without one.
//   stage  ggml's name without the layer suffix.
//   shape  ggml's `ne` reversed (row-major, outermost first) over ggml_n_dims dimensions, so a
//          trailing extent of 1 in ggml (one token in a decode step) is dropped.
//   values read with the tensor's strides (views are recorded as what they show); copied off
//          the backend with ggml_backend_tensor_get when not in host memory.
//
// Deterministic: one CPU thread by default, F32 KV cache, no flash attention (so the attention
// probabilities `kq_soft_max-L` exist as a tensor); two runs write identical traces.

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"
#include "tensor_trace.h"

namespace {

// What the callback needs between its `ask` and its record phase.
struct TraceState {
    int64_t seq = 0;
    // How often each ggml name was met in the current graph evaluation.
    std::map<std::string, int> seen;
    // The record name chosen for the node last asked about.
    const ggml_tensor *pending = nullptr;
    std::string pending_name;
    std::vector<uint8_t> staging;
    int32_t status = TT_OK;
    std::string error;
};

bool tt_dtype(ggml_type type, int32_t *out) {
    switch (type) {
        case GGML_TYPE_F32: *out = TT_DTYPE_F32; return true;
        case GGML_TYPE_F16: *out = TT_DTYPE_F16; return true;
        case GGML_TYPE_BF16: *out = TT_DTYPE_BF16; return true;
        case GGML_TYPE_I32: *out = TT_DTYPE_I32; return true;
        default: return false;  // quantized blocks have no element type to record
    }
}

// `attn_norm-3` -> 3; `result_norm` or `Qcur-0 (reshaped)` -> -1.
int64_t layer_of(const std::string &name) {
    const size_t dash = name.rfind('-');
    if (dash == std::string::npos || dash + 1 == name.size()) return -1;
    int64_t layer = 0;
    for (size_t i = dash + 1; i < name.size(); ++i) {
        if (name[i] < '0' || name[i] > '9') return -1;
        layer = layer * 10 + (name[i] - '0');
    }
    return layer;
}

std::string stage_of(const std::string &name) {
    return layer_of(name) >= 0 ? name.substr(0, name.rfind('-')) : name;
}

bool record(TraceState &st, const ggml_tensor *t) {
    int32_t dtype = 0;
    if (!tt_dtype(t->type, &dtype)) return true;
    const int n = ggml_n_dims(t);
    const size_t elem = ggml_type_size(t->type);
    int64_t dims[GGML_MAX_DIMS];
    int64_t strides[GGML_MAX_DIMS];
    for (int i = 0; i < n; ++i) {
        dims[i] = t->ne[n - 1 - i];
        strides[i] = static_cast<int64_t>(t->nb[n - 1 - i] / elem);
    }
    const void *data = t->data;
    const bool host = t->buffer == nullptr || ggml_backend_buffer_is_host(t->buffer);
    if (!host) {
        st.staging.resize(ggml_nbytes(t));
        ggml_backend_tensor_get(t, st.staging.data(), 0, st.staging.size());
        data = st.staging.data();
    }
    const std::string &name = st.pending_name;
    const std::string ggml_name = ggml_get_name(t);
    const std::string stage = stage_of(ggml_name);
    tt_context ctx = TT_CONTEXT_INIT;
    ctx.seq = st.seq;
    ctx.layer = layer_of(ggml_name);
    ctx.stage = stage.c_str();
    const int32_t rc = tt_record(name.c_str(), dtype, data, static_cast<size_t>(n), dims, strides, &ctx);
    if (rc != TT_OK) {
        st.status = rc;
        st.error = "tt_record(" + name + "): " + tt_status_name(rc) + ": " + tt_last_error();
        return false;  // stops the graph computation; main reports the error
    }
    return true;
}

// llama.cpp's eval callback: `ask` is true first for every node (answer: whether we want its
// data), then false for the wanted ones once computed.
bool eval_callback(ggml_tensor *t, bool ask, void *user_data) {
    auto &st = *static_cast<TraceState *>(user_data);
    if (ask) {
        const std::string ggml_name = ggml_get_name(t);
        if (ggml_name.empty()) return false;
        const int k = st.seen[ggml_name]++;
        st.pending = t;
        st.pending_name = k == 0 ? ggml_name : ggml_name + "#" + std::to_string(k);
        return tt_wants(st.pending_name.c_str()) != 0;
    }
    if (t != st.pending) {
        st.status = TT_ERR_INTERNAL;
        st.error = std::string("eval callback: data of ") + ggml_get_name(t) + " without its ask";
        return false;
    }
    return record(st, t);
}

void quiet_log(ggml_log_level level, const char *text, void *) {
    if (level == GGML_LOG_LEVEL_ERROR || std::getenv("LLAMA_TRACE_VERBOSE") != nullptr) {
        std::fputs(text, stderr);
    }
}

int usage(const char *message) {
    std::fprintf(stderr,
                 "llama-trace: %s\nusage: llama-trace MODEL.gguf PROMPT_FILE STEPS [--threads N]\n",
                 message);
    return 2;
}

bool parse_count(const char *text, long *out) {
    char *end = nullptr;
    errno = 0;
    const long v = std::strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < 0) return false;
    *out = v;
    return true;
}

int argmax(const float *logits, int n) {
    int best = 0;
    for (int i = 1; i < n; ++i) {
        if (logits[i] > logits[best]) best = i;
    }
    return best;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 4 && argc != 6) return usage("expected 3 arguments (and optionally --threads N)");
    const char *model_path = argv[1];
    const char *prompt_path = argv[2];
    long steps = 0;
    long threads = 1;
    if (!parse_count(argv[3], &steps)) return usage("STEPS: expected a non-negative integer");
    if (argc == 6) {
        if (std::strcmp(argv[4], "--threads") != 0 || !parse_count(argv[5], &threads) ||
            threads < 1) {
            return usage("expected --threads N with N >= 1");
        }
    }

    std::ifstream in(prompt_path, std::ios::binary);
    if (!in) {
        std::fprintf(stderr, "llama-trace: cannot read the prompt file %s\n", prompt_path);
        return 2;
    }
    const std::string prompt((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (prompt.empty()) {
        std::fprintf(stderr, "llama-trace: the prompt file %s is empty: expected at least one byte\n",
                     prompt_path);
        return 2;
    }
    std::vector<llama_token> tokens;
    for (const unsigned char c : prompt) tokens.push_back(static_cast<llama_token>(c));

    llama_log_set(quiet_log, nullptr);
    llama_backend_init();

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model *model = llama_model_load_from_file(model_path, mp);
    if (model == nullptr) {
        std::fprintf(stderr, "llama-trace: cannot load the GGUF model %s\n", model_path);
        return 2;
    }
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

    TraceState st;
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = static_cast<uint32_t>(tokens.size() + steps + 1);
    // The whole prompt in one batch: the prefill is one graph, one seq.
    cp.n_batch = static_cast<uint32_t>(tokens.size());
    cp.n_ubatch = static_cast<uint32_t>(tokens.size());
    cp.n_seq_max = 1;
    cp.n_threads = static_cast<int32_t>(threads);
    cp.n_threads_batch = static_cast<int32_t>(threads);
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.no_perf = true;
    if (tt_enabled()) {
        cp.cb_eval = eval_callback;
        cp.cb_eval_user_data = &st;
    }
    llama_context *ctx = llama_init_from_model(model, cp);
    if (ctx == nullptr) {
        std::fprintf(stderr, "llama-trace: cannot create a llama.cpp context for %s\n", model_path);
        llama_model_free(model);
        return 2;
    }

    int status = 0;
    std::vector<llama_token> generated;
    llama_batch batch = llama_batch_init(static_cast<int32_t>(tokens.size()), 0, 1);
    int32_t pos = 0;
    std::vector<llama_token> feed = tokens;
    for (long step = 0; step <= steps; ++step) {
        batch.n_tokens = static_cast<int32_t>(feed.size());
        for (size_t i = 0; i < feed.size(); ++i) {
            batch.token[i] = feed[i];
            batch.pos[i] = pos + static_cast<int32_t>(i);
            batch.n_seq_id[i] = 1;
            batch.seq_id[i][0] = 0;
            // Every row's logits: llama.cpp then keeps every row in the last layer too (it
            // drops the rows without output before the last layer's FFN).
            batch.logits[i] = 1;
        }
        st.seq = step;
        st.seen.clear();
        st.pending = nullptr;
        const int32_t rc = llama_decode(ctx, batch);
        if (st.status != TT_OK) {
            std::fprintf(stderr, "llama-trace: %s\n", st.error.c_str());
            status = 2;
            break;
        }
        if (rc != 0) {
            std::fprintf(stderr, "llama-trace: llama_decode failed with %d at step %ld\n", rc, step);
            status = 2;
            break;
        }
        pos += batch.n_tokens;
        const llama_token next = argmax(llama_get_logits_ith(ctx, -1), n_vocab);
        generated.push_back(next);
        feed.assign(1, next);
    }
    llama_batch_free(batch);

    if (status == 0) {
        const int32_t rc = tt_flush();
        if (rc != TT_OK) {
            std::fprintf(stderr, "llama-trace: tt_flush: %s: %s\n", tt_status_name(rc), tt_last_error());
            status = 2;
        }
    }
    if (status == 0) {
        for (size_t i = 0; i < generated.size(); ++i) {
            std::printf("%s%d", i ? " " : "", generated[i]);
        }
        std::printf("\n");
    }
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return status;
}
