// Dataset opening (Fashion-MNIST from IDX, synthetic text, GLUE TSVs through WordPiece and the token cache, image folders through the threaded loader), batch filling and epoch ordering.
// Everything here is deterministic in (config, seed, epoch) so runs and resumes are reproducible.
#include "dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "../core/rng.h"
#include "../text/wordpiece.h"
#include "token_cache.h"

// data.normalize_mean / normalize_std for images of `channels` channels: one value applies to every
// channel, else there must be one per channel.
static qft_status normalize_per_channel(const qft_config *cfg, int channels, float *mean, float *std,
                                        qft_error *err) {
    const qft_real_list *lists[2] = {&cfg->data.normalize_mean, &cfg->data.normalize_std};
    for (int i = 0; i < 2; i++) {
        const qft_real_list *list = lists[i];
        if (list->count != 1 && list->count != channels)
            return qft_fail(err, QFT_ERR_INVALID, "data.%s: %d values for %d-channel images (give 1, or one per "
                            "channel)", i ? "normalize_std" : "normalize_mean", list->count, channels);
        for (int c = 0; c < channels; c++) (i ? std : mean)[c] = (float)list->values[list->count == 1 ? 0 : c];
    }
    return QFT_OK;
}

static qft_status open_fashion_mnist(qft_dataset *ds, const qft_config *cfg, int split, qft_error *err) {
    const char *dir = cfg->data.path[0] ? cfg->data.path : qft_idx_default_dir();
    const char *stem = split == 0 ? "train" : "t10k";
    char images[1100], labels[1100];
    snprintf(images, sizeof images, "%s/%s-images-idx3-ubyte.gz", dir, stem);
    snprintf(labels, sizeof labels, "%s/%s-labels-idx1-ubyte.gz", dir, stem);
    qft_status st = qft_idx_load(&ds->idx, images, labels, err);
    if (st != QFT_OK) return st;
    const qft_model_config *mc = &cfg->model;
    if (mc->num_channels != 1 || mc->image_size != ds->idx.rows || ds->idx.rows != ds->idx.cols) {
        return qft_fail(err, QFT_ERR_SHAPE,
                        "%s: images are 1x%dx%d but model.num_channels=%d, model.image_size=%d", images,
                        ds->idx.rows, ds->idx.cols, mc->num_channels, mc->image_size);
    }
    for (int i = 0; i < ds->idx.count; i++)
        if (ds->idx.labels[i] >= mc->num_labels)
            return qft_fail(err, QFT_ERR_INVALID, "%s: label %d of example %d is >= model.num_labels (%d)", labels,
                            ds->idx.labels[i], i, mc->num_labels);
    ds->kind = QFT_DATASET_IMAGES;
    ds->count = ds->idx.count;
    return normalize_per_channel(cfg, 1, &ds->mean, &ds->std, err);
}

// A text task with a learnable rule, for exercising BERT training without GLUE files:
// label = (count of token ids < vocab/2 among the real tokens) > half of them; random lengths
// with padding. Train and eval draw from different Philox streams.
static qft_status open_synthetic_text(qft_dataset *ds, const qft_config *cfg, int split, qft_error *err) {
    int count = split == 0 ? 4096 : 512;
    int T = cfg->data.max_seq_len, V = cfg->model.vocab_size;
    if (cfg->model.num_labels != 2)
        return qft_fail(err, QFT_ERR_INVALID, "data.dataset=synthetic_text needs model.num_labels=2, got %d",
                        cfg->model.num_labels);
    if (T < 4 || V < 8)
        return qft_fail(err, QFT_ERR_INVALID, "data.dataset=synthetic_text needs data.max_seq_len >= 4 and "
                        "model.vocab_size >= 8");
    size_t n = (size_t)count * T;
    ds->ids = calloc(n, sizeof(int32_t));
    ds->types = calloc(n, sizeof(int32_t));
    ds->mask = calloc(n, sizeof(float));
    ds->labels = calloc((size_t)count, sizeof(int32_t));
    if (!ds->ids || !ds->types || !ds->mask || !ds->labels)
        return qft_fail(err, QFT_ERR_OOM, "out of memory building the synthetic text set");
    uint64_t seed = (uint64_t)cfg->run.seed, stream = 0x7E47u + (uint64_t)split;
    for (int r = 0; r < count; r++) {
        uint64_t base = (uint64_t)r * (T + 1);
        int len = 2 + (int)(qft_philox_uniform(seed, stream, base) * (float)(T - 1));
        if (len > T) len = T;
        int low = 0;
        for (int t = 0; t < len; t++) {
            int id = t == 0 ? 1 : 4 + (int)(qft_philox_uniform(seed, stream, base + 1 + t) * (float)(V - 4));
            if (id >= V) id = V - 1;
            ds->ids[(size_t)r * T + t] = id;
            ds->mask[(size_t)r * T + t] = 1.0f;
            ds->types[(size_t)r * T + t] = t >= len / 2;
            if (t > 0 && id < V / 2) low++;
        }
        ds->labels[r] = 2 * low > len - 1;
    }
    ds->kind = QFT_DATASET_TEXT;
    ds->count = count;
    ds->seq_len = T;
    return QFT_OK;
}

