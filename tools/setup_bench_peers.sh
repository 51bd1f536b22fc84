#!/usr/bin/env bash
# Create (or reuse) .venv-peers: a separate environment holding the toolkits speechforge is
# benchmarked against (ESPnet today), for bench/ only. The project never imports from it.
#
#   bash tools/setup_bench_peers.sh          # or: make bench-peers
#   .venv-peers/bin/python bench/encoder.py --quick
#
# `pip install espnet` resolves a dependency pinned to a git URL and fails without internet, so
# espnet goes in with --no-deps and the modules its Conformer encoder imports are listed here.
# torch and torchaudio go in as for .venv (tools/torch_venv.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv-peers"
source "$root/tools/torch_venv.sh"
torch_venv bench-peers

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
