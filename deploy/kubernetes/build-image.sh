#!/usr/bin/env bash
# Build the DaemonSet's image from this repository's Dockerfile, with no registry:
#
#   deploy/kubernetes/build-image.sh [--base IMAGE] [--save FILE.tar] [NAME[:TAG]]
#
# NAME defaults to ipledger:VERSION (the tag daemonset.yaml names). The wheels of ipledger and its
# dependencies are built first (from PyPI, or pip's own index settings) into plugin/build/wheels,
# the base image is made from Debian packages by plugin/base-image.sh (debootstrap, `docker
# import`) unless --base names one with Python 3.11+ and its venv module, and the image is built
# with the docker CLI as configured (DOCKER_HOST). With --save, it is also written to FILE.tar for
# `ctr -n k8s.io images import FILE.tar` on each node.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-python3}
base=""
save=""
while [ $# -gt 0 ]; do
    case "$1" in
        --base) base=$2; shift 2 ;;
        --save) save=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
[ $# -le 1 ] || { echo "usage: $0 [--base IMAGE] [--save FILE.tar] [NAME[:TAG]]" >&2; exit 2; }
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$top/pyproject.toml")
name=${1:-ipledger:$version}

rm -rf "$top/plugin/build/wheels"
mkdir -p "$top/plugin/build/wheels"
"$python" -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$top/plugin/build/wheels" "$top[postgres]"

[ -n "$base" ] || base=$(bash "$top/plugin/base-image.sh")
docker build --quiet --build-arg "BASE=$base" -t "$name" -f "$top/Dockerfile" "$top" >/dev/null
echo "built $name"
if [ -n "$save" ]; then
    docker save -o "$save" "$name"
    echo "saved $name to $save"
fi
