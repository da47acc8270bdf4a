// Threaded image loader on the Fashion-MNIST image-folder fixture: batches bit-identical for 1, 2 and
// 4 workers, epochs differ, rank shards partition the epoch, a start offset decodes nothing before it,
// corrupt files counted, clean mid-epoch stop.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/dataset.h"
#include "data/imagefolder.h"
#include "data/loader.h"
#include "test_util.h"

// Every batch of one epoch, concatenated.
typedef struct {
    int batches, examples;
    int counts[64];
    float *images;
    int32_t *labels, *indices;
} epoch_dump;

static void dump_free(epoch_dump *d) {
    free(d->images);
    free(d->labels);
    free(d->indices);
    memset(d, 0, sizeof *d);
}

static qft_loader_config base_config(const qft_imagefolder *folder, int train, int batch, int workers) {
    qft_loader_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.folder = folder;
    qft_image_transform_defaults(&cfg.transform, 16);
    cfg.train = train;
    cfg.batch_size = batch;
    cfg.workers = workers;
    cfg.ring_depth = 2;
    cfg.seed = 1234;
    cfg.rank = 0;
    cfg.world_size = 1;
    cfg.shuffle = 1;
    return cfg;
}

// Runs one epoch; releases batches out of order (every other batch is kept one step) to exercise the ring.
static int run_epoch(const qft_loader_config *cfg, uint64_t epoch, epoch_dump *d, int64_t *corrupt) {
    memset(d, 0, sizeof *d);
    qft_loader *loader;
    qft_error err = {{0}};
    if (qft_loader_create(&loader, cfg, &err) != QFT_OK) {
        CHECK(0, "create: %s", err.message);
        return 0;
    }
    size_t per = (size_t)3 * cfg->transform.crop_size * cfg->transform.crop_size;
    int cap = cfg->folder->count + cfg->batch_size;
    d->images = malloc(sizeof(float) * per * (size_t)cap);
    d->labels = malloc(sizeof(int32_t) * (size_t)cap);
    d->indices = malloc(sizeof(int32_t) * (size_t)cap);
    CHECK(qft_loader_start_epoch(loader, epoch, 0, &err) == QFT_OK, "start epoch: %s", err.message);
    qft_loader_batch batch, kept;
    int have_kept = 0, rc;
    while ((rc = qft_loader_next(loader, &batch, &err)) == 1) {
        CHECK(batch.index == d->batches, "batch %d delivered as %d", d->batches, batch.index);
        CHECK(d->examples + batch.count <= cap && d->batches < 64, "too many examples");
        if (d->examples + batch.count > cap || d->batches >= 64) break;
        memcpy(d->images + per * (size_t)d->examples, batch.images, sizeof(float) * per * (size_t)batch.count);
        memcpy(d->labels + d->examples, batch.labels, sizeof(int32_t) * (size_t)batch.count);
        memcpy(d->indices + d->examples, batch.examples, sizeof(int32_t) * (size_t)batch.count);
        d->counts[d->batches++] = batch.count;
        d->examples += batch.count;
        if (have_kept) {
            qft_loader_release(loader, &batch);  // release the newer one first
            qft_loader_release(loader, &kept);
            have_kept = 0;
        } else if (cfg->ring_depth > 1) {
            kept = batch;
            have_kept = 1;
        } else {
            qft_loader_release(loader, &batch);
        }
    }
    if (have_kept) qft_loader_release(loader, &kept);
    CHECK(rc == 0, "epoch ended with %d: %s", rc, err.message);
    CHECK(d->batches == qft_loader_batches_per_epoch(loader), "%d batches, expected %d", d->batches,
          qft_loader_batches_per_epoch(loader));
    CHECK(qft_loader_next(loader, &batch, &err) == 0, "end of epoch is sticky");
    if (corrupt) *corrupt = qft_loader_corrupt_count(loader);
    qft_loader_destroy(loader);
    return 1;
}

