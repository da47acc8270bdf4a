// Image folders and image transforms: ImageFolder class/file order, skipped and error cases on a
// Fashion-MNIST fixture, JPEG decoding (libjpeg-turbo, bit-exact with PIL) with its corrupt and
// truncated cases, eval/train transforms against torchvision goldens (transform_oracle.py), and the
// imagefolder dataset's limits (a subset of every class) and per-channel normalization.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>

#include "data/dataset.h"
#include "data/image_transform.h"
#include "data/imagefolder.h"
#include "test_util.h"

static void write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, size, f);
    fclose(f);
}

static void test_fixture_folder(void) {
    const char *source = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    if (access(source, R_OK) != 0) {
        printf("SKIP image folder fixture: %s not installed (apt-get install dataset-fashion-mnist)\n", source);
        return;
    }
    char dir[512], cmd[1200];
    qft_test_make_temp_dir(dir, sizeof dir, "qft_imagefolder");
    snprintf(cmd, sizeof cmd, "python3 datasets/make_imagefolder_fixture.py '%s/fixture'", dir);
    int rc = system(cmd);
    CHECK(rc == 0, "fixture maker failed (%d): needs python3 and dataset-fashion-mnist", rc);
    if (rc != 0) {
        qft_test_remove_tree(dir);
        return;
    }
    char root[600];
    snprintf(root, sizeof root, "%s/fixture", dir);

    qft_imagefolder folder;
    qft_error err = {{0}};
    qft_status st = qft_imagefolder_open(&folder, root, QFT_IMAGEFOLDER_CHECK_HEADER, &err);
    CHECK(st == QFT_OK, "open fixture: %s", err.message);
    if (st == QFT_OK) {
        CHECK(folder.num_classes == 3, "classes %d", folder.num_classes);
        const char *classes[3] = {"Sneaker", "bag", "coat"};  // byte order: uppercase first
        for (int c = 0; c < 3 && c < folder.num_classes; c++)
            CHECK(strcmp(folder.class_names[c], classes[c]) == 0, "class %d is %s", c, folder.class_names[c]);
        // the header probe lets truncated.png through (its IHDR is intact); notes.txt, broken.png skipped
        const char *order[10] = {"Sneaker/img_00.png", "Sneaker/img_01.bmp", "Sneaker/img_02.ppm",
                                 "bag/img_00.png",     "bag/img_01.bmp",     "bag/img_02.ppm",
                                 "coat/img_00.png",    "coat/img_01.bmp",    "coat/truncated.png",
                                 "coat/extra/img_02.ppm"};
        const int labels[10] = {0, 0, 0, 1, 1, 1, 2, 2, 2, 2};
        CHECK(folder.count == 10, "header check: %d images", folder.count);
        CHECK(folder.skipped == 2, "header check: %d skipped", folder.skipped);
        for (int i = 0; i < 10 && i < folder.count; i++) {
            int parts = strchr(order[i], '/') == strrchr(order[i], '/') ? 2 : 3;
            CHECK(strcmp(qft_test_path_tail(folder.paths[i], parts), order[i]) == 0, "file %d is %s, expected %s", i,
                  folder.paths[i], order[i]);
            CHECK(folder.labels[i] == labels[i], "label %d is %d", i, folder.labels[i]);
        }
        // every usable file decodes to its size; the truncated one fails cleanly
        const int sizes[9][2] = {{64, 48}, {48, 64}, {37, 50}, {80, 40}, {30, 30},
                                 {64, 48}, {48, 64}, {37, 50}, {80, 40}};
        int serial = 0, truncated_failed = 0;
        for (int i = 0; i < folder.count; i++) {
            qft_image_rgb8 image;
            qft_error load_err = {{0}};
            st = qft_imagefolder_load(&folder, i, &image, &load_err);
            if (strstr(folder.paths[i], "truncated")) {
                truncated_failed = st == QFT_ERR_PARSE && strstr(load_err.message, "truncated.png") != NULL;
                continue;
            }
            CHECK(st == QFT_OK, "load %s: %s", folder.paths[i], load_err.message);
            if (st == QFT_OK && serial < 9) {
                CHECK(image.width == sizes[serial][0] && image.height == sizes[serial][1], "%s is %dx%d",
                      folder.paths[i], image.width, image.height);
                // the fixture's backgrounds are never black: decoded RGB is not all zero
                CHECK(image.pixels[0] != 0 || image.pixels[2] != 0, "%s: first pixel black", folder.paths[i]);
            }
            serial++;
            qft_image_free(&image);
        }
        CHECK(truncated_failed, "truncated.png should fail to decode with QFT_ERR_PARSE naming it");
        qft_image_rgb8 none;
        CHECK(qft_imagefolder_load(&folder, folder.count, &none, &err) == QFT_ERR_INVALID, "index out of range");
        qft_imagefolder_free(&folder);
    }

    st = qft_imagefolder_open(&folder, root, QFT_IMAGEFOLDER_CHECK_DECODE, &err);
    CHECK(st == QFT_OK, "open fixture with full decode: %s", err.message);
    if (st == QFT_OK) {
        CHECK(folder.count == 9 && folder.skipped == 3, "full decode: %d images, %d skipped", folder.count,
              folder.skipped);
        qft_imagefolder_free(&folder);
    }

    // a class folder with no usable image is an error naming that folder
    char path[800];
    snprintf(path, sizeof path, "%s/empty_class", root);
    mkdir(path, 0755);
    st = qft_imagefolder_open(&folder, root, QFT_IMAGEFOLDER_CHECK_HEADER, &err);
    CHECK(st == QFT_ERR_INVALID && strstr(err.message, "empty_class"), "empty class: %d %s", st, err.message);
    CHECK(folder.count == 0 && folder.paths == NULL, "failed open leaves the folder zeroed");
    write_file(strcat(path, "/junk.jpg"), "JFIF?", 5);
    st = qft_imagefolder_open(&folder, root, QFT_IMAGEFOLDER_CHECK_HEADER, &err);
    CHECK(st == QFT_ERR_INVALID && strstr(err.message, "empty_class") && strstr(err.message, "1 skipped"),
          "class of only corrupt files: %d %s", st, err.message);

    // a root without class folders, and a missing root
    snprintf(path, sizeof path, "%s/no_classes", dir);
    mkdir(path, 0755);
    snprintf(cmd, sizeof cmd, "%s/loose.png", path);
    write_file(cmd, "x", 1);
    st = qft_imagefolder_open(&folder, path, QFT_IMAGEFOLDER_CHECK_HEADER, &err);
    CHECK(st == QFT_ERR_INVALID && strstr(err.message, "no_classes") && strstr(err.message, "no class folders"),
          "root without classes: %d %s", st, err.message);
    snprintf(path, sizeof path, "%s/missing", dir);
    st = qft_imagefolder_open(&folder, path, QFT_IMAGEFOLDER_CHECK_HEADER, &err);
    CHECK(st == QFT_ERR_IO && strstr(err.message, "missing"), "missing root: %d %s", st, err.message);
    qft_test_remove_tree(dir);
}

