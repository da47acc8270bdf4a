// Threaded prefetch loader: workers claim examples (batch j, position e) in order under one mutex,
// decode + transform them unlocked into ring slot j % K, and the consumer takes batches in order.
#include "loader.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"

typedef enum { SLOT_FREE = 0, SLOT_FILLING, SLOT_READY, SLOT_HELD } slot_state;

typedef struct {
    slot_state state;
    int batch;  // local batch index held, -1 when free
    int count, done;
    int failed;
    qft_error error;
    float *images;
    int32_t *labels, *examples;
} loader_slot;

struct qft_loader {
    qft_loader_config cfg;
    size_t image_floats;  // 3 * S * S
    int global_batches, local_batches, last_count;
    int *order;
    pthread_t *threads;
    int threads_started;
    loader_slot *slots;

    // everything below is guarded by mutex
    pthread_mutex_t mutex;
    pthread_cond_t changed;  // broadcast on every state change (few threads, per-image events)
    int stop, active;
    unsigned generation;  // bumped by start_epoch: work claimed under an older one is dropped
    uint64_t epoch;
    int64_t next_item, total_items;
    int next_deliver;
    int inflight;
    int64_t corrupt;
    int64_t decodes;
};

static int local_count(const qft_loader *l, int j) { return j == l->local_batches - 1 ? l->last_count : l->cfg.batch_size; }

// Decodes and transforms example e of local batch j into slot s, counting decode attempts and failures.
// Runs without the lock: the order and the slot's rows it writes are not touched by anyone else until
// the claim is accounted for.
static qft_status load_item(qft_loader *l, int j, int e, int s, uint64_t epoch, int64_t *decodes, int64_t *corrupt,
                            qft_error *err) {
    const qft_imagefolder *folder = l->cfg.folder;
    int count = folder->count, B = l->cfg.batch_size;
    int64_t g = (int64_t)l->cfg.rank + (int64_t)j * l->cfg.world_size;
    int64_t p = g * B + e;
    loader_slot *slot = &l->slots[s];
    float *out = slot->images + (size_t)e * l->image_floats;
    for (int tries = 0; tries < count; tries++) {
        int idx = l->order[(p + tries) % count];
        qft_image_rgb8 image;
        qft_error load_err;
        (*decodes)++;
        if (qft_imagefolder_load(folder, idx, &image, &load_err) != QFT_OK) {
            (*corrupt)++;
            continue;
        }
        qft_status st = l->cfg.train ? qft_image_train_transform(&l->cfg.transform, &image, l->cfg.seed, epoch,
                                                                 (uint64_t)idx, out, err)
                                     : qft_image_eval_transform(&l->cfg.transform, &image, out, err);
        qft_image_free(&image);
        if (st != QFT_OK) return st;
        slot->labels[e] = folder->labels[idx];
        slot->examples[e] = idx;
        return QFT_OK;
    }
    return qft_fail(err, QFT_ERR_PARSE, "%s: no decodable image for epoch position %lld (every file failed)",
                    folder->root, (long long)p);
}

static void *worker_main(void *arg) {
    qft_loader *l = arg;
    int B = l->cfg.batch_size, K = l->cfg.ring_depth;
    pthread_mutex_lock(&l->mutex);
    while (!l->stop) {
        if (!l->active || l->next_item >= l->total_items) {
            pthread_cond_wait(&l->changed, &l->mutex);
            continue;
        }
        int j = (int)(l->next_item / B), e = (int)(l->next_item % B), s = j % K;
        loader_slot *slot = &l->slots[s];
        if (slot->batch != j) {
            if (slot->state != SLOT_FREE) {  // batch j - K not released yet
                pthread_cond_wait(&l->changed, &l->mutex);
                continue;
            }
            slot->batch = j;
            slot->state = SLOT_FILLING;
            slot->count = local_count(l, j);
            slot->done = 0;
            slot->failed = 0;
        }
        l->next_item++;
        l->inflight++;
        unsigned generation = l->generation;
        uint64_t epoch = l->epoch;
        pthread_mutex_unlock(&l->mutex);

        int64_t decodes = 0, corrupt = 0;
        qft_error err;
        qft_status st = load_item(l, j, e, s, epoch, &decodes, &corrupt, &err);

        pthread_mutex_lock(&l->mutex);
        l->inflight--;
        l->decodes += decodes;
        if (generation == l->generation) {
            l->corrupt += corrupt;
            if (st != QFT_OK && !slot->failed) {
                slot->failed = 1;
                slot->error = err;
            }
            if (++slot->done == slot->count) slot->state = SLOT_READY;
        }
        pthread_cond_broadcast(&l->changed);
    }
    pthread_mutex_unlock(&l->mutex);
    return NULL;
}

