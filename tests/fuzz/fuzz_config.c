// libFuzzer target for the config loader: arbitrary bytes as a YAML file and as an override.
// Must never crash, hang or leak; errors must be one line; a config that loads must survive write->load.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/config.h"

static void check_one_line(const qft_error *err) {
    if (err->message[0] == '\0' || strchr(err->message, '\n') || strchr(err->message, '\r')) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qft_config cfg;
    qft_error err;
    qft_config_defaults(&cfg);
    memset(&err, 0, sizeof err);
    if (qft_config_load_string(&cfg, (const char *)data, size, "fuzz.yaml", &err) != QFT_OK) {
        check_one_line(&err);
    } else {
        if (qft_config_validate(&cfg, &err) != QFT_OK) check_one_line(&err);
        // Whatever loaded must write back and reload to the identical struct.
        char path[64];
        snprintf(path, sizeof path, "/tmp/fuzz_config_%ld.yaml", (long)getpid());
        if (qft_config_write(&cfg, path, &err) != QFT_OK) abort();
        qft_config again;
        qft_config_defaults(&again);
        if (qft_config_load_file(&again, path, &err) != QFT_OK) abort();
        unlink(path);
        memcpy(again.source_path, cfg.source_path, sizeof again.source_path);
        if (memcmp(&again, &cfg, sizeof cfg) != 0) abort();
    }

    // The same bytes as a command-line override (NUL-terminated, cut at the first NUL).
    char *assignment = malloc(size + 1);
    if (!assignment) return 0;
    memcpy(assignment, data, size);
    assignment[size] = '\0';
    qft_config_defaults(&cfg);
    if (qft_config_override(&cfg, assignment, &err) != QFT_OK) check_one_line(&err);
    free(assignment);
    return 0;
}