static int dumps_equal(const epoch_dump *a, const epoch_dump *b, size_t per) {
    return a->batches == b->batches && a->examples == b->examples &&
           memcmp(a->counts, b->counts, sizeof(int) * (size_t)a->batches) == 0 &&
           memcmp(a->labels, b->labels, sizeof(int32_t) * (size_t)a->examples) == 0 &&
           memcmp(a->indices, b->indices, sizeof(int32_t) * (size_t)a->examples) == 0 &&
           memcmp(a->images, b->images, sizeof(float) * per * (size_t)a->examples) == 0;
}

static void test_workers_and_epochs(const qft_imagefolder *decoded) {
    size_t per = 3 * 16 * 16;
    for (int train = 0; train <= 1; train++) {
        epoch_dump one[2];
        for (int epoch = 0; epoch < 2; epoch++) {
            qft_loader_config cfg = base_config(decoded, train, 4, 1);
            run_epoch(&cfg, (uint64_t)epoch, &one[epoch], NULL);
            CHECK(one[epoch].examples == decoded->count && one[epoch].batches == 3,
                  "epoch of %d examples in %d batches", one[epoch].examples, one[epoch].batches);
        }
        // the epoch order is qft_epoch_order, labels follow the folder, eval pixels are the eval transform
        int order[64];
        qft_epoch_order(order, decoded->count, 1234, 1, 1);
        int order_ok = 1, labels_ok = 1;
        for (int i = 0; i < one[1].examples; i++) {
            order_ok &= one[1].indices[i] == order[i];
            labels_ok &= one[1].labels[i] == decoded->labels[one[1].indices[i]];
        }
        CHECK(order_ok, "epoch 1 order is qft_epoch_order(seed, 1)");
        CHECK(labels_ok, "labels follow the folder");
        {
            qft_image_transform_config tc;
            qft_image_transform_defaults(&tc, 16);
            int i = one[1].examples - 1;  // in the short last batch
            qft_image_rgb8 image;
            qft_error err = {{0}};
            float expect[3 * 16 * 16];
            CHECK(qft_imagefolder_load(decoded, one[1].indices[i], &image, &err) == QFT_OK, "load: %s", err.message);
            qft_status st = train ? qft_image_train_transform(&tc, &image, 1234, 1, (uint64_t)one[1].indices[i],
                                                              expect, &err)
                                  : qft_image_eval_transform(&tc, &image, expect, &err);
            CHECK(st == QFT_OK, "transform: %s", err.message);
            CHECK(memcmp(expect, one[1].images + per * (size_t)i, sizeof expect) == 0,
                  "%s batch pixels equal the direct transform", train ? "train" : "eval");
            qft_image_free(&image);
        }
        int differ_order = memcmp(one[0].indices, one[1].indices, sizeof(int32_t) * (size_t)one[0].examples) != 0;
        CHECK(differ_order, "epochs 0 and 1 have different orders");
        CHECK(memcmp(one[0].images, one[1].images, sizeof(float) * per * (size_t)one[0].examples) != 0,
              "epochs 0 and 1 give different batches");
        for (int workers = 2; workers <= 4; workers += 2)
            for (int epoch = 0; epoch < 2; epoch++)
                for (int depth = 1; depth <= 3; depth += 2) {
                    qft_loader_config cfg = base_config(decoded, train, 4, workers);
                    cfg.ring_depth = depth;
                    epoch_dump many;
                    run_epoch(&cfg, (uint64_t)epoch, &many, NULL);
                    CHECK(dumps_equal(&one[epoch], &many, per),
                          "%s epoch %d: %d workers, ring %d differ from 1 worker", train ? "train" : "eval", epoch,
                          workers, depth);
                    dump_free(&many);
                }
        // train augmentation: the same image in two epochs is cropped differently
        if (train) {
            int same_image_differs = 0;
            for (int i = 0; i < one[0].examples; i++)
                for (int k = 0; k < one[1].examples; k++)
                    if (one[0].indices[i] == one[1].indices[k] &&
                        memcmp(one[0].images + per * (size_t)i, one[1].images + per * (size_t)k,
                               sizeof(float) * per) != 0)
                        same_image_differs++;
            CHECK(same_image_differs > 0, "train crops of the same image differ between epochs");
        }
        dump_free(&one[0]);
        dump_free(&one[1]);
    }
    // no shuffle: identity order
    qft_loader_config cfg = base_config(decoded, 0, 4, 2);
    cfg.shuffle = 0;
    epoch_dump d;
    run_epoch(&cfg, 5, &d, NULL);
    int identity = d.examples == decoded->count;
    for (int i = 0; i < d.examples; i++) identity &= d.indices[i] == i;
    CHECK(identity, "shuffle off: folder order");
    dump_free(&d);
}

