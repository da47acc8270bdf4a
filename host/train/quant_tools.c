// `qft quant-sites` and `qft calibrate`: build the configured model, apply the quant rules, then list
// the sites or run calibration batches through it and write the calibration state.
#include "quant_tools.h"

#include <string.h>

#include "../backend/backend.h"
#include "../model/model.h"

static const char *role_text(qft_site_role role) {
    static const char *const names[] = {"weight", "input", "output", "probs"};
    return names[role];
}

qft_status qft_quant_sites(const qft_config *cfg, FILE *out, qft_quant_sites_summary *summary, qft_error *err) {
    qft_model model;
    qft_status status = qft_model_create(&model, &cfg->model, 1, cfg->data.max_seq_len, qft_backend_cpu(),
                                         (uint64_t)cfg->run.seed, err);
    if (status) return status;
    status = qft_model_quant_configure(&model, &cfg->quant.rules, err);
    if (status == QFT_OK) {
        const qft_quant_state *q = &model.quant;
        fprintf(out, "%-32s %-7s %-11s %-5s %s\n", "site", "role", "shape", "rule", "format");
        for (int i = 0; i < q->count; i++) {
            const qft_quant_site *site = &q->sites[i];
            char shape[32], rule[16], format[160];
            if (site->role == QFT_SITE_WEIGHT) snprintf(shape, sizeof shape, "%dx%d", site->rows, site->C);
            else snprintf(shape, sizeof shape, "[*,%d]", site->C);
            if (site->rule >= 0) snprintf(rule, sizeof rule, "%d", site->rule + 1);
            else snprintf(rule, sizeof rule, "-");
            qft_quant_format_describe(&site->fmt, format, sizeof format);
            fprintf(out, "%-32s %-7s %-11s %-5s %s\n", site->name, role_text(site->role), shape, rule, format);
        }
        summary->sites = q->count;
        summary->enabled = q->enabled_count;
    }
    qft_model_free(&model);
    return status;
}