// A folder of `classes` classes with the given sizes, paths only (the subset never opens files).
static void fake_folder(qft_imagefolder *folder, const int *sizes, int classes) {
    memset(folder, 0, sizeof *folder);
    folder->root = strdup("fake");
    folder->num_classes = classes;
    folder->class_names = calloc((size_t)classes, sizeof(char *));
    for (int c = 0; c < classes; c++) folder->count += sizes[c];
    folder->paths = calloc((size_t)folder->count, sizeof(char *));
    folder->labels = calloc((size_t)folder->count, sizeof(int32_t));
    char name[64];
    for (int c = 0, i = 0; c < classes; c++) {
        snprintf(name, sizeof name, "class%d", c);
        folder->class_names[c] = strdup(name);
        for (int k = 0; k < sizes[c]; k++, i++) {
            snprintf(name, sizeof name, "%d/%d", c, k);
            folder->paths[i] = strdup(name);
            folder->labels[i] = c;
        }
    }
}

// data.train_limit / eval_limit on an image folder: a share of the limit per class, proportional to its
// size with at least one image, evenly strided over its files.
static void test_subset(void) {
    const int sizes[3] = {1000, 1, 1000};
    qft_imagefolder folder;
    qft_error err = {{0}};
    // limit 10: spare 7 over 1998 -> shares 3.5, 0, 3.5 -> 4, 1, 4 and the leftover image to class 0 (tie)
    fake_folder(&folder, sizes, 3);
    CHECK(qft_imagefolder_subset(&folder, 10, &err) == QFT_OK && folder.count == 10, "subset of 10: %d %s",
          folder.count, err.message);
    const char *expect[10] = {"0/0", "0/200", "0/400", "0/600", "0/800", "1/0", "2/0", "2/250", "2/500", "2/750"};
    int same = folder.count == 10;
    for (int i = 0; same && i < 10; i++) same = !strcmp(folder.paths[i], expect[i]) && folder.labels[i] == expect[i][0] - '0';
    CHECK(same, "subset of 10 keeps the 1-image class and strides the others (first %s)", folder.paths[0]);
    qft_imagefolder_free(&folder);
    // limit = classes: the first image of each; below that: an error, the folder untouched
    fake_folder(&folder, sizes, 3);
    CHECK(qft_imagefolder_subset(&folder, 3, &err) == QFT_OK && folder.count == 3 && !strcmp(folder.paths[1], "1/0") &&
              !strcmp(folder.paths[2], "2/0"),
          "subset of 3: one per class");
    qft_imagefolder_free(&folder);
    fake_folder(&folder, sizes, 3);
    CHECK(qft_imagefolder_subset(&folder, 2, &err) == QFT_ERR_INVALID && folder.count == 2001 &&
              strstr(err.message, "3 classes"),
          "subset of 2 of 3 classes: %s", err.message);
    CHECK(qft_imagefolder_subset(&folder, 0, &err) == QFT_OK && qft_imagefolder_subset(&folder, 2001, &err) == QFT_OK &&
              folder.count == 2001,
          "limit 0 or >= count keeps all");
    // every size and limit: exactly `limit` images, every class kept, per-class counts proportional (+-1)
    int ok = 1;
    for (int limit = 3; limit < 2001; limit += 97) {
        qft_imagefolder sub;
        fake_folder(&sub, sizes, 3);
        qft_imagefolder_subset(&sub, limit, &err);
        int per[3] = {0, 0, 0};
        for (int i = 0; i < sub.count; i++) per[sub.labels[i]]++;
        ok &= sub.count == limit && per[1] == 1 && abs(per[0] - per[2]) <= 1 && per[0] + per[1] + per[2] == limit;
        qft_imagefolder_free(&sub);
    }
    CHECK(ok, "limits 3..2000: sizes and classes");
    qft_imagefolder_free(&folder);
}

