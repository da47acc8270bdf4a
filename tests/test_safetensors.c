// Safetensors reader/writer: fp16/bf16 conversions against hand-computed bit patterns, round trips,
// every class of malformed file (one-line messages naming the file), and truncation at every length.
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "test_util.h"

static char temp_dir[256];

static void join(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", temp_dir, name); }

static void write_bytes(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(2);
    }
    if (n && fwrite(bytes, 1, n, f) != n) exit(2);
    fclose(f);
}

// 8-byte little-endian length + header + data.
static void write_st(const char *path, const char *header, const void *data, size_t data_len) {
    size_t hl = strlen(header);
    uint8_t *buf = malloc(8 + hl + data_len + 1);
    uint64_t n = hl;
    memcpy(buf, &n, 8);
    memcpy(buf + 8, header, hl);
    if (data_len) memcpy(buf + 8 + hl, data, data_len);
    write_bytes(path, buf, 8 + hl + data_len);
    free(buf);
}

static uint8_t *read_whole(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) exit(2);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

// Opens a hand-made file and expects failure whose single-line message names the file and has `needle`.
static void expect_bad(const char *name, const char *header, const void *data, size_t data_len,
                       const char *needle) {
    char path[512];
    join(path, sizeof path, name);
    write_st(path, header, data, data_len);
    qft_safetensors st;
    qft_error err = {{0}};
    qft_status s = qft_safetensors_open(&st, path, &err);
    CHECK(s != QFT_OK, "%s: expected failure", name);
    CHECK(strstr(err.message, path) != NULL, "%s: message lacks path: %s", name, err.message);
    CHECK(strstr(err.message, needle) != NULL, "%s: message lacks '%s': %s", name, needle, err.message);
    CHECK(strchr(err.message, '\n') == NULL, "%s: message is not one line: %s", name, err.message);
    CHECK(st.map == NULL && st.tensors == NULL && st.count == 0, "%s: struct not reset on failure", name);
    qft_safetensors_close(&st);  // must be harmless
}

static void test_f16_conversions(void) {
    const struct {
        uint32_t f32;
        uint16_t f16;
    } cases[] = {
        {0x3f800000u, 0x3c00}, // 1.0
        {0xc0000000u, 0xc000}, // -2.0
        {0x00000000u, 0x0000}, // +0
        {0x80000000u, 0x8000}, // -0
        {0x477fe000u, 0x7bff}, // 65504, largest half
        {0x477fefffu, 0x7bff}, // just below the 65520 tie
        {0x477ff000u, 0x7c00}, // 65520: tie, even is 65536 -> inf
        {0x7f800000u, 0x7c00}, // inf
        {0xff800000u, 0xfc00}, // -inf
        {0x7f7fffffu, 0x7c00}, // FLT_MAX -> inf
        {0x33800000u, 0x0001}, // 2^-24, smallest subnormal
        {0x33000000u, 0x0000}, // 2^-25: tie between 0 and 2^-24 -> 0 (even)
        {0x33000001u, 0x0001}, // just above the tie
        {0x33c00000u, 0x0002}, // 1.5 * 2^-24: tie between 1 and 2 -> 2
        {0x34200000u, 0x0002}, // 2.5 * 2^-24: tie between 2 and 3 -> 2
        {0x38800000u, 0x0400}, // 2^-14, smallest normal
        {0x387fc000u, 0x03ff}, // 1023 * 2^-24, largest subnormal
        {0x387fe000u, 0x0400}, // 1023.5 * 2^-24: tie -> 1024 (even) = smallest normal
        {0x3f801000u, 0x3c00}, // 1 + 2^-11: tie -> 1.0 (even)
        {0x3f803000u, 0x3c02}, // 1 + 3*2^-11: tie between 0x3c01 and 0x3c02 -> 0x3c02
        {0x3f801001u, 0x3c01}, // just above the tie
        {0x3dcccccdu, 0x2e66}, // 0.1
        {0x00000001u, 0x0000}, // fp32 subnormal -> 0
        {0x80000001u, 0x8000}, // negative fp32 subnormal -> -0
        {0xb3800000u, 0x8001}, // -2^-24
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t h = qft_f32_to_f16(from_bits(cases[i].f32));
        CHECK(h == cases[i].f16, "f32 0x%08x -> f16 0x%04x, expected 0x%04x", cases[i].f32, h, cases[i].f16);
    }
    const struct {
        uint16_t f16;
        uint32_t f32;
    } back[] = {
        {0x0001, 0x33800000u}, {0x8001, 0xb3800000u}, {0x03ff, 0x387fc000u}, {0x0200, 0x38000000u},
        {0x7bff, 0x477fe000u}, {0x7c00, 0x7f800000u}, {0xfc00, 0xff800000u}, {0x3555, 0x3eaaa000u},
        {0x8000, 0x80000000u}, {0x7e00, 0x7fc00000u}, {0x7c01, 0x7f802000u},
    };
    for (size_t i = 0; i < sizeof back / sizeof back[0]; i++) {
        uint32_t u = to_bits(qft_f16_to_f32(back[i].f16));
        CHECK(u == back[i].f32, "f16 0x%04x -> f32 0x%08x, expected 0x%08x", back[i].f16, u, back[i].f32);
    }
    uint16_t nan_h = qft_f32_to_f16(from_bits(0x7f800001u));  // signalling NaN with a low payload
    CHECK((nan_h & 0x7c00) == 0x7c00 && (nan_h & 0x3ff) != 0, "sNaN -> f16 0x%04x is not NaN", nan_h);
    CHECK(qft_f32_to_f16(from_bits(0xffc00000u)) == 0xfe00, "-qNaN keeps sign");
    // Exhaustive: every half survives f16 -> f32 -> f16 (NaNs stay NaN).
    int mismatches = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t again = qft_f32_to_f16(qft_f16_to_f32((uint16_t)h));
        int is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (is_nan ? !((again & 0x7c00) == 0x7c00 && (again & 0x3ff)) : again != h) mismatches++;
    }
    CHECK(mismatches == 0, "%d half values do not round-trip", mismatches);
    // Exhaustive-ish: against the double-precision definition of nearest-even on a dense sweep.
    int bad_round = 0;
    for (uint32_t u = 0x30000000u; u < 0x47800000u; u += 0x1f3u) {
        float f = from_bits(u);
        uint16_t h = qft_f32_to_f16(f);
        double got = qft_f16_to_f32(h), lo = qft_f16_to_f32((uint16_t)(h - (h > 0))),
               hi = qft_f16_to_f32((uint16_t)(h + 1));
        double err = fabs(got - f), err_lo = fabs(lo - f), err_hi = fabs(hi - f);
        if ((h & 0x7c00) != 0x7c00 && (err > err_lo || err > err_hi || (err == err_hi && (h & 1)) ||
                                       (err == err_lo && h > 0 && (h & 1))))
            bad_round++;
    }
    CHECK(bad_round == 0, "%d fp32 values not rounded to nearest-even f16", bad_round);
}