// Which GLUE file a dataset split reads.
static qft_glue_split glue_split_of(int split) {
    switch (split) {
    case QFT_SPLIT_TRAIN: return QFT_GLUE_TRAIN;
    case QFT_SPLIT_EVAL: return QFT_GLUE_DEV;
    case QFT_SPLIT_EVAL_MISMATCHED: return QFT_GLUE_DEV_MISMATCHED;
    case QFT_SPLIT_TEST: return QFT_GLUE_TEST;
    default: return QFT_GLUE_TEST_MISMATCHED;
    }
}

// The token cache key: everything the rows depend on. The TSV and vocab go in by content (a 54 MB
// QQP-sized file hashes in 0.06 s, against 3.4 s of tokenizing), so a copied or edited file can
// never hit a stale entry the way size + mtime could.
static qft_status glue_cache_key(const qft_config *cfg, const qft_glue_task_info *task, qft_glue_split split,
                                 const char *tsv, long limit, uint64_t *key, qft_error *err) {
    qft_hash64 hash;
    qft_hash64_init(&hash);
    uint32_t version = QFT_TOKEN_CACHE_VERSION;
    int64_t fields[4] = {(int64_t)split, cfg->data.do_lower_case, cfg->data.max_seq_len, limit};
    qft_hash64_update(&hash, &version, sizeof version);
    qft_hash64_update(&hash, task->name, strlen(task->name) + 1);
    qft_hash64_update(&hash, fields, sizeof fields);
    qft_status st = qft_hash64_update_file(&hash, tsv, err);
    if (st == QFT_OK) st = qft_hash64_update_file(&hash, cfg->data.vocab, err);
    *key = hash.state;
    return st;
}