static void test_sharding(const qft_imagefolder *decoded) {
    size_t per = 3 * 16 * 16;
    qft_loader_config cfg = base_config(decoded, 1, 2, 1);
    epoch_dump whole;
    run_epoch(&cfg, 3, &whole, NULL);  // 9 images: batches of 2, 2, 2, 2, 1
    CHECK(whole.batches == 5, "world 1: %d batches", whole.batches);
    for (int drop_last = 0; drop_last <= 1; drop_last++) {
        int world = 3, seen[64] = {0}, total = 0, shards_ok = 1;
        for (int rank = 0; rank < world; rank++) {
            qft_loader_config rc = base_config(decoded, 1, 2, 1 + rank);
            rc.world_size = world;
            rc.rank = rank;
            rc.drop_last = drop_last;
            epoch_dump d;
            run_epoch(&rc, 3, &d, NULL);
            int expect_batches = drop_last ? 1 : (rank < 2 ? 2 : 1);
            CHECK(d.batches == expect_batches, "drop_last %d rank %d: %d batches", drop_last, rank, d.batches);
            // local batch j of rank r is global batch r + j * world, pixels included
            int at = 0;
            for (int j = 0; j < d.batches; j++) {
                int g = rank + j * world, start = 2 * g;
                int n = d.counts[j];
                shards_ok &= n == whole.counts[g] &&
                             memcmp(d.indices + at, whole.indices + start, sizeof(int32_t) * (size_t)n) == 0 &&
                             memcmp(d.images + per * (size_t)at, whole.images + per * (size_t)start,
                                    sizeof(float) * per * (size_t)n) == 0;
                at += n;
            }
            for (int i = 0; i < d.examples; i++) seen[d.indices[i]]++;
            total += d.examples;
            dump_free(&d);
        }
        CHECK(shards_ok, "drop_last %d: rank batches are the strided global batches", drop_last);
        if (!drop_last) {
            int once = total == decoded->count;
            for (int i = 0; i < decoded->count; i++) once &= seen[i] == 1;
            CHECK(once, "3 ranks cover the epoch, each example once (%d examples)", total);
        } else {
            CHECK(total == 6, "drop_last: 3 ranks x 1 batch of 2, got %d examples", total);
        }
    }
    dump_free(&whole);
    // too few images for a rank
    cfg = base_config(decoded, 0, 8, 1);
    cfg.world_size = 2;
    cfg.rank = 1;
    cfg.drop_last = 1;
    qft_loader *loader = NULL;
    qft_error err = {{0}};
    CHECK(qft_loader_create(&loader, &cfg, &err) == QFT_ERR_INVALID && loader == NULL, "no batch for rank: %s",
          err.message);
}

static void test_corrupt(const qft_imagefolder *header_only) {
    // header check: 10 images, coat/truncated.png among them fails at load time
    int bad = -1;
    for (int i = 0; i < header_only->count; i++)
        if (strstr(header_only->paths[i], "truncated")) bad = i;
    CHECK(bad >= 0, "fixture has truncated.png");
    epoch_dump ref = {0};
    for (int workers = 1; workers <= 4; workers *= 2) {
        qft_loader_config cfg = base_config(header_only, 0, 3, workers);
        epoch_dump d;
        int64_t corrupt = -1;
        run_epoch(&cfg, 7, &d, &corrupt);
        CHECK(corrupt == 1, "%d workers: corrupt count %lld, expected 1", workers, (long long)corrupt);
        CHECK(d.examples == header_only->count, "epoch still has %d examples", d.examples);
        int order[64], pos = -1, never = 1;
        qft_epoch_order(order, header_only->count, 1234, 7, 1);
        for (int i = 0; i < d.examples; i++) {
            never &= d.indices[i] != bad;
            if (order[i] == bad) pos = i;
        }
        CHECK(never, "the corrupt file is never delivered");
        CHECK(pos >= 0 && d.indices[pos] == order[(pos + 1) % header_only->count],
              "corrupt example replaced by the next in the epoch order");
        if (workers == 1)
            ref = d;
        else {
            CHECK(dumps_equal(&ref, &d, 3 * 16 * 16), "%d workers: same batches with a corrupt file", workers);
            dump_free(&d);
        }
    }
    dump_free(&ref);
}

