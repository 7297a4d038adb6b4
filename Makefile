# Quick start: `make demo` (set up, generate data, train the small run if absent, run the demo
# study, write reports/demo.md) and `make test` (set up if needed, run the test suite).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
THREADS ?= 2

.PHONY: demo features reference reference-seeds seeds induction test test-kernels test-fast lint fuzz setup clean

setup: $(STAMP)

# torch is pinned here (the CPU wheel on these machines); pyproject.toml accepts a range.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,interop,ray]'
	touch $(STAMP)

demo: $(STAMP)
	@test -f runs/small/data/dataset.json || $(BIN)/hypo data generate --out runs/small/data --seed 0
	$(BIN)/hypo train --config small --out runs/small --threads $(THREADS)
	$(BIN)/hypo run specs/demo.hyp --run runs/small --report reports --threads $(THREADS)
	$(MAKE) features

# The feature layer on the demo run (the end of `make demo`): fit a basis at the final
# residual (about 15 s; skipped when present), write its exploration report, run
# specs/features.hyp.
BASIS := runs/small/features/l1_resid
features: $(STAMP)
	@test -f runs/small/checkpoints/step_004500.json || { echo "train the demo run first: make demo"; exit 2; }
	@test -f $(BASIS)/hypodsl_basis.json || $(BIN)/hypo features fit --run runs/small \
		--site blocks.1.hook_resid_post --width 64 --out $(BASIS) --threads $(THREADS)
	$(BIN)/hypo features explore $(BASIS) --name l1 --out reports/features_explore --threads $(THREADS)
	$(BIN)/hypo run specs/features.hyp --run runs/small --report reports --threads $(THREADS)

# The research draft's reference run (about an hour of training on 2 cores; resumes if killed),
# its feature bases, sweep and exploration reports, then the reference study.
REF := runs/reference
reference: $(STAMP)
	@test -f $(REF)/data/dataset.json || $(BIN)/hypo data generate --out $(REF)/data --seed 0
	$(BIN)/hypo train --config reference --out $(REF) --threads $(THREADS)
	@test -f $(REF)/features/l2/hypodsl_basis.json || $(BIN)/hypo features fit --run $(REF) \
		--site blocks.2.hook_resid_post --width 64 --out $(REF)/features/l2 --threads $(THREADS)
	@test -f $(REF)/features/final_norm/hypodsl_basis.json || $(BIN)/hypo features fit \
		--run $(REF) --site ln_final.hook_normalized --width 64 --out $(REF)/features/final_norm \
		--threads $(THREADS)
	$(BIN)/hypo sweep $(REF) --report reports
	$(BIN)/hypo features explore $(REF)/features/l2 --name l2 --out reports/reference_explore \
		--threads $(THREADS)
	$(BIN)/hypo run specs/reference/ --run $(REF) --report reports --threads $(THREADS)

# Five more seeds of the reference config (same data, other initial weights and batch orders),
# to step 14,000 with the reference run's checkpoints: about an hour each on 2 cores; resumes
# if killed. EXECUTOR=ray THREADS=1 trains two at a time.
REF_SEEDS ?= 1..5
reference-seeds: $(STAMP)
	@test -f $(REF)/data/dataset.json || $(BIN)/hypo data generate --out $(REF)/data --seed 0
	$(BIN)/hypo train --config reference --seeds $(REF_SEEDS) --data $(REF)/data \
		--out runs/reference_seeds --threads $(THREADS) --executor $(EXECUTOR)

# Five more seeds of the demo's `small` config (the draft's stage 6), then the seed matrix.
# EXECUTOR=ray THREADS=1 trains them as Ray tasks, one per core (docs/own_model.md).
SEEDS ?= 1..5
EXECUTOR ?= local
seeds: $(STAMP)
	@test -f runs/small/data/dataset.json || $(MAKE) demo
	$(BIN)/hypo train --config small --seeds $(SEEDS) --data runs/small/data --out runs \
		--threads $(THREADS) --executor $(EXECUTOR)
	$(BIN)/hypo run specs/seeds.hyp --report reports --threads $(THREADS)

# A tiny GPT-2 trained with transformers on an induction task (about 80 s), imported through a
# task file, then specs/induction.hyp (docs/own_model.md, "The induction example").
IND := runs/induction
induction: $(STAMP)
	@test -f $(IND)_hf/checkpoints/checkpoint-1200/model.safetensors || $(BIN)/python \
		examples/induction/train_gpt2.py --out $(IND)_hf --threads $(THREADS)
	@test -f $(IND)/config.json || $(BIN)/hypo import $(IND)_hf/checkpoints --task $(IND)_hf/task \
		--out $(IND)
	$(BIN)/hypo run specs/induction.hyp --run $(IND) --report reports --threads $(THREADS)

test: $(STAMP)
	$(BIN)/python -m pytest -q
	$(MAKE) test-kernels

# The tests of two computations of one value again under other CPU kernels (PyTorch's portable
# ones with MKL's reproducible branch; MKL's AVX2 branch), so that a test relying on this
# processor's kernel choices fails on every machine (docs/reproducibility.md).
test-kernels: $(STAMP)
	ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE $(BIN)/python -m pytest -q -m numerics
	MKL_CBWR=AVX2 $(BIN)/python -m pytest -q -m numerics

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The spec fuzzer at 20,000 mutants and the import and task-file fuzzers at 20,000 cases each
# (CI runs 3,000 and 1,500).
fuzz: $(STAMP)
	HYPO_FUZZ_MUTANTS=20000 HYPO_FUZZ_CASES=20000 $(BIN)/python -m pytest -q \
		tests/unit/test_fuzz_cli.py tests/integration/test_import_faults.py \
		tests/integration/test_taskfile_faults.py -k fuzz

lint: $(STAMP)
	$(BIN)/ruff check hypodsl runner tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
