"""The decentralised late-fusion policy pi_theta shared by all agents (SPACER).

Per agent: ego, partner and road features (see :mod:`spacer_jax.spacer.observation`)
each go through a Linear-LayerNorm-tanh-Linear encoder (width 64); partners and road
points are max-pooled over their valid entries; the three 64-vectors are concatenated
and mapped to 128 (tanh). An actor head per agent type (vehicle, pedestrian, cyclist)
gives K token logits (each type has its own token vocabulary), and a critic head gives
the value. The heads are Linear(128 -> head_width)-tanh-Linear(head_width -> K): three
full 128 x K output layers would triple the parameter count past the paper's ~65k.
The compact heads keep many hidden units and a full-rank output for few parameters:
``head_shared`` makes one Linear(128 -> head_width) for all types with a per-type bias,
``head_shared_output`` one Linear(head_width -> K) for all types with a per-type bias
(the ``cpu`` recipe's, at width 96: the BC start fits the log at 2.54 nats against the
32-wide per-type heads' 2.82), ``head_rank`` a shared linear map to fewer dims before
the output layer(s).
The last actor layer starts with std 0.01 weights and zero bias, so the initial policy
is almost uniform (entropy ~ ln K).

Count at K = 200 with the defaults: 72,505 parameters (encoders 15,488, fusion 24,704,
actor heads 32,184, critic 129); shared hidden and output layers of width 96: 72,697
(72,889 with the ``cpu`` recipe's motion inputs).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import linen as nn

from spacer_jax.sim.registry import Registry
from spacer_jax.spacer.observation import NUM_AGENT_TYPES, PolicyObservation

# Parameter subtree of the value head (the critic warm-up trains it alone).
CRITIC_HEAD = 'critic'


class MLPEncoder(nn.Module):
  """Linear-LayerNorm-tanh-Linear over the last axis."""

  width: int = 64

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    # The same math on a 2-D view: XLA:CPU's weight-gradient dot over two or more
    # contracted batch dims runs ~6x slower than over one, and the backward pass of
    # the road encoder dominates the PPO update.
    lead = x.shape[:-1]
    x = x.reshape((-1, x.shape[-1]))
    x = nn.Dense(self.width, name='in')(x)
    x = jnp.tanh(nn.LayerNorm(name='norm')(x))
    return nn.Dense(self.width, name='out')(x).reshape(lead + (self.width,))


def masked_max(x: jax.Array, mask: jax.Array) -> jax.Array:
  """Max over axis -2 of ``x (..., S, W)`` where ``mask (..., S)``; 0 if none is valid."""
  if x.shape[-2] == 0:
    return jnp.zeros(x.shape[:-2] + x.shape[-1:], x.dtype)
  pooled = jnp.max(jnp.where(mask[..., None], x, -jnp.inf), axis=-2)
  return jnp.where(jnp.any(mask, axis=-1)[..., None], pooled, 0.0)


class LateFusionPolicy(nn.Module):
  """Actor-critic over a :class:`PolicyObservation`; any leading dims ``(..., N)``.

  Attributes:
    num_tokens: K, logits per agent (the token vocabulary size of each type).
    width: encoder width (64 in the paper).
    hidden: fused width (128 in the paper).
    head_width: hidden width of each per-type actor head.
    head_shared: one hidden layer for every type, told the type by a per-type bias,
      instead of one per type (a third of the hidden layer's parameters).
    head_shared_output: one ``K``-logit output layer for every type (with a per-type
      output bias) instead of one per type; token ids mean different motions per
      type, which the type-aware hidden units tell apart.
    head_rank: when > 0, the hidden units reach the per-type ``K`` logits through a
      shared linear map to ``head_rank`` dims first (each type's output layer is
      ``head_rank x K`` instead of ``head_width x K``); 0 = no bottleneck.
    num_types: actor heads, indexed by ``PolicyObservation.type_index``.
    head_init_std: std of the last actor layer's initial weights.
  """

  num_tokens: int = 200
  width: int = 64
  hidden: int = 128
  head_width: int = 32
  head_shared: bool = False
  head_shared_output: bool = False
  head_rank: int = 0
  num_types: int = NUM_AGENT_TYPES
  head_init_std: float = 0.01

  @nn.compact
  def __call__(self, obs: PolicyObservation) -> tuple[jax.Array, jax.Array]:
    """Returns ``logits (..., N, K)`` of each agent's own type head, ``values (..., N)``."""
    ego = MLPEncoder(self.width, name='ego')(obs.ego)
    partners = masked_max(MLPEncoder(self.width, name='partners')(obs.partners),
                          obs.partner_mask)
    road = masked_max(MLPEncoder(self.width, name='road')(obs.road), obs.road_mask)
    h = jnp.tanh(nn.Dense(self.hidden, name='fusion')(
        jnp.concatenate([ego, partners, road], axis=-1)))

    t, hw, k = self.num_types, self.head_width, self.num_tokens
    type_index = jnp.clip(obs.type_index, 0, t - 1)
    b1 = self.param('actor_b1', nn.initializers.zeros, (t, hw))
    if self.head_shared:
      w1 = self.param('actor_w1', nn.initializers.lecun_normal(), (self.hidden, hw))
      z = jnp.tanh(h @ w1 + b1[type_index])[..., None, :]  # (..., N, 1, hw)
    else:
      # All heads for every agent, then each agent's own: the heads are tiny next to
      # the road encoder, and a select keeps shapes static.
      w1 = self.param('actor_w1', nn.initializers.lecun_normal(batch_axis=(0,)),
                      (t, self.hidden, hw))
      z = jnp.tanh(jnp.einsum('...h,thw->...tw', h, w1) + b1)  # (..., N, T, hw)
    if self.head_rank:
      proj = self.param('actor_proj', nn.initializers.lecun_normal(),
                        (hw, self.head_rank))
      z = z @ proj
    b2 = self.param('actor_b2', nn.initializers.zeros, (t, k))
    if self.head_shared_output:
      w2 = self.param('actor_w2', nn.initializers.normal(self.head_init_std),
                      (z.shape[-1], k))
    else:
      w2 = self.param('actor_w2', nn.initializers.normal(self.head_init_std),
                      (t, z.shape[-1], k))
    if self.head_shared and self.head_shared_output:
      # One head in all: each agent's own output bias, no per-type copies to select.
      logits = z[..., 0, :] @ w2 + b2[type_index]
    else:
      if self.head_shared_output:
        logits_all = z @ w2 + b2  # (..., N, T, K)
      else:
        z = jnp.broadcast_to(z, z.shape[:-2] + (t, z.shape[-1]))
        logits_all = jnp.einsum('...tw,twk->...tk', z, w2) + b2  # (..., N, T, K)
      logits = jnp.take_along_axis(logits_all, type_index[..., None, None],
                                   axis=-2)[..., 0, :]
    logits = restrict_logits(logits, obs)
    values = nn.Dense(1, name=CRITIC_HEAD)(h)[..., 0]
    return logits, values


# Logit of a token an agent cannot take: finite, so that 0 * logit stays 0 in the
# entropy and KL sums, and far enough below any real logit that its probability is 0.
INFEASIBLE_LOGIT = -1e9


def restrict_logits(logits: jax.Array, obs: PolicyObservation) -> jax.Array:
  """``logits (..., N, K)`` with the tokens outside ``obs.feasible`` at
  :data:`INFEASIBLE_LOGIT` (unchanged when ``obs.feasible`` is None). Every policy
  network applies it to its output, so acting, the PPO ratio, the entropy and the KL
  see one distribution."""
  if obs.feasible is None:
    return logits
  return jnp.where(obs.feasible, logits, INFEASIBLE_LOGIT)


def init_policy(rng: jax.Array, module: LateFusionPolicy, obs: PolicyObservation):
  """Initial parameters (any observation of the right feature sizes will do)."""
  return module.init(rng, obs)


def policy_apply(module: LateFusionPolicy, params, obs: PolicyObservation
                 ) -> tuple[jax.Array, jax.Array]:
  """``(logits (..., N, K), values (..., N))``; wrap with ``functools.partial`` for
  :func:`spacer_jax.spacer.losses.ppo_loss`'s ``apply_fn(params, obs)``."""
  return module.apply(params, obs)


# Policy networks by the name a config's ``policy.network`` gives. A network is a flax
# module taking a PolicyObservation and returning ``(logits (..., N, K), values (..., N))``,
# with a ``num_tokens`` field; the other fields of the config's ``policy`` block are
# its constructor arguments.
_NETWORKS: Registry[type[nn.Module]] = Registry('policy network')


def register_policy_network(name: str, network: type[nn.Module],
                            overwrite: bool = False) -> type[nn.Module]:
  """Makes ``--config.policy.network=name`` build ``network``. Its output logits must go
  through :func:`restrict_logits` (feasible actions), as ``LateFusionPolicy``'s do."""
  return _NETWORKS.register(name, network, overwrite)


def get_policy_network(name: str, **fields) -> nn.Module:
  """The registered policy network ``name`` built with ``fields`` (e.g. ``num_tokens``,
  ``width``); an unknown field is an error naming the network's fields."""
  network = _NETWORKS.get(name)
  known = {f.name for f in dataclasses.fields(network)} - {'parent', 'name'}
  unknown = sorted(set(fields) - known)
  if unknown:
    raise ValueError(f'policy network {name!r} has no field(s) {unknown}; its fields: '
                     f'{sorted(known)}.')
  return network(**fields)


register_policy_network('late_fusion', LateFusionPolicy)


def count_params(params) -> int:
  """Number of scalars in a parameter pytree."""
  return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
