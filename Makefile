# The two commands README.md starts with: `make demo` (retryx on a real flaky command, then the
# Ansible role) and `make test` (everything CI runs). Both install what they need themselves.
SHELL := /bin/bash
TARGET := x86_64-unknown-linux-gnu
RELEASE_BIN := target/$(TARGET)/release/retryx
ROLE_BIN := roles/retry_manager/library/retry_manager
# Debian packages the tests use (installed only when missing).
APT_TEST_PACKAGES := iproute2 procps curl chromium

.PHONY: demo test build setup rust-test lint bench ansible-test notify-test

## Static release binary, placed where the role's plays find the module.
build:
	RUSTFLAGS='-C target-feature=+crt-static -C relocation-model=static' cargo build --release --locked --target $(TARGET)
	install -D -m 0755 $(RELEASE_BIN) $(ROLE_BIN)

setup:
	bash scripts/setup-apt.sh $(APT_TEST_PACKAGES)
	bash scripts/setup-python.sh

demo: build
	bash scripts/setup-python.sh
	bash scripts/demo.sh
	cd ansible && ../.venv/bin/ansible-playbook demo.yml

lint:
	cargo fmt --check
	cargo clippy --locked --all-targets -- -D warnings

rust-test:
	cargo test --locked

ansible-test: build
	bash tests/ansible/run.sh
	bash tests/ansible_download/run.sh
	bash tests/ansible_records/run.sh

notify-test: build
	bash tests/receivers/run.sh

test: setup build lint rust-test ansible-test notify-test

bench: build
	bash bench/overhead.sh
	bash bench/guards.sh
	bash bench/records.sh
	bash bench/download.sh
	bash bench/ansible.sh
