#!/usr/bin/env bash
# Checks (and, as root with apt, installs) the system libraries the project needs:
# WeasyPrint renders PDFs with Pango; poppler-utils (pdftoppm) is only for looking at PDFs.
# `--spark` also checks for the Java runtime PySpark needs: only the development/test install
# (`make setup`, `make test`) asks for it; the runtime install (`make demo`) needs no Java.
set -euo pipefail
spark=0
[ "${1:-}" = "--spark" ] && spark=1
python3 - <<'PY' || { echo "error: Python 3.11 or newer is required (found $(python3 --version 2>&1))" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
has_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }
need_pango() { ! has_lib 'libpango-1.0.so' || ! has_lib 'libpangoft2-1.0.so'; }
# HarfBuzz-Subset makes WeasyPrint's font subsetting fast and byte-stable; optional but wanted.
if ! has_lib 'libharfbuzz-subset.so' && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing libharfbuzz-subset0 for WeasyPrint font subsetting"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libharfbuzz-subset0 >/dev/null) \
    || echo "warning: could not install libharfbuzz-subset0; PDFs still render (fontTools subsetting)" >&2
fi
if need_pango; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Pango for WeasyPrint (apt-get install libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core >/dev/null
  else
    echo "error: WeasyPrint needs Pango. Install it, e.g.: sudo apt-get install libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core" >&2
    exit 1
  fi
fi
# PySpark (the spark extra, `--engine spark` and tests/spark) runs on a Java 17+ runtime.
[ "$spark" = 1 ] || exit 0
if ! command -v java >/dev/null && [ -z "${JAVA_HOME:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing a Java runtime for PySpark (apt-get install default-jre-headless)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null
  else
    echo "warning: no Java runtime; the Spark engine tests will be skipped. Install one, e.g.: sudo apt-get install default-jre-headless" >&2
  fi
fi
