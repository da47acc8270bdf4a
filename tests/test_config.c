// Tests of the run configuration: defaults, YAML and override parsing, every error class (message
// names the key and file:line), validation, write->load round trip, docs, and hostile input.
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "io/config.h"
#include "test_util.h"

static int contains(const char *haystack, const char *needle) { return strstr(haystack, needle) != NULL; }

static int one_line(const char *message) { return message[0] != '\0' && !strchr(message, '\n') && !strchr(message, '\r'); }

static qft_status load(qft_config *cfg, const char *yaml, qft_error *err) {
    qft_config_defaults(cfg);
    memset(err, 0, sizeof *err);
    return qft_config_load_string(cfg, yaml, strlen(yaml), "configs/x.yaml", err);
}

// Loading `yaml` fails and the one-line message contains every non-NULL needle.
static void expect_error(const char *yaml, const char *needle1, const char *needle2, int line) {
    qft_config cfg, before;
    qft_error err;
    qft_config_defaults(&before);
    qft_status status = load(&cfg, yaml, &err);
    CHECK(status != QFT_OK, "line %d: expected an error for %s", line, yaml);
    CHECK(one_line(err.message), "line %d: message not one line: %s", line, err.message);
    if (needle1) CHECK(contains(err.message, needle1), "line %d: '%s' not in: %s", line, needle1, err.message);
    if (needle2) CHECK(contains(err.message, needle2), "line %d: '%s' not in: %s", line, needle2, err.message);
    CHECK(memcmp(&cfg, &before, sizeof cfg) == 0, "line %d: a failed load changed the config", line);
}

static void expect_override_error(const char *assignment, const char *needle1, const char *needle2, int line) {
    qft_config cfg, before;
    qft_error err = {{0}};
    qft_config_defaults(&cfg);
    before = cfg;
    qft_status status = qft_config_override(&cfg, assignment, &err);
    CHECK(status != QFT_OK, "line %d: expected an error for override %s", line, assignment);
    CHECK(one_line(err.message), "line %d: message not one line: %s", line, err.message);
    if (needle1) CHECK(contains(err.message, needle1), "line %d: '%s' not in: %s", line, needle1, err.message);
    if (needle2) CHECK(contains(err.message, needle2), "line %d: '%s' not in: %s", line, needle2, err.message);
    CHECK(memcmp(&cfg, &before, sizeof cfg) == 0, "line %d: a failed override changed the config", line);
}

static void test_defaults(void) {
    qft_config cfg;
    qft_error err = {{0}};
    qft_config_defaults(&cfg);
    CHECK(!strcmp(cfg.run.name, "vit_fmnist") && !strcmp(cfg.run.dir, "runs"), "run defaults");
    CHECK(cfg.run.seed == 1337 && cfg.run.threads == 0, "seed/threads");
    CHECK(!strcmp(cfg.model.type, "vit") && cfg.model.hidden_size == 64 && cfg.model.num_layers == 4 &&
              cfg.model.num_heads == 4 && cfg.model.intermediate_size == 256,
          "model shape defaults");
    CHECK(!strcmp(cfg.model.hidden_act, "gelu") && cfg.model.layer_norm_eps == 1e-6 && cfg.model.dropout == 0.0,
          "model act/eps/dropout");
    CHECK(cfg.model.num_labels == 10 && cfg.model.image_size == 28 && cfg.model.patch_size == 7 &&
              cfg.model.num_channels == 1,
          "vision defaults");
    CHECK(cfg.model.vocab_size == 30522 && cfg.model.max_position_embeddings == 512 && cfg.model.type_vocab_size == 2 &&
              cfg.model.pooler == 1 && cfg.model.init_from[0] == '\0' && cfg.model.init_std == 0.02,
          "text defaults");
    CHECK(!strcmp(cfg.data.dataset, "fashion_mnist") && cfg.data.path[0] == '\0' && cfg.data.batch_size == 128 &&
              cfg.data.eval_batch_size == 500 && cfg.data.max_seq_len == 128,
          "data defaults");
    CHECK(cfg.data.normalize_mean.count == 1 && cfg.data.normalize_mean.values[0] == 0.2860 &&
              cfg.data.normalize_std.count == 1 && cfg.data.normalize_std.values[0] == 0.3530 && cfg.data.shuffle == 1 &&
              cfg.data.train_limit == 0 && cfg.data.eval_limit == 0,
          "data preprocessing defaults");
    CHECK(cfg.train.epochs == 15 && cfg.train.steps == 0 && cfg.train.lr == 2e-3 && cfg.train.min_lr_ratio == 0.0 &&
              !strcmp(cfg.train.schedule, "cosine") && cfg.train.warmup_steps == 200,
          "train schedule defaults");
    CHECK(cfg.train.weight_decay == 0.05 && cfg.train.beta1 == 0.9 && cfg.train.beta2 == 0.999 &&
              cfg.train.adam_eps == 1e-8 && cfg.train.grad_clip == 1.0 && cfg.train.grad_accum == 1 &&
              cfg.train.label_smoothing == 0.0,
          "optimizer defaults");
    CHECK(cfg.train.log_every == 50 && cfg.train.eval_every == 0 && cfg.train.checkpoint_every == 0 &&
              !strcmp(cfg.train.resume, "auto") && cfg.eval.checkpoint[0] == '\0',
          "logging/resume/eval defaults");
    CHECK(qft_config_validate(&cfg, &err) == QFT_OK, "defaults validate: %s", err.message);
}

static void test_nested_and_dotted(void) {
    qft_config cfg;
    qft_error err = {{0}};
    const char *yaml = "# a comment\n"
                       "run:\n"
                       "  name: my_run   # trailing comment\n"
                       "  seed: 7\n"
                       "model.hidden_size: 128\n"
                       "model:\n"
                       "  num_heads: 8\n"
                       "  type: deit\n"
                       "  pooler: off\n"
                       "data: {batch_size: 64, shuffle: No, path: '/tmp/a b'}\n"
                       "train:\n"
                       "  lr: 3e-4\n"
                       "  schedule: linear\n"
                       "  steps: +1000\n"
                       "  grad_clip: 0\n"
                       "  resume: never\n"
                       "eval:\n"
                       "  checkpoint: \"runs/x/ckpt \\\"1\\\".bin\"\n";
    CHECK(load(&cfg, yaml, &err) == QFT_OK, "nested load: %s", err.message);
    CHECK(!strcmp(cfg.run.name, "my_run") && cfg.run.seed == 7, "run section: %s %ld", cfg.run.name, cfg.run.seed);
    CHECK(cfg.model.hidden_size == 128 && cfg.model.num_heads == 8 && !strcmp(cfg.model.type, "deit"), "model");
    CHECK(cfg.model.pooler == 0, "pooler off");
    CHECK(cfg.data.batch_size == 64 && cfg.data.shuffle == 0 && !strcmp(cfg.data.path, "/tmp/a b"), "flow mapping");
    CHECK(cfg.train.lr == 3e-4 && !strcmp(cfg.train.schedule, "linear") && cfg.train.steps == 1000, "train");
    CHECK(cfg.train.grad_clip == 0.0 && !strcmp(cfg.train.resume, "never"), "grad_clip int literal as float");
    CHECK(!strcmp(cfg.eval.checkpoint, "runs/x/ckpt \"1\".bin"), "escaped string: %s", cfg.eval.checkpoint);
    CHECK(cfg.model.num_layers == 4 && cfg.train.beta1 == 0.9, "untouched keys keep defaults");
    CHECK(!strcmp(cfg.source_path, "configs/x.yaml"), "source_path: %s", cfg.source_path);

    CHECK(load(&cfg, "train:\r\n  lr: 0.5\r\n  beta1: 0.8\r\n", &err) == QFT_OK && cfg.train.lr == 0.5 &&
              cfg.train.beta1 == 0.8,
          "CRLF line ends: %s", err.message);
    expect_error("train:\r\n  lr: x\r\n", "configs/x.yaml:2: train.lr", NULL, __LINE__);
    // An empty section (every key commented out) and null strings.
    CHECK(load(&cfg, "eval:\nmodel:\n  init_from: ~\nrun:\n  dir: runs2\n", &err) == QFT_OK, "empty section: %s",
          err.message);
    CHECK(cfg.model.init_from[0] == '\0' && !strcmp(cfg.run.dir, "runs2"), "null string is empty");
    // A load applies over the current values, not over the defaults.
    qft_config_defaults(&cfg);
    cfg.train.epochs = 99;
    CHECK(qft_config_load_string(&cfg, "train.lr: 0.5", 13, "a", &err) == QFT_OK && cfg.train.epochs == 99 &&
              cfg.train.lr == 0.5,
          "load keeps earlier values");
}