// Takes batches from the loader's current position to the end of the epoch and checks each against
// the same batch of a full epoch; returns the index after the last batch delivered.
static int check_rest_of_epoch(qft_loader *loader, const epoch_dump *whole, int first, size_t per) {
    qft_loader_batch batch;
    qft_error err = {{0}};
    int b = first, same = 1, rc;
    while ((rc = qft_loader_next(loader, &batch, &err)) == 1 && b < whole->batches) {
        int at = 0;
        for (int j = 0; j < b; j++) at += whole->counts[j];
        same &= batch.index == b && batch.count == whole->counts[b] &&
                memcmp(batch.examples, whole->indices + at, sizeof(int32_t) * (size_t)batch.count) == 0 &&
                memcmp(batch.images, whole->images + per * (size_t)at, sizeof(float) * per * (size_t)batch.count) == 0;
        qft_loader_release(loader, &batch);
        b++;
    }
    CHECK(rc == 0 && same, "from batch %d: batches differ from the full epoch's (rc %d: %s)", first, rc, err.message);
    return b;
}

// Starting an epoch at batch k delivers exactly batches k.. of a full epoch, and decodes only their
// images (the decoded fixture has no corrupt file, so decodes == images delivered).
static void test_start_offset(const qft_imagefolder *decoded) {
    size_t per = 3 * 16 * 16;
    qft_error err = {{0}};
    for (int train = 0; train <= 1; train++) {
        qft_loader_config cfg = base_config(decoded, train, 2, 3);
        epoch_dump whole;
        run_epoch(&cfg, 4, &whole, NULL);  // 9 images: batches of 2, 2, 2, 2, 1
        for (int k = 0; k <= whole.batches; k++) {
            qft_loader *loader;
            CHECK(qft_loader_create(&loader, &cfg, &err) == QFT_OK, "create: %s", err.message);
            CHECK(qft_loader_start_epoch(loader, 4, k, &err) == QFT_OK, "start at %d: %s", k, err.message);
            int end = check_rest_of_epoch(loader, &whole, k, per);
            CHECK(end == whole.batches, "%s, start %d: ended at batch %d of %d", train ? "train" : "eval", k, end,
                  whole.batches);
            int64_t expected = 0;
            for (int j = k; j < whole.batches; j++) expected += whole.counts[j];
            int64_t decodes = qft_loader_decode_count(loader);
            CHECK(decodes == expected, "%s, start at batch %d: %lld images decoded, expected %lld (batches %d..)",
                  train ? "train" : "eval", k, (long long)decodes, (long long)expected, k);
            qft_loader_destroy(loader);
        }
        // Jumping ahead mid-epoch (what a resume through the dataset layer does) gives the same batches.
        qft_loader *loader;
        qft_loader_batch first;
        CHECK(qft_loader_create(&loader, &cfg, &err) == QFT_OK, "create: %s", err.message);
        qft_loader_start_epoch(loader, 4, 0, &err);
        CHECK(qft_loader_next(loader, &first, &err) == 1, "batch 0: %s", err.message);
        CHECK(qft_loader_start_epoch(loader, 4, 3, &err) == QFT_OK, "restart at 3: %s", err.message);
        qft_loader_release(loader, &first);  // stale: ignored
        CHECK(check_rest_of_epoch(loader, &whole, 3, per) == whole.batches, "restart at 3 reaches the end");
        CHECK(qft_loader_start_epoch(loader, 4, whole.batches + 1, &err) == QFT_ERR_INVALID &&
                  strstr(err.message, "start batch 6") && strstr(err.message, "5 batches"),
              "start past the end: %s", err.message);
        CHECK(qft_loader_start_epoch(loader, 4, -1, &err) == QFT_ERR_INVALID, "negative start");
        qft_loader_destroy(loader);
        dump_free(&whole);
    }
}

