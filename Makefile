# The two commands of the README. Both set up .venv first (scripts/bootstrap.sh is idempotent).
.PHONY: demo test install bench

VENV := .venv
STAMP := $(VENV)/.imnet-installed

$(STAMP): setup.py scripts/bootstrap.sh
	bash scripts/bootstrap.sh
	touch $(STAMP)

install: $(STAMP)

# Set up, then run the main job on embedded demo data: fake ILSVRC2012 archives -> prep -> train -> eval.
demo: $(STAMP)
	$(VENV)/bin/imnet demo --out demo_out

# Set up, then run the test suite (CPU only; GPU tests skip cleanly), in JOBS pytest-xdist workers
# (default: the CPUs this process may use, at most 4; JOBS=0 runs it in one process).
JOBS ?= $(shell python3 -c 'import os; print(min(4, len(os.sched_getaffinity(0))))')
test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -ra -n $(JOBS) tests
