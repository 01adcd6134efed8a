#!/usr/bin/env bash
# The GPU checks, on an NVIDIA machine with no Rust and no GDAL: the backend conformance suite on
# CUDA and on Vulkan (wgpu), then the kernel benchmark on every backend, with the results and a
# summary written to one folder.
#
# Needs only a release binary built without GDAL, e.g. on a build machine:
#   cargo build --release -p constellation --no-default-features --features wgpu,cuda,nvml
# and then, on the GPU machine:
#   scripts/gpu-check.sh [--bin PATH] [--out DIR] [--quick]
#
# CUDA: libcuda comes with the driver; NVRTC (libnvrtc.so) is looked for on the loader path, in
# the CUDA toolkit's lib64 folder and in pip's nvidia-cuda-nvrtc wheel. Vulkan: needs the loader
# (libvulkan.so.1) and the driver's ICD; set GL_DEBS=DIR to unpack carried loader packages
# (libvulkan1 and friends, as .deb files) when the machine has none.
set -uo pipefail

bin=target/release/constellation
out=gpu-check-out
quick=1
while (($#)); do
  case $1 in
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --full) quick=0; shift ;;
    --quick) quick=1; shift ;;
    *) echo "gpu-check: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -x $bin ]] || { echo "gpu-check: no executable at $bin (build it first, see the header)" >&2; exit 2; }
mkdir -p "$out"
log=$out/log.txt
: >"$log"
say() { echo "$*" | tee -a "$log"; }

# Loader path for NVRTC.
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
  $(ls -d /usr/local/cuda-*/lib64 2>/dev/null) \
  $(python3 -c 'import nvidia.cuda_nvrtc, os; print(os.path.join(list(nvidia.cuda_nvrtc.__path__)[0], "lib"))' 2>/dev/null); do
  if compgen -G "$d/libnvrtc.so*" >/dev/null; then
    export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    say "nvrtc: $(ls "$d"/libnvrtc.so* | head -1)"
    break
  fi
done

# Vulkan loader and the NVIDIA ICD.
if ! ldconfig -p | grep -q libvulkan.so.1 && [[ -n ${GL_DEBS:-} ]]; then
  for f in "$GL_DEBS"/*.deb; do dpkg -x "$f" /; done
  ldconfig
  say "vulkan: unpacked the loader from $GL_DEBS"
fi
if [[ -z ${VK_DRIVER_FILES:-} ]]; then
  for icd in /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json \
    /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; do
    if [[ -f $icd ]]; then export VK_DRIVER_FILES=$icd; break; fi
  done
fi
say "vulkan: loader $(ldconfig -p | grep -m1 -o '/.*libvulkan.so.1' || echo missing), ICD ${VK_DRIVER_FILES:-none found}"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}

say "== machine"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1
  uname -a; nproc; ldd "$bin"; } >>"$log" 2>&1
say "== constellation gpus"
"$bin" gpus >>"$log" 2>&1; say "gpus: exit $?"

status=0
for backend in cuda wgpu; do
  say "== conformance on $backend"
  "$bin" conformance --backend "$backend" --big-plane --json "$out/conformance-$backend.json" >>"$log" 2>&1
  rc=$?
  say "conformance $backend: exit $rc"
  ((rc == 0)) || status=1
done

say "== bench (kernels, every backend)"
mode=(--quick)
((quick)) || mode=()
"$bin" bench --kernels-only "${mode[@]}" --backend cpu,cuda,wgpu --out "$out" >>"$log" 2>&1
rc=$?
say "bench: exit $rc"
((rc == 0)) || status=1

{
  echo "# GPU check — $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
  echo
  echo "Run on $(date -u +%Y-%m-%dT%H:%M:%SZ) with $("$bin" --version 2>/dev/null)."
  echo
  grep -E '^(conformance|bench|gpus|nvrtc|vulkan):' "$log" | sed 's/^/- /'
  echo
  echo "Conformance cases that failed or did not run:"
  grep -E 'FAIL|NOT RUN' "$log" | sed 's/^/    /' || echo "    none"
} >"$out/summary.md"
cat "$out/summary.md"
exit $status