static void test_stop_mid_epoch(const qft_imagefolder *folder) {
    qft_error err = {{0}};
    for (int workers = 1; workers <= 4; workers *= 2) {
        qft_loader_config cfg = base_config(folder, 1, 2, workers);
        cfg.transform.crop_size = 64;  // slower items: workers are busy when destroy comes
        qft_loader *loader;
        CHECK(qft_loader_create(&loader, &cfg, &err) == QFT_OK, "create: %s", err.message);
        qft_loader_batch b, b2;
        CHECK(qft_loader_next(loader, &b, &err) == -1, "next before start_epoch is an error");
        qft_loader_destroy(loader);  // never started

        CHECK(qft_loader_create(&loader, &cfg, &err) == QFT_OK, "create: %s", err.message);
        qft_loader_start_epoch(loader, 0, 0, &err);
        qft_loader_destroy(loader);  // right after start

        CHECK(qft_loader_create(&loader, &cfg, &err) == QFT_OK, "create: %s", err.message);
        qft_loader_start_epoch(loader, 0, 0, &err);
        CHECK(qft_loader_next(loader, &b, &err) == 1, "first batch");
        CHECK(qft_loader_next(loader, &b2, &err) == 1, "second batch");
        // both buffers held: asking for a third must fail rather than deadlock
        CHECK(qft_loader_next(loader, &b2, &err) == -1 && strstr(err.message, "release"), "all held: %s",
              err.message);
        qft_loader_release(loader, &b);
        // restart mid-epoch with a batch still held: it is dropped; the new epoch starts at batch 0
        qft_loader_start_epoch(loader, 1, 0, &err);
        qft_loader_release(loader, &b2);  // stale: ignored
        CHECK(qft_loader_next(loader, &b, &err) == 1 && b.index == 0, "restarted epoch begins at 0");
        qft_loader_destroy(loader);  // holding a batch, workers waiting for a free slot
    }
}

int main(void) {
    alarm(120);  // a hang in the loader fails the test instead of blocking ctest
    const char *source = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    if (access(source, R_OK) != 0) {
        printf("SKIP loader tests: %s not installed (apt-get install dataset-fashion-mnist)\n", source);
        return 0;
    }
    char dir[512], cmd[1200], root[600];
    qft_test_make_temp_dir(dir, sizeof dir, "qft_loader");
    snprintf(cmd, sizeof cmd, "python3 datasets/make_imagefolder_fixture.py '%s/fixture'", dir);
    int rc = system(cmd);
    CHECK(rc == 0, "fixture maker failed (%d): needs python3 and dataset-fashion-mnist", rc);
    snprintf(root, sizeof root, "%s/fixture", dir);
    qft_imagefolder decoded, header_only;
    qft_error err = {{0}};
    if (rc == 0 && qft_imagefolder_open(&decoded, root, QFT_IMAGEFOLDER_CHECK_DECODE, &err) == QFT_OK) {
        CHECK(decoded.count == 9, "fixture: %d decodable images", decoded.count);
        if (qft_imagefolder_open(&header_only, root, QFT_IMAGEFOLDER_CHECK_HEADER, &err) == QFT_OK) {
            test_workers_and_epochs(&decoded);
            test_sharding(&decoded);
            test_start_offset(&decoded);
            test_corrupt(&header_only);
            test_stop_mid_epoch(&header_only);
            qft_imagefolder_free(&header_only);
        } else {
            CHECK(0, "open fixture: %s", err.message);
        }
        qft_imagefolder_free(&decoded);
    } else {
        CHECK(0, "open fixture: %s", err.message);
    }
    qft_test_remove_tree(dir);
    QFT_TEST_SUMMARY();
}
