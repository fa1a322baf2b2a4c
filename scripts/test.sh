#!/usr/bin/env bash
# Runs every test: unit tests, the .eml fixtures and the integration tests
# against a private Dovecot + Postfix that the tests start themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --all-targets "$@"
