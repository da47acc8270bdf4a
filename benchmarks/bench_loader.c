// Loader throughput driver for benchmarks/bench_loader.sh (built there with cc against libqftlib.a):
// runs qft_loader over an image folder and prints one JSON line with images/s and CPU seconds.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "data/imagefolder.h"
#include "data/loader.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

// Single-threaded split of the eval transform's time per image: decode, resize + crop, normalize.
static int breakdown(const qft_imagefolder *folder) {
    qft_image_transform_config cfg;
    qft_image_transform_defaults(&cfg, 224);
    float *out = malloc(sizeof(float) * 3 * 224 * 224);
    double decode = 0, resize = 0, normalize = 0;
    qft_error err = {{0}};
    for (int i = 0; i < folder->count; i++) {
        qft_image_rgb8 image, pixels;
        double t0 = now_s();
        if (qft_imagefolder_load(folder, i, &image, &err) != QFT_OK) continue;
        double t1 = now_s();
        qft_status st = qft_image_eval_pixels(&cfg, &image, &pixels, &err);
        double t2 = now_s();
        if (st == QFT_OK) {
            qft_image_normalize(&cfg, &pixels, out);
            qft_image_free(&pixels);
        }
        double t3 = now_s();
        qft_image_free(&image);
        decode += t1 - t0;
        resize += t2 - t1;
        normalize += t3 - t2;
    }
    double n = folder->count;
    printf("{\"side\": \"qft\", \"decode_ms\": %.3f, \"resize_crop_ms\": %.3f, \"normalize_ms\": %.3f, "
           "\"checksum\": %.4f}\n",
           1e3 * decode / n, 1e3 * resize / n, 1e3 * normalize / n, out[0]);
    free(out);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 6 && !(argc == 3 && strcmp(argv[2], "breakdown") == 0)) {
        fprintf(stderr, "usage: %s FOLDER eval|train WORKERS BATCH EPOCHS [CROP]\n       %s FOLDER breakdown\n",
                argv[0], argv[0]);
        return 2;
    }
    qft_imagefolder folder;
    qft_error err = {{0}};
    if (qft_imagefolder_open(&folder, argv[1], QFT_IMAGEFOLDER_CHECK_HEADER, &err) != QFT_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    if (argc == 3) {
        int rc = breakdown(&folder);
        qft_imagefolder_free(&folder);
        return rc;
    }
    qft_loader_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.folder = &folder;
    qft_image_transform_defaults(&cfg.transform, argc > 6 ? atoi(argv[6]) : 224);
    cfg.train = strcmp(argv[2], "train") == 0;
    cfg.workers = atoi(argv[3]);
    cfg.batch_size = atoi(argv[4]);
    cfg.ring_depth = 4;
    cfg.seed = 1;
    cfg.world_size = 1;
    cfg.shuffle = 1;
    int epochs = atoi(argv[5]);
    qft_loader *loader;
    if (qft_loader_create(&loader, &cfg, &err) != QFT_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    long images = 0;
    double checksum = 0, t0 = now_s(), c0 = cpu_s();
    for (int epoch = 0; epoch < epochs; epoch++) {
        qft_loader_start_epoch(loader, (uint64_t)epoch, 0, &err);
        qft_loader_batch batch;
        int rc;
        while ((rc = qft_loader_next(loader, &batch, &err)) == 1) {
            images += batch.count;
            checksum += batch.images[0];
            qft_loader_release(loader, &batch);
        }
        if (rc < 0) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
    }
    double wall = now_s() - t0, cpu = cpu_s() - c0;
    printf("{\"side\": \"qft\", \"transform\": \"%s\", \"workers\": %d, \"images\": %ld, \"wall_s\": %.4f, "
           "\"cpu_s\": %.4f, \"images_per_s\": %.2f, \"images_per_cpu_s\": %.2f, \"checksum\": %.4f}\n",
           argv[2], cfg.workers, images, wall, cpu, images / wall, images / cpu, checksum);
    qft_loader_destroy(loader);
    qft_imagefolder_free(&folder);
    return 0;
}
