"""The README's Python examples run as written and their stated results hold.

A fenced ``python`` block preceded by the line ``<!-- readme-test: run -->`` is executed here
verbatim (no substitution of sizes), in a fresh namespace.  Every comment in it that is a
Python equality, e.g. ``# samples["w"].shape == (4, 200, 256, 10)``, is a stated result and is
evaluated after the block has run.  A few blocks state numbers in prose; those are checked by
the post-conditions below.  Default-suite cost: about 110 s on 2 cores, nearly all of it XLA
compilation of the quickstart-sized runs (which cannot shrink without changing the README).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- readme-test: run -->"
BLOCK = re.compile(re.escape(MARKER) + r"\s*\n```python\n(.*?)\n```", re.S)


def _heading_before(text: str, pos: int) -> str:
    headings = re.findall(r"^## (.+)$", text[:pos], re.M)
    return headings[-1] if headings else "top"


def readme_blocks() -> list[tuple[str, str]]:
    """``(id, code)`` of every runnable block, the id naming its section and rank in it."""
    text = README.read_text()
    blocks, seen = [], {}
    for m in BLOCK.finditer(text):
        section = _heading_before(text, m.start())
        seen[section] = seen.get(section, 0) + 1
        blocks.append((f"{section} #{seen[section]}", m.group(1)))
    return blocks


def stated_claims(code: str) -> list[str]:
    """Comments of ``code`` that are Python equalities (``expr == value``)."""
    claims = []
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type != tokenize.COMMENT:
            continue
        text = tok.string.lstrip("#").strip()
        try:
            node = ast.parse(text, mode="eval").body
        except SyntaxError:
            continue
        if isinstance(node, ast.Compare) and all(isinstance(op, ast.Eq) for op in node.ops):
            claims.append(text)
    return claims


def _wasserstein_fits(ns):
    """Wasserstein flow: the energy decreases along every replica and the teacher is fitted.

    The README says the relative training error is about 1e-2 after t = 2000 (measured
    0.010-0.013); 0.03 leaves room for float32 and platform differences while still failing
    if the flow did not fit the teacher (the error at t = 0 is about 1).
    """
    energy = np.asarray(ns["energy"])
    # explicit Euler on a gradient flow with a stable dt: E(t_k) non-increasing up to float32
    # rounding of E ~ 0.92 (a few ulps, 1e-6)
    assert np.all(np.diff(energy, axis=1) <= 1e-6)
    assert np.all(np.asarray(ns["error"]) < 3e-2)


def _langevin_matches_nuts(ns):
    """MALA on the n-particle chain and NUTS on ``gibbs_model`` sample the same law.

    The training MSE has mean ~0.067 and sd ~0.034 under both; with >= 200 effective draws per
    method the standard error of the difference of means is <= 0.034 * sqrt(2/200) ~ 0.0034, so
    0.012 is about 3.5 standard errors (the run is seeded, so this is deterministic).
    """
    a, b = np.asarray(ns["mse_nuts"]), np.asarray(ns["mse_mala"])
    assert abs(a.mean() - b.mean()) < 0.012
    assert abs(a.std() - b.std()) < 0.012


def _first_variation_is_dE_dm(ns):
    """V_j = dE/dm_j: in the mean-field scaling f = sum_j m_j phi_j is linear in the masses and
    E = 1/2 E_nu (f - y)^2 + const (unit noise), so sum_j m_j V_j = E_nu[(f - y) f].

    With uniform masses the left side is mean_j V_j; f comes from the model's own trace.
    Tolerance: float32 sums of 256 data of size O(1), relative error ~1e-6, so 1e-4 is loose
    but far below the size of the terms (E_nu[(f - y) f] ~ 1e-2 to 1e-1 at initialisation).
    """
    import jax.numpy as jnp
    from numpyro import handlers

    mf, pe, z, V, data = ns["mf"], ns["pe"], ns["z"], ns["V"], ns["data"]
    model = handlers.substitute(mf.models.shallow_network, pe.constrain(z))
    f = handlers.trace(model).get_trace(data.x, data.y, width=64)["f"]["value"]
    expected = float(jnp.mean((f - data.y) * f))
    assert abs(expected) > 1e-3  # the check is not vacuous
    assert float(jnp.mean(V)) == pytest.approx(expected, abs=1e-4)


POSTCONDITIONS = {
    "Quickstart #2": _wasserstein_fits,
    "Langevin against NUTS on the Gibbs measure #1": _langevin_matches_nuts,
    "The pieces: energy, first variation, velocity #1": _first_variation_is_dE_dm,
}


#: blocks whose cost is a NUTS compilation (~10-16 s on 2 busy cores) and whose claim, Langevin
#: agreeing with NUTS on gibbs_model, the kernel tests also check: run with ``-m slow``
SLOW = {"Langevin against NUTS on the Gibbs measure #1"}


def _params():
    return [pytest.param(i, code, id=i, marks=[pytest.mark.slow] if i in SLOW else []) for i, code in readme_blocks()]


def test_readme_has_runnable_blocks():
    """The README keeps its runnable examples (quickstart, Wasserstein flow, simulate, NUTS)."""
    ids = [i for i, _ in readme_blocks()]
    assert {"Quickstart #1", "Quickstart #2"} <= set(ids)
    assert len(ids) >= 5
    assert set(POSTCONDITIONS) <= set(ids)
    quickstart = dict(readme_blocks())["Quickstart #1"]
    # the quickstart, verbatim
    call = 'MCMC(kernel, num_warmup=0, num_samples=2000, thinning=10, num_chains=4, chain_method="vectorized")'
    assert call in quickstart
    assert 'samples["w"].shape == (4, 200, 256, 10)' in quickstart


@pytest.mark.parametrize("block_id, code", _params())
def test_readme_block_runs(block_id, code):
    """The block runs as written and every result it states (``# expr == value``) holds."""
    claims = stated_claims(code)
    assert claims, f"README block {block_id!r} states no checkable result (`# expr == value`)"
    ns: dict = {"__name__": "__readme__"}
    exec(compile(code, f"README.md[{block_id}]", "exec"), ns)
    for claim in claims:
        assert eval(claim, ns), f"README block {block_id!r}: {claim} does not hold"
    if block_id in POSTCONDITIONS:
        POSTCONDITIONS[block_id](ns)