static void test_bf16_conversions(void) {
    const struct {
        uint32_t f32;
        uint16_t bf16;
    } cases[] = {
        {0x3f800000u, 0x3f80}, // 1.0
        {0x3f808000u, 0x3f80}, // tie -> even (0x3f80)
        {0x3f818000u, 0x3f82}, // tie -> even (0x3f82)
        {0x3f808001u, 0x3f81}, // above tie
        {0x3f807fffu, 0x3f80}, // below tie
        {0x7f7fffffu, 0x7f80}, // FLT_MAX rounds to inf
        {0x7f800000u, 0x7f80}, // inf
        {0xff800000u, 0xff80}, // -inf
        {0x7fc00000u, 0x7fc0}, // qNaN
        {0x7f800001u, 0x7fc0}, // sNaN stays NaN (quiet), not inf
        {0x00000001u, 0x0000}, // tiny subnormal
        {0x00008000u, 0x0000}, // subnormal tie -> even 0
        {0x00018000u, 0x0002}, // subnormal tie -> even 2
        {0x80000000u, 0x8000}, // -0
        {0x3dcccccdu, 0x3dcd}, // 0.1
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t b = qft_f32_to_bf16(from_bits(cases[i].f32));
        CHECK(b == cases[i].bf16, "f32 0x%08x -> bf16 0x%04x, expected 0x%04x", cases[i].f32, b, cases[i].bf16);
    }
    int mismatches = 0;
    for (uint32_t b = 0; b < 65536; b++) {
        float f = qft_bf16_to_f32((uint16_t)b);
        if (to_bits(f) != b << 16) mismatches++;
        int is_nan = (b & 0x7f80) == 0x7f80 && (b & 0x7f);
        uint16_t again = qft_f32_to_bf16(f);
        if (is_nan ? !((again & 0x7f80) == 0x7f80 && (again & 0x7f)) : again != b) mismatches++;
    }
    CHECK(mismatches == 0, "%d bf16 values do not round-trip", mismatches);
}

