#!/usr/bin/env bash
# Runs the whole test suite against a real nats-server (installed if
# missing): unit, integration, example and doc tests, release build because
# several tests measure time.
set -euo pipefail
cd "$(dirname "$0")/.."

NATS_SERVER_BIN="$(bash scripts/install-nats-server.sh | tail -n 1)"
export NATS_SERVER_BIN
echo "test.sh: using $NATS_SERVER_BIN" >&2

cargo test --release --all-targets "$@"
cargo test --release --doc "$@"
