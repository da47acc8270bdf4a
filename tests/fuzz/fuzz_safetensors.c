// libFuzzer target: arbitrary bytes as a safetensors file (in a memfd, so the real mmap path runs),
// then every tensor read as floats and as ints. Must never crash, leak or read out of bounds.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz.safetensors", MFD_CLOEXEC);
    if (fd < 0) abort();
    if (size && write(fd, data, size) != (ssize_t)size) abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);

    qft_safetensors st;
    qft_error err;
    if (qft_safetensors_open(&st, path, &err) == QFT_OK) {
        for (int i = 0; i < st.count; i++) {
            const qft_tensor_info *t = &st.tensors[i];
            if (qft_safetensors_find(&st, t->name) == NULL) abort();  // every tensor is findable
            if (t->numel > (1u << 20)) continue;                          // all bytes exist, but keep runs fast
            float *f = malloc((t->numel + 1) * sizeof *f);
            int32_t *n = malloc((t->numel + 1) * sizeof *n);
            if (f && n) {
                qft_safetensors_read_f32(&st, t, f, &err);
                qft_safetensors_read_i32(&st, t, n, &err);
            }
            free(f);
            free(n);
        }
        for (int i = 0; i < st.metadata_count; i++)
            if (qft_safetensors_metadata(&st, st.metadata_keys[i]) == NULL) abort();
        const int64_t shape[2] = {2, 3};
        qft_safetensors_expect(&st, "w", 2, shape, NULL, &err);
        qft_safetensors_close(&st);
    }
    close(fd);
    return 0;
}