static void test_bools_and_numbers(void) {
    static const char *const truthy[] = {"true", "True", "TRUE", "yes", "Yes", "on", "ON", "1"};
    static const char *const falsy[] = {"false", "False", "no", "NO", "off", "Off", "0"};
    qft_config cfg;
    qft_error err = {{0}};
    char yaml[64];
    for (size_t i = 0; i < sizeof truthy / sizeof truthy[0]; i++) {
        snprintf(yaml, sizeof yaml, "data.shuffle: %s\n", truthy[i]);
        qft_config_defaults(&cfg);
        cfg.data.shuffle = 0;
        CHECK(qft_config_load_string(&cfg, yaml, strlen(yaml), "b.yaml", &err) == QFT_OK && cfg.data.shuffle == 1,
              "bool %s", truthy[i]);
    }
    for (size_t i = 0; i < sizeof falsy / sizeof falsy[0]; i++) {
        snprintf(yaml, sizeof yaml, "data.shuffle: %s\n", falsy[i]);
        CHECK(load(&cfg, yaml, &err) == QFT_OK && cfg.data.shuffle == 0, "bool %s", falsy[i]);
    }
    CHECK(load(&cfg, "train.steps: 9223372036854775807\n", &err) == QFT_OK && cfg.train.steps == 9223372036854775807L,
          "LONG_MAX steps");
    CHECK(load(&cfg, "model.hidden_size: 65536\nmodel.num_heads: 1024\n", &err) == QFT_OK &&
              cfg.model.hidden_size == 65536,
          "int at max");
    CHECK(load(&cfg, "train.lr: 10\ntrain.beta1: 0\n", &err) == QFT_OK && cfg.train.lr == 10.0, "closed bounds");
    CHECK(load(&cfg, "train.lr: 1.5e-3\n", &err) == QFT_OK && cfg.train.lr == 1.5e-3, "exponent");
    CHECK(load(&cfg, "train.lr: \"0.25\"\n", &err) == QFT_OK && cfg.train.lr == 0.25, "quoted number");
    CHECK(load(&cfg, "data.normalize_mean: -3.5\n", &err) == QFT_OK && cfg.data.normalize_mean.count == 1 &&
              cfg.data.normalize_mean.values[0] == -3.5,
          "negative");
}

