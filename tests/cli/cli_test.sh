#!/usr/bin/env bash
# The agentcore command line, end to end: init, run (a replayed transcript:
# one planner answer, one worker), status, task show, gate submit, and the
# errors a user sees. Usage: cli_test.sh AGENTCORE_BINARY
set -euo pipefail
agentcore=$1
work=$(mktemp -d "${TMPDIR:-/tmp}/agentcore-cli-XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

fail() { echo "cli_test: FAILED: $*" >&2; exit 1; }
expect() {  # expect "what" exit-code command...: runs it, checks the exit code, keeps its output in $out
  local what=$1 code=$2; shift 2
  set +e; out=$("$@" 2>&1); local rc=$?; set -e
  [[ $rc == "$code" ]] || fail "$what: exit $rc, wanted $code; output:
$out"
}
has() { [[ $out == *"$1"* ]] || fail "output lacks '$1':
$out"; }

git init -q -b main repo
git -C repo -c user.name=t -c user.email=t@t commit -q --allow-empty -m root
mkdir -p repo/src && echo 'int main;' > repo/src/main.c
git -C repo add -A && git -C repo -c user.name=t -c user.email=t@t commit -qm files

expect "usage" 2 "$agentcore"
has "agentcore init"
expect "init" 0 "$agentcore" init --repository repo
has "wrote agentcore.json"
expect "init again" 1 "$agentcore" init
has "pass --force"
expect "demo with a missing configuration" 1 "$agentcore" demo --dir "$work/d" --config nowhere.json
has "no configuration at 'nowhere.json'"
[[ ! -e $work/d ]] || fail "a refused demo left '$work/d' behind"
expect "unknown command" 2 "$agentcore" frobnicate
has "unknown command 'frobnicate'"

# Capacity planning: a sweep writes its report and plots next to the
# configuration and answers in words; a typo is an error naming the field.
mkdir -p plan
cat > plan/team.json <<'JSON'
{"scenario": {"workers": 4, "work": {"features": 0}, "horizon_h": 24,
              "checks": {"deep_seconds": {"median": 1800, "p90": 1800}}, "gate": {"mode": "serial"}},
 "sweep": {"workers": [1, 4, 16], "designs": ["planner_worker"],
           "policies": [{"mode": "serial"}, {"mode": "batch", "batch_size": 8}]}}
JSON
expect "sim sweep" 0 "$agentcore" sim plan/team.json
has "saturates at"
has "sim-throughput.svg"
[[ -s plan/sim-report.json && -s plan/sim-throughput.svg && -s plan/sim-queue-wait.svg ]] || fail "sim wrote no report or plots"
grep -q "<polyline" plan/sim-throughput.svg || fail "the throughput plot has no line"
expect "sim one run as JSON" 0 "$agentcore" sim <(echo '{"scenario": {"workers": 3, "horizon_h": 12, "work": {"features": 5}}}') --json
has '"merges_per_hour"'
echo '{"scenario": {"worker": {"stal": 0.1}}}' > plan/typo.json
expect "sim with a typo" 1 "$agentcore" sim plan/typo.json
has "unknown field 'worker.stal'"
expect "sim without a configuration" 1 "$agentcore" sim
has "sim needs a configuration"

# A configuration the run can use: a replayed transcript, one worker, a goal check.
cat > transcript.jsonl <<'JSONL'
{"v":1,"role":"planner","turn":0,"hash":"0000000000000000","request":{"system":"","messages":[],"tools":[],"max_tokens":1,"stop":[],"tags":{"role":"planner","task":""}},"response":{"message":{"role":"assistant","parts":[{"type":"text","text":"{\"tasks\":[{\"id\":\"hello\",\"title\":\"Add hello\",\"description\":\"create src/hello.c\",\"contract\":{\"allowed_paths\":[\"src/**\"]}}]}"}]},"stop":"end_turn","usage":{"input":100,"output":20,"cache_read":0,"cache_write":0},"latency_ms":0,"model":"replay"}}
{"v":1,"role":"planner","turn":1,"hash":"0000000000000000","request":{"system":"","messages":[],"tools":[],"max_tokens":1,"stop":[],"tags":{"role":"planner","task":""}},"response":{"message":{"role":"assistant","parts":[{"type":"text","text":"{\"tasks\":[]}"}]},"stop":"end_turn","usage":{"input":100,"output":5,"cache_read":0,"cache_write":0},"latency_ms":0,"model":"replay"}}
{"v":1,"role":"worker","turn":0,"hash":"0000000000000000","request":{"system":"","messages":[],"tools":[],"max_tokens":1,"stop":[],"tags":{"role":"worker","task":"hello"}},"response":{"message":{"role":"assistant","parts":[{"type":"tool_call","id":"c1","name":"write_file","arguments":"{\"path\":\"src/hello.c\",\"content\":\"const char* hello = \\\"hi\\\";\\n\"}"}]},"stop":"tool_use","usage":{"input":50,"output":10,"cache_read":0,"cache_write":0},"latency_ms":0,"model":"replay"}}
{"v":1,"role":"worker","turn":1,"hash":"0000000000000000","request":{"system":"","messages":[],"tools":[],"max_tokens":1,"stop":[],"tags":{"role":"worker","task":"hello"}},"response":{"message":{"role":"assistant","parts":[{"type":"tool_call","id":"c2","name":"finish","arguments":"{\"summary\":\"added hello\"}"}]},"stop":"tool_use","usage":{"input":60,"output":5,"cache_read":0,"cache_write":0},"latency_ms":0,"model":"replay"}}
JSONL
sed -i -e 's|"goal_checks": \["make test"\]|"goal_checks": ["test -f src/hello.c"]|' \
       -e 's|"workers": 4|"workers": 1|' \
       -e 's|"planner": "replay:transcript.jsonl"|"planner": "replay:transcript.jsonl"|' agentcore.json
grep -q '"workers": 1' agentcore.json || fail "could not edit agentcore.json"

expect "run" 0 "$agentcore" run
has "claimed    hello"
has "merged     hello"
has "goal met"
has "1 merged"
[[ $(git -C repo show main:src/hello.c) == 'const char* hello = "hi";' ]] || fail "main lacks src/hello.c"

expect "status" 0 "$agentcore" status
has "1 tasks: 1 merged"
has "hello"

# The same run again: nothing to do, and it says the goal is met (exit 0),
# without doing the work twice.
main_done=$(git -C repo rev-parse main)
expect "run a finished run" 0 "$agentcore" run
has "goal met"
[[ $(git -C repo rev-parse main) == "$main_done" ]] || fail "running a finished run moved main"
expect "task show" 0 "$agentcore" task show hello
has '"state":"merged"'
expect "task show missing" 1 "$agentcore" task show nope
has "no task 'nope'"

# Looking changes nothing: status and task show open the store read-only.
store=$(find "$work" -name MANIFEST -path '*store*' -printf '%h\n' | head -1)
[[ -n $store ]] || fail "no file store with a MANIFEST under $work"
before=$(cd "$store" && sha256sum * | sort)
expect "status again" 0 "$agentcore" status
expect "task show again" 0 "$agentcore" task show hello
[[ $(cd "$store" && sha256sum * | sort) == "$before" ]] || fail "status or task show changed the store"

# The store deleted: looking says so, and a run refuses to start over
# silently (it would do the merged work a second time).
mv "$store" "$work/store.saved"
expect "status without the store" 1 "$agentcore" status
has "no store at"
main_before=$(git -C repo rev-parse main)
expect "run without the store" 1 "$agentcore" run
has "not the one earlier runs"
has "Restore it from a backup"
[[ $(git -C repo rev-parse main) == "$main_before" ]] || fail "a run on a replaced store moved main"
rm -rf "$store"
mv "$work/store.saved" "$store"
expect "status with the store back" 0 "$agentcore" status
has "1 tasks: 1 merged"

# A hand-made branch through the gate.
git -C repo checkout -qb feature
echo 'int feature;' > repo/src/feature.c
git -C repo add -A && git -C repo -c user.name=t -c user.email=t@t commit -qm feature
git -C repo checkout -q main
expect "gate submit" 0 "$agentcore" gate submit feature
has "merged"
git -C repo cat-file -e main:src/feature.c || fail "the gated branch did not land"
git -C repo checkout -qb outside
echo 'x' > repo/README && git -C repo add -A && git -C repo -c user.name=t -c user.email=t@t commit -qm readme
git -C repo checkout -q main
sed -i 's|"allowed_paths":\[\]|"allowed_paths":["src/**"]|' agentcore.json
expect "gate rejects" 3 "$agentcore" gate submit outside
has "contract_violated"
has "README"

# Configuration errors name the field.
sed -i 's|"workers": 1|"workers": "one"|' agentcore.json
expect "bad config" 1 "$agentcore" status
has "'workers' must be a whole number"
echo "cli_test: all passed"