static void test_round_trip(void) {
    char path[512];
    join(path, sizeof path, "round.safetensors");

    const float f32_values[6] = {1.0f, -2.5f, 0.0f, -0.0f, from_bits(0x00000001u), 3.14159265f};
    const float special[4] = {INFINITY, -INFINITY, NAN, 1e-45f};
    // Halves from f32 with rounding (ties, subnormals, overflow) and from raw bits.
    const float to_half[6] = {1.0f, from_bits(0x3f801000u), from_bits(0x3f803000u), from_bits(0x33c00000u),
                              65520.0f, -INFINITY};
    const uint16_t half_expected[6] = {0x3c00, 0x3c00, 0x3c02, 0x0002, 0x7c00, 0xfc00};
    const uint16_t half_raw[3] = {0x0001, 0x7bff, 0x7e00};
    const float to_bf16[4] = {from_bits(0x3f808000u), from_bits(0x3f818000u), NAN, 0.1f};
    const uint16_t bf16_expected[4] = {0x3f80, 0x3f82, 0x7fc0, 0x3dcd};
    const int32_t i32_values[4] = {0, -1, INT32_MAX, INT32_MIN};
    const int64_t i64_values[4] = {7, -7, INT32_MAX, INT32_MIN};
    const float scalar = 42.0f;

    const int64_t shape23[2] = {2, 3}, shape4[1] = {4}, shape6[1] = {6}, shape3[1] = {3}, shape22[2] = {2, 2},
                  shape_empty[2] = {0, 5};
    qft_write_tensor tensors[] = {
        {"dense.weight", QFT_DTYPE_F32, 2, shape23, f32_values, 1},
        {"special", QFT_DTYPE_F32, 1, shape4, special, 0},
        {"half.from_f32", QFT_DTYPE_F16, 1, shape6, to_half, 1},
        {"half.raw", QFT_DTYPE_F16, 1, shape3, half_raw, 0},
        {"bf16.from_f32", QFT_DTYPE_BF16, 1, shape4, to_bf16, 1},
        {"ids", QFT_DTYPE_I32, 1, shape4, i32_values, 0},
        {"positions", QFT_DTYPE_I64, 2, shape22, i64_values, 0},
        {"scalar", QFT_DTYPE_F32, 0, NULL, &scalar, 1},
        {"empty", QFT_DTYPE_F32, 2, shape_empty, NULL, 0},
        {"name \"quoted\" \\ tab\t\xc3\xa9", QFT_DTYPE_BF16, 1, shape4, to_bf16, 1},
    };
    int count = (int)(sizeof tensors / sizeof tensors[0]);
    const char *metadata[] = {"format", "pt", "qft.step", "123", "weird \"key\"\n", "v\\al\xe2\x82\xac", NULL};
    qft_error err = {{0}};
    qft_status s = qft_safetensors_write(path, tensors, count, metadata, &err);
    CHECK(s == QFT_OK, "write failed: %s", err.message);

    // No temp file is left behind.
    DIR *dir = opendir(temp_dir);
    int temps = 0;
    for (struct dirent *e; dir && (e = readdir(dir));) temps += strstr(e->d_name, ".tmp.") != NULL;
    if (dir) closedir(dir);
    CHECK(temps == 0, "%d temp files left behind", temps);

    // Header layout: length multiple of 8, space padded, __metadata__ first.
    size_t len = 0;
    uint8_t *bytes = read_whole(path, &len);
    uint64_t header_len;
    memcpy(&header_len, bytes, 8);
    CHECK(header_len % 8 == 0, "header length %llu not a multiple of 8", (unsigned long long)header_len);
    CHECK(memcmp(bytes + 8, "{\"__metadata__\":{\"format\":\"pt\"", 30) == 0, "header starts %.40s", bytes + 8);
    size_t last = 8 + header_len - 1;
    while (bytes[last] == ' ') last--;
    CHECK(bytes[last] == '}', "header ends with '%c' before padding", bytes[last]);
    CHECK(8 + header_len - 1 - last < 8, "more than 7 padding bytes");

    qft_safetensors st;
    s = qft_safetensors_open(&st, path, &err);
    CHECK(s == QFT_OK, "open failed: %s", err.message);
    if (s != QFT_OK) {
        free(bytes);
        return;
    }
    CHECK(st.count == count, "count %d", st.count);
    for (int i = 0; i < st.count && i < count; i++)  // laid out in the order given
        CHECK(strcmp(st.tensors[i].name, tensors[i].name) == 0, "tensor %d is '%s'", i, st.tensors[i].name);
    CHECK(st.data_size == len - 8 - header_len, "data size");
    CHECK(st.data == st.map + 8 + header_len, "data pointer");

    const qft_tensor_info *t = qft_safetensors_find(&st, "dense.weight");
    CHECK(t && t->dtype == QFT_DTYPE_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->numel == 6 &&
              t->nbytes == 24 && t->offset == 0,
          "dense.weight info");
    float out[8];
    if (t) {
        CHECK(qft_safetensors_read_f32(&st, t, out, &err) == QFT_OK, "%s", err.message);
        CHECK(memcmp(out, f32_values, sizeof f32_values) == 0, "F32 not bit exact");
    }
    t = qft_safetensors_find(&st, "special");
    if (t && qft_safetensors_read_f32(&st, t, out, &err) == QFT_OK) {
        CHECK(isinf(out[0]) && out[0] > 0 && isinf(out[1]) && out[1] < 0 && isnan(out[2]) && out[3] == 1e-45f,
              "special values");
    } else {
        CHECK(0, "special: %s", err.message);
    }
    t = qft_safetensors_find(&st, "half.from_f32");
    CHECK(t && t->dtype == QFT_DTYPE_F16 && t->nbytes == 12, "half info");
    if (t) {
        CHECK(memcmp(qft_safetensors_data(&st, t), half_expected, sizeof half_expected) == 0, "F16 bits");
        CHECK(qft_safetensors_read_f32(&st, t, out, &err) == QFT_OK, "%s", err.message);
        CHECK(out[0] == 1.0f && out[1] == 1.0f && out[2] == from_bits(0x3f804000u) &&
                  out[3] == from_bits(0x34000000u) && isinf(out[4]) && isinf(out[5]) && out[5] < 0,
              "F16 -> f32 values");
    }
    t = qft_safetensors_find(&st, "half.raw");
    if (t && qft_safetensors_read_f32(&st, t, out, &err) == QFT_OK)
        CHECK(out[0] == from_bits(0x33800000u) && out[1] == 65504.0f && isnan(out[2]), "raw F16 values");
    else
        CHECK(0, "half.raw: %s", err.message);
    t = qft_safetensors_find(&st, "bf16.from_f32");
    if (t) {
        CHECK(memcmp(qft_safetensors_data(&st, t), bf16_expected, sizeof bf16_expected) == 0, "BF16 bits");
        CHECK(qft_safetensors_read_f32(&st, t, out, &err) == QFT_OK, "%s", err.message);
        CHECK(out[0] == 1.0f && out[1] == from_bits(0x3f820000u) && isnan(out[2]) && out[3] == from_bits(0x3dcd0000u),
              "BF16 -> f32 values");
    }
    int32_t ints[4];
    t = qft_safetensors_find(&st, "ids");
    CHECK(t && qft_safetensors_read_i32(&st, t, ints, &err) == QFT_OK && memcmp(ints, i32_values, 16) == 0, "I32");
    t = qft_safetensors_find(&st, "positions");
    CHECK(t && t->dtype == QFT_DTYPE_I64 && qft_safetensors_read_i32(&st, t, ints, &err) == QFT_OK &&
              ints[0] == 7 && ints[1] == -7 && ints[2] == INT32_MAX && ints[3] == INT32_MIN,
          "I64 -> int32: %s", err.message);
    t = qft_safetensors_find(&st, "scalar");
    CHECK(t && t->ndim == 0 && t->numel == 1 && qft_safetensors_read_f32(&st, t, out, &err) == QFT_OK && out[0] == 42.0f,
          "scalar");
    t = qft_safetensors_find(&st, "empty");
    CHECK(t && t->numel == 0 && t->nbytes == 0 && qft_safetensors_read_f32(&st, t, out, &err) == QFT_OK, "empty");
    t = qft_safetensors_find(&st, "name \"quoted\" \\ tab\t\xc3\xa9");
    CHECK(t != NULL, "escaped name not found");

    // Wrong-kind reads are errors naming the tensor.
    t = qft_safetensors_find(&st, "ids");
    s = qft_safetensors_read_f32(&st, t, out, &err);
    CHECK(s != QFT_OK && strstr(err.message, "'ids'") && strstr(err.message, "I32"), "read_f32(I32): %s", err.message);
    t = qft_safetensors_find(&st, "dense.weight");
    s = qft_safetensors_read_i32(&st, t, ints, &err);
    CHECK(s != QFT_OK && strstr(err.message, "dense.weight"), "read_i32(F32): %s", err.message);

    CHECK(qft_safetensors_find(&st, "nope") == NULL, "find missing");
    CHECK(qft_safetensors_find(&st, "__metadata__") == NULL, "__metadata__ is not a tensor");
    const char *v = qft_safetensors_metadata(&st, "qft.step");
    CHECK(v && strcmp(v, "123") == 0, "metadata qft.step");
    v = qft_safetensors_metadata(&st, "weird \"key\"\n");
    CHECK(v && strcmp(v, "v\\al\xe2\x82\xac") == 0, "escaped metadata");
    CHECK(qft_safetensors_metadata(&st, "absent") == NULL, "absent metadata");
    CHECK(st.metadata_count == 3, "metadata count %d", st.metadata_count);

    // expect(): shape checks for importers.
    const qft_tensor_info *found = NULL;
    CHECK(qft_safetensors_expect(&st, "dense.weight", 2, shape23, &found, &err) == QFT_OK && found, "expect ok");
    const int64_t wrong[2] = {2, 4};
    s = qft_safetensors_expect(&st, "dense.weight", 2, wrong, &found, &err);
    CHECK(s == QFT_ERR_SHAPE && found == NULL, "expect wrong shape status");
    CHECK(strstr(err.message, "tensor 'dense.weight': expected shape [2, 4], got [2, 3]") &&
              strstr(err.message, path),
          "expect message: %s", err.message);
    s = qft_safetensors_expect(&st, "dense.weight", 1, shape6, NULL, &err);
    CHECK(s == QFT_ERR_SHAPE && strstr(err.message, "expected shape [6], got [2, 3]"), "rank: %s", err.message);
    s = qft_safetensors_expect(&st, "scalar", 0, NULL, NULL, &err);
    CHECK(s == QFT_OK, "scalar expect: %s", err.message);
    s = qft_safetensors_expect(&st, "missing.w", 2, shape23, NULL, &err);
    CHECK(s == QFT_ERR_SHAPE && strstr(err.message, "missing tensor 'missing.w'") && strstr(err.message, path),
          "missing: %s", err.message);
    qft_safetensors_close(&st);
    qft_safetensors_close(&st);  // idempotent
    free(bytes);
}

