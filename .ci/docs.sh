#!/usr/bin/env bash
# Build the documentation site strictly: any warning (a broken link, a nav entry without a
# page, a page missing from nav, an API reference entry that does not resolve) fails.
# The docs' code examples are executed by tests/docs, part of the normal pytest run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore NO_MKDOCS_2_WARNING=1

echo "== docs: mkdocs build --strict"
python -m pip install -q -e ".[docs]"
site_dir="$(mktemp -d)"
trap 'rm -rf "$site_dir"' EXIT
python -m mkdocs build --strict --site-dir "$site_dir"
