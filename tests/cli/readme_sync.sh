#!/usr/bin/env bash
# .ci/run must run exactly the README's test command, and the README's two commands must exist.
set -u
cd "$(dirname "$0")/../.."
passed=0; failed=0
check() { if eval "$2"; then echo "ok: $1"; passed=$((passed+1)); else echo "FAIL: $1"; failed=$((failed+1)); fi; }
test_cmd=$(grep -A1 '<!-- test-command -->' README.md | tail -1 | sed 's/^ *//')
demo_cmd=$(grep -A1 '<!-- demo-command -->' README.md | tail -1 | sed 's/^ *//')
check "README has a test command" '[ -n "$test_cmd" ]'
check "README has a demo command" '[ -n "$demo_cmd" ]'
check ".ci/run runs the README test command verbatim" 'grep -qxF "$test_cmd" .ci/run'
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
