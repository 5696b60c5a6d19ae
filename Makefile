.PHONY: demo test lint bench
demo:
	scripts/demo
test:
	scripts/test
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy && .venv/bin/lint-imports && .venv/bin/ioc contract check
bench:
	.venv/bin/ioc bench all
