// Prints, for the first N training steps of a qft text run, the real-token length of every row of
// the batch exactly as `qft train` draws it (same config resolution, same epoch order, same
// trim-to-longest-row fill), so the PyTorch side of the step benchmark can run the identical token
// counts and padding masks. Uses qft's own dataset code (links libqftlib.a); assumes
// train.grad_accum = 1 and no resume, as the benchmark runs use.
//
//   qft_batch_lengths STEPS key=value ...   ->   one JSON object on stdout:
//   {"batch_size": 8, "max_seq_len": 128, "steps": [{"T": 117, "lengths": [..8 ints..]}, ...]}
//
// Built by benchmarks/run_step_bench.sh; not part of the qft build.
#include <stdio.h>
#include <stdlib.h>

#include "data/dataset.h"
#include "io/config.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s STEPS [key=value ...]\n", argv[0]);
        return 2;
    }
    long steps = strtol(argv[1], NULL, 10);
    qft_config cfg;
    qft_error err = {{0}};
    qft_config_defaults(&cfg);
    for (int i = 2; i < argc; i++)
        if (qft_config_override(&cfg, argv[i], &err) != QFT_OK) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
    if (qft_config_validate(&cfg, &err) != QFT_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    qft_dataset ds;
    if (qft_dataset_open(&ds, &cfg, 0, &err) != QFT_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    if (ds.kind != QFT_DATASET_TEXT) {
        fprintf(stderr, "not a text dataset\n");
        return 1;
    }
    int B = cfg.data.batch_size;
    long batches_per_epoch = ds.count / B;  // as host/train/trainer.c
    qft_batch_buffer buf;
    if (qft_batch_buffer_init(&buf, &ds, B, &err) != QFT_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    int *order = malloc((size_t)ds.count * sizeof(int));
    if (!order) return 1;
    long loaded_epoch = -1;
    printf("{\"batch_size\": %d, \"max_seq_len\": %d, \"steps\": [", B, ds.seq_len);
    for (long k = 0; k < steps; k++) {
        long epoch = k / batches_per_epoch, slot = k % batches_per_epoch;
        if (epoch != loaded_epoch) {
            qft_epoch_order(order, ds.count, (uint64_t)cfg.run.seed, (uint64_t)epoch, cfg.data.shuffle);
            loaded_epoch = epoch;
        }
        qft_dataset_fill(&ds, order + slot * B, B, &buf);
        int T = buf.batch.seq_len;
        printf("%s{\"T\": %d, \"lengths\": [", k ? ", " : "", T);
        for (int i = 0; i < B; i++) {
            int len = 0;
            for (int t = 0; t < T; t++) len += buf.batch.attention_mask[(size_t)i * T + t] != 0.0f;
            printf("%s%d", i ? ", " : "", len);
        }
        printf("]}");
    }
    printf("]}\n");
    free(order);
    qft_batch_buffer_free(&buf);
    qft_dataset_free(&ds);
    return 0;
}
