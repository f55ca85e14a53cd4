# The two commands README.md starts with: `make demo` (retryx on a real flaky command, then the
# Ansible role) and `make test` (everything CI runs). Both install what they need themselves.
SHELL := /bin/bash
TARGET := x86_64-unknown-linux-gnu
RELEASE_BIN := target/$(TARGET)/release/retryx
ROLE_BIN := roles/retry_manager/library/retry_manager
# Debian packages the tests use (installed only when missing).
APT_TEST_PACKAGES := iproute2 procps curl chromium redis-server openssl openssh-server sudo passwd util-linux man-db

.PHONY: demo test build collection setup rust-test lint bench ansible-test notify-test deb deb-test

# The functions retryx runs on its common paths go first in .text (lld, Rust's default linker on
# this target since 1.90), so start-up faults in a few contiguous pages instead of pages all over
# the 8 MB text: see scripts/hot-symbols.sh, which regenerates the list.
# Only when the toolchain links with lld (a rustc before 1.90, or one set to GNU ld, would refuse
# the flags): a one-line program is linked with them when `build` runs (~0.2 s; `=`, not `:=`, so
# other targets do not pay for it).
LINK_ORDER_FLAGS := -C link-arg=-Wl,--symbol-ordering-file=$(CURDIR)/link/hot-symbols.txt -C link-arg=-Wl,--no-warn-symbol-ordering
LINK_ORDER = $(shell d=$$(mktemp -d) && echo 'fn main(){}' > $$d/m.rs && rustc --target $(TARGET) $(LINK_ORDER_FLAGS) -o $$d/m $$d/m.rs >/dev/null 2>&1 && echo '$(LINK_ORDER_FLAGS)'; rm -rf $$d)

## Static release binary, placed where the role's plays find the module.
build:
	RUSTFLAGS='-C target-feature=+crt-static -C relocation-model=static $(LINK_ORDER)' cargo build --release --locked --target $(TARGET)
	install -D -m 0755 $(RELEASE_BIN) $(ROLE_BIN)
	strip --strip-all $(ROLE_BIN)  # the copy sent to hosts
	# the action plugin that keeps one verified copy per host (one source, in the collection)
	install -D -m 0644 collection/plugins/action/retry_manager.py roles/retry_manager/action_plugins/retry_manager.py

## The collection retryx.core: dist/retryx-core-<version>.tar.gz (module, action plugin, role).
collection: build
	bash scripts/setup-python.sh
	bash scripts/build-collection.sh

setup:
	bash scripts/setup-apt.sh $(APT_TEST_PACKAGES)
	bash scripts/setup-python.sh
	VENV=.venv-min REQUIREMENTS=tests/requirements-min.txt bash scripts/setup-python.sh

demo: build
	bash scripts/setup-python.sh
	bash scripts/demo.sh
	cd ansible && ../.venv/bin/ansible-playbook demo.yml

lint:
	cargo fmt --check
	cargo clippy --locked --all-targets -- -D warnings

# A test that needs redis-server, man, ansible-playbook or network namespaces fails (instead of
# skipping) when it is missing; so does
# tests/hardening.rs when it cannot make a user to plant links (not root).
rust-test:
	RETRYX_REQUIRE_REDIS=1 RETRYX_REQUIRE_ROOT=1 RETRYX_REQUIRE_MAN=1 RETRYX_REQUIRE_ANSIBLE=1 RETRYX_REQUIRE_NETNS=1 cargo test --locked

# The role's suite runs on the newest ansible-core that installs here (.venv) and on the
# oldest the role supports (.venv-min, tests/requirements-min.txt: meta/main.yml says which).
ROLE_SUITE := retry_tasks tasks_keywords success_after_retries check_mode no_log role handlers handlers_cleanup handlers_finalize_once handlers_notify debug_mode ansible_runner

## A Debian package for people without Ansible: the static binary, `man retryx`, completions.
## cargo-deb comes from crates.io the first time (~3 min).
deb: build
	command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
	mkdir -p target/deb
	$(RELEASE_BIN) man | gzip -9n > target/deb/retryx.1.gz
	$(RELEASE_BIN) completions bash > target/deb/retryx.bash
	$(RELEASE_BIN) completions zsh > target/deb/_retryx
	$(RELEASE_BIN) completions fish > target/deb/retryx.fish
	cargo deb --no-build --target $(TARGET) --output dist/

## Installs the package into a private root with dpkg and runs it from there.
deb-test: deb
	bash tests/deb/run.sh

ansible-test: build
	bash tests/ansible/run.sh
	RETRYX_ANSIBLE_VENV=.venv-min bash tests/ansible/run.sh $(ROLE_SUITE)
	bash tests/ansible_download/run.sh
	bash tests/ansible_records/run.sh
	RETRYX_REQUIRE_SSHD=1 bash tests/ansible_ssh/run.sh

notify-test: build
	bash tests/receivers/run.sh

test: setup build lint rust-test ansible-test notify-test deb-test

bench: build
	bash bench/overhead.sh
	bash bench/guards.sh
	bash bench/records.sh
	bash bench/download.sh
	bash bench/ansible.sh
	bash bench/ansible_tasks.sh