static void test_exact_header(void) {
    char path[512];
    join(path, sizeof path, "exact.safetensors");
    const float x[1] = {1.0f};
    const int64_t shape[1] = {1};
    qft_write_tensor t = {"a", QFT_DTYPE_F32, 1, shape, x, 0};
    qft_error err = {{0}};
    CHECK(qft_safetensors_write(path, &t, 1, NULL, &err) == QFT_OK, "%s", err.message);
    size_t len;
    uint8_t *bytes = read_whole(path, &len);
    const char *want = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";  // 54 bytes -> 56
    uint64_t hl;
    memcpy(&hl, bytes, 8);
    CHECK(hl == 56 && len == 8 + 56 + 4, "header %llu, file %zu", (unsigned long long)hl, len);
    CHECK(memcmp(bytes + 8, want, strlen(want)) == 0 && memcmp(bytes + 8 + 54, "  ", 2) == 0, "header text %.56s",
          bytes + 8);
    CHECK(memcmp(bytes + 64, x, 4) == 0, "payload");
    free(bytes);

    // Zero tensors and no metadata is a valid (empty) file; overwriting replaces it atomically.
    CHECK(qft_safetensors_write(path, NULL, 0, NULL, &err) == QFT_OK, "empty write: %s", err.message);
    qft_safetensors st;
    CHECK(qft_safetensors_open(&st, path, &err) == QFT_OK && st.count == 0, "empty open: %s", err.message);
    qft_safetensors_close(&st);
}

