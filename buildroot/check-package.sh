#!/bin/sh
# Runs Buildroot's linter on this BR2_EXTERNAL tree.
# Usage: buildroot/check-package.sh BUILDROOT_DIR
# BUILDROOT_DIR is a Buildroot checkout kept outside this repository;
# it needs python3 with python-magic and flake8, and the ShellCheck
# program. Works offline.
set -eu

if [ $# -ne 1 ] || [ ! -x "$1/utils/check-package" ]; then
	echo "usage: $0 BUILDROOT_DIR (a Buildroot checkout)" >&2
	exit 64
fi
br="$(cd "$1" && pwd)"
cd "$(dirname "$0")/.."
# shellcheck disable=SC2046 # one argument per file
"${br}/utils/check-package" -b $(git ls-files buildroot)
