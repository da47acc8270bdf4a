// Safetensors reader (mmap + full header validation so later code can trust every offset) and
// atomic writer, plus the fp16/bf16 <-> fp32 conversions both sides need.
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// The format is little-endian; we read and write tensor bytes with memcpy, which is only right on
// a little-endian host (every machine we target). Fail the build loudly anywhere else.
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors.c assumes a little-endian host");

// ---------------------------------------------------------------------------------------------
// dtypes

static const struct {
    const char *name;
    size_t size;
} dtype_table[QFT_DTYPE_COUNT] = {
    [QFT_DTYPE_F32] = {"F32", 4},     [QFT_DTYPE_F16] = {"F16", 2},
    [QFT_DTYPE_BF16] = {"BF16", 2},   [QFT_DTYPE_I64] = {"I64", 8},
    [QFT_DTYPE_I32] = {"I32", 4},     [QFT_DTYPE_F64] = {"F64", 8},
    [QFT_DTYPE_I16] = {"I16", 2},     [QFT_DTYPE_I8] = {"I8", 1},
    [QFT_DTYPE_U64] = {"U64", 8},     [QFT_DTYPE_U32] = {"U32", 4},
    [QFT_DTYPE_U16] = {"U16", 2},     [QFT_DTYPE_U8] = {"U8", 1},
    [QFT_DTYPE_BOOL] = {"BOOL", 1},   [QFT_DTYPE_F8_E4M3] = {"F8_E4M3", 1},
    [QFT_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
};

const char *qft_dtype_name(qft_dtype dtype) {
    return (unsigned)dtype < QFT_DTYPE_COUNT ? dtype_table[dtype].name : "?";
}

size_t qft_dtype_size(qft_dtype dtype) {
    return (unsigned)dtype < QFT_DTYPE_COUNT ? dtype_table[dtype].size : 0;
}

int qft_dtype_parse(const char *name, qft_dtype *out) {
    for (int i = 0; i < QFT_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_table[i].name) == 0) {
            *out = (qft_dtype)i;
            return 0;
        }
    }
    return -1;
}

// ---------------------------------------------------------------------------------------------
// Scalar conversions

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float qft_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    if (exponent == 0) {
        if (mantissa == 0) return bits_f32(sign);
        // Subnormal half: renormalize into an fp32 normal (every half subnormal is one).
        uint32_t e = 113;  // 127 - 15 + 1
        while (!(mantissa & 0x400u)) {
            mantissa <<= 1;
            e--;
        }
        return bits_f32(sign | (e << 23) | ((mantissa & 0x3ffu) << 13));
    }
    if (exponent == 31) return bits_f32(sign | 0x7f800000u | (mantissa << 13));  // inf / NaN payload
    return bits_f32(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

float qft_bf16_to_f32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

uint16_t qft_f32_to_f16(float f) {
    uint32_t bits = f32_bits(f);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    uint32_t magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u)  // NaN: keep the top payload bits, force quiet
        return (uint16_t)(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
    // 65520 is halfway between 65504 (largest half, odd mantissa) and 65536: ties-to-even overflows.
    if (magnitude >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (magnitude < 0x38800000u) {  // below the smallest normal half (2^-14)
        // 2^-25 is the tie between 0 and the smallest subnormal 2^-24; even is 0.
        if (magnitude <= 0x33000000u) return sign;
        uint32_t e = magnitude >> 23;
        uint32_t m = (magnitude & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e;  // value in units of 2^-24 is m >> shift; 14 <= shift <= 24
        uint32_t result = m >> shift;
        uint32_t rest = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rest > half || (rest == half && (result & 1))) result++;
        return (uint16_t)(sign | result);  // result may carry into the exponent: still correct
    }
    uint32_t h = (magnitude >> 13) - (112u << 10);
    uint32_t rest = magnitude & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

uint16_t qft_f32_to_bf16(float f) {
    uint32_t bits = f32_bits(f);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40u);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by reader and writer

// Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF): the Hugging Face reader
// rejects a header that is not valid UTF-8, so we neither accept nor produce one.
static int utf8_valid(const uint8_t *s, size_t n, size_t *bad_at) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4;
            cp = c & 0x07;
        } else {
            goto bad;
        }
        if (n - i < len) goto bad;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) goto bad;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            goto bad;
        i += len;
    }
    return 1;
bad:
    if (bad_at) *bad_at = i;
    return 0;
}

// "[64, 3]" into buf (truncated safely if huge).
static const char *format_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t used = 0;
    buf[0] = '\0';
    used += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (used < cap) snprintf(buf + used, cap - used, "]");
    return buf;
}

// ---------------------------------------------------------------------------------------------
// Reader

