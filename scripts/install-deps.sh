#!/usr/bin/env bash
# Installs what agentcore needs to build, test and benchmark on Debian 12.
# Idempotent: only packages that are missing are installed.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libfmt-dev libgit2-dev zlib1g-dev libssl-dev doctest-dev
  libsqlite3-dev   # the board's archive of finished tasks, and the SQLite peer in `agentcore-bench store`
  clang            # the libFuzzer targets (tests/fuzz)
  bubblewrap       # the sandbox for commands agents run and checks the gate runs
  etcd-server      # the etcd store backend's tests and benchmark start their own etcd
  etcd-client      # etcdctl: the benchmark's reference figure (etcdctl check perf)
  openssl          # the openssl command: certificates for the TLS etcd test
  chromium         # the dashboard test drives the page in headless Chromium
  curl             # the command-line tests talk to the dashboard
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
