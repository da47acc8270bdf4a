// Threaded prefetch loader for image folders: worker threads decode and transform images into a ring
// of batch buffers ahead of the consumer, in an order fixed by (seed, epoch, rank), not by timing.
#ifndef QFT_DATA_LOADER_H
#define QFT_DATA_LOADER_H

#include <stdint.h>

#include "../core/status.h"
#include "image_transform.h"
#include "imagefolder.h"

// Epoch order and sharding:
// - The epoch's example order is qft_epoch_order(seed, epoch, shuffle) over the whole folder (the
//   same Philox shuffle as the in-memory datasets), cut into global batches of batch_size examples
//   (the last one may be short unless drop_last).
// - Rank r of world_size takes global batches r, r + world_size, r + 2 * world_size, ... (strided,
//   as the trainer's step k of rank r is global batch k * world_size + r). Without drop_last ranks
//   may get one batch more than others and the union of all ranks' batches is the whole epoch, each
//   example once. With drop_last only full batches are used and their number is cut to a multiple of
//   world_size, so every rank sees the same number of equal batches.
// Corrupt files (the folder was scanned with the header check and a file fails to decode): the
// example at epoch position p is replaced by the first decodable example at p+1, p+2, ... (wrapping
// around the epoch order; so an epoch then holds that example twice), and every failed decode counts
// once in qft_loader_corrupt_count (a run of c corrupt files in the order costs 1 + 2 + ... + c).
// The policy depends only on the files, so batches stay identical for any number of workers.
// Train augmentation (RandomResizedCrop + flip) is qft_image_train_transform keyed by
// (seed, epoch, folder index of the image actually loaded).

typedef struct {
    const qft_imagefolder *folder;  // borrowed: must outlive the loader
    qft_image_transform_config transform;
    int train;       // 1: train transform (random resized crop + flip), 0: eval (resize + center crop)
    int batch_size;  // B
    int workers;     // decoding threads (>= 1)
    int ring_depth;  // K batch buffers prefetched ahead of the consumer (>= 1)
    uint64_t seed;
    int rank, world_size;
    int shuffle;
    int drop_last;
} qft_loader_config;

// One delivered batch: buffers owned by the loader until qft_loader_release.
typedef struct {
    int index;          // batch number within this rank's epoch (0, 1, ...)
    int count;          // examples in the batch (batch_size except a short last batch)
    int size;           // crop_size: images are [count, 3, size, size]
    float *images;      // count * 3 * size * size floats, channel-major per image
    int32_t *labels;    // count class indices
    int32_t *examples;  // count folder indices actually loaded (after corrupt-file replacement)
    int slot;           // ring slot, for release
    unsigned generation;  // the start_epoch call it belongs to (stale releases are ignored)
} qft_loader_batch;

typedef struct qft_loader qft_loader;

// Allocates the ring (K x [B, 3, S, S] floats + labels) and starts the workers, idle until
// qft_loader_start_epoch. Ring buffers are plain malloc; the CUDA path will want pinned memory here
// (cudaHostAlloc) so batches can be copied asynchronously.
qft_status qft_loader_create(qft_loader **out, const qft_loader_config *cfg, qft_error *err);

// Starts (or restarts) producing epoch `epoch` from this rank's batch `first_batch` (0 = the whole
// epoch; resuming mid-epoch passes the position, so the batches before it are never decoded; equal to
// the batches per epoch: nothing left). Batch j is the same whatever the start. An epoch in progress
// is abandoned: its in-flight work finishes and is dropped, every batch still held by the consumer
// becomes invalid. A first_batch outside [0, batches per epoch] is QFT_ERR_INVALID (nothing changes).
qft_status qft_loader_start_epoch(qft_loader *loader, uint64_t epoch, int first_batch, qft_error *err);

// Batches of this rank in one epoch.
int qft_loader_batches_per_epoch(const qft_loader *loader);

// Blocks until the next batch in order is ready. Returns 1 and fills *batch, 0 at the end of the
// epoch, or -1 with err filled (a batch whose every candidate file is corrupt, no epoch started, or
// all K buffers held by the consumer without release).
int qft_loader_next(qft_loader *loader, qft_loader_batch *batch, qft_error *err);

// Gives a delivered batch's buffer back to the workers (batches may be released in any order).
void qft_loader_release(qft_loader *loader, const qft_loader_batch *batch);

// Failed decodes so far, over all epochs (work abandoned by start_epoch / destroy not counted).
int64_t qft_loader_corrupt_count(const qft_loader *loader);

// Image decodes attempted so far (failed ones and abandoned work included): the decoding work done.
int64_t qft_loader_decode_count(const qft_loader *loader);

// Stops the workers (finishing at most the image each is on), joins them and frees everything.
// Safe at any point, mid-epoch included. NULL is a no-op.
void qft_loader_destroy(qft_loader *loader);

#endif
