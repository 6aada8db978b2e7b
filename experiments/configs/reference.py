"""Reference-model training (next-token prediction over motion tokens, paper defaults).

Run:
  python -m experiments.train_reference --config=experiments/configs/reference.py \
      --workdir=/tmp/reference
Variants (``reference.py:<variant>``, combine with commas, e.g. ``cpu,catk``):
  ``base`` (default): the paper's 3.2M-parameter model on 64-agent generated scenes.
  ``cpu``: the default reference, trained on this 2-core CPU in under an hour::

      python -m experiments.train_reference --config=experiments/configs/reference.py:cpu \
          --workdir=/tmp/reference_cpu

    ``spacer_jax.models.default.get_or_train_default_reference()`` runs exactly this
    into the cache when no packaged default reference fits.
  ``tiny``: seconds (tests).
  ``catk``: closed-loop fine-tuning (CAT-K) of ``--config.init_checkpoint`` (a
    reference artifact or train_reference workdir).
  ``follow``: car following: relative motion (closing speed) in the agent->agent keys,
    half the generated scenes with incidents (stalled cars, slow-downs); from an
    ``init_checkpoint`` without them the model gains the inputs with zero weights.

The fields, their defaults and their ranges live in ``spacer_jax.models.recipes``: the
library trains its default reference from the same recipe, and cannot import this
folder.
"""

from spacer_jax.models.recipes import RULES, VARIANTS, get_config

__all__ = ['RULES', 'VARIANTS', 'get_config']
