# The two commands a newcomer needs: `make run` and `make test`.
.PHONY: run test test-unit setup lint

run:
	scripts/run.sh

test: setup
	.venv/bin/python -m pytest -ra

test-unit: setup
	.venv/bin/python -m pytest -ra tests/unit tests/store

setup:
	scripts/setup.sh
