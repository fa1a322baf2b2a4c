#!/usr/bin/env bash
# The demo: installs what is missing, builds ticketd, starts a private mail
# rig, lets buyers write in and shows the tickets and acknowledgements.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet --bin ticketd --example demo
exec ./target/release/examples/demo ./target/release/ticketd
