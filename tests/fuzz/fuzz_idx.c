// libFuzzer target: arbitrary bytes split into an images file and a labels file (memfds, read through
// zlib as raw or gzip), then loaded. Must never crash, leak or allocate what the header merely claims.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "data/idx.h"

static int memfd_with(const uint8_t *data, size_t size, char *path, size_t cap) {
    int fd = memfd_create("fuzz.idx", MFD_CLOEXEC);
    if (fd < 0) abort();
    if (size && write(fd, data, size) != (ssize_t)size) abort();
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // First two bytes: where the labels file starts (the rest of the input is the images file).
    if (size < 2) return 0;
    size_t split = ((size_t)data[0] << 8 | data[1]);
    data += 2;
    size -= 2;
    if (split > size) split = size;
    char images[64], labels[64];
    int images_fd = memfd_with(data, size - split, images, sizeof images);
    int labels_fd = memfd_with(data + size - split, split, labels, sizeof labels);
    qft_idx_dataset ds;
    qft_error err;
    if (qft_idx_load(&ds, images, labels, &err) == QFT_OK) {
        size_t n = (size_t)ds.count * (size_t)ds.rows * (size_t)ds.cols;
        volatile unsigned sum = 0;
        sum += ds.pixels[n - 1] + ds.labels[ds.count - 1];  // the claimed extent is really there
        (void)sum;
    }
    qft_idx_free(&ds);
    close(images_fd);
    close(labels_fd);
    return 0;
}
