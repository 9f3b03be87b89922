"""Discovery, failure isolation, strict mode, refusal and the build configuration."""

from __future__ import annotations

import pytest


@pytest.fixture
def refused_driver(good_driver: str) -> str:
    """The good driver with its invalidate_cache deleted."""
    return good_driver.replace(
        "        def invalidate_cache(self): pass  # nothing cached: an honest no-op\n", ""
    ).replace('name = "good"', 'name = "foo"')


BROKEN_ON_IMPORT = """
    raise RuntimeError("this plugin is broken")
"""


def _add_broken(site) -> None:
    """A distribution whose plugin module raises when imported."""
    site.add(
        "arctern-block-broken",
        "0.1",
        "arctern.block_drivers",
        "broken",
        "broken_pkg",
        BROKEN_ON_IMPORT,
    )


def test_good_plugin_is_enabled_with_what_it_provides(site, good_driver):
    site.add("arctern-block-good", "1.2", "arctern.block_drivers", "good", "good_pkg", good_driver)
    record = site.listing()[("block", "good")]
    assert record["status"] == "enabled"
    assert record["distribution"] == "arctern-block-good"
    assert record["version"] == "1.2"
    assert record["provides"] == ["good"]


def test_driver_without_invalidate_cache_is_refused_with_one_line(site, refused_driver):
    site.add("arctern-block-foo", "0.1", "arctern.block_drivers", "foo", "foo_pkg", refused_driver)
    record = site.listing()[("block", "foo")]
    assert record["status"] == "refused"
    assert record["reason"] == (
        "arctern: block driver 'foo' (arctern-block-foo 0.1) refused: "
        "missing required hook invalidate_cache"
    )
    check = site.run("check", "arctern-block-foo")
    assert check.returncode == 1
    assert check.stderr.strip() == record["reason"]


def test_check_accepts_a_good_distribution(site, good_driver):
    site.add("arctern-block-good", "1.2", "arctern.block_drivers", "good", "good_pkg", good_driver)
    check = site.run("check", "arctern-block-good")
    assert check.returncode == 0, check.stderr
    assert "ok, provides good" in check.stdout


def test_check_of_unknown_distribution_is_an_error(site):
    check = site.run("check", "arctern-nothing-like-this")
    assert check.returncode == 1
    assert check.stderr.strip() == (
        "arctern-plugins: no plugin of distribution 'arctern-nothing-like-this' is installed"
    )


def test_plugin_raising_on_import_does_not_stop_the_others(site, good_driver):
    _add_broken(site)
    site.add("arctern-block-good", "1.2", "arctern.block_drivers", "good", "good_pkg", good_driver)
    records = site.listing()
    broken = records[("block", "broken")]
    assert broken["status"] == "failed"
    assert "RuntimeError: this plugin is broken" in broken["reason"]
    assert records[("block", "good")]["status"] == "enabled"


def test_plugin_raising_in_its_registration_hook_is_reported(site):
    code = """
        from arctern.hookspecs import hookimpl

        @hookimpl
        def arctern_block_drivers():
            raise ValueError("cannot register today")
    """
    site.add("arctern-block-moody", "0.3", "arctern.block_drivers", "moody", "moody_pkg", code)
    record = site.listing()[("block", "moody")]
    assert record["status"] == "failed"
    assert "ValueError: cannot register today" in record["reason"]


def test_misspelled_hook_is_rejected_by_pluggy_validation(site):
    code = """
        from arctern.hookspecs import hookimpl

        @hookimpl
        def arctern_block_driverz():
            return []
    """
    site.add("arctern-block-typo", "0.1", "arctern.block_drivers", "typo", "typo_pkg", code)
    record = site.listing()[("block", "typo")]
    assert record["status"] == "failed"
    assert "arctern_block_driverz" in record["reason"]


def test_strict_mode_turns_a_broken_plugin_into_an_error(site):
    _add_broken(site)
    for args, env in ((("--strict-plugins",), {}), ((), {"ARCTERN_STRICT_PLUGINS": "1"})):
        proc = site.run(*args, "list", **env)
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1
        assert "block plugin 'broken' (arctern-block-broken 0.1) failed to load" in lines[0]
        assert "Traceback" not in proc.stderr


