// Saving and loading the quantizer state of a model's sites (scales, zero points, channel-group
// maps) as safetensors: the calibration file `qft calibrate` writes and the part of a checkpoint
// that QAT learns. Tensors are "<prefix><site>.scale", ".zero_point", ".column_group".
#ifndef QFT_QUANT_QUANT_IO_H
#define QFT_QUANT_QUANT_IO_H

#include "../core/status.h"
#include "../io/safetensors.h"
#include "site.h"

// The enabled sites' tensors and "qft.format.<site>" metadata (the format each was made with).
// *tensors / *metadata are malloc'd arrays the caller frees with qft_quant_io_free; host copies of the
// values live in *storage (freed there too). metadata is NULL-terminated key, value pairs.
typedef struct {
    qft_write_tensor *tensors;
    int count;
    const char **metadata;
    char *strings;
    void *storage;
    int64_t *shapes;
} qft_quant_io_export;

qft_status qft_quant_io_collect(const qft_quant_state *st, const char *prefix, qft_quant_io_export *out,
                                qft_error *err);
void qft_quant_io_free(qft_quant_io_export *ex);

// Writes only the quantizer state (plus extra metadata pairs, NULL-terminated; may be NULL).
qft_status qft_quant_io_save(const qft_quant_state *st, const char *path, const char *const *extra_metadata,
                             qft_error *err);

// 1 when the file records a state for at least one enabled site under `prefix`.
int qft_quant_io_has_state(const qft_quant_state *st, const qft_safetensors *file, const char *prefix);

// qft_quant_io_load on the file at `path` (opened and closed here).
qft_status qft_quant_io_load_path(qft_quant_state *st, const char *path, const char *prefix, qft_error *err);

// Reads every enabled site's state from an open file. A site missing from the file, a shape that
// differs, or a format recorded differently from the site's current rule is an error naming both
// (the rules changed since calibration). Sets `calibrated` on every enabled site.
qft_status qft_quant_io_load(qft_quant_state *st, const qft_safetensors *file, const char *prefix, qft_error *err);

#endif
