"""Config checks where the user typed the value: unknown override keys and bad values.

Two checks, both before any JAX work or any file is written:

* :func:`check_overrides` reads ``--config.a.b=v`` overrides off the command line and
  refuses keys the config does not have, with a did-you-mean; it runs before absl and
  ml_collections parse the flags, which would otherwise answer with three chained
  tracebacks. :func:`check_command_line` does that for a binary's ``__main__`` block:
  one ``error: ...`` line on stderr and exit status 2.
* :func:`validate` checks a config against declarative per-field rules kept next to the
  config (``RULES`` in ``experiments/configs/*.py``), so ``--config.ppo.lr=-1`` is
  refused as ``ppo.lr must be > 0, got -1.0`` instead of collapsing the policy.

A rule is plain data, so that config files need no imports:

* a string ``'[TYPE] [CONDITION [and CONDITION ...]]'``: TYPE one of ``int``, ``float``
  (ints accepted), ``number``, ``str``, ``bool``; CONDITION ``> B``, ``>= B``, ``< B``,
  ``<= B`` (B a number or another field's dotted name) or an interval ``in [a, b)``
  with ``[`` / ``]`` closed and ``(`` / ``)`` open ends. E.g. ``'int >= 1'``,
  ``'float in (0, 1]'``, ``'int >= 1 and <= obs.max_prepared_points'``.
* a tuple of allowed values: ``('remove', 'freeze', 'continue')``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.util
import operator
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import ml_collections

from spacer_jax.training.console import report_user_errors


class ConfigError(ValueError):
  """A config value or override the binary cannot run with (a user error: one line)."""


class InvalidRuleError(Exception):
  """A rule that cannot be read or names a field the config lacks: a bug of the rules,
  not of the user's input, so it is deliberately not a ValueError (keeps its traceback)."""


# --------------------------------------------------------------------------- overrides
def flatten_keys(config: ml_collections.ConfigDict, prefix: str = '') -> list[str]:
  """Every dotted field name of ``config``, sections (``ppo``) and leaves (``ppo.lr``)."""
  keys = []
  for name, value in config.items():
    key = f'{prefix}{name}'
    keys.append(key)
    if isinstance(value, ml_collections.ConfigDict):
      keys.extend(flatten_keys(value, key + '.'))
  return keys


def override_keys(argv: Sequence[str], flag_name: str = 'config') -> list[str]:
  """The field names overridden on the command line, in order.

  Matches ``--config.a.b=v``, ``--config.a.b v`` and the boolean forms
  ``--config.a.b`` / ``--noconfig.a.b`` (one or two dashes, as absl); stops at ``--``,
  where absl stops reading flags.
  """
  pattern = re.compile(rf'^--?(?:no)?{re.escape(flag_name)}\.([^=]+)')
  keys = []
  for arg in argv[1:]:
    if arg == '--':
      break
    match = pattern.match(arg)
    if match:
      keys.append(match.group(1))
  return keys


def _initials(name: str) -> str:
  return ''.join(word[0] for word in name.split('_') if word)


def _closest(word: str, candidates: Iterable[str], cutoff: float) -> list[str]:
  """The candidates spelt closest to ``word`` (ratio >= ``cutoff``): the best one and any
  as good within 0.05, at most three, best first."""
  scored = sorted(((difflib.SequenceMatcher(None, word, c).ratio(), c) for c in candidates),
                  key=lambda sc: (-sc[0], sc[1]))
  scored = [(score, c) for score, c in scored if score >= cutoff]
  return [c for score, c in scored if score >= scored[0][0] - 0.05][:3]


def suggestions(key: str, keys: Sequence[str]) -> list[str]:
  """Up to three existing fields the user probably meant by ``key``.

  Only fields that hold values are offered (overriding a whole section is allowed, but
  a section is never what a mistyped field meant). Tried in order, the first non-empty
  answer wins: abbreviations within the key's own section (``learning_rate`` <-> ``lr``,
  ``temp`` -> ``temperature``), close spellings of the whole name (``env.num_world``),
  the same field name in another section (``train.lr`` -> ``ppo.lr``), then looser
  spellings of the field name alone within its section.
  """
  sections = {k.rpartition('.')[0] for k in keys}
  leaves = [k for k in keys if k not in sections]
  section, _, leaf = key.rpartition('.')
  siblings = {k.rpartition('.')[2]: k for k in leaves if k.rpartition('.')[0] == section}
  abbreviated = sorted(k for name, k in siblings.items()
                       if name == _initials(leaf) or leaf == _initials(name)
                       or (len(leaf) >= 2 and name.startswith(leaf)))
  if abbreviated:
    return abbreviated[:3]
  close = _closest(key, leaves, 0.75)
  if close:
    return close
  same_leaf = sorted(k for k in leaves if k.rpartition('.')[2] == leaf)
  if same_leaf:
    return same_leaf[:3]
  return [siblings[name] for name in _closest(leaf, siblings, 0.6)]