// The imagefolder dataset: <root>/train and <root>/val (both the fixture) with limits and per-channel
// normalization: every value is torchvision's Normalize, (x / 255 - mean[c]) / std[c] in float32, of
// the 8-bit eval pixels.
static void check_normalized_batch(const qft_config *cfg, const char *root) {
    qft_dataset ds;
    qft_batch_buffer buf;
    qft_error err = {{0}};
    CHECK(qft_dataset_open(&ds, cfg, 1, &err) == QFT_OK, "open val: %s", err.message);
    CHECK(qft_batch_buffer_init(&buf, &ds, 4, &err) == QFT_OK, "buffer: %s", err.message);
    int count = 0;
    CHECK(qft_dataset_loader_fill(&ds, 0, 0, &buf, &count, &err) == QFT_OK && count == 4, "batch 0: %s", err.message);
    int S = cfg->model.image_size, bad = 0;
    const qft_real_list *mean = &cfg->data.normalize_mean, *std = &cfg->data.normalize_std;
    for (int i = 0; i < count; i++) {  // eval: folder order, so row i is sample i
        qft_image_rgb8 image, pixels;
        CHECK(qft_imagefolder_load(&ds.folder, i, &image, &err) == QFT_OK, "load: %s", err.message);
        CHECK(qft_image_eval_pixels(&ds.loader_cfg.transform, &image, &pixels, &err) == QFT_OK, "pixels: %s",
              err.message);
        for (int c = 0; c < 3; c++) {
            float m = (float)mean->values[mean->count == 1 ? 0 : c], sd = (float)std->values[std->count == 1 ? 0 : c];
            for (int p = 0; p < S * S; p++)
                bad += buf.batch.images[((size_t)i * 3 + c) * S * S + p] != ((float)pixels.pixels[p * 3 + c] / 255.0f - m) / sd;
        }
        qft_image_free(&image);
        qft_image_free(&pixels);
    }
    CHECK(bad == 0, "%s: %d values differ from (x / 255 - mean[c]) / std[c] (%d means, %d stds)", root, bad,
          mean->count, std->count);
    qft_batch_buffer_free(&buf);
    qft_dataset_free(&ds);
}

