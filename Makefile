# Two entry points: `make recipe` (the main job) and `make test`. Both create .venv first.
PY := .venv/bin/python

.PHONY: setup recipe test bench-peers

setup:
	bash tools/setup_env.sh

recipe: setup
	cd egs/librispeech && PATH=$(CURDIR)/.venv/bin:$$PATH ./run.sh

test: setup
	$(PY) -m pytest -q

bench-peers:
	bash tools/setup_bench_peers.sh
