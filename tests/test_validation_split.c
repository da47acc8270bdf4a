// data.validation_size: the validation split (QFT_SPLIT_VALIDATION) and the training split left
// after it partition the (data.train_limit-limited) training examples, for every dataset kind:
// Fashion-MNIST (by pixels and label), synthetic text and GLUE (by token rows, labels and STS-B
// targets), image folders (by path, every class kept). Sizes, the picks themselves, determinism
// (no dependence on run.seed), the limit-then-hold-out order and the error cases.
#include <string.h>
#include <sys/stat.h>

#include "data/dataset.h"
#include "test_util.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

// Bytes of example r of an in-memory dataset that identify it: pixels + label, or token ids,
// types, mask, label and target.
static size_t example_bytes(const qft_dataset *ds, int r, unsigned char *out) {
    size_t n = 0;
    if (ds->kind == QFT_DATASET_IMAGES) {
        size_t pixels = (size_t)ds->idx.rows * ds->idx.cols;
        memcpy(out, ds->idx.pixels + (size_t)r * pixels, pixels);
        out[pixels] = ds->idx.labels[r];
        return pixels + 1;
    }
    size_t T = (size_t)ds->seq_len;
    memcpy(out + n, ds->ids + r * T, T * sizeof(int32_t)), n += T * sizeof(int32_t);
    memcpy(out + n, ds->types + r * T, T * sizeof(int32_t)), n += T * sizeof(int32_t);
    memcpy(out + n, ds->mask + r * T, T * sizeof(float)), n += T * sizeof(float);
    memcpy(out + n, ds->labels + r, sizeof(int32_t)), n += sizeof(int32_t);
    if (ds->targets) memcpy(out + n, ds->targets + r, sizeof(float)), n += sizeof(float);
    return n;
}

static int same_example(const qft_dataset *a, int ra, const qft_dataset *b, int rb, unsigned char *x,
                        unsigned char *y) {
    size_t na = example_bytes(a, ra, x), nb = example_bytes(b, rb, y);
    return na == nb && memcmp(x, y, na) == 0;
}

// Opens the training split without a validation split (the reference), then the training and
// validation splits with data.validation_size = n, and checks that they partition the reference:
// - sizes count - n and n;
// - in order, reference example i is the next validation example when qft_validation_picks marks
//   it, else the next training example (so the two are disjoint and their union is the reference);
// - independently of the picks, every example of either split matches a distinct reference example
//   by content.
static void check_partition(const char *what, qft_config cfg, long n, int expect_count) {
    qft_error err = {{0}};
    qft_dataset ref, train, val;
    cfg.data.validation_size = 0;
    if (qft_dataset_open(&ref, &cfg, QFT_SPLIT_TRAIN, &err) != QFT_OK) {
        CHECK(0, "%s: open reference: %s", what, err.message);
        return;
    }
    CHECK(ref.count == expect_count, "%s: reference has %d examples, expected %d", what, ref.count, expect_count);
    cfg.data.validation_size = n;
    CHECK(qft_dataset_open(&train, &cfg, QFT_SPLIT_TRAIN, &err) == QFT_OK, "%s: open train: %s", what, err.message);
    CHECK(qft_dataset_open(&val, &cfg, QFT_SPLIT_VALIDATION, &err) == QFT_OK, "%s: open validation: %s", what,
          err.message);
    CHECK(train.count == ref.count - n && val.count == n, "%s: train %d + validation %d, expected %ld + %ld", what,
          train.count, val.count, ref.count - n, n);
    unsigned char *x = malloc(1 << 20), *y = malloc(1 << 20);
    char *chosen = malloc((size_t)ref.count), *used = calloc((size_t)ref.count, 1);
    qft_validation_picks(ref.count, n, chosen);
    int t = 0, v = 0, in_order = train.count + val.count == ref.count;
    for (int i = 0; in_order && i < ref.count; i++) {
        if (chosen[i]) in_order = v < val.count && same_example(&ref, i, &val, v++, x, y);
        else in_order = t < train.count && same_example(&ref, i, &train, t++, x, y);
    }
    CHECK(in_order, "%s: the splits are not the reference cut at the picks (stopped at train %d, validation %d)",
          what, t, v);
    int matched = 0;
    const qft_dataset *splits[2] = {&train, &val};
    for (int s = 0; s < 2; s++)
        for (int r = 0, hint = 0; r < splits[s]->count; r++)
            for (int k = 0; k < ref.count; k++) {
                int i = (hint + k) % ref.count;  // search from after the last match: in order, the first try
                if (!used[i] && same_example(splits[s], r, &ref, i, x, y)) {
                    used[i] = 1;
                    matched++;
                    hint = i + 1;
                    break;
                }
            }
    CHECK(matched == ref.count && train.count + val.count == ref.count,
          "%s: %d of the %d reference examples matched once by the %d + %d split examples", what, matched, ref.count,
          train.count, val.count);
    // Deterministic, and independent of run.seed where the data itself is (not the synthetic set).
    qft_dataset again;
    if (strcmp(cfg.data.dataset, "synthetic_text") != 0) cfg.run.seed += 1000;
    CHECK(qft_dataset_open(&again, &cfg, QFT_SPLIT_VALIDATION, &err) == QFT_OK, "%s: reopen: %s", what, err.message);
    int same = again.count == val.count;
    for (int r = 0; same && r < val.count; r++) same = same_example(&again, r, &val, r, x, y);
    CHECK(same, "%s: a second open picks other validation examples", what);
    qft_dataset_free(&again);
    free(x), free(y), free(chosen), free(used);
    qft_dataset_free(&ref);
    qft_dataset_free(&train);
    qft_dataset_free(&val);
}

