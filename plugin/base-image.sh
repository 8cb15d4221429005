#!/usr/bin/env bash
# Make a base image for the plugin from Debian packages alone (no registry needed):
#
#   plugin/base-image.sh [IMAGE]          default IMAGE: ipledger-base:bookworm
#
# debootstraps a minimal Debian bookworm with python3 and python3-venv and imports it with
# `docker import`. The tarball is cached in ${IPLEDGER_BASE_CACHE:-/var/cache/ipledger-base}.
set -euo pipefail
image=${1:-ipledger-base:bookworm}
cache=${IPLEDGER_BASE_CACHE:-/var/cache/ipledger-base}
tarball=$cache/bookworm-python3.tar

if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    }
    mkdir -p "$cache"
    root=$(mktemp -d "$cache/root.XXXXXX")
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" \
        http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
fi
docker import "$tarball" "$image" >/dev/null
echo "$image"
