// Run directory layout and the weights each command reads (eval.checkpoint, the newest checkpoint,
// or model.init_from), in one place.
#include "run_files.h"

#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"

void qft_run_dir(const qft_config *cfg, char *dir, size_t size) {
    snprintf(dir, size, "%s/%s", cfg->run.dir, cfg->run.name);
}

qft_status qft_make_dirs(const char *path, qft_error *err) {
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return qft_fail(err, QFT_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return qft_fail(err, QFT_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
    return QFT_OK;
}

void qft_apply_threads(const qft_config *cfg) {
    if (cfg->run.threads > 0) omp_set_num_threads(cfg->run.threads);
}

qft_status qft_eval_checkpoint_path(const qft_config *cfg, char *path, size_t size, qft_error *err) {
    char run_dir[1100];
    qft_run_dir(cfg, run_dir, sizeof run_dir);
    if (cfg->eval.checkpoint[0]) snprintf(path, size, "%s", cfg->eval.checkpoint);
    else if (!qft_checkpoint_latest(run_dir, path, size))
        return qft_fail(err, QFT_ERR_IO, "%s: no checkpoint to evaluate (train first, or set eval.checkpoint)",
                        run_dir);
    return QFT_OK;
}

qft_status qft_model_weights_path(const qft_config *cfg, char *path, size_t size, qft_error *err) {
    char run_dir[1100];
    qft_run_dir(cfg, run_dir, sizeof run_dir);
    if (cfg->eval.checkpoint[0] || qft_checkpoint_latest(run_dir, path, size))
        return qft_eval_checkpoint_path(cfg, path, size, err);
    if (cfg->model.init_from[0]) {
        snprintf(path, size, "%s", cfg->model.init_from);
        return QFT_OK;
    }
    return qft_fail(err, QFT_ERR_IO,
                    "%s: no weights (train first, or set eval.checkpoint or model.init_from)", run_dir);
}
