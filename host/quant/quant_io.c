// Quantizer state <-> safetensors: one scale and zero-point vector per enabled site (and its channel
// group map), with the site's format in the metadata so a file never silently meets other rules.
#include "quant_io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void qft_quant_io_free(qft_quant_io_export *ex) {
    free(ex->tensors);
    free(ex->metadata);
    free(ex->strings);
    free(ex->storage);
    free(ex->shapes);
    memset(ex, 0, sizeof *ex);
}

enum { NAME_CAP = 160, FORMAT_CAP = 200 };

static int has_map(const qft_quant_site *site) { return site->layout.axis == QFT_FQ_COLUMN_MAP; }

qft_status qft_quant_io_collect(const qft_quant_state *st, const char *prefix, qft_quant_io_export *out,
                                qft_error *err) {
    memset(out, 0, sizeof *out);
    int tensors = 0;
    size_t floats = 0;
    for (int i = 0; i < st->count; i++) {
        const qft_quant_site *site = &st->sites[i];
        if (!site->fmt.enabled) continue;
        tensors += 2 + has_map(site);
        floats += 2 * (size_t)site->n_params + (has_map(site) ? (size_t)site->C : 0);
    }
    int sites = tensors;  // an upper bound on the enabled sites, for metadata slots
    out->tensors = calloc((size_t)tensors + 1, sizeof *out->tensors);
    out->metadata = calloc(2 * (size_t)sites + 1, sizeof *out->metadata);
    out->strings = calloc((size_t)tensors + (size_t)sites + 1, NAME_CAP + FORMAT_CAP);
    out->storage = calloc(floats + 1, sizeof(float));
    out->shapes = calloc((size_t)tensors + 1, sizeof(int64_t));
    if (!out->tensors || !out->metadata || !out->strings || !out->storage || !out->shapes) {
        qft_quant_io_free(out);
        return qft_fail(err, QFT_ERR_OOM, "out of memory collecting quantizer state");
    }
    char *text = out->strings;
    float *values = out->storage;
    int t = 0, m = 0;
    for (int i = 0; i < st->count; i++) {
        const qft_quant_site *site = &st->sites[i];
        if (!site->fmt.enabled) continue;
        static const char *const suffixes[] = {"scale", "zero_point", "column_group"};
        for (int k = 0; k < 2 + has_map(site); k++) {
            qft_write_tensor *w = &out->tensors[t];
            snprintf(text, NAME_CAP, "%s%s.%s", prefix, site->name, suffixes[k]);
            w->name = text;
            text += NAME_CAP;
            w->ndim = 1;
            out->shapes[t] = k < 2 ? site->n_params : site->C;
            w->shape = &out->shapes[t];
            if (k < 2) {
                w->dtype = QFT_DTYPE_F32;
                st->be->copy_to_host(values, k == 0 ? site->scale : site->zero_point,
                                     (size_t)site->n_params * sizeof(float));
            } else {
                w->dtype = QFT_DTYPE_I32;
                st->be->copy_to_host(values, site->column_group, (size_t)site->C * sizeof(int32_t));
            }
            w->data = values;
            values += out->shapes[t];
            t++;
        }
        snprintf(text, NAME_CAP, "qft.format.%s%s", prefix, site->name);
        out->metadata[m++] = text;
        text += NAME_CAP;
        qft_quant_format_describe(&site->fmt, text, FORMAT_CAP);
        out->metadata[m++] = text;
        text += FORMAT_CAP;
    }
    out->count = t;
    return QFT_OK;
}

qft_status qft_quant_io_save(const qft_quant_state *st, const char *path, const char *const *extra_metadata,
                             qft_error *err) {
    qft_quant_io_export ex;
    qft_status status = qft_quant_io_collect(st, "", &ex, err);
    if (status) return status;
    int own = 0, extra = 0;
    while (ex.metadata[own]) own++;
    while (extra_metadata && extra_metadata[extra]) extra++;
    const char **kv = calloc((size_t)own + (size_t)extra + 1, sizeof *kv);
    if (!kv) {
        qft_quant_io_free(&ex);
        return qft_fail(err, QFT_ERR_OOM, "out of memory writing %s", path);
    }
    memcpy(kv, ex.metadata, (size_t)own * sizeof *kv);
    if (extra) memcpy(kv + own, extra_metadata, (size_t)extra * sizeof *kv);
    status = qft_safetensors_write(path, ex.tensors, ex.count, kv, err);
    free(kv);
    qft_quant_io_free(&ex);
    return status;
}