// Reads and tokenizes a GLUE split into rows as BERT does ([CLS] a [SEP] b [SEP], longest-first
// truncation to seq_len, [PAD] to seq_len), the first `limit` examples only when limit > 0.
static qft_status tokenize_glue(const qft_glue_task_info *task, const char *path, qft_glue_split split,
                                const qft_wordpiece *tokenizer, long limit, int T, qft_token_rows *rows,
                                qft_error *err) {
    qft_glue_examples examples;
    qft_status st = qft_glue_load_split(task->name, path, split, &examples, err);
    if (st != QFT_OK) return st;
    size_t count = examples.count;
    if (limit > 0 && (size_t)limit < count) count = (size_t)limit;
    if (count > (size_t)INT32_MAX / 2) {
        st = qft_fail(err, QFT_ERR_INVALID, "%s: %zu examples is too many", path, count);
        goto done;
    }
    size_t n = count * (size_t)T;
    rows->count = count;
    rows->seq_len = T;
    rows->pad_id = qft_wordpiece_token_id(tokenizer, "[PAD]");
    rows->ids = calloc(n, sizeof(int32_t));
    rows->types = calloc(n, sizeof(int32_t));
    rows->mask = calloc(n, sizeof(float));
    rows->labels = calloc(count, sizeof(int32_t));
    if (task->is_regression) rows->targets = calloc(count, sizeof(float));
    if (!rows->ids || !rows->types || !rows->mask || !rows->labels || (task->is_regression && !rows->targets)) {
        st = qft_fail(err, QFT_ERR_OOM, "out of memory tokenizing %s (%zu examples)", path, count);
        goto done;
    }
    for (size_t r = 0; r < count; r++) {
        const qft_glue_example *ex = &examples.examples[r];
        qft_wordpiece_encoding enc;
        const char *b = ex->text_b;
        st = qft_wordpiece_encode(tokenizer, ex->text_a, strlen(ex->text_a), b, b ? strlen(b) : 0, (size_t)T, 1,
                                  &enc, err);
        if (st != QFT_OK) goto done;
        for (size_t t = 0; t < enc.length && t < (size_t)T; t++) {
            rows->ids[r * T + t] = enc.input_ids[t];
            rows->types[r * T + t] = enc.token_type_ids[t];
            rows->mask[r * T + t] = (float)enc.attention_mask[t];
        }
        qft_wordpiece_encoding_free(&enc);
        // Test files have no labels: class 0 / score 0 keep the loss computable (and unused).
        float label = ex->has_label ? ex->label : 0.0f;
        if (task->is_regression) rows->targets[r] = label;
        else rows->labels[r] = (int32_t)label;
    }
done:
    if (st != QFT_OK) qft_token_rows_free(rows);
    qft_glue_free(&examples);
    return st;
}

