#!/bin/sh
# Runs the packed GPU check (bench/device/README.md) on a Linux x64 machine with no Node, npm or
# network: unpacks payload.tar.xz next to this script, finds or supplies the Vulkan loader and the
# NVIDIA Vulkan driver manifest, then runs gpu.mjs with the carried node. Arguments go to gpu.mjs
# (e.g. --batches 1,4,16 --steps 20). Figures are printed and written to $OUT/gpu-results.json
# ($OUT: the device machine's result folder; the script's folder when unset).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${DEVICE_WORK:-${TMPDIR:-/tmp}/device-bench}
RESULTS=${OUT:-$HERE}
rm -rf "$WORK" && mkdir -p "$WORK"
if command -v xz >/dev/null 2>&1; then
  tar -xJf "$HERE/payload.tar.xz" -C "$WORK"
elif command -v python3 >/dev/null 2>&1; then
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2])' "$HERE/payload.tar.xz" "$WORK"
else
  echo "device bench: neither xz nor python3 is here to unpack payload.tar.xz" >&2
  exit 3
fi
chmod +x "$WORK/node"
echo "== machine"
uname -srm
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: not found"

echo "== Vulkan"
# ONNX Runtime's WebGPU provider (Dawn) dlopens libvulkan.so.1: the system's when it has one.
if ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1 '; then
  echo "loader: the system's libvulkan.so.1"
elif [ -e "$WORK/vulkan/usr/lib/x86_64-linux-gnu/libvulkan.so.1" ]; then
  export LD_LIBRARY_PATH="$WORK/vulkan/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  for deb in "$WORK"/debs/*.deb; do echo "loader: carried ${deb##*/}"; done
else
  echo "loader: none on the system and none carried (packed with --no-vulkan): WebGPU cannot start"
fi
# The loader finds drivers through ICD manifests. NVIDIA's driver is libGLX_nvidia.so.0; a
# container given only compute capabilities has neither it nor the manifest.
manifest=""
for d in /etc/vulkan/icd.d /usr/share/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
  for f in "$d"/*nvidia*.json; do [ -e "$f" ] && manifest="$f"; done
done
if [ -n "$manifest" ]; then
  echo "NVIDIA ICD manifest: $manifest"
elif ldconfig -p 2>/dev/null | grep -q 'libGLX_nvidia.so.0 '; then
  cat >"$WORK/nvidia_icd.json" <<'JSON'
{ "file_format_version": "1.0.0", "ICD": { "library_path": "libGLX_nvidia.so.0", "api_version": "1.3.0" } }
JSON
  export VK_ICD_FILENAMES="$WORK/nvidia_icd.json" VK_DRIVER_FILES="$WORK/nvidia_icd.json"
  echo "NVIDIA ICD manifest: none installed; wrote $WORK/nvidia_icd.json for libGLX_nvidia.so.0"
else
  echo "NVIDIA Vulkan driver: libGLX_nvidia.so.0 not found (a container needs NVIDIA_DRIVER_CAPABILITIES with graphics); WebGPU will report no adapter"
fi

echo "== bench"
cd "$WORK"
status=0
if command -v timeout >/dev/null 2>&1; then
  timeout "${DEVICE_TIMEOUT_S:-540}" ./node gpu.mjs --models "$WORK/models" --out "$RESULTS/gpu-results.json" "$@" || status=$?
else
  ./node gpu.mjs --models "$WORK/models" --out "$RESULTS/gpu-results.json" "$@" || status=$?
fi
case $status in
  0) echo "== done: WebGPU figures, outputs match the CPU provider" ;;
  1) echo "== done: the WebGPU outputs did NOT match the CPU provider (see above)" ;;
  2) echo "== done: WebGPU was not usable; the figures are CPU figures (see above)" ;;
  124) echo "== stopped after ${DEVICE_TIMEOUT_S:-540} s" ;;
  *) echo "== failed (exit $status)" ;;
esac
exit $status
