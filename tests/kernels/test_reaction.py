"""Fisher–Rao reaction steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mfsample.kernels.reaction import (
    birth_death_step,
    centered_first_variation,
    effective_sample_size,
    fire_probability,
    fisher_rao_reweight,
)


def _binomial_tol(p, trials, sigmas=5.0):
    """``sigmas`` standard deviations of a frequency estimated from ``trials`` Bernoulli(p) draws."""
    return sigmas * np.sqrt(p * (1 - p) / trials)


def test_centered_first_variation_has_zero_mean_under_mu():
    """Vbar = sum_j m_j V_j, so sum_j m_j (V_j - Vbar) = 0 (uniform and weighted)."""
    v = jax.random.normal(jax.random.PRNGKey(0), (7,))
    m = jax.random.dirichlet(jax.random.PRNGKey(1), jnp.ones(7))
    u, vbar = centered_first_variation(v, m)
    np.testing.assert_allclose(vbar, np.sum(np.asarray(m) * np.asarray(v)), rtol=1e-6)
    np.testing.assert_allclose(np.sum(np.asarray(m) * np.asarray(u)), 0.0, atol=1e-6)
    u0, vbar0 = centered_first_variation(v)
    np.testing.assert_allclose(vbar0, np.mean(np.asarray(v)), rtol=1e-6)


def test_fisher_rao_reweight_solves_the_reaction_ode():
    """With V frozen, d_t m_j = -alpha (V_j - Vbar(t)) m_j has solution m_j(t) prop. m_j(0) exp(-alpha t V_j):
    one step of 2 dt equals two steps of dt (re-centring in between), and equals the closed form."""
    with jax.enable_x64(True):
        v = jax.random.normal(jax.random.PRNGKey(0), (6,), jnp.float64)
        m0 = jax.random.dirichlet(jax.random.PRNGKey(1), jnp.ones(6, jnp.float64))
        alpha, dt = 3.0, 0.2
        one = fisher_rao_reweight(jnp.log(m0), centered_first_variation(v, m0)[0], alpha, 2 * dt)
        half = fisher_rao_reweight(jnp.log(m0), centered_first_variation(v, m0)[0], alpha, dt)
        two = fisher_rao_reweight(half, centered_first_variation(v, jnp.exp(half))[0], alpha, dt)
        closed = np.asarray(m0) * np.exp(-alpha * 2 * dt * np.asarray(v))
        closed /= closed.sum()
        np.testing.assert_allclose(np.exp(one), closed, rtol=1e-12)
        np.testing.assert_allclose(np.exp(two), closed, rtol=1e-12)


def test_fisher_rao_reweight_stays_on_the_simplex_for_huge_steps():
    """Log-space update: masses finite, >= 0, summing to 1 even when alpha dt |V - Vbar| ~ 1e4
    (where exp(-alpha dt (V - Vbar)) itself overflows float32)."""
    v = jnp.array([0.0, 1.0, -1.0, 50.0, -50.0])
    log_m = jnp.log(jnp.full(5, 0.2))
    for _ in range(3):
        u, _ = centered_first_variation(v, jnp.exp(log_m))
        log_m = fisher_rao_reweight(log_m, u, 200.0, 1.0)
        m = np.asarray(jnp.exp(log_m))
        assert np.all(np.isfinite(np.asarray(log_m))) and np.all(m >= 0)
        np.testing.assert_allclose(m.sum(), 1.0, atol=1e-6)  # float32 rounding of a sum of 5 terms
    assert m[4] > 0.999  # all the mass on the lowest V
    np.testing.assert_allclose(effective_sample_size(jnp.exp(log_m)), 1.0, atol=1e-3)


def _particles(n, d=2, seed=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return {"theta": jax.random.normal(k1, (n, d)), "c": jax.random.normal(k2, (n,))}


def test_birth_death_with_zero_rate_is_the_identity():
    """alpha = 0: fire probability 0, so the gather is the identity, bit for bit."""
    z = _particles(8)
    u = jax.random.normal(jax.random.PRNGKey(3), (8,))
    out = birth_death_step(jax.random.PRNGKey(4), z, u, 0.0, 0.1)
    for k in z:
        np.testing.assert_array_equal(np.asarray(out.z[k]), np.asarray(z[k]))
    assert int(out.births) == 0 and int(out.deaths) == 0


@pytest.mark.parametrize("birth", ["clone", "prior"])
def test_birth_death_events_write_distinct_slots(birth):
    """n is constant; kills happen only where V > Vbar and births only where V < Vbar; a kill
    rewrites its own slot, a birth at most one quiet slot (never a dying or duplicating one) and
    no slot is written twice; every clone is a pre-step particle and every prior birth a prior
    draw (100 random steps, alpha dt |V - Vbar| up to ~4 so that conflicts are frequent)."""
    n = 12
    z = _particles(n)
    prior = _particles(n, seed=99)
    for s in range(100):
        key = jax.random.PRNGKey(s)
        u = 2.0 * jax.random.normal(jax.random.fold_in(key, 1), (n,))
        out = birth_death_step(key, z, u, 1.0, 1.0, birth=birth, prior_sample=prior)
        src, fresh = np.asarray(out.source), np.asarray(out.fresh)
        killed, dup = np.asarray(out.killed), np.asarray(out.duplicated)
        assert out.z["theta"].shape == (n, 2)
        assert int(out.deaths) == killed.sum() and int(out.births) == dup.sum()
        assert np.all(np.asarray(u)[killed] > 0) and np.all(np.asarray(u)[dup] < 0)
        victims = np.nonzero((src != np.arange(n)) & ~killed)[0]
        assert np.all(dup[src[victims]]) and len(np.unique(src[victims])) == len(victims)
        assert not np.any(dup[victims])  # births overwrite quiet slots only
        expect = np.where(fresh[:, None], np.asarray(prior["theta"]), np.asarray(z["theta"])[src])
        np.testing.assert_array_equal(np.asarray(out.z["theta"]), expect)
        np.testing.assert_array_equal(fresh, killed if birth == "prior" else np.zeros(n, bool))


def test_single_particle_fires_with_probability_one_minus_exp():
    """A particle with V_j - Vbar = u fires within dt with probability 1 - exp(-alpha dt |u|):
    kills for u > 0, duplications for u < 0 (20000 independent steps; 5 binomial sigmas)."""
    n, alpha, dt, reps = 10, 2.0, 0.5, 20000
    v = jnp.array([1.0] + [0.0] * (n - 1))  # Vbar = 0.1: u_0 = 0.9, u_j = -0.1
    u, _ = centered_first_variation(v)
    z = {"theta": jnp.arange(n, dtype=jnp.float32)}
    keys = jax.random.split(jax.random.PRNGKey(0), reps)
    out = jax.jit(jax.vmap(lambda k: birth_death_step(k, z, u, alpha, dt)))(keys)
    p_kill = 1 - np.exp(-alpha * dt * 0.9)
    p_dup = 1 - np.exp(-alpha * dt * 0.1)
    np.testing.assert_allclose(np.asarray(fire_probability(u, alpha, dt))[[0, 1]], [p_kill, p_dup], rtol=1e-6)
    freq_kill = np.mean(np.asarray(out.killed[:, 0]))
    assert abs(freq_kill - p_kill) < _binomial_tol(p_kill, reps)
    freq_dup = np.asarray(out.duplicated[:, 1:]).mean(0)
    assert np.all(np.abs(freq_dup - p_dup) < _binomial_tol(p_dup, reps))
    assert not np.any(np.asarray(out.duplicated[:, 0])) and not np.any(np.asarray(out.killed[:, 1:]))
    # the dying slot holds a copy of a particle chosen uniformly among all n (itself: null event)
    src0 = np.asarray(out.source[:, 0])[np.asarray(out.killed[:, 0])]
    counts = np.bincount(src0, minlength=n)
    expected = len(src0) / n
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_birth_death_drifts_the_measure_like_the_reaction_term():
    """E[Δ ∫g dmu_n] = -alpha dt ∫ g (V - Vbar) dmu_n + O((alpha dt)^2) (clone births), for small
    n too: at n = 5, alpha dt |V - Vbar| <~ 0.03, the Monte-Carlo mean over 2e5 steps from the
    same state matches the first-order term within 8% (second-order terms ~1.5%, MC error ~2%);
    choosing the other side among the n - 1 others instead of all n would be off by n/(n-1) = 25%.
    Flipping the sign of V flips the drift."""
    reps = 200000
    g = jnp.array([-1.0, -0.3, 0.2, 0.5, 1.1])
    v = jnp.array([-0.8, 0.1, -0.4, 0.9, 0.6])  # positively correlated with g
    u, _ = centered_first_variation(v)
    alpha, dt = 0.02, 1.0
    z = {"g": g}
    keys = jax.random.split(jax.random.PRNGKey(6), reps)
    for sign in (1.0, -1.0):
        out = jax.jit(jax.vmap(lambda k: birth_death_step(k, z, sign * u, alpha, dt)))(keys)
        drift = np.mean(np.asarray(out.z["g"]).mean(1) - np.asarray(g).mean())
        first_order = -alpha * dt * np.mean(sign * np.asarray(u) * np.asarray(g))
        assert abs(drift - first_order) < 0.08 * abs(first_order), (drift, first_order)


def test_birth_death_with_one_particle_does_nothing():
    """n = 1: V_1 = Vbar, no event can happen (and no division by n - 1 = 0)."""
    z = {"theta": jnp.ones((1, 3))}
    u, _ = centered_first_variation(jnp.array([5.0]))
    out = birth_death_step(jax.random.PRNGKey(0), z, u, 10.0, 1.0)
    np.testing.assert_array_equal(np.asarray(out.z["theta"]), np.ones((1, 3)))
    assert int(out.births) == int(out.deaths) == 0


def test_surplus_births_are_dropped_when_no_quiet_slot_is_left():
    """When every particle fires, births have no quiet slot to overwrite: they are dropped (only
    the null self-overwrites, probability 1/n each, are counted); kills still happen and the
    duplicating slots are untouched (alpha dt |u| = 1e3, so every clock rings; 50 keys)."""
    z = {"theta": jnp.arange(6, dtype=jnp.float32)}
    u = jnp.array([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
    births = []
    for s in range(50):
        out = birth_death_step(jax.random.PRNGKey(s), z, u, 1e3, 1.0)
        assert int(out.deaths) == 3
        np.testing.assert_array_equal(np.asarray(out.z["theta"])[3:], [3.0, 4.0, 5.0])
        births.append(int(out.births))
    assert np.mean(births) < 1.5  # E = 3/6 null births; dropping nothing would give 3


def test_birth_death_rejects_bad_options():
    """birth must be clone or prior, and prior births need prior draws."""
    z = {"theta": jnp.zeros(3)}
    with pytest.raises(ValueError, match="birth"):
        birth_death_step(jax.random.PRNGKey(0), z, jnp.zeros(3), 1.0, 0.1, birth="mutate")
    with pytest.raises(ValueError, match="prior_sample"):
        birth_death_step(jax.random.PRNGKey(0), z, jnp.zeros(3), 1.0, 0.1, birth="prior")


def test_reaction_draws_are_uniform():
    """One call gives uniforms on [0, 1) and indices on 0..n-1 with the right laws: means,
    variances and every index's frequency within 5 standard errors (n = 7 draws 7 x 20000 times)."""
    from mfsample.kernels.reaction import reaction_draws

    n, reps = 7, 20_000
    d = jax.jit(jax.vmap(lambda k: reaction_draws(k, n)))(jax.random.split(jax.random.PRNGKey(11), reps))
    for u in (np.asarray(d.fire).ravel(), np.asarray(d.order).ravel()):
        assert u.min() >= 0.0 and u.max() < 1.0
        assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / u.size)
        assert abs(u.var() - 1 / 12) < 5 * np.sqrt(1 / 180 / u.size)  # Var of (U - 1/2)^2 is 1/180
    for idx in (np.asarray(d.source).ravel(), np.asarray(d.target).ravel()):
        freq = np.bincount(idx, minlength=n) / idx.size
        assert idx.min() >= 0 and idx.max() < n
        np.testing.assert_array_less(np.abs(freq - 1 / n), _binomial_tol(1 / n, idx.size))
    # the four kinds are independent of each other: no correlation beyond 5 standard errors
    fire, order = np.asarray(d.fire).ravel(), np.asarray(d.order).ravel()
    assert abs(np.corrcoef(fire, order)[0, 1]) < 5 / np.sqrt(fire.size)