// A GLUE split: <data.path>/<TASK>/<split file> (train, dev, MNLI's dev_mismatched, the test files),
// read by glue.c and tokenized here, or read back from the token cache when a valid entry for the
// same file, vocab, casing, length and limit exists. data.train_limit / eval_limit are applied
// before tokenizing, so a small slice of a big task opens fast.
static qft_status open_glue(qft_dataset *ds, const qft_config *cfg, int split, qft_error *err) {
    const qft_glue_task_info *task = qft_glue_task_find(cfg->data.task);
    if (!task)
        return qft_fail(err, QFT_ERR_INVALID, "data.task: required for data.dataset glue (one of cola, sst2, mrpc, "
                        "stsb, qqp, mnli, qnli, rte, wnli)");
    if (cfg->model.num_labels != task->num_labels)
        return qft_fail(err, QFT_ERR_INVALID, "model.num_labels = %d, but GLUE task %s needs %d", cfg->model.num_labels,
                        task->name, task->num_labels);
    if (!cfg->data.path[0])
        return qft_fail(err, QFT_ERR_INVALID, "data.path: required for data.dataset glue (the GLUE directory holding "
                        "%s/train.tsv)", task->dir_name);
    if (!cfg->data.vocab[0])
        return qft_fail(err, QFT_ERR_INVALID, "data.vocab: required for data.dataset glue (the model's WordPiece "
                        "vocab.txt)");
    char dir[1100], path[1200];
    snprintf(dir, sizeof dir, "%s/%s", cfg->data.path, task->dir_name);
    struct stat info;
    if (stat(dir, &info) != 0 || !S_ISDIR(info.st_mode))
        return qft_fail(err, QFT_ERR_IO, "data.path: %s is not a directory (GLUE task %s expects %s/train.tsv and "
                        "%s/%s)", dir, task->name, dir, dir, qft_glue_split_file(task, QFT_GLUE_DEV));
    qft_glue_split glue_split = glue_split_of(split);
    qft_status st = qft_glue_split_path(cfg->data.path, task->name, glue_split, path, sizeof path, err);
    if (st != QFT_OK) return st;
    int T = cfg->data.max_seq_len;
    if (T < (task->has_text_b ? 3 : 2))
        return qft_fail(err, QFT_ERR_INVALID, "data.max_seq_len = %d is too short for GLUE task %s", T, task->name);
    qft_wordpiece_options options = qft_wordpiece_default_options();
    options.do_lower_case = cfg->data.do_lower_case;
    qft_wordpiece *tokenizer = NULL;
    st = qft_wordpiece_load(cfg->data.vocab, &options, &tokenizer, err);
    if (st != QFT_OK) return st;
    qft_token_rows rows;
    memset(&rows, 0, sizeof rows);
    size_t vocab = qft_wordpiece_vocab_size(tokenizer);
    if (vocab > (size_t)cfg->model.vocab_size) {
        st = qft_fail(err, QFT_ERR_INVALID, "data.vocab: %s has %zu tokens, more than model.vocab_size (%d)",
                      cfg->data.vocab, vocab, cfg->model.vocab_size);
        goto done;
    }
    long limit = split == QFT_SPLIT_TRAIN ? cfg->data.train_limit : cfg->data.eval_limit;
    // The cache is an optimization: no cache directory, or a failure to hash, read or write it,
    // only costs the tokenization (a missing TSV still fails below, with the loader's message).
    char cache_dir[800], cache_path[1100] = "", why[96];
    uint64_t key = 0;
    qft_error cache_err;
    if (qft_token_cache_dir("glue", cache_dir, sizeof cache_dir) &&
        glue_cache_key(cfg, task, glue_split, path, limit, &key, &cache_err) == QFT_OK) {
        char stem[64];
        snprintf(stem, sizeof stem, "%s", qft_glue_split_file(task, glue_split));
        char *dot = strrchr(stem, '.');
        if (dot) *dot = '\0';
        snprintf(cache_path, sizeof cache_path, "%s/%s_%s_%016llx.tokens", cache_dir, task->name, stem,
                 (unsigned long long)key);
        qft_token_cache_result cached = qft_token_cache_load(cache_path, key, T, &rows, why, sizeof why);
        if (cached == QFT_TOKEN_CACHE_LOADED) {
            ds->token_cache_hit = 1;
            fprintf(stderr, "glue: %s: %zu examples from the token cache %s\n", path, rows.count, cache_path);
        } else if (cached == QFT_TOKEN_CACHE_INVALID) {
            ds->token_cache_rejected = 1;
            fprintf(stderr, "glue: %s: token cache ignored (%s); tokenizing again\n", cache_path, why);
        }
    }
    if (!ds->token_cache_hit) {
        st = tokenize_glue(task, path, glue_split, tokenizer, limit, T, &rows, err);
        if (st != QFT_OK) goto done;
        if (cache_path[0] && qft_token_cache_save(cache_path, key, &rows, &cache_err) != QFT_OK)
            fprintf(stderr, "glue: warning: token cache not written: %s\n", cache_err.message);
    }
    ds->ids = rows.ids;
    ds->types = rows.types;
    ds->mask = rows.mask;
    ds->labels = rows.labels;
    ds->targets = rows.targets;
    ds->kind = QFT_DATASET_TEXT;
    ds->count = (int)rows.count;
    ds->seq_len = T;
    ds->glue_task = task;
    ds->has_labels = glue_split != QFT_GLUE_TEST && glue_split != QFT_GLUE_TEST_MISMATCHED;
done:
    qft_wordpiece_free(tokenizer);
    return st;
}

