// Exercises the C++ wrapper; tests/ffi/programs.rs records the same tensors with trace-core and
// compares the two directories. Prints "FAIL: ..." and exits 1 on a wrong answer.
#include "tensor_trace.hpp"

#include <array>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

static int failures = 0;

static void expect(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "FAIL: %s\n", what);
        failures++;
    }
}

template <class F>
static void expect_error(F&& call, std::int32_t status, const char* what) {
    try {
        call();
        std::fprintf(stderr, "FAIL: %s did not throw\n", what);
        failures++;
    } catch (const tt::error& e) {
        if (e.status() != status || std::strstr(e.what(), tt_status_name(status)) == nullptr) {
            std::fprintf(stderr, "FAIL: %s threw %d: %s\n", what, e.status(), e.what());
            failures++;
        }
    }
}

int main() {
    tt::scope trace;  // flushes at the end of main
    expect(tt::enabled(), "tracing should be enabled");
    expect(tt::wants("cpp/f32") && !tt::wants("skipped/x"), "wants follows the filter");

    std::vector<float> f32 = {0.5f, -1.25f, 3.0f, 1e-3f, -0.0f};
    tt::record("cpp/f32", f32, tt::context().seq(0).layer(0).stage("q"));

    const double f64[6] = {1.0 / 3.0, -2.5, 1e300, 4.0, 5.0, -6.0};
    tt::record("cpp/f64", f64, {2, 3}, tt::context().layer(-1));

    std::vector<std::int32_t> i32 = {-7, 0, 7, 2147483647};
    tt::record(std::string("cpp/i32"), i32, {2, 2});

    std::array<std::int64_t, 3> i64 = {-(1LL << 40), 16777217, 42};
    std::vector<std::int64_t> i64_shape = {3};
    tt::record("cpp/i64", i64.data(), i64_shape, tt::context().seq(1));

    std::vector<std::uint8_t> u8 = {0, 1, 128, 255};
    tt::record("cpp/u8", u8);
    std::vector<std::uint32_t> u32 = {0u, 4294967295u, 16777217u};
    tt::record("cpp/u32", u32);

    // 1.0, -2.0, 0.5, +inf as binary16; 1.0, -2.0, NaN as bfloat16.
    std::vector<tt::f16_bits> f16 = {{0x3C00}, {0xC000}, {0x3800}, {0x7C00}};
    tt::record("cpp/f16", f16, {2, 2});
    std::vector<tt::bf16_bits> bf16 = {{0x3F80}, {0xC000}, {0x7FC0}};
    tt::record("cpp/bf16", bf16, tt::context().stage("logits"));

    // The transpose of a 2 x 3 row-major matrix, as a 3 x 2 view: strides in elements.
    const float m[6] = {1, 2, 3, 4, 5, 6};
    tt::record("cpp/strided", m, {3, 2}, {1, 3});

    // Names outside the filter are not recorded (and not read).
    tt::record("skipped/x", f32);
    // Repeats get occurrences, never overwrite.
    tt::record("cpp/f32", f32, tt::context().seq(1).layer(0).stage("q"));

    expect_error([&] { tt::record("bad", f64, {2, -3}); }, TT_ERR_SHAPE, "negative dimension");
    expect_error([&] { tt::record("bad", m, {3, 2}, {1}); }, TT_ERR_ARG, "strides of wrong rank");
    expect_error([&] { tt::record("bad", static_cast<const float*>(nullptr), {2}); }, TT_ERR_NULL,
                 "NULL data");
    trace.flush();
    std::printf("ok\n");
    return failures ? 1 : 0;
}
