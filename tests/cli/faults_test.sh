#!/usr/bin/env bash
# Faults during a swarm across processes, on a three-member etcd cluster:
# kill -9 the etcd leader (and restart it), kill -9 a worker process holding
# a task (its claim returns when its lease ends and another worker finishes
# it), kill -9 the gate leading the queue (the standby gate takes over). The
# run must still meet its goal with every task merged exactly once and the
# shared branch only ever at commits the gate made.
# Usage: faults_test.sh AGENTCORE_BINARY
set -euo pipefail
agentcore=$1
command -v etcd >/dev/null || { echo "faults_test: FAILED: no etcd (install etcd-server: scripts/install-deps.sh)" >&2; exit 1; }
command -v etcdctl >/dev/null || { echo "faults_test: FAILED: no etcdctl (install etcd-client)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/agentcore-faults-XXXXXX")
declare -A pid
cleanup() {
  for p in "${pid[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n ${KEEP:-} ]] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
fail() {
  echo "faults_test: FAILED: $*" >&2
  for f in "$work"/*.log; do echo "--- $f" >&2; grep -v '^raft\|^20[0-9][0-9]-' "$f" | tail -n 25 >&2 || true; done
  exit 1
}
say() { echo "faults_test: $*"; }

free_port() {
  local p
  while :; do
    p=$(( (RANDOM % 20000) + 30000 ))
    (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

# --- a three-member etcd cluster ---
declare -a cport pport
cluster=""
for i in 0 1 2; do
  cport[$i]=$(free_port); pport[$i]=$(free_port)
  cluster+="${cluster:+,}e$i=http://127.0.0.1:${pport[$i]}"
done
endpoints="127.0.0.1:${cport[0]},127.0.0.1:${cport[1]},127.0.0.1:${cport[2]}"
start_etcd() {  # index state
  local i=$1 state=$2
  etcd --name "e$i" --data-dir "$work/e$i" \
       --listen-client-urls "http://127.0.0.1:${cport[$i]}" --advertise-client-urls "http://127.0.0.1:${cport[$i]}" \
       --listen-peer-urls "http://127.0.0.1:${pport[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${pport[$i]}" \
       --initial-cluster "$cluster" --initial-cluster-token "faults-$$" --initial-cluster-state "$state" \
       >>"etcd$i.log" 2>&1 &
  pid[etcd$i]=$!
}
for i in 0 1 2; do start_etcd "$i" new; done
ctl() { ETCDCTL_API=3 etcdctl --endpoints="$endpoints" --command-timeout=3s "$@"; }
etcd_leader() {  # the index of the member that leads now, or nothing
  local ep
  ep=$(ctl endpoint status 2>/dev/null | awk -F', ' '$5 == "true" {print $1}')
  for i in 0 1 2; do [[ $ep == "127.0.0.1:${cport[$i]}" ]] && echo "$i"; done
  return 0
}
for _ in $(seq 100); do [[ -n $(etcd_leader) ]] && break; sleep 0.2; done
[[ -n $(etcd_leader) ]] || fail "the etcd cluster elected no leader"

# --- the project, its shared repository, a clone per process ---
git init -q -b main origin
mkdir -p origin/src && echo 'int main;' > origin/src/main.c
git -C origin add -A && git -C origin -c user.name=t -c user.email=t@t commit -qm files
git clone -q --bare origin shared.git
procs=(coord g1 g2 wa wb wc)
for who in "${procs[@]}"; do git clone -q shared.git "$who"; done

# Six tasks; each worker writes its file, spends two seconds in a command, finishes.
tasks=(t1 t2 t3 t4 t5 t6)
{
  plan='{\"tasks\":['
  for t in "${tasks[@]}"; do
    plan+='{\"id\":\"'$t'\",\"title\":\"Add '$t'\",\"description\":\"create src/'$t'.c\",\"contract\":{\"allowed_paths\":[\"src/'$t'.c\"]}},'
  done
  plan="${plan%,}]}"
  echo '{"v":1,"role":"planner","turn":0,"hash":"0000000000000000","request":{"system":"","messages":[],"tools":[],"max_tokens":1,"stop":[],"tags":{"role":"planner","task":""}},"response":{"message":{"role":"assistant","parts":[{"type":"text","text":"'"$plan"'"}]},"stop":"end_turn","usage":{"input":100,"output":20,"cache_read":0,"cache_write":0},"latency_ms":0,"model":"replay"}}'
  for turn in $(seq 1 40); do
    echo '{"v":1,"role":"planner","turn":'$turn',"hash":"0000000000000000","request":{"system":"","messages":[],"tools":[],"max_tokens":1,"stop":[],"tags":{"role":"planner","task":""}},"response":{"message":{"role":"assistant","parts":[{"type":"text","text":"{\"tasks\":[]}"}]},"stop":"end_turn","usage":{"input":100,"output":5,"cache_read":0,"cache_write":0},"latency_ms":0,"model":"replay"}}'
  done
  for t in "${tasks[@]}"; do
    w='{"v":1,"role":"worker","hash":"0000000000000000","request":{"system":"","messages":[],"tools":[],"max_tokens":1,"stop":[],"tags":{"role":"worker","task":"'$t'"}},"stop":"tool_use","usage":{"input":50,"output":10,"cache_read":0,"cache_write":0},"latency_ms":0,"model":"replay",'
    echo "$w"'"turn":0,"response":{"message":{"role":"assistant","parts":[{"type":"tool_call","id":"a","name":"write_file","arguments":"{\"path\":\"src/'$t'.c\",\"content\":\"int '$t';\\n\"}"}]}}}'
    echo "$w"'"turn":1,"response":{"message":{"role":"assistant","parts":[{"type":"tool_call","id":"b","name":"run_command","arguments":"{\"command\":\"sleep 2\"}"}]}}}'
    echo "$w"'"turn":2,"response":{"message":{"role":"assistant","parts":[{"type":"tool_call","id":"c","name":"finish","arguments":"{\"summary\":\"added '$t'\"}"}]}}}'
  done
} > transcript.jsonl

goal="test -f src/t1.c"
for t in "${tasks[@]:1}"; do goal+=" && test -f src/$t.c"; done
cat > agentcore.json <<JSON
{
  "schema": 1,
  "repository": "coord",
  "goal": "six files",
  "goal_checks": ["$goal"],
  "store": "etcd://$endpoints/faults",
  "remote": "shared.git",
  "workers": 1,
  "models": {"planner": "replay:transcript.jsonl", "worker": "replay:transcript.jsonl"},
  "model_options": {"match": "task_and_turn"},
  "gate": {"policy": "serial"},
  "judge": {"merges_per_cycle": 0},
  "lease_seconds": 3,
  "sandbox": "required"
}
JSON

run() {  # name roles
  "$agentcore" run --role "$2" --name "$1" --repository "$1" >"$1.log" 2>&1 &
  pid[$1]=$!
}
run coord planner,judge
run g1 gate
sleep 1  # g1 asks for the queue first; g2 stands by
run g2 gate
for w in wa wb wc; do run "$w" worker; done

wait_until() {  # seconds command...: polls until the command succeeds
  local t=$1; shift
  for _ in $(seq $((t * 10))); do "$@" && return 0; sleep 0.1; done
  return 1
}

# 1. A worker process dies holding a task.
wait_until 60 grep -q "claimed" wa.log || fail "worker wa never claimed a task"
victim_task=$(grep "claimed" wa.log | tail -1 | awk '{print $3}')
kill -9 "${pid[wa]}"; unset 'pid[wa]'
say "killed worker wa holding $victim_task"

# 2. The etcd leader dies, and comes back.
lead=$(etcd_leader)
[[ -n $lead ]] || fail "no etcd leader to kill"
kill -9 "${pid[etcd$lead]}"; unset "pid[etcd$lead]"
say "killed etcd leader e$lead"
sleep 3
start_etcd "$lead" existing
say "restarted e$lead"

# 3. The gate leading the queue dies after it landed something.
landed() { [[ $(git -C shared.git rev-list --count main) -ge 3 ]]; }
wait_until 90 landed || fail "nothing landed on the shared branch"
leader=$(ctl get --print-value-only faults/gate/main/leader 2>/dev/null || true)
[[ $leader == g1 || $leader == g2 ]] || fail "cannot tell which gate leads the queue (leader key: '$leader')"
kill -9 "${pid[$leader]}"; unset "pid[$leader]"
say "killed the leading gate $leader"

# The run goes on and meets its goal.
wait_until 240 bash -c "! kill -0 ${pid[coord]} 2>/dev/null" || fail "the coordinator did not finish"
set +e; wait "${pid[coord]}"; rc=$?; set -e
unset 'pid[coord]'
[[ $rc == 0 ]] || fail "the coordinator exited $rc"
grep -q "goal met" coord.log || fail "the coordinator did not report the goal met"
grep -q "6 merged" coord.log || fail "the coordinator's report does not count the six merges"

# Every task merged exactly once; the shared branch only at gate commits.
for t in "${tasks[@]}"; do
  git -C shared.git cat-file -e "main:src/$t.c" || fail "src/$t.c is not on the shared branch"
  [[ $(git -C shared.git log --format=%H main -- "src/$t.c" | wc -l) == 1 ]] || fail "src/$t.c landed more than once"
done
root=$(git -C shared.git rev-list --max-parents=0 main)
while read -r c; do
  [[ $c == "$root" ]] && continue
  [[ $(git -C shared.git log -1 --format=%s "$c") == Merge* ]] || fail "main's first-parent history has a commit the gate did not make: $c"
done < <(git -C shared.git rev-list --first-parent main)
"$agentcore" status >status.log 2>&1 || fail "status failed"
grep -q "6 tasks: 6 merged" status.log || fail "the board does not say 6 merged: $(cat status.log)"
grep -q "$victim_task" wb.log wc.log || fail "the task of the killed worker ($victim_task) was not finished by another"
standby=$([[ $leader == g1 ]] && echo g2 || echo g1)
grep -q "gate_leading" "$standby.log" || fail "the standby gate $standby never took the queue"
for w in wb wc; do
  wait_until 30 bash -c "! kill -0 ${pid[$w]} 2>/dev/null" || fail "worker $w did not end with the run"
  set +e; wait "${pid[$w]}"; rc=$?; set -e
  unset "pid[$w]"
  [[ $rc == 0 ]] || fail "worker $w exited $rc"
done
say "all passed"
