#!/usr/bin/env bash
# Runs Switchyard's benchmarks: the end-to-end and shape-of-cost suite (one table per group
# on stdout), then the criterion micro-benchmarks. Not part of CI.
#
#   benches/run.sh                      # everything (a few minutes)
#   benches/run.sh --repeat 3           # each scenario three times, medians reported
#   benches/run.sh --group throughput   # arguments go to the e2e binary (see --help)
#
# Results and how to read them: docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -p switchyard-benches --bin e2e -- "$@"
cargo bench -p switchyard-benches --bench micro
