// `qft reparam`: weights + calibration in, folded weights + per-tensor calibration + an evaluation
// config out; the quantized model it describes computes what the unfolded one did (RepQ-ViT).
#include "reparam_cmd.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../backend/backend.h"
#include "../io/config_quant.h"
#include "../io/safetensors.h"
#include "../model/model.h"
#include "../quant/quant_io.h"
#include "quant_tools.h"
#include "run_files.h"

// eval.yaml: the folded model and its calibration, and the rules with a per-tensor rule in front for
// every folded site (so their formats match the calibration's records).
static qft_status write_eval_config(const char *path, const qft_model *m, const qft_config *cfg, const char *model,
                                    const char *calibration, qft_error *err) {
    FILE *f = fopen(path, "w");
    if (!f) return qft_fail(err, QFT_ERR_IO, "%s: cannot open for writing", path);
    fprintf(f, "# Written by qft reparam: evaluates the folded model with its per-tensor calibration.\n");
    fprintf(f, "eval:\n  checkpoint: \"%s\"\nquant:\n  calibration: \"%s\"\n  rules:\n", model, calibration);
    for (int i = 0; i < m->quant.count; i++) {
        const qft_quant_site *s = &m->quant.sites[i];
        if (!s->fmt.enabled || s->role != QFT_SITE_INPUT || s->rule < 0) continue;
        if (cfg->quant.rules.items[s->rule].format.granularity == s->fmt.granularity) continue;
        qft_quant_rule rule = cfg->quant.rules.items[s->rule];
        snprintf(rule.pattern, sizeof rule.pattern, "%s", s->name);
        rule.format = s->fmt;
        qft_quant_rule_write_yaml(f, &rule, "    ");
        fputc('\n', f);
    }
    for (int r = 0; r < cfg->quant.rules.count; r++) {
        qft_quant_rule_write_yaml(f, &cfg->quant.rules.items[r], "    ");
        fputc('\n', f);
    }
    int failed = ferror(f);
    if (fclose(f) != 0 || failed) return qft_fail(err, QFT_ERR_IO, "%s: write failed", path);
    return QFT_OK;
}

qft_status qft_reparam_command(const qft_config *cfg, qft_reparam_cmd_summary *out, qft_error *err) {
    memset(out, 0, sizeof *out);
    qft_apply_threads(cfg);
    char weights[2200], run_dir[1100], model_path[1400], calib_path[1400];
    qft_status st = qft_model_weights_path(cfg, weights, sizeof weights, err);
    if (st) return st;
    qft_run_dir(cfg, run_dir, sizeof run_dir);
    qft_model m;
    memset(&m, 0, sizeof m);
    st = qft_model_create(&m, &cfg->model, 1, cfg->data.max_seq_len, qft_backend_cpu(), (uint64_t)cfg->run.seed, err);
    if (st == QFT_OK) st = qft_model_import(&m, weights, NULL, NULL, err);
    int quantized = 0;
    if (st == QFT_OK) st = qft_quant_prepare_eval(&m, cfg, weights, &quantized, err);
    if (st == QFT_OK && !quantized) st = qft_fail(err, QFT_ERR_INVALID, "reparam: quant.rules enable no site");
    if (st == QFT_OK) st = qft_reparam_fold(&m, &out->fold, err);
    snprintf(out->dir, sizeof out->dir, "%s/reparam", run_dir);
    if (st == QFT_OK) st = qft_make_dirs(out->dir, err);
    snprintf(model_path, sizeof model_path, "%s/model.safetensors", out->dir);
    snprintf(calib_path, sizeof calib_path, "%s/calibration.safetensors", out->dir);
    snprintf(out->eval_config, sizeof out->eval_config, "%s/eval.yaml", out->dir);
    if (st == QFT_OK) st = qft_model_export(&m, model_path, QFT_DTYPE_F32, err);
    const char *metadata[] = {"qft.reparam.weights", weights, NULL};
    if (st == QFT_OK) st = qft_quant_io_save(&m.quant, calib_path, metadata, err);
    if (st == QFT_OK) st = write_eval_config(out->eval_config, &m, cfg, model_path, calib_path, err);
    qft_model_free(&m);
    return st;
}
