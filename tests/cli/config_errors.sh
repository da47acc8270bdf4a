#!/usr/bin/env bash
# Config and command-line errors: every bad key, type, range, YAML syntax or override is one stderr
# line naming the key and where it came from, exit 1, and an "ok": false JSON line on stdout.
source "$(dirname "$0")/lib.sh" "$@"
cd "$WORK" || exit 1

# yaml NAME TEXT: writes $WORK/NAME.yaml (printf escapes allowed in TEXT).
# shellcheck disable=SC2059  # the text is a printf format on purpose
yaml() { printf -- "$2" >"$WORK/$1.yaml"; }

# --- YAML files -------------------------------------------------------------------------------
yaml unknown 'run:\n  seed: 3\ntrain:\n  lr: 0.1\n  bogus: 3\n'
qft_run config --config unknown.yaml
expect_error "unknown nested key" config 1 "train.bogus" "unknown.yaml:5"

yaml unknown_section 'run:\n  seed: 3\nfoo: 1\n'
qft_run config --config unknown_section.yaml
expect_error "unknown top-level key" config 1 "foo" "unknown_section.yaml:3"

yaml unknown_dotted 'train.lr: 0.1\nmodel.hidden_sise: 32\n'
qft_run config --config unknown_dotted.yaml
expect_error "unknown dotted key" config 1 "model.hidden_sise" "unknown_dotted.yaml:2"

yaml wrong_type 'train:\n  lr: fast\n'
qft_run config --config wrong_type.yaml
expect_error "string for a number" config 1 "train.lr" "wrong_type.yaml:2" "fast"

yaml fraction 'train:\n  steps: 1.5\n'
qft_run config --config fraction.yaml
expect_error "fraction for an integer" config 1 "train.steps" "fraction.yaml:2" "1.5"

yaml bad_bool 'data:\n  shuffle: maybe\n'
qft_run config --config bad_bool.yaml
expect_error "word for a boolean" config 1 "data.shuffle" "bad_bool.yaml:2" "maybe"

yaml seq_value 'train:\n  lr: [1, 2]\n'
qft_run config --config seq_value.yaml
expect_error "sequence for a number" config 1 "train.lr" "seq_value.yaml:2"

yaml section_scalar 'train: 3\n'
qft_run config --config section_scalar.yaml
expect_error "scalar for a section" config 1 "train" "section_scalar.yaml:1"

yaml bad_enum 'model:\n  type: gpt\n'
qft_run config --config bad_enum.yaml
expect_error "value outside an enum" config 1 "model.type" "bad_enum.yaml:2" "gpt"

yaml range 'model:\n  hidden_size: 32\n  dropout: 0.95\n'
qft_run config --config range.yaml
expect_error "out of range float" config 1 "model.dropout" "range.yaml:3" "0.95"

yaml range_int 'data:\n  batch_size: -4\n'
qft_run config --config range_int.yaml
expect_error "out of range integer" config 1 "data.batch_size" "range_int.yaml:2"

yaml overflow 'train:\n  steps: 99999999999999999999999\n'
qft_run config --config overflow.yaml
expect_error "integer overflow" config 1 "train.steps" "overflow.yaml:2"

yaml duplicate 'train:\n  lr: 0.1\n  lr: 0.2\n'
qft_run config --config duplicate.yaml
expect_error "duplicate key" config 1 "train.lr" "duplicate.yaml:3"

yaml syntax 'train:\n  lr: [1, 2\n  steps: {\n'
qft_run config --config syntax.yaml
expect_error "broken YAML (unclosed flow sequence)" config 1 "syntax.yaml:" "YAML"

yaml tabs 'train:\n\tlr: 1\n'
qft_run config --config tabs.yaml
expect_error "broken YAML (tab indentation)" config 1 "tabs.yaml:2"

yaml indent 'train:\n  lr: 1\n bad: 2\n'
qft_run config --config indent.yaml
expect_error "broken YAML (bad indentation)" config 1 "indent.yaml:"

yaml top_seq '- a\n- b\n'
qft_run config --config top_seq.yaml
expect_error "top level is a sequence" config 1 "top_seq.yaml:1"

printf '\xff\xfe\x00\x01garbage' >"$WORK/binary.yaml"
qft_run config --config binary.yaml
expect_error "binary garbage as YAML" config 1 "binary.yaml"

qft_run config --config "$WORK/does_not_exist.yaml"
expect_error "missing config file" config 1 "does_not_exist.yaml"

qft_run config --config "$WORK"
expect_error "directory as config file" config 1 "$WORK"