// An ImageNet-layout folder: <data.path>/train (split 0) or <data.path>/val (split 1), scanned with
// the header check (files corrupt after their header are replaced and counted by the loader).
static qft_status open_imagefolder(qft_dataset *ds, const qft_config *cfg, int split, qft_error *err) {
    const qft_model_config *mc = &cfg->model;
    if (!cfg->data.path[0])
        return qft_fail(err, QFT_ERR_INVALID, "data.path: required for data.dataset imagefolder (the root holding "
                        "train/ and val/)");
    if (mc->num_channels != 3)
        return qft_fail(err, QFT_ERR_INVALID, "data.dataset imagefolder needs model.num_channels 3, got %d",
                        mc->num_channels);
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/%s", cfg->data.path, split == 0 ? "train" : "val");
    struct stat info;
    if (stat(dir, &info) != 0 || !S_ISDIR(info.st_mode))
        return qft_fail(err, QFT_ERR_IO, "data.path: %s is not a directory (data.dataset imagefolder expects "
                        "%s/train/<class>/... and %s/val/<class>/...)", dir, cfg->data.path, cfg->data.path);
    qft_status st = qft_imagefolder_open(&ds->folder, dir, QFT_IMAGEFOLDER_CHECK_HEADER, err);
    if (st != QFT_OK) return st;
    if (ds->folder.num_classes != mc->num_labels)
        return qft_fail(err, QFT_ERR_INVALID, "%s: %d classes, but model.num_labels = %d", dir,
                        ds->folder.num_classes, mc->num_labels);
    long limit = split == 0 ? cfg->data.train_limit : cfg->data.eval_limit;
    if (limit > 0 && limit < ds->folder.count && limit < ds->folder.num_classes)
        return qft_fail(err, QFT_ERR_INVALID, "data.%s = %ld: fewer than the %d classes of %s (the subset keeps at "
                        "least one image of every class)", split == 0 ? "train_limit" : "eval_limit", limit,
                        ds->folder.num_classes, dir);
    st = qft_imagefolder_subset(&ds->folder, limit, err);
    if (st != QFT_OK) return st;
    qft_loader_config *lc = &ds->loader_cfg;
    qft_image_transform_defaults(&lc->transform, mc->image_size);
    lc->transform.resize_size = qft_image_eval_resize_size(mc->image_size, cfg->data.crop_ratio);
    lc->transform.interpolation =
        strcmp(cfg->data.interpolation, "bicubic") == 0 ? QFT_INTERP_BICUBIC : QFT_INTERP_BILINEAR;
    st = normalize_per_channel(cfg, 3, lc->transform.mean, lc->transform.std, err);
    if (st != QFT_OK) return st;
    lc->folder = &ds->folder;
    lc->train = split == 0;
    lc->workers = cfg->data.workers;
    lc->ring_depth = cfg->data.workers + 2 > 4 ? cfg->data.workers + 2 : 4;  // a batch per worker ahead, plus slack
    lc->seed = (uint64_t)cfg->run.seed;
    lc->rank = 0;
    lc->world_size = 1;
    lc->shuffle = split == 0 && cfg->data.shuffle;
    lc->drop_last = split == 0;
    ds->loader_epoch = -1;
    ds->kind = QFT_DATASET_IMAGEFOLDER;
    ds->count = ds->folder.count;
    return QFT_OK;
}

qft_status qft_dataset_loader_fill(qft_dataset *ds, long epoch, int index, qft_batch_buffer *buf, int *count,
                                   qft_error *err) {
    qft_status st;
    if (!ds->loader) {
        ds->loader_cfg.batch_size = buf->capacity;
        st = qft_loader_create(&ds->loader, &ds->loader_cfg, err);
        if (st != QFT_OK) return st;
    }
    if (epoch != ds->loader_epoch || index != ds->loader_next) {
        // Not the batch the loader is producing next (a new epoch, a resume, evaluation from the
        // start): restart it there, so no batch before `index` is decoded.
        st = qft_loader_start_epoch(ds->loader, (uint64_t)epoch, index, err);
        if (st != QFT_OK) return st;
        ds->loader_epoch = epoch;
        ds->loader_next = index;
    }
    qft_loader_batch lb;
    int got = qft_loader_next(ds->loader, &lb, err);
    if (got < 0) return QFT_ERR_IO;
    if (got == 0)
        return qft_fail(err, QFT_ERR_INVALID, "%s: batch %d of epoch %ld is past the end of the epoch",
                        ds->folder.root, index, epoch);
    ds->loader_next = lb.index + 1;
    size_t pixels = (size_t)3 * lb.size * lb.size;
    memcpy(buf->images, lb.images, (size_t)lb.count * pixels * sizeof(float));
    memcpy(buf->labels, lb.labels, (size_t)lb.count * sizeof(int32_t));
    qft_loader_release(ds->loader, &lb);
    qft_batch *b = &buf->batch;
    memset(b, 0, sizeof *b);
    b->batch_size = lb.count;
    b->labels = buf->labels;
    b->images = buf->images;
    *count = lb.count;
    return QFT_OK;
}

long qft_dataset_skipped_files(const qft_dataset *ds) {
    return ds->kind == QFT_DATASET_IMAGEFOLDER ? ds->folder.skipped : 0;
}

long qft_dataset_corrupt_decodes(const qft_dataset *ds) {
    return ds->loader ? (long)qft_loader_corrupt_count(ds->loader) : 0;
}