static void stop_workers(qft_loader *l) {
    pthread_mutex_lock(&l->mutex);
    l->stop = 1;
    pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->mutex);
    for (int t = 0; t < l->threads_started; t++) pthread_join(l->threads[t], NULL);
    l->threads_started = 0;
}

void qft_loader_destroy(qft_loader *l) {
    if (!l) return;
    stop_workers(l);
    if (l->slots)
        for (int s = 0; s < l->cfg.ring_depth; s++) {
            free(l->slots[s].images);
            free(l->slots[s].labels);
            free(l->slots[s].examples);
        }
    free(l->slots);
    free(l->threads);
    free(l->order);
    pthread_cond_destroy(&l->changed);
    pthread_mutex_destroy(&l->mutex);
    free(l);
}

qft_status qft_loader_create(qft_loader **out, const qft_loader_config *cfg, qft_error *err) {
    *out = NULL;
    if (!cfg->folder || cfg->folder->count <= 0)
        return qft_fail(err, QFT_ERR_INVALID, "loader: no image folder (or an empty one)");
    if (cfg->batch_size < 1 || cfg->workers < 1 || cfg->ring_depth < 1 || cfg->world_size < 1 || cfg->rank < 0 ||
        cfg->rank >= cfg->world_size || cfg->transform.crop_size < 1)
        return qft_fail(err, QFT_ERR_INVALID,
                        "loader: batch_size %d, workers %d, ring_depth %d, crop %d must be >= 1 and rank %d in "
                        "[0, world_size %d)",
                        cfg->batch_size, cfg->workers, cfg->ring_depth, cfg->transform.crop_size, cfg->rank,
                        cfg->world_size);
    int count = cfg->folder->count, B = cfg->batch_size, W = cfg->world_size;
    int global = cfg->drop_last ? count / B / W * W : (count + B - 1) / B;
    int local = global > cfg->rank ? (global - cfg->rank + W - 1) / W : 0;
    if (local == 0)
        return qft_fail(err, QFT_ERR_INVALID, "%s: %d images make no batch of %d for rank %d of %d",
                        cfg->folder->root, count, B, cfg->rank, W);

    qft_loader *l = calloc(1, sizeof *l);
    if (!l) return qft_fail(err, QFT_ERR_OOM, "loader: out of memory");
    l->cfg = *cfg;
    l->image_floats = (size_t)3 * cfg->transform.crop_size * cfg->transform.crop_size;
    l->global_batches = global;
    l->local_batches = local;
    int last_global = cfg->rank + (local - 1) * W;
    l->last_count = cfg->drop_last || (int64_t)(last_global + 1) * B <= count ? B : count - last_global * B;
    pthread_mutex_init(&l->mutex, NULL);
    pthread_cond_init(&l->changed, NULL);
    l->order = malloc(sizeof(int) * (size_t)count);
    l->slots = calloc((size_t)cfg->ring_depth, sizeof *l->slots);
    l->threads = calloc((size_t)cfg->workers, sizeof *l->threads);
    int ok = l->order && l->slots && l->threads;
    for (int s = 0; ok && s < cfg->ring_depth; s++) {
        loader_slot *slot = &l->slots[s];
        slot->batch = -1;
        // plain host memory for now; with CUDA these become pinned (cudaHostAlloc) for async copies
        slot->images = malloc(sizeof(float) * l->image_floats * (size_t)B);
        slot->labels = malloc(sizeof(int32_t) * (size_t)B);
        slot->examples = malloc(sizeof(int32_t) * (size_t)B);
        ok = slot->images && slot->labels && slot->examples;
    }
    if (!ok) {
        qft_loader_destroy(l);
        return qft_fail(err, QFT_ERR_OOM, "loader: out of memory for %d buffers of %d images", cfg->ring_depth, B);
    }
    for (int t = 0; t < cfg->workers; t++) {
        if (pthread_create(&l->threads[t], NULL, worker_main, l) != 0) {
            qft_loader_destroy(l);
            return qft_fail(err, QFT_ERR_INTERNAL, "loader: cannot start worker thread %d", t);
        }
        l->threads_started++;
    }
    *out = l;
    return QFT_OK;
}