void qft_safetensors_close(qft_safetensors *st) {
    if (!st) return;
    if (st->map) munmap((void *)st->map, st->map_size);
    for (int i = 0; i < st->count; i++) free(st->tensors[i].name);
    free(st->tensors);
    free(st->name_order);
    for (int i = 0; i < st->metadata_count; i++) {
        free(st->metadata_keys[i]);
        free(st->metadata_values[i]);
    }
    free(st->metadata_keys);
    free(st->metadata_values);
    free(st->path);
    memset(st, 0, sizeof *st);
}

// JSON numbers arrive as doubles: accept only exact non-negative integers up to 2^53.
// Returns 0 ok, -1 not a number/integer, -2 negative, -3 too large.
static int json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return -1;
    double v = item->valuedouble;
    if (!isfinite(v) || v != floor(v)) return -1;
    if (v < 0) return -2;
    if (v > 9007199254740992.0) return -3;
    *out = (uint64_t)v;
    return 0;
}

static const char *json_type_name(const cJSON *item) {
    if (cJSON_IsObject(item)) return "an object";
    if (cJSON_IsArray(item)) return "an array";
    if (cJSON_IsString(item)) return "a string";
    if (cJSON_IsNumber(item)) return "a number";
    if (cJSON_IsBool(item)) return "a boolean";
    if (cJSON_IsNull(item)) return "null";
    return "invalid";
}

static int compare_string_ptr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static qft_status parse_metadata(qft_safetensors *st, const cJSON *meta, qft_error *err) {
    const char *path = st->path;
    if (!cJSON_IsObject(meta))
        return qft_fail(err, QFT_ERR_PARSE, "%s: \"__metadata__\" is %s, expected an object of strings",
                        path, json_type_name(meta));
    int n = cJSON_GetArraySize(meta);
    st->metadata_keys = calloc((size_t)n + 1, sizeof(char *));
    st->metadata_values = calloc((size_t)n + 1, sizeof(char *));
    if (!st->metadata_keys || !st->metadata_values)
        return qft_fail(err, QFT_ERR_OOM, "%s: out of memory reading metadata", path);
    const cJSON *item;
    cJSON_ArrayForEach(item, meta) {
        if (!cJSON_IsString(item))
            return qft_fail(err, QFT_ERR_PARSE, "%s: metadata '%s' is %s, expected a string", path,
                            item->string, json_type_name(item));
        int k = st->metadata_count;
        st->metadata_keys[k] = strdup(item->string);
        st->metadata_values[k] = strdup(item->valuestring);
        if (!st->metadata_keys[k] || !st->metadata_values[k]) {
            free(st->metadata_keys[k]);
            free(st->metadata_values[k]);
            st->metadata_keys[k] = st->metadata_values[k] = NULL;
            return qft_fail(err, QFT_ERR_OOM, "%s: out of memory reading metadata", path);
        }
        st->metadata_count++;
    }
    // Duplicates via a sorted copy (a hostile header may hold millions of keys: no quadratic scan).
    char **sorted = malloc(((size_t)st->metadata_count + 1) * sizeof *sorted);
    if (!sorted) return qft_fail(err, QFT_ERR_OOM, "%s: out of memory reading metadata", path);
    memcpy(sorted, st->metadata_keys, (size_t)st->metadata_count * sizeof *sorted);
    qsort(sorted, (size_t)st->metadata_count, sizeof *sorted, compare_string_ptr);
    qft_status status = QFT_OK;
    for (int i = 1; i < st->metadata_count && status == QFT_OK; i++)
        if (strcmp(sorted[i], sorted[i - 1]) == 0)
            status = qft_fail(err, QFT_ERR_PARSE, "%s: duplicate metadata key '%s'", path, sorted[i]);
    free(sorted);
    return status;
}