long qft_dataset_image_decodes(const qft_dataset *ds) {
    return ds->loader ? (long)qft_loader_decode_count(ds->loader) : 0;
}

void qft_validation_picks(int count, long n, char *chosen) {
    memset(chosen, 0, (size_t)count);
    if (n <= 0) return;
    if (n >= count) {
        memset(chosen, 1, (size_t)count);
        return;
    }
    for (long i = 0; i < n; i++) chosen[(int64_t)i * count / n] = 1;
}

// Shrinks a buffer that lost rows (keeping it when realloc fails: it is only memory).
static void *shrink(void *p, size_t bytes) {
    void *q = p && bytes ? realloc(p, bytes) : NULL;
    return q ? q : p;
}

// Keeps the rows r < ds->count of an in-memory dataset whose chosen[r] is nonzero (value 1) or zero
// (value 0), in order, moving them to the front of every per-example array.
static void keep_rows(qft_dataset *ds, const char *chosen, int value) {
    int kept = 0;
    if (ds->kind == QFT_DATASET_IMAGES) {
        size_t pixels = (size_t)ds->idx.rows * ds->idx.cols;
        for (int r = 0; r < ds->count; r++) {
            if ((chosen[r] != 0) != (value != 0)) continue;
            if (kept != r) {
                memmove(ds->idx.pixels + (size_t)kept * pixels, ds->idx.pixels + (size_t)r * pixels, pixels);
                ds->idx.labels[kept] = ds->idx.labels[r];
            }
            kept++;
        }
        ds->idx.pixels = shrink(ds->idx.pixels, (size_t)kept * pixels);
        ds->idx.labels = shrink(ds->idx.labels, (size_t)kept);
        ds->idx.count = kept;
    } else {
        size_t T = (size_t)ds->seq_len;
        for (int r = 0; r < ds->count; r++) {
            if ((chosen[r] != 0) != (value != 0)) continue;
            if (kept != r) {
                memmove(ds->ids + kept * T, ds->ids + r * T, T * sizeof(int32_t));
                memmove(ds->types + kept * T, ds->types + r * T, T * sizeof(int32_t));
                memmove(ds->mask + kept * T, ds->mask + r * T, T * sizeof(float));
                ds->labels[kept] = ds->labels[r];
                if (ds->targets) ds->targets[kept] = ds->targets[r];
            }
            kept++;
        }
        ds->ids = shrink(ds->ids, (size_t)kept * T * sizeof(int32_t));
        ds->types = shrink(ds->types, (size_t)kept * T * sizeof(int32_t));
        ds->mask = shrink(ds->mask, (size_t)kept * T * sizeof(float));
        ds->labels = shrink(ds->labels, (size_t)kept * sizeof(int32_t));
        if (ds->targets) ds->targets = shrink(ds->targets, (size_t)kept * sizeof(float));
    }
    ds->count = kept;
}

// data.validation_size: splits the (limited) training examples into the held-out validation
// examples and the rest; the training split keeps the rest, the validation split the held-out ones.
static qft_status hold_out(qft_dataset *ds, const qft_config *cfg, int validation, qft_error *err) {
    long n = cfg->data.validation_size;
    if (n >= ds->count)
        return qft_fail(err, QFT_ERR_INVALID, "data.validation_size = %ld: the training split has only %d example(s)%s, "
                        "and at least one must stay for training", n, ds->count,
                        cfg->data.train_limit > 0 ? " after data.train_limit" : "");
    int imagefolder = ds->kind == QFT_DATASET_IMAGEFOLDER;
    if (imagefolder && n < ds->folder.num_classes)
        return qft_fail(err, QFT_ERR_INVALID, "data.validation_size = %ld: fewer than the %d classes of %s (the "
                        "validation split keeps at least one image of every class)", n, ds->folder.num_classes,
                        ds->folder.root);
    char *chosen = malloc((size_t)ds->count);
    if (!chosen) return qft_fail(err, QFT_ERR_OOM, "out of memory choosing the validation examples");
    qft_status st = QFT_OK;
    if (imagefolder) {
        st = qft_imagefolder_pick(&ds->folder, n, chosen, err);
        if (st == QFT_OK) {
            qft_imagefolder_keep(&ds->folder, chosen, validation);
            ds->count = ds->folder.count;
        }
    } else {
        qft_validation_picks(ds->count, n, chosen);
        keep_rows(ds, chosen, validation);
    }
    free(chosen);
    return st;
}

