#!/usr/bin/env bash
# A swarm across processes: one board in a real etcd, code through a shared
# bare repository. A coordinator (planner, judge, gate) and two worker
# processes, each in its own clone, build two tasks from a replayed
# transcript; the workers end when the coordinator says the run is over.
# Usage: multiprocess_test.sh AGENTCORE_BINARY
set -euo pipefail
agentcore=$1
command -v etcd >/dev/null || { echo "multiprocess_test: FAILED: no etcd (install etcd-server: scripts/install-deps.sh)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/agentcore-mp-XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [[ -n ${KEEP:-} ]] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
fail() {
  echo "multiprocess_test: FAILED: $*" >&2
  for f in "$work"/*.log; do echo "--- $f" >&2; tail -n 30 "$f" >&2; done
  exit 1
}

# etcd on free loopback ports.
free_port() {
  local p
  while :; do
    p=$(( (RANDOM % 20000) + 30000 ))
    (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
cport=$(free_port); pport=$(free_port)
etcd --data-dir "$work/etcd" --name mp --listen-client-urls "http://127.0.0.1:$cport" \
     --advertise-client-urls "http://127.0.0.1:$cport" --listen-peer-urls "http://127.0.0.1:$pport" \
     --initial-advertise-peer-urls "http://127.0.0.1:$pport" --initial-cluster "mp=http://127.0.0.1:$pport" \
     >etcd.log 2>&1 &
pids+=($!)
up=0
for _ in $(seq 100); do
  (echo >"/dev/tcp/127.0.0.1/$cport") 2>/dev/null && { up=1; break; }
  sleep 0.1
done
[[ $up == 1 ]] || fail "etcd did not start"

# The project, its shared repository, and a clone per process.
git init -q -b main origin
mkdir -p origin/src && echo 'int main;' > origin/src/main.c
git -C origin add -A && git -C origin -c user.name=t -c user.email=t@t commit -qm files
git clone -q --bare origin shared.git
for who in coord wa wb; do git clone -q shared.git "$who"; done

cat > transcript.jsonl <<'JSONL'
{"v":1,"role":"planner","turn":0,"hash":"0000000000000000","request":{"system":"","messages":[],"tools":[],"max_tokens":1,"stop":[],"tags":{"role":"planner","task":""}},"response":{"message":{"role":"assistant","parts":[{"type":"text","text":"{\"tasks\":[{\"id\":\"hello\",\"title\":\"Add hello\",\"description\":\"create src/hello.c\",\"contract\":{\"allowed_paths\":[\"src/hello.c\"]}},{\"id\":\"bye\",\"title\":\"Add bye\",\"description\":\"create src/bye.c\",\"contract\":{\"allowed_paths\":[\"src/bye.c\"]}}]}"}]},"stop":"end_turn","usage":{"input":100,"output":20,"cache_read":0,"cache_write":0},"latency_ms":0,"model":"replay"}}
{"v":1,"role":"planner","turn":1,"hash":"0000000000000000","request":{"system":"","messages":[],"tools":[],"max_tokens":1,"stop":[],"tags":{"role":"planner","task":""}},"response":{"message":{"role":"assistant","parts":[{"type":"text","text":"{\"tasks\":[]}"}]},"stop":"end_turn","usage":{"input":100,"output":5,"cache_read":0,"cache_write":0},"latency_ms":0,"model":"replay"}}
{"v":1,"role":"worker","turn":0,"hash":"0000000000000000","request":{"system":"","messages":[],"tools":[],"max_tokens":1,"stop":[],"tags":{"role":"worker","task":"hello"}},"response":{"message":{"role":"assistant","parts":[{"type":"tool_call","id":"c1","name":"write_file","arguments":"{\"path\":\"src/hello.c\",\"content\":\"const char* hello = \\\"hi\\\";\\n\"}"}]},"stop":"tool_use","usage":{"input":50,"output":10,"cache_read":0,"cache_write":0},"latency_ms":0,"model":"replay"}}
{"v":1,"role":"worker","turn":1,"hash":"0000000000000000","request":{"system":"","messages":[],"tools":[],"max_tokens":1,"stop":[],"tags":{"role":"worker","task":"hello"}},"response":{"message":{"role":"assistant","parts":[{"type":"tool_call","id":"c2","name":"finish","arguments":"{\"summary\":\"added hello\"}"}]},"stop":"tool_use","usage":{"input":60,"output":5,"cache_read":0,"cache_write":0},"latency_ms":0,"model":"replay"}}
{"v":1,"role":"worker","turn":0,"hash":"0000000000000000","request":{"system":"","messages":[],"tools":[],"max_tokens":1,"stop":[],"tags":{"role":"worker","task":"bye"}},"response":{"message":{"role":"assistant","parts":[{"type":"tool_call","id":"c3","name":"write_file","arguments":"{\"path\":\"src/bye.c\",\"content\":\"const char* bye = \\\"bye\\\";\\n\"}"}]},"stop":"tool_use","usage":{"input":50,"output":10,"cache_read":0,"cache_write":0},"latency_ms":0,"model":"replay"}}
{"v":1,"role":"worker","turn":1,"hash":"0000000000000000","request":{"system":"","messages":[],"tools":[],"max_tokens":1,"stop":[],"tags":{"role":"worker","task":"bye"}},"response":{"message":{"role":"assistant","parts":[{"type":"tool_call","id":"c4","name":"finish","arguments":"{\"summary\":\"added bye\"}"}]},"stop":"tool_use","usage":{"input":60,"output":5,"cache_read":0,"cache_write":0},"latency_ms":0,"model":"replay"}}
JSONL

cat > agentcore.json <<JSON
{
  "schema": 1,
  "repository": "coord",
  "goal": "src/hello.c and src/bye.c exist",
  "goal_checks": ["test -f src/hello.c && test -f src/bye.c"],
  "store": "etcd://127.0.0.1:$cport/mp",
  "remote": "shared.git",
  "workers": 1,
  "models": {"planner": "replay:transcript.jsonl", "worker": "replay:transcript.jsonl"},
  "model_options": {"match": "task_and_turn"},
  "gate": {"policy": "serial"},
  "sandbox": "required"
}
JSON

# A name that cannot be a worker id is refused before anything starts.
set +e; out=$("$agentcore" run --role worker --name 'w/1' --store "etcd://127.0.0.1:$cport/mp" 2>&1); rc=$?; set -e
[[ $rc == 1 && $out == *"--name 'w/1'"* ]] || fail "a bad --name was not refused clearly (exit $rc): $out"

"$agentcore" run --role planner,judge,gate --name coord >coord.log 2>&1 &
coord=$!; pids+=($coord)
"$agentcore" run --role worker --name wa --repository wa >wa.log 2>&1 &
wa=$!; pids+=($wa)
"$agentcore" run --role worker --name wb --repository wb >wb.log 2>&1 &
wb=$!; pids+=($wb)

wait_for() {  # pid seconds: its exit code, or 124 when it outlives the time
  local pid=$1 t=$2
  for _ in $(seq $((t * 10))); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid"; return $?; }
    sleep 0.1
  done
  return 124
}
set +e
wait_for "$coord" 120; rc=$?
set -e
[[ $rc == 0 ]] || fail "the coordinator exited $rc"
grep -q "goal met" coord.log || fail "the coordinator did not report the goal met"
for w in "$wa" "$wb"; do
  set +e; wait_for "$w" 30; rc=$?; set -e
  [[ $rc == 0 ]] || fail "a worker process exited $rc (or did not end with the run)"
done
grep -q "the run is over" wa.log || fail "worker wa did not end with the run"
! grep -q "swarm  error" coord.log wa.log wb.log || fail "a process reported an error"
grep -q "2 merged" coord.log || fail "the coordinator's judge did not see the two merges"

# The shared branch has both changes, each landed once; no change refs are left.
git -C shared.git cat-file -e main:src/hello.c || fail "shared main lacks src/hello.c"
git -C shared.git cat-file -e main:src/bye.c || fail "shared main lacks src/bye.c"
for f in src/hello.c src/bye.c; do
  [[ $(git -C shared.git log --format=%H main -- "$f" | wc -l) == 1 ]] || fail "$f landed more than once: $(git -C shared.git log --oneline main)"
done
[[ -z $(git -C shared.git for-each-ref refs/agentcore/changes) ]] || fail "change refs left in the shared repository"
# Each worker process claimed something: the work was shared (both tasks at
# once need two claimers; each worker process has one worker).
grep -q "claimed" wa.log || grep -q "claimed" wb.log || fail "no worker process claimed a task"
echo "multiprocess_test: all passed"
