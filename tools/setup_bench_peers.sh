#!/usr/bin/env bash
# Create (or reuse) .venv-peers: a separate environment holding the toolkits speechforge is
# benchmarked against (ESPnet today), for bench/ only. The project never imports from it.
#
#   bash tools/setup_bench_peers.sh          # or: make bench-peers
#   .venv-peers/bin/python bench/encoder.py --quick
#
# `pip install espnet` resolves a dependency pinned to a git URL and fails without internet, so
# espnet goes in with --no-deps and the modules its Conformer encoder imports are listed here.
# torchaudio goes in with --no-deps for the same reason as in tools/setup_env.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv-peers"
py=${PYTHON:-python3.11}
command -v "$py" >/dev/null || py=python3

if [ ! -x "$venv/bin/python" ]; then
  echo "bench-peers: creating $venv with $($py --version)"
  "$py" -m venv "$venv"
fi
pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }

if ! "$venv/bin/python" -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.14.1")' 2>/dev/null; then
  echo "bench-peers: installing torch 2.14.1 (large; taken from the local wheel cache when present)"
  pip install torch==2.14.1
fi
if ! "$venv/bin/python" -c 'import torchaudio' 2>/dev/null; then
  pip install --no-deps torchaudio==2.11.0
fi
if ! "$venv/bin/python" -c 'import espnet2.asr.encoder.conformer_encoder' 2>/dev/null; then
  echo "bench-peers: installing espnet 202511 and the modules its encoders import"
  pip install --no-deps espnet==202511
  pip install numpy scipy packaging PyYAML soundfile configargparse typeguard humanfriendly \
    torch_complex kaldiio filelock
fi
echo "bench-peers: installing speechforge (editable, light dependencies only)"
pip install pluggy omegaconf sentencepiece jiwer
pip install --no-deps --no-build-isolation -e "$root"
"$venv/bin/python" -c 'import espnet2.asr.encoder.conformer_encoder, speechforge' \
  || { echo "bench-peers: $venv cannot import espnet2 and speechforge together" >&2; exit 1; }
echo "bench-peers: $venv ready"
