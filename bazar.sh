#!/usr/bin/env bash
# Bazar's quickstart, on a fresh machine with Python 3.11:
#   ./bazar.sh up      install what Bazar needs, then run the whole local cluster (Ctrl-C stops it)
#   ./bazar.sh test    install what the tests need, then run the whole test suite (pytest --full;
#                      plain `pytest` runs only the fast set: docs/testing.md)
# Anything after the command is passed on (to `bazar up` or to pytest).
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PYTHON=${PYTHON:-python3}

ensure_python_env() {
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
      apt_install python3-venv
      rm -rf "$VENV"
      "$PYTHON" -m venv "$VENV"
    fi
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test]"
}

apt_install() {  # apt_install PACKAGE... : install Debian packages that are missing (needs root)
  local missing=()
  for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "bazar.sh: please install these Debian packages (as root): ${missing[*]}" >&2
    return 1
  fi
  echo "bazar.sh: installing ${missing[*]}" >&2
  apt-get update -qq
  # Without starting services: on a machine with systemd, docker.io's would start dockerd with
  # its defaults at once (docker.service, or docker.socket on the first `docker` command), and
  # those set iptables' FORWARD policy to DROP and load br_netfilter, which the chaos and
  # multi-host tests must not meet; the container test starts a dockerd of its own, without
  # iptables. A policy-rc.d that exits 101 tells Debian's maintainer scripts not to start
  # anything (one that is there already is kept). They are still enabled for the next boot.
  local policy=/usr/sbin/policy-rc.d status=0
  if [ -e "$policy" ]; then policy=; else
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || status=$?
  if [ -n "$policy" ]; then rm -f "$policy"; trap - EXIT; fi
  return "$status"
}

command=${1:-}
shift || true
case "$command" in
  up)
    ensure_python_env
    exec "$VENV/bin/bazar" up "$@"
    ;;
  test)
    # chromium + chromedriver: storefront tests in a real browser; iptables + iproute2: chaos
    # partitions and the multi-host test's network namespaces; docker.io + docker-compose +
    # debootstrap: the container test (a Debian base image made here, no registry needed);
    # prometheus: a real Prometheus scrapes a test cluster (its service is not started); wrk: the
    # hot-item load of perf-compare and the benchmarks (a C load generator, 16 connections).
    apt_install chromium chromium-driver iptables iproute2 docker.io docker-compose debootstrap prometheus wrk
    ensure_python_env
    exec "$VENV/bin/python" -m pytest --full "$@"
    ;;
  *)
    echo "usage: ./bazar.sh up | ./bazar.sh test [pytest args]" >&2
    exit 2
    ;;
esac