static void test_errors(void) {
    // Wrong type, with key and file:line.
    expect_error("train:\n  lr: fast\n", "configs/x.yaml:2: train.lr: expected a number, got \"fast\"", NULL, __LINE__);
    expect_error("train:\n  lr:\n", "configs/x.yaml:2: train.lr: expected a number", "empty", __LINE__);
    expect_error("data.shuffle: maybe\n", "configs/x.yaml:1: data.shuffle: expected a boolean", "\"maybe\"", __LINE__);
    // Unknown keys, with a suggestion when one is close.
    expect_error("run:\n  seed: 1\ntrain:\n  lrr: 1\n", "configs/x.yaml:4: unknown key 'train.lrr'",
                 "did you mean 'train.lr'", __LINE__);
    expect_error("train.lrr: 1\n", "configs/x.yaml:1: unknown key 'train.lrr'", "'train.lr'", __LINE__);
    expect_error("trian:\n  lr: 1\n", "configs/x.yaml:1: unknown key 'trian'", "did you mean 'train'", __LINE__);
    expect_error("lr: 1\n", "unknown key 'lr'", "did you mean 'train.lr'", __LINE__);
    expect_error("train.hidden_size: 1\n", "unknown key 'train.hidden_size'", "'model.hidden_size'", __LINE__);
    expect_error("zzzzzz: 1\n", "configs/x.yaml:1: unknown key 'zzzzzz'", NULL, __LINE__);
    expect_error("model:\n  train:\n    lr: 1\n", "configs/x.yaml:2: unknown key 'model.train'", NULL, __LINE__);
    expect_error("train:\n  lr:\n    value: 1\n", "configs/x.yaml:3: train.lr: expected a number, got a mapping", NULL,
                 __LINE__);
    // Range.
    expect_error("train:\n  lr: -1\n", "configs/x.yaml:2: train.lr = -1: out of range [0, 10]", NULL, __LINE__);
    expect_error("train.beta2: 1\n", "train.beta2 = 1: out of range [0, 1)", NULL, __LINE__);
    expect_error("model.layer_norm_eps: 0\n", "model.layer_norm_eps = 0: out of range (0, 1)", NULL, __LINE__);
    expect_error("data.normalize_std: 0\n", "data.normalize_std = 0: out of range", "> 0", __LINE__);
    expect_error("data.normalize_std: inf\n", "data.normalize_std", "finite", __LINE__);
    expect_error("train.lr: nan\n", "train.lr", "out of range", __LINE__);
    expect_error("train.steps: -5\n", "configs/x.yaml:1: train.steps = -5: out of range", ">= 0", __LINE__);
    expect_error("model.num_heads: 0\n", "model.num_heads = 0: out of range [1, 1024]", NULL, __LINE__);
    // Enum.
    expect_error("model:\n  type: vitt\n", "configs/x.yaml:2: model.type: 'vitt' is not one of vit|deit|bert", NULL,
                 __LINE__);
    expect_error("train.schedule: Cosine\n", "train.schedule: 'Cosine' is not one of cosine|linear|constant", NULL,
                 __LINE__);
    // Ints reject fractions; overflow is out of range, both of the int and of the long fields.
    expect_error("model.hidden_size: 64.5\n", "configs/x.yaml:1: model.hidden_size: expected an integer, got \"64.5\"",
                 NULL, __LINE__);
    expect_error("model.hidden_size: 1e3\n", "model.hidden_size: expected an integer", NULL, __LINE__);
    expect_error("model.hidden_size: 3000000000\n", "model.hidden_size = 3000000000: out of range", NULL, __LINE__);
    expect_error("run.threads: 99999999999999999999999\n", "run.threads = 99999999999999999999999: out of range",
                 NULL, __LINE__);
    expect_error("train.steps: 9223372036854775808\n", "train.steps = 9223372036854775808: out of range", NULL,
                 __LINE__);
    expect_error("train.epochs: '-'\n", "train.epochs: expected an integer", NULL, __LINE__);
    // Sequences or mappings where a scalar is expected, and scalars where a section is.
    expect_error("train:\n  lr: [1, 2]\n", "configs/x.yaml:2: train.lr: expected a number, got a sequence", NULL,
                 __LINE__);
    expect_error("model:\n  type:\n    - vit\n", "configs/x.yaml:3: model.type", "sequence", __LINE__);
    expect_error("train: 5\n", "configs/x.yaml:1: 'train' is a section", "got \"5\"", __LINE__);
    expect_error("train: [lr]\n", "configs/x.yaml:1: 'train' is a section", "sequence", __LINE__);
    expect_error("- a\n- b\n", "configs/x.yaml:1: the top level must be a mapping", NULL, __LINE__);
    expect_error("just a string\n", "configs/x.yaml:1: the top level must be a mapping", NULL, __LINE__);
    expect_error("? [a, b]\n: 1\n", "configs/x.yaml:1: a key must be a plain name", NULL, __LINE__);
    expect_error("train:\n  lr: &x 0.1\n  weight_decay: *x\n", "configs/x.yaml:3: train.weight_decay", "alias",
                 __LINE__);
    // Duplicates, within a section, across dotted and nested spellings, and of whole sections.
    expect_error("train:\n  lr: 1\n  lr: 2\n", "configs/x.yaml:3: duplicate key 'train.lr'", "line 2", __LINE__);
    expect_error("train.lr: 1\ntrain:\n  lr: 2\n", "configs/x.yaml:3: duplicate key 'train.lr'", NULL, __LINE__);
    expect_error("train:\n  lr: 1\ntrain:\n  beta1: 0.5\n", "configs/x.yaml:3: duplicate key 'train'", NULL, __LINE__);
    // Strings: too long, NUL bytes.
    {
        char yaml[1200] = "run:\n  name: ";
        size_t n = strlen(yaml);
        memset(yaml + n, 'a', 600);
        yaml[n + 600] = '\n';
        yaml[n + 601] = '\0';
        expect_error(yaml, "configs/x.yaml:2: run.name: string of 600 bytes", "511", __LINE__);
        memset(yaml, 0, sizeof yaml);
        strcpy(yaml, "model.type: ");
        memset(yaml + strlen(yaml), 'v', 40);
        expect_error(yaml, "model.type", "is not one of", __LINE__);
    }
    expect_error("run:\n  name: \"a\\0b\"\n", "configs/x.yaml:2: run.name", "NUL", __LINE__);
    // More than one document.
    expect_error("train.lr: 1\n---\ntrain.beta1: 0.5\n", "configs/x.yaml:3:", "more than one YAML document", __LINE__);
    // Broken syntax: file:line:col, reported even when a semantic error comes first.
    expect_error("train: [1, 2\n", "configs/x.yaml:2:1: YAML syntax error: ", NULL, __LINE__);
    expect_error("train:\n  lr: 1\n   beta1: 2\n", "configs/x.yaml:3:", "YAML syntax error: mapping values are not allowed",
                 __LINE__);
    expect_error("bogus: 1\nrun: {name: \"x\n", "configs/x.yaml:", "YAML syntax error", __LINE__);
    expect_error("train:\n  lr: 1\n\x01\n", "configs/x.yaml:3:1: YAML syntax error: control characters", NULL,
                 __LINE__);
    expect_error("run.name: \"\xff\xfe\"\n", "configs/x.yaml:1:", "YAML syntax error", __LINE__);
    expect_error("\t- x: [\n", "configs/x.yaml:1:", "YAML syntax error", __LINE__);
}

static void test_empty(void) {
    static const char *const empties[] = {"", "\n\n", "# only a comment\n", "---\n", "---\n...\n", "~\n", "\xef\xbb\xbf"};
    qft_config defaults;
    qft_config_defaults(&defaults);
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        qft_config cfg;
        qft_error err = {{0}};
        CHECK(load(&cfg, empties[i], &err) == QFT_OK, "empty input %zu: %s", i, err.message);
        memcpy(cfg.source_path, defaults.source_path, sizeof cfg.source_path);
        CHECK(memcmp(&cfg, &defaults, sizeof cfg) == 0, "empty input %zu gives the defaults", i);
    }
    qft_config cfg;
    qft_error err = {{0}};
    qft_config_defaults(&cfg);
    CHECK(qft_config_load_string(&cfg, NULL, 0, NULL, &err) == QFT_OK, "NULL, 0 is empty: %s", err.message);
}

static void test_overrides(void) {
    qft_config cfg;
    qft_error err = {{0}};
    qft_config_defaults(&cfg);
    CHECK(qft_config_override(&cfg, "train.lr=3e-4", &err) == QFT_OK && cfg.train.lr == 3e-4, "lr: %s", err.message);
    CHECK(qft_config_override(&cfg, "model.pooler=off", &err) == QFT_OK && cfg.model.pooler == 0, "bool override");
    CHECK(qft_config_override(&cfg, "run.name='my run'", &err) == QFT_OK && !strcmp(cfg.run.name, "my run"),
          "quoted string override: %s", cfg.run.name);
    CHECK(qft_config_override(&cfg, " model.type = bert ", &err) == QFT_OK && !strcmp(cfg.model.type, "bert"),
          "spaces around key and value");
    CHECK(qft_config_override(&cfg, "data.path=/data/a=b", &err) == QFT_OK && !strcmp(cfg.data.path, "/data/a=b"),
          "value containing '='");
    CHECK(qft_config_override(&cfg, "model.init_from=", &err) == QFT_OK && cfg.model.init_from[0] == '\0',
          "empty value clears a string");
    CHECK(qft_config_override(&cfg, "train.steps=500", &err) == QFT_OK && cfg.train.steps == 500, "long override");
    CHECK(qft_config_override(&cfg, "run.name=exp#1", &err) == QFT_OK && !strcmp(cfg.run.name, "exp#1"),
          "'#' inside a word is not a comment");

    expect_override_error("train.lr=abc", "override 'train.lr=abc': expected a number", NULL, __LINE__);
    expect_override_error("train.lr", "override 'train.lr'", "'='", __LINE__);
    expect_override_error("train.lrr=1", "override 'train.lrr=1': unknown key 'train.lrr'", "'train.lr'", __LINE__);
    expect_override_error("train=1", "override 'train=1'", "section", __LINE__);
    expect_override_error("=1", "override '=1'", "key", __LINE__);
    expect_override_error("train.lr=-1", "override 'train.lr=-1'", "train.lr = -1: out of range [0, 10]", __LINE__);
    expect_override_error("train.lr=[1]", "override 'train.lr=[1]'", "sequence", __LINE__);
    expect_override_error("run.name=a: b", "override 'run.name=a: b'", "mapping", __LINE__);
    expect_override_error("train.lr=\"1", "override 'train.lr=\"1'", "YAML syntax error", __LINE__);
    expect_override_error("model.type=vitt", "override 'model.type=vitt'", "'vitt' is not one of vit|deit|bert",
                          __LINE__);
    expect_override_error("model.hidden_size=1.5", "override 'model.hidden_size=1.5'", "expected an integer", __LINE__);
    expect_override_error("data.shuffle=2", "override 'data.shuffle=2'", "expected a boolean", __LINE__);
    expect_override_error("train.lr=1\n---\n2", "override", NULL, __LINE__);
    expect_override_error("train.lr=", "override 'train.lr='", "expected a number", __LINE__);
    {
        char assignment[800] = "run.name=";
        memset(assignment + strlen(assignment), 'x', 700);
        expect_override_error(assignment, "override 'run.name=xxx", "longer than", __LINE__);
    }
}

