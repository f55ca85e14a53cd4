"""AAP artifacts through ansible-runner (the engine of AWX/AAP job runs).

Runs ansible/aap/retry_job.yml, the playbook of the AAP job template, with
ansible_runner.run() and reads `artifact_data` from the playbook_on_stats event,
which is what AAP stores as the job's artifacts.
"""

import datetime
import os
import re
import socket
import sys
from pathlib import Path

import ansible_runner
import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACT_NAMES = {
    "retry_session_id",
    "retry_current_operation",
    "retry_operation_id",
    "retry_operation_status",
    "retry_attempt_count",
    "retry_execution_time",
    "retry_session_statistics",
    "retry_operation_success",
    "retry_timestamp",
}
MODULE = REPO / "roles" / "retry_manager" / "library" / "retry_manager"


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unreachable_host(name: str) -> str:
    """An inventory line for a host whose ssh port refuses connections: really unreachable."""
    return (
        f"{name} ansible_connection=ssh ansible_host=127.0.0.1 ansible_port={closed_port()} "
        "ansible_user=nobody ansible_ssh_common_args='-o ConnectTimeout=5 -o BatchMode=yes "
        "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n"
    )


def run_job(
    tmp_path: Path,
    extravars: dict,
    inventory: str = "",
    project_dir: Path = REPO / "ansible",
    playbook: str = "aap/retry_job.yml",
    cmdline: str | None = None,
):
    pdd = tmp_path / "runner"
    (pdd / "inventory").mkdir(parents=True)
    (pdd / "inventory" / "hosts").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        + inventory
    )
    env = {
        "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_LIBRARY": str(REPO / "roles" / "retry_manager" / "library"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    runner = ansible_runner.run(
        private_data_dir=str(pdd),
        project_dir=str(project_dir),
        playbook=playbook,
        extravars=extravars,
        envvars=env,
        quiet=True,
        timeout=120,
        cmdline=cmdline,
    )
    stats = [e for e in runner.events if e.get("event") == "playbook_on_stats"]
    assert len(stats) == 1, f"runner status {runner.status}: no stats event"
    runner.stats_event = stats[0]["event_data"]
    return runner, stats[0]["event_data"].get("artifact_data", {})


def check_types(artifacts: dict):
    """The nine artifacts with the types the README promises, on every ansible-core."""
    assert set(artifacts) == ARTIFACT_NAMES, sorted(artifacts)
    for name in (
        "retry_session_id",
        "retry_current_operation",
        "retry_operation_id",
        "retry_operation_status",
        "retry_timestamp",
    ):
        assert isinstance(artifacts[name], str), (name, artifacts[name])
    count = artifacts["retry_attempt_count"]
    assert isinstance(count, int) and not isinstance(count, bool), count
    assert isinstance(artifacts["retry_execution_time"], float), artifacts["retry_execution_time"]
    assert isinstance(artifacts["retry_session_statistics"], dict), artifacts["retry_session_statistics"]
    assert isinstance(artifacts["retry_operation_success"], bool), artifacts["retry_operation_success"]
    stamp = datetime.datetime.strptime(artifacts["retry_timestamp"], "%Y-%m-%dT%H:%M:%SZ")
    age = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - stamp
    assert datetime.timedelta(seconds=-5) < age < datetime.timedelta(minutes=5)


def check_common(artifacts: dict, operation: str):
    check_types(artifacts)
    assert re.fullmatch(r"retry_\d+_[0-9a-z]+", artifacts["retry_session_id"])
    assert artifacts["retry_current_operation"] == operation
    assert operation in artifacts["retry_operation_id"]
    assert isinstance(artifacts["retry_execution_time"], float)
    assert 0 <= artifacts["retry_execution_time"] < 60
    assert isinstance(artifacts["retry_session_statistics"], dict)
    assert artifacts["retry_session_statistics"], "session statistics are empty"
    # the seed's final_statistics shape, for the session so far
    assert artifacts["retry_session_statistics"]["total_operations"] >= 1
    stamp = datetime.datetime.strptime(artifacts["retry_timestamp"], "%Y-%m-%dT%H:%M:%SZ")
    age = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - stamp
    assert datetime.timedelta(seconds=-5) < age < datetime.timedelta(minutes=5)


@pytest.fixture(autouse=True)
def need_module():
    if not MODULE.exists():
        pytest.fail(f"{MODULE} is missing: run `make build` first")


def test_artifacts_of_a_retried_success(tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("0\n")
    command = (
        f"n=$(cat {counter}); n=$((n+1)); echo $n > {counter}; "
        'if [ $n -lt 3 ]; then echo "connection timed out" >&2; exit 1; fi; echo done'
    )
    runner, artifacts = run_job(
        tmp_path,
        {
            "retry_current_operation": "aap_flaky",
            "retry_command": command,
            "retry_max_attempts": 4,
            "retry_base_delay": 0,
            "retry_artifacts_dir": str(tmp_path / "artifacts"),
        },
    )
    assert runner.status == "successful", runner.status
    assert runner.rc == 0
    check_common(artifacts, "aap_flaky")
    assert artifacts["retry_operation_status"] == "completed"
    assert artifacts["retry_attempt_count"] == 3
    assert artifacts["retry_operation_success"] is True


def test_artifacts_of_a_failure(tmp_path):
    runner, artifacts = run_job(
        tmp_path,
        {
            "retry_current_operation": "aap_denied",
            "retry_command": "echo 'authentication failed: invalid credentials' >&2; exit 5",
            "retry_max_attempts": 3,
            "retry_base_delay": 0,
            "retry_artifacts_dir": str(tmp_path / "artifacts"),
        },
    )
    assert runner.status == "failed", runner.status
    check_common(artifacts, "aap_denied")
    assert artifacts["retry_operation_status"] == "failed"
    assert artifacts["retry_attempt_count"] == 1
    assert artifacts["retry_operation_success"] is False


def test_artifacts_of_retried_tasks(tmp_path):
    # retry_tasks through the job template: the two-task file fails its first attempt
    runner, artifacts = run_job(
        tmp_path,
        {
            "retry_current_operation": "aap_tasks",
            "retry_tasks": str(REPO / "tests" / "ansible" / "playbooks" / "tasks" / "two_tasks.yml"),
            "retry_max_attempts": 3,
            "retry_base_delay": 0,
            "retry_artifacts_dir": str(tmp_path / "artifacts"),
        },
    )
    assert runner.status == "successful", runner.status
    check_common(artifacts, "aap_tasks")
    assert artifacts["retry_operation_status"] == "completed"
    assert artifacts["retry_attempt_count"] == 2
    assert artifacts["retry_operation_success"] is True


def test_artifacts_of_an_unreachable_host(tmp_path):
    # the only host of the job refuses ssh: the module cannot run, and AAP still gets the
    # nine artifacts, while the host ends unreachable (not failed) in the job's stats
    runner, artifacts = run_job(
        tmp_path,
        {
            "retry_target_hosts": "gone",
            "retry_current_operation": "aap_gone",
            "retry_command": "true",
            "retry_artifacts_dir": str(tmp_path / "artifacts"),
        },
        inventory=unreachable_host("gone"),
    )
    assert runner.status == "failed", runner.status
    assert "gone" in runner.stats_event.get("dark", {}), runner.stats_event
    assert "gone" not in runner.stats_event.get("failures", {}), runner.stats_event
    check_types(artifacts)
    assert artifacts["retry_current_operation"] == "aap_gone"
    assert artifacts["retry_operation_status"] == "unreachable"
    assert artifacts["retry_attempt_count"] == 0
    assert artifacts["retry_execution_time"] == 0.0
    assert artifacts["retry_operation_success"] is False


def test_an_unreachable_host_in_check_mode_is_not_failed(tmp_path):
    # --check: the role's reconnect (raw, which changes nothing) still runs, so the host ends
    # unreachable as it would without the role, not failed and not carried on as ok
    runner, artifacts = run_job(
        tmp_path,
        {
            "retry_target_hosts": "gone",
            "retry_current_operation": "aap_gone_check",
            "retry_command": "true",
            "retry_artifacts_dir": str(tmp_path / "artifacts"),
        },
        inventory=unreachable_host("gone"),
        cmdline="--check",
    )
    assert "gone" not in runner.stats_event.get("failures", {}), runner.stats_event
    assert "gone" in runner.stats_event.get("dark", {}), runner.stats_event
    check_types(artifacts)
    assert artifacts["retry_current_operation"] == "aap_gone_check"
    assert artifacts["retry_operation_status"] == "unreachable"


def test_artifacts_of_a_host_unreachable_mid_play(tmp_path):
    # an operation succeeds, then the host's connection goes (its ssh port refuses): the
    # second operation's artifacts name the session the first one opened
    runner, artifacts = run_job(
        tmp_path,
        {
            "dead_port": closed_port(),
            "retry_artifacts_dir": str(tmp_path / "artifacts"),
            "test_tmp": str(tmp_path),
        },
        project_dir=REPO / "tests" / "ansible" / "playbooks",
        playbook="unreachable_midplay.yml",
    )
    assert runner.status == "failed", runner.status
    assert "localhost" in runner.stats_event.get("dark", {}), runner.stats_event
    check_types(artifacts)
    assert re.fullmatch(r"retry_\d+_[0-9a-z]+", artifacts["retry_session_id"])
    assert artifacts["retry_current_operation"] == "after_the_cut"
    assert artifacts["retry_operation_status"] == "unreachable"
    assert artifacts["retry_attempt_count"] == 0
    assert artifacts["retry_operation_success"] is False
    # the first operation was recorded in that session before the host went away
    record = tmp_path / "artifacts" / f"retry_session_{artifacts['retry_session_id']}.json"
    assert '"before_the_cut"' in record.read_text()