static void test_writer_errors(void) {
    char path[512];
    join(path, sizeof path, "bad_write.safetensors");
    const float x[4] = {0};
    const int64_t shape[1] = {4}, negative[1] = {-1};
    qft_error err = {{0}};
    qft_write_tensor dup[2] = {{"w", QFT_DTYPE_F32, 1, shape, x, 0}, {"w", QFT_DTYPE_F32, 1, shape, x, 0}};
    CHECK(qft_safetensors_write(path, dup, 2, NULL, &err) != QFT_OK && strstr(err.message, "duplicate tensor name 'w'"),
          "dup: %s", err.message);
    qft_write_tensor f64 = {"w", QFT_DTYPE_F64, 1, shape, x, 0};
    CHECK(qft_safetensors_write(path, &f64, 1, NULL, &err) != QFT_OK && strstr(err.message, "F64"), "f64: %s",
          err.message);
    qft_write_tensor int_from_float = {"w", QFT_DTYPE_I32, 1, shape, x, 1};
    CHECK(qft_safetensors_write(path, &int_from_float, 1, NULL, &err) != QFT_OK, "int from float");
    qft_write_tensor neg = {"w", QFT_DTYPE_F32, 1, negative, x, 0};
    CHECK(qft_safetensors_write(path, &neg, 1, NULL, &err) != QFT_OK && strstr(err.message, "negative"), "neg: %s",
          err.message);
    qft_write_tensor null_data = {"w", QFT_DTYPE_F32, 1, shape, NULL, 0};
    CHECK(qft_safetensors_write(path, &null_data, 1, NULL, &err) != QFT_OK && strstr(err.message, "NULL data"),
          "null data: %s", err.message);
    qft_write_tensor reserved = {"__metadata__", QFT_DTYPE_F32, 1, shape, x, 0};
    CHECK(qft_safetensors_write(path, &reserved, 1, NULL, &err) != QFT_OK, "reserved name");
    qft_write_tensor bad_utf8 = {"w\xff", QFT_DTYPE_F32, 1, shape, x, 0};
    CHECK(qft_safetensors_write(path, &bad_utf8, 1, NULL, &err) != QFT_OK && strstr(err.message, "UTF-8"),
          "utf8: %s", err.message);
    const char *dup_meta[] = {"k", "1", "k", "2", NULL};
    qft_write_tensor ok = {"w", QFT_DTYPE_F32, 1, shape, x, 0};
    CHECK(qft_safetensors_write(path, &ok, 1, dup_meta, &err) != QFT_OK && strstr(err.message, "duplicate metadata"),
          "dup meta: %s", err.message);
    CHECK(access(path, F_OK) != 0, "a failed write left %s behind", path);

    char missing_dir[600];
    snprintf(missing_dir, sizeof missing_dir, "%s/no/such/dir/x.safetensors", temp_dir);
    qft_status s = qft_safetensors_write(missing_dir, &ok, 1, NULL, &err);
    CHECK(s == QFT_ERR_IO && strstr(err.message, missing_dir), "missing dir: %s", err.message);

    // A failed write leaves the previous file intact.
    const float y[4] = {1, 2, 3, 4};
    qft_write_tensor good = {"w", QFT_DTYPE_F32, 1, shape, y, 0};
    CHECK(qft_safetensors_write(path, &good, 1, NULL, &err) == QFT_OK, "%s", err.message);
    CHECK(qft_safetensors_write(path, dup, 2, NULL, &err) != QFT_OK, "dup again");
    qft_safetensors st;
    float out[4] = {0};
    CHECK(qft_safetensors_open(&st, path, &err) == QFT_OK &&
              qft_safetensors_read_f32(&st, qft_safetensors_find(&st, "w"), out, &err) == QFT_OK && out[3] == 4.0f,
          "previous file intact: %s", err.message);
    qft_safetensors_close(&st);
}

