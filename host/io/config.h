// Run configuration: the typed struct every command reads, filled from defaults, a YAML file and
// `key.path=value` overrides, validated against one schema table (which also documents every key).
#ifndef QFT_IO_CONFIG_H
#define QFT_IO_CONFIG_H

#include <stdio.h>

#include "../core/status.h"
#include "../quant/format.h"

#define QFT_STR_MAX 512

// A short list of numbers, e.g. one value per image channel. YAML gives it as a number (a list of one)
// or a sequence; values past `count` are zero, so equal lists compare equal byte for byte.
#define QFT_REAL_LIST_MAX 3
typedef struct {
    int count;
    double values[QFT_REAL_LIST_MAX];
} qft_real_list;

typedef struct {
    char name[QFT_STR_MAX];      // run.name: the run directory is <run.dir>/<run.name>
    char dir[QFT_STR_MAX];       // run.dir
    long seed;                   // run.seed
    int threads;                 // run.threads (0 = all cores)
} qft_run_config;

typedef struct {
    char type[32];               // model.type: vit | deit | bert
    int hidden_size;             // model.hidden_size
    int num_layers;              // model.num_layers
    int num_heads;               // model.num_heads
    int intermediate_size;       // model.intermediate_size
    char hidden_act[32];         // model.hidden_act: gelu (erf) | gelu_tanh
    double layer_norm_eps;       // model.layer_norm_eps
    double dropout;              // model.dropout (hidden dropout, 0..0.9)
    int num_labels;              // model.num_labels (1 = regression for bert)
    // vision
    int image_size;              // model.image_size
    int patch_size;              // model.patch_size
    int num_channels;            // model.num_channels
    // text
    int vocab_size;              // model.vocab_size
    int max_position_embeddings; // model.max_position_embeddings
    int type_vocab_size;         // model.type_vocab_size
    int pooler;                  // model.pooler (bool)
    char init_from[QFT_STR_MAX]; // model.init_from: safetensors to import ("" = random init)
    char hf_config[QFT_STR_MAX]; // model.hf_config: Hugging Face config.json giving the architecture
    int ignore_mismatched_sizes; // model.ignore_mismatched_sizes (bool): re-init heads of another shape
    double init_std;             // model.init_std
} qft_model_config;

typedef struct {
    char dataset[32];            // data.dataset: fashion_mnist | synthetic_text | glue | imagefolder
    char path[QFT_STR_MAX];      // data.path ("" = the Debian dataset-fashion-mnist location; glue: GLUE root)
    char task[16];               // data.task: GLUE task (cola | sst2 | mrpc | stsb | qqp | mnli | qnli | rte | wnli)
    char vocab[QFT_STR_MAX];     // data.vocab: WordPiece vocab.txt (glue)
    int do_lower_case;           // data.do_lower_case (bool): uncased WordPiece (glue)
    int batch_size;              // data.batch_size
    int eval_batch_size;         // data.eval_batch_size
    int max_seq_len;             // data.max_seq_len
    qft_real_list normalize_mean; // data.normalize_mean: 1 value (every channel) or one per channel
    qft_real_list normalize_std;  // data.normalize_std: the same
    int workers;                 // data.workers: imagefolder decoding threads
    char interpolation[16];      // data.interpolation: bilinear | bicubic
    double crop_ratio;           // data.crop_ratio: imagefolder eval resize = round(image_size / ratio)
    int shuffle;                 // data.shuffle (bool)
    long train_limit;            // data.train_limit (0 = all examples)
    long eval_limit;             // data.eval_limit (0 = all examples)
    long validation_size;        // data.validation_size: examples held out of the training split (0 = none)
} qft_data_config;

typedef struct {
    int epochs;                  // train.epochs (used when train.steps == 0)
    long steps;                  // train.steps (0 = derive from epochs)
    double lr;                   // train.lr
    double min_lr_ratio;         // train.min_lr_ratio: final lr = lr * ratio
    char schedule[32];           // train.schedule: cosine | linear | constant
    long warmup_steps;           // train.warmup_steps
    double weight_decay;         // train.weight_decay
    double beta1;                // train.beta1
    double beta2;                // train.beta2
    double adam_eps;             // train.adam_eps
    double grad_clip;            // train.grad_clip (0 = off)
    int grad_accum;              // train.grad_accum
    double label_smoothing;      // train.label_smoothing
    long log_every;              // train.log_every
    long eval_every;             // train.eval_every (0 = at the end of each epoch)
    long checkpoint_every;       // train.checkpoint_every (0 = only at the end)
    char resume[QFT_STR_MAX];    // train.resume: auto | never | <checkpoint path>
    int freeze_weights;          // train.freeze_weights (bool): only quantizer parameters learn
} qft_train_config;

typedef struct {
    char checkpoint[QFT_STR_MAX]; // eval.checkpoint ("" = latest in the run dir)
    char split[16];               // eval.split: test | validation (data.validation_size held out of train)
} qft_eval_config;

#define QFT_MAX_QUANT_RULES 64
#define QFT_QUANT_PATTERN_MAX 128