static void test_dataset_folder(void) {
    const char *source = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    if (access(source, R_OK) != 0) {
        printf("SKIP imagefolder dataset: %s not installed (apt-get install dataset-fashion-mnist)\n", source);
        return;
    }
    char dir[512], link[700];
    qft_test_make_temp_dir(dir, sizeof dir, "qft_imagefolder_ds");
    int rc = qft_test_imagefolder_root(dir, link, sizeof link);
    CHECK(rc == 0, "fixture maker failed (%d)", rc);
    qft_config cfg;
    qft_config_defaults(&cfg);
    snprintf(cfg.data.dataset, sizeof cfg.data.dataset, "imagefolder");
    snprintf(cfg.data.path, sizeof cfg.data.path, "%s", link);
    cfg.model.num_channels = 3;
    cfg.model.num_labels = 3;
    cfg.model.image_size = 16;

    // limits: the train split keeps 5 of its 10 header-valid images (2, 1, 2 per class), val keeps all
    cfg.data.train_limit = 5;
    qft_dataset ds;
    qft_error err = {{0}};
    CHECK(qft_dataset_open(&ds, &cfg, 0, &err) == QFT_OK, "open train: %s", err.message);
    const char *kept[5] = {"Sneaker/img_00.png", "Sneaker/img_01.bmp", "bag/img_00.png", "coat/img_00.png",
                           "coat/truncated.png"};
    int same = ds.count == 5 && ds.folder.count == 5;
    for (int i = 0; same && i < 5; i++) same = !strcmp(qft_test_path_tail(ds.folder.paths[i], 2), kept[i]);
    CHECK(same, "train_limit 5: %d images, first %s", ds.count, ds.count ? ds.folder.paths[0] : "-");
    qft_dataset_free(&ds);
    CHECK(qft_dataset_open(&ds, &cfg, 1, &err) == QFT_OK && ds.count == 10, "val unlimited: %d", ds.count);
    qft_dataset_free(&ds);
    cfg.data.eval_limit = 2;
    CHECK(qft_dataset_open(&ds, &cfg, 1, &err) == QFT_ERR_INVALID && strstr(err.message, "data.eval_limit = 2") &&
              strstr(err.message, "3 classes"),
          "eval_limit below the classes: %s", err.message);
    cfg.data.eval_limit = 0;

    // normalization: ImageNet per-channel values, one value for all channels, and a mixed pair
    cfg.data.normalize_mean = (qft_real_list){3, {0.485, 0.456, 0.406}};
    cfg.data.normalize_std = (qft_real_list){3, {0.229, 0.224, 0.225}};
    check_normalized_batch(&cfg, link);
    cfg.data.normalize_mean = (qft_real_list){1, {0.5}};
    cfg.data.normalize_std = (qft_real_list){1, {0.5}};
    check_normalized_batch(&cfg, link);
    cfg.data.normalize_std = (qft_real_list){3, {0.1, 0.2, 0.3}};
    check_normalized_batch(&cfg, link);
    qft_test_remove_tree(dir);
}

// ---- goldens from tests/oracle/transform_oracle.py ----

typedef struct {
    const uint8_t *p, *end;
    int ok;
} reader;

static const void *take(reader *r, size_t n) {
    if (!r->ok || (size_t)(r->end - r->p) < n) {
        r->ok = 0;
        return NULL;
    }
    const void *at = r->p;
    r->p += n;
    return at;
}

static uint32_t take_u32(reader *r) {
    const uint8_t *b = take(r, 4);
    return b ? (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24 : 0;
}

static float take_f32(reader *r) {
    uint32_t u = take_u32(r);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static int max_pixel_diff(const uint8_t *a, const uint8_t *b, size_t n) {
    int worst = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > worst) worst = d;
    }
    return worst;
}

static qft_status run_case(int kind, const qft_image_transform_config *cfg, const qft_image_train_params *params,
                           const qft_image_rgb8 *in, qft_image_rgb8 *out, qft_error *err) {
    if (kind == 0) return qft_image_eval_pixels(cfg, in, out, err);
    return qft_image_resized_crop(in, params, cfg->crop_size, cfg->interpolation, out, err);
}