def _unknown_message(key: str, keys: Sequence[str], flag_name: str) -> str:
  message = f'unknown {flag_name} field {key}'
  found = suggestions(key, keys)
  if found:
    options = found[0] if len(found) == 1 else ', '.join(found[:-1]) + ' or ' + found[-1]
    return f'{message}; did you mean {options}?'
  # No near miss: list what the section has, so the next try is not a guess either.
  section = key.rpartition('.')[0]
  while section and section not in keys:
    section = section.rpartition('.')[0]
  names = sorted(k.rpartition('.')[2] for k in keys if k.rpartition('.')[0] == section)
  where = f'the fields of {section}' if section else 'the top-level fields'
  return f'{message}; {where} are {", ".join(names)}'


def check_overrides(argv: Sequence[str], config: ml_collections.ConfigDict,
                    flag_name: str = 'config') -> None:
  """Raises :class:`ConfigError` naming every override in ``argv`` (a full command line,
  ``argv[0]`` the program) whose field ``config`` does not have, with a did-you-mean
  (``unknown config field ppo.learning_rate; did you mean ppo.lr?``)."""
  keys = flatten_keys(config)
  known = set(keys)
  unknown = [key for key in dict.fromkeys(override_keys(argv, flag_name))
             if key not in known]
  if unknown:
    raise ConfigError('; '.join(_unknown_message(k, keys, flag_name) for k in unknown))


def config_spec(argv: Sequence[str], default: str, flag_name: str = 'config') -> str:
  """The ``path[:arg]`` of ``--config`` in ``argv`` (the last one wins, as in absl)."""
  spec = default
  args = list(argv[1:])
  for i, arg in enumerate(args):
    if arg == '--':
      break
    for dashes in ('-', '--'):
      if arg.startswith(f'{dashes}{flag_name}='):
        spec = arg.split('=', 1)[1]
      elif arg == f'{dashes}{flag_name}' and i + 1 < len(args):
        spec = args[i + 1]
  return spec


