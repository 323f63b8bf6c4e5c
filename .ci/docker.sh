#!/usr/bin/env bash
# CI step for grading in containers (issue 6), run at the end of .ci/run on a fresh clone: installs
# and starts the engine (docker.io, dockerd), makes the local base image (debootstrap) and builds the
# grading image when missing, then runs the docker-marked tests. Fails when a test fails, when none
# is collected, or when any is skipped (they skip only without AUTOGRADER_DOCKER_TESTS=1).
set -uo pipefail
cd "$(dirname "$0")/.."
export UV_COMPILE_BYTECODE=1
started=$SECONDS

uv run --frozen python -m autograder.sandbox.container_setup ${AUTOGRADER_DOCKER_ENGINE:+--engine "$AUTOGRADER_DOCKER_ENGINE"} || exit 1
echo "CI docker: engine and grading image ready in $((SECONDS - started)) s"

log=$(mktemp)
AUTOGRADER_DOCKER_TESTS=1 uv run --frozen pytest -m docker -s -rs -p no:cacheprovider 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
summary=$(tail -n 1 "$log")
rm -f "$log"
if [ "$status" -eq 5 ]; then
    echo "CI docker: pytest collected no docker test; that is a failure" >&2
    exit 1
fi
[ "$status" -eq 0 ] || exit "$status"
if grep -q " skipped" <<<"$summary" || ! grep -q " passed" <<<"$summary"; then
    echo "CI docker: some docker test did not run ($summary); that is a failure" >&2
    exit 1
fi
echo "CI docker: done in $((SECONDS - started)) s"
