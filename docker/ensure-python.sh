#!/bin/sh
# Makes the image's python3 the Python 3.11 that constraints.txt was made with, whatever the base:
# python:3.11-slim-bookworm has it in /usr/local; a plain Debian bookworm base (one made with
# debootstrap, say) gets Debian's python3, which is 3.11 too. `build` also installs the venv module.
# Every stage of a Dockerfile runs this on the same base, so the venv's python3 exists at the same
# path in the image that runs it.
set -eu
if ! command -v python3 > /dev/null 2>&1; then
    packages=python3
    if [ "${1:-}" = build ]; then packages="python3 python3-venv"; fi
    apt-get update
    apt-get install -y --no-install-recommends $packages
    rm -rf /var/lib/apt/lists/*
fi
python3 -c 'import sys; v = sys.version_info[:2]; assert v == (3, 11), f"Python {v} is not 3.11"'