@pytest.mark.parametrize("n", [1, 7, 256, 300, 5000])
def test_quiet_slots_are_the_quiet_part_of_a_stable_sort(n):
    """The ranking of the quiet slots is that of a stable sort of their keys with the firing slots
    keyed last (the rule as first written), for any share of firing slots and many tied keys."""
    from mfsample.kernels.ordering import argsort_uint24
    from mfsample.kernels.reaction import quiet_slots

    rng = np.random.default_rng(n)
    for share in (0.0, 0.3, 1.0):
        keys = rng.integers(0, 40, n)  # 24-bit keys, many ties
        order = (keys / 2**24).astype(np.float32)
        fire = rng.random(n) < share
        got = np.asarray(jax.jit(quiet_slots)(argsort_uint24(keys), fire))
        num_quiet = int(np.sum(~fire))
        expected = np.argsort(np.where(fire, 2.0, order), kind="stable")[:num_quiet]
        np.testing.assert_array_equal(got[:num_quiet], expected)
        np.testing.assert_array_equal(got[num_quiet:], 0)


def test_reaction_draws_rank_the_slots_by_their_order_keys():
    from mfsample.kernels.reaction import reaction_draws

    d = reaction_draws(jax.random.PRNGKey(5), 3000)
    np.testing.assert_array_equal(np.asarray(d.ranking), np.argsort(np.asarray(d.order), kind="stable"))


@pytest.mark.parametrize("n", [64, 300, 5000])
def test_birth_death_step_is_the_rule_with_a_plain_sort(n):
    """Slot for slot, the step's gather equals the rule written with NumPy's stable argsort of the
    quiet slots' keys (the benchmarks' reference), at a rate where most particles fire."""
    from benchmarks.alternatives import _numpy_birth_death_source
    from mfsample.kernels.reaction import reaction_draws

    for seed in range(3):
        key_v, key_react = jax.random.split(jax.random.PRNGKey(seed))
        u = jax.random.normal(key_v, (n,))
        u = u - jnp.mean(u)
        bd = birth_death_step(key_react, {"i": jnp.arange(n)}, u, 3.0, 0.5)
        d = reaction_draws(key_react, n)
        draws = {"u_fire": d.fire, "src": d.source, "self": d.target, "u_perm": d.order}
        expected = _numpy_birth_death_source(np.asarray(u), {k: np.asarray(v) for k, v in draws.items()}, 3.0, 0.5)
        assert int(bd.births) > n // 10 and int(bd.deaths) > n // 10
        np.testing.assert_array_equal(np.asarray(bd.z["i"]), expected)
