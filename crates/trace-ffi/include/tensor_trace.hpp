// tensor_trace.hpp: header-only C++17 wrapper over tensor_trace.h (crate trace-ffi).
//
//   tt::scope trace;                                      // flushes when it goes out of scope
//   if (tt::enabled()) {
//       tt::record("blk0/attn_norm", h.data(), {1, 2560}, tt::context().seq(0).layer(0));
//       tt::record("logits", logits);                     // a std::vector, 1-d
//   }
//
// Errors are exceptions: every function that can fail throws tt::error (a std::runtime_error
// carrying the status code and the library's message). The destructor of tt::scope never
// throws: it prints a failed flush to stderr. Code built without exceptions uses the C API.
//
// Types: float, double, int32_t, int64_t, uint8_t, uint32_t, and the 16-bit storage wrappers
// tt::f16_bits / tt::bf16_bits (raw uint16_t bits; reinterpret your half type's storage as them).
// Any other element type is a compile error.
#ifndef TENSOR_TRACE_HPP
#define TENSOR_TRACE_HPP

#include "tensor_trace.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace tt {

/// IEEE binary16 as raw bits (the storage of `_Float16`, `__half`, `ggml_fp16_t`, `c10::Half`).
struct f16_bits {
    std::uint16_t bits;
};

/// bfloat16 as raw bits (the storage of `__nv_bfloat16`, `ggml_bf16_t`, `c10::BFloat16`).
struct bf16_bits {
    std::uint16_t bits;
};

static_assert(sizeof(f16_bits) == 2 && alignof(f16_bits) == alignof(std::uint16_t),
              "f16_bits must be layout-compatible with uint16_t");
static_assert(sizeof(bf16_bits) == 2 && alignof(bf16_bits) == alignof(std::uint16_t),
              "bf16_bits must be layout-compatible with uint16_t");

template <class T>
struct always_false : std::false_type {};

/// The TT_DTYPE_* code of an element type; unsupported types do not compile.
template <class T>
struct dtype_of {
    static_assert(always_false<T>::value,
                  "tensor-trace records float, double, int32_t, int64_t, uint8_t, uint32_t, "
                  "tt::f16_bits and tt::bf16_bits");
};
template <> struct dtype_of<float> { static constexpr std::int32_t value = TT_DTYPE_F32; };
template <> struct dtype_of<double> { static constexpr std::int32_t value = TT_DTYPE_F64; };
template <> struct dtype_of<f16_bits> { static constexpr std::int32_t value = TT_DTYPE_F16; };
template <> struct dtype_of<bf16_bits> { static constexpr std::int32_t value = TT_DTYPE_BF16; };
template <> struct dtype_of<std::int64_t> { static constexpr std::int32_t value = TT_DTYPE_I64; };
template <> struct dtype_of<std::int32_t> { static constexpr std::int32_t value = TT_DTYPE_I32; };
template <> struct dtype_of<std::uint32_t> { static constexpr std::int32_t value = TT_DTYPE_U32; };
template <> struct dtype_of<std::uint8_t> { static constexpr std::int32_t value = TT_DTYPE_U8; };

/// A failed call: the status code (TT_ERR_*) and the library's message.
class error : public std::runtime_error {
public:
    error(std::int32_t status, const std::string& message)
        : std::runtime_error(message), status_(status) {}

    /// The TT_ERR_* code.
    std::int32_t status() const noexcept { return status_; }

private:
    std::int32_t status_;
};

/// Throws tt::error for a status other than TT_OK, with the thread's last error message.
inline void check(std::int32_t status) {
    if (status != TT_OK) {
        throw error(status, std::string(tt_status_name(status)) + ": " + tt_last_error());
    }
}

/// A borrowed list of int64_t (dimensions or strides): `{2, 3}`, a std::vector<int64_t>, a
/// std::array, a c10::IntArrayRef, or a pointer and a count. Pass it as an argument only: a
/// braced list lives until the end of the full expression.
class dims {
public:
    dims() noexcept = default;
    // The braced list's array lives until the end of the full expression that holds the call,
    // which is all a `dims` parameter needs; GCC cannot see that and warns.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winit-list-lifetime"
#endif
    dims(std::initializer_list<std::int64_t> list) noexcept
        : data_(list.begin()), size_(list.size()) {}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
    dims(const std::int64_t* data, std::size_t size) noexcept : data_(data), size_(size) {}
    template <class C,
              class = std::enable_if_t<std::is_convertible<
                  decltype(std::declval<const C&>().data()), const std::int64_t*>::value>>
    dims(const C& c) noexcept : data_(c.data()), size_(c.size()) {}

