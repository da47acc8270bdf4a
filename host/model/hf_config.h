// Hugging Face config.json -> qft_model_config (ViT, DeiT, BERT).
#ifndef QFT_MODEL_HF_CONFIG_H
#define QFT_MODEL_HF_CONFIG_H

#include "../core/status.h"
#include "../io/config.h"

// Reads an HF config.json (model_type vit | deit | bert) into *out. Fields the file does not set
// take HF's defaults for that model type; fields HF has no notion of (init_from, init_std) take
// qft's defaults. hidden_act: gelu -> gelu, gelu_new / gelu_pytorch_tanh -> gelu_tanh, anything
// else is an error. num_labels is the size of id2label when present, else num_labels, else 2.
// Errors are one line naming the file and the key.
qft_status qft_hf_config_load(const char *path, qft_model_config *out, qft_error *err);

// The same from a JSON string in memory (name is used in messages).
qft_status qft_hf_config_parse(const char *json, const char *name, qft_model_config *out, qft_error *err);

#endif
