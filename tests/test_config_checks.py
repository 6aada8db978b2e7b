"""Config values are checked where the user typed them: unknown keys, bad values."""

import math
import os
import subprocess
import sys

import pytest

from experiments.configs import evaluate as evaluate_configs
from experiments.configs import reference as reference_configs
from experiments.configs import sim_demo as sim_demo_configs
from experiments.configs import spacer as spacer_configs
from experiments.configs import tokens as tokens_configs
from spacer_jax.training import config_checks
from spacer_jax.training.config_checks import ConfigError, InvalidRuleError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIGS = {'spacer': spacer_configs, 'reference': reference_configs,
           'evaluate': evaluate_configs, 'sim_demo': sim_demo_configs,
           'tokens': tokens_configs}


# --------------------------------------------------------------------------- overrides
def test_unknown_override_gets_did_you_mean():
  config = spacer_configs.get_config('tiny')
  with pytest.raises(ConfigError) as e:
    config_checks.check_overrides(['prog', '--config.ppo.learning_rate=1'], config)
  assert str(e.value) == 'unknown config field ppo.learning_rate; did you mean ppo.lr?'
  # A plain misspelling, a field in the wrong section, no section at all.
  for typed, meant in [('env.num_world', 'env.num_worlds'), ('train.lr', 'ppo.lr'),
                       ('num_worlds', 'env.num_worlds'), ('anchor.kl', 'anchor.kl_coef')]:
    with pytest.raises(ConfigError, match=f'did you mean .*{meant}'):
      config_checks.check_overrides(['prog', f'--config.{typed}', '3'], config)


def test_unknown_override_without_near_miss_lists_the_section():
  config = spacer_configs.get_config('')
  expected = (r'ppo.zzz; the fields of ppo are adam_eps, chunk_rows, critic_warmup_steps, '
              r'epochs')
  with pytest.raises(ConfigError, match=expected):
    config_checks.check_overrides(['prog', '--config.ppo.zzz=1'], config)
  with pytest.raises(ConfigError, match='foo.bar; the top-level fields are anchor, bc, data'):
    config_checks.check_overrides(['prog', '--config.foo.bar=1'], config)


def test_known_overrides_in_every_absl_form_pass():
  config = spacer_configs.get_config('tiny')
  config_checks.check_overrides(
      ['prog', '--config=x.py:tiny', '--config.ppo.lr=1e-3', '--config.env.num_worlds', '8',
       '-config.seed=1', '--noconfig.loss.normalize_advantages', '--config.ppo={}',
       '--workdir=/tmp/x', '--', '--config.not.a_flag=1'], config)
  assert config_checks.override_keys(
      ['prog', '--config.a.b=1', '--noconfig.c', '--configx.d=1', '--', '--config.e=1']
  ) == ['a.b', 'c']


def test_config_spec_and_load_config():
  default = 'experiments/configs/spacer.py'
  assert config_checks.config_spec(['prog'], default) == default
  assert config_checks.config_spec(
      ['prog', '--config=a.py', '--config', 'b.py:tiny'], default) == 'b.py:tiny'
  config = config_checks.load_config(os.path.join(ROOT, default) + ':tiny,ppo')
  assert config.variant == 'ppo' and config.env.num_worlds == 4
  with pytest.raises(FileNotFoundError, match='nope.py'):
    config_checks.load_config('nope.py:tiny')
  with pytest.raises(ValueError, match='variant'):
    config_checks.load_config(os.path.join(ROOT, default) + ':huge')


def test_check_command_line_is_one_line_and_exit_2(capsys, monkeypatch):
  argv = ['prog', f'--config={ROOT}/experiments/configs/reference.py:tiny',
          '--config.train.learning_rate=1']
  monkeypatch.setattr(sys, 'argv', argv)
  with pytest.raises(SystemExit) as e:
    config_checks.check_command_line('unused.py', argv)
  assert e.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('error: unknown config field train.learning_rate')
  assert 'did you mean train.lr?' in err[0]


# --------------------------------------------------------------------------- values
@pytest.mark.parametrize('name,variant', [
    ('spacer', ''), ('spacer', 'default'), ('spacer', 'tiny'), ('spacer', 'cpu'),
    ('spacer', 'ppo'), ('spacer', 'hr_ppo'), ('spacer', 'tiny,ppo'), ('spacer', 'cpu,ppo'),
    ('spacer', 'cpu,hr_ppo'),
    ('reference', ''), ('reference', 'cpu'), ('reference', 'tiny'), ('reference', 'catk'),
    ('reference', 'cpu,catk'), ('reference', 'tiny,catk'),
    ('evaluate', ''), ('evaluate', 'cpu'), ('evaluate', 'tiny'),
    ('sim_demo', ''), ('sim_demo', 'tiny'),
    ('tokens', ''), ('tokens', 'tiny'), ('tokens', 'smart'),
])
def test_default_configs_of_every_variant_pass(name, variant):
  module = CONFIGS[name]
  # Strict: a rule naming a field the config lacks raises InvalidRuleError here.
  config_checks.validate(module.get_config(variant), module.RULES)