// Fills t (name already set) from one header entry, checking it against the data buffer size.
static qft_status parse_entry(const qft_safetensors *st, const cJSON *entry, qft_tensor_info *t,
                              qft_error *err) {
    const char *path = st->path, *name = t->name;
    if (!cJSON_IsObject(entry))
        return qft_fail(err, QFT_ERR_PARSE, "%s: tensor '%s': entry is %s, expected an object", path,
                        name, json_type_name(entry));

    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    if (!dtype) return qft_fail(err, QFT_ERR_PARSE, "%s: tensor '%s': missing \"dtype\"", path, name);
    if (!cJSON_IsString(dtype))
        return qft_fail(err, QFT_ERR_PARSE, "%s: tensor '%s': \"dtype\" is %s, expected a string", path,
                        name, json_type_name(dtype));
    if (qft_dtype_parse(dtype->valuestring, &t->dtype) != 0)
        return qft_fail(err, QFT_ERR_PARSE, "%s: tensor '%s': unknown dtype '%s'", path, name,
                        dtype->valuestring);

    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    if (!shape) return qft_fail(err, QFT_ERR_PARSE, "%s: tensor '%s': missing \"shape\"", path, name);
    if (!cJSON_IsArray(shape))
        return qft_fail(err, QFT_ERR_PARSE, "%s: tensor '%s': \"shape\" is %s, expected an array", path,
                        name, json_type_name(shape));
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > QFT_SAFETENSORS_MAX_DIMS)
        return qft_fail(err, QFT_ERR_PARSE, "%s: tensor '%s': %d dimensions, at most %d supported", path,
                        name, ndim, QFT_SAFETENSORS_MAX_DIMS);
    t->ndim = ndim;
    size_t elem = qft_dtype_size(t->dtype);
    size_t numel = 1;
    int overflow = 0;
    for (int i = 0; i < ndim; i++) {
        const cJSON *dim = cJSON_GetArrayItem(shape, i);
        uint64_t d = 0;
        int rc = json_uint(dim, &d);
        if (rc == -1)
            return qft_fail(err, QFT_ERR_PARSE,
                            "%s: tensor '%s': \"shape\" element %d is not an integer", path, name, i);
        if (rc == -2)
            return qft_fail(err, QFT_ERR_PARSE, "%s: tensor '%s': negative dimension %g in \"shape\"",
                            path, name, dim->valuedouble);
        if (rc == -3)
            return qft_fail(err, QFT_ERR_PARSE, "%s: tensor '%s': dimension %g in \"shape\" is too large",
                            path, name, dim->valuedouble);
        t->shape[i] = (int64_t)d;
        if (d != 0 && numel > SIZE_MAX / elem / d) overflow = 1;
        else numel *= (size_t)d;
    }
    char shape_text[256];
    format_shape(shape_text, sizeof shape_text, t->ndim, t->shape);
    // A zero dimension anywhere makes the product 0 even if the others overflow: only then is it fine.
    for (int i = 0; i < ndim && overflow; i++)
        if (t->shape[i] == 0) overflow = 0, numel = 0;
    if (overflow)
        return qft_fail(err, QFT_ERR_PARSE, "%s: tensor '%s': shape %s overflows the addressable size",
                        path, name, shape_text);
    t->numel = numel;
    t->nbytes = numel * elem;

    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!offsets)
        return qft_fail(err, QFT_ERR_PARSE, "%s: tensor '%s': missing \"data_offsets\"", path, name);
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2)
        return qft_fail(err, QFT_ERR_PARSE,
                        "%s: tensor '%s': \"data_offsets\" must be an array of two integers [begin, end]",
                        path, name);
    uint64_t begin = 0, end = 0;
    if (json_uint(cJSON_GetArrayItem(offsets, 0), &begin) != 0 ||
        json_uint(cJSON_GetArrayItem(offsets, 1), &end) != 0)
        return qft_fail(err, QFT_ERR_PARSE,
                        "%s: tensor '%s': \"data_offsets\" must hold two non-negative integers", path, name);
    if (end < begin)
        return qft_fail(err, QFT_ERR_PARSE,
                        "%s: tensor '%s': data_offsets [%llu, %llu] end before begin", path, name,
                        (unsigned long long)begin, (unsigned long long)end);
    if (end > st->data_size)
        return qft_fail(err, QFT_ERR_PARSE,
                        "%s: tensor '%s': data_offsets [%llu, %llu] extend beyond the %zu-byte data buffer "
                        "(truncated file?)",
                        path, name, (unsigned long long)begin, (unsigned long long)end, st->data_size);
    if (end - begin != t->nbytes)
        return qft_fail(err, QFT_ERR_PARSE,
                        "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but %s %s needs %zu",
                        path, name, (unsigned long long)begin, (unsigned long long)end,
                        (unsigned long long)(end - begin), qft_dtype_name(t->dtype), shape_text, t->nbytes);
    t->offset = (size_t)begin;
    return QFT_OK;
}