def test_strict_mode_from_the_config_file(site, refused_driver):
    site.add("arctern-block-foo", "0.1", "arctern.block_drivers", "foo", "foo_pkg", refused_driver)
    (site.root / "arctern.toml").write_text("[plugins]\nstrict = true\n")
    proc = site.run("list")
    assert proc.returncode == 1
    assert "refused: missing required hook invalidate_cache" in proc.stderr


MARKS_IMPORT = """
    import os, pathlib
    pathlib.Path(os.environ["IMPORT_MARKER"]).write_text("imported")
    from arctern.hookspecs import hookimpl

    @hookimpl
    def arctern_block_drivers():
        return []
"""


def test_disabled_plugin_is_never_imported(site, tmp_path):
    marker = tmp_path / "marker"
    site.add("arctern-block-spy", "0.1", "arctern.block_drivers", "spy", "spy_pkg", MARKS_IMPORT)
    (site.root / "arctern.toml").write_text('[plugins.block]\ndisable = ["spy"]\n')
    record = site.listing(IMPORT_MARKER=str(marker))[("block", "spy")]
    assert record["status"] == "disabled"
    assert "arctern.toml" in record["reason"]
    assert not marker.exists()
    # the same plugin, enabled again for a one-off run, is imported
    record = site.listing(IMPORT_MARKER=str(marker), ARCTERN_PLUGINS_ENABLE="block:spy")[
        ("block", "spy")
    ]
    assert record["status"] == "enabled"
    assert marker.read_text() == "imported"


def test_enable_list_keeps_only_the_named_plugins(site, good_driver, tmp_path):
    site.add("arctern-block-good", "1.2", "arctern.block_drivers", "good", "good_pkg", good_driver)
    site.add("arctern-block-spy", "0.1", "arctern.block_drivers", "spy", "spy_pkg", MARKS_IMPORT)
    config = tmp_path / "build.toml"
    config.write_text('[plugins.block]\nenable = ["good"]\n')
    marker = tmp_path / "marker"
    for records in (
        site.listing("--config", str(config), IMPORT_MARKER=str(marker)),
        site.listing(IMPORT_MARKER=str(marker), ARCTERN_CONFIG=str(config)),
    ):
        assert records[("block", "good")]["status"] == "enabled"
        assert records[("block", "spy")]["status"] == "disabled"
        assert "not in the enable list" in records[("block", "spy")]["reason"]
    assert not marker.exists()


def test_environment_disables_for_one_run(site, good_driver):
    site.add("arctern-block-good", "1.2", "arctern.block_drivers", "good", "good_pkg", good_driver)
    record = site.listing(ARCTERN_PLUGINS_DISABLE="block:good")[("block", "good")]
    assert record["status"] == "disabled"


def test_bad_configuration_is_one_clear_line(site):
    (site.root / "arctern.toml").write_text('[plugins.blok]\ndisable = ["x"]\n')
    proc = site.run("list")
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("arctern-plugins: configuration ")
    assert "unknown plugin kind 'blok'" in proc.stderr
    (site.root / "arctern.toml").unlink()
    proc = site.run("list", ARCTERN_PLUGINS_DISABLE="qcow2")
    assert proc.returncode == 1
    assert "ARCTERN_PLUGINS_DISABLE: 'qcow2' is not KIND:NAME" in proc.stderr


def test_unreadable_configurations_are_one_clear_line(site):
    (site.root / "latin1.toml").write_bytes(b'[plugins.block]\ndisable = ["caf\xe9"]\n')
    (site.root / "folder.toml").mkdir()
    for name, why in (("latin1.toml", "is not valid TOML: not UTF-8 text"), ("folder.toml", "")):
        proc = site.run("--config", name, "list")
        assert proc.returncode == 1
        [line] = proc.stderr.splitlines()
        assert line.startswith("arctern-plugins: ") and name in line and why in line
