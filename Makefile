# phrase-rescorer: `make demo` runs the main job, `make test` runs the tests.
# Both set everything up first (a virtual environment in .venv, torch 2.13.0 CPU from
# the local wheel, the rest from PyPI, KenLM's lmplz and build_binary built from the kenlm
# source package with its headers, the decoder's search core, its table reader, MERT's envelope
# sweep and its LM over KenLM's C++ API compiled with Cython); set-up
# is redone only when setup.cfg, setup.py or pyproject.toml change, the compiled parts when their
# sources do.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= ../shared/data
export RESCORER_DATA := $(abspath $(DATA))

.PHONY: setup test demo bench reproduce clean

setup: $(VENV)/.installed $(VENV)/.search-built

$(VENV)/.installed: setup.cfg setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	bash moses_integration/install_kenlm.sh $(VENV)
	touch $@

# the compiled parts (the decoder's search core and table reader, MERT's envelope sweep, the
# decoder's LM over KenLM's C++ API), compiled by Cython in place (pip install -e builds the first
# three, and the last once install_kenlm.sh has installed KenLM's headers; this builds them all
# when their sources change, and fails if KenLM's headers or libkenlm.so are missing)
$(VENV)/.search-built: $(VENV)/.installed moses_integration/search.py moses_integration/envelope.py \
		moses_integration/table_scan.pyx moses_integration/kenlm_core.pyx
	KENLM_INCLUDE=$(abspath $(VENV))/include/kenlm \
	KENLM_LIB=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])') \
	$(BIN)/python setup.py --quiet build_ext --inplace
	touch $@

test: setup
	$(BIN)/python -m pytest -q --durations=15 tests

demo: setup
	PATH=$(abspath $(BIN)):$$PATH bash experiments/demo.sh

bench: setup
	$(BIN)/python experiments/bench_score.py

# the paper's Table 1 on the shared Moses baseline (hours on 2 cores; every stage resumes)
reproduce: setup
	$(BIN)/python experiments/reproduce.py --config experiments/table1.ini

clean:
	rm -rf $(VENV) work