// One quant rule: sites whose name matches `pattern` (fnmatch glob: `*` spans dots) take `format`.
typedef struct {
    char pattern[QFT_QUANT_PATTERN_MAX];
    qft_quant_format format;     // format.enabled = 0 for `enable: false`
} qft_quant_rule;

typedef struct {
    int count;
    qft_quant_rule items[QFT_MAX_QUANT_RULES];
} qft_quant_rule_list;

typedef struct {
    qft_quant_rule_list rules;               // quant.rules: first match wins; no match = not quantized
    int calib_batches;                       // quant.calib_batches
    char calibration[QFT_STR_MAX];           // quant.calibration: calibration state for eval
    double scale_lr;                         // quant.scale_lr: peak lr of learnable quantizer parameters
    long freeze_after;                       // quant.freeze_after: optimizer steps after which quantizer
                                             // parameters stop updating (0 = never)
} qft_quant_config;

typedef struct {
    double dampen_lambda;        // oscillation.dampen_lambda: final dampening weight (0 = off)
    double freeze_threshold;     // oscillation.freeze_threshold: final freezing threshold (0 = no freezing)
    double freeze_threshold_start; // oscillation.freeze_threshold_start
    double momentum;             // oscillation.momentum: EMA factor m of the frequency and the code EMA
    double start;                // oscillation.start: fraction of training before dampening/freezing begin
    int max_bits;                // oscillation.max_bits: only weight quantizers with at most these bits
    double bin_reg_lambda;       // oscillation.bin_reg_lambda: final weight of VVTQ's bin regularizer (0 = off)
} qft_oscillation_config;

typedef struct {
    int enabled;                  // kd.enabled (bool)
    double alpha;                 // kd.alpha: weight of the distillation term
    double temperature;           // kd.temperature
    double hidden_weight;         // kd.hidden_weight: weight of the encoder-output MSE (0 = off)
    char teacher[QFT_STR_MAX];    // kd.teacher: FP teacher safetensors ("" = model.init_from)
} qft_kd_config;

typedef struct {
    double lambda;                           // penalty.lambda (0 = off)
    char sites[QFT_STR_MAX];                 // penalty.sites: comma-separated globs over site names
    double k;                                // penalty.k: tau = k * sigma
    double p;                                // penalty.p: exponent
    char mode[32];                           // penalty.mode: sigma | quant_range
    char weighting[32];                      // penalty.weighting: adaptive | uniform
    char normalize[32];                      // penalty.normalize: outliers | elements
    double weight_max;                       // penalty.weight_max: clip of the adaptive weight
    long warmup_steps;                       // penalty.warmup_steps: lambda ramps up linearly
} qft_penalty_config;

typedef struct {
    char kind[32];                           // noise.kind: off | uniform | gaussian | bernoulli | histogram
    char sites[QFT_STR_MAX];                 // noise.sites: comma-separated globs over enabled sites
    double p;                                // noise.p: bernoulli probability of exact quantization
    double amplitude;                        // noise.amplitude: a_site before (or without) adaptation
    long adapt_every;                        // noise.adapt_every (0 = fixed amplitude)
    double amplitude_min, amplitude_max;     // noise.amplitude_min / amplitude_max: clip of a_site
    double anneal;                           // noise.anneal: fraction of training over which noise goes to 0
    char anneal_to[32];                      // noise.anneal_to: quantizer | zero
} qft_noise_config;

typedef struct {
    qft_run_config run;
    qft_model_config model;
    qft_data_config data;
    qft_train_config train;
    qft_eval_config eval;
    qft_quant_config quant;
    qft_oscillation_config oscillation;
    qft_kd_config kd;
    qft_penalty_config penalty;
    qft_noise_config noise;
    char source_path[QFT_STR_MAX]; // the YAML file the config came from (for messages)
} qft_config;

// Fills every field with its documented default.
void qft_config_defaults(qft_config *cfg);

// Reads a YAML file over the current values. Unknown keys, wrong types and out-of-range values are
// errors naming the key and file:line. Nested mappings map to dotted keys (train: {lr: 1e-3} == train.lr).
qft_status qft_config_load_file(qft_config *cfg, const char *path, qft_error *err);

// Parses the same YAML from memory (name is used in messages); used by tests and the fuzzer.
qft_status qft_config_load_string(qft_config *cfg, const char *yaml, size_t len, const char *name,
                                  qft_error *err);

// Applies one `key.path=value` override (value parsed as one YAML node: a scalar, or a flow sequence
// for list keys). Errors name the override.
qft_status qft_config_override(qft_config *cfg, const char *assignment, qft_error *err);

// Cross-field checks (e.g. hidden_size % num_heads == 0, image_size % patch_size == 0).
qft_status qft_config_validate(const qft_config *cfg, qft_error *err);

// Writes the fully resolved config as YAML (every key, grouped by section).
qft_status qft_config_write(const qft_config *cfg, const char *path, qft_error *err);

// The same YAML to an open stream (e.g. stdout for `qft config`: reopening /dev/stdout with "w"
// would truncate a file that stdout appends to). Does not close `out`; fails if a write failed.
qft_status qft_config_write_stream(const qft_config *cfg, FILE *out, qft_error *err);

// Writes the Markdown reference of every key (name, type, default, range, meaning): configs/README.md.
void qft_config_write_docs(FILE *out);

#endif
