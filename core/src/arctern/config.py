"""The build configuration: which plugins are enabled.

Sources, later ones overriding earlier ones:

1. a TOML file: ``--config PATH``, else ``$ARCTERN_CONFIG``, else
   ``arctern.toml`` in the working directory, if present::

       [plugins]
       strict = true                 # any plugin failure is an error

       [plugins.block]
       disable = ["qcow2"]           # never import this one

       [plugins.migration]
       enable = ["tcp"]              # only these of this kind

2. environment variables for one-off runs, comma-separated ``KIND:NAME``:
   ``ARCTERN_PLUGINS_DISABLE`` disables plugins, ``ARCTERN_PLUGINS_ENABLE``
   re-enables plugins the file disabled (or adds them to its enable list);
   ``ARCTERN_STRICT_PLUGINS=1`` turns on strict mode.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from arctern.errors import ConfigError

KIND_NAMES = ("block", "target", "device", "migration")
CONFIG_FILENAME = "arctern.toml"


@dataclass
class BuildConfig:
    """Which plugins of each kind are enabled, and whether failures are fatal."""

    enable: dict[str, set[str]] = field(default_factory=dict)
    disable: dict[str, set[str]] = field(default_factory=dict)
    strict: bool = False
    source: str = "defaults"

    def is_enabled(self, kind: str, name: str) -> bool:
        if name in self.disable.get(kind, set()):
            return False
        only = self.enable.get(kind)
        return only is None or name in only

    def why_disabled(self, kind: str, name: str) -> str:
        if name in self.disable.get(kind, set()):
            return f"disabled by {self.source}"
        return f"not in the enable list of {self.source}"

    @classmethod
    def load(
        cls, path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None
    ) -> BuildConfig:
        env = os.environ if env is None else env
        config = cls()
        sources = []
        file = _config_path(path, env)
        if file is not None:
            config._apply_file(file)
            sources.append(str(file))
        if config._apply_env(env):
            sources.append("ARCTERN_PLUGINS_* variables")
        if env.get("ARCTERN_STRICT_PLUGINS", "").lower() in ("1", "true", "yes", "on"):
            config.strict = True
        if sources:
            config.source = " and ".join(sources)
        return config

    def _apply_file(self, file: str) -> None:
        import tomllib  # only when there is a file: most starts have none

        try:
            with open(file, encoding="utf-8") as stream:
                data = tomllib.loads(stream.read())
        except OSError as exc:
            raise ConfigError(f"cannot read configuration {file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"configuration {file} is not valid TOML: not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration {file} is not valid TOML: {exc}") from None
        plugins = data.get("plugins", {})
        if not isinstance(plugins, dict):
            raise ConfigError(f"configuration {file}: [plugins] must be a table")
        for key, value in plugins.items():
            if key == "strict":
                if not isinstance(value, bool):
                    raise ConfigError(f"configuration {file}: plugins.strict must be true or false")
                self.strict = value
                continue
            if key not in KIND_NAMES:
                raise ConfigError(
                    f"configuration {file}: unknown plugin kind '{key}' "
                    f"(kinds: {', '.join(KIND_NAMES)})"
                )
            if not isinstance(value, dict):
                raise ConfigError(f"configuration {file}: [plugins.{key}] must be a table")
            for option, names in value.items():
                if option not in ("enable", "disable"):
                    raise ConfigError(
                        f"configuration {file}: plugins.{key}.{option}: "
                        "expected 'enable' or 'disable'"
                    )
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise ConfigError(
                        f"configuration {file}: plugins.{key}.{option} must be a list of names"
                    )
                getattr(self, option)[key] = set(names)

    def _apply_env(self, env: Mapping[str, str]) -> bool:
        used = False
        for option in ("enable", "disable"):
            variable = f"ARCTERN_PLUGINS_{option.upper()}"
            text = env.get(variable, "").strip()
            if not text:
                continue
            used = True
            for item in text.split(","):
                kind, sep, name = item.strip().partition(":")
                if not sep or kind not in KIND_NAMES or not name:
                    raise ConfigError(
                        f"{variable}: '{item.strip()}' is not KIND:NAME "
                        f"(kinds: {', '.join(KIND_NAMES)})"
                    )
                if option == "enable":
                    self.disable.get(kind, set()).discard(name)
                    if kind in self.enable:
                        self.enable[kind].add(name)
                else:
                    self.disable.setdefault(kind, set()).add(name)
        return used


def _config_path(path: str | os.PathLike | None, env: Mapping[str, str]) -> str | None:
    if path is not None:
        return os.fspath(path)
    if env.get("ARCTERN_CONFIG"):
        return env["ARCTERN_CONFIG"]
    local = os.path.join(os.getcwd(), CONFIG_FILENAME)
    return local if os.path.isfile(local) else None