static void test_validate(void) {
    qft_config cfg;
    qft_error err = {{0}};
    qft_config_defaults(&cfg);
    cfg.model.hidden_size = 66;
    CHECK(qft_config_validate(&cfg, &err) != QFT_OK && contains(err.message, "model.hidden_size") &&
              contains(err.message, "model.num_heads"),
          "hidden %% heads: %s", err.message);
    qft_config_defaults(&cfg);
    cfg.model.patch_size = 5;
    CHECK(qft_config_validate(&cfg, &err) != QFT_OK && contains(err.message, "model.image_size") &&
              contains(err.message, "model.patch_size"),
          "image %% patch: %s", err.message);
    qft_config_defaults(&cfg);
    cfg.data.batch_size = 0;
    CHECK(qft_config_validate(&cfg, &err) != QFT_OK && contains(err.message, "data.batch_size"), "batch: %s",
          err.message);
    qft_config_defaults(&cfg);
    cfg.train.lr = -1;
    CHECK(qft_config_validate(&cfg, &err) != QFT_OK && contains(err.message, "train.lr = -1: out of range [0, 10]"),
          "range rechecked: %s", err.message);
    qft_config_defaults(&cfg);
    strcpy(cfg.model.type, "gpt");
    CHECK(qft_config_validate(&cfg, &err) != QFT_OK && contains(err.message, "model.type"), "enum: %s", err.message);
    qft_config_defaults(&cfg);
    strcpy(cfg.model.type, "bert");
    CHECK(qft_config_validate(&cfg, &err) != QFT_OK && contains(err.message, "data.dataset") &&
              contains(err.message, "model.type"),
          "bert on images: %s", err.message);
    strcpy(cfg.data.dataset, "synthetic_text");
    cfg.model.patch_size = 5; // vision keys do not matter for bert
    CHECK(qft_config_validate(&cfg, &err) == QFT_OK, "bert config: %s", err.message);
    cfg.data.max_seq_len = 1024;
    CHECK(qft_config_validate(&cfg, &err) != QFT_OK && contains(err.message, "data.max_seq_len") &&
              contains(err.message, "model.max_position_embeddings"),
          "seq len: %s", err.message);
    qft_config_defaults(&cfg);
    strcpy(cfg.run.name, "../x");
    CHECK(qft_config_validate(&cfg, &err) != QFT_OK && contains(err.message, "run.name"), "name: %s", err.message);
    strcpy(cfg.run.name, "a/\nb"); // found by the fuzzer: messages stay one line
    CHECK(qft_config_validate(&cfg, &err) != QFT_OK && one_line(err.message), "name: %s", err.message);
    qft_config_defaults(&cfg);
    cfg.run.name[0] = '\0';
    CHECK(qft_config_validate(&cfg, &err) != QFT_OK && contains(err.message, "run.name"), "empty name");
    qft_config_defaults(&cfg);
    cfg.train.resume[0] = '\0';
    CHECK(qft_config_validate(&cfg, &err) != QFT_OK && contains(err.message, "train.resume"), "resume");
    qft_config_defaults(&cfg);
    cfg.data.shuffle = 2;
    CHECK(qft_config_validate(&cfg, &err) != QFT_OK && contains(err.message, "data.shuffle"), "bool value");
}

static int temp_path(char *path, size_t cap) {
    snprintf(path, cap, "/tmp/qft_test_config_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) return 0;
    close(fd);
    return 1;
}

static void check_round_trip(const qft_config *cfg, const char *what) {
    char path[64];
    qft_error err = {{0}};
    if (!temp_path(path, sizeof path)) {
        CHECK(0, "mkstemp failed");
        return;
    }
    CHECK(qft_config_write(cfg, path, &err) == QFT_OK, "%s: write: %s", what, err.message);
    qft_config loaded;
    qft_config_defaults(&loaded);
    loaded.train.epochs = 12345; // every key must be written, so this gets overwritten
    CHECK(qft_config_load_file(&loaded, path, &err) == QFT_OK, "%s: reload: %s", what, err.message);
    CHECK(!strcmp(loaded.source_path, path), "%s: source_path is the file", what);
    memcpy(loaded.source_path, cfg->source_path, sizeof loaded.source_path);
    CHECK(memcmp(&loaded, cfg, sizeof loaded) == 0, "%s: write->load is not identical", what);
    unlink(path);
}

static void test_round_trip(void) {
    qft_config cfg;
    qft_error err = {{0}};
    qft_config_defaults(&cfg);
    check_round_trip(&cfg, "defaults");

    const char *yaml = "run: {name: \"wéird \\\"name\\\" \\\\ #x: y\", dir: '/tmp/q ft', seed: 9223372036854775807}\n"
                       "model: {type: bert, hidden_size: 384, num_heads: 12, pooler: no, layer_norm_eps: 1e-12,\n"
                       "        init_from: \"a\\tb\\nc\\x01\\u0085\\u2028\\uFEFF\\U0001F600 ~ null\"}\n"
                       "data: {dataset: synthetic_text, normalize_mean: -0.0, normalize_std: 1.7976931348623157e308}\n"
                       "train: {lr: 0.30000000000000004, beta2: 0.99999999999999989, adam_eps: 5e-324,\n"
                       "        resume: 'true', steps: 0, min_lr_ratio: 1}\n"
                       "eval: {checkpoint: \"  leading and trailing  \"}\n";
    CHECK(load(&cfg, yaml, &err) == QFT_OK, "round-trip source loads: %s", err.message);
    CHECK(!strcmp(cfg.train.resume, "true") && cfg.model.pooler == 0 && cfg.train.adam_eps > 0, "tricky values");
    CHECK(!strcmp(cfg.model.init_from, "a\tb\nc\x01\xc2\x85\xe2\x80\xa8\xef\xbb\xbf\xf0\x9f\x98\x80 ~ null"),
          "escapes decoded: %s", cfg.model.init_from);
    memset(cfg.source_path, 0, sizeof cfg.source_path);
    check_round_trip(&cfg, "tricky values");

    // Strings at the length limit.
    qft_config_defaults(&cfg);
    memset(cfg.run.dir, 'd', sizeof cfg.run.dir - 1);
    memset(cfg.data.path, '"', sizeof cfg.data.path - 1);
    check_round_trip(&cfg, "strings at the limit");

    // A sweep of doubles.
    uint64_t state = 12345;
    for (int i = 0; i < 50; i++) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        qft_config_defaults(&cfg);
        cfg.train.lr = (double)(state >> 11) / 9007199254740992.0 * 10.0;
        cfg.data.normalize_mean.values[0] = ((double)(state >> 11) - 4503599627370496.0) * 1e-300;
        if (i % 2) {  // every other config carries per-channel lists
            cfg.data.normalize_mean.count = cfg.data.normalize_std.count = 3;
            cfg.data.normalize_mean.values[2] = -(double)(state >> 30) / 3.0;
            cfg.data.normalize_std.values[1] = (double)(state >> 20) * 1e-9;
            cfg.data.normalize_std.values[2] = 0.225;
        }
        cfg.model.init_std = (double)(state >> 40) / 16777216.0;
        char what[32];
        snprintf(what, sizeof what, "doubles %d", i);
        check_round_trip(&cfg, what);
    }

    // The stream writer gives the same bytes as the file writer.
    {
        char path[64];
        if (temp_path(path, sizeof path)) {
            CHECK(qft_config_write(&cfg, path, &err) == QFT_OK, "write");
            char *text = NULL;
            size_t size = 0;
            FILE *memory = open_memstream(&text, &size);
            CHECK(qft_config_write_stream(&cfg, memory, &err) == QFT_OK, "write_stream: %s", err.message);
            fclose(memory);
            static char from_file[1 << 16];
            FILE *file = fopen(path, "rb");
            size_t n = file ? fread(from_file, 1, sizeof from_file - 1, file) : 0;
            if (file) fclose(file);
            from_file[n] = '\0';
            CHECK(text && n == size && !memcmp(text, from_file, n), "stream and file output differ");
            free(text);
            unlink(path);
        }
    }
    CHECK(qft_config_write(&cfg, "/nonexistent-dir/x.yaml", &err) == QFT_ERR_IO &&
              contains(err.message, "/nonexistent-dir/x.yaml"),
          "write error names the path: %s", err.message);
}