static int compare_by_offset(const void *a, const void *b) {
    const qft_tensor_info *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

// qsort has no context argument in C11: sort pointers to the tensors instead of indices.
static int compare_name_ptr(const void *a, const void *b) {
    const qft_tensor_info *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static qft_status parse_header(qft_safetensors *st, const char *json, size_t len, qft_error *err) {
    const char *path = st->path;
    const char *parse_end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &parse_end, 0);
    if (!root) {
        size_t at = parse_end && parse_end >= json ? (size_t)(parse_end - json) : 0;
        return qft_fail(err, QFT_ERR_PARSE, "%s: header is not valid JSON (error near byte %zu of %zu)",
                        path, at, len);
    }
    qft_status status = QFT_OK;
    for (const char *p = parse_end; p < json + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            status = qft_fail(err, QFT_ERR_PARSE, "%s: header has trailing bytes after the JSON object "
                              "(at byte %zu of %zu)", path, (size_t)(p - json), len);
            goto done;
        }
    }
    if (!cJSON_IsObject(root)) {
        status = qft_fail(err, QFT_ERR_PARSE, "%s: header is %s, expected a JSON object", path,
                          json_type_name(root));
        goto done;
    }

    int entries = cJSON_GetArraySize(root);
    st->tensors = calloc((size_t)entries + 1, sizeof *st->tensors);
    if (!st->tensors) {
        status = qft_fail(err, QFT_ERR_OOM, "%s: out of memory for %d header entries", path, entries);
        goto done;
    }
    int seen_metadata = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (seen_metadata) {
                status = qft_fail(err, QFT_ERR_PARSE, "%s: duplicate \"__metadata__\" entry", path);
                goto done;
            }
            seen_metadata = 1;
            if ((status = parse_metadata(st, item, err)) != QFT_OK) goto done;
            continue;
        }
        qft_tensor_info *t = &st->tensors[st->count];
        t->name = strdup(item->string);
        if (!t->name) {
            status = qft_fail(err, QFT_ERR_OOM, "%s: out of memory", path);
            goto done;
        }
        st->count++;
        if ((status = parse_entry(st, item, t, err)) != QFT_OK) goto done;
    }

    // Names: sorted index for lookups; neighbours equal means a duplicate.
    const qft_tensor_info **by_name = malloc(((size_t)st->count + 1) * sizeof *by_name);
    st->name_order = malloc(((size_t)st->count + 1) * sizeof *st->name_order);
    if (!by_name || !st->name_order) {
        free(by_name);
        status = qft_fail(err, QFT_ERR_OOM, "%s: out of memory", path);
        goto done;
    }
    // Offsets first: tensors[] ends up in data order, and name_order indexes the sorted array.
    qsort(st->tensors, (size_t)st->count, sizeof *st->tensors, compare_by_offset);
    for (int i = 0; i < st->count; i++) by_name[i] = &st->tensors[i];
    qsort(by_name, (size_t)st->count, sizeof *by_name, compare_name_ptr);
    for (int i = 0; i < st->count; i++) {
        st->name_order[i] = (int)(by_name[i] - st->tensors);
        if (i > 0 && strcmp(by_name[i]->name, by_name[i - 1]->name) == 0) {
            status = qft_fail(err, QFT_ERR_PARSE, "%s: duplicate tensor name '%s'", path, by_name[i]->name);
            free(by_name);
            goto done;
        }
    }
    free(by_name);

    // Tensors must tile the data buffer: each starts where the previous one ended.
    size_t expected = 0;
    for (int i = 0; i < st->count; i++) {
        const qft_tensor_info *t = &st->tensors[i];
        size_t end = t->offset + t->nbytes;
        if (t->offset < expected) {
            const qft_tensor_info *prev = &st->tensors[i - 1];  // expected > 0 implies i > 0
            status = qft_fail(err, QFT_ERR_PARSE,
                              "%s: tensor '%s': data_offsets [%zu, %zu] overlap tensor '%s' [%zu, %zu]", path,
                              t->name, t->offset, end, prev->name, prev->offset, prev->offset + prev->nbytes);
            goto done;
        }
        if (t->offset > expected) {
            status = qft_fail(err, QFT_ERR_PARSE,
                              "%s: tensor '%s': data_offsets [%zu, %zu] leave a gap of %zu bytes after byte %zu",
                              path, t->name, t->offset, end, t->offset - expected, expected);
            goto done;
        }
        expected = end;
    }
    if (expected != st->data_size) {
        status = qft_fail(err, QFT_ERR_PARSE,
                          "%s: %zu trailing bytes after the last tensor (data buffer is %zu bytes, tensors "
                          "cover %zu)", path, st->data_size - expected, st->data_size, expected);
        goto done;
    }
done:
    cJSON_Delete(root);
    return status;
}

