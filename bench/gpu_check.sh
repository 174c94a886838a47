#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py): install, kernel tests, kernel table, training step; one Markdown file.
#   bench/gpu_check.sh [--out gpu-check.md]          on the GPU machine, from a fresh checkout, offline
#   bench/gpu_check.sh --smoke --out /tmp/x.md       on CPU: every path, tiny shapes, no install
# PYTHON picks the interpreter (default python3: the GPU image's, which holds torch). Wheels carried in .whl/
# (make gpu-wheels) are installed by the script itself, into /tmp.
# The steps run in the checkout whatever the current folder; a relative --out is the current folder's.
set -euo pipefail
exec "${PYTHON:-python3}" "$(dirname "$0")/gpu_check.py" "$@"
