// IDX image/label files (MNIST, Fashion-MNIST), gzipped or raw: big-endian magic 0x00000803 with
// (count, rows, cols) for images, 0x00000801 with (count) for labels, then one byte per value.
#ifndef QFT_DATA_IDX_H
#define QFT_DATA_IDX_H

#include <stdint.h>

#include "../core/status.h"

#define QFT_IDX_MAGIC_IMAGES 0x00000803u
#define QFT_IDX_MAGIC_LABELS 0x00000801u
// Sanity bounds on header dimensions (a corrupt header must not drive allocation sizes).
#define QFT_IDX_MAX_SIDE 65535

typedef struct {
    int count, rows, cols;
    uint8_t *pixels;  // count * rows * cols, image-major, row-major within an image
    uint8_t *labels;  // count; any uint8 is accepted here (the caller checks against num_labels)
} qft_idx_dataset;

// Loads both files (gzip detected automatically; raw files read as is). Errors, one line naming the
// file: missing/unreadable (QFT_ERR_IO); wrong magic, absurd dimensions, truncated data, trailing data
// (QFT_ERR_PARSE); image/label count mismatch (QFT_ERR_INVALID). On failure ds is left zeroed.
qft_status qft_idx_load(qft_idx_dataset *ds, const char *images_path, const char *labels_path,
                        qft_error *err);

// Frees and zeroes; safe on a zeroed or already-freed dataset.
void qft_idx_free(qft_idx_dataset *ds);

// "/usr/share/datasets/fashion-mnist": where Debian's dataset-fashion-mnist installs
// train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and
// t10k-labels-idx1-ubyte.gz.
const char *qft_idx_default_dir(void);

#endif
