#!/usr/bin/env bash
# CI entry point: builds the release binaries (bench/setup.sh) and runs every benchmark
# scenario for about a second, without pass/fail judgement, so that the harness cannot rot.
# Fails when any scenario cannot run (a proxy does not start, a request fails its check).
set -euo pipefail
exec "$(dirname "$0")/run.sh" --smoke "$@"
