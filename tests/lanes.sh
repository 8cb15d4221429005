#!/usr/bin/env bash
# The full suite in parallel lanes, one pytest process each, started by tests/run.sh once the
# install, ruff and mypy are done (run it through tests/run.sh: it sets up PATH and the
# environment). Lanes share no state: docs/development.md ("Lanes") says what keeps them apart
# and where a new test goes.
# Usage: bash tests/lanes.sh                  every lane at once
#        bash tests/lanes.sh --lane NAME [PYTEST_ARGS...]   one lane, in the foreground
set -euo pipefail
cd "$(dirname "$0")/.."

# name and directories, in the order they are reported. Everything that puts something on the
# host's network (a dockerd, containerd, a CNI bridge, a veth; they all take the same documentation
# ranges) is in `host`, the catch-all: it runs every directory the other lanes do not name, so
# that a new directory of tests is run, and runs where the network tests are.
LANES=(host integration unit)
declare -A PATHS=(
    [integration]="tests/integration tests/ui"
    # and the CNI and deploy tests that put nothing on the host's network, to shorten `host`
    [unit]="tests/unit tests/api tests/cni/test_plugin_process.py tests/cni/test_spool_process.py
        tests/deploy/test_manifests.py tests/deploy/test_self_contained_cni.py"
)
RESULTS=${IPLEDGER_TEST_RESULTS:-test-results}

# the pytest arguments of one lane: its paths, less what other lanes take from within them
# (a lane may name single files of another's directory, to even out their times)
lane_args() {
    local lane=$1 mine other path
    local paths=tests
    [ "$lane" = host ] || paths=${PATHS[$lane]}
    for mine in $paths; do
        echo "$mine"
        for other in "${!PATHS[@]}"; do
            [ "$other" != "$lane" ] || continue
            for path in ${PATHS[$other]}; do
                if [[ $path == "$mine"/* ]]; then echo "--ignore=$path"; fi
            done
        done
    done
}

pytest_of() {
    local lane=$1
    shift
    local args
    mapfile -t args < <(lane_args "$lane")
    # a temporary directory of the lane's own: pytest removes all but the three newest under
    # /tmp/pytest-of-USER when a session starts, which may be another lane's, still in use
    python -m pytest -ra --durations=15 -o "cache_dir=.pytest_cache/lane-$lane" \
        --basetemp="/tmp/ipl-lane-$lane-$$" \
        --junitxml="$RESULTS/$lane.xml" "${args[@]}" "$@"
}

mkdir -p "$RESULTS"
if [ "${1:-}" = --lane ]; then
    lane=${2:?--lane needs a name: ${LANES[*]}}
    [[ " ${LANES[*]} " == *" $lane "* ]] || { echo "no lane $lane: ${LANES[*]}" >&2; exit 2; }
    shift 2
    pytest_of "$lane" "$@"
    exit
fi

# Each lane in its own process group (job control), so that stopping the run stops every lane's
# pytest with SIGINT, which lets its fixtures clean up.
set -m
declare -A PID
for lane in "${LANES[@]}"; do
    rm -f "$RESULTS/$lane.status"
    (
        started=$SECONDS
        status=0
        pytest_of "$lane" >"$RESULTS/$lane.log" 2>&1 || status=$?
        echo "$status $((SECONDS - started))" >"$RESULTS/$lane.status"
    ) &
    PID[$lane]=$!
    echo "tests/lanes.sh: lane $lane started: $(lane_args "$lane" | tr '\n' ' ')(log: $RESULTS/$lane.log)"
done
stop_lanes() {
    for lane in "${LANES[@]}"; do
        [ -e "$RESULTS/$lane.status" ] || kill -INT -- "-${PID[$lane]}" 2>/dev/null || true
    done
    wait
}
trap stop_lanes EXIT
trap 'exit 130' INT TERM

# Wait for them all, saying when each ends and, every 5 minutes, how far the others are.
started=$SECONDS
report=$((started + 300))
running=${#LANES[@]}
declare -A DONE
while [ "$running" -gt 0 ]; do
    sleep 5
    progress=()
    for lane in "${LANES[@]}"; do
        if [ -n "${DONE[$lane]:-}" ]; then continue; fi
        if [ -e "$RESULTS/$lane.status" ]; then
            DONE[$lane]=1
            running=$((running - 1))
            read -r status seconds <"$RESULTS/$lane.status"
            echo "tests/lanes.sh: lane $lane ended after ${seconds} s (status $status): $(tail -n 1 "$RESULTS/$lane.log")"
        else
            percent=$(tail -c 300 "$RESULTS/$lane.log" | grep -o '\[ *[0-9]*%\]' | tail -n 1 || true)
            progress+=("$lane ${percent:-starting}")
        fi
    done
    if [ "$running" -gt 0 ] && [ "$SECONDS" -ge "$report" ]; then
        report=$((report + 300))
        echo "tests/lanes.sh: after $((SECONDS - started)) s: ${progress[*]}"
    fi
done
wait

# Each lane's failures, durations and -ra summary, then the times; failing if any lane failed.
failed=()
for lane in "${LANES[@]}"; do
    echo
    echo "======== lane $lane ($RESULTS/$lane.log, $RESULTS/$lane.xml) ========"
    sed -n '/^=* \(FAILURES\|ERRORS\|slowest\|short test summary\)/,$p' "$RESULTS/$lane.log" |
        grep . || tail -n 20 "$RESULTS/$lane.log"
    read -r status _ <"$RESULTS/$lane.status"
    [ "$status" -eq 0 ] || failed+=("$lane")
done
echo
for lane in "${LANES[@]}"; do
    read -r status seconds <"$RESULTS/$lane.status"
    printf 'tests/lanes.sh: lane %-12s %5d s  %s\n' "$lane" "$seconds" \
        "$([ "$status" -eq 0 ] && echo passed || echo "FAILED (status $status)")"
done
echo "tests/lanes.sh: all lanes: $((SECONDS - started)) s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "tests/lanes.sh: failed lanes: ${failed[*]}" >&2
    exit 1
fi
