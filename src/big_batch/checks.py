"""Config validation that every component writes for its own section, and that notices unread fields.

Each component (trainer, task, model, data, optimizer, mesh, evaluator) validates the fields
it reads through a `Section`, a view of one config section that records every field read.
After all checks, `Checker.reject_unread()` names any field that no component read: a
misspelt or stale field added in Python is an error, as a misspelt command-line override is.
Every error names the field by its full path and its value:

    ValueError: config.optimizer.learning_rate=-1.0 must be a positive number
"""
from typing import Any, Iterable

import ml_collections

_MISSING = object()


class ConfigError(ValueError):
  """A bad config value, named by its field; the command line prints it as one line."""


class Checker:
  """The read-tracking root over a whole config."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.read_paths: set[str] = set()

  def section(self, key: str = "") -> "Section":
    """The section at the dotted path `key` ('' for the top level)."""
    node, path = self.config, ""
    for part in filter(None, key.split(".")):
      node, path = node[part], f"{path}.{part}" if path else part
    return Section(node, path, self)

  def unread(self) -> list[str]:
    """Dotted paths of the leaves that no check read."""
    return [path for path in _leaf_paths(self.config, "") if path not in self.read_paths]

  def reject_unread(self) -> None:
    unread = self.unread()
    if unread:
      raise ConfigError(
          f"{', '.join('config.' + p for p in unread)}: read by nothing in this configuration "
          "(misspelt, or meant for another task, model or optimizer?)")


class Section:
  """One config section; reads are recorded, errors name `config.<path>.<key>`."""

  def __init__(self, node, path: str, checker: Checker):
    self.node, self.path, self.checker = node, path, checker

  def name(self, key: str) -> str:
    return f"config.{self.path}.{key}" if self.path else f"config.{key}"

  def has(self, key: str) -> bool:
    """Whether the section holds `key` (set or placeholder); does not count as a read."""
    return key in self.node

  def keys(self) -> list[str]:
    return list(self.node.keys())

  def section(self, key: str) -> "Section":
    if key not in self.node or not isinstance(self.node[key], ml_collections.ConfigDict):
      raise ConfigError(f"{self.name(key)} is missing: it must be a section (a dict of fields)")
    return Section(self.node[key], f"{self.path}.{key}" if self.path else key, self.checker)

  def read(self, key: str, default: Any = _MISSING) -> Any:
    """The value of `key` (or `default` if absent or None); marks the field as read."""
    full = f"{self.path}.{key}" if self.path else key
    if key in self.node:
      self.checker.read_paths.add(full)
      if isinstance(self.node[key], ml_collections.ConfigDict):
        self.checker.read_paths.update(_leaf_paths(self.node[key], full))
      value = self.node[key]
      if value is not None or default is _MISSING:
        return value
    if default is _MISSING:
      raise ConfigError(f"{self.name(key)} is missing")
    return default

  def fail(self, key: str, message: str) -> None:
    value = self.node[key] if key in self.node else None
    raise ConfigError(f"{self.name(key)}={value!r} {message}")

  def positive(self, key: str, default: Any = _MISSING, integer: bool = False):
    value = self.read(key, default)
    if not _is_number(value, integer) or value <= 0:
      self.fail(key, f"must be a positive {'integer' if integer else 'number'}")
    return value

  def non_negative(self, key: str, default: Any = _MISSING, integer: bool = False):
    value = self.read(key, default)
    if not _is_number(value, integer) or value < 0:
      self.fail(key, f"must be a non-negative {'integer' if integer else 'number'}")
    return value

  def one_of(self, key: str, choices: Iterable, default: Any = _MISSING):
    value = self.read(key, default)
    choices = list(choices)
    if value not in choices:
      shown = sorted(choices, key=str)
      self.fail(key, f"is not one of {shown}")
    return value

  def boolean(self, key: str, default: Any = _MISSING) -> bool:
    value = self.read(key, default)
    if not isinstance(value, bool):
      self.fail(key, "must be True or False")
    return value

  def reject_unread(self, hint: str) -> None:
    """Errors on the fields of this section (not of its sub-sections) that no check read."""
    prefix = f"{self.path}." if self.path else ""
    unread = [k for k in self.node.keys()
              if not isinstance(self.node[k], ml_collections.ConfigDict)
              and prefix + k not in self.checker.read_paths]
    if unread:
      raise ConfigError(f"{', '.join(self.name(k) for k in unread)}: not a field here ({hint})")


def _is_number(value, integer: bool) -> bool:
  if isinstance(value, bool):
    return False
  return isinstance(value, int) if integer else isinstance(value, (int, float))


def _leaf_paths(node, path: str) -> list[str]:
  paths = []
  for key in node.keys():
    full = f"{path}.{key}" if path else key
    if isinstance(node[key], ml_collections.ConfigDict):
      paths.extend(_leaf_paths(node[key], full))
    else:
      paths.append(full)
  return paths
