// Hugging Face safetensors: validated read-only mmap reader, dtype conversion to fp32/int32, and an
// atomic writer. Layout: 8-byte little-endian header length N, N bytes of JSON, then the data buffer.
#ifndef QFT_IO_SAFETENSORS_H
#define QFT_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

#define QFT_SAFETENSORS_MAX_DIMS 8
// Same cap as the Hugging Face reader: a bigger header is a corrupt or hostile file.
#define QFT_SAFETENSORS_MAX_HEADER 100000000ull

typedef enum {
    QFT_DTYPE_F32,
    QFT_DTYPE_F16,
    QFT_DTYPE_BF16,
    QFT_DTYPE_I64,
    QFT_DTYPE_I32,
    // Parsed, validated and reported; qft_safetensors_read_* convert the ones they list.
    QFT_DTYPE_F64,
    QFT_DTYPE_I16,
    QFT_DTYPE_I8,
    QFT_DTYPE_U64,
    QFT_DTYPE_U32,
    QFT_DTYPE_U16,
    QFT_DTYPE_U8,
    QFT_DTYPE_BOOL,
    QFT_DTYPE_F8_E4M3,
    QFT_DTYPE_F8_E5M2,
    QFT_DTYPE_COUNT
} qft_dtype;

// The safetensors spelling ("F32", "BF16", ...); "?" for an out-of-range value.
const char *qft_dtype_name(qft_dtype dtype);
// Bytes per element (0 for an out-of-range value).
size_t qft_dtype_size(qft_dtype dtype);
// Parses the safetensors spelling; returns 0 and fills *out, or -1 if unknown.
int qft_dtype_parse(const char *name, qft_dtype *out);

typedef struct {
    char *name;
    qft_dtype dtype;
    int ndim;                                 // 0 = scalar (numel 1)
    int64_t shape[QFT_SAFETENSORS_MAX_DIMS];
    size_t numel;
    size_t offset;                            // from the start of the data buffer
    size_t nbytes;                            // numel * qft_dtype_size(dtype)
} qft_tensor_info;

// An open file. Fields are read-only for callers; iterate tensors[0 .. count-1], which are in
// data-buffer order (ascending offset).
typedef struct {
    char *path;
    const uint8_t *map;          // the whole file, mmap'd read-only
    size_t map_size;
    const uint8_t *data;         // map + 8 + header length
    size_t data_size;
    qft_tensor_info *tensors;
    int count;
    int *name_order;             // indices into tensors sorted by name (for lookups)
    char **metadata_keys;        // "__metadata__" entries, in file order
    char **metadata_values;
    int metadata_count;
} qft_safetensors;

// Maps and fully validates the file: header size, JSON, every entry's dtype/shape/offsets, no
// duplicate names, and tensors tiling the data buffer exactly (no overlap, gap or trailing bytes:
// the Hugging Face reader rejects those too). On failure st is left closed (safe to close again).
qft_status qft_safetensors_open(qft_safetensors *st, const char *path, qft_error *err);
// Unmaps and frees; safe on a zeroed or already-closed struct.
void qft_safetensors_close(qft_safetensors *st);

// NULL if absent.
const qft_tensor_info *qft_safetensors_find(const qft_safetensors *st, const char *name);
// NULL if absent.
const char *qft_safetensors_metadata(const qft_safetensors *st, const char *key);
// The tensor's raw little-endian bytes inside the mapping (valid until close; may be unaligned).
const void *qft_safetensors_data(const qft_safetensors *st, const qft_tensor_info *t);

// Finds `name` and checks its shape: "<file>: missing tensor 'x'" or
// "<file>: tensor 'x': expected shape [64, 3], got [64, 4]" (QFT_ERR_SHAPE). *out may be NULL.
qft_status qft_safetensors_expect(const qft_safetensors *st, const char *name, int ndim,
                                  const int64_t *shape, const qft_tensor_info **out, qft_error *err);

// Converts F32 / F16 / BF16 / F64 to fp32 into dst (t->numel floats). F16 subnormals, inf and NaN
// are exact; F64 rounds to nearest. Other dtypes: QFT_ERR_SHAPE naming the tensor.
qft_status qft_safetensors_read_f32(const qft_safetensors *st, const qft_tensor_info *t, float *dst,
                                    qft_error *err);
// Converts I32 / I64 / U32 / U64 (range-checked: an out-of-range value is QFT_ERR_INVALID naming the
// element) and I16 / U16 / I8 / U8 / BOOL to int32 into dst (t->numel ints).
qft_status qft_safetensors_read_i32(const qft_safetensors *st, const qft_tensor_info *t,
                                    int32_t *dst, qft_error *err);

typedef struct {
    const char *name;
    qft_dtype dtype;     // F32, F16, BF16, I32 or I64
    int ndim;            // 0 .. QFT_SAFETENSORS_MAX_DIMS
    const int64_t *shape;
    const void *data;    // numel elements of dtype, or of float when data_is_f32
    int data_is_f32;     // data is float*, rounded to dtype (F32/F16/BF16 only) nearest-even
} qft_write_tensor;

// Writes tensors in the order given, header padded with spaces to a multiple of 8 bytes.
// metadata_kv is NULL or "key", "value", ..., NULL. Atomic: writes "<path>.tmp.<pid>", fsyncs,
// renames over path and fsyncs the directory; on failure path is untouched and the temp removed.
qft_status qft_safetensors_write(const char *path, const qft_write_tensor *tensors, int count,
                                 const char *const *metadata_kv, qft_error *err);

// Scalar conversions (exposed for the quantizers and tests). Round-to-nearest-even; NaN stays NaN
// (quiet, sign kept), overflow goes to inf.
float qft_f16_to_f32(uint16_t h);
float qft_bf16_to_f32(uint16_t b);
uint16_t qft_f32_to_f16(float f);
uint16_t qft_f32_to_bf16(float f);

#endif
