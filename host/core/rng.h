// Philox 4x32-10 counter-based random numbers (Salmon et al., SC'11 "Parallel random numbers: as easy as 1, 2, 3").
// Counter-based so that element i of a dropout mask or noise tensor is a pure function of
// (seed, stream, i): the same on CPU and GPU and on any number of threads or ranks.
#ifndef QFT_CORE_RNG_H
#define QFT_CORE_RNG_H

#include <stdint.h>

typedef struct {
    uint32_t v[4];
} qft_philox_block;

static inline uint32_t qft_mulhilo32(uint32_t a, uint32_t b, uint32_t *hi) {
    uint64_t product = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(product >> 32);
    return (uint32_t)product;
}

// Ten rounds of Philox4x32 on counter (c0..c3) with key (k0, k1).
static inline qft_philox_block qft_philox4x32(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                              uint32_t k0, uint32_t k1) {
    const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
    const uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = qft_mulhilo32(M0, c0, &hi0);
        uint32_t lo1 = qft_mulhilo32(M1, c2, &hi1);
        uint32_t n0 = hi1 ^ c1 ^ k0;
        uint32_t n1 = lo1;
        uint32_t n2 = hi0 ^ c3 ^ k1;
        uint32_t n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += W0; k1 += W1;
    }
    qft_philox_block out = {{c0, c1, c2, c3}};
    return out;
}

// Uniform float in [0, 1) from 24 random bits (exactly representable, identical on every platform).
static inline float qft_uint_to_unit_float(uint32_t x) {
    return (float)(x >> 8) * (1.0f / 16777216.0f);
}

// Philox block number `counter` of stream `stream` under `seed`: counter in (c0, c1), stream in (c2, c3),
// seed as the key. Element `index` of a stream uses word index & 3 of block index >> 2.
static inline qft_philox_block qft_philox_block_at(uint64_t seed, uint64_t stream, uint64_t counter) {
    return qft_philox4x32((uint32_t)counter, (uint32_t)(counter >> 32), (uint32_t)stream, (uint32_t)(stream >> 32),
                          (uint32_t)seed, (uint32_t)(seed >> 32));
}

// Uniform [0,1) number for element `index` of stream `stream` under `seed`.
// Four consecutive indices share one Philox block.
static inline float qft_philox_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
    qft_philox_block b = qft_philox_block_at(seed, stream, index >> 2);
    return qft_uint_to_unit_float(b.v[index & 3]);
}

#endif