static void test_picks(void) {
    char chosen[100];
    qft_validation_picks(100, 10, chosen);
    int count = 0, strided = 1;
    for (int i = 0; i < 100; i++) {
        count += chosen[i];
        strided &= chosen[i] == (i % 10 == 0);
    }
    CHECK(count == 10 && strided, "10 of 100: every 10th from 0 (%d picked)", count);
    qft_validation_picks(7, 3, chosen);  // floor(0), floor(7/3) = 2, floor(14/3) = 4
    CHECK(chosen[0] && !chosen[1] && chosen[2] && !chosen[3] && chosen[4] && !chosen[5] && !chosen[6], "3 of 7");
    int ok = 1;
    for (int total = 1; total <= 60; total++)
        for (int n = 0; n <= total + 1; n++) {
            qft_validation_picks(total, n, chosen);
            int c = 0;
            for (int i = 0; i < total; i++) c += chosen[i];
            ok &= c == (n < total ? n : total);
        }
    CHECK(ok, "every count and n: exactly min(n, count) picks");
}

static void test_fashion_mnist(void) {
    if (access(FMNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0) {
        printf("SKIP Fashion-MNIST validation split: " FMNIST_DIR " not installed (apt-get install "
               "dataset-fashion-mnist)\n");
        return;
    }
    qft_config cfg;
    qft_config_defaults(&cfg);
    cfg.data.train_limit = 600;
    check_partition("fashion_mnist train_limit 600, validation 100", cfg, 100, 600);
    check_partition("fashion_mnist train_limit 600, validation 599", cfg, 599, 600);
    // The limit comes first: the validation examples are among the first 600, the training split is
    // the other 500 of them (the whole set: 59000 + 1000).
    qft_error err = {{0}};
    qft_dataset train, val;
    cfg.data.train_limit = 0;
    cfg.data.validation_size = 1000;
    CHECK(qft_dataset_open(&train, &cfg, QFT_SPLIT_TRAIN, &err) == QFT_OK && train.count == 59000,
          "whole set minus 1000: %d %s", train.count, err.message);
    CHECK(qft_dataset_open(&val, &cfg, QFT_SPLIT_VALIDATION, &err) == QFT_OK && val.count == 1000,
          "validation of the whole set: %d %s", val.count, err.message);
    // The batches of the validation split are its examples normalized, in order (a buffer from the
    // training split fits: same kind).
    qft_batch_buffer buf;
    CHECK(qft_batch_buffer_init(&buf, &val, 4, &err) == QFT_OK, "buffer: %s", err.message);
    int rows[4] = {0, 1, 998, 999};
    qft_dataset_fill(&val, rows, 4, &buf);
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        bad += buf.batch.labels[i] != val.idx.labels[rows[i]];
        for (int p = 0; p < 784; p++)
            bad += buf.batch.images[i * 784 + p] != ((float)val.idx.pixels[rows[i] * 784 + p] / 255.0f - val.mean) / val.std;
    }
    CHECK(bad == 0, "validation batch: %d values differ", bad);
    qft_batch_buffer_free(&buf);
    qft_dataset_free(&train);
    qft_dataset_free(&val);
    // Errors: N >= the training examples (after the limit), the validation split without N.
    cfg.data.train_limit = 600;
    cfg.data.validation_size = 600;
    CHECK(qft_dataset_open(&train, &cfg, QFT_SPLIT_TRAIN, &err) == QFT_ERR_INVALID &&
              strstr(err.message, "data.validation_size = 600") && strstr(err.message, "only 600 example(s) after "
                                                                                        "data.train_limit"),
          "validation_size = train_limit: %s", err.message);
    CHECK(qft_dataset_open(&val, &cfg, QFT_SPLIT_VALIDATION, &err) == QFT_ERR_INVALID, "validation split too: %s",
          err.message);
    cfg.data.validation_size = 0;
    CHECK(qft_dataset_open(&val, &cfg, QFT_SPLIT_VALIDATION, &err) == QFT_ERR_INVALID &&
              strstr(err.message, "data.validation_size > 0"),
          "validation split without data.validation_size: %s", err.message);
    // data.eval_limit leaves the validation split alone; the evaluation split is not touched by N.
    cfg.data.validation_size = 50;
    cfg.data.eval_limit = 10;
    CHECK(qft_dataset_open(&val, &cfg, QFT_SPLIT_VALIDATION, &err) == QFT_OK && val.count == 50,
          "eval_limit does not cut the validation split: %d", val.count);
    qft_dataset_free(&val);
    cfg.data.eval_limit = 0;
    CHECK(qft_dataset_open(&val, &cfg, QFT_SPLIT_EVAL, &err) == QFT_OK && val.count == 10000,
          "the test split keeps its 10000 with a validation split: %d", val.count);
    qft_dataset_free(&val);
}