int qft_quant_io_has_state(const qft_quant_state *st, const qft_safetensors *file, const char *prefix) {
    for (int i = 0; i < st->count; i++) {
        if (!st->sites[i].fmt.enabled) continue;
        char name[NAME_CAP];
        snprintf(name, sizeof name, "qft.format.%s%s", prefix, st->sites[i].name);
        if (qft_safetensors_metadata(file, name)) return 1;
    }
    return 0;
}

qft_status qft_quant_io_load(qft_quant_state *st, const qft_safetensors *file, const char *prefix, qft_error *err) {
    for (int i = 0; i < st->count; i++) {
        qft_quant_site *site = &st->sites[i];
        if (!site->fmt.enabled) continue;
        char name[NAME_CAP], format[FORMAT_CAP];
        snprintf(name, sizeof name, "qft.format.%s%s", prefix, site->name);
        qft_quant_format_describe(&site->fmt, format, sizeof format);
        const char *recorded = qft_safetensors_metadata(file, name);
        if (!recorded)
            return qft_fail(err, QFT_ERR_SHAPE, "%s: no quantizer state for site %s (calibrate with these rules first)",
                            file->path, site->name);
        if (strcmp(recorded, format) != 0)
            return qft_fail(err, QFT_ERR_SHAPE, "%s: site %s was calibrated as \"%s\", but the rules now give \"%s\"",
                            file->path, site->name, recorded, format);
        static const char *const suffixes[] = {"scale", "zero_point", "column_group"};
        for (int k = 0; k < 2 + has_map(site); k++) {
            const qft_tensor_info *t;
            int64_t n = k < 2 ? site->n_params : site->C;
            snprintf(name, sizeof name, "%s%s.%s", prefix, site->name, suffixes[k]);
            qft_status status = qft_safetensors_expect(file, name, 1, &n, &t, err);
            if (status) return status;
            if (k < 2) {
                float values[n];
                status = qft_safetensors_read_f32(file, t, values, err);
                if (status) return status;
                // LSQ+ learns its offset as a real number (the forward rounds it); others hold integers.
                int real_zero = site->fmt.learn == QFT_LEARN_LSQ_PLUS;
                for (int64_t j = 0; j < n; j++)
                    if (k == 0 ? !(values[j] > 0.0f && values[j] < INFINITY)
                               : !isfinite(values[j]) || (!real_zero && values[j] != rintf(values[j])))
                        return qft_fail(err, QFT_ERR_INVALID, "%s: %s[%lld] = %g is not a valid %s", file->path, name,
                                        (long long)j, values[j], k == 0 ? "scale (finite, > 0)" : "integer zero point");
                st->be->copy_to_device(k == 0 ? site->scale : site->zero_point, values, (size_t)n * sizeof(float));
            } else {
                int32_t groups[n];
                status = qft_safetensors_read_i32(file, t, groups, err);
                if (status) return status;
                for (int64_t j = 0; j < n; j++)
                    if (groups[j] < 0 || groups[j] >= site->n_params)
                        return qft_fail(err, QFT_ERR_INVALID, "%s: %s[%lld] = %d is outside 0..%d", file->path, name,
                                        (long long)j, groups[j], site->n_params - 1);
                st->be->copy_to_device(site->column_group, groups, (size_t)n * sizeof(int32_t));
            }
        }
        site->calibrated = 1;
    }
    return QFT_OK;
}

qft_status qft_quant_io_load_path(qft_quant_state *st, const char *path, const char *prefix, qft_error *err) {
    qft_safetensors file;
    qft_status status = qft_safetensors_open(&file, path, err);
    if (status) return status;
    status = qft_quant_io_load(st, &file, prefix, err);
    qft_safetensors_close(&file);
    return status;
}
