"""Mean-field two-player zero-sum games.

Mixed strategies are particle measures; :class:`DescentAscent` moves two populations (x
descends, y ascends) with optional Langevin noise and Wasserstein–Fisher–Rao reaction, as a
NumPyro kernel; :func:`nash_gap` measures the Nikaido–Isoda error; :mod:`.examples` holds games
with known equilibria and the polynomial games on spheres of Domingo-Enrich et al. (NeurIPS 2020).

Theory: ``docs/theory/games.md``.
"""

from . import descent_ascent, examples, game
from .descent_ascent import DescentAscent, GameSetup, GameState, build_kernel
from .game import Box, Euclidean, Game, Space, Sphere
from .nash_gap import NashGap, best_response, nash_gap

__all__ = [
    "Game",
    "Space",
    "Euclidean",
    "Sphere",
    "Box",
    "DescentAscent",
    "GameState",
    "GameSetup",
    "build_kernel",
    "nash_gap",
    "NashGap",
    "best_response",
    "examples",
    "game",
    "descent_ascent",
]
