#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs the Debian packages the tests need
# when they are missing (Chromium and ChromeDriver for the browser test, HAProxy and nginx for
# the multi-node tests, which start their own instances on free ports), then runs
# `cargo test --workspace --release`. Extra arguments go to cargo test, e.g.
# `./test.sh --test operations`. `.ci/run` calls this.
set -euo pipefail
cd "$(dirname "$0")"

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
need=()
have chromium || need+=(chromium)
have chromedriver || need+=(chromium-driver)
have haproxy || need+=(haproxy)
have nginx || need+=(nginx)
if ((${#need[@]})); then
  echo "test.sh: installing ${need[*]} (apt-get)" >&2
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi

exec cargo test --workspace --release "$@"
