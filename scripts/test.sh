#!/usr/bin/env bash
# Installs the dependencies, then builds and runs every test twice, and the
# fuzzers briefly:
#   1. build/asan     Debug with AddressSanitizer + UndefinedBehaviorSanitizer
#                     (all tests but the slow `packaging` label)
#   2. build/fuzz     clang, the libFuzzer targets of tests/fuzz (label fuzz)
#   3. build/release  Release, all tests including packaging
# Every run happens even if one before fails; the release run's ctest summary
# is printed last, and the exit status is non-zero if any run failed.
#
# env: AGENTCORE_JOBS  build parallelism (default: number of CPUs); ctest runs -j2,
#                      and a test that needs the machine to itself sets RUN_SERIAL.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/install-deps.sh

jobs=${AGENTCORE_JOBS:-$(nproc)}
logs=$root/build/test-logs
mkdir -p "$logs"

# Tests that need the sandbox fail here rather than skip (see tests/support/sandbox.hpp).
export AGENTCORE_REQUIRE_SANDBOX=1
# A UBSan report fails its test (-fno-sanitize-recover); give it a stack too.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
# Leaks inside third-party libraries (see tests/lsan.supp) are not ours to fix;
# examples and bench smoke tests run under the sanitizers too, so set it here.
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tests/lsan.supp:print_suppressions=0}

# run_suite NAME BUILD_DIR CTEST_ARGS... -- CMAKE_ARGS...
# Configures, builds and tests one tree; records a one-line status in
# status_<NAME> and returns non-zero on any failure without stopping the script.
run_suite() {
  local name=$1 dir=$2
  shift 2
  local ctest_args=()
  while (($#)) && [[ $1 != -- ]]; do ctest_args+=("$1"); shift; done
  shift
  local log=$logs/$name.ctest.log
  rm -f "$log"

  echo
  echo "==== test.sh: ${name}: configure ${dir}"
  if ! cmake -S "$root" -B "$dir" -G Ninja "$@"; then
    printf -v "status_${name}" '%s' "${name}: FAILED (configure)"
    return 1
  fi
  echo "==== test.sh: ${name}: build"
  if ! cmake --build "$dir" -j "$jobs"; then
    printf -v "status_${name}" '%s' "${name}: FAILED (build)"
    return 1
  fi
  echo "==== test.sh: ${name}: ctest ${ctest_args[*]}"
  # --no-tests=error: a tree that registers no tests is a broken build, not a pass.
  if ! ctest --test-dir "$dir" --output-on-failure --no-tests=error -j 2 "${ctest_args[@]}" 2>&1 | tee "$log"; then
    printf -v "status_${name}" '%s' "${name}: FAILED (tests; log: ${log})"
    return 1
  fi
  printf -v "status_${name}" '%s' "${name}: passed"
}

# The lines ctest ends a run with: "N% tests passed, ...", the label and time
# summaries, and the list of failed tests.
ctest_summary() {
  local log=$1
  [[ -f $log ]] || return 0
  sed -n '/tests passed, .* failed out of/,$p' "$log"
  grep -q 'tests passed, .* failed out of' "$log" || tail -n 5 "$log"
}

status_asan="asan: not run"
status_fuzz="fuzz: not run"
status_release="release: not run"
failed=0

run_suite asan build/asan -LE packaging -- \
  -DCMAKE_BUILD_TYPE=Debug -DAGENTCORE_SANITIZE=ON \
  -DAGENTCORE_BUILD_TESTS=ON -DAGENTCORE_BUILD_EXAMPLES=ON -DAGENTCORE_BUILD_BENCH=ON || failed=1

# The fuzz tree builds only the parsers and their fuzzers (tests, examples and
# bench off), so it costs little.
run_suite fuzz build/fuzz -L fuzz -- \
  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang -DAGENTCORE_BUILD_FUZZERS=ON \
  -DAGENTCORE_BUILD_TESTS=OFF -DAGENTCORE_BUILD_EXAMPLES=OFF -DAGENTCORE_BUILD_BENCH=OFF -DAGENTCORE_BUILD_CLI=OFF \
  -DAGENTCORE_INSTALL=OFF || failed=1

# The whole-process crash test (cli.crash_and_resume) runs in the release
# tree with 6 trials (AGENTCORE_CRASH_TRIALS=30 for the full count).
AGENTCORE_CRASH_TRIALS=${AGENTCORE_CRASH_TRIALS:-6} run_suite release build/release -- \
  -DCMAKE_BUILD_TYPE=Release -DAGENTCORE_SANITIZE=OFF \
  -DAGENTCORE_BUILD_TESTS=ON -DAGENTCORE_BUILD_EXAMPLES=ON -DAGENTCORE_BUILD_BENCH=ON || failed=1

echo
echo "==== test.sh: summary"
echo "${status_asan}"
echo "${status_fuzz}"
echo "${status_release}"
if [[ -f $logs/asan.ctest.log ]]; then
  echo
  echo "---- asan ctest summary (build/asan)"
  ctest_summary "$logs/asan.ctest.log"
fi
if [[ -f $logs/fuzz.ctest.log ]]; then
  echo
  echo "---- fuzz ctest summary (build/fuzz)"
  ctest_summary "$logs/fuzz.ctest.log"
fi
echo
echo "---- release ctest summary (build/release)"
ctest_summary "$logs/release.ctest.log"
exit "$failed"
