# Two entry points: `make recipe` (the main job) and `make test`. Both create .venv first.
PY := .venv/bin/python

.PHONY: setup recipe test bench-peers

setup:
	bash tools/setup_env.sh

recipe: setup
	.venv/bin/speechforge config show egs/librispeech/conf/ctc_conformer_small.yaml vocab_size=256 --params

test: setup
	$(PY) -m pytest -q

bench-peers:
	bash tools/setup_bench_peers.sh
