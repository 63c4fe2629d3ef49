#!/usr/bin/env bash
# `agentcore demo`, the README's main job: the replayed run must reach its
# goal and exercise every part it is meant to show. Usage: demo_test.sh AGENTCORE
set -euo pipefail
agentcore=$1
work=$(mktemp -d "${TMPDIR:-/tmp}/agentcore-demo-test-XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "demo_test: FAILED: $*" >&2; exit 1; }
# The demo runs with its dashboard (--serve, port 0: a free one); while it
# runs, a client follows the event stream.
"$agentcore" demo --dir "$work/demo" --serve 127.0.0.1:0 >"$work/demo.out" 2>&1 &
demo_pid=$!
for _ in $(seq 100); do grep -q '^dashboard: http' "$work/demo.out" && break; sleep 0.1; done
url=$(sed -nE 's/^dashboard: (http[^ ]*).*/\1/p' "$work/demo.out")
[[ -n $url ]] || { kill $demo_pid; fail "the demo did not start its dashboard: $(cat "$work/demo.out")"; }
curl -sN --max-time 8 "${url}api/events?since=0" >"$work/stream.txt" || true
set +e
wait $demo_pid
rc=$?
set -e
out=$(cat "$work/demo.out")
echo "$out"
[[ $rc == 0 ]] || fail "agentcore demo exited $rc"
grep -q '^event: board.task_transition$' "$work/stream.txt" || fail "the dashboard's event stream carried no task transitions"
grep -q '^id: 1$' "$work/stream.txt" || fail "the event stream did not start from the first event (since=0)"
summary=$(grep -E '^goal met after' <<<"$out") || fail "no 'goal met' summary"
number() { sed -nE "s/.* ([0-9]+) $1.*/\1/p" <<<"$summary"; }
[[ $(number "merged") == 6 ]] || fail "6 tasks merged"
[[ $(number "conflicts resolved") -ge 1 ]] || fail "a worker resolved a merge conflict"
[[ $(number "writes refused") -ge 1 ]] || fail "the tool box refused a write"
[[ $(number "rejected by the gate") -ge 1 ]] || fail "the gate rejected a diff"
[[ $(sed -nE 's/.*\(([0-9]+) batches bisected\).*/\1/p' <<<"$summary") -ge 1 ]] || fail "a batch was bisected"
[[ $(number "stalls") -ge 1 ]] || fail "a worker stalled"
[[ $(number "tasks split") -ge 1 ]] || fail "the stalled task was re-planned smaller"
[[ $(number "judge restarts") -ge 1 ]] || fail "the judge restarted"
grep -q "^main: 'make goal' passed" <<<"$out" || fail "main passes its test suite and goal"
repo="$work/demo/textkit"
make -C "$repo" -s test > /dev/null || fail "make test on main's checkout"
for f in upper lower words trim palindrome; do [[ -f $repo/tests/test_$f.c ]] || fail "main has no test for $f"; done
# The event log: every event, one JSON line each; replay-log reads it back.
log="$work/demo/events.jsonl"
[[ -s $log ]] || fail "no event log at $log"
grep -q '"type":"gate.verdict"' "$log" || fail "the event log has no gate verdicts"
[[ $(grep -c '"v":1,' "$log") == $(wc -l < "$log") ]] || fail "an event log line is not a version-1 event"
timeline=$("$agentcore" replay-log "$log") || fail "replay-log exited non-zero"
echo "$timeline"
[[ $(grep -c '^task .*: merged$' <<<"$timeline") == 6 ]] || fail "replay-log does not show six merged tasks"
grep -qE '^  attempt 2 by w[0-9]+: claimed [0-9:]+, merged after' <<<"$timeline" || fail "replay-log shows no second attempt"
grep -qE 'working [0-9.]+s' <<<"$timeline" || fail "replay-log shows no time spent working"
"$agentcore" replay-log "$work/nonexistent.jsonl" 2>/dev/null && fail "replay-log of a missing file succeeded"
# The capacity simulator, calibrated from this run's log (a replayed
# transcript: its answer times are not real ones and are kept, and say so).
fitted=$("$agentcore" sim --from "$log") || fail "sim --from the demo's log exited non-zero"
echo "$fitted"
grep -q "^calibrated from $log" <<<"$fitted" || fail "sim --from does not say what it read"
grep -q "worker turns per task: median 4" <<<"$fitted" || fail "sim --from did not fit the turns per task"
grep -q "worker turn latency: .*replayed transcript" <<<"$fitted" || fail "sim --from took a replay's answer times as real"
grep -qE "the run had [1-6] workers and 1 planners" <<<"$fitted" || fail "sim --from did not count the run's workers (those that claimed a task)"
grep -qE "merges/h" <<<"$fitted" || fail "sim --from ran no simulation"
# agentcore serve: the dashboard over the finished run's board (a file store).
"$agentcore" init --repository "$repo" --config "$work/serve.json" >/dev/null
"$agentcore" serve --config "$work/serve.json" --store "file:$work/demo/store" --serve 127.0.0.1:0 >"$work/serve.out" 2>&1 &
serve_pid=$!
for _ in $(seq 100); do grep -q '^dashboard: http' "$work/serve.out" && break; sleep 0.1; done
url=$(sed -nE 's/^dashboard: (http[^ ]*).*/\1/p' "$work/serve.out")
[[ -n $url ]] || { kill $serve_pid; fail "agentcore serve did not start: $(cat "$work/serve.out")"; }
tasks=$(curl -sf "${url}api/tasks") || { kill $serve_pid; fail "GET /api/tasks"; }
[[ $(grep -o '"state":"merged"' <<<"$tasks" | wc -l) == 6 ]] || { kill $serve_pid; fail "the dashboard does not show 6 merged tasks"; }
page=$(curl -sf "$url") || { kill $serve_pid; fail "GET /"; }
grep -q '<title>agentcore</title>' <<<"$page" || { kill $serve_pid; fail "GET / is not the page"; }
kill -INT $serve_pid
wait $serve_pid || fail "agentcore serve did not end cleanly on SIGINT"
echo "demo_test: passed"
