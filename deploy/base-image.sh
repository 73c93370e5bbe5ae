#!/usr/bin/env bash
# deploy/base-image.sh [TAG]: a Debian bookworm base image made from Debian's package
# archive alone, for machines that reach no container registry (the default TAG is
# bazar-base:bookworm). Then: docker build --build-arg BASE_IMAGE=bazar-base:bookworm ...
#
# It holds what the Dockerfile expects of python:3.11-slim: python3 with venv and pip,
# CA certificates. The machine's own CA bundle replaces Debian's, so that pip inside
# builds trusts whatever this machine trusts (a company proxy, say).
# An image that already exists is kept: building it takes a minute or two.
# Needs root, debootstrap and a running Docker daemon.
set -euo pipefail
tag=${1:-bazar-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base-image.sh: $tag exists, kept" >&2
  exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 755 "$root"  # it becomes the image's /: mktemp's 700 would lock out every user but root
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates,tini \
  bookworm "$root" "$mirror" >&2
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" --numeric-owner -c . |
  docker import --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' - "$tag" >&2
echo "base-image.sh: built $tag" >&2
