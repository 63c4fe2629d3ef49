#!/usr/bin/env bash
# Packaging test: installs agentcore into a scratch prefix, then builds and runs
# tests/packaging/consumer against it three ways, as a host would:
#   (a) install agentcore into <scratch>/prefix: from <build-tree> when given
#       (the tree the test is registered in, already built: one build of the
#       library fewer), else built here with tests, examples and bench off
#   (b) consumer via find_package(agentcore), CMAKE_PREFIX_PATH=<scratch>/prefix
#   (c) consumer via add_subdirectory(<source-dir>)
#   (d) consumer via pkg-config, compiled with plain c++ against the prefix
# Stops at the first failure with a message naming the step.
#
# usage: tests/packaging/run.sh <agentcore-source-dir> <scratch-dir> [<build-tree>]
# env:   CXX (compiler, default c++), AGENTCORE_JOBS (build jobs, default 2)
set -euo pipefail

if (($# != 2 && $# != 3)); then
  echo "usage: $0 <agentcore-source-dir> <scratch-dir> [<build-tree>]" >&2
  exit 2
fi
src=$(cd "$1" && pwd)
mkdir -p "$2"
scratch=$(cd "$2" && pwd)
tree=${3:+$(cd "$3" && pwd)}
jobs=${AGENTCORE_JOBS:-2}
consumer=$src/tests/packaging/consumer
prefix=$scratch/prefix
cxx=${CXX:-c++}

generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi

step="setup"
on_exit() {
  local rc=$?
  if ((rc != 0)); then echo "packaging: FAILED in step ${step} (exit ${rc})" >&2; fi
}
trap on_exit EXIT
fail() {
  echo "packaging: FAILED in step ${step}: $*" >&2
  trap - EXIT
  exit 1
}
begin() {
  step=$1
  echo
  echo "==== packaging: ${step}"
}

# Every run starts from nothing: a stale cache, header or library left by an
# earlier run could make a broken package pass. Only our own subfolders go.
rm -rf "$prefix" "$scratch/agentcore-build" "$scratch/consumer-find_package" \
  "$scratch/consumer-subdirectory" "$scratch/pkgconfig"

if [[ -n $tree ]]; then
  begin "(a) install agentcore from ${tree} into ${prefix}"
  [[ -f $tree/CMakeCache.txt ]] || fail "${tree} is not a CMake build tree"
  cmake --install "$tree" --prefix "$prefix" || fail "installing agentcore from ${tree} failed"
else
  begin "(a) build and install agentcore into ${prefix}"
  cmake -S "$src" -B "$scratch/agentcore-build" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DAGENTCORE_BUILD_TESTS=OFF -DAGENTCORE_BUILD_EXAMPLES=OFF -DAGENTCORE_BUILD_BENCH=OFF \
    -DAGENTCORE_INSTALL=ON -DAGENTCORE_SANITIZE=OFF ||
    fail "configuring agentcore failed"
  cmake --build "$scratch/agentcore-build" -j "$jobs" || fail "building agentcore failed"
  cmake --install "$scratch/agentcore-build" || fail "installing agentcore failed"
fi
config=$(find "$prefix" -name agentcoreConfig.cmake -print -quit)
[[ -n $config ]] || fail "no agentcoreConfig.cmake under ${prefix}"
[[ -f $prefix/include/agentcore/store/memory_store.hpp ]] || fail "headers not installed under ${prefix}/include"

begin "(b) consumer via find_package"
build=$scratch/consumer-find_package
cmake -S "$consumer" -B "$build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DAGENTCORE_CONSUME=find_package \
  -DCMAKE_PREFIX_PATH="$prefix" ||
  fail "configuring the consumer with find_package(agentcore) failed"
found=$(sed -n 's/^agentcore_DIR:PATH=//p' "$build/CMakeCache.txt")
[[ $found == "$prefix"/* ]] ||
  fail "find_package found agentcore at '${found}', not in ${prefix}; is another agentcore installed?"
cmake --build "$build" -j "$jobs" || fail "building the consumer against the installed agentcore failed"
"$build/agentcore-consumer" || fail "the consumer built with find_package exited with $?"

begin "(c) consumer via add_subdirectory"
build=$scratch/consumer-subdirectory
cmake -S "$consumer" -B "$build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DAGENTCORE_CONSUME=subdirectory \
  -DAGENTCORE_SOURCE_DIR="$src" ||
  fail "configuring the consumer with add_subdirectory(agentcore) failed"
cmake --build "$build" -j "$jobs" || fail "building the consumer with agentcore as a subdirectory failed"
"$build/agentcore-consumer" || fail "the consumer built with add_subdirectory exited with $?"

begin "(d) consumer via pkg-config"
pc=$(find "$prefix" -name agentcore.pc -print -quit)
[[ -n $pc ]] || fail "no agentcore.pc under ${prefix}"
PKG_CONFIG_PATH=$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export PKG_CONFIG_PATH
pkg-config --exists --print-errors agentcore || fail "pkg-config cannot use ${pc}"
# The .pc file names its prefix relative to itself (${pcfiledir}), so an
# install tree can move: it must resolve to where it was installed.
pc_prefix=$(pkg-config --variable=prefix agentcore)
[[ -d $pc_prefix && $(cd "$pc_prefix" && pwd -P) == $(cd "$prefix" && pwd -P) ]] ||
  fail "agentcore.pc says prefix=${pc_prefix}, which is not ${prefix}"
mkdir -p "$scratch/pkgconfig"
# shellcheck disable=SC2046  # pkg-config's output is meant to be word-split
"$cxx" -O1 "$consumer/main.cpp" -o "$scratch/pkgconfig/agentcore-consumer" $(pkg-config --cflags --libs agentcore) ||
  fail "compiling the consumer with \`${cxx} main.cpp \$(pkg-config --cflags --libs agentcore)\` failed"
LD_LIBRARY_PATH=$(pkg-config --variable=libdir agentcore)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
  "$scratch/pkgconfig/agentcore-consumer" || fail "the consumer built with pkg-config exited with $?"

trap - EXIT
echo
echo "packaging: OK (install, find_package, add_subdirectory, pkg-config)"