static void test_files(void) {
    qft_config cfg;
    qft_error err = {{0}};
    qft_config_defaults(&cfg);
    CHECK(qft_config_load_file(&cfg, "/nonexistent/config.yaml", &err) == QFT_ERR_IO &&
              contains(err.message, "/nonexistent/config.yaml"),
          "missing file: %s", err.message);
    CHECK(qft_config_load_file(&cfg, "/tmp", &err) != QFT_OK && contains(err.message, "/tmp"), "directory: %s",
          err.message);
    char path[64];
    if (!temp_path(path, sizeof path)) return;
    FILE *file = fopen(path, "w");
    fputs("run:\n  seed: 3\n\ntrain:\n  lr: fast\n", file);
    fclose(file);
    char expected[128];
    snprintf(expected, sizeof expected, "%s:5: train.lr: expected a number, got \"fast\"", path);
    CHECK(qft_config_load_file(&cfg, path, &err) == QFT_ERR_INVALID && contains(err.message, expected),
          "file error: %s", err.message);
    CHECK(cfg.run.seed == 1337, "failed load leaves the config untouched");
    unlink(path);
}

static char *docs_text(void) {
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    qft_config_write_docs(out);
    fclose(out);
    return text;
}

static void test_docs(void) {
    char *first = docs_text(), *second = docs_text();
    CHECK(first && second && !strcmp(first, second), "docs are deterministic");
    static const char *const keys[] = {"`run.name`", "`model.type`", "`model.init_std`", "`data.eval_limit`",
                                       "`train.lr`", "`train.resume`", "`eval.checkpoint`"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        CHECK(contains(first, keys[i]), "docs mention %s", keys[i]);
    CHECK(contains(first, "| `train.lr` | float | `0.002` | [0, 10] |"), "lr row");
    CHECK(contains(first, "`vit`, `deit`, `bert`"), "enum choices");
    CHECK(contains(first, "| `data.normalize_std` | float or list | `0.353` | 1 or 3 values, each > 0 |"),
          "list row");
    // Every row of a table has as many columns as its header: five for keys, three for rule fields
    // (a '|' in a doc string would break the table).
    int rows = 0, header_bars = 0;
    for (char *line = first; line && *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > 0 && line[0] == '|') {
            int bars = 0;
            for (size_t i = 0; i < len; i++) bars += line[i] == '|';
            if (!header_bars) {
                header_bars = bars;
                CHECK(bars == 6 || bars == 4, "table header with %d bars: %.*s", bars, (int)len, line);
            }
            CHECK(bars == header_bars, "table row with %d bars: %.*s", bars, (int)len, line);
            rows++;
        } else {
            header_bars = 0;
        }
        line = end ? end + 1 : NULL;
    }
    CHECK(contains(first, "| `granularity` | enum |"), "rule fields documented");
    CHECK(rows >= 60, "docs have a row per key (%d rows)", rows);

    // configs/README.md is the generator's output, byte for byte (tests run from the repo root).
    // QFT_REGENERATE_DOCS=1 ./build/test_config rewrites it first.
    if (getenv("QFT_REGENERATE_DOCS") && first) {
        FILE *out = fopen("configs/README.md", "wb");
        CHECK(out != NULL, "cannot write configs/README.md");
        if (out) fputs(first, out), fclose(out);
    }
    FILE *readme = fopen("configs/README.md", "rb");
    CHECK(readme != NULL, "configs/README.md exists (run from the repo root)");
    if (readme) {
        static char committed[1 << 16];
        size_t n = fread(committed, 1, sizeof committed - 1, readme);
        committed[n] = '\0';
        fclose(readme);
        CHECK(first && !strcmp(committed, first), "configs/README.md is out of date: regenerate it from qft_config_write_docs");
    }
    free(first);
    free(second);
}

