#!/usr/bin/env bash
# Installs everything the local stack and the tests need, idempotently, on Debian/Ubuntu:
#   system packages (PostgreSQL server, a Java runtime, the deploy tools the tests run) when absent,
#   a virtualenv with the locked Python dependencies (exact pins + hashes),
#   the s3a jars for Spark's local mode.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

log() { echo "[setup] $*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- system packages ----------------------------------------------------------------------------
pkgs=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || pkgs+=(postgresql)
command -v java >/dev/null 2>&1 || pkgs+=(default-jre-headless)
$PYTHON -c 'import venv, ensurepip' 2>/dev/null || pkgs+=(python3-venv)
# the deploy artifacts' real tools, run by tests/deploy (the versions debian:12 images ship)
need() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ] || pkgs+=("$2"); }
need openvpn openvpn; need /usr/share/easy-rsa/easyrsa easy-rsa; need faketime faketime
need nginx nginx-light; need cloud-init cloud-init; need /usr/sbin/sshd openssh-server
need shellcheck shellcheck; need xmllint libxml2-utils; need nft nftables; need ip iproute2; need /usr/sbin/iptables iptables
# Docker Engine (the droplets' own: Debian's docker.io) and debootstrap, for the images and containers of the
# simulated topology (deploy/sim/images.py); the engines are started by the tests inside their namespaces only
need /usr/sbin/dockerd docker.io; need /usr/bin/docker docker.io; need debootstrap debootstrap
if [ ${#pkgs[@]} -gt 0 ]; then
  log "installing system packages: ${pkgs[*]}"
  as_root apt-get update -qq
  # nothing may start a service during the install: RUNLEVEL=1 for the init scripts (nginx on :80, sshd), and a
  # policy-rc.d that refuses every start (docker.io's dockerd would otherwise come up in the host namespace)
  policy=/usr/sbin/policy-rc.d
  [ -e $policy ] || { printf '#!/bin/sh\nexit 101\n' | as_root tee $policy >/dev/null; as_root chmod 755 $policy; trap 'as_root rm -f $policy' EXIT; }
  as_root env RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  # Debian starts a system cluster on 5432; the project runs its own, so leave that one alone.
fi

# --- Python dependencies -------------------------------------------------------------------------
stamp="$VENV/.installed-$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || $PYTHON -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "uv==0.13.8"
  log "installing locked Python dependencies"
  # bytecode compiled at install: where the environment sets PYTHONDONTWRITEBYTECODE (CI, containers) every run
  # process would otherwise compile each module it imports again (a run's start: 4.4 s instead of 1.9 s)
  "$VENV/bin/uv" pip sync -q --python "$VENV/bin/python" --compile-bytecode requirements.lock
  "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --no-deps -e .
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi

# --- s3a jars for Spark local mode ----------------------------------------------------------------
jars="$VENV/share/s3a-jars"
if [ ! -f "$jars/hadoop-aws-3.3.1.jar" ] || [ ! -f "$jars/aws-java-sdk-bundle-1.11.901.jar" ]; then
  log "fetching s3a jars (hadoop-aws, aws-java-sdk-bundle)"
  deploy/local/fetch-s3a-jars.sh "$VENV/bin/python" "$jars"
fi
log "ready: $VENV"
