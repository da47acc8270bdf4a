// Memory entries of the CPU backend: "device" memory is ordinary host memory, 64-byte aligned
// so that rows start on cache lines and vector loads stay aligned; copies are plain memcpy.
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"

enum { CPU_ALLOC_ALIGNMENT = 64 };

void *cpu_alloc(size_t bytes) {
    // aligned_alloc needs a size that is a multiple of the alignment (and non-zero).
    size_t rounded = (bytes + CPU_ALLOC_ALIGNMENT - 1) / CPU_ALLOC_ALIGNMENT * CPU_ALLOC_ALIGNMENT;
    if (rounded < bytes) return NULL;  // overflow
    if (rounded == 0) rounded = CPU_ALLOC_ALIGNMENT;
    void *ptr = aligned_alloc(CPU_ALLOC_ALIGNMENT, rounded);
    if (ptr) memset(ptr, 0, rounded);
    return ptr;
}

void cpu_release(void *ptr) { free(ptr); }

void cpu_zero(void *ptr, size_t bytes) {
    if (bytes) memset(ptr, 0, bytes);
}

void cpu_copy_to_device(void *dst, const void *host_src, size_t bytes) {
    if (bytes) memcpy(dst, host_src, bytes);
}

void cpu_copy_to_host(void *host_dst, const void *src, size_t bytes) {
    if (bytes) memcpy(host_dst, src, bytes);
}

void cpu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src) memmove(dst, src, bytes);
}