// Hostile input must give an error (or a clean load), never a crash, a hang or a leak.
static void test_hostile(void) {
    qft_config cfg;
    qft_error err = {{0}};
    size_t big = 4u << 20;
    char *buffer = malloc(big + 64);
    if (!buffer) {
        CHECK(0, "malloc");
        return;
    }
    // Deep nesting: flow sequences, flow mappings, block mappings.
    memset(buffer, '[', 200000);
    CHECK(qft_config_load_string(&cfg, buffer, 200000, "deep", &err) == QFT_ERR_PARSE &&
              contains(err.message, "deep:1: YAML nested deeper than"),
          "deep [ : %s", err.message);
    size_t n = 0;
    for (int i = 0; i < 100000; i++) n += (size_t)sprintf(buffer + n, "{a:");
    CHECK(qft_config_load_string(&cfg, buffer, n, "deep", &err) != QFT_OK && one_line(err.message), "deep {a:");
    n = 0;
    for (int i = 0; i < 2000; i++) {
        memset(buffer + n, ' ', (size_t)i);
        n += (size_t)i;
        n += (size_t)sprintf(buffer + n, "train:\n");
    }
    CHECK(qft_config_load_string(&cfg, buffer, n, "deep", &err) != QFT_OK && contains(err.message, "nested deeper"),
          "deep block: %s", err.message);
    n = (size_t)sprintf(buffer, "train:\n  lr: ");
    for (int i = 0; i < 100000; i++) n += (size_t)sprintf(buffer + n, "[");
    CHECK(qft_config_load_string(&cfg, buffer, n, "deep", &err) != QFT_OK && one_line(err.message), "deep value");

    // Huge scalars: a 4 MiB string value, key, and number.
    n = (size_t)sprintf(buffer, "run:\n  name: ");
    memset(buffer + n, 'x', big - n);
    CHECK(qft_config_load_string(&cfg, buffer, big, "huge", &err) == QFT_ERR_INVALID &&
              contains(err.message, "huge:2: run.name: string of") && strlen(err.message) < 200,
          "huge string: %s", err.message);
    memset(buffer, 'k', big);
    memcpy(buffer + big, ": 1\n", 4);
    CHECK(qft_config_load_string(&cfg, buffer, big + 4, "huge", &err) != QFT_OK && one_line(err.message), "huge key");
    n = (size_t)sprintf(buffer, "train.steps: ");
    memset(buffer + n, '9', big - n);
    CHECK(qft_config_load_string(&cfg, buffer, big, "huge", &err) != QFT_OK && contains(err.message, "out of range"),
          "huge integer");
    n = (size_t)sprintf(buffer, "train.lr: 0.");
    memset(buffer + n, '1', big - n);
    CHECK(qft_config_load_string(&cfg, buffer, big, "huge", &err) != QFT_OK && contains(err.message, "train.lr"),
          "huge real");
    // Many keys: a valid mapping repeated (duplicates) and many unknowns.
    n = 0;
    for (int i = 0; i < 100000; i++) n += (size_t)sprintf(buffer + n, "train.lr: 1\n");
    CHECK(qft_config_load_string(&cfg, buffer, n, "many", &err) != QFT_OK && contains(err.message, "duplicate"),
          "many duplicates");

    // Binary garbage, embedded NULs, UTF-16 and bad UTF-8: any outcome but a crash, and one-line messages.
    uint64_t state = 42;
    for (int round = 0; round < 2000; round++) {
        size_t len = (size_t)(round * 7 % 700);
        for (size_t i = 0; i < len; i++) {
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            unsigned char byte = (unsigned char)(state >> 56);
            // Bias towards YAML punctuation so the parser gets past the first byte sometimes.
            static const char yaml_bytes[] = "train:lr{}[]-,&*!|>'\"%@` \n\t#?.0123456789e";
            buffer[i] = (round & 1) ? (char)byte : yaml_bytes[byte % (sizeof yaml_bytes - 1)];
        }
        qft_config_defaults(&cfg);
        memset(&err, 0, sizeof err);
        qft_status status = qft_config_load_string(&cfg, buffer, len, "garbage", &err);
        if (status != QFT_OK) CHECK(one_line(err.message), "garbage message is one line: %s", err.message);
        buffer[len < 200 ? len : 200] = '\0';
        if (qft_config_override(&cfg, buffer, &err) != QFT_OK)
            CHECK(one_line(err.message), "garbage override message is one line: %s", err.message);
    }
    static const char nul_input[] = "train:\n  lr: 1\0\n  beta1: 0.5\n";
    CHECK(qft_config_load_string(&cfg, nul_input, sizeof nul_input - 1, "nul", &err) != QFT_OK &&
              one_line(err.message),
          "NUL byte in the stream: %s", err.message);
    static const char utf16[] = "\xff\xfet\0r\0a\0i\0n\0.\0l\0r\0:\0 \0\x31\0\n\0";
    qft_config_defaults(&cfg);
    CHECK(qft_config_load_string(&cfg, utf16, sizeof utf16 - 1, "utf16", &err) == QFT_OK && cfg.train.lr == 1.0,
          "UTF-16LE with BOM is YAML too: %s", err.message);
    free(buffer);
}

// data.dataset glue and its keys: defaults, loading, enum errors, cross-field validation, presets.
static void test_glue(void) {
    qft_config cfg;
    qft_error err = {{0}};
    qft_config_defaults(&cfg);
    CHECK(cfg.data.task[0] == '\0' && cfg.data.vocab[0] == '\0' && cfg.data.do_lower_case == 1, "glue defaults");
    const char *yaml = "model: {type: bert, num_labels: 2}\n"
                       "data: {dataset: glue, task: rte, path: /g, vocab: /v/vocab.txt, do_lower_case: false}\n";
    CHECK(load(&cfg, yaml, &err) == QFT_OK && !strcmp(cfg.data.dataset, "glue") && !strcmp(cfg.data.task, "rte") &&
              !strcmp(cfg.data.path, "/g") && !strcmp(cfg.data.vocab, "/v/vocab.txt") && cfg.data.do_lower_case == 0,
          "glue load: %s", err.message);
    CHECK(qft_config_validate(&cfg, &err) == QFT_OK, "glue rte validates: %s", err.message);
    check_round_trip(&cfg, "glue");
    // vocab and path are checked when the data is opened, so presets validate with them empty.
    cfg.data.vocab[0] = '\0';
    cfg.data.path[0] = '\0';
    CHECK(qft_config_validate(&cfg, &err) == QFT_OK, "glue without vocab/path validates: %s", err.message);
    expect_error("data: {task: sst-2}\n", "configs/x.yaml:1: data.task", "'sst-2' is not one of", __LINE__);
    expect_override_error("data.task=RTE", "data.task", "'RTE'", __LINE__);
    expect_error("data: {dataset: imagenet}\n", "data.dataset", "glue", __LINE__);
    expect_error("data: {do_lower_case: sometimes}\n", "data.do_lower_case", "boolean", __LINE__);

    static const struct { const char *task; int labels; } tasks[] = {
        {"cola", 2}, {"sst2", 2}, {"mrpc", 2}, {"stsb", 1}, {"qqp", 2},
        {"mnli", 3}, {"qnli", 2}, {"rte", 2},  {"wnli", 2},
    };
    for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++) {
        char assignment[64];
        qft_config_defaults(&cfg);
        snprintf(assignment, sizeof assignment, "data.task=%s", tasks[i].task);
        CHECK(qft_config_override(&cfg, "model.type=bert", &err) == QFT_OK &&
                  qft_config_override(&cfg, "data.dataset=glue", &err) == QFT_OK &&
                  qft_config_override(&cfg, assignment, &err) == QFT_OK,
              "%s: %s", assignment, err.message);
        cfg.model.num_labels = tasks[i].labels;
        CHECK(qft_config_validate(&cfg, &err) == QFT_OK, "%s with %d labels: %s", tasks[i].task, tasks[i].labels,
              err.message);
        cfg.model.num_labels = tasks[i].labels + 1;
        CHECK(qft_config_validate(&cfg, &err) != QFT_OK && contains(err.message, "model.num_labels") &&
                  contains(err.message, tasks[i].task) && one_line(err.message),
              "%s with wrong num_labels: %s", tasks[i].task, err.message);
        // Each task's preset loads and validates as committed.
        char preset[64];
        snprintf(preset, sizeof preset, "configs/glue/%s.yaml", tasks[i].task);
        qft_config_defaults(&cfg);
        CHECK(qft_config_load_file(&cfg, preset, &err) == QFT_OK && qft_config_validate(&cfg, &err) == QFT_OK &&
                  !strcmp(cfg.data.dataset, "glue") && !strcmp(cfg.data.task, tasks[i].task) &&
                  cfg.model.num_labels == tasks[i].labels,
              "%s: %s", preset, err.message);
    }

    qft_config_defaults(&cfg);
    strcpy(cfg.model.type, "bert");
    strcpy(cfg.data.dataset, "glue");
    cfg.model.num_labels = 2;
    CHECK(qft_config_validate(&cfg, &err) != QFT_OK && contains(err.message, "data.task") &&
              contains(err.message, "required"),
          "glue without a task: %s", err.message);
    strcpy(cfg.data.task, "rte");
    strcpy(cfg.model.type, "vit");
    CHECK(qft_config_validate(&cfg, &err) != QFT_OK && contains(err.message, "data.dataset glue") &&
              contains(err.message, "bert"),
          "glue on vit: %s", err.message);
    qft_config_defaults(&cfg);
    strcpy(cfg.data.task, "bogus");
    CHECK(qft_config_validate(&cfg, &err) != QFT_OK && contains(err.message, "data.task"), "task enum rechecked: %s",
          err.message);
}

