# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: run test install migrate seed lint format check bench clean messages screenshots

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput

seed: migrate
	$(BIN)/python manage.py seed --demo --demo-user

run: seed
	@echo "Admin: http://$(HOST):$(PORT)/admin/  (login demo / demo-biobank)"
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

test: install
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check: lint test

# Norwegian catalogue: refresh the .po after changing strings, translate, then commit the
# compiled .mo too (needs gettext: apt-get install -y gettext).
messages: install
	cd biobank && ../$(BIN)/python ../manage.py makemessages -l nb --no-location
	cd biobank && ../$(BIN)/python ../manage.py compilemessages

# README screenshots from the demo data (needs chromium + chromium-driver).
screenshots: install
	$(BIN)/python docs/screenshots.py

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles .pytest_cache
