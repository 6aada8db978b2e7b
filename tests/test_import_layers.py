"""The library's layers point down: no package imports one above it, nor the binaries.

sim <- data, tokens <- models <- spacer <- eval <- apps <- experiments. ``training``,
``parallel`` and ``viz`` are shared utilities any layer may use; they import only the
simulator and data. Every import counts, function-local ones too: a lazy import is still
a dependency, only a hidden one. (The same check as import-linter's layers contract,
without the dependency.)
"""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    'spacer_jax')

# What each package may import besides itself (and third-party code).
UTILITIES = {'training', 'parallel', 'viz'}
ALLOWED = {
    'sim': set(),
    'data': {'sim'},
    'tokens': {'sim'},
    'models': {'sim', 'data', 'tokens'},
    'spacer': {'sim', 'data', 'tokens', 'models'},
    'eval': {'sim', 'data', 'tokens', 'models', 'spacer'},
    'apps': {'sim', 'data', 'tokens', 'models', 'spacer', 'eval'},
    'training': {'sim', 'data'},
    'parallel': {'sim', 'data'},
    'viz': {'sim', 'data'},
}
for name in ALLOWED:
  if name not in UTILITIES:
    ALLOWED[name] |= UTILITIES - {name}

# Known exceptions, each with the reason it stays (none today; keep it that way).
EXCEPTIONS: set[tuple[str, str]] = set()


def _imports(path: str) -> list[tuple[int, str]]:
  tree = ast.parse(open(path).read(), path)
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found += [(node.lineno, a.name) for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      found.append((node.lineno, node.module))
  return found


def _modules():
  for folder, _, files in os.walk(ROOT):
    for f in sorted(files):
      if f.endswith('.py'):
        path = os.path.join(folder, f)
        rel = os.path.relpath(path, ROOT).split(os.sep)
        yield path, rel[0] if len(rel) > 1 else None


def test_every_package_has_a_layer():
  packages = {pkg for _, pkg in _modules() if pkg is not None}
  assert packages == set(ALLOWED), f'give {packages ^ set(ALLOWED)} a layer here'


@pytest.mark.parametrize('package', sorted(ALLOWED))
def test_imports_point_down(package):
  bad = []
  for path, pkg in _modules():
    if pkg != package:
      continue
    for line, module in _imports(path):
      parts = module.split('.')
      if parts[0] == 'experiments':
        bad.append(f'{os.path.relpath(path, ROOT)}:{line} imports {module} (a binary)')
      elif parts[0] == 'spacer_jax' and len(parts) > 1 and parts[1] != pkg:
        target = parts[1]
        if (target in ALLOWED and target not in ALLOWED[pkg]
            and (pkg, target) not in EXCEPTIONS):
          bad.append(f'{os.path.relpath(path, ROOT)}:{line} imports {module} ({pkg} may '
                     f'import only {sorted(ALLOWED[pkg])})')
  assert not bad, '\n'.join(bad)


def test_the_check_sees_local_and_upward_imports(tmp_path):
  path = tmp_path / 'm.py'
  path.write_text('def f():\n  from spacer_jax.apps import train_spacer\n')
  assert _imports(str(path)) == [(2, 'spacer_jax.apps')]