qft_status qft_dataset_open(qft_dataset *ds, const qft_config *cfg, int split, qft_error *err) {
    memset(ds, 0, sizeof *ds);
    ds->has_labels = 1;
    int glue = strcmp(cfg->data.dataset, "glue") == 0;
    if (split < QFT_SPLIT_TRAIN || split > QFT_SPLIT_VALIDATION ||
        (!glue && split > QFT_SPLIT_EVAL && split != QFT_SPLIT_VALIDATION))
        return qft_fail(err, QFT_ERR_INVALID, "data.dataset %s: no %s split (test and mismatched splits are GLUE's)",
                        cfg->data.dataset, split == QFT_SPLIT_EVAL_MISMATCHED ? "mismatched" : "test");
    if (split == QFT_SPLIT_VALIDATION && cfg->data.validation_size <= 0)
        return qft_fail(err, QFT_ERR_INVALID, "the validation split needs data.validation_size > 0 (the number of "
                        "training examples to hold out), got %ld", cfg->data.validation_size);
    // The validation split is read from the training files, with the training split's limit.
    int source = split == QFT_SPLIT_VALIDATION ? QFT_SPLIT_TRAIN : split;
    qft_status st;
    if (strcmp(cfg->data.dataset, "fashion_mnist") == 0) st = open_fashion_mnist(ds, cfg, source, err);
    else if (strcmp(cfg->data.dataset, "synthetic_text") == 0) st = open_synthetic_text(ds, cfg, source, err);
    else if (glue) st = open_glue(ds, cfg, source, err);
    else if (strcmp(cfg->data.dataset, "imagefolder") == 0) st = open_imagefolder(ds, cfg, source, err);
    else st = qft_fail(err, QFT_ERR_INVALID, "data.dataset: unknown dataset '%s'", cfg->data.dataset);
    if (st == QFT_OK) {
        // imagefolder applied its limit when it opened (a subset of every class, not the first N).
        long limit = source == QFT_SPLIT_TRAIN ? cfg->data.train_limit : cfg->data.eval_limit;
        if (ds->kind != QFT_DATASET_IMAGEFOLDER && limit > 0 && limit < ds->count) ds->count = (int)limit;
        // Then the validation examples leave the training split (and are all the validation split has).
        if (source == QFT_SPLIT_TRAIN && cfg->data.validation_size > 0)
            st = hold_out(ds, cfg, split == QFT_SPLIT_VALIDATION, err);
    }
    if (st != QFT_OK) {
        qft_dataset_free(ds);
        return st;
    }
    if (split == QFT_SPLIT_VALIDATION && ds->kind == QFT_DATASET_IMAGEFOLDER) {
        // Evaluated like the val/ folder: eval transform, folder order, a short last batch.
        ds->loader_cfg.train = 0;
        ds->loader_cfg.shuffle = 0;
        ds->loader_cfg.drop_last = 0;
    }
    return QFT_OK;
}

void qft_dataset_free(qft_dataset *ds) {
    qft_loader_destroy(ds->loader);
    if (ds->kind == QFT_DATASET_IMAGEFOLDER || ds->folder.root) qft_imagefolder_free(&ds->folder);
    qft_idx_free(&ds->idx);
    free(ds->ids);
    free(ds->types);
    free(ds->mask);
    free(ds->labels);
    free(ds->targets);
    memset(ds, 0, sizeof *ds);
}

