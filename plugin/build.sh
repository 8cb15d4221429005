#!/usr/bin/env bash
# Build ipledger as a managed Docker plugin.
#
#   plugin/build.sh [--base IMAGE] [--replace] [--push] NAME[:TAG]
#
# 1. builds wheels of ipledger and its dependencies (plugin/build/wheels),
# 2. builds the root filesystem image from the Dockerfile with BASE=IMAGE
#    (default python:3.11-slim-bookworm; plugin/base-image.sh makes one from Debian packages),
# 3. exports that filesystem into plugin/build/plugin/rootfs and copies config.json beside it,
# 4. runs `docker plugin create NAME:TAG plugin/build/plugin`; with --replace, a disabled plugin
#    of that name is removed first (an upgrade in place without a registry: the leases stay on
#    the data mount, but `docker plugin set` values must be set again); with --push,
#    `docker plugin push NAME:TAG`.
# Uses the docker CLI as configured (DOCKER_HOST).
set -euo pipefail

base=python:3.11-slim-bookworm
push=false
replace=false
while [ $# -gt 0 ]; do
    case "$1" in
        --base) base=$2; shift 2 ;;
        --push) push=true; shift ;;
        --replace) replace=true; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
[ $# -eq 1 ] || { echo "usage: $0 [--base IMAGE] [--replace] [--push] NAME[:TAG]" >&2; exit 2; }
name=$1
case "$name" in *:*) ;; *) name="$name:latest" ;; esac

top=$(cd "$(dirname "$0")/.." && pwd)
build=$top/plugin/build
python=${PYTHON:-python3}

rm -rf "$build/wheels" "$build/plugin"
mkdir -p "$build/wheels" "$build/plugin/rootfs"
"$python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$build/wheels" "$top[postgres]"

image="ipledger-rootfs:build-$$"
docker build --quiet --build-arg "BASE=$base" -t "$image" -f "$top/Dockerfile" "$top" >/dev/null
container=$(docker create "$image")
docker export "$container" | tar -x -C "$build/plugin/rootfs"
docker rm "$container" >/dev/null
docker rmi "$image" >/dev/null
cp "$top/config.json" "$build/plugin/config.json"

if docker plugin inspect "$name" >/dev/null 2>&1; then
    if ! $replace; then
        echo "plugin $name exists; disable it and pass --replace to upgrade it in place" >&2
        exit 1
    fi
    # -f: networks still name this driver; they keep working once the new build is enabled
    docker plugin rm -f "$name" >/dev/null
fi
docker plugin create "$name" "$build/plugin" >/dev/null
echo "created plugin $name"
if $push; then
    docker plugin push "$name"
fi
