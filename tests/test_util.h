// Tiny assertion helpers shared by the C tests: count checks, print failures, exit non-zero on any.
// Each test binary ends with QFT_TEST_SUMMARY(), which prints "N passed, M failed".
#ifndef QFT_TEST_UTIL_H
#define QFT_TEST_UTIL_H

#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int qft_test_passed = 0;
static int qft_test_failed = 0;

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (cond) {                                                               \
            qft_test_passed++;                                                    \
        } else {                                                                  \
            qft_test_failed++;                                                    \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                  \
            fprintf(stderr, __VA_ARGS__);                                         \
            fprintf(stderr, "\n");                                                \
        }                                                                         \
    } while (0)

// max |a-b| / max(max|b|, floor): a relative error normalized by the reference tensor's scale.
static inline double qft_max_rel_error(const float *a, const float *b, size_t n, double floor_value) {
    double max_diff = 0.0, max_ref = floor_value;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > max_diff || isnan(d)) max_diff = isnan(d) ? INFINITY : d;
        if (fabs((double)b[i]) > max_ref) max_ref = fabs((double)b[i]);
    }
    return max_diff / max_ref;
}

// A fresh directory under $TMPDIR (or /tmp) named prefix_XXXXXX; exits the test if none can be made.
static inline void qft_test_make_temp_dir(char *dir, size_t size, const char *prefix) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, size, "%s/%s_XXXXXX", tmp && *tmp ? tmp : "/tmp", prefix);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(2);
    }
}

// Removes the files directly inside dir (tests make no subdirectories), then dir itself.
static inline void qft_test_remove_temp_dir(const char *dir) {
    DIR *handle = opendir(dir);
    if (!handle) return;
    char path[1200];
    for (struct dirent *e; (e = readdir(handle));) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(handle);
    rmdir(dir);
}

// Removes dir and everything below it (image-folder fixtures have class subdirectories).
static inline int qft_test_remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}
static inline void qft_test_remove_tree(const char *dir) {
    nftw(dir, qft_test_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

// Deterministic test data (splitmix64); a test may pick its stream with QFT_TEST_RNG_SEED.
#ifndef QFT_TEST_RNG_SEED
#define QFT_TEST_RNG_SEED 0x9E3779B97F4A7C15ull
#endif
// The last `parts` components of a path ("a/b/c/d", 2 -> "c/d"); the whole path when it has fewer.
static inline const char *qft_test_path_tail(const char *path, int parts) {
    const char *p = path + strlen(path);
    while (p > path && parts > 0)
        if (*--p == '/') parts--;
    return parts == 0 ? p + 1 : path;
}

// The Fashion-MNIST image-folder fixture (datasets/make_imagefolder_fixture.py, run from the source dir)
// made in <dir>/fixture and linked as <dir>/root/train and <dir>/root/val; `root` gets <dir>/root.
// Returns 0 on success, else the failing step's status (the caller reports it and removes `dir`).
static inline int qft_test_imagefolder_root(const char *dir, char *root, size_t size) {
    char cmd[1200], target[700], link[720];
    snprintf(cmd, sizeof cmd, "python3 datasets/make_imagefolder_fixture.py '%s/fixture'", dir);
    int rc = system(cmd);
    if (rc != 0) return rc;
    snprintf(target, sizeof target, "%s/fixture", dir);
    snprintf(root, size, "%s/root", dir);
    if (mkdir(root, 0755) != 0) return -1;
    snprintf(link, sizeof link, "%s/train", root);
    if (symlink(target, link) != 0) return -1;
    snprintf(link, sizeof link, "%s/val", root);
    return symlink(target, link) != 0 ? -1 : 0;
}

static uint64_t test_rng_state __attribute__((unused)) = QFT_TEST_RNG_SEED;
static inline uint64_t test_rng_next(void) {
    uint64_t z = (test_rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline float test_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)((double)(test_rng_next() >> 11) * (1.0 / 9007199254740992.0));
}
static inline float *random_tensor(size_t n, float lo, float hi) {
    float *t = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) t[i] = test_uniform(lo, hi);
    return t;
}
static inline float *zero_tensor(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

#define QFT_TEST_SUMMARY()                                                        \
    do {                                                                          \
        printf("%d passed, %d failed\n", qft_test_passed, qft_test_failed);       \
        return qft_test_failed == 0 && qft_test_passed > 0 ? 0 : 1;               \
    } while (0)

#endif