def load_config(spec: str) -> ml_collections.ConfigDict:
  """``get_config(arg)`` of the config file of ``spec`` = ``path[:arg]``, loaded the way
  ml_collections' ``config_flags`` does it (the path relative to the working directory,
  no ``arg`` without a colon), but without adding the module to ``sys.modules``."""
  path, *arg = spec.split(':', 1)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'config file {path!r} not found (from --config={spec}); '
                            'paths are relative to the working directory')
  module_spec = importlib.util.spec_from_file_location('_config_checks_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(*arg)


def _expand_flagfiles(argv: Sequence[str]) -> list[str]:
  """``argv`` with ``--flagfile=`` contents inlined (absl reports a bad flagfile later)."""
  from absl import flags
  try:
    return flags.FLAGS.read_flags_from_files(list(argv), force_gnu=False)
  except Exception:  # absl itself reports a broken flagfile when it parses the flags.
    return list(argv)


def check_command_line(default_config: str, argv: Sequence[str] | None = None,
                       flag_name: str = 'config') -> None:
  """For a binary's ``__main__`` block, before ``app.run``: loads the config named by
  ``--config`` (``default_config`` without one) and checks the overrides; a bad key, a
  missing config file or an unknown variant prints ``error: ...`` and exits with 2."""
  argv = sys.argv if argv is None else argv

  def check(args: list[str]) -> None:
    args = _expand_flagfiles(args)
    check_overrides(args, load_config(config_spec(args, default_config, flag_name)),
                    flag_name)

  report_user_errors(check)(list(argv))


# --------------------------------------------------------------------------- values
_TYPES: dict[str, tuple[type, ...]] = {'int': (int,), 'float': (int, float),
                                       'number': (int, float), 'str': (str,),
                                       'bool': (bool,)}
_ARTICLES = {'int': 'an int', 'float': 'a float', 'number': 'a number', 'str': 'a string',
             'bool': 'a bool'}
_OPS: dict[str, Callable[[Any, Any], bool]] = {'>=': operator.ge, '<=': operator.le,
                                               '>': operator.gt, '<': operator.lt}
_FIELD = re.compile(r'^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$')
_COMPARISON = re.compile(r'^(>=|<=|>|<)\s*(\S+)$')
_INTERVAL = re.compile(r'^in\s*([\[(])\s*([^,\s]+)\s*,\s*([^\]\)\s]+)\s*([\])])$')


def _bound(text: str, rule: str) -> float | str:
  """A number, or the dotted name of the field whose value is the bound."""
  try:
    return float(text)
  except ValueError:
    if _FIELD.match(text):
      return text
    raise InvalidRuleError(f'rule {rule!r}: {text!r} is neither a number nor a field') from None


@dataclasses.dataclass(frozen=True)
class _Condition:
  """``value OP bound``; ``text`` is how the message and the rule say it."""

  op: str
  bound: float | str
  text: str


@dataclasses.dataclass(frozen=True)
class Rule:
  """A parsed rule: an optional type, conditions that must all hold, or choices."""

  type_name: str | None = None
  conditions: tuple[_Condition, ...] = ()
  choices: tuple[Any, ...] | None = None


@functools.cache
def parse_rule(rule: str | tuple) -> Rule:
  """The :class:`Rule` of a rule string or tuple of choices (see the module docstring)."""
  if isinstance(rule, tuple):
    return Rule(choices=rule)
  if not isinstance(rule, str):
    raise InvalidRuleError(f'a rule is a string or a tuple of choices, got {rule!r}')
  text = rule.strip()
  type_name = None
  first, _, rest = text.partition(' ')
  if first in _TYPES:
    type_name, text = first, rest.strip()
  conditions = []
  for part in filter(None, (p.strip() for p in text.split(' and ')) if text else ()):
    comparison, interval = _COMPARISON.match(part), _INTERVAL.match(part)
    if comparison:
      op, bound = comparison.groups()
      conditions.append(_Condition(op, _bound(bound, rule), f'{op} {bound}'))
    elif interval:
      left, low, high, right = interval.groups()
      conditions.append(_Condition('>=' if left == '[' else '>', _bound(low, rule), part))
      conditions.append(_Condition('<=' if right == ']' else '<', _bound(high, rule), part))
    else:
      raise InvalidRuleError(f'rule {rule!r}: cannot read {part!r}')
  return Rule(type_name, tuple(conditions))


def _get(config: ml_collections.ConfigDict, field: str) -> Any:
  value = config
  for name in field.split('.'):
    if not isinstance(value, ml_collections.ConfigDict) or name not in value:
      raise InvalidRuleError(f'a rule names {field}, which the config does not have')
    value = value[name]
  return value


def _is_type(value: Any, type_name: str) -> bool:
  if type_name != 'bool' and isinstance(value, bool):
    return False  # True is an int to Python, never a count or a rate to a config.
  return isinstance(value, _TYPES[type_name])


def field_errors(config: ml_collections.ConfigDict, field: str, rule: str | tuple) -> list[str]:
  """What is wrong with ``config``'s ``field`` under ``rule``: ``[]`` or messages such as
  ``ppo.lr must be > 0, got -1.0``."""
  parsed = parse_rule(rule)
  value = _get(config, field)
  if parsed.choices is not None:
    return [] if value in parsed.choices else [
        f'{field} must be one of {parsed.choices}, got {value!r}']
  if parsed.type_name and not _is_type(value, parsed.type_name):
    return [f'{field} must be {_ARTICLES[parsed.type_name]}, got {value!r}']
  if parsed.conditions and not _is_type(value, 'number'):
    return [f'{field} must be a number, got {value!r}']
  failed: list[str] = []
  for condition in parsed.conditions:
    bound, text = condition.bound, condition.text
    if isinstance(bound, str):
      bound = _get(config, bound)
      text = f'{text} ({bound!r})'
    # NaN fails every comparison, so every range refuses it; an interval's two ends
    # share one text, said once.
    if not _OPS[condition.op](value, bound) and text not in failed:
      failed.append(text)
  return [f'{field} must be {text}, got {value!r}' for text in failed]


def validate(config: ml_collections.ConfigDict, rules: Mapping[str, str | tuple]) -> None:
  """Raises :class:`ConfigError` naming every field of ``config`` that breaks its rule
  (``ppo.lr must be > 0, got -1.0; env.num_worlds must be >= 1, got 0``)."""
  errors = [e for field, rule in rules.items() for e in field_errors(config, field, rule)]
  if errors:
    raise ConfigError('; '.join(errors))


__all__ = ['ConfigError', 'InvalidRuleError', 'Rule', 'check_command_line', 'check_overrides',
           'config_spec', 'field_errors', 'flatten_keys', 'load_config', 'override_keys',
           'parse_rule', 'suggestions', 'validate']