static void test_bad_files(void) {
    uint8_t data[64] = {0};
    char path[512];
    qft_safetensors st;
    qft_error err = {{0}};

    // Files too short to hold the length field.
    for (size_t n = 0; n < 8; n++) {
        join(path, sizeof path, "short.safetensors");
        write_bytes(path, data, n);
        qft_status s = qft_safetensors_open(&st, path, &err);
        CHECK(s != QFT_OK && strstr(err.message, "too short") && strstr(err.message, path), "short %zu: %s", n,
              err.message);
    }
    // Header length beyond the file / over the cap.
    uint8_t head[16] = {0};
    uint64_t n = 100;
    memcpy(head, &n, 8);
    memcpy(head + 8, "{}      ", 8);
    join(path, sizeof path, "header_past_end.safetensors");
    write_bytes(path, head, 16);
    CHECK(qft_safetensors_open(&st, path, &err) != QFT_OK && strstr(err.message, "exceeds") &&
              strstr(err.message, "truncated"),
          "past end: %s", err.message);
    n = 200000000ull;
    memcpy(head, &n, 8);
    join(path, sizeof path, "oversized.safetensors");
    write_bytes(path, head, 16);
    CHECK(qft_safetensors_open(&st, path, &err) != QFT_OK && strstr(err.message, "oversized header"), "oversized: %s",
          err.message);
    n = UINT64_MAX;
    memcpy(head, &n, 8);
    write_bytes(path, head, 16);
    CHECK(qft_safetensors_open(&st, path, &err) != QFT_OK && strstr(err.message, "oversized header"), "u64 max: %s",
          err.message);

    // Not files at all.
    join(path, sizeof path, "does_not_exist.safetensors");
    CHECK(qft_safetensors_open(&st, path, &err) == QFT_ERR_IO && strstr(err.message, "cannot open") &&
              strstr(err.message, path),
          "missing: %s", err.message);
    CHECK(qft_safetensors_open(&st, temp_dir, &err) == QFT_ERR_IO && strstr(err.message, "not a regular file"),
          "directory: %s", err.message);

    expect_bad("empty_header.safetensors", "", NULL, 0, "cannot hold");
    expect_bad("one_byte_header.safetensors", "{", NULL, 0, "cannot hold");
    expect_bad("bad_json.safetensors", "{\"a\":", NULL, 0, "not valid JSON");
    expect_bad("array.safetensors", "[1, 2]", NULL, 0, "expected a JSON object");
    expect_bad("trailing.safetensors", "{} x", NULL, 0, "trailing bytes after the JSON");
    expect_bad("two_objects.safetensors", "{}{}", NULL, 0, "trailing bytes after the JSON");
    expect_bad("nul.safetensors", "{\"a\x01\":1}", NULL, 0, "control byte");
    expect_bad("utf8.safetensors", "{\"\xc3\x28\":{}}", NULL, 0, "UTF-8");
    expect_bad("overlong_utf8.safetensors", "{\"\xc0\xaf\":{}}", NULL, 0, "UTF-8");
    expect_bad("entry_number.safetensors", "{\"w\":5}", NULL, 0, "tensor 'w': entry is a number");
    expect_bad("no_dtype.safetensors", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", data, 4,
               "tensor 'w': missing \"dtype\"");
    expect_bad("no_shape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", data, 4,
               "tensor 'w': missing \"shape\"");
    expect_bad("no_offsets.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", data, 4,
               "tensor 'w': missing \"data_offsets\"");
    expect_bad("dtype_number.safetensors", "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", data, 4,
               "\"dtype\" is a number");
    expect_bad("shape_string.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", data,
               4, "\"shape\" is a string");
    expect_bad("unknown_dtype.safetensors", "{\"w\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", data,
               4, "unknown dtype 'F33'");
    expect_bad("negative_dim.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", data,
               4, "negative dimension");
    expect_bad("fraction_dim.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", data,
               4, "not an integer");
    expect_bad("string_dim.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,4]}}", data,
               4, "not an integer");
    expect_bad("huge_dim.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}}", data, 4,
               "too large");
    expect_bad("overflow.safetensors",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", data, 4,
               "overflows");
    expect_bad("rank9.safetensors",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", data, 4,
               "9 dimensions");
    expect_bad("offsets_reversed.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}",
               data, 4, "end before begin");
    expect_bad("offsets_beyond.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", data,
               4, "beyond the 4-byte data buffer");
    expect_bad("offsets_arity.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", data, 4,
               "two integers");
    expect_bad("offsets_negative.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}",
               data, 4, "non-negative integers");
    expect_bad("nbytes.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", data, 4,
               "hold 4 bytes but F32 [2] needs 8");
    expect_bad("overlap.safetensors",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               data, 12, "tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]");
    expect_bad("same_range.safetensors",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
               data, 4, "overlap");
    expect_bad("gap.safetensors",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
               data, 12, "gap of 4 bytes");
    expect_bad("leading_gap.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", data, 8,
               "gap");
    expect_bad("trailing_data.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", data,
               8, "4 trailing bytes after the last tensor");
    expect_bad("no_tensors_but_data.safetensors", "{}", data, 4, "trailing bytes");
    expect_bad("duplicate.safetensors",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               data, 8, "duplicate tensor name 'a'");
    expect_bad("meta_array.safetensors", "{\"__metadata__\":[]}", NULL, 0, "\"__metadata__\" is an array");
    expect_bad("meta_value.safetensors", "{\"__metadata__\":{\"step\":5}}", NULL, 0, "metadata 'step' is a number");
    expect_bad("meta_dup.safetensors", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", NULL, 0,
               "duplicate metadata key 'k'");
    expect_bad("meta_twice.safetensors", "{\"__metadata__\":{},\"__metadata__\":{}}", NULL, 0,
               "duplicate \"__metadata__\"");

    // Valid oddities: JSON order differs from data order; zero-size tensors; unknown entry keys;
    // dtypes we only report; whitespace padding (including newlines) after the object.
    char ok_path[512];
    join(ok_path, sizeof ok_path, "reordered.safetensors");
    uint8_t payload[12] = {0, 0, 128, 63, 7, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f};
    write_st(ok_path,
             "{\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[4,8]},"
             "\"z\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[4,4]},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4],\"extra\":true},"
             "\"u\":{\"dtype\":\"U32\",\"shape\":[1,1],\"data_offsets\":[8,12]}} \n\t",
             payload, sizeof payload);
    qft_status s = qft_safetensors_open(&st, ok_path, &err);
    CHECK(s == QFT_OK, "reordered: %s", err.message);
    if (s == QFT_OK) {
        CHECK(st.count == 4 && strcmp(st.tensors[0].name, "a") == 0 && strcmp(st.tensors[1].name, "z") == 0 &&
                  strcmp(st.tensors[2].name, "b") == 0 && strcmp(st.tensors[3].name, "u") == 0,
              "tensors not in data order");
        float f;
        int32_t i[1];
        CHECK(qft_safetensors_read_f32(&st, qft_safetensors_find(&st, "a"), &f, &err) == QFT_OK && f == 1.0f, "a");
        CHECK(qft_safetensors_read_i32(&st, qft_safetensors_find(&st, "b"), i, &err) == QFT_OK && i[0] == 7, "b");
        CHECK(qft_safetensors_read_i32(&st, qft_safetensors_find(&st, "u"), i, &err) == QFT_OK &&
                  i[0] == INT32_MAX,
              "u32 max: %s", err.message);
        qft_safetensors_close(&st);
    }
    // Out-of-range integers are errors naming the element.
    join(ok_path, sizeof ok_path, "i64_range.safetensors");
    int64_t big[2] = {1, (int64_t)1 << 40};
    write_st(ok_path, "{\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", big, sizeof big);
    s = qft_safetensors_open(&st, ok_path, &err);
    CHECK(s == QFT_OK, "i64 open: %s", err.message);
    if (s == QFT_OK) {
        int32_t out[2];
        s = qft_safetensors_read_i32(&st, qft_safetensors_find(&st, "ids"), out, &err);
        CHECK(s == QFT_ERR_INVALID && strstr(err.message, "element 1 (1099511627776) does not fit in int32") &&
                  strstr(err.message, "'ids'"),
              "i64 range: %s", err.message);
        qft_safetensors_close(&st);
    }
}

