#!/usr/bin/env bash
# Runs the hostile suite (security.hostile.*) as an unprivileged user (uid and
# gid 65534, no supplementary groups, no capabilities), for a test run as root.
# Run by a user that is not root, the suite already ran as that user in the
# main run: this test then says so and is skipped (exit 77).
#   run_unprivileged.sh TEST_BINARY LSAN_SUPPRESSIONS
set -euo pipefail
binary=$1
supp=$2
if [[ $(id -u) -ne 0 ]]; then
  echo "run_unprivileged: not root (uid $(id -u)): the hostile suite already ran unprivileged; skipped"
  exit 77
fi
command -v setpriv > /dev/null || { echo "run_unprivileged: setpriv (util-linux) is missing"; exit 1; }
# The build tree may not be readable by others: run a copy from a directory
# that is, with the suppressions file beside it.
stage=$(mktemp -d /tmp/agentcore-unprivileged.XXXXXX)
trap 'rm -rf "$stage"' EXIT
cp "$binary" "$stage/agentcore-tests"
cp "$supp" "$stage/lsan.supp"
chmod 755 "$stage" "$stage/agentcore-tests"
chmod 644 "$stage/lsan.supp"
cd "$stage"
export HOME=/nonexistent TMPDIR=/tmp
export LSAN_OPTIONS="suppressions=$stage/lsan.supp:print_suppressions=0"
echo "run_unprivileged: security.hostile.* and process.* as uid 65534"
setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs \
  "$stage/agentcore-tests" -tc='security.hostile.*,process.*'
