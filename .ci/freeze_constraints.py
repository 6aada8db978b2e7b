"""Prints constraints.txt: the installed versions of everything spacer_jax[dev] needs.

  python -m pip install -e ".[dev]" && python .ci/freeze_constraints.py > constraints.txt

Walks the requirements in setup.py (``install_requires`` and the ``dev`` extra, read
from the file: the installed metadata may be older) and theirs, transitively
(environment markers evaluated, requested extras followed), and pins each to the
version installed here. Unrelated
packages in the same environment are left out; so are the build tools (pip,
setuptools, wheel: pyproject.toml's build-system pins those) and torch.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

SETUP_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'setup.py')
LEFT_OUT = {'pip', 'setuptools', 'wheel', 'torch'}
HEADER = """\
# Exact versions of spacer_jax's dependencies (install_requires + the dev extra, with
# their transitive dependencies) that CI ran with: .ci/run installs with
#   python -m pip install -c constraints.txt -e ".[dev]"
# Regenerate after changing setup.py or upgrading (in an environment where that passes):
#   python -m pip install -e ".[dev]" && python .ci/freeze_constraints.py > constraints.txt
"""


def project_requirements(path: str = SETUP_PY, extras: tuple[str, ...] = ('dev',)
                         ) -> list[str]:
  """``install_requires`` plus the ``extras_require`` lists named, from the literal
  keyword arguments of the ``setup(...)`` call in ``path``."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'setup':
      kwargs = {k.arg: k.value for k in node.keywords}
      out = list(ast.literal_eval(kwargs['install_requires']))
      extra = ast.literal_eval(kwargs.get('extras_require', ast.Constant({})))
      for name in extras:
        out += extra[name]
      return out
  sys.exit(f'error: no setup(...) call in {path}.')


def _requirements(name: str, extras: set[str]) -> list[Requirement]:
  """``name``'s requirements that apply here with ``extras`` requested."""
  out = []
  for line in md.requires(name) or []:
    req = Requirement(line)
    envs = [{'extra': e} for e in extras or {''}]
    if req.marker is None or any(req.marker.evaluate(env) for env in envs):
      out.append(req)
  return out


def closure(roots: list[str]) -> dict[str, md.Distribution]:
  """Canonical name -> installed distribution of ``roots`` (requirement strings) and of
  everything they need, transitively.

  Raises:
    SystemExit: a requirement is not installed (install the project first).
  """
  found: dict[str, tuple[md.Distribution, set[str]]] = {}
  reqs = [Requirement(r) for r in roots]
  stack = [('setup.py', [r for r in reqs if r.marker is None or r.marker.evaluate()])]
  while stack:
    name, reqs = stack.pop()
    for req in reqs:  # markers already evaluated
      key = canonicalize_name(req.name)
      if key in LEFT_OUT:
        continue
      known = found.get(key)
      if known is not None and set(req.extras) <= known[1]:
        continue  # already walked with these extras
      try:
        dist = md.distribution(req.name)
      except md.PackageNotFoundError:
        sys.exit(f'error: {req} (needed by {name}) is not installed; run '
                 'python -m pip install -e ".[dev]" first.')
      more = set(req.extras) | (known[1] if known else set())
      found[key] = (dist, more)
      stack.append((dist.metadata['Name'], _requirements(dist.metadata['Name'], more)))
  return {key: dist for key, (dist, _) in found.items()}


def main() -> None:
  print(HEADER, end='')
  for _, dist in sorted(closure(project_requirements()).items()):
    print(f'{dist.metadata["Name"]}=={dist.version}')


if __name__ == '__main__':
  main()
