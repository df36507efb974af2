/*
 * Exercises the C API; driven by tests/ffi/programs.rs, which sets TENSOR_TRACE_* and checks the
 * trace directory. Usage: api MODE [ARGS]. Prints "FAIL: ..." and exits 1 on a wrong answer.
 *
 *   layout           prints the ABI constants and the layout of tt_context
 *   errors           checks status codes and messages of invalid calls (tracing enabled)
 *   config-error     expects TT_ERR_CONFIG from tt_record (an invalid TENSOR_TRACE_* variable)
 *   disabled         expects every call to succeed without looking at its arguments
 *   threads          records from 4 threads at once
 *   vectors FILE L   records every tensor of FILE (see read_tensor) in memory layout L:
 *                    dense, colmajor (ndim >= 2 column-major, ndim 1 reversed), padded (row
 *                    pitch + 5) or misaligned (dense, one byte past an aligned address)
 */
#include "tensor_trace.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define EXPECT(cond, ...)                                                                     \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                              \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fprintf(stderr, "\n");                                                            \
            failures++;                                                                       \
        }                                                                                     \
    } while (0)

#define EXPECT_STATUS(call, want)                                                             \
    do {                                                                                      \
        int32_t got_ = (call);                                                                \
        EXPECT(got_ == (want), "%s returned %s (%s), expected %s", #call,                     \
               tt_status_name(got_), tt_last_error(), #want);                                 \
    } while (0)

static int mode_layout(void) {
    printf("TT_ABI_VERSION=%d\n", TT_ABI_VERSION);
    printf("tt_abi_version=%u\n", tt_abi_version());
    printf("TT_MAX_NDIM=%d\n", TT_MAX_NDIM);
    printf("TT_UNSET=%lld\n", (long long)TT_UNSET);
    printf("sizeof=%zu\n", sizeof(tt_context));
    printf("align=%zu\n", _Alignof(tt_context));
    printf("seq=%zu\n", offsetof(tt_context, seq));
    printf("layer=%zu\n", offsetof(tt_context, layer));
    printf("stage=%zu\n", offsetof(tt_context, stage));
    return 0;
}

static int mode_errors(void) {
    const float v[4] = {1, 2, 3, 4};
    const int64_t dims[2] = {2, 2};
    const int64_t negative[2] = {2, -2};
    int64_t many[TT_MAX_NDIM + 1];
    tt_context bad_seq = TT_CONTEXT_INIT;
    const char bad_utf8[] = {'a', (char)0xff, 0};
    size_t i;

    EXPECT(tt_enabled() == 1, "tracing should be enabled");
    EXPECT(strcmp(tt_last_error(), "") == 0, "no error yet, got %s", tt_last_error());

    EXPECT_STATUS(tt_record(NULL, TT_DTYPE_F32, v, 2, dims, NULL, NULL), TT_ERR_NULL);
    EXPECT(strstr(tt_last_error(), "tt_record: argument `name` is NULL") != NULL, "%s",
           tt_last_error());
    EXPECT_STATUS(tt_record("x", TT_DTYPE_F32, NULL, 2, dims, NULL, NULL), TT_ERR_NULL);
    EXPECT(strstr(tt_last_error(), "`data`") != NULL, "%s", tt_last_error());
    EXPECT_STATUS(tt_record("x", TT_DTYPE_F32, v, 2, NULL, NULL, NULL), TT_ERR_NULL);
    EXPECT_STATUS(tt_record("x", 8, v, 2, dims, NULL, NULL), TT_ERR_ARG);
    EXPECT(strstr(tt_last_error(), "unknown dtype code 8") != NULL, "%s", tt_last_error());
    EXPECT_STATUS(tt_record("x", -1, v, 2, dims, NULL, NULL), TT_ERR_ARG);
    for (i = 0; i < TT_MAX_NDIM + 1; i++) many[i] = 1;
    EXPECT_STATUS(tt_record("x", TT_DTYPE_F32, v, TT_MAX_NDIM + 1, many, NULL, NULL), TT_ERR_ARG);
    EXPECT_STATUS(tt_record("x", TT_DTYPE_F32, v, 2, negative, NULL, NULL), TT_ERR_SHAPE);
    EXPECT(strstr(tt_last_error(), "dimension 1 is -2") != NULL, "%s", tt_last_error());
    {
        const int64_t huge[2] = {INT64_MAX, 2};
        const int64_t strides[2] = {INT64_MAX / 2, 1};
        EXPECT_STATUS(tt_record("x", TT_DTYPE_F32, v, 2, huge, NULL, NULL), TT_ERR_SHAPE);
        EXPECT_STATUS(tt_record("x", TT_DTYPE_F32, v, 2, dims, strides, NULL), TT_ERR_SHAPE);
    }
    EXPECT_STATUS(tt_record(bad_utf8, TT_DTYPE_F32, v, 2, dims, NULL, NULL), TT_ERR_ARG);
    bad_seq.seq = -5;
    EXPECT_STATUS(tt_record("x", TT_DTYPE_F32, v, 2, dims, NULL, &bad_seq), TT_ERR_ARG);
    EXPECT(strstr(tt_last_error(), "ctx.seq") != NULL, "%s", tt_last_error());

    /* Success leaves the last message in place; nothing above wrote a record. */
    EXPECT_STATUS(tt_record("ok", TT_DTYPE_F32, v, 2, dims, NULL, NULL), TT_OK);
    EXPECT(strstr(tt_last_error(), "ctx.seq") != NULL, "%s", tt_last_error());
    EXPECT(tt_wants(NULL) == 0, "tt_wants(NULL)");
    EXPECT(tt_wants("ok") == 1, "tt_wants(ok)");
    EXPECT(strcmp(tt_status_name(TT_ERR_SHAPE), "TT_ERR_SHAPE") == 0, "status name");
    EXPECT(strcmp(tt_status_name(1234), "TT_ERR_UNKNOWN") == 0, "unknown status name");
    EXPECT_STATUS(tt_flush(), TT_OK);
    return failures ? 1 : 0;
}

static int mode_config_error(void) {
    const float v[1] = {1};
    const int64_t dims[1] = {1};
    EXPECT(tt_enabled() == 1, "an invalid setting still counts as enabled");
    EXPECT(tt_wants("x") == 1, "an invalid setting wants every name (to report it)");
    EXPECT_STATUS(tt_record("x", TT_DTYPE_F32, v, 1, dims, NULL, NULL), TT_ERR_CONFIG);
    printf("%s\n", tt_last_error());
    return failures ? 1 : 0;
}

static int mode_disabled(void) {
    EXPECT(tt_enabled() == 0, "tracing should be disabled");
    EXPECT(tt_wants("x") == 0, "tt_wants when disabled");
    EXPECT_STATUS(tt_record(NULL, -1, NULL, 999, NULL, NULL, NULL), TT_OK);
    EXPECT_STATUS(tt_flush(), TT_OK);
    return failures ? 1 : 0;
}

#define THREADS 4
#define PER_THREAD 50

static void *thread_main(void *arg) {
    int id = (int)(size_t)arg;
    char name[64];
    int i;
    for (i = 0; i < PER_THREAD; i++) {
        int32_t values[3] = {id, i, id * 1000 + i};
        const int64_t dims[1] = {3};
        tt_context ctx = TT_CONTEXT_INIT;
        ctx.seq = i;
        ctx.layer = id;
        snprintf(name, sizeof name, "t%d/x%d", id, i);
        EXPECT_STATUS(tt_record(name, TT_DTYPE_I32, values, 1, dims, NULL, &ctx), TT_OK);
        EXPECT_STATUS(tt_record("shared", TT_DTYPE_I32, values, 1, dims, NULL, &ctx), TT_OK);
    }
    /* Each thread sees its own message. */
    snprintf(name, sizeof name, "thread %d", id);
    EXPECT_STATUS(tt_record(name, 100 + id, NULL, 0, NULL, NULL, NULL), TT_ERR_ARG);
    snprintf(name, sizeof name, "unknown dtype code %d", 100 + id);
    EXPECT(strstr(tt_last_error(), name) != NULL, "thread %d sees %s", id, tt_last_error());
    return NULL;
}

static int mode_threads(void) {
    pthread_t threads[THREADS];
    size_t t;
    for (t = 0; t < THREADS; t++) pthread_create(&threads[t], NULL, thread_main, (void *)t);
    for (t = 0; t < THREADS; t++) pthread_join(threads[t], NULL);
    EXPECT(strcmp(tt_last_error(), "") == 0, "the main thread made no failing call: %s",
           tt_last_error());
    EXPECT_STATUS(tt_flush(), TT_OK);
    return failures ? 1 : 0;
}

/* ---- vectors: one tensor per line, whitespace-separated tokens ----
 *   NAME DTYPE NDIM DIM... SEQ LAYER STAGE DATA
 * NAME, STAGE and DATA are "x" followed by hex bytes (STAGE "-" = NULL); SEQ and LAYER are
 * integers or "u" (TT_UNSET); DATA is the raw little-endian source bytes, row-major. */

static size_t dtype_size(int32_t dtype) {
    switch (dtype) {
    case TT_DTYPE_U8: return 1;
    case TT_DTYPE_F16: case TT_DTYPE_BF16: return 2;
    case TT_DTYPE_F32: case TT_DTYPE_I32: case TT_DTYPE_U32: return 4;
    default: return 8;
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Decodes "x<hex>" into a fresh NUL-terminated buffer; *len gets the byte count. */
static unsigned char *unhex(const char *tok, size_t *len) {
    size_t n, i;
    unsigned char *out;
    if (tok[0] != 'x') return NULL;
    tok++;
    n = strlen(tok) / 2;
    out = malloc(n + 1);
    for (i = 0; i < n; i++) out[i] = (unsigned char)(hexval(tok[2 * i]) * 16 + hexval(tok[2 * i + 1]));
    out[n] = 0;
    if (len) *len = n;
    return out;
}

static char *next_token(char **cursor) {
    char *p = *cursor, *start;
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    if (!*p) return NULL;
    start = p;
    while (*p && *p != ' ' && *p != '\n' && *p != '\t' && *p != '\r') p++;
    if (*p) *p++ = 0;
    *cursor = p;
    return start;
}

static int64_t parse_opt(const char *tok) {
    return strcmp(tok, "u") == 0 ? TT_UNSET : strtoll(tok, NULL, 10);
}

/* Lays `src` (dense row-major) out in memory as `layout` asks; fills strides (NULL = dense). */
static unsigned char *arrange(const char *layout, const unsigned char *src, size_t elem,
                              size_t ndim, const int64_t *dims, int64_t *strides,
                              const void **data, int *use_strides) {
    size_t count = 1, i, k;
    unsigned char *buf;
    for (i = 0; i < ndim; i++) count *= (size_t)dims[i];
    *use_strides = 0;
    if (strcmp(layout, "misaligned") == 0) {
        buf = malloc(count * elem + 16);
        memcpy(buf + 1, src, count * elem);
        *data = buf + 1;
        return buf;
    }
    buf = malloc(6 * count * elem + 16); /* room for the padded layout */
    *data = buf;
    if (strcmp(layout, "colmajor") == 0 && ndim == 1 && count > 0) {
        for (i = 0; i < count; i++) memcpy(buf + (count - 1 - i) * elem, src + i * elem, elem);
        *data = buf + (count - 1) * elem; /* element 0 is the last in memory */
        strides[0] = -1;
        *use_strides = 1;
    } else if (strcmp(layout, "colmajor") == 0 && ndim >= 2) {
        int64_t s = 1;
        for (k = 0; k < ndim; k++) {
            strides[k] = s;
            s *= dims[k];
        }
        for (i = 0; i < count; i++) {
            size_t rest = i, off = 0;
            for (k = ndim; k-- > 0;) {
                off += (rest % (size_t)dims[k]) * (size_t)strides[k];
                rest /= (size_t)dims[k];
            }
            memcpy(buf + off * elem, src + i * elem, elem);
        }
        *use_strides = 1;
    } else if (strcmp(layout, "padded") == 0 && ndim >= 1 && count > 0) {
        /* Every row (last dimension) is followed by 5 unused elements. */
        size_t row = (size_t)dims[ndim - 1], rows = count / row, pitch = row + 5;
        int64_t s = (int64_t)pitch;
        strides[ndim - 1] = 1;
        for (k = ndim - 1; k-- > 0;) {
            strides[k] = s;
            s *= dims[k];
        }
        memset(buf, 0xAB, rows * pitch * elem);
        for (i = 0; i < rows; i++) memcpy(buf + i * pitch * elem, src + i * row * elem, row * elem);
        *use_strides = 1;
    } else {
        memcpy(buf, src, count * elem);
    }
    return buf;
}

static int mode_vectors(const char *path, const char *layout) {
    FILE *f = fopen(path, "rb");
    long size;
    char *text, *cursor, *tok;
    int count = 0;
    if (!f) {
        fprintf(stderr, "FAIL: cannot open %s\n", path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    text = malloc((size_t)size + 1);
    if (fread(text, 1, (size_t)size, f) != (size_t)size) return 1;
    text[size] = 0;
    fclose(f);
    cursor = text;
    while ((tok = next_token(&cursor)) != NULL) {
        int64_t dims[TT_MAX_NDIM], strides[TT_MAX_NDIM];
        tt_context ctx = TT_CONTEXT_INIT;
        unsigned char *name, *stage = NULL, *raw, *buf;
        int32_t dtype;
        size_t ndim, i, nbytes;
        const void *data;
        int use_strides;
        name = unhex(tok, NULL);
        dtype = (int32_t)strtol(next_token(&cursor), NULL, 10);
        ndim = (size_t)strtoul(next_token(&cursor), NULL, 10);
        for (i = 0; i < ndim; i++) dims[i] = strtoll(next_token(&cursor), NULL, 10);
        ctx.seq = parse_opt(next_token(&cursor));
        ctx.layer = parse_opt(next_token(&cursor));
        tok = next_token(&cursor);
        if (strcmp(tok, "-") != 0) stage = unhex(tok, NULL);
        ctx.stage = (const char *)stage;
        raw = unhex(next_token(&cursor), &nbytes);
        buf = arrange(layout, raw, dtype_size(dtype), ndim, dims, strides, &data, &use_strides);
        EXPECT_STATUS(tt_record((const char *)name, dtype, data, ndim, ndim ? dims : NULL,
                                use_strides ? strides : NULL, &ctx),
                      TT_OK);
        free(buf);
        free(raw);
        free(stage);
        free(name);
        count++;
    }
    free(text);
    EXPECT_STATUS(tt_flush(), TT_OK);
    printf("recorded %d tensors (%s)\n", count, layout);
    return failures ? 1 : 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "layout") == 0) return mode_layout();
    if (strcmp(mode, "errors") == 0) return mode_errors();
    if (strcmp(mode, "config-error") == 0) return mode_config_error();
    if (strcmp(mode, "disabled") == 0) return mode_disabled();
    if (strcmp(mode, "threads") == 0) return mode_threads();
    if (strcmp(mode, "vectors") == 0 && argc == 4) return mode_vectors(argv[2], argv[3]);
    fprintf(stderr, "usage: api layout|errors|config-error|disabled|threads|vectors FILE LAYOUT\n");
    return 2;
}