static void test_transform_goldens(void) {
    FILE *f = fopen("tests/golden/transform_eval.bin", "rb");
    CHECK(f != NULL, "tests/golden/transform_eval.bin missing (run from the repository root)");
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = malloc((size_t)size);
    size_t got = fread(data, 1, (size_t)size, f);
    fclose(f);
    reader r = {data, data + got, got == (size_t)size};
    const char *magic = take(&r, 8);
    CHECK(magic && memcmp(magic, "QFTTRF01", 8) == 0, "golden magic");
    uint32_t cases = take_u32(&r);
    int worst_jpeg_decode = 0, worst_png_decode = 0, worst_from_pil = 0, worst_jpeg_e2e = 0, worst_png_e2e = 0;
    double worst_tensor = 0, worst_e2e_tensor = 0;
    for (uint32_t c = 0; c < cases && r.ok; c++) {
        int kind = (int)take_u32(&r);
        qft_image_transform_config cfg;
        qft_image_transform_defaults(&cfg, (int)take_u32(&r));
        cfg.resize_size = (int)take_u32(&r);
        cfg.interpolation = take_u32(&r) ? QFT_INTERP_BICUBIC : QFT_INTERP_BILINEAR;
        qft_image_train_params params;
        params.top = (int)take_u32(&r);
        params.left = (int)take_u32(&r);
        params.height = (int)take_u32(&r);
        params.width = (int)take_u32(&r);
        params.flip = (int)take_u32(&r);
        for (int k = 0; k < 3; k++) cfg.mean[k] = take_f32(&r);
        for (int k = 0; k < 3; k++) cfg.std[k] = take_f32(&r);
        uint32_t encoded_size = take_u32(&r);
        const uint8_t *encoded = take(&r, encoded_size);
        qft_image_rgb8 pil = {0, 0, NULL};
        pil.width = (int)take_u32(&r);
        pil.height = (int)take_u32(&r);
        pil.pixels = (uint8_t *)take(&r, (size_t)pil.width * pil.height * 3);
        int crop = cfg.crop_size;
        size_t n = (size_t)crop * crop * 3;
        const uint8_t *expected = take(&r, n);
        const float *tensor = NULL;
        float *tensor_copy = NULL;
        if (take_u32(&r)) {
            const void *raw = take(&r, n * 4);
            if (raw) {
                tensor_copy = malloc(n * 4);
                memcpy(tensor_copy, raw, n * 4);
                tensor = tensor_copy;
            }
        }
        CHECK(r.ok, "golden case %u truncated", c);
        if (!r.ok) break;
        int is_jpeg = encoded_size > 2 && encoded[0] == 0xFF && encoded[1] == 0xD8;

        // 1. decoding: qft (libjpeg-turbo for JPEG, stb_image for PNG) vs PIL on the same bytes: exact
        qft_image_rgb8 stb;
        qft_error err = {{0}};
        qft_status st = qft_image_decode(encoded, encoded_size, "golden", &stb, &err);
        CHECK(st == QFT_OK && stb.width == pil.width && stb.height == pil.height, "case %u decode: %s", c,
              err.message);
        if (st != QFT_OK) continue;
        int decode_diff = max_pixel_diff(stb.pixels, pil.pixels, (size_t)pil.width * pil.height * 3);
        if (getenv("QFT_TEST_VERBOSE")) fprintf(stderr, "case %u: %s decode diff %d\n", c, is_jpeg ? "JPEG" : "PNG", decode_diff);
        CHECK(decode_diff == 0, "case %u: %s decode differs from PIL by %d/255", c, is_jpeg ? "JPEG" : "PNG",
              decode_diff);
        if (is_jpeg && decode_diff > worst_jpeg_decode) worst_jpeg_decode = decode_diff;
        if (!is_jpeg && decode_diff > worst_png_decode) worst_png_decode = decode_diff;

        // 2. the transform itself, on PIL's decode: must equal torchvision exactly
        qft_image_rgb8 ours;
        st = run_case(kind, &cfg, &params, &pil, &ours, &err);
        CHECK(st == QFT_OK, "case %u transform: %s", c, err.message);
        if (st == QFT_OK) {
            int d = max_pixel_diff(ours.pixels, expected, n);
            if (d > worst_from_pil) worst_from_pil = d;
            CHECK(d <= 1, "case %u: transform of PIL's decode differs from torchvision by %d/255", c, d);
            if (tensor) {
                float *x = malloc(n * sizeof(float));
                qft_image_normalize(&cfg, &ours, x);
                for (size_t i = 0; i < n; i++) {
                    double e = fabs((double)x[i] - tensor[i]);
                    if (e > worst_tensor) worst_tensor = e;
                }
                free(x);
            }
            qft_image_free(&ours);
        }

        // 3. end to end from qft's decode (what qft does)
        st = run_case(kind, &cfg, &params, &stb, &ours, &err);
        if (st == QFT_OK) {
            int d = max_pixel_diff(ours.pixels, expected, n);
            if (is_jpeg && d > worst_jpeg_e2e) worst_jpeg_e2e = d;
            if (!is_jpeg && d > worst_png_e2e) worst_png_e2e = d;
            CHECK(d <= 1, "case %u (%s): end to end differs by %d/255", c, is_jpeg ? "JPEG" : "PNG", d);
            CHECK(!is_jpeg || kind != 0 || d == 0, "case %u (JPEG eval): end to end differs by %d/255", c, d);
            if (tensor && kind == 0) {
                float *x = malloc(n * sizeof(float));
                CHECK(qft_image_eval_transform(&cfg, &stb, x, &err) == QFT_OK, "eval transform: %s", err.message);
                size_t plane = (size_t)crop * crop;
                for (size_t i = 0; i < n; i++) {
                    double e = fabs((double)x[i] - tensor[i]) * cfg.std[i / plane];
                    if (e > worst_e2e_tensor) worst_e2e_tensor = e;
                }
                free(x);
            }
            qft_image_free(&ours);
        }
        qft_image_free(&stb);
        free(tensor_copy);
    }
    CHECK(r.ok && cases == 10, "golden has %u cases", cases);
    CHECK(worst_png_decode == 0, "PNG decode differs from PIL by %d", worst_png_decode);
    CHECK(worst_from_pil <= 1, "transform vs torchvision: %d/255", worst_from_pil);
    CHECK(worst_tensor < 1e-6, "normalized tensor vs torchvision: %g", worst_tensor);
    // JPEG goes through libjpeg-turbo with Pillow's settings: the same pixels as PIL
    CHECK(worst_jpeg_decode == 0, "JPEG decode vs PIL: %d/255", worst_jpeg_decode);
    CHECK(worst_jpeg_e2e <= 1, "JPEG end to end vs torchvision: %d/255", worst_jpeg_e2e);
    fprintf(stderr,
            "transform goldens: decode qft vs PIL max |diff| JPEG %d/255, PNG %d/255; transform on PIL's decode "
            "vs torchvision %d/255 (tensor %.3g); end to end JPEG %d/255, PNG %d/255 (eval tensor x std %.4f)\n",
            worst_jpeg_decode, worst_png_decode, worst_from_pil, worst_tensor, worst_jpeg_e2e, worst_png_e2e,
            worst_e2e_tensor);
    free(data);
}