qft_status qft_safetensors_open(qft_safetensors *st, const char *path, qft_error *err) {
    memset(st, 0, sizeof *st);
    st->path = strdup(path);
    if (!st->path) return qft_fail(err, QFT_ERR_OOM, "%s: out of memory", path);

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        qft_status s = qft_fail(err, QFT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        qft_safetensors_close(st);
        return s;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        qft_status s = qft_fail(err, QFT_ERR_IO, "%s: not a regular file", path);
        close(fd);
        qft_safetensors_close(st);
        return s;
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        qft_status s = qft_fail(err, QFT_ERR_PARSE,
                                "%s: file is %zu bytes, too short for the 8-byte header length", path, size);
        close(fd);
        qft_safetensors_close(st);
        return s;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) {
        qft_status s = qft_fail(err, QFT_ERR_IO, "%s: cannot mmap %zu bytes: %s", path, size,
                                strerror(map_errno));
        qft_safetensors_close(st);
        return s;
    }
    st->map = map;
    st->map_size = size;

    uint64_t header_len;
    memcpy(&header_len, st->map, 8);
    qft_status status = QFT_OK;
    if (header_len > QFT_SAFETENSORS_MAX_HEADER) {
        status = qft_fail(err, QFT_ERR_PARSE, "%s: oversized header: %llu bytes (limit %llu)", path,
                          (unsigned long long)header_len, QFT_SAFETENSORS_MAX_HEADER);
        goto fail;
    }
    if (header_len > size - 8) {
        status = qft_fail(err, QFT_ERR_PARSE,
                          "%s: header length %llu exceeds the %zu bytes after the length field (truncated file?)",
                          path, (unsigned long long)header_len, size - 8);
        goto fail;
    }
    if (header_len < 2) {
        status = qft_fail(err, QFT_ERR_PARSE, "%s: header of %llu bytes cannot hold a JSON object", path,
                          (unsigned long long)header_len);
        goto fail;
    }
    const uint8_t *header = st->map + 8;
    size_t bad_at = 0;
    if (!utf8_valid(header, (size_t)header_len, &bad_at)) {
        status = qft_fail(err, QFT_ERR_PARSE, "%s: header is not valid UTF-8 (byte %zu)", path, bad_at);
        goto fail;
    }
    // JSON allows no raw control characters; cJSON would, and an embedded NUL would cut names short.
    for (size_t i = 0; i < header_len; i++) {
        if (header[i] < 0x20 && header[i] != ' ' && header[i] != '\t' && header[i] != '\n' &&
            header[i] != '\r') {
            status = qft_fail(err, QFT_ERR_PARSE, "%s: header is not valid JSON (control byte 0x%02x at %zu)",
                              path, header[i], i);
            goto fail;
        }
    }
    st->data = header + header_len;
    st->data_size = size - 8 - (size_t)header_len;

    // cJSON is handed a NUL-terminated copy so no parser path can read past the header.
    char *json = malloc((size_t)header_len + 1);
    if (!json) {
        status = qft_fail(err, QFT_ERR_OOM, "%s: out of memory for a %llu-byte header", path,
                          (unsigned long long)header_len);
        goto fail;
    }
    memcpy(json, header, (size_t)header_len);
    json[header_len] = '\0';
    status = parse_header(st, json, (size_t)header_len, err);
    free(json);
    if (status != QFT_OK) goto fail;
    return QFT_OK;
fail:
    qft_safetensors_close(st);
    return status;
}

const qft_tensor_info *qft_safetensors_find(const qft_safetensors *st, const char *name) {
    if (!st || !name || !st->name_order) return NULL;
    int lo = 0, hi = st->count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const qft_tensor_info *t = &st->tensors[st->name_order[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

const char *qft_safetensors_metadata(const qft_safetensors *st, const char *key) {
    if (!st || !key) return NULL;
    for (int i = 0; i < st->metadata_count; i++)
        if (strcmp(st->metadata_keys[i], key) == 0) return st->metadata_values[i];
    return NULL;
}

const void *qft_safetensors_data(const qft_safetensors *st, const qft_tensor_info *t) {
    return st->data + t->offset;
}

qft_status qft_safetensors_expect(const qft_safetensors *st, const char *name, int ndim,
                                  const int64_t *shape, const qft_tensor_info **out, qft_error *err) {
    if (out) *out = NULL;
    const qft_tensor_info *t = qft_safetensors_find(st, name);
    if (!t) return qft_fail(err, QFT_ERR_SHAPE, "%s: missing tensor '%s'", st->path, name);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char want[256], got[256];
        return qft_fail(err, QFT_ERR_SHAPE, "%s: tensor '%s': expected shape %s, got %s", st->path, name,
                        format_shape(want, sizeof want, ndim, shape),
                        format_shape(got, sizeof got, t->ndim, t->shape));
    }
    if (out) *out = t;
    return QFT_OK;
}

// A caller may pass a copy of an info struct; make sure it still describes bytes inside the map.
static qft_status check_tensor(const qft_safetensors *st, const qft_tensor_info *t, const void *dst,
                               qft_error *err) {
    const char *path = st && st->path ? st->path : "(closed safetensors)";
    if (!st || !st->map || !t || !dst)
        return qft_fail(err, QFT_ERR_INTERNAL, "%s: read called with a NULL argument", path);
    size_t elem = qft_dtype_size(t->dtype);
    if (elem == 0 || t->numel > SIZE_MAX / elem || t->numel * elem != t->nbytes ||
        t->offset > st->data_size || t->nbytes > st->data_size - t->offset)
        return qft_fail(err, QFT_ERR_INTERNAL, "%s: tensor '%s': info does not describe this file", path,
                        t->name ? t->name : "?");
    return QFT_OK;
}

qft_status qft_safetensors_read_f32(const qft_safetensors *st, const qft_tensor_info *t, float *dst,
                                    qft_error *err) {
    qft_status s = check_tensor(st, t, dst, err);
    if (s != QFT_OK) return s;
    const uint8_t *src = st->data + t->offset;
    size_t n = t->numel;
    switch (t->dtype) {
    case QFT_DTYPE_F32:
        memcpy(dst, src, n * 4);
        return QFT_OK;
    case QFT_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = qft_f16_to_f32(h);
        }
        return QFT_OK;
    case QFT_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t b;
            memcpy(&b, src + 2 * i, 2);
            dst[i] = qft_bf16_to_f32(b);
        }
        return QFT_OK;
    case QFT_DTYPE_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            dst[i] = (float)d;
        }
        return QFT_OK;
    default:
        return qft_fail(err, QFT_ERR_SHAPE, "%s: tensor '%s': dtype %s cannot be read as floats", st->path,
                        t->name, qft_dtype_name(t->dtype));
    }
}

