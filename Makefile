# xenlab: `make lab` opens the lab, `make test` runs every test. Both set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PYTHONHASHSEED := 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: lab test e2e fuzz bench notebooks lint clean setup realxen lite lite-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# nbgrader (test extra: tests/test_nbgrader.py) brings JupyterLab and server extensions of its own and
# notebook 7's; they are switched off in this venv so the lab looks and starts as without it.
NBGRADER_SERVER_EXTS := formgrader validate_assignment assignment_list course_list
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[lab,test]'
	$(BIN)/jupyter labextension disable --level=sys_prefix @jupyter/nbgrader @jupyter-notebook/lab-extension >/dev/null 2>&1
	$(BIN)/jupyter server extension disable --sys-prefix notebook \
	    $(addprefix nbgrader.server_extensions.,$(NBGRADER_SERVER_EXTS)) >/dev/null 2>&1
	touch $@

setup: $(VENV)/.installed

lab: $(VENV)/.installed
	$(BIN)/xenlab lab xenlab-work

lint: $(VENV)/.installed
	$(BIN)/ruff check xenlab tests bench tools

test: $(VENV)/.installed
	@tools/ensure-debs gcc libxen-dev xenstore-utils xen-utils-4.17 chromium
	$(BIN)/ruff check xenlab tests bench tools
	$(BIN)/python tools/run_notebooks.py --check
	$(BIN)/python -m pytest tests notebooks --nbval --nbval-sanitize-with notebooks/sanitize.cfg -m "not slow" -q -rs

e2e: $(VENV)/.installed
	@tools/ensure-debs chromium
	$(BIN)/python -m pytest tests -m e2e -q

# The lessons as a static JupyterLite site in build/lite/ (README: "For a class without installs"), built
# in its own pinned environment (build/lite-venv) from PyPI and the npm registry; tools/build_lite.py.
LITE_VENV := build/lite-venv
$(LITE_VENV)/.installed: tools/lite-requirements.txt
	rm -rf $(LITE_VENV)
	$(PYTHON) -m venv $(LITE_VENV)
	$(LITE_VENV)/bin/python -m pip install -q -r tools/lite-requirements.txt
	touch $@

lite: $(LITE_VENV)/.installed
	@command -v npm >/dev/null || tools/ensure-debs npm
	$(LITE_VENV)/bin/python tools/build_lite.py

lite-test: lite $(VENV)/.installed
	@tools/ensure-debs chromium
	$(BIN)/python -m pytest tests/test_lite_browser.py -q -rs

FUZZ_EXAMPLES ?= 5000
fuzz: $(VENV)/.installed
	XENLAB_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests -m slow -q

bench: $(VENV)/.installed
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The lab's xenstored (`xenlab serve --real`) as the xenstored of a real Xen 4.17 dom0 under qemu,
# with a PV domU (docs/realxen.md). Root, Debian 12, ~5 min the first time. Not part of `make test`.
# The real captures the tests compare with (tests/captures/, its README.md) were taken with the real
# daemons, one run at a time, e.g. for the 2-vCPU sets:
#   ../shared/realxen/run --vcpus 2 --domu --guest-vcpus 2 --timeout 1500 --out /tmp/rx-2v
#   ../shared/realxen/run --vcpus 2 --domu --guest-vcpus 2 --xenstored cxenstored --timeout 1500 --out /tmp/rx-2v-c
#   (2 disks + 2 vifs: the same plus the two --overlay files of tests/captures/oxenstored-2vcpu-2disk-2vif/)
REALXEN_OUT ?= /tmp/xenlab-realxen-mine
realxen:
	../shared/realxen/build
	../shared/realxen/run --overlay xenlab:/opt/xenlab/xenlab --xenstored 'python3 -m xenlab serve --real' \
	    --domu --require-probe --out $(REALXEN_OUT)

notebooks: $(VENV)/.installed
	$(BIN)/python tools/run_notebooks.py

clean:
	rm -rf $(VENV) build *.egg-info
