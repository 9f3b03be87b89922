"""The plugin index: what a stevedore scan found, reused until anything installed changes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from arctern import plugin_index
from arctern.plugins import KINDS

NAMESPACES = [kind.namespace for kind in KINDS.values()]


def _index_files(site) -> list[Path]:
    return sorted((site.root / ".cache" / "arctern").glob("plugin-index-*.json"))


def _add_good(site, good_driver: str, dist="arctern-block-good", name="good") -> None:
    site.add(dist, "1.2", "arctern.block_drivers", name, f"{name}_pkg", good_driver)


def test_a_listing_writes_the_index_and_the_next_one_reads_it(site, good_driver):
    _add_good(site, good_driver)
    first = site.listing()
    [index] = _index_files(site)
    stamp = index.stat().st_mtime_ns
    data = json.loads(index.read_text())
    stored = {ep[0]: ep for ep in data["namespaces"]["arctern.block_drivers"]}
    assert stored["good"] == ["good", "good_pkg.plugin", "arctern-block-good", "1.2"]
    assert site.listing() == first
    assert index.stat().st_mtime_ns == stamp  # read, not scanned and written again


def test_a_distribution_installed_later_is_found(site, good_driver):
    _add_good(site, good_driver)
    assert ("block", "other") not in site.listing()
    _add_good(site, good_driver.replace('"good"', '"other"'), "arctern-block-other", "other")
    record = site.listing()[("block", "other")]
    assert (record["status"], record["provides"]) == ("enabled", ["other"])


def test_a_removed_distribution_is_forgotten(site, good_driver):
    _add_good(site, good_driver)
    assert ("block", "good") in site.listing()
    shutil.rmtree(site.root / "arctern_block_good-1.2.dist-info")
    assert ("block", "good") not in site.listing()


def test_an_edited_entry_points_file_is_read_again(site, good_driver):
    _add_good(site, good_driver)
    assert ("block", "good") in site.listing()
    entry_points = site.root / "arctern_block_good-1.2.dist-info" / "entry_points.txt"
    entry_points.write_text("[arctern.block_drivers]\nrenamed = good_pkg.plugin\n")
    listing = site.listing()
    assert ("block", "good") not in listing
    assert listing[("block", "renamed")]["provides"] == ["good"]


def test_a_damaged_index_is_replaced_without_a_word(site, good_driver):
    _add_good(site, good_driver)
    expected = site.listing()
    [index] = _index_files(site)
    for damage in ("{not json", '{"format": 1}', "[]", ""):
        index.write_text(damage)
        proc = site.run("list", "--output=json")
        assert proc.returncode == 0 and proc.stderr == ""
        assert {(r["kind"], r["name"]) for r in json.loads(proc.stdout)} == set(expected)
        assert json.loads(index.read_text())["format"] == plugin_index.FORMAT


def test_the_index_can_be_turned_off(site, good_driver):
    _add_good(site, good_driver)
    assert ("block", "good") in site.listing(ARCTERN_PLUGIN_CACHE="off")
    assert _index_files(site) == []


def test_an_unwritable_cache_directory_only_costs_a_scan(site, good_driver):
    _add_good(site, good_driver)
    blocker = site.root / "not-a-directory"
    blocker.write_text("")
    listing = site.listing(ARCTERN_CACHE_DIR=str(blocker / "cache"))
    assert listing[("block", "good")]["status"] == "enabled"
    assert _index_files(site) == []


def test_a_broken_plugin_stays_isolated_when_read_from_the_index(site, good_driver):
    _add_good(site, good_driver)
    site.add(
        "arctern-block-broken", "0.1", "arctern.block_drivers", "broken", "broken_pkg", "1/0\n"
    )
    for _ in range(2):  # the second run reads the index
        listing = site.listing()
        assert listing[("block", "good")]["status"] == "enabled"
        assert listing[("block", "broken")]["status"] == "failed"
        assert "ZeroDivisionError" in listing[("block", "broken")]["reason"]


def test_the_working_directory_on_the_path_shares_one_index(site, good_driver, tmp_path):
    """`python -c` puts "" on sys.path: writing files there must not invalidate the index."""
    _add_good(site, good_driver)
    program = (
        "from arctern.plugins import Registry\n"
        "print(sorted(Registry().discover(['block']).block_drivers))\n"
    )
    outputs = set()
    for name in ("one", "two"):
        cwd = tmp_path / name
        cwd.mkdir()
        (cwd / "output.img").write_bytes(b"")
        proc = subprocess.run(
            [sys.executable, "-c", program],
            cwd=cwd,
            env=site.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        outputs.add(proc.stdout)
    assert len(outputs) == 1 and "'good'" in outputs.pop()
    assert len(_index_files(site)) == 1


def test_scan_reports_each_entry_point_with_its_distribution():
    found = plugin_index.scan(NAMESPACES)
    block = {ep.name: ep for ep in found["arctern.block_drivers"]}
    assert block["qcow2"].distribution == "arctern-block-qcow2"
    assert block["qcow2"].value == "arctern_block_qcow2.plugin"
    assert {ep.name for ep in found["arctern.migration_transports"]} >= {"tcp", "exec"}


def test_load_follows_module_and_attributes():
    assert plugin_index.load("os.path:join") is os.path.join
    assert plugin_index.load("os.path") is os.path
    assert plugin_index.load("os:path.join [extra]") is os.path.join
    assert plugin_index.load("os.path [extra]") is os.path