qft_status qft_safetensors_read_i32(const qft_safetensors *st, const qft_tensor_info *t,
                                    int32_t *dst, qft_error *err) {
    qft_status s = check_tensor(st, t, dst, err);
    if (s != QFT_OK) return s;
    const uint8_t *src = st->data + t->offset;
    size_t n = t->numel;
    switch (t->dtype) {
    case QFT_DTYPE_I32:
        memcpy(dst, src, n * 4);
        return QFT_OK;
    case QFT_DTYPE_I64:
        for (size_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, src + 8 * i, 8);
            if (v > INT32_MAX || v < INT32_MIN)
                return qft_fail(err, QFT_ERR_INVALID,
                                "%s: tensor '%s': element %zu (%lld) does not fit in int32", st->path,
                                t->name, i, (long long)v);
            dst[i] = (int32_t)v;
        }
        return QFT_OK;
    case QFT_DTYPE_U64:
        for (size_t i = 0; i < n; i++) {
            uint64_t v;
            memcpy(&v, src + 8 * i, 8);
            if (v > INT32_MAX)
                return qft_fail(err, QFT_ERR_INVALID,
                                "%s: tensor '%s': element %zu (%llu) does not fit in int32", st->path,
                                t->name, i, (unsigned long long)v);
            dst[i] = (int32_t)v;
        }
        return QFT_OK;
    case QFT_DTYPE_U32:
        for (size_t i = 0; i < n; i++) {
            uint32_t v;
            memcpy(&v, src + 4 * i, 4);
            if (v > INT32_MAX)
                return qft_fail(err, QFT_ERR_INVALID,
                                "%s: tensor '%s': element %zu (%lu) does not fit in int32", st->path,
                                t->name, i, (unsigned long)v);
            dst[i] = (int32_t)v;
        }
        return QFT_OK;
    case QFT_DTYPE_I16:
        for (size_t i = 0; i < n; i++) {
            int16_t v;
            memcpy(&v, src + 2 * i, 2);
            dst[i] = v;
        }
        return QFT_OK;
    case QFT_DTYPE_U16:
        for (size_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, src + 2 * i, 2);
            dst[i] = v;
        }
        return QFT_OK;
    case QFT_DTYPE_I8:
        for (size_t i = 0; i < n; i++) dst[i] = (int8_t)src[i];
        return QFT_OK;
    case QFT_DTYPE_U8:
        for (size_t i = 0; i < n; i++) dst[i] = src[i];
        return QFT_OK;
    case QFT_DTYPE_BOOL:
        for (size_t i = 0; i < n; i++) dst[i] = src[i] != 0;
        return QFT_OK;
    default:
        return qft_fail(err, QFT_ERR_SHAPE, "%s: tensor '%s': dtype %s cannot be read as integers",
                        st->path, t->name, qft_dtype_name(t->dtype));
    }
}

// ---------------------------------------------------------------------------------------------
// Writer

typedef struct {
    char *text;
    size_t len, cap;
    int failed;
} text_buffer;

static void text_append(text_buffer *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1) cap *= 2;
        char *grown = realloc(b->text, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->text = grown;
        b->cap = cap;
    }
    memcpy(b->text + b->len, s, n);
    b->len += n;
    b->text[b->len] = '\0';
}