qft_run config --config
expect_error "--config without a file name" config 1 "--config"

yaml too_long "run:\n  name: $(head -c 600 /dev/zero | tr '\0' a)\n"
qft_run config --config too_long.yaml
expect_error "string longer than the limit" config 1 "run.name" "too_long.yaml:2"

yaml cross 'model:\n  hidden_size: 30\n  num_heads: 4\n'
qft_run config --config cross.yaml
expect_error "hidden_size not a multiple of num_heads" config 1 "model.hidden_size" "model.num_heads"

yaml empty ''
qft_run config --config empty.yaml
check "an empty YAML file gives the defaults (exit 0)" test "$RC" -eq 0

# --- overrides ----------------------------------------------------------------------------------
qft_run config train.lr=abc
expect_error "override train.lr=abc" config 1 "train.lr=abc" "abc"

qft_run config nokey=1
expect_error "override of an unknown key" config 1 "nokey"

qft_run config train.bogus=1
expect_error "override of an unknown nested key" config 1 "train.bogus"

qft_run config train.lr
expect_error "override without '='" config 1 "train.lr"

qft_run config =1
expect_error "override with an empty key" config 1 "=1"

qft_run config train.lr=
expect_error "override with an empty value" config 1 "train.lr"

qft_run config model.dropout=1.5
expect_error "override out of range" config 1 "model.dropout" "1.5"

qft_run config train.steps=-1
expect_error "override of a negative step count" config 1 "train.steps"

qft_run config train=1
expect_error "override of a whole section" config 1 "train"

qft_run config train.lr=nan
expect_error "override with NaN" config 1 "train.lr"

qft_run config run.name=a/b
expect_error "run.name with a slash" config 1 "run.name"

qft_run train "${TINY[@]}" model.bogus=1
expect_error "train rejects a bad override" train 1 "model.bogus"
check "a rejected train creates no run directory" test ! -e "$WORK/runs"

qft_run eval "${TINY[@]}" train.lr=abc
expect_error "eval rejects a bad override" eval 1 "train.lr"

# --- commands -----------------------------------------------------------------------------------
qft_run frobnicate
if [ "$RC" -eq 2 ] && grep -qF "frobnicate" "$ERR" && [ ! -s "$OUT" ]; then
    pass "unknown command exits 2 naming it: $(head -n 1 "$ERR")"
else
    fail "unknown command: exit $RC (expected 2), stderr should name 'frobnicate'"
    show_last
fi
qft_run
check "no command exits 2" test "$RC" -eq 2
qft_run --help
check "--help exits 0 with usage on stdout" test "$RC" -eq 0 -a -s "$OUT"

# --- qft config round trip ----------------------------------------------------------------------
qft_run config train.lr=0.123456789012 "run.name='a \"b\": #c \\d é'" "run.dir=/tmp/x y" train.weight_decay=1e-300 \
    model.layer_norm_eps=1e-12 train.adam_eps=3.0000000000000004e-8 data.shuffle=off "eval.checkpoint=\"a\\tb\""
cp "$OUT" resolved1.yaml
check "qft config exits 0" test "$RC" -eq 0
qft_run config --config resolved1.yaml
cp "$OUT" resolved2.yaml
check "qft config output fed back with --config gives identical output" cmp -s resolved1.yaml resolved2.yaml
check "qft config keeps 12 significant digits (train.lr)" grep -qE '^ +lr: 0\.123456789012$' resolved1.yaml
check "qft config keeps the odd string (run.name)" grep -qF 'name: "a \"b\": #c \\d é"' resolved1.yaml
qft_run config
cp "$OUT" defaults.yaml
qft_run config --config defaults.yaml
check "the default config round-trips too" cmp -s defaults.yaml "$OUT"

echo "# keep me" >appended.yaml
"$QFT" config >>appended.yaml 2>/dev/null
check "qft config >> FILE appends (does not truncate what FILE held)" \
    grep -qx '# keep me' appended.yaml

# --- config-docs --------------------------------------------------------------------------------
qft_run config-docs
check "qft config-docs exits 0" test "$RC" -eq 0
if [ ! -f "$REPO_DIR/configs/README.md" ]; then
    fail "configs/README.md does not exist (commit the output of 'qft config-docs' there)"
elif cmp -s "$OUT" "$REPO_DIR/configs/README.md"; then
    pass "qft config-docs output equals configs/README.md"
else
    fail "qft config-docs output differs from configs/README.md (regenerate it: qft config-docs > configs/README.md)"
    diff "$OUT" "$REPO_DIR/configs/README.md" | head -n 10 | sed 's/^/#   /'
fi

finish