static void test_synthetic_text(void) {
    qft_config cfg;
    qft_config_defaults(&cfg);
    snprintf(cfg.model.type, sizeof cfg.model.type, "bert");
    snprintf(cfg.data.dataset, sizeof cfg.data.dataset, "synthetic_text");
    cfg.model.num_labels = 2;
    cfg.model.vocab_size = 64;
    cfg.data.max_seq_len = 16;
    check_partition("synthetic_text validation 96", cfg, 96, 4096);
    cfg.data.train_limit = 100;
    check_partition("synthetic_text train_limit 100, validation 33", cfg, 33, 100);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f || fputs(text, f) < 0) {
        perror(path);
        exit(2);
    }
    fclose(f);
}

// STS-B (regression: the targets move with their rows) on a 20-row fixture.
static void test_glue(void) {
    char root[256], path[1200], vocab[1200];
    qft_test_make_temp_dir(root, sizeof root, "qft_validation_glue");
    snprintf(path, sizeof path, "%s/STS-B", root);
    mkdir(path, 0700);
    static const char *words[] = {"the", "cat", "sat", "on", "mat", "a", "dog", "ran", "fast", "it"};
    char text[8192];
    size_t used = (size_t)snprintf(text, sizeof text, "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\t"
                                                      "sentence1\tsentence2\tscore\n");
    for (int r = 0; r < 20; r++)
        used += (size_t)snprintf(text + used, sizeof text - used, "%d\tmain\tx\t2012\t%04d\tnone\tnone\t%s %s %s\t%s "
                                 "%s\t%.3f\n", r, r, words[r % 10], words[(r / 2) % 10], words[(r * 7) % 10],
                                 words[(r + 3) % 10], words[(r / 3) % 10], 0.25 * r);
    snprintf(path, sizeof path, "%s/STS-B/train.tsv", root);
    write_file(path, text);
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", root);
    write_file(vocab, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\ncat\nsat\non\nmat\na\ndog\nran\nfast\nit\n");
    snprintf(path, sizeof path, "%s/xdg", root);
    setenv("XDG_CACHE_HOME", path, 1);
    qft_config cfg;
    qft_config_defaults(&cfg);
    snprintf(cfg.model.type, sizeof cfg.model.type, "bert");
    snprintf(cfg.data.dataset, sizeof cfg.data.dataset, "glue");
    snprintf(cfg.data.task, sizeof cfg.data.task, "stsb");
    snprintf(cfg.data.path, sizeof cfg.data.path, "%s", root);
    snprintf(cfg.data.vocab, sizeof cfg.data.vocab, "%s", vocab);
    cfg.model.num_labels = 1;
    cfg.data.max_seq_len = 16;
    check_partition("glue stsb validation 6", cfg, 6, 20);
    // The held-out rows by their (distinct) scores: rows 0, 3, 6, 10, 13, 16 (floor(k * 20 / 6)).
    qft_dataset val;
    qft_error err = {{0}};
    cfg.data.validation_size = 6;
    CHECK(qft_dataset_open(&val, &cfg, QFT_SPLIT_VALIDATION, &err) == QFT_OK, "open: %s", err.message);
    const int expect[6] = {0, 3, 6, 10, 13, 16};
    int same = val.count == 6 && val.targets && val.has_labels && val.glue_task;
    for (int k = 0; same && k < 6; k++) same = val.targets[k] == 0.25f * expect[k];
    CHECK(same, "STS-B validation rows are 0, 3, 6, 10, 13, 16 (labelled, with the task)");
    qft_dataset_free(&val);
    cfg.data.train_limit = 10;
    check_partition("glue stsb train_limit 10, validation 4", cfg, 4, 10);
    qft_test_remove_tree(root);
}

// The Fashion-MNIST image-folder fixture as <root>/train (and /val): 10 header-valid images of 3
// classes (Sneaker 3, bag 3, coat 4: img_00, img_01, truncated, extra/img_02).
static void test_imagefolder(void) {
    const char *source = FMNIST_DIR "/t10k-images-idx3-ubyte.gz";
    if (access(source, R_OK) != 0) {
        printf("SKIP imagefolder validation split: %s not installed\n", source);
        return;
    }
    char dir[512], link[700];
    qft_test_make_temp_dir(dir, sizeof dir, "qft_validation_folder");
    int rc = qft_test_imagefolder_root(dir, link, sizeof link);
    CHECK(rc == 0, "fixture maker failed (%d): needs python3, run from the source dir", rc);
    if (rc != 0) {
        qft_test_remove_tree(dir);
        return;
    }
    qft_config cfg;
    qft_config_defaults(&cfg);
    snprintf(cfg.data.dataset, sizeof cfg.data.dataset, "imagefolder");
    snprintf(cfg.data.path, sizeof cfg.data.path, "%s", link);
    cfg.model.num_channels = 3;
    cfg.model.num_labels = 3;
    cfg.model.image_size = 16;

    qft_dataset ref, train, val;
    qft_error err = {{0}};
    CHECK(qft_dataset_open(&ref, &cfg, QFT_SPLIT_TRAIN, &err) == QFT_OK && ref.count == 10, "reference: %d %s",
          ref.count, err.message);
    cfg.data.validation_size = 4;
    CHECK(qft_dataset_open(&train, &cfg, QFT_SPLIT_TRAIN, &err) == QFT_OK, "train: %s", err.message);
    CHECK(qft_dataset_open(&val, &cfg, QFT_SPLIT_VALIDATION, &err) == QFT_OK, "validation: %s", err.message);
    // 4 of 10 keeping every class: quotas 1 + floor(1 * (n_c - 1) / 7) -> 1, 1, 1, the leftover to
    // coat (largest remainder 3/7), whose 4 files give positions 0 and 2.
    const char *held[4] = {"Sneaker/img_00.png", "bag/img_00.png", "coat/img_00.png", "coat/truncated.png"};
    int same = val.count == 4 && val.folder.count == 4 && train.count == 6 && train.folder.count == 6;
    for (int i = 0; same && i < 4; i++) same = !strcmp(qft_test_path_tail(val.folder.paths[i], 2), held[i]);
    CHECK(same, "validation holds one image of each class plus a second coat (%d, first %s)", val.count,
          val.count ? val.folder.paths[0] : "-");
    // Partition by path, in folder order.
    int t = 0, v = 0, ok = train.count + val.count == ref.count;
    for (int i = 0; ok && i < ref.count; i++) {
        if (v < val.count && !strcmp(ref.folder.paths[i], val.folder.paths[v])) {
            ok = val.folder.labels[v++] == ref.folder.labels[i];
        } else {
            ok = t < train.count && !strcmp(ref.folder.paths[i], train.folder.paths[t]) &&
                 train.folder.labels[t] == ref.folder.labels[i];
            t++;
        }
    }
    CHECK(ok && t == train.count && v == val.count, "imagefolder: train + validation are the folder, disjoint");
    CHECK(val.loader_cfg.train == 0 && val.loader_cfg.shuffle == 0 && val.loader_cfg.drop_last == 0 &&
              train.loader_cfg.train == 1 && train.loader_cfg.drop_last == 1,
          "validation loads like the val folder (eval transform, in order, short last batch)");
    qft_batch_buffer buf;
    int got = 0;
    CHECK(qft_batch_buffer_init(&buf, &val, 3, &err) == QFT_OK, "buffer: %s", err.message);
    CHECK(qft_dataset_loader_fill(&val, 0, 0, &buf, &got, &err) == QFT_OK && got == 3, "validation batch 0: %d %s",
          got, err.message);
    CHECK(qft_dataset_loader_fill(&val, 0, 1, &buf, &got, &err) == QFT_OK && got == 1, "validation batch 1: %d %s",
          got, err.message);
    qft_batch_buffer_free(&buf);
    qft_dataset_free(&ref);
    qft_dataset_free(&train);
    qft_dataset_free(&val);
    // After data.train_limit 5 (2, 1, 2 per class), 3 held out (one per class), 2 left.
    cfg.data.train_limit = 5;
    cfg.data.validation_size = 3;
    CHECK(qft_dataset_open(&train, &cfg, QFT_SPLIT_TRAIN, &err) == QFT_OK && train.count == 2 &&
              !strcmp(qft_test_path_tail(train.folder.paths[0], 2), "Sneaker/img_01.bmp") &&
              !strcmp(qft_test_path_tail(train.folder.paths[1], 2), "coat/truncated.png"),
          "train_limit 5 then validation 3: %d left (%s)", train.count, train.count ? train.folder.paths[0] : "-");
    qft_dataset_free(&train);
    // Fewer than the classes, or every image: errors naming the key.
    cfg.data.train_limit = 0;
    cfg.data.validation_size = 2;
    CHECK(qft_dataset_open(&val, &cfg, QFT_SPLIT_VALIDATION, &err) == QFT_ERR_INVALID &&
              strstr(err.message, "data.validation_size = 2") && strstr(err.message, "3 classes"),
          "validation_size below the classes: %s", err.message);
    cfg.data.validation_size = 10;
    CHECK(qft_dataset_open(&train, &cfg, QFT_SPLIT_TRAIN, &err) == QFT_ERR_INVALID &&
              strstr(err.message, "data.validation_size = 10") && strstr(err.message, "only 10 example(s)"),
          "validation_size = every image: %s", err.message);
    qft_test_remove_tree(dir);
}

int main(void) {
    test_picks();
    test_fashion_mnist();
    test_synthetic_text();
    test_glue();
    test_imagefolder();
    QFT_TEST_SUMMARY();
}
