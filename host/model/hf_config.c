// Hugging Face config.json -> qft_model_config.
#include "hf_config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Integer key: absent -> fallback (or an error if fallback < 0); present must be a positive integer.
static qft_status get_int(const cJSON *root, const char *name, const char *key, int fallback, int *out,
                          qft_error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!item || cJSON_IsNull(item)) {
        if (fallback < 0) return qft_fail(err, QFT_ERR_INVALID, "%s: missing key '%s'", name, key);
        *out = fallback;
        return QFT_OK;
    }
    double v = cJSON_IsNumber(item) ? item->valuedouble : NAN;
    if (!(v >= 1.0 && v <= 1e9) || v != floor(v))
        return qft_fail(err, QFT_ERR_INVALID, "%s: key '%s' must be a positive integer", name, key);
    *out = (int)v;
    return QFT_OK;
}

static qft_status get_double(const cJSON *root, const char *name, const char *key, double fallback,
                             double lo, double hi, double *out, qft_error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!item || cJSON_IsNull(item)) {
        *out = fallback;
        return QFT_OK;
    }
    double v = cJSON_IsNumber(item) ? item->valuedouble : NAN;
    if (!(v >= lo && v <= hi))
        return qft_fail(err, QFT_ERR_INVALID, "%s: key '%s' must be a number in [%g, %g]", name, key, lo, hi);
    *out = v;
    return QFT_OK;
}

static qft_status parse_root(const cJSON *root, const char *name, qft_model_config *out, qft_error *err) {
    if (!cJSON_IsObject(root)) return qft_fail(err, QFT_ERR_PARSE, "%s: not a JSON object", name);
    qft_config defaults;
    qft_config_defaults(&defaults);
    qft_model_config mc = defaults.model;

    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!type) return qft_fail(err, QFT_ERR_INVALID, "%s: missing key 'model_type'", name);
    const char *t = cJSON_GetStringValue(type);
    if (!t || (strcmp(t, "vit") != 0 && strcmp(t, "deit") != 0 && strcmp(t, "bert") != 0))
        return qft_fail(err, QFT_ERR_INVALID, "%s: key 'model_type' must be vit, deit or bert (got %s)", name,
                        t ? t : "a non-string");
    snprintf(mc.type, sizeof mc.type, "%s", t);
    int vision = strcmp(t, "bert") != 0;

    qft_status s = QFT_OK;
    if (s == QFT_OK) s = get_int(root, name, "hidden_size", -1, &mc.hidden_size, err);
    if (s == QFT_OK) s = get_int(root, name, "num_hidden_layers", -1, &mc.num_layers, err);
    if (s == QFT_OK) s = get_int(root, name, "num_attention_heads", -1, &mc.num_heads, err);
    if (s == QFT_OK) s = get_int(root, name, "intermediate_size", -1, &mc.intermediate_size, err);
    if (s == QFT_OK) s = get_double(root, name, "layer_norm_eps", 1e-12, 1e-30, 1.0, &mc.layer_norm_eps, err);
    // HF defaults: ViTConfig / DeiTConfig hidden_dropout_prob 0.0, BertConfig 0.1.
    if (s == QFT_OK) s = get_double(root, name, "hidden_dropout_prob", vision ? 0.0 : 0.1, 0.0, 0.9, &mc.dropout, err);
    if (s != QFT_OK) return s;
    if (mc.hidden_size % mc.num_heads != 0)
        return qft_fail(err, QFT_ERR_INVALID, "%s: key 'hidden_size' (%d) is not a multiple of 'num_attention_heads' (%d)",
                        name, mc.hidden_size, mc.num_heads);

    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    const char *a = act ? cJSON_GetStringValue(act) : "gelu";
    if (a && strcmp(a, "gelu") == 0) {
        snprintf(mc.hidden_act, sizeof mc.hidden_act, "gelu");
    } else if (a && (strcmp(a, "gelu_new") == 0 || strcmp(a, "gelu_pytorch_tanh") == 0)) {
        snprintf(mc.hidden_act, sizeof mc.hidden_act, "gelu_tanh");
    } else {
        return qft_fail(err, QFT_ERR_INVALID,
                        "%s: key 'hidden_act' must be gelu, gelu_new or gelu_pytorch_tanh (got %s)", name,
                        a ? a : "a non-string");
    }

    if (vision) {
        if (s == QFT_OK) s = get_int(root, name, "image_size", 224, &mc.image_size, err);
        if (s == QFT_OK) s = get_int(root, name, "patch_size", 16, &mc.patch_size, err);
        if (s == QFT_OK) s = get_int(root, name, "num_channels", 3, &mc.num_channels, err);
        if (s != QFT_OK) return s;
        if (mc.image_size % mc.patch_size != 0)
            return qft_fail(err, QFT_ERR_INVALID, "%s: key 'image_size' (%d) is not a multiple of 'patch_size' (%d)",
                            name, mc.image_size, mc.patch_size);
    } else {
        if (s == QFT_OK) s = get_int(root, name, "vocab_size", 30522, &mc.vocab_size, err);
        if (s == QFT_OK) s = get_int(root, name, "max_position_embeddings", 512, &mc.max_position_embeddings, err);
        if (s == QFT_OK) s = get_int(root, name, "type_vocab_size", 2, &mc.type_vocab_size, err);
        if (s != QFT_OK) return s;
        mc.pooler = 1;
    }

    // num_labels: HF derives it from id2label when present (PretrainedConfig).
    const cJSON *id2label = cJSON_GetObjectItemCaseSensitive(root, "id2label");
    if (id2label && !cJSON_IsNull(id2label)) {
        if (!cJSON_IsObject(id2label) || cJSON_GetArraySize(id2label) < 1)
            return qft_fail(err, QFT_ERR_INVALID, "%s: key 'id2label' must be a non-empty object", name);
        mc.num_labels = cJSON_GetArraySize(id2label);
        int stated = 0;
        s = get_int(root, name, "num_labels", mc.num_labels, &stated, err);
        if (s != QFT_OK) return s;
        if (stated != mc.num_labels)
            return qft_fail(err, QFT_ERR_INVALID, "%s: key 'num_labels' (%d) disagrees with the size of 'id2label' (%d)",
                            name, stated, mc.num_labels);
    } else {
        s = get_int(root, name, "num_labels", 2, &mc.num_labels, err);
        if (s != QFT_OK) return s;
    }
    *out = mc;
    return QFT_OK;
}

qft_status qft_hf_config_parse(const char *json, const char *name, qft_model_config *out, qft_error *err) {
    cJSON *root = cJSON_Parse(json);
    if (!root) return qft_fail(err, QFT_ERR_PARSE, "%s: malformed JSON", name);
    qft_status s = parse_root(root, name, out, err);
    cJSON_Delete(root);
    return s;
}

qft_status qft_hf_config_load(const char *path, qft_model_config *out, qft_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return qft_fail(err, QFT_ERR_IO, "%s: cannot open", path);
    char *text = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || size > (64L << 20) || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return qft_fail(err, QFT_ERR_IO, "%s: cannot read (or larger than 64 MiB)", path);
    }
    text = malloc((size_t)size + 1);
    if (!text) {
        fclose(f);
        return qft_fail(err, QFT_ERR_OOM, "%s: out of memory", path);
    }
    size_t got = fread(text, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) {
        free(text);
        return qft_fail(err, QFT_ERR_IO, "%s: short read", path);
    }
    text[size] = '\0';
    qft_status s = qft_hf_config_parse(text, path, out, err);
    free(text);
    return s;
}