static void text_printf(text_buffer *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(text_buffer *b, const char *fmt, ...) {
    char small[128];
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(small, sizeof small, fmt, args);
    va_end(args);
    if (n < 0 || (size_t)n >= sizeof small) {
        b->failed = 1;  // only used for short numeric fragments
        return;
    }
    text_append(b, small, (size_t)n);
}

static void text_json_string(text_buffer *b, const char *s) {
    text_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"') text_append(b, "\\\"", 2);
        else if (*p == '\\') text_append(b, "\\\\", 2);
        else if (*p < 0x20) text_printf(b, "\\u%04x", *p);
        else text_append(b, (const char *)p, 1);
    }
    text_append(b, "\"", 1);
}

static int write_all(FILE *f, const void *data, size_t n) { return n == 0 || fwrite(data, 1, n, f) == n; }

static qft_status write_tensor_data(FILE *f, const qft_write_tensor *w, size_t numel) {
    if (!w->data_is_f32 || w->dtype == QFT_DTYPE_F32)
        return write_all(f, w->data, numel * qft_dtype_size(w->dtype)) ? QFT_OK : QFT_ERR_IO;
    const float *src = w->data;
    uint16_t chunk[8192];
    for (size_t done = 0; done < numel;) {
        size_t n = numel - done < 8192 ? numel - done : 8192;
        for (size_t i = 0; i < n; i++)
            chunk[i] = w->dtype == QFT_DTYPE_F16 ? qft_f32_to_f16(src[done + i]) : qft_f32_to_bf16(src[done + i]);
        if (!write_all(f, chunk, n * 2)) return QFT_ERR_IO;
        done += n;
    }
    return QFT_OK;
}

static qft_status fsync_parent_dir(const char *path, qft_error *err) {
    char *dir = strdup(path);
    if (!dir) return qft_fail(err, QFT_ERR_OOM, "%s: out of memory", path);
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    qft_status s = QFT_OK;
    // Some filesystems cannot fsync a directory (EINVAL): the rename itself already happened.
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL))
        s = qft_fail(err, QFT_ERR_IO, "%s: cannot fsync directory %s: %s", path, dir, strerror(errno));
    if (fd >= 0) close(fd);
    free(dir);
    return s;
}

