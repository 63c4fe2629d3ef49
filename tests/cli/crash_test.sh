#!/usr/bin/env bash
# Whole-process crash and resume: `agentcore run` on a file store with a
# replayed model is killed with SIGKILL, each trial at another moment (at
# random; when a task has just been submitted; just after the gate moved
# main; as workers claim; as the planner splits a stalled task), and then
# run again. The second run must finish
# the run: exit 0 with the goal met, every task merged exactly once, main's
# history and reflog only ever at commits the gate made, and no task left
# in a non-final state.
# Usage: crash_test.sh AGENTCORE_BINARY
# env: AGENTCORE_CRASH_TRIALS  trials (default 4; the full test is 30)
set -euo pipefail
# Runs only when asked for (ctest reports it skipped otherwise): scripts/test.sh
# asks for 6 trials in the release tree. (Under ASan a forked child of the
# threaded host was seen spinning before exec, when commands started through
# Boost.Process; they start with posix_spawn now, and 4 trials under ASan
# pass here; the ASan tree does not run it, to keep CI within its time.)
if [[ -z ${AGENTCORE_CRASH_TRIALS:-} && -z ${AGENTCORE_RESUME_TESTS:-} ]]; then
  echo "crash_test: skipped: set AGENTCORE_RESUME_TESTS=1 (or AGENTCORE_CRASH_TRIALS=N) to run it"
  exit 77
