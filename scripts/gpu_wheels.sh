#!/usr/bin/env bash
# Wheels for an offline GPU host: one that has Python, PyTorch built for CUDA 13 and CUDA's
# libraries as nvidia-* wheels, but no network and none of slamctl's serving stack. They are
# onnxruntime-gpu (built for CUDA 13), PyTriton, the Triton client, and what those need
# beyond such a host. Pinned to the versions slamctl's CI runs, except onnxruntime-gpu, whose
# newest release for CUDA 13 this is.
#
# Downloaded here for the host's Python, packed into one tar, and split into parts of at
# most PART_MIB each, for links or copies of limited size. Then OUT_DIR holds
# part-00, part-01, ... and SHA256SUMS. On the host, scripts/gpu_install.sh checks, joins and
# installs them.
#
#   scripts/gpu_wheels.sh [OUT_DIR=.gpu] [PYTHON_VERSION=3.12] [PART_MIB=63]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.gpu}
python_version=${2:-3.12}
part_mib=${3:-63}
wheels=(
  onnxruntime-gpu==1.31.1
  nvidia-pytriton==0.7.0
  tritonclient==2.73.0
  python-rapidjson==1.25
  pyzmq==27.3.0
  gevent==26.9.0
  geventhttpclient==2.6.1
  greenlet==3.3.2
  zope.event==6.2
  zope.interface==8.7
  brotli==1.2.1
  sh==2.4.0
  importlib_metadata==10.2.0
  grpcio==1.85.3
  protobuf==6.33.6
  numpy==1.26.4
  ml_dtypes==0.5.4
  kornia==0.9.0
  kornia_rs==0.2.0
  typer==0.29.2
  rich==15.0.0
  pydantic==2.14.4
  pydantic_core==2.50.5
  typing-inspection==0.4.5
  annotated-types==0.8.0
)
platforms=()
for p in manylinux_2_35 manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014; do
  platforms+=(--platform "${p}_x86_64")
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --implementation cp \
  --python-version "$python_version" "${platforms[@]}" -d "$work/wheels" "${wheels[@]}"
rm -rf "$out"
mkdir -p "$out"
tar -C "$work/wheels" -cf "$work/wheels.tar" .
split -d -b "${part_mib}M" "$work/wheels.tar" "$out/part-"
(cd "$out" && sha256sum part-* >SHA256SUMS)
echo "$(ls "$work/wheels" | wc -l) wheels for Python $python_version, $(du -sm "$work/wheels.tar" | cut -f1) MiB," \
  "in $(ls "$out"/part-* | wc -l) parts of at most $part_mib MiB under $out/"