    const std::int64_t* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }

private:
    const std::int64_t* data_ = nullptr;
    std::size_t size_ = 0;
};

/// A tensor name: a C string or a std::string (borrowed for the call).
class name_ref {
public:
    name_ref(const char* name) noexcept : name_(name) {}
    name_ref(const std::string& name) noexcept : name_(name.c_str()) {}

    const char* c_str() const noexcept { return name_; }

private:
    const char* name_;
};

/// The record's context (seq, layer, stage); every field absent until set.
///
///   tt::context().seq(pos).layer(il).stage("ffn_out")
///
/// The stage string is borrowed: it must outlive the record call.
class context {
public:
    context() noexcept = default;

    context& seq(std::int64_t seq) noexcept { raw_.seq = seq; return *this; }
    context& layer(std::int64_t layer) noexcept { raw_.layer = layer; return *this; }
    context& stage(const char* stage) noexcept { raw_.stage = stage; return *this; }

    const tt_context* get() const noexcept { return &raw_; }

private:
    tt_context raw_ = TT_CONTEXT_INIT;
};

/// Whether tracing is on (one relaxed atomic load): guard work done only for tracing with it.
inline bool enabled() noexcept { return tt_enabled() != 0; }

/// Whether a record of `name` would be written (enabled and passing TENSOR_TRACE_FILTER).
inline bool wants(name_ref name) noexcept { return tt_wants(name.c_str()) != 0; }

/// Waits until every record is on disk; throws what the background writer hit.
inline void flush() { check(tt_flush()); }

/// Records `shape` elements at `data` with `strides` in elements (any sign, 0 to broadcast).
template <class T>
void record(name_ref name, const T* data, dims shape, dims strides,
            const context& ctx = context()) {
    if (strides.size() != shape.size()) {
        throw error(TT_ERR_ARG, "TT_ERR_ARG: tt::record: " + std::to_string(strides.size()) +
                                    " strides for " + std::to_string(shape.size()) +
                                    " dimensions");
    }
    check(tt_record(name.c_str(), dtype_of<T>::value, data, shape.size(), shape.data(),
                    strides.data(), ctx.get()));
}

/// Records a dense row-major tensor of `shape` at `data`.
template <class T>
void record(name_ref name, const T* data, dims shape, const context& ctx = context()) {
    check(tt_record(name.c_str(), dtype_of<T>::value, data, shape.size(), shape.data(), nullptr,
                    ctx.get()));
}

/// Records a vector as a 1-d tensor.
template <class T, class A>
void record(name_ref name, const std::vector<T, A>& values, const context& ctx = context()) {
    const std::int64_t n = static_cast<std::int64_t>(values.size());
    check(tt_record(name.c_str(), dtype_of<T>::value, values.data(), 1, &n, nullptr, ctx.get()));
}

/// Records a vector holding a dense row-major tensor of `shape`.
template <class T, class A>
void record(name_ref name, const std::vector<T, A>& values, dims shape,
            const context& ctx = context()) {
    record(name, values.data(), shape, ctx);
}

/// RAII: checks at construction that header and library agree, flushes at destruction.
///
/// Keep one alive for the duration of the run (e.g. in main); the destructor prints a failed
/// flush to stderr instead of throwing.
class scope {
public:
    scope() {
        if (tt_abi_version() != TT_ABI_VERSION) {
            throw error(TT_ERR_INTERNAL, "TT_ERR_INTERNAL: tensor_trace.h is ABI version " +
                                             std::to_string(TT_ABI_VERSION) +
                                             " but the library is version " +
                                             std::to_string(tt_abi_version()));
        }
    }
    scope(const scope&) = delete;
    scope& operator=(const scope&) = delete;
    ~scope() {
        if (tt_flush() != TT_OK) {
            std::fprintf(stderr, "tensor-trace: flush at scope exit: %s\n", tt_last_error());
        }
    }

    /// Flushes now; throws on error.
    void flush() { tt::flush(); }
};

}  // namespace tt

#endif  // TENSOR_TRACE_HPP