qft_status qft_safetensors_write(const char *path, const qft_write_tensor *tensors, int count,
                                 const char *const *metadata_kv, qft_error *err) {
    if (!path) return qft_fail(err, QFT_ERR_INVALID, "safetensors write: NULL path");
    if (count < 0 || (count > 0 && !tensors))
        return qft_fail(err, QFT_ERR_INVALID, "%s: invalid tensor list (count %d)", path, count);

    // Validate everything before touching the disk.
    size_t total = 0;
    for (int i = 0; i < count; i++) {
        const qft_write_tensor *w = &tensors[i];
        if (!w->name || !w->name[0])
            return qft_fail(err, QFT_ERR_INVALID, "%s: tensor %d has an empty name", path, i);
        const char *name = w->name;
        if (!utf8_valid((const uint8_t *)name, strlen(name), NULL))
            return qft_fail(err, QFT_ERR_INVALID, "%s: tensor name '%s' is not valid UTF-8", path, name);
        if (strcmp(name, "__metadata__") == 0)
            return qft_fail(err, QFT_ERR_INVALID, "%s: '__metadata__' is reserved, not a tensor name", path);
        for (int j = 0; j < i; j++)
            if (strcmp(tensors[j].name, name) == 0)
                return qft_fail(err, QFT_ERR_INVALID, "%s: duplicate tensor name '%s'", path, name);
        if (w->dtype != QFT_DTYPE_F32 && w->dtype != QFT_DTYPE_F16 && w->dtype != QFT_DTYPE_BF16 &&
            w->dtype != QFT_DTYPE_I32 && w->dtype != QFT_DTYPE_I64)
            return qft_fail(err, QFT_ERR_INVALID, "%s: tensor '%s': cannot write dtype %s", path, name,
                            qft_dtype_name(w->dtype));
        if (w->data_is_f32 && (w->dtype == QFT_DTYPE_I32 || w->dtype == QFT_DTYPE_I64))
            return qft_fail(err, QFT_ERR_INVALID, "%s: tensor '%s': float data cannot be written as %s",
                            path, name, qft_dtype_name(w->dtype));
        if (w->ndim < 0 || w->ndim > QFT_SAFETENSORS_MAX_DIMS || (w->ndim > 0 && !w->shape))
            return qft_fail(err, QFT_ERR_INVALID, "%s: tensor '%s': invalid rank %d", path, name, w->ndim);
        size_t elem = qft_dtype_size(w->dtype), numel = 1;
        for (int d = 0; d < w->ndim; d++) {
            if (w->shape[d] < 0)
                return qft_fail(err, QFT_ERR_INVALID, "%s: tensor '%s': negative dimension %lld", path, name,
                                (long long)w->shape[d]);
            if (w->shape[d] != 0 && numel > SIZE_MAX / 8 / (uint64_t)w->shape[d])
                return qft_fail(err, QFT_ERR_INVALID, "%s: tensor '%s': shape overflows", path, name);
            numel *= (size_t)w->shape[d];
        }
        if (numel > 0 && !w->data)
            return qft_fail(err, QFT_ERR_INVALID, "%s: tensor '%s': NULL data", path, name);
        if (total > SIZE_MAX - numel * elem)
            return qft_fail(err, QFT_ERR_INVALID, "%s: total size overflows", path);
        total += numel * elem;
    }
    int metadata_count = 0;
    if (metadata_kv) {
        for (int i = 0; metadata_kv[2 * i]; i++) {
            const char *key = metadata_kv[2 * i], *value = metadata_kv[2 * i + 1];
            if (!value)
                return qft_fail(err, QFT_ERR_INVALID, "%s: metadata key '%s' has a NULL value", path, key);
            if (!utf8_valid((const uint8_t *)key, strlen(key), NULL) ||
                !utf8_valid((const uint8_t *)value, strlen(value), NULL))
                return qft_fail(err, QFT_ERR_INVALID, "%s: metadata '%s' is not valid UTF-8", path, key);
            for (int j = 0; j < i; j++)
                if (strcmp(metadata_kv[2 * j], key) == 0)
                    return qft_fail(err, QFT_ERR_INVALID, "%s: duplicate metadata key '%s'", path, key);
            metadata_count++;
        }
    }

    // Header: __metadata__ first (as Hugging Face writes it), then tensors in the order given.
    text_buffer header = {0};
    text_append(&header, "{", 1);
    int first = 1;
    if (metadata_count > 0) {
        text_append(&header, "\"__metadata__\":{", 16);
        for (int i = 0; i < metadata_count; i++) {
            if (i) text_append(&header, ",", 1);
            text_json_string(&header, metadata_kv[2 * i]);
            text_append(&header, ":", 1);
            text_json_string(&header, metadata_kv[2 * i + 1]);
        }
        text_append(&header, "}", 1);
        first = 0;
    }
    size_t offset = 0;
    for (int i = 0; i < count; i++) {
        const qft_write_tensor *w = &tensors[i];
        size_t numel = 1;
        for (int d = 0; d < w->ndim; d++) numel *= (size_t)w->shape[d];
        size_t nbytes = numel * qft_dtype_size(w->dtype);
        if (!first) text_append(&header, ",", 1);
        first = 0;
        text_json_string(&header, w->name);
        text_printf(&header, ":{\"dtype\":\"%s\",\"shape\":[", qft_dtype_name(w->dtype));
        for (int d = 0; d < w->ndim; d++) text_printf(&header, d ? ",%lld" : "%lld", (long long)w->shape[d]);
        text_printf(&header, "],\"data_offsets\":[%zu,%zu]}", offset, offset + nbytes);
        offset += nbytes;
    }
    text_append(&header, "}", 1);
    while (!header.failed && header.len % 8 != 0) text_append(&header, " ", 1);
    if (header.failed) {
        free(header.text);
        return qft_fail(err, QFT_ERR_OOM, "%s: out of memory building the header", path);
    }

    size_t tmp_len = strlen(path) + 32;
    char *tmp = malloc(tmp_len);
    if (!tmp) {
        free(header.text);
        return qft_fail(err, QFT_ERR_OOM, "%s: out of memory", path);
    }
    snprintf(tmp, tmp_len, "%s.tmp.%ld", path, (long)getpid());
    qft_status status = QFT_OK;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        status = qft_fail(err, QFT_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        goto out;
    }
    uint64_t header_len = header.len;
    int ok = write_all(f, &header_len, 8) && write_all(f, header.text, header.len);
    for (int i = 0; ok && i < count; i++) {
        size_t numel = 1;
        for (int d = 0; d < tensors[i].ndim; d++) numel *= (size_t)tensors[i].shape[d];
        ok = write_tensor_data(f, &tensors[i], numel) == QFT_OK;
    }
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int saved_errno = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        saved_errno = errno;
    }
    if (!ok) {
        status = qft_fail(err, QFT_ERR_IO, "%s: write to %s failed: %s", path, tmp, strerror(saved_errno));
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        status = qft_fail(err, QFT_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        unlink(tmp);
        goto out;
    }
    status = fsync_parent_dir(path, err);
out:
    free(tmp);
    free(header.text);
    return status;
}
