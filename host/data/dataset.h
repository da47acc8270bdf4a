// In-memory labelled datasets the trainer draws batches from: Fashion-MNIST images (IDX), a
// synthetic text task and GLUE tasks (tokenized once at open time), behind one interface that fills a host qft_batch from a list of indices.
#ifndef QFT_DATA_DATASET_H
#define QFT_DATA_DATASET_H

#include <stdint.h>

#include "../core/status.h"
#include "../io/config.h"
#include "../model/model.h"
#include "glue.h"
#include "idx.h"

typedef enum { QFT_DATASET_IMAGES = 0, QFT_DATASET_TEXT } qft_dataset_kind;

typedef struct {
    qft_dataset_kind kind;
    int count;
    // images: uint8 pixels normalized on the fly as (x/255 - mean) / std
    qft_idx_dataset idx;
    float mean, std;
    // text: fixed-length rows (padded to seq_len)
    int seq_len;
    int32_t *ids, *types, *labels;
    float *mask;
    float *targets;  // regression targets (GLUE STS-B), else NULL
    const qft_glue_task_info *glue_task;  // data.dataset glue: the task, else NULL
} qft_dataset;

// Host staging buffers for one batch of up to `capacity` rows.
typedef struct {
    int capacity;
    float *images;
    int32_t *ids, *types, *labels;
    float *mask, *targets;
    qft_batch batch;  // points into the buffers above
} qft_batch_buffer;

// split: 0 = train, 1 = evaluation (GLUE: dev, MNLI dev_matched). Applies data.train_limit / data.eval_limit.
qft_status qft_dataset_open(qft_dataset *ds, const qft_config *cfg, int split, qft_error *err);
void qft_dataset_free(qft_dataset *ds);

qft_status qft_batch_buffer_init(qft_batch_buffer *buf, const qft_dataset *ds, int capacity, qft_error *err);
void qft_batch_buffer_free(qft_batch_buffer *buf);

// Fills buf->batch with the examples at indices[0..n-1].
void qft_dataset_fill(const qft_dataset *ds, const int *indices, int n, qft_batch_buffer *buf);

// The example order of one epoch: a Fisher-Yates shuffle keyed by (seed, epoch) with Philox, so any
// epoch's order can be recomputed on resume, or the identity when shuffle is off.
void qft_epoch_order(int *order, int count, uint64_t seed, uint64_t epoch, int shuffle);

#endif