qft_status qft_batch_buffer_init(qft_batch_buffer *buf, const qft_dataset *ds, int capacity, qft_error *err) {
    memset(buf, 0, sizeof *buf);
    buf->capacity = capacity;
    buf->labels = calloc((size_t)capacity, sizeof(int32_t));
    int ok = buf->labels != NULL;
    if (ds->kind == QFT_DATASET_IMAGES) {
        buf->images = calloc((size_t)capacity * ds->idx.rows * ds->idx.cols, sizeof(float));
        ok = ok && buf->images;
    } else if (ds->kind == QFT_DATASET_IMAGEFOLDER) {
        int S = ds->loader_cfg.transform.crop_size;
        buf->images = calloc((size_t)capacity * 3 * S * S, sizeof(float));
        ok = ok && buf->images;
    } else {
        size_t n = (size_t)capacity * ds->seq_len;
        buf->ids = calloc(n, sizeof(int32_t));
        buf->types = calloc(n, sizeof(int32_t));
        buf->mask = calloc(n, sizeof(float));
        ok = ok && buf->ids && buf->types && buf->mask;
        if (ds->targets) {
            buf->targets = calloc((size_t)capacity, sizeof(float));
            ok = ok && buf->targets;
        }
    }
    if (!ok) {
        qft_batch_buffer_free(buf);
        return qft_fail(err, QFT_ERR_OOM, "out of memory for a batch of %d", capacity);
    }
    return QFT_OK;
}

void qft_batch_buffer_free(qft_batch_buffer *buf) {
    free(buf->images);
    free(buf->ids);
    free(buf->types);
    free(buf->mask);
    free(buf->labels);
    free(buf->targets);
    memset(buf, 0, sizeof *buf);
}

void qft_dataset_fill(const qft_dataset *ds, const int *indices, int n, qft_batch_buffer *buf) {
    qft_batch *b = &buf->batch;
    memset(b, 0, sizeof *b);
    b->batch_size = n;
    b->labels = buf->labels;
    if (ds->kind == QFT_DATASET_IMAGES) {
        size_t pixels = (size_t)ds->idx.rows * ds->idx.cols;
        for (int i = 0; i < n; i++) {
            const uint8_t *src = ds->idx.pixels + (size_t)indices[i] * pixels;
            float *dst = buf->images + (size_t)i * pixels;
            // torchvision's ToTensor (x / 255 in float32) then Normalize ((x - mean) / std), rounding included
            for (size_t j = 0; j < pixels; j++) dst[j] = ((float)src[j] / 255.0f - ds->mean) / ds->std;
            buf->labels[i] = ds->idx.labels[indices[i]];
        }
        b->images = buf->images;
        b->seq_len = 0;
        return;
    }
    // Text: trim the batch to its longest row so short batches cost less.
    int T = ds->seq_len, used = 1;
    for (int i = 0; i < n; i++)
        for (int t = T - 1; t >= used; t--)
            if (ds->mask[(size_t)indices[i] * T + t] != 0.0f) {
                used = t + 1;
                break;
            }
    for (int i = 0; i < n; i++) {
        size_t src = (size_t)indices[i] * T, dst = (size_t)i * used;
        memcpy(buf->ids + dst, ds->ids + src, (size_t)used * sizeof(int32_t));
        memcpy(buf->types + dst, ds->types + src, (size_t)used * sizeof(int32_t));
        memcpy(buf->mask + dst, ds->mask + src, (size_t)used * sizeof(float));
        buf->labels[i] = ds->labels[indices[i]];
        if (ds->targets) buf->targets[i] = ds->targets[indices[i]];
    }
    b->seq_len = used;
    b->targets = ds->targets ? buf->targets : NULL;
    b->input_ids = buf->ids;
    b->token_type_ids = buf->types;
    b->attention_mask = buf->mask;
}

void qft_epoch_order(int *order, int count, uint64_t seed, uint64_t epoch, int shuffle) {
    for (int i = 0; i < count; i++) order[i] = i;
    if (!shuffle) return;
    for (int i = count - 1; i > 0; i--) {
        // 24-bit uniforms are too coarse above 2^24 examples; combine two draws for the index.
        float u = qft_philox_uniform(seed, 0x5EEDu + epoch, 2 * (uint64_t)i);
        float v = qft_philox_uniform(seed, 0x5EEDu + epoch, 2 * (uint64_t)i + 1);
        double r = ((double)u + (double)v / 16777216.0);
        int j = (int)(r * (double)(i + 1));
        if (j > i) j = i;
        int tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
}
