# Regenerate the committed figures and run the tests.
#
#   make figures        every analysis, full size, into results/ and figures/ (see figures/README.md)
#   make quick-figures  the same on small subsets, into out/quick-figures/ (a smoke run; not committed)
#   make test           the test suite
#
# `probe figures` runs the analyses of the package (probe.analyses) and writes into this
# checkout. The offline data mirror ../shared/data is used when it exists and
# PROBE_DATA_MIRROR is not already set.

PYTHON ?= python3
MODEL ?= e5-small-q4
PROBE ?= probe

ifeq ($(origin PROBE_DATA_MIRROR), undefined)
ifneq ($(wildcard ../shared/data),)
export PROBE_DATA_MIRROR := $(abspath ../shared/data)
endif
endif
export TOKENIZERS_PARALLELISM := false

.PHONY: figures quick-figures test

figures:
	$(PROBE) figures --model $(MODEL) --out-root .

quick-figures:
	$(PROBE) figures --model $(MODEL) --quick --out-root out/quick-figures

test:
	$(PYTHON) -m pytest -q