// data.dataset imagefolder and its keys: defaults, loading, enum/range errors, validation, the preset.
// data.normalize_mean / normalize_std: a number or a list of 1 or 3 numbers (the generic list key type).
static void test_real_lists(void) {
    qft_config cfg;
    qft_error err = {{0}};
    const char *yaml = "data:\n  normalize_mean: [0.485, 0.456, 0.406]\n  normalize_std:\n    - 0.229\n"
                       "    - 0.224\n    - 0.225\n";
    CHECK(load(&cfg, yaml, &err) == QFT_OK, "ImageNet lists load: %s", err.message);
    const qft_real_list *mean = &cfg.data.normalize_mean, *std = &cfg.data.normalize_std;
    CHECK(mean->count == 3 && mean->values[0] == 0.485 && mean->values[1] == 0.456 && mean->values[2] == 0.406,
          "flow list: %d values", mean->count);
    CHECK(std->count == 3 && std->values[0] == 0.229 && std->values[1] == 0.224 && std->values[2] == 0.225,
          "block list: %d values", std->count);
    check_round_trip(&cfg, "per-channel lists");
    char *text = NULL;
    size_t size = 0;
    FILE *memory = open_memstream(&text, &size);
    CHECK(qft_config_write_stream(&cfg, memory, &err) == QFT_OK, "write: %s", err.message);
    fclose(memory);
    CHECK(text && contains(text, "\n  normalize_mean: [0.485, 0.456, 0.406]\n") &&
              contains(text, "\n  normalize_std: [0.229, 0.224, 0.225]\n"),
          "lists written as flow sequences:\n%s", text ? text : "");
    free(text);
    CHECK(load(&cfg, "data: {normalize_mean: [0.5], normalize_std: 2}\n", &err) == QFT_OK && mean->count == 1 &&
              mean->values[0] == 0.5 && std->count == 1 && std->values[0] == 2.0,
          "a one-item list and a scalar are both one value: %s", err.message);
    check_round_trip(&cfg, "one-value lists");

    // Overrides take the same forms.
    qft_config_defaults(&cfg);
    CHECK(qft_config_override(&cfg, "data.normalize_mean=[0.5,0.25,0.125]", &err) == QFT_OK && mean->count == 3 &&
              mean->values[1] == 0.25 && mean->values[2] == 0.125,
          "list override: %s", err.message);
    CHECK(qft_config_override(&cfg, "data.normalize_mean=0.75", &err) == QFT_OK && mean->count == 1 &&
              mean->values[0] == 0.75 && mean->values[1] == 0 && mean->values[2] == 0,
          "scalar override replaces the list (stale values cleared): %s", err.message);

    // Errors: one line, file:line and the item.
    expect_error("data:\n  normalize_mean: [0.5, 0.5]\n", "configs/x.yaml:2: data.normalize_mean: expected 1 or 3 "
                 "numbers, got 2", NULL, __LINE__);
    expect_error("data.normalize_mean: []\n", "data.normalize_mean: expected 1 or 3 numbers, got 0", NULL, __LINE__);
    expect_error("data.normalize_std: [1, 1, 1, 1]\n", "expected 1 or 3 numbers, got 4", NULL, __LINE__);
    expect_error("data.normalize_mean: [0.5, abc, 0.5]\n",
                 "configs/x.yaml:1: data.normalize_mean[1]: expected a number, got \"abc\"", NULL, __LINE__);
    expect_error("data:\n  normalize_std:\n    - 0.2\n    - 0.2\n    - zero\n",
                 "configs/x.yaml:5: data.normalize_std[2]: expected a number, got \"zero\"", NULL, __LINE__);
    expect_error("data.normalize_mean: [0.5, [1], 0.5]\n", "data.normalize_mean[1]: expected a number, got a sequence",
                 NULL, __LINE__);
    expect_error("data.normalize_std: [0.2, 0, 0.2]\n", "configs/x.yaml:1: data.normalize_std[1] = 0: out of range",
                 "> 0", __LINE__);
    expect_error("data.normalize_std: [0.2, 0.2, inf]\n", "data.normalize_std[2] = inf", "finite", __LINE__);
    expect_error("data.normalize_mean: {r: 0.5}\n", "data.normalize_mean: expected a number or a list of numbers, got "
                 "a mapping", NULL, __LINE__);
    expect_override_error("data.normalize_mean=[1,2]", "override 'data.normalize_mean=[1,2]'",
                          "expected 1 or 3 numbers, got 2", __LINE__);
    expect_override_error("data.normalize_std=[1,x,1]", "data.normalize_std[1]: expected a number", NULL, __LINE__);

    // Validation: a list needs one value per model channel; a struct filled by hand is checked too.
    CHECK(load(&cfg, "data.normalize_mean: [0.485, 0.456, 0.406]\n", &err) == QFT_OK, "load: %s", err.message);
    CHECK(qft_config_validate(&cfg, &err) != QFT_OK && one_line(err.message) &&
              contains(err.message, "data.normalize_mean has 3 values, but model.num_channels is 1"),
          "3 means for 1 channel: %s", err.message);
    cfg.model.num_channels = 3;
    CHECK(qft_config_validate(&cfg, &err) == QFT_OK, "3 means for 3 channels: %s", err.message);
    cfg.data.normalize_std.count = 2;
    CHECK(qft_config_validate(&cfg, &err) != QFT_OK && contains(err.message, "data.normalize_std: 2 values, expected "
                                                                             "1 or 3"),
          "hand-made list of 2: %s", err.message);
    cfg.data.normalize_std = (qft_real_list){3, {0.2, -1, 0.2}};
    CHECK(qft_config_validate(&cfg, &err) != QFT_OK && contains(err.message, "data.normalize_std[1] = -1: out of range"),
          "hand-made negative std: %s", err.message);
}