qft_status qft_loader_start_epoch(qft_loader *l, uint64_t epoch, int first_batch, qft_error *err) {
    if (first_batch < 0 || first_batch > l->local_batches)
        return qft_fail(err, QFT_ERR_INVALID, "%s: start batch %d is outside the epoch's %d batches", l->cfg.folder->root,
                        first_batch, l->local_batches);
    pthread_mutex_lock(&l->mutex);
    l->generation++;
    l->active = 0;
    pthread_cond_broadcast(&l->changed);
    while (l->inflight > 0) pthread_cond_wait(&l->changed, &l->mutex);
    qft_epoch_order(l->order, l->cfg.folder->count, l->cfg.seed, epoch, l->cfg.shuffle);
    for (int s = 0; s < l->cfg.ring_depth; s++) {
        l->slots[s].state = SLOT_FREE;
        l->slots[s].batch = -1;
    }
    int B = l->cfg.batch_size;
    l->epoch = epoch;
    // Workers claim items from here on, so nothing before first_batch is ever decoded; a batch's
    // content depends only on (seed, epoch, its position), so it equals the same batch of a full epoch.
    l->next_item = (int64_t)first_batch * B;
    l->total_items = (int64_t)(l->local_batches - 1) * B + l->last_count;
    l->next_deliver = first_batch;
    l->active = 1;
    pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->mutex);
    return QFT_OK;
}

int qft_loader_batches_per_epoch(const qft_loader *l) { return l->local_batches; }

int qft_loader_next(qft_loader *l, qft_loader_batch *batch, qft_error *err) {
    pthread_mutex_lock(&l->mutex);
    int result = 1;
    if (!l->active) {
        result = -1;
        qft_fail(err, QFT_ERR_INVALID, "loader: next batch before qft_loader_start_epoch");
    } else if (l->next_deliver >= l->local_batches) {
        result = 0;
    } else {
        int j = l->next_deliver, s = j % l->cfg.ring_depth;
        loader_slot *slot = &l->slots[s];
        if (slot->state == SLOT_HELD && slot->batch != j) {
            result = -1;
            qft_fail(err, QFT_ERR_INVALID, "loader: batch %d still held; release it before taking batch %d",
                     slot->batch, j);
        } else {
            while (!(slot->batch == j && slot->state == SLOT_READY)) pthread_cond_wait(&l->changed, &l->mutex);
            l->next_deliver++;
            if (slot->failed) {  // skip the batch: its buffer goes back to the workers
                result = -1;
                *err = slot->error;
                slot->state = SLOT_FREE;
                slot->batch = -1;
                pthread_cond_broadcast(&l->changed);
            } else {
                slot->state = SLOT_HELD;
                batch->index = j;
                batch->count = slot->count;
                batch->size = l->cfg.transform.crop_size;
                batch->images = slot->images;
                batch->labels = slot->labels;
                batch->examples = slot->examples;
                batch->slot = s;
                batch->generation = l->generation;
            }
        }
    }
    pthread_mutex_unlock(&l->mutex);
    return result;
}

void qft_loader_release(qft_loader *l, const qft_loader_batch *batch) {
    pthread_mutex_lock(&l->mutex);
    if (batch->generation == l->generation && batch->slot >= 0 && batch->slot < l->cfg.ring_depth) {
        loader_slot *slot = &l->slots[batch->slot];
        if (slot->state == SLOT_HELD && slot->batch == batch->index) {
            slot->state = SLOT_FREE;
            slot->batch = -1;
            pthread_cond_broadcast(&l->changed);
        }
    }
    pthread_mutex_unlock(&l->mutex);
}

static int64_t locked_read(const qft_loader *l, const int64_t *counter) {
    qft_loader *m = (qft_loader *)l;  // the mutex is not part of the observable state
    pthread_mutex_lock(&m->mutex);
    int64_t n = *counter;
    pthread_mutex_unlock(&m->mutex);
    return n;
}

int64_t qft_loader_corrupt_count(const qft_loader *l) { return locked_read(l, &l->corrupt); }

int64_t qft_loader_decode_count(const qft_loader *l) { return locked_read(l, &l->decodes); }