// Every strict prefix of a valid file must fail cleanly; every single-byte corruption must not crash.
static void test_truncation_and_corruption(void) {
    char path[512], cut[512];
    join(path, sizeof path, "small.safetensors");
    join(cut, sizeof cut, "cut.safetensors");
    const float w[6] = {1, 2, 3, 4, 5, 6};
    const int64_t ids[2] = {3, -3};
    const int64_t s23[2] = {2, 3}, s2[1] = {2};
    qft_write_tensor tensors[3] = {{"w", QFT_DTYPE_F32, 2, s23, w, 0},
                                   {"h", QFT_DTYPE_F16, 2, s23, w, 1},
                                   {"ids", QFT_DTYPE_I64, 1, s2, ids, 0}};
    const char *meta[] = {"format", "pt", NULL};
    qft_error err = {{0}};
    CHECK(qft_safetensors_write(path, tensors, 3, meta, &err) == QFT_OK, "%s", err.message);
    size_t len;
    uint8_t *bytes = read_whole(path, &len);
    int prefix_failures = 0, prefix_bad_messages = 0;
    qft_safetensors st;
    for (size_t n = 0; n < len; n++) {
        write_bytes(cut, bytes, n);
        err.message[0] = '\0';
        if (qft_safetensors_open(&st, cut, &err) == QFT_OK) {
            qft_safetensors_close(&st);
        } else {
            prefix_failures++;
            if (!strstr(err.message, cut) || strchr(err.message, '\n')) prefix_bad_messages++;
        }
    }
    CHECK(prefix_failures == (int)len, "%d of %zu truncated prefixes were accepted", (int)len - prefix_failures, len);
    CHECK(prefix_bad_messages == 0, "%d truncation messages lacked the path", prefix_bad_messages);

    int opened = 0;
    float fbuf[6];
    int32_t ibuf[6];
    for (size_t i = 0; i < len; i++) {
        for (int flip = 0; flip < 2; flip++) {
            uint8_t saved = bytes[i];
            bytes[i] = flip ? (uint8_t)(saved ^ 0x80) : (uint8_t)(saved + 1);
            write_bytes(cut, bytes, len);
            bytes[i] = saved;
            if (qft_safetensors_open(&st, cut, &err) != QFT_OK) continue;
            opened++;
            for (int k = 0; k < st.count; k++) {
                if (st.tensors[k].numel > 6) continue;
                qft_safetensors_read_f32(&st, &st.tensors[k], fbuf, &err);
                qft_safetensors_read_i32(&st, &st.tensors[k], ibuf, &err);
            }
            qft_safetensors_close(&st);
        }
    }
    CHECK(opened > 0, "no corrupted variant opened (data bytes should be free to change)");
    CHECK(qft_safetensors_open(&st, path, &err) == QFT_OK, "full file: %s", err.message);
    qft_safetensors_close(&st);
    free(bytes);
}

