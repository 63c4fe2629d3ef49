#!/usr/bin/env bash
# Installs the dependencies, builds agentcore in Release (build/release) with
# its examples and the agentcore program, and runs `agentcore demo`: a sample
# project built by a swarm from a replayed transcript (arguments are passed on:
# `bash scripts/demo.sh --model openai:gpt-4o` runs it against a live model).
# Exits with the demo's exit status.
#
# env: AGENTCORE_JOBS  build parallelism (default: number of CPUs)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/install-deps.sh

jobs=${AGENTCORE_JOBS:-$(nproc)}
dir=build/release
program=$dir/bin/agentcore

# Tests and bench are not needed to run the demo; scripts/test.sh turns
# them back on in the same tree (a reconfigure, not a rebuild of the library).
cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DAGENTCORE_SANITIZE=OFF \
  -DAGENTCORE_BUILD_EXAMPLES=ON -DAGENTCORE_BUILD_CLI=ON -DAGENTCORE_BUILD_TESTS=OFF -DAGENTCORE_BUILD_BENCH=OFF
cmake --build "$dir" -j "$jobs"

if [[ ! -x $program ]]; then
  echo "demo.sh: the build did not produce ${program}; is AGENTCORE_BUILD_CLI on?" >&2
  exit 1
fi
echo "==== demo.sh: running ${program} demo $*"
exec "$program" demo "$@"