static void test_imagefolder(void) {
    qft_config cfg;
    qft_error err = {{0}};
    qft_config_defaults(&cfg);
    CHECK(cfg.data.workers == 2 && !strcmp(cfg.data.interpolation, "bilinear") && cfg.data.crop_ratio == 0.875,
          "imagefolder defaults: workers %d, interpolation %s, crop_ratio %g", cfg.data.workers,
          cfg.data.interpolation, cfg.data.crop_ratio);
    const char *yaml = "model: {type: deit, num_channels: 3, image_size: 224, patch_size: 16}\n"
                       "data: {dataset: imagefolder, path: /imagenet, workers: 6, interpolation: bicubic, "
                       "crop_ratio: 0.9}\n";
    CHECK(load(&cfg, yaml, &err) == QFT_OK && !strcmp(cfg.data.dataset, "imagefolder") && cfg.data.workers == 6 &&
              !strcmp(cfg.data.interpolation, "bicubic") && cfg.data.crop_ratio == 0.9,
          "imagefolder load: %s", err.message);
    CHECK(qft_config_validate(&cfg, &err) == QFT_OK, "imagefolder on deit validates: %s", err.message);
    check_round_trip(&cfg, "imagefolder");
    cfg.model.num_channels = 1;
    CHECK(qft_config_validate(&cfg, &err) != QFT_OK && contains(err.message, "num_channels 3") &&
              one_line(err.message),
          "imagefolder with 1 channel: %s", err.message);
    cfg.model.num_channels = 3;
    strcpy(cfg.model.type, "bert");
    CHECK(qft_config_validate(&cfg, &err) != QFT_OK && contains(err.message, "data.dataset imagefolder") &&
              contains(err.message, "vit or deit"),
          "imagefolder on bert: %s", err.message);
    expect_error("data: {workers: 0}\n", "data.workers", "", __LINE__);
    expect_error("data: {interpolation: nearest}\n", "data.interpolation", "'nearest' is not one of", __LINE__);
    expect_error("data: {crop_ratio: 0}\n", "data.crop_ratio", "", __LINE__);
    expect_error("data: {crop_ratio: 1.5}\n", "data.crop_ratio", "", __LINE__);
    qft_config_defaults(&cfg);
    CHECK(qft_config_load_file(&cfg, "configs/vit_imagefolder.yaml", &err) == QFT_OK &&
              qft_config_validate(&cfg, &err) == QFT_OK && !strcmp(cfg.data.dataset, "imagefolder") &&
              cfg.model.hidden_size == 768 && cfg.model.num_labels == 1000 && cfg.model.image_size == 224,
          "configs/vit_imagefolder.yaml: %s", err.message);
}

static void test_quant_rules(void) {
    qft_config cfg;
    qft_error err;
    const char *yaml = "quant:\n"
                       "  rules:\n"
                       "    - pattern: \"*.probs\"\n"
                       "      enable: false\n"
                       "    - {pattern: \"layers.*.fc?.weight\", bits: 4, granularity: channel, learn: lsq}\n"
                       "    - pattern: \"*.input\"\n"
                       "      symmetric: false\n"
                       "      signed: no\n"
                       "      calibrator: percentile\n"
                       "      percentile: 99.9\n"
                       "  calib_batches: 4\n";
    CHECK(load(&cfg, yaml, &err) == QFT_OK, "rules load: %s", err.message);
    const qft_quant_rule_list *r = &cfg.quant.rules;
    CHECK(r->count == 3, "3 rules, got %d", r->count);
    CHECK(!strcmp(r->items[0].pattern, "*.probs") && r->items[0].format.enabled == 0, "rule 1 disabled");
    CHECK(r->items[1].format.bits == 4 && r->items[1].format.granularity == QFT_GRAN_CHANNEL &&
              r->items[1].format.learn == QFT_LEARN_LSQ && r->items[1].format.enabled == 1 &&
              r->items[1].format.calibrator == QFT_CALIB_MINMAX,
          "rule 2 fields (others at defaults)");
    CHECK(!r->items[2].format.symmetric && !r->items[2].format.is_signed && r->items[2].format.percentile == 99.9 &&
              r->items[2].format.calibrator == QFT_CALIB_PERCENTILE && r->items[2].format.bits == 8,
          "rule 3 fields");
    CHECK(cfg.quant.calib_batches == 4, "calib_batches");
    check_round_trip(&cfg, "quant rules");

    // A later file or override replaces the whole list.
    CHECK(qft_config_override(&cfg, "quant.rules=[{pattern: '*', bits: 2}]", &err) == QFT_OK, "override: %s",
          err.message);
    CHECK(cfg.quant.rules.count == 1 && cfg.quant.rules.items[0].format.bits == 2 &&
              cfg.quant.rules.items[1].pattern[0] == '\0',
          "override replaced the list");
    CHECK(qft_config_override(&cfg, "quant.rules=", &err) == QFT_OK && cfg.quant.rules.count == 0,
          "empty value clears the rules");
    check_round_trip(&cfg, "no rules");

    expect_error("quant: {rules: [{pattern: x, bits: 9}]}", "configs/x.yaml:1", "expected an integer in [2, 8]", __LINE__);
    expect_error("quant:\n  rules:\n    - pattern: x\n      bitz: 4\n", "configs/x.yaml:4", "unknown rule field 'bitz'",
                 __LINE__);
    expect_error("quant: {rules: [{bits: 4}]}", "rule 1", "needs a `pattern`", __LINE__);
    expect_error("quant: {rules: [{pattern: x, bits: 4, bits: 5}]}", "'bits' given twice", NULL, __LINE__);
    expect_error("quant: {rules: [x]}", "each rule must be a mapping", NULL, __LINE__);
    expect_error("quant: {rules: x}", "expected a list of rule mappings", NULL, __LINE__);
    expect_error("quant: {rules: [{pattern: x, kind: log2, granularity: channel}]}", "tensor only", NULL, __LINE__);
    expect_error("quant: {rules: [{pattern: x, learn: lsq_plus}]}", "symmetric: false", NULL, __LINE__);
    expect_error("quant: {rules: [{pattern: x, calibrator: best}]}", "one of minmax, ema", NULL, __LINE__);
    expect_error("quant: {rules: [{pattern: x, percentile: 40}]}", "(50, 100]", NULL, __LINE__);
    expect_error("quant: {rules: [{pattern: [x]}]}", "expected a scalar, got a sequence", NULL, __LINE__);
    expect_override_error("quant.rules=[{pattern: x, narrow: true, signed: false}]", "narrow needs a signed grid",
                          NULL, __LINE__);
}

int main(void) {
    test_defaults();
    test_quant_rules();
    test_nested_and_dotted();
    test_bools_and_numbers();
    test_errors();
    test_empty();
    test_overrides();
    test_validate();
    test_round_trip();
    test_files();
    test_glue();
    test_imagefolder();
    test_real_lists();
    test_docs();
    test_hostile();
    QFT_TEST_SUMMARY();
}
