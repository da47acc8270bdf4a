// CUDA backend entry point. Kernels land here op family by op family (one .cuh each), each checked
// against the CPU reference backend; until then this reports that no CUDA ops are built.
extern "C" {
#include "backend/backend.h"
}

extern "C" const char *qft_backend_cuda_status(void) {
    return "cuda backend: no kernels yet (CPU backend is the reference)";
}
