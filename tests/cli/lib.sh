# Shared helpers of the tests/cli/*.sh scripts: the qft path, a scratch dir, check counting, and
# running qft with its stdout/stderr/exit code captured. Sourced; run directly it checks itself.
#
#   source "$(dirname "$0")/lib.sh" "$@"     # $1 = path to the qft binary
#   qft_run train "${TINY[@]}" train.steps=2 # sets RC; stdout in $OUT, stderr in $ERR
#   expect_error "what" train 1 "pattern"... # one check line: `qft train` failed cleanly, exit 1
#   finish                                   # prints "N passed, M failed", exits non-zero on failure

set -u

if [ $# -lt 1 ] || [ -z "$1" ]; then
    echo "usage: bash $0 /path/to/qft" >&2
    exit 2
fi
QFT=$1
case $QFT in /*) ;; *) QFT=$PWD/$QFT ;; esac
CLI_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$CLI_DIR/../.." && pwd)
export REPO_DIR
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qft_cli.XXXXXX")
OUT=$WORK/stdout
ERR=$WORK/stderr
RC=0
PASSED=0
FAILED=0
# Two threads: what the tests are sized for, and the same numbers on any machine.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# ctest runs scripts side by side: spinning OpenMP workers on a busy machine make tiny steps
# 25-100x slower (measured: 0.8 ms -> 70 ms a step), so idle workers sleep instead.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
QFT_TIMEOUT=${QFT_TIMEOUT:-120}
FMNIST_DIR=/usr/share/datasets/fashion-mnist

# Background runs still going (a failed signal test) are this shell's jobs: end them, then the files.
cleanup() {
    local pid
    for pid in $(jobs -p); do kill -KILL "$pid" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

# fixtures SUBCOMMAND ARGS...: tests/cli/fixtures.py (bad safetensors and IDX files).
fixtures() { python3 "$CLI_DIR/fixtures.py" "$@"; }

# A ViT small enough that a step takes milliseconds on two cores.
# shellcheck disable=SC2034  # used by the scripts that source this file
TINY=(run.dir="$WORK/runs" model.hidden_size=16 model.num_layers=1 model.num_heads=2 model.intermediate_size=32
      data.train_limit=512 data.eval_limit=256 data.batch_size=32 data.eval_batch_size=128 train.warmup_steps=2
      train.log_every=1)

pass() {
    PASSED=$((PASSED + 1))
    echo "ok   - $*"
}

fail() {
    FAILED=$((FAILED + 1))
    echo "FAIL - $*"
}

# check "description" command...: passes when the command succeeds.
check() {
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}

# Indented copy of the last run's output, for the log of a failed check.
show_last() {
    echo "#   exit code: $RC"
    sed 's/^/#   stderr: /' "$ERR" | head -n 8
    tail -n 3 "$OUT" | sed 's/^/#   stdout: /'
}

# qft_run ARGS...: runs qft under a timeout; RC, $OUT and $ERR hold the result, and J[key] the
# fields of the JSON object on stdout's last line (J is empty when that line is not a JSON object).
declare -A J=()
qft_run() {
    RC=0
    timeout -k 5 "$QFT_TIMEOUT" "$QFT" "$@" >"$OUT" 2>"$ERR" || RC=$?
    parse_json "$OUT"
}

# parse_json FILE: fills J from the last non-empty line of FILE (one python3 start: they are slow).
parse_json() {
    J=()
    local key value
    while IFS=$'\t' read -r key value; do
        J[$key]=$value
    done < <(python3 -S -c '
import json, sys
lines = [l for l in open(sys.argv[1], encoding="utf-8", errors="replace").read().splitlines() if l.strip()]
try:
    obj = json.loads(lines[-1])
except Exception:
    obj = None
if isinstance(obj, dict):
    for k, v in obj.items():
        text = v if isinstance(v, str) else json.dumps(v)
        print(k.replace("\t", " ") + "\t" + text.replace("\t", " ").replace("\n", " "))
' "$1")
}

# json_field NAME: a field of the last parsed JSON line (numbers and true/false as JSON, strings
# bare); <no-json> when there was no JSON object, <missing> when it lacks the field.
json_field() {
    if [ ${#J[@]} -eq 0 ]; then
        echo "<no-json>"
    elif [ -n "${J[$1]+set}" ]; then
        echo "${J[$1]}"
    else
        echo "<missing>"
    fi
}

# The reasons the last run is not a clean one-line failure of `command` with exit code `rc` whose
# message contains every pattern; empty when it is.
error_problems() {
    local command=$1 rc=$2
    shift 2
    local problems="" lines first
    [ "$RC" -eq "$rc" ] || problems+=" exit code $RC, expected $rc;"
    [ "$RC" -lt 124 ] || problems+=" killed by a signal or the timeout (exit $RC);"
    lines=$(grep -c '' "$ERR")
    [ "$lines" -eq 1 ] || problems+=" stderr has $lines lines, expected exactly 1;"
    first=$(head -n 1 "$ERR")
    case $first in "qft $command: error: "*) ;; *) problems+=" stderr does not start with 'qft $command: error: ';" ;; esac
    local p
    for p in "$@"; do
        grep -qF -- "$p" "$ERR" || problems+=" stderr lacks '$p';"
    done
    grep -qiE 'segmentation|core dumped|assert|sanitizer|backtrace|stack trace' "$ERR" && problems+=" stderr shows a crash;"
    [ "$(json_field ok)" = "false" ] || problems+=" last stdout line is not JSON with \"ok\": false;"
    [ "$(json_field command)" = "$command" ] || problems+=" JSON \"command\" is not \"$command\";"
    printf '%s' "$problems"
}

# expect_error "what" COMMAND RC PATTERN...: one check that the last qft_run failed cleanly.
expect_error() {
    local what=$1
    shift
    local problems
    problems=$(error_problems "$@")
    if [ -z "$problems" ]; then
        pass "$what: $(head -n 1 "$ERR")"
    else
        fail "$what:$problems"
        show_last
    fi
}

# expect_ok "what": one check that the last qft_run succeeded with "ok": true.
expect_ok() {
    if [ "$RC" -eq 0 ] && [ "$(json_field ok)" = "true" ]; then
        pass "$1"
    else
        fail "$1: exit $RC, ok=$(json_field ok)"
        show_last
    fi
}

# The tests that train need the Debian Fashion-MNIST files; without them the script says so and
# exits 77 (ctest's conventional skip code) rather than failing on a missing package.
need_fmnist() {
    local f
    for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
        if [ ! -r "$FMNIST_DIR/$f" ]; then
            echo "SKIP - $FMNIST_DIR/$f is missing (apt-get install dataset-fashion-mnist)"
            echo "$PASSED passed, $FAILED failed"
            exit 77
        fi
    done
}

# The tests that write JPEG fixtures need Pillow. Debian's python3-pil serves /usr/bin/python3, which
# need not be the first python3 on PATH: PIL_PYTHON gets the first interpreter that has it; without
# one the script says so and exits 77 (skipped).
need_pillow() {
    local py
    for py in /usr/bin/python3 python3; do
        if "$py" -c 'import PIL' 2>/dev/null; then
            PIL_PYTHON=$py
            return
        fi
    done
    echo "SKIP - Pillow is missing for /usr/bin/python3 and python3 (apt-get install python3-pil)"
    echo "$PASSED passed, $FAILED failed"
    exit 77
}

finish() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
    exit $?
}

# Run directly (ctest registers every tests/cli/*.sh, this one included): check the harness itself.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    check "qft binary is executable" test -x "$QFT"
    qft_run --help
    check "qft --help exits 0 and prints usage" test "$RC" -eq 0 -a -s "$OUT"
    qft_run
    check "qft with no command exits 2 (usage)" test "$RC" -eq 2
    check "fixtures.py runs with the stdlib python3" fixtures idx "$WORK/idx" count=4
    check "fixtures.py wrote IDX files" test -s "$WORK/idx/train-images-idx3-ubyte.gz"
    finish
fi
