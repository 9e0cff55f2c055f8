# glue-starclf: the two set-up commands of the README.
#   make demo   install and run the demo
#   make test   install and run the tests
#   make screenshots   remake the README's screenshots (docs/screenshots)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test screenshots install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned to the local CPU wheel (setup.cfg); installing it first
# keeps pip from resolving any other build.
$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test,glue]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/starclf demo --out demo-output

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen GLUE_TESTING=True $(BIN)/python -m pytest -q tests

screenshots: $(STAMP)
	STARCLF_SCREENSHOTS=$(CURDIR)/docs/screenshots QT_QPA_PLATFORM=offscreen GLUE_TESTING=True \
		$(BIN)/python -m pytest -q tests/qt -k "screenshot or inspector_gallery_and_pick or diagnostics_layout"

clean:
	rm -rf $(VENV) demo-output build dist *.egg-info
