// In-memory labelled datasets the trainer draws batches from: Fashion-MNIST images (IDX), a
// synthetic text task and GLUE tasks (tokenized at open time or read from the token cache), behind one interface that fills a host qft_batch from a list of indices.
#ifndef QFT_DATA_DATASET_H
#define QFT_DATA_DATASET_H

#include <stdint.h>

#include "../core/status.h"
#include "../io/config.h"
#include "../model/model.h"
#include "glue.h"
#include "idx.h"
#include "imagefolder.h"
#include "loader.h"

typedef enum { QFT_DATASET_IMAGES = 0, QFT_DATASET_TEXT, QFT_DATASET_IMAGEFOLDER } qft_dataset_kind;

typedef struct {
    qft_dataset_kind kind;
    int count;
    // images: uint8 pixels normalized on the fly as (x / 255 - mean) / std (data.normalize_*; 1 channel)
    qft_idx_dataset idx;
    float mean, std;
    // text: fixed-length rows (padded to seq_len)
    int seq_len;
    int32_t *ids, *types, *labels;
    float *mask;
    float *targets;  // regression targets (GLUE STS-B), else NULL
    const qft_glue_task_info *glue_task;  // data.dataset glue: the task, else NULL
    int has_labels;           // 0 for the GLUE test splits (their files have none; labels hold 0)
    int token_cache_hit;      // glue: the rows came from the token cache
    int token_cache_rejected; // glue: a cache file was there but failed validation (rebuilt)
    // imagefolder: <data.path>/train or /val, decoded by a threaded loader created on the first batch
    // (its batch size is the batch buffer's capacity). Training split: train transform, shuffled,
    // drop_last; evaluation split: eval transform, in folder order, short last batch.
    qft_imagefolder folder;
    qft_loader_config loader_cfg;
    qft_loader *loader;
    long loader_epoch;     // epoch the loader is producing (-1: none)
    int loader_next;       // index of the next batch it will deliver
} qft_dataset;

// Host staging buffers for one batch of up to `capacity` rows.
typedef struct {
    int capacity;
    float *images;
    int32_t *ids, *types, *labels;
    float *mask, *targets;
    qft_batch batch;  // points into the buffers above
} qft_batch_buffer;

// Splits qft_dataset_open reads. Every dataset has train and evaluation (GLUE: dev, MNLI
// dev_matched); the mismatched and test splits are GLUE's (mismatched: MNLI only).
enum {
    QFT_SPLIT_TRAIN = 0,
    QFT_SPLIT_EVAL = 1,
    QFT_SPLIT_EVAL_MISMATCHED = 2,  // MNLI dev_mismatched
    QFT_SPLIT_TEST = 3,             // GLUE test (MNLI test_matched): no labels
    QFT_SPLIT_TEST_MISMATCHED = 4,  // MNLI test_mismatched
    QFT_SPLIT_VALIDATION = 5,       // data.validation_size examples held out of the training split
};

// Opens one split (QFT_SPLIT_*). data.train_limit applies to the training split, data.eval_limit
// to every other one but the validation split: the first N examples, or for imagefolder a subset
// keeping every class (qft_imagefolder_subset).
// data.validation_size = N > 0 then divides the M training examples left after data.train_limit:
// the validation split (any dataset kind; read from the training files, evaluated like the
// evaluation split: for imagefolder the eval transform, folder order, no drop_last) is the N
// examples qft_validation_picks marks (imagefolder: qft_imagefolder_pick, every class kept), and
// the training split the other M - N, both in their original order. N >= M (or, for imagefolder,
// N below the number of classes) is QFT_ERR_INVALID, as is the validation split with N = 0.
qft_status qft_dataset_open(qft_dataset *ds, const qft_config *cfg, int split, qft_error *err);

// The validation examples among `count` training examples: chosen[i] = 1 for the n examples
// floor(k * count / n), k = 0..n-1 (evenly spaced, the first one included; all when n >= count),
// 0 for the others. Depends on nothing else (no seed).
void qft_validation_picks(int count, long n, char *chosen);
void qft_dataset_free(qft_dataset *ds);

qft_status qft_batch_buffer_init(qft_batch_buffer *buf, const qft_dataset *ds, int capacity, qft_error *err);
void qft_batch_buffer_free(qft_batch_buffer *buf);

// imagefolder: fills buf->batch with batch `index` of epoch `epoch` (the loader's order, keyed by
// (run.seed, epoch)); batches are buf->capacity examples. Requesting any batch other than the one the
// loader produces next restarts the loader at that batch, so a resume decodes nothing before its
// position. *count gets the batch's size.
qft_status qft_dataset_loader_fill(qft_dataset *ds, long epoch, int index, qft_batch_buffer *buf, int *count,
                                   qft_error *err);

// imagefolder: files skipped when scanning plus failed decodes so far (0 for other datasets).
long qft_dataset_skipped_files(const qft_dataset *ds);
long qft_dataset_corrupt_decodes(const qft_dataset *ds);
// imagefolder: image decodes attempted by the loader so far (failed ones included; 0 for other datasets).
long qft_dataset_image_decodes(const qft_dataset *ds);

// Fills buf->batch with the examples at indices[0..n-1].
void qft_dataset_fill(const qft_dataset *ds, const int *indices, int n, qft_batch_buffer *buf);

// The example order of one epoch: a Fisher-Yates shuffle keyed by (seed, epoch) with Philox, so any
// epoch's order can be recomputed on resume, or the identity when shuffle is off.
void qft_epoch_order(int *order, int count, uint64_t seed, uint64_t epoch, int shuffle);

#endif