fi
agentcore=$(realpath "$1")
trials=${AGENTCORE_CRASH_TRIALS:-4}
work=$(mktemp -d "${TMPDIR:-/tmp}/agentcore-crash-XXXXXX")
run_pid=
cleanup() {
  [[ -n $run_pid ]] && kill -9 "$run_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  [[ -n ${KEEP:-} ]] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "crash_test: FAILED (trial $trial, $kind): $*" >&2
  for f in "$dir"/*.out; do [[ -f $f ]] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }; done
  # The board, and the report of every task that did not merge.
  "$agentcore" status --config "$dir/agentcore.json" >&2 || true
  "$agentcore" status --config "$dir/agentcore.json" 2>/dev/null | awk '$1 != "merged" && NF > 1 && $2 ~ /^t[0-9]/ {print $2}' |
    while read -r t; do echo "--- task $t" >&2; "$agentcore" task show "$t" --config "$dir/agentcore.json" >&2 || true; done
  exit 1
}
say() { echo "crash_test: $*"; }

tasks=(t1 t2 t3 t4 t5)  # each done by its worker
children=(t6a t6b)      # t6's: its worker stalls, the planner splits it into these
done_by_main=("${tasks[@]}" "${children[@]}")
# The model's answers: the planner proposes six tasks at its first turn (and
# again after each restart: a re-proposal of a task the board has must not
# add work), nothing after, and splits t6 when asked; each task's worker
# writes its file, runs a short command and finishes; t6's worker reads the
# same file again and again until its loop calls that a stall (t6 is
# abandoned, and the planner splits it).
transcript() {
  local plan='{\"tasks\":['
  for t in "${tasks[@]}"; do
    plan+='{\"id\":\"'$t'\",\"title\":\"Add '$t'\",\"description\":\"create src/'$t'.c\",\"contract\":{\"allowed_paths\":[\"src/'$t'.c\"]}},'
  done
  plan+='{\"id\":\"t6\",\"title\":\"Add t6a and t6b\",\"description\":\"create src/t6a.c and src/t6b.c\",\"contract\":{\"allowed_paths\":[\"src/t6*.c\"]}}]}'
  local split='{\"tasks\":['
  for t in "${children[@]}"; do
    split+='{\"id\":\"'$t'\",\"title\":\"Add '$t'\",\"description\":\"create src/'$t'.c\",\"contract\":{\"allowed_paths\":[\"src/'$t'.c\"]}},'
  done
  split="${split%,}]}"
  local head='{"v":1,"role":"planner","hash":"0000000000000000","request":{"system":"","messages":[],"tools":[],"max_tokens":1,"stop":[],"tags":{"role":"planner","task":""}},"stop":"end_turn","usage":{"input":100,"output":20,"cache_read":0,"cache_write":0},"latency_ms":0,"model":"replay",'
  echo "$head"'"turn":0,"response":{"message":{"role":"assistant","parts":[{"type":"text","text":"'"$plan"'"}]}}}'
  for turn in $(seq 1 60); do
    echo "$head"'"turn":'$turn',"response":{"message":{"role":"assistant","parts":[{"type":"text","text":"{\"tasks\":[]}"}]}}}'
  done
  local sh='{"v":1,"role":"planner","hash":"0000000000000000","request":{"system":"","messages":[],"tools":[],"max_tokens":1,"stop":[],"tags":{"role":"planner","task":"t6"}},"stop":"end_turn","usage":{"input":100,"output":20,"cache_read":0,"cache_write":0},"latency_ms":0,"model":"replay",'
  for turn in 0 1 2; do
    echo "$sh"'"turn":'$turn',"response":{"message":{"role":"assistant","parts":[{"type":"text","text":"'"$split"'"}]}}}'
  done
  for t in "${tasks[@]}" "${children[@]}"; do
    local w='{"v":1,"role":"worker","hash":"0000000000000000","request":{"system":"","messages":[],"tools":[],"max_tokens":1,"stop":[],"tags":{"role":"worker","task":"'$t'"}},"stop":"tool_use","usage":{"input":50,"output":10,"cache_read":0,"cache_write":0},"latency_ms":0,"model":"replay",'
    # A task attempted again in the same process (after a claim lost or a
    # failed commit) continues the turns: six attempts' worth.
    for attempt in 0 1 2 3 4 5; do
      local k=$((attempt * 3))
      echo "$w"'"turn":'$k',"response":{"message":{"role":"assistant","parts":[{"type":"tool_call","id":"a","name":"write_file","arguments":"{\"path\":\"src/'$t'.c\",\"content\":\"int '$t';\\n\"}"}]}}}'
      echo "$w"'"turn":'$((k + 1))',"response":{"message":{"role":"assistant","parts":[{"type":"tool_call","id":"b","name":"run_command","arguments":"{\"command\":\"sleep 0.3\"}"}]}}}'
      echo "$w"'"turn":'$((k + 2))',"response":{"message":{"role":"assistant","parts":[{"type":"tool_call","id":"c","name":"finish","arguments":"{\"summary\":\"added '$t'\"}"}]}}}'
    done
  done
  local w6='{"v":1,"role":"worker","hash":"0000000000000000","request":{"system":"","messages":[],"tools":[],"max_tokens":1,"stop":[],"tags":{"role":"worker","task":"t6"}},"stop":"tool_use","usage":{"input":50,"output":10,"cache_read":0,"cache_write":0},"latency_ms":0,"model":"replay",'
  for turn in $(seq 0 23); do  # the same call four turns in a row is a stall; six attempts' worth
    echo "$w6"'"turn":'$turn',"response":{"message":{"role":"assistant","parts":[{"type":"tool_call","id":"r","name":"read_file","arguments":"{\"path\":\"src/main.c\"}"}]}}}'
  done
}

setup() {
  mkdir -p "$dir"
  git init -q -b main "$dir/repo"
  mkdir -p "$dir/repo/src" && echo 'int main;' >"$dir/repo/src/main.c"
  git -C "$dir/repo" add -A
  git -C "$dir/repo" -c user.name=t -c user.email=t@t commit -qm root
  transcript >"$dir/transcript.jsonl"
  local goal="test -f src/t1.c"
  for t in "${done_by_main[@]:1}"; do goal+=" && test -f src/$t.c"; done
  cat >"$dir/agentcore.json" <<JSON
{
  "schema": 1,
  "repository": "repo",
  "goal": "six files",
  "goal_checks": ["$goal"],
  "store": "file:state",
  "worktrees": {"root": "slots", "slots": 6},
  "workers": 3,
  "models": {"planner": "replay:transcript.jsonl", "worker": "replay:transcript.jsonl"},
  "model_options": {"match": "task_and_turn"},
  "gate": {"policy": "batch", "batch_size": 2},
  "judge": {"merges_per_cycle": 0},
  "lease_seconds": 2,
  "sandbox": "required"
}
JSON
}

# Waits (polling) until "$@" succeeds, for at most $1 seconds.
wait_until() {
  local t=$1; shift
  local end=$((SECONDS + t))
  while ((SECONDS < end)); do "$@" && return 0; sleep 0.02; done
  return 1
}
main_moved() { [[ $(git -C "$dir/repo" rev-parse -q --verify refs/heads/main) != "$root" ]]; }
some_submitted() { "$agentcore" status --config "$dir/agentcore.json" 2>/dev/null | grep -q '^ *submitted '; }
t6_abandoned() { grep -qE 'abandoned +t6 ' "$dir/first.out" 2>/dev/null; }
claims_at_least() { [[ $(grep -c ' claimed ' "$dir/first.out" 2>/dev/null || true) -ge $1 ]]; }
ran_out() { ! kill -0 "$run_pid" 2>/dev/null; }

kinds=(random submitted landing claiming split)
started=$SECONDS
for trial in $(seq 1 "$trials"); do
  kind=${kinds[$(((trial - 1) % ${#kinds[@]}))]}
  dir="$work/trial$trial"
  # A run can end before the moment it was to be killed at comes, or before
  # a poll of `agentcore status` sees it (a task is `submitted` for a moment
  # only, and a sanitizer makes each poll slow): the trial is started again,
  # at most three times, and only then is that a failure.
  for start in 1 2 3; do
    rm -rf "$dir"
    setup
    root=$(git -C "$dir/repo" rev-parse refs/heads/main)
    (cd "$dir" && exec "$agentcore" run --config agentcore.json >first.out 2>&1) &
    run_pid=$!
    case $kind in
      # A whole run takes 1.5 to 2 s here (more under a sanitizer).
      random) sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.05 + (r / 32767) * 1.3 }')" ;;
      submitted) wait_until 60 bash -c "$(declare -f some_submitted ran_out); agentcore=$agentcore dir=$dir run_pid=$run_pid; some_submitted || ran_out" || true ;;
      landing)
        wait_until 60 bash -c "$(declare -f main_moved ran_out); dir=$dir root=$root run_pid=$run_pid; main_moved || ran_out" || true
        sleep "0.0$((RANDOM % 3))" ;;
      claiming) wait_until 60 bash -c "$(declare -f claims_at_least); dir=$dir; claims_at_least $((2 + RANDOM % 4))" || true ;;
      # t6 abandoned: the planner's split of it comes within a planning round (a second at most).
      split)
        wait_until 60 bash -c "$(declare -f t6_abandoned ran_out); dir=$dir run_pid=$run_pid; t6_abandoned || ran_out" || true
        sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", (r / 32767) * 1.2 }')" ;;
    esac
    ran_out || break
    wait "$run_pid" 2>/dev/null || true
    run_pid=
    ((start < 3)) || fail "the first run ended before it was killed, three times: $(tail -n 5 "$dir/first.out")"
    say "trial $trial ($kind): the run ended before the moment came; starting it again"
  done
  kill -9 "$run_pid"
  wait "$run_pid" 2>/dev/null || true
  run_pid=
  killed_at=$(git -C "$dir/repo" rev-list --first-parent --count refs/heads/main)
  when=
  if [[ $kind == split ]]; then
    if "$agentcore" status --config "$dir/agentcore.json" 2>/dev/null | grep -qE '^ *superseded +t6 '; then
      when=", t6 split before the kill"
    else
      when=", t6 not yet split at the kill"
    fi
  fi

  # The restart finishes the run.
  set +e
  (cd "$dir" && timeout 180 "$agentcore" run --config agentcore.json >second.out 2>&1)
  rc=$?
  set -e
  [[ $rc == 0 ]] || fail "the restarted run exited $rc"
  grep -q "goal met" "$dir/second.out" || fail "the restarted run did not report the goal met"
  status=$("$agentcore" status --config "$dir/agentcore.json") || fail "status after the run failed"
  grep -q "^8 tasks: 7 merged 1 superseded$" <<<"$status" || fail "the board is not 8 tasks, 7 merged, 1 superseded: $status"
  git -C "$dir/repo" cat-file -e "main:src/t6.c" 2>/dev/null && fail "src/t6.c, which no task was to write, is on main"
  for t in "${done_by_main[@]}"; do
    git -C "$dir/repo" cat-file -e "main:src/$t.c" || fail "src/$t.c is not on main"
    [[ $(git -C "$dir/repo" log --format=%H main -- "src/$t.c" | wc -l) == 1 ]] || fail "src/$t.c landed more than once"
  done
  while read -r c; do
    [[ $c == "$root" ]] && continue
    [[ $(git -C "$dir/repo" log -1 --format=%s "$c") == Merge* ]] || fail "main's history has a commit the gate did not make: $c"
  done < <(git -C "$dir/repo" rev-list --first-parent main)
  # Every move of main was the gate's.
  moves=0
  while read -r msg; do
    [[ $msg == "commit (initial): root" ]] && continue
    [[ $msg == gate:* ]] || fail "main's reflog has a move the gate did not make: '$msg'"
    moves=$((moves + 1))
  done < <(git -C "$dir/repo" reflog show --format=%gs refs/heads/main)
  ((moves >= 1)) || fail "main's reflog records no move by the gate"
  say "trial $trial ($kind): killed with $((killed_at - 1)) landing(s) on main$when; the restart finished the run ($moves gate moves)"
  rm -rf "$dir"
done
say "all $trials trials passed in $((SECONDS - started)) s"
