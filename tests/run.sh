#!/usr/bin/env bash
# Install everything the tests need (Debian packages, the package with its test extras),
# then run the linters and the whole test suite, end-to-end tests against a real dockerd included.
# Usage: bash tests/run.sh                 every test, in parallel lanes (below)
#        bash tests/run.sh --lane NAME     one lane's tests only
#        bash tests/run.sh PYTEST_ARGS...  one pytest with these arguments, as `pytest` would
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh must run as root: the end-to-end tests start dockerd" >&2
    exit 1
fi

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v containerd >/dev/null || need+=(containerd)
command -v iptables >/dev/null || need+=(iptables)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v docker-registry >/dev/null || need+=(docker-registry)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v podman >/dev/null || need+=(podman)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v named >/dev/null || need+=(bind9)
command -v dig >/dev/null || need+=(bind9-dnsutils)
command -v knotd >/dev/null || need+=(knot)
command -v patroni >/dev/null || need+=(patroni)
command -v etcd >/dev/null || need+=(etcd-server)
if [ ${#need[@]} -gt 0 ]; then
    echo "tests/run.sh: installing from Debian: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # The tests run a PostgreSQL cluster of their own (tests/pg.py); stop the one the package
    # may have started.
    if [[ " ${need[*]} " == *" postgresql "* ]] && command -v pg_lsclusters >/dev/null; then
        pg_lsclusters -h | awk '$4 == "online" {print $1, $2}' | while read -r version cluster; do
            pg_ctlcluster "$version" "$cluster" stop || true
        done
    fi
fi

# promtool checks the example alert rules: unpacked from Debian's prometheus package rather than
# installed, so that no Prometheus server is set up on the machine
promtool_dir=/var/cache/ipledger-tests/prometheus
if ! command -v promtool >/dev/null && [ ! -x "$promtool_dir/usr/bin/promtool" ]; then
    echo "tests/run.sh: unpacking promtool from Debian's prometheus into $promtool_dir"
    mkdir -p "$promtool_dir"
    download=$(mktemp -d)
    (cd "$download" && { apt-get download prometheus 2>/dev/null ||
        { apt-get update -qq && apt-get download prometheus; }; } &&
        dpkg -x prometheus_*.deb "$promtool_dir")
    rm -rf "$download"
fi

echo "tests/run.sh: the end-to-end tests unpack Docker 26.1 and 28.5, sid's docker CLI and" \
     "docker-compose, trixie's and sid's containerd (1.7, 2.1) into /var/cache/ipledger-tests" \
     "on first use (rm -rf it to reclaim the space)"
# A virtual environment of the checkout's own, so that several checkouts never share an install.
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,postgres]'
export PATH="$PWD/.venv/bin:$PATH"

# End-to-end tests fail rather than skip when a real part is missing.
export IPLEDGER_REQUIRE_E2E=1

ruff format --check .
ruff check .
mypy

# The Debian packages the tests unpack (tests/debian_cache.py), fetched once here rather than by
# the first lane wanting them; a failure is the tests' to report, as they name what is missing.
python -m tests.debian_cache >/dev/null ||
    echo "tests/run.sh: fetching the tests' Debian packages failed; the tests needing them will say so" >&2

if [ $# -gt 0 ] && [ "$1" != --lane ]; then
    exec python -m pytest -ra "$@"
fi
exec bash tests/lanes.sh "$@"
