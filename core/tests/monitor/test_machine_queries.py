"""query-target, query-kvm, query-uuid, query-iothreads, query-hotpluggable-cpus in process."""

from __future__ import annotations

import pytest

from arctern.cli.system_options import build_parser
from arctern.errors import UsageError
from arctern.machine.chardev import Chardev
from arctern.machine.mux import MuxChardev
from arctern.monitor.commands import QMPError
from arctern.monitor.machine_queries import parse_uuid
from arctern.monitor.monitor import Monitor
from arctern.monitor.options import compat_labels

UUID = "6c0e4d2a-1b2c-4d5e-8f90-a1b2c3d4e5f6"


@pytest.fixture
def monitor(make_machine, image, registry):
    mon = Monitor(make_machine(image), registry=registry, uuid=UUID)
    yield mon
    mon.close()


def test_target_is_the_boards_arch(monitor):
    assert monitor.execute("query-target") == {"arch": "test"}


def test_uuid_in_qmp_and_hmp(monitor):
    assert monitor.execute("query-uuid") == {"UUID": UUID}
    assert monitor.hmp("info uuid") == f"{UUID}\r\n"


def test_uuid_defaults_to_zeros(make_machine, image, registry):
    mon = Monitor(make_machine(image), registry=registry)
    try:
        assert mon.execute("query-uuid") == {"UUID": "00000000-0000-0000-0000-000000000000"}
    finally:
        mon.close()


def test_no_kvm_no_iothreads_no_cpu_hotplug(monitor):
    assert monitor.execute("query-kvm") == {"enabled": False, "present": False}
    assert monitor.hmp("info kvm") == "kvm support: not compiled\r\n"
    assert monitor.execute("query-iothreads") == []
    with pytest.raises(QMPError, match="The feature 'query-hotpluggable-cpus' is not enabled"):
        monitor.execute("query-hotpluggable-cpus")


def test_query_commands_lists_the_queries(monitor):
    names = {c["name"] for c in monitor.execute("query-commands")}
    assert {"query-target", "query-kvm", "query-uuid", "query-iothreads"} <= names
    assert "query-events" not in names  # removed from QEMU before 7.2


@pytest.mark.parametrize("text", [UUID, UUID.upper()])
def test_parse_uuid_lowers_case(text):
    assert parse_uuid(text) == UUID


@pytest.mark.parametrize(
    "text", ["", "bad", UUID.replace("-", ""), "{" + UUID + "}", "urn:uuid:" + UUID, UUID + "0"]
)
def test_parse_uuid_refuses_other_spellings(text):
    with pytest.raises(UsageError, match="failed to parse UUID string: wrong format"):
        parse_uuid(text)


def test_chardevs_of_the_machine_and_the_monitor(make_machine, image, registry, tmp_path):
    machine = make_machine(image)
    machine.add_chardev("c0", Chardev())
    machine.add_chardev("io", MuxChardev(Chardev(), label="io"))
    mon = Monitor(machine, registry=registry)
    try:
        path = tmp_path / "q.sock"
        mon.add_qmp(f"unix:{path},server=on,wait=off")
        assert mon.execute("query-chardev") == [
            {"frontend-open": False, "filename": "null", "label": "c0"},
            {"frontend-open": True, "filename": "null", "label": "io-base"},
            {"frontend-open": False, "filename": "mux", "label": "io"},
            {
                "frontend-open": True,
                "filename": f"disconnected:unix:{path},server=on",
                "label": "compat_monitor0",
            },
        ]
        assert mon.hmp("info chardev").splitlines()[0] == "c0: filename=null"
        backends = {b["name"] for b in mon.execute("query-chardev-backends")}
        assert backends == {"null", "stdio", "file", "socket", "mux"}
    finally:
        mon.close()


def test_machines_and_cpus_of_the_boards_arch(monitor):
    (board,) = monitor.execute("query-machines")
    assert board["name"] == "test-waiting-board"
    assert board["default-cpu-type"] == "test-waiting-test-cpu" and board["cpu-max"] == 1
    cpus = monitor.execute("query-cpu-definitions")
    assert [c["typename"] for c in cpus] == ["test-waiting-test-cpu"]


def test_compat_monitor_labels_follow_the_command_line():
    args = build_parser().parse_args(
        ["-monitor", "none", "-qmp", "unix:a", "-monitor", "unix:b", "-qmp", "unix:c"]
    )
    assert args.monitor_order == ["monitor", "qmp", "monitor", "qmp"]
    labels = compat_labels(args.monitor_order, args.qmp, [*args.monitor, "stdio"])
    assert labels == {
        "qmp": ["compat_monitor0", "compat_monitor2"],
        "monitor": ["", "compat_monitor1", "compat_monitor3"],  # none, unix:b, a default
    }
    assert build_parser().parse_args([]).monitor_order == []
