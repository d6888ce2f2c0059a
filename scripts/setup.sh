#!/usr/bin/env bash
# One idempotent set-up step for a fresh Debian machine: the Arm toolchain and QEMU (system packages),
# then a virtualenv at .venv with divqat-tvm installed editable (with test and TFLite extras).
# Usage: scripts/setup.sh            (safe to re-run; skips what is already there)
#        scripts/setup.sh --cluster  (the [cluster] extra: Ray and fsspec, for --executor ray; docs/cluster.md;
#                                      the dev extra, which the tests need, includes it and [harness] already)
set -euo pipefail
extras="dev,tflite"
for arg in "$@"; do
  case "$arg" in
    --cluster) extras="dev,tflite,cluster" ;;
    *) echo "setup: unknown option $arg (use --cluster or nothing)" >&2; exit 2 ;;
  esac
done
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

need_apt=()
for tool_pkg in arm-none-eabi-gcc:gcc-arm-none-eabi qemu-system-arm:qemu-system-arm clang-format:clang-format gcc:gcc \
    clang:clang llvm-cov:llvm llvm-profdata:llvm; do
  command -v "${tool_pkg%%:*}" >/dev/null 2>&1 || need_apt+=("${tool_pkg##*:}")
done
[ -f /usr/lib/arm-none-eabi/newlib/libc.a ] || need_apt+=(libnewlib-arm-none-eabi)
# libFuzzer and the sanitizer runtimes for the host fuzzing of the device code (tests/reliability/test_host_fuzz.py)
compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" >/dev/null || need_apt+=(libclang-rt-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "setup: installing Debian packages: ${need_apt[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install --no-install-recommends -y -qq \
    gcc gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm clang-format clang llvm "${need_apt[@]}" >/dev/null
fi

py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
[ -x .venv/bin/python ] || "$py" -m venv .venv
# torch first and exactly: a bare `torch` requirement would pull a multi-GB CUDA build.
.venv/bin/pip install -q --disable-pip-version-check "torch==2.13.0"
.venv/bin/pip install -q --disable-pip-version-check -e ".[$extras]"
echo "setup: ready (.venv/bin/divqat-tvm --help)"
