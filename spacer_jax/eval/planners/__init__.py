"""Ego planners for closed-loop planner evaluation.

An :class:`EgoPlanner` drives the self-driving car (SDC) inside
``spacer_jax.eval.sim_agents.closed_loop_rollout``: at every decision step (``S``
simulator steps of 0.1 s, the token rate) it returns the SDC's next ``S`` poses as a
one-row ``Motion``, and the runner overrides the sim-agent policy's SDC row with it.

Planners, all pure and jittable, batch dims ``(...)`` leading:

* :class:`IDMPlanner`: the Intelligent Driver Model along the SDC's logged path (the
  route, as nuPlan-style evaluations give planners the expert's route), with the nearest
  object in the SDC's corridor ahead as leader and a curvature speed cap. Its
  parameters are an :class:`IDMParams` pytree, so a whole grid shares one compile;
  :func:`idm_planner_grid` spans timid to aggressive around the paper's baseline (spec:
  v0 30 m/s, s0 2 m, T 1.5 s, a 2 m/s^2, b 3 m/s^2).
* :class:`FrenetPlanner`: a sampling planner in the route's Frenet frame; candidates are
  lateral offsets x target speeds (quintic lateral profile over arc length, constant
  acceleration longitudinally), each scored against constant-velocity predictions of the
  other objects, road edges, the route, comfort and progress; the cheapest is driven.
  :func:`frenet_planner_family` gives cautious / nominal / assertive weightings.
* :class:`PolicyEgo`: any ``SimAgentPolicy`` (e.g. a learned self-play policy) as ego.

Both scripted planners stop at red lights on the route and at the route's end
(:class:`StopRules`).

Modules, each with one job (imports point down the list):

* ``base``: the :class:`EgoPlanner` interface, :func:`make_motion`, config checks.
* ``scene``: the SDC and the other objects at the current step (:func:`ego_now`).
* ``route``: the SDC's logged path as :class:`Route`, poses along it, the curvature
  speed cap.
* ``stops``: :class:`StopRules` (route end, red lights).
* ``idm``, ``frenet``, ``learned``: the planners above.

This package imports ``spacer_jax.eval.sim_agents`` (for ``Motion``); that module names
``EgoPlanner`` only for type checking, so the import stays one-way.
"""

from spacer_jax.eval.planners.base import EgoPlanner, make_motion
from spacer_jax.eval.planners.frenet import (
    FRENET_FAMILY_ENDPOINTS,
    FrenetCarry,
    FrenetParams,
    FrenetPlanner,
    frenet_planner_family,
)
from spacer_jax.eval.planners.frenet import (
    _Candidates as _Candidates,  # private; the candidate-profile tests use it
)
from spacer_jax.eval.planners.idm import (
    IDM_GRID_ENDPOINTS,
    IDMCarry,
    IDMParams,
    IDMPlanner,
    idm_planner_grid,
)
from spacer_jax.eval.planners.learned import PolicyEgo, PolicyEgoCarry
from spacer_jax.eval.planners.route import (
    Route,
    route_pose,
    sdc_route,
    speed_cap_at,
    speed_cap_profile,
)
from spacer_jax.eval.planners.scene import EgoNow, ego_now, sdc_index, take_object
from spacer_jax.eval.planners.stops import StopRules
from spacer_jax.sim.registry import Registry

# Planner families by name: ``family(n) -> {planner name: (EgoPlanner, params)}``, n
# members from cautious to assertive; the planner study asks for each by name.
_FAMILIES: Registry = Registry('planner family')


def register_planner_family(name: str, family, overwrite: bool = False):
  """Makes ``get_planner_family(name, n)`` call ``family(n)``."""
  return _FAMILIES.register(name, family, overwrite)


def get_planner_family(name: str, n: int) -> dict:
  """``n`` planners of the registered family ``name`` ('idm', 'frenet', ...)."""
  return _FAMILIES.get(name)(n)


register_planner_family('idm', idm_planner_grid)
register_planner_family('frenet', frenet_planner_family)

__all__ = [
    'FRENET_FAMILY_ENDPOINTS', 'IDM_GRID_ENDPOINTS', 'EgoNow', 'EgoPlanner', 'FrenetCarry',
    'StopRules',
    'FrenetParams', 'FrenetPlanner', 'IDMParams', 'IDMPlanner', 'PolicyEgo', 'PolicyEgoCarry',
    'IDMCarry', 'Route', 'ego_now', 'frenet_planner_family', 'idm_planner_grid',
    'get_planner_family', 'make_motion', 'register_planner_family', 'route_pose',
    'sdc_route', 'sdc_index', 'speed_cap_at',
    'speed_cap_profile', 'take_object',
]
