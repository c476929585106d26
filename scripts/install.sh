#!/usr/bin/env bash
# Installs dctnet and everything its tests need on a fresh Debian machine (idempotent).
#   DCTNET_TORCH: the torch requirement installed first (default: the pinned CPU wheel).
#   Users with their own (CUDA) torch can skip this script: `pip install -e ".[test]"`.
set -euo pipefail
cd "$(dirname "$0")/.."

# cjpeg/djpeg/jpegtran make the test variants; headers and library for the native reader.
need_apt=()
command -v cjpeg >/dev/null 2>&1 || need_apt+=(libjpeg-turbo-progs)
# PyTurboJPEG (RGB encode/decode in eval and benchmarks) loads libturbojpeg at run time.
ldconfig -p 2>/dev/null | grep -q 'libturbojpeg\.so\.0' || need_apt+=(libturbojpeg0)
[ -f /usr/include/jpeglib.h ] || need_apt+=(libjpeg62-turbo-dev)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
# tests/test_eval_report_html.py renders `dctnet eval`'s report.html in headless Chromium.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
# The CPU wheel first: a bare `torch` requirement would pull a multi-GB CUDA build.
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  "$PY" -m pip install -q "${DCTNET_TORCH:-torch==2.13.0}"
fi
"$PY" -m pip install -q scikit-build-core nanobind
# --no-build-isolation: build against the nanobind/scikit-build-core just installed (and
# never let a build environment resolve torch on its own).
"$PY" -m pip install -q --no-build-isolation -e ".[test]"
