#!/usr/bin/env bash
# Installs the dependencies, builds agentcore in Release (build/release) with
# its examples, and runs the main example: a store and a task board.
# Exits with the example's exit status.
#
# env: AGENTCORE_JOBS  build parallelism (default: number of CPUs)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/install-deps.sh

jobs=${AGENTCORE_JOBS:-$(nproc)}
dir=build/release
example=$dir/examples/agentcore-example-store-board

# Tests and bench are not needed to run the example; scripts/test.sh turns
# them back on in the same tree (a reconfigure, not a rebuild of the library).
cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DAGENTCORE_SANITIZE=OFF \
  -DAGENTCORE_BUILD_EXAMPLES=ON -DAGENTCORE_BUILD_TESTS=OFF -DAGENTCORE_BUILD_BENCH=OFF
cmake --build "$dir" -j "$jobs"

if [[ ! -x $example ]]; then
  echo "demo.sh: the build did not produce ${example}; is it defined in examples/CMakeLists.txt?" >&2
  exit 1
fi
echo "==== demo.sh: running ${example}"
exec "$example"
