#!/usr/bin/env bash
# Runs the live demo (examples/quickstart.rs) against $NATS_URL, or against a
# throw-away nats-server on a random port and a temp dir (installed if
# missing).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/with-nats-server.sh
cargo run --release --example quickstart