// The deterministic file tests/oracle/check_safetensors_export.py --pattern checks (keep the two in
// sync): written when QFT_SAFETENSORS_EXPORT names a path, so Python/PyTorch can judge qft's output.
static uint32_t pattern_bits(uint32_t i) {
    static const uint32_t specials[11] = {0x7f800000u, 0xff800000u, 0x7fc00000u, 0x80000000u,
                                          0x3f801000u, 0x3f803000u, 0x3f808000u, 0x3f818000u,
                                          0x33000000u, 0x477ff000u, 0x00000001u};
    if (i < 11) return specials[i];
    uint32_t h = i * 2654435761u + 12345u;
    uint32_t mixed = h ^ (h >> 15);
    return (mixed & 0x80000000u) | ((100 + (h >> 5) % 60) << 23) | (mixed & 0x7fffffu);
}

static void write_export_pattern(const char *path) {
    enum { N = 111 };
    float src[N];
    int32_t i32[N];
    int64_t i64[N];
    for (uint32_t i = 0; i < N; i++) {
        src[i] = from_bits(pattern_bits(i));
        i32[i] = (int32_t)(i * 2654435761u);
        i64[i] = (int64_t)i * 1000000007 * 1000 * (i % 2 ? -1 : 1);
    }
    const float half = 0.5f;
    const int64_t shape[2] = {3, 37}, flat[1] = {N};
    qft_write_tensor tensors[] = {
        {"pattern.f32", QFT_DTYPE_F32, 2, shape, src, 1},  {"pattern.f16", QFT_DTYPE_F16, 2, shape, src, 1},
        {"pattern.bf16", QFT_DTYPE_BF16, 2, shape, src, 1}, {"pattern.i32", QFT_DTYPE_I32, 1, flat, i32, 0},
        {"pattern.i64", QFT_DTYPE_I64, 1, flat, i64, 0},    {"pattern.scalar", QFT_DTYPE_F32, 0, NULL, &half, 1},
    };
    const char *metadata[] = {"format", "pt", "qft.pattern", "1", NULL};
    qft_error err = {{0}};
    CHECK(qft_safetensors_write(path, tensors, 6, metadata, &err) == QFT_OK, "export: %s", err.message);
    printf("wrote %s\n", path);
}

int main(void) {
    qft_test_make_temp_dir(temp_dir, sizeof temp_dir, "qft_safetensors");
    test_f16_conversions();
    test_bf16_conversions();
    test_round_trip();
    test_exact_header();
    test_writer_errors();
    test_bad_files();
    test_truncation_and_corruption();
    const char *export_path = getenv("QFT_SAFETENSORS_EXPORT");
    if (export_path && *export_path) write_export_pattern(export_path);
    qft_test_remove_temp_dir(temp_dir);
    QFT_TEST_SUMMARY();
}
