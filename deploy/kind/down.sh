#!/usr/bin/env bash
# Deletes the kind cluster made by deploy/kind/up.sh (not exercised here: no Docker engine).
set -euo pipefail
kind delete cluster --name "${CLUSTER:-caldera}"