@pytest.mark.parametrize('name,field,value,message', [
    ('spacer', 'ppo.lr', -1.0, 'ppo.lr must be > 0, got -1.0'),
    ('spacer', 'env.num_worlds', 0, 'env.num_worlds must be >= 1, got 0'),
    ('spacer', 'ppo.gamma', 1.5, 'ppo.gamma must be in (0, 1], got 1.5'),
    ('spacer', 'reward.after_goal', 'stop',
     "reward.after_goal must be one of ('remove', 'freeze', 'continue'), got 'stop'"),
    ('spacer', 'obs.num_road_points', 4096,
     'obs.num_road_points must be <= obs.max_prepared_points (2048), got 4096'),
    ('reference', 'train.label_smoothing', 1.0,
     'train.label_smoothing must be in [0, 1), got 1.0'),
    ('reference', 'model.size', 'huge',
     "model.size must be one of ('nano', 'mini', 'base', 'tiny'), got 'huge'"),
    ('evaluate', 'realism.temperature', 0.0, 'realism.temperature must be > 0, got 0.0'),
])
def test_a_bad_value_is_refused_naming_the_field(name, field, value, message):
  module = CONFIGS[name]
  config = module.get_config('')
  section, _, leaf = field.rpartition('.')
  setattr(config[section], leaf, value)
  with pytest.raises(ConfigError) as e:
    config_checks.validate(config, module.RULES)
  assert str(e.value) == message


def test_every_bad_value_is_named_at_once_and_nan_is_refused():
  config = spacer_configs.get_config('tiny')
  config.ppo.lr = math.nan
  config.data.pool_size = 0
  with pytest.raises(ConfigError) as e:
    config_checks.validate(config, spacer_configs.RULES)
  assert str(e.value) == 'data.pool_size must be >= 1, got 0; ppo.lr must be > 0, got nan'


def test_rule_types():
  config = evaluate_configs.get_config('tiny')
  assert config_checks.field_errors(config, 'speed.repeats', 'int >= 1') == []
  config.speed.repeats = True  # An int to Python, never a count to a config.
  assert config_checks.field_errors(config, 'speed.repeats', 'int >= 1') == [
      'speed.repeats must be an int, got True']
  assert config_checks.field_errors(config, 'baselines', 'str') == []
  assert config_checks.field_errors(config, 'baselines', '> 0') == [
      "baselines must be a number, got 'log_replay,constant_velocity'"]
  # float rules accept ints: ml_collections keeps 1 as typed in a float field too.
  assert config_checks.field_errors(config, 'realism.temperature', 'float in (0, 2]') == []


def test_bad_rules_are_bugs_not_user_errors():
  config = spacer_configs.get_config('tiny')
  for rule in ('int >= one two', 'between 0 and 1', 7):
    with pytest.raises(InvalidRuleError):
      config_checks.validate(config, {'ppo.lr': rule})
  with pytest.raises(InvalidRuleError, match='ppo.learning_rate'):
    config_checks.validate(config, {'ppo.learning_rate': '> 0'})
  assert not issubclass(InvalidRuleError, ValueError)


def test_sim_demo_and_token_rules_follow_the_library():
  from spacer_jax.data.womd.dataset import FORMATS
  from spacer_jax.sim import agents
  from spacer_jax.sim.config import ControlledObjects
  rules = sim_demo_configs.RULES
  assert set(rules['sim_agent']) == set(agents._AGENTS)  # What get_sim_agent builds.
  assert set(rules['controlled_object']) == {c.value for c in ControlledObjects}
  assert set(tokens_configs.RULES['data_format']) == set(FORMATS)


def test_model_size_rules_follow_the_model_sizes():
  from spacer_jax.models.config import SIZES
  # 'tiny' is the trainers' seconds-sized model (models.trainer.model_config).
  for module, field in ((spacer_configs, 'reference.size'),
                        (reference_configs, 'model.size')):
    assert set(module.RULES[field]) == {*SIZES, 'tiny'}


# --------------------------------------------------------------------------- end to end
def test_binary_refuses_unknown_key_and_bad_value_before_writing(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  workdir = tmp_path / 'run'
  base = [sys.executable, '-m', 'experiments.train_spacer',
          '--config=experiments/configs/spacer.py:tiny', f'--workdir={workdir}']
  for override, expected in [('--config.ppo.learning_rate=1', 'did you mean ppo.lr'),
                             ('--config.ppo.lr=-1', 'ppo.lr must be > 0, got -1.0')]:
    out = subprocess.run(base + [override], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and expected in errors[0], out.stderr[-2000:]
    assert 'Traceback' not in out.stderr
    assert not workdir.exists()