// ---- JPEG files: libjpeg-turbo decoding, by magic, with corrupt and truncated files skipped ----

// The first JPEG case of the transform golden: its encoded bytes and PIL's decode (pointers into *data).
static int golden_jpeg(uint8_t **data, const uint8_t **jpeg, uint32_t *jpeg_size, qft_image_rgb8 *pil) {
    FILE *f = fopen("tests/golden/transform_eval.bin", "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    *data = malloc((size_t)size);
    size_t got = fread(*data, 1, (size_t)size, f);
    fclose(f);
    reader r = {*data, *data + got, got == (size_t)size};
    take(&r, 8);
    uint32_t cases = take_u32(&r);
    for (uint32_t c = 0; c < cases && r.ok; c++) {
        take(&r, 4);
        uint32_t crop = take_u32(&r);
        take(&r, 4 * 7 + 4 * 6);
        *jpeg_size = take_u32(&r);
        *jpeg = take(&r, *jpeg_size);
        pil->width = (int)take_u32(&r);
        pil->height = (int)take_u32(&r);
        pil->pixels = (uint8_t *)take(&r, (size_t)pil->width * pil->height * 3);
        size_t n = (size_t)crop * crop * 3;
        take(&r, n);
        if (take_u32(&r)) take(&r, n * 4);
        if (r.ok && *jpeg_size > 3 && (*jpeg)[0] == 0xFF && (*jpeg)[1] == 0xD8) return 1;
    }
    free(*data);
    *data = NULL;
    return 0;
}

// Encodes a small image with libjpeg itself (components 1: greyscale, 4: CMYK); returns malloc'd bytes.
static unsigned char *encode_jpeg(int components, int width, int height, unsigned long *size) {
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    unsigned char *out = NULL;
    *size = 0;
    jpeg_mem_dest(&cinfo, &out, size);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = components;
    cinfo.in_color_space = components == 1 ? JCS_GRAYSCALE : JCS_CMYK;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, 80, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    unsigned char *row = malloc((size_t)width * components);
    while (cinfo.next_scanline < cinfo.image_height) {
        int y = (int)cinfo.next_scanline;
        for (int x = 0; x < width * components; x++) row[x] = (unsigned char)((x * 5 + y * 9 + (x * y) % 37) & 0xFF);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    free(row);
    return out;
}

// libjpeg's greyscale decode of a valid file: what Pillow's mode "L" holds before convert("RGB").
static unsigned char *decode_grey_reference(const unsigned char *bytes, unsigned long size, int *w, int *h) {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr jerr;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, bytes, size);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = JCS_GRAYSCALE;
    jpeg_start_decompress(&cinfo);
    *w = (int)cinfo.output_width;
    *h = (int)cinfo.output_height;
    unsigned char *grey = malloc((size_t)*w * *h);
    while (cinfo.output_scanline < cinfo.output_height) {
        unsigned char *row = grey + (size_t)cinfo.output_scanline * *w;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return grey;
}

static void test_jpeg_folder(void) {
    uint8_t *golden = NULL;
    const uint8_t *jpeg = NULL;
    uint32_t n = 0;
    qft_image_rgb8 pil = {0, 0, NULL};
    CHECK(golden_jpeg(&golden, &jpeg, &n, &pil), "no JPEG case in tests/golden/transform_eval.bin");
    if (!golden) return;
    char dir[512], path[800];
    qft_test_make_temp_dir(dir, sizeof dir, "qft_jpegfolder");
    snprintf(path, sizeof path, "%s/a", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/b", dir);
    mkdir(path, 0755);
    uint8_t *buf = malloc(n + 16);
    memcpy(buf, jpeg, n);
    memcpy(buf + n, "trailing junk", 13);
    const uint8_t corrupt[12] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x02, 0x13, 0x37, 0xFF, 0x00, 0x42, 0x42};
    struct {
        const char *name;
        const uint8_t *bytes;
        size_t size;
    } files[] = {
        {"a/img.jpg", jpeg, n},
        {"a/jpeg_named.png", jpeg, n},       // JPEG by its magic, whatever the extension
        {"a/trailing.jpg", buf, n + 13},     // bytes after EOI are ignored, as by PIL
        {"a/no_eoi.jpg", jpeg, n - 2},       // PIL: "image file is truncated"
        {"a/cut.jpg", jpeg, n * 6 / 10},     // headers intact, entropy data cut
        {"a/header_cut.jpg", jpeg, 20},      // cut inside the headers
        {"a/corrupt.jpg", corrupt, sizeof corrupt},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
        write_file(path, files[i].bytes, files[i].size);
    }
    unsigned long grey_size = 0, cmyk_size = 0;
    unsigned char *grey = encode_jpeg(1, 45, 31, &grey_size), *cmyk = encode_jpeg(4, 20, 12, &cmyk_size);
    snprintf(path, sizeof path, "%s/b/grey.jpg", dir);
    write_file(path, grey, grey_size);
    snprintf(path, sizeof path, "%s/b/cmyk.jpg", dir);
    write_file(path, cmyk, cmyk_size);

    // header probe: jpeg_read_header passes the files cut after their headers; the headerless, the
    // corrupt and the CMYK one are skipped
    qft_imagefolder folder;
    qft_error err = {{0}};
    qft_status st = qft_imagefolder_open(&folder, dir, QFT_IMAGEFOLDER_CHECK_HEADER, &err);
    CHECK(st == QFT_OK, "open JPEG folder: %s", err.message);
    if (st == QFT_OK) {
        const char *order[6] = {"a/cut.jpg", "a/img.jpg", "a/jpeg_named.png", "a/no_eoi.jpg", "a/trailing.jpg",
                                "b/grey.jpg"};
        CHECK(folder.count == 6 && folder.skipped == 3, "JPEG header check: %d images, %d skipped", folder.count,
              folder.skipped);
        for (int i = 0; i < 6 && i < folder.count; i++)
            CHECK(strcmp(qft_test_path_tail(folder.paths[i], 2), order[i]) == 0, "JPEG file %d is %s", i, folder.paths[i]);
        for (int i = 0; i < folder.count; i++) {
            qft_image_rgb8 image;
            qft_error load_err = {{0}};
            st = qft_imagefolder_load(&folder, i, &image, &load_err);
            const char *name = qft_test_path_tail(folder.paths[i], 2);
            if (strstr(name, "cut") || strstr(name, "no_eoi")) {
                CHECK(st == QFT_ERR_PARSE && strstr(load_err.message, name) && strstr(load_err.message, "truncated"),
                      "%s: truncated JPEG must fail: %d %s", name, st, load_err.message);
                continue;
            }
            CHECK(st == QFT_OK, "load %s: %s", name, load_err.message);
            if (st != QFT_OK) continue;
            if (name[0] == 'a') {
                CHECK(image.width == pil.width && image.height == pil.height &&
                          max_pixel_diff(image.pixels, pil.pixels, (size_t)pil.width * pil.height * 3) == 0,
                      "%s: file decode differs from PIL's", name);
            } else {  // greyscale: libjpeg's grey plane replicated, as Pillow's L -> RGB
                int w = 0, h = 0, same = 1;
                unsigned char *ref = decode_grey_reference(grey, grey_size, &w, &h);
                CHECK(image.width == w && image.height == h, "grey JPEG is %dx%d", image.width, image.height);
                for (int p = 0; same && p < w * h && image.width == w && image.height == h; p++)
                    same = image.pixels[3 * p] == ref[p] && image.pixels[3 * p + 1] == ref[p] &&
                           image.pixels[3 * p + 2] == ref[p];
                CHECK(same, "grey JPEG decodes to its grey plane replicated");
                free(ref);
            }
            qft_image_free(&image);
        }
        qft_imagefolder_free(&folder);
    }
    st = qft_imagefolder_open(&folder, dir, QFT_IMAGEFOLDER_CHECK_DECODE, &err);
    CHECK(st == QFT_OK && folder.count == 4 && folder.skipped == 5, "JPEG full decode check: %d %d images, %d skipped",
          st, folder.count, folder.skipped);
    if (st == QFT_OK) qft_imagefolder_free(&folder);

    // in memory: the same verdicts, with the name in the message
    qft_image_rgb8 image;
    CHECK(qft_image_decode(jpeg, n * 6 / 10, "cut.jpg", &image, &err) == QFT_ERR_PARSE && strstr(err.message, "cut.jpg"),
          "truncated JPEG in memory: %s", err.message);
    CHECK(qft_image_decode(corrupt, sizeof corrupt, "bad.jpg", &image, &err) == QFT_ERR_PARSE, "corrupt JPEG in memory");
    CHECK(qft_image_decode(cmyk, cmyk_size, "cmyk.jpg", &image, &err) == QFT_ERR_PARSE && strstr(err.message, "CMYK"),
          "CMYK JPEG: %s", err.message);
    // damaged entropy data: libjpeg warns (silently) and decodes, as PIL does
    memcpy(buf, jpeg, n);
    for (uint32_t i = n / 2; i < n / 2 + 40 && i < n - 2; i++) buf[i] ^= 0x55;
    st = qft_image_decode(buf, n, "damaged.jpg", &image, &err);
    CHECK(st == QFT_OK && image.width == pil.width, "damaged JPEG decodes as PIL does: %s", err.message);
    if (st == QFT_OK) qft_image_free(&image);

    free(grey);
    free(cmyk);
    free(buf);
    free(golden);
    qft_test_remove_tree(dir);
}

static void test_train_sampling(void) {
    qft_image_transform_config cfg;
    qft_image_transform_defaults(&cfg, 32);
    CHECK(cfg.resize_size == 37, "round(32 / 0.875) = %d", cfg.resize_size);
    CHECK(qft_image_eval_resize_size(224, 0.875) == 256, "224 -> 256");
    int flips = 0, samples = 2000, same = 1, bounds_ok = 1, area_ok = 1, ratio_ok = 1;
    double area_sum = 0;
    for (int i = 0; i < samples; i++) {
        qft_image_train_params a = qft_image_train_sample(&cfg, 500, 375, 42, 3, (uint64_t)i);
        qft_image_train_params b = qft_image_train_sample(&cfg, 500, 375, 42, 3, (uint64_t)i);
        same &= memcmp(&a, &b, sizeof a) == 0;
        bounds_ok &= a.left >= 0 && a.top >= 0 && a.width > 0 && a.height > 0 && a.left + a.width <= 500 &&
                     a.top + a.height <= 375;
        double fraction = (double)a.width * a.height / (500.0 * 375.0), ratio = (double)a.width / a.height;
        area_ok &= fraction > 0.075 && fraction <= 1.0;
        ratio_ok &= ratio > 0.70 && ratio < 1.40;
        area_sum += fraction;
        flips += a.flip;
    }
    CHECK(same, "train sampling is a pure function of (seed, epoch, index)");
    CHECK(bounds_ok, "train crops lie inside the image");
    CHECK(area_ok && ratio_ok, "train crop area fraction in [0.08, 1] and ratio in [3/4, 4/3]");
    CHECK(flips > samples * 0.45 && flips < samples * 0.55, "flip rate %d / %d", flips, samples);
    CHECK(area_sum / samples > 0.40 && area_sum / samples < 0.56, "mean area fraction %.3f", area_sum / samples);
    qft_image_train_params e0 = qft_image_train_sample(&cfg, 500, 375, 42, 0, 7);
    qft_image_train_params e1 = qft_image_train_sample(&cfg, 500, 375, 42, 1, 7);
    qft_image_train_params s1 = qft_image_train_sample(&cfg, 500, 375, 43, 0, 7);
    CHECK(memcmp(&e0, &e1, sizeof e0) != 0 && memcmp(&e0, &s1, sizeof e0) != 0, "epoch and seed change the crop");
    // no attempt can fit a 1000x10 strip: torchvision's fallback, a centred crop of ratio 4/3
    qft_image_train_params strip = qft_image_train_sample(&cfg, 1000, 10, 1, 0, 0);
    CHECK(strip.width == 13 && strip.height == 10 && strip.left == 493 && strip.top == 0,
          "fallback crop (%d, %d, %dx%d)", strip.left, strip.top, strip.width, strip.height);

    // full train transform: deterministic output of the right size on a real-sized image
    qft_image_rgb8 image = {120, 90, malloc(120 * 90 * 3)};
    for (int i = 0; i < 120 * 90 * 3; i++) image.pixels[i] = (uint8_t)((i * 7) % 251);
    float *x = malloc(3 * 32 * 32 * sizeof(float)), *y = malloc(3 * 32 * 32 * sizeof(float));
    qft_error err = {{0}};
    CHECK(qft_image_train_transform(&cfg, &image, 5, 2, 11, x, &err) == QFT_OK, "train transform: %s", err.message);
    CHECK(qft_image_train_transform(&cfg, &image, 5, 2, 11, y, &err) == QFT_OK, "train transform: %s", err.message);
    CHECK(memcmp(x, y, 3 * 32 * 32 * sizeof(float)) == 0, "train transform is deterministic");
    int finite = 1;
    for (int i = 0; i < 3 * 32 * 32; i++) finite &= isfinite(x[i]) && x[i] > -2.2f && x[i] < 2.7f;
    CHECK(finite, "train transform output in the normalized range");
    // errors, not crashes
    qft_image_rgb8 out;
    CHECK(qft_image_crop(&image, 100, 0, 30, 10, &out, &err) == QFT_ERR_INVALID, "crop outside the image");
    qft_image_transform_config bad = cfg;
    bad.resize_size = 16;
    CHECK(qft_image_eval_transform(&bad, &image, x, &err) == QFT_ERR_INVALID, "resize smaller than crop");
    CHECK(qft_image_decode((const uint8_t *)"GIF89a", 6, "tiny.gif", &out, &err) == QFT_ERR_PARSE &&
              strstr(err.message, "tiny.gif"),
          "undecodable bytes: %s", err.message);
    free(x);
    free(y);
    qft_image_free(&image);
}

int main(void) {
    test_fixture_folder();
    test_transform_goldens();
    test_jpeg_folder();
    test_train_sampling();
    test_subset();
    test_dataset_folder();
    QFT_TEST_SUMMARY();
}
