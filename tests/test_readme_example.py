"""README's "Use sim agents from Python" example runs as written (packaged policy)."""

import os
import re

import pytest

from spacer_jax.spacer import pretrained

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      'README.md')


def _example() -> str:
  text = open(README).read()
  section = text.split('## Use sim agents from Python', 1)[1]
  return re.search(r'```python\n(.*?)```', section, re.S).group(1)


@pytest.mark.skipif(pretrained.pretrained_info('spacer') is None,
                    reason='no spacer:default is packaged (test_pretrained_policies fails)')
def test_readme_sim_agents_example_runs(tmp_path, capsys):
  code = _example().replace('/tmp/sim_agents.mp4', str(tmp_path / 'sim_agents.mp4'))
  exec(compile(code, 'README.md', 'exec'), {})
  videos = list(tmp_path.iterdir())
  assert videos and videos[0].stat().st_size > 10_000
  assert 'agents off-road:' in capsys.readouterr().out
