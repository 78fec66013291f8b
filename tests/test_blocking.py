"""Blocked energy: same numbers as the plain energy, bounded activation memory; blocked
deterministic sites: same values as the unblocked ones."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax.extend.core import ClosedJaxpr, Jaxpr
from numpyro.infer.util import constrain_fn

import mfsample as mf
from mfsample.blocking import (
    ACTIVATION_COPIES,
    CPU_BLOCK_ABOVE_BYTES,
    activation_bytes,
    auto_block_size,
    auto_particle_block_size,
    blocked_deterministic,
    blocked_sum,
    blocked_value_and_grad,
    resolve_block_size,
)
from mfsample.energy import energy_and_velocity, energy_from_model, first_variation


@pytest.fixture(scope="module")
def data():
    return mf.data.teacher_student(jax.random.PRNGKey(0), dim=4, teacher_width=3, num_data=300)


def _energy(data, block_size, width=32, **kw):
    return energy_from_model(
        mf.models.shallow_network, (data.x, data.y), {"width": width, "masses": None, **kw}, block_size=block_size
    )


# float32: the blocked sum adds the same terms in another order; relative differences of a few
# ulps times log2(number of terms) are expected, 1e-5 leaves an order of magnitude of room
RTOL = 1e-5


@pytest.mark.parametrize("block_size", [1, 7, 64, 100, 299])
def test_blocked_energy_velocity_first_variation_match_plain(data, block_size):
    plain, blocked = _energy(data, None), _energy(data, block_size)
    assert blocked.block_size == block_size and plain.block_size is None
    z = plain.sample_prior(jax.random.PRNGKey(1))
    m = jax.random.dirichlet(jax.random.PRNGKey(2), jnp.ones(32))
    e0, v0 = energy_and_velocity(plain, z, m)
    e1, v1 = energy_and_velocity(blocked, z, m)
    np.testing.assert_allclose(e1, e0, rtol=RTOL)
    for k in v0:
        np.testing.assert_allclose(v1[k], v0[k], rtol=RTOL, atol=1e-6)
    np.testing.assert_allclose(first_variation(blocked, z, m), first_variation(plain, z, m), rtol=RTOL, atol=1e-6)


def test_block_size_at_least_num_data_is_the_plain_energy(data):
    """B >= N is one block: the energy is the mean Gaussian negative log-likelihood of the network
    f(x) = (1/n) sum_j a_j relu(<w_j, x> + b_j), written out here by hand, and its gradient that
    of the hand-written formula."""
    z = _energy(data, None).sample_prior(jax.random.PRNGKey(1))
    x, y = jnp.asarray(data.x), jnp.asarray(data.y)

    def by_hand(p):
        f = jnp.mean(p["a"] * jax.nn.relu(x @ p["w"].T + p["b"]), axis=1)
        return jnp.mean(0.5 * (y - f) ** 2 + 0.5 * jnp.log(2 * jnp.pi))

    for block_size in (300, 10_000):
        pe = _energy(data, block_size)
        assert pe.block_size is None
        np.testing.assert_allclose(pe.energy(z), by_hand(z), rtol=RTOL)
        grad, expected = jax.grad(pe.energy)(z), jax.grad(by_hand)(z)
        for k in z:
            np.testing.assert_allclose(grad[k], expected[k], rtol=RTOL, atol=1e-7)


def test_blocked_sum_covers_every_datum_once():
    # sum_i i over 0..N-1 in blocks with a remainder: exact in integers
    x = jnp.arange(103.0)
    total = blocked_sum(lambda a, kw: jnp.sum(a[0]), (x,), {}, 10, lambda v: jnp.ndim(v) >= 1)
    assert float(total) == 103 * 102 / 2


@pytest.mark.parametrize("block_size", [None, 10, 103, 200])
def test_blocked_value_and_grad_is_autodiff_of_the_whole_sum(block_size):
    """One pass over blocks of 10 rows (N = 103: ten blocks and a remainder of 3; one block; a
    block larger than N) gives the value and gradient of the whole sum; a ``None`` leaf of the
    parameters gets a ``None`` gradient."""
    kx, kw = jax.random.split(jax.random.PRNGKey(4))
    x, y = jax.random.normal(kx, (103, 3)), jnp.arange(103.0) / 103
    params = {"w": jax.random.normal(kw, (3, 5)), "c": jnp.linspace(-1.0, 1.0, 5), "none": None}

    def fn(p, args, kwargs):
        xb, yb = args
        return jnp.sum((jnp.tanh(xb @ p["w"]) @ p["c"] - yb) ** 2) + kwargs["scale"] * jnp.sum(p["c"] ** 2)

    per_datum = lambda v: jnp.ndim(v) >= 1 and jnp.shape(v)[0] == 103  # noqa: E731
    kwargs = {"scale": 0.5}
    value, grad = blocked_value_and_grad(fn, params, (x, y), kwargs, block_size, per_datum)
    blocks = 1 if block_size is None else -(-103 // block_size)  # the data-free term is summed once per block
    expected_value, expected_grad = jax.value_and_grad(lambda p: fn(p, (x, y), {"scale": 0.5 * blocks}))(params)
    np.testing.assert_allclose(value, expected_value, rtol=RTOL)
    assert grad["none"] is None
    for k in ("w", "c"):
        np.testing.assert_allclose(grad[k], expected_grad[k], rtol=RTOL, atol=1e-6)


def _positive_scale_model(x, y=None, *, width, masses=None):
    """f(x) = sum_j m_j a_j tanh(s_j <w_j, x>) with a positive site ``s`` (moved in log s)."""
    with numpyro.plate("particle", width):
        a = numpyro.sample("a", dist.Normal(0.0, 1.0))
        s = numpyro.sample("s", dist.LogNormal(0.0, 0.5))
        w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    m = jnp.full((width,), 1.0 / width) if masses is None else masses
    f = jnp.tanh(s * (x @ w.T)) @ (m * a)
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(f, 1.0), obs=y)


@pytest.mark.parametrize(
    "model,kwargs",
    [(_positive_scale_model, {"width": 16}), (mf.models.deep_network, {"width": 16, "hidden": 6})],
    ids=["constrained-site", "shared-sites"],
)
def test_blocked_energy_value_and_grad_is_autodiff_of_its_energy(data, model, kwargs):
    """The blocked energy's one-pass ``value_and_grad`` (blocks' gradients in the model's
    coordinates, pulled back through ``theta = T(z)`` once; shared first-layer sites included)
    equals JAX's gradient of the same energy and of the unblocked one, in the particles and the
    masses."""
    args = (data.x, data.y)
    plain = energy_from_model(model, args, {**kwargs, "masses": None})
    blocked = energy_from_model(model, args, {**kwargs, "masses": None}, block_size=64)
    assert plain.value_and_grad is None and blocked.value_and_grad is not None
    z = plain.sample_prior(jax.random.PRNGKey(5))
    m = jax.random.dirichlet(jax.random.PRNGKey(6), jnp.ones(16))
    e, (gz, gm) = blocked.value_and_grad(z, m)
    for pe in (plain, blocked):
        e0, (gz0, gm0) = jax.value_and_grad(pe.energy, argnums=(0, 1))(z, m)
        np.testing.assert_allclose(e, e0, rtol=RTOL)
        np.testing.assert_allclose(gm, gm0, rtol=RTOL, atol=1e-6)
        for k in z:
            np.testing.assert_allclose(gz[k], gz0[k], rtol=RTOL, atol=1e-6)
    assert blocked.value_and_grad(z)[1][1] is None


def _count_matmuls(jaxpr) -> int:
    """``dot_general`` equations in a jaxpr and every jaxpr nested in it (scan, remat, ...)."""
    total = 0
    for eqn in jaxpr.eqns:
        total += eqn.primitive.name == "dot_general"
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                if isinstance(sub, ClosedJaxpr):
                    total += _count_matmuls(sub.jaxpr)
                elif isinstance(sub, Jaxpr):
                    total += _count_matmuls(sub)
    return total


def test_blocked_drift_runs_each_block_forward_once(data):
    """The drift of a blocked energy (N = 300 in blocks of 100) has the unblocked drift's matmuls:
    one forward and one backward pass per block.  JAX's gradient of the rematerialised blocked
    sum, which recomputes every block's forward pass, has more: the count tells them apart."""
    plain, blocked = _energy(data, None), _energy(data, 100)
    z = plain.sample_prior(jax.random.PRNGKey(1))

    def matmuls(fn):
        return _count_matmuls(jax.make_jaxpr(fn)(z).jaxpr)

    one_pass = matmuls(lambda zz: energy_and_velocity(blocked, zz))
    assert one_pass == matmuls(lambda zz: energy_and_velocity(plain, zz))
    assert matmuls(lambda zz: jax.value_and_grad(blocked.energy)(zz)) > one_pass


def _constrain(model):
    def post(z, args, kwargs):
        return constrain_fn(model, args, kwargs, z, return_deterministic=True)

    return post


def test_blocked_deterministic_matches_the_unblocked_sites(data):
    """f(x_i) over blocks of 64 data (N = 300: four blocks and a remainder of 44) equals the
    unblocked deterministic site; width n = N, so the particle sites and the masses have the
    data's leading size and must still pass whole (a split `masses` fails the model's check)."""
    n = 300
    pe = _energy(data, 64, width=n)
    z = pe.sample_prior(jax.random.PRNGKey(1))
    kwargs = {"width": n, "masses": jax.random.dirichlet(jax.random.PRNGKey(2), jnp.ones(n))}
    post = _constrain(mf.models.shallow_network)
    run = blocked_deterministic(
        post, (data.x, data.y), kwargs, num_data=pe.num_data, block_size=pe.block_size, site_names=pe.site_names
    )
    blocked, plain = jax.jit(run)(z), post(z, (data.x, data.y), kwargs)
    assert set(blocked) == set(plain) == {"a", "w", "b", "f"}
    for k in plain:
        assert blocked[k].shape == plain[k].shape
        np.testing.assert_allclose(blocked[k], plain[k], rtol=RTOL, atol=1e-6)
    one_block = blocked_deterministic(
        post, (data.x, data.y), kwargs, num_data=pe.num_data, block_size=None, site_names=pe.site_names
    )
    np.testing.assert_array_equal(one_block(z)["f"], plain["f"])


def test_blocked_deterministic_keeps_per_particle_sites_whole():
    """A deterministic per-particle site whose width equals N is not a per-datum output: it is
    taken whole from one block, while f(x_i) is assembled from blocks of 3 of N = 10 data."""

    def model(x, y=None, *, width):
        with numpyro.plate("particle", width):
            a = numpyro.sample("a", dist.Normal(0.0, 1.0))
        numpyro.deterministic("a2", a**2)
        f = numpyro.deterministic("f", jnp.mean(jnp.tanh(x[:, None] * a), axis=1))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Normal(f, 1.0), obs=y)

    x = jnp.linspace(-1.0, 1.0, 10)
    z = {"a": jax.random.normal(jax.random.PRNGKey(0), (10,))}
    post = _constrain(model)
    run = blocked_deterministic(post, (x, jnp.sin(x)), {"width": 10}, num_data=10, block_size=3, site_names=("a",))
    blocked, plain = run(z), post(z, (x, jnp.sin(x)), {"width": 10})
    for k in ("a", "a2", "f"):
        assert blocked[k].shape == (10,)
        np.testing.assert_allclose(blocked[k], plain[k], rtol=RTOL, atol=1e-6)


def test_resolve_block_size():
    x = jnp.ones((100, 2))
    assert resolve_block_size(None, (x,), num_data=100, width=8) is None
    assert resolve_block_size(30, (x,), num_data=100, width=8) == 30
    assert resolve_block_size(100, (x,), num_data=100, width=8) is None  # one block
    assert resolve_block_size("auto", (x,), num_data=100, width=8) is None  # 100 x 8 floats fit
    assert resolve_block_size(30, (), {"data": {"x": x}}, num_data=100, width=8) == 30  # nested
    with pytest.raises(ValueError, match="needs per-datum array arguments"):
        resolve_block_size(30, (jnp.ones(7),), {"scale": 2.0}, num_data=100, width=8)
    with pytest.raises(ValueError, match="num_replicas"):
        resolve_block_size("auto", (x,), num_data=100, width=8, num_replicas=0)


def test_auto_block_size_from_memory_and_cache():
    # everything fits: no blocking
    assert auto_block_size(1000, 256, memory=2**40, cache=None) == 1000
    assert auto_block_size(1000, 256, memory=2**40, cache=2**30) == 1000
    # cache-sized blocks: one B x n float32 array within the cache
    assert auto_block_size(8192, 4096, memory=2**40, cache=8 * 2**20) == 512
    assert auto_block_size(8192, 4096, memory=2**40, cache=8 * 2**20, num_chains=4) == 128
    # arrays of at most CPU_BLOCK_ABOVE_BYTES are not cache-blocked (8 MiB here; 32 MiB with 4 chains)
    assert CPU_BLOCK_ABOVE_BYTES == 12 * 2**20
    assert auto_block_size(2048, 1024, memory=2**40, cache=8 * 2**20) == 2048
    assert auto_block_size(2048, 1024, memory=2**40, cache=8 * 2**20, num_chains=4) == 512
    assert auto_block_size(2048, 1024, memory=2**40, cache=2 * 2**20, cache_above=0) == 512
    assert auto_block_size(4096, 1024, memory=2**40, cache=8 * 2**20) == 2048  # 16 MiB: two blocks
    # 1 MiB budget at fraction 1/4 -> B = 2^18 / (ACTIVATION_COPIES * 256 * 4)
    b = auto_block_size(10**6, 256, memory=2**20, cache=None)
    assert b == 2**18 // (ACTIVATION_COPIES * 256 * 4)
    assert activation_bytes(b, 256) <= 2**18 < activation_bytes(b + 1, 256)
    assert auto_block_size(10**6, 10**9, memory=2**20, cache=None) == 1  # never below one datum


def test_invalid_block_size(data):
    for bad in [0, -3, 2.5, "big", True]:
        with pytest.raises(ValueError, match="block_size"):
            _energy(data, bad)
    with pytest.raises(ValueError, match="block_size"):
        mf.WassersteinFlow(mf.models.shallow_network, step_size=0.1, block_size=0)


def test_compiled_temporary_memory_follows_the_block_formula():
    """XLA's own memory analysis of the compiled gradient: the plain step holds ~N x n
    activations, the blocked one ~B x n, within ACTIVATION_COPIES copies."""
    N, n, d = 2048, 1024, 8
    x, y = jnp.ones((N, d)), jnp.ones(N)

    def temp_bytes(block_size):
        def grad(z, x, y):
            pe = energy_from_model(mf.models.shallow_network, (x, y), {"width": n}, block_size=block_size)
            return energy_and_velocity(pe, z)

        z = energy_from_model(mf.models.shallow_network, (x[:2], y[:2]), {"width": n}).sample_prior(
            jax.random.PRNGKey(0)
        )
        return jax.jit(grad).lower(z, x, y).compile().memory_analysis().temp_size_in_bytes

    plain, blocked = temp_bytes(None), temp_bytes(128)
    state = 8 * n * (d + 2) * 4  # particles, gradients and a few temporaries of the particle arrays
    assert plain >= N * n * 4  # at least one full N x n float32 activation matrix
    assert blocked <= activation_bytes(128, n) + state
    assert blocked < plain / 8  # B/N = 1/16: blocking must cut the temporaries by ~16x


@pytest.mark.parametrize(
    "kernel_cls,kw",
    [
        (mf.WassersteinFlow, {}),
        (mf.MeanFieldLangevin, {"temperature": 1e-3}),
        (mf.WassersteinFisherRao, {"rate": 1.0, "mode": "birth_death"}),
        (mf.WassersteinFisherRao, {"rate": 1.0, "mode": "weighted"}),
    ],
)
def test_kernels_with_blocks_follow_the_plain_trajectory(data, kernel_cls, kw):
    """Same key, blocked vs plain energy: the whole trajectory and the deterministic f agree to
    float32 rounding (20 steps: errors grow at most geometrically with the step's Lipschitz
    constant, hence atol 1e-4 on O(1) particles)."""
    runs = [
        mf.simulate(
            kernel_cls(mf.models.shallow_network, step_size=0.5, block_size=b, **kw),
            jax.random.PRNGKey(3),
            data.x,
            data.y,
            width=32,
            num_steps=20,
            save_every=5,
            progress_bar=False,
        )
        for b in (None, 64)
    ]
    assert runs[1].kernel.energy.block_size == 64
    for k in runs[0].samples:
        np.testing.assert_allclose(runs[1].samples[k], runs[0].samples[k], rtol=1e-4, atol=1e-4)
    assert runs[1].samples["f"].shape == (1, 4, 300)


def test_vectorised_chains_with_blocks_follow_the_plain_trajectory(data):
    """Three chains run by ``MCMC(chain_method="vectorized")`` (the blocked one-pass gradient under
    ``vmap``, its scan carry batched from unbatched zeros): the blocked and the plain energy give
    the same draws to float32 rounding (10 Langevin steps, the bound of the single-chain test)."""
    draws = {}
    for b in (None, 64):
        kernel = mf.MeanFieldLangevin(mf.models.shallow_network, step_size=0.2, temperature=1e-3, block_size=b)
        mcmc = numpyro.infer.MCMC(
            kernel, num_warmup=0, num_samples=10, num_chains=3, chain_method="vectorized", progress_bar=False
        )
        mcmc.run(jax.random.PRNGKey(1), data.x, data.y, width=32)
        assert kernel.energy.block_size == b
        draws[b] = mcmc.get_samples(group_by_chain=True)
    for k in ("a", "w", "b"):
        assert draws[64][k].shape[:2] == (3, 10)
        np.testing.assert_allclose(draws[64][k], draws[None][k], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs", [{}, {"bias": False}, {"scaling": "ntk"}, {"masses": "dirichlet"}], ids=["mf", "no-bias", "ntk", "masses"]
)
def test_particle_blocks_give_the_network_output_and_its_gradient(data, kwargs):
    """``shallow_network(particle_block_size=P)``: f summed over blocks of 12 of 40 particles (three
    blocks and a remainder of 4), and the energy's gradient, equal the one-block evaluation."""
    if kwargs.get("masses") == "dirichlet":
        kwargs = {"masses": jax.random.dirichlet(jax.random.PRNGKey(7), jnp.ones(40))}
    plain = energy_from_model(mf.models.shallow_network, (data.x, data.y), {"width": 40, **kwargs})
    blocked = energy_from_model(
        mf.models.shallow_network, (data.x, data.y), {"width": 40, "particle_block_size": 12, **kwargs}
    )
    z = plain.sample_prior(jax.random.PRNGKey(8))
    (e0, g0), (e1, g1) = (jax.value_and_grad(pe.energy)(z) for pe in (plain, blocked))
    np.testing.assert_allclose(e1, e0, rtol=RTOL)
    for k in g0:
        np.testing.assert_allclose(g1[k], g0[k], rtol=RTOL, atol=1e-7)
    post = [
        _constrain(mf.models.shallow_network)(z, (data.x, data.y), {"width": 40, **kw})
        for kw in (kwargs, {**kwargs, "particle_block_size": 12})
    ]
    np.testing.assert_allclose(post[1]["f"], post[0]["f"], rtol=RTOL, atol=1e-6)
    with pytest.raises(ValueError, match="particle_block_size"):
        energy_from_model(mf.models.shallow_network, (data.x, data.y), {"width": 40, "particle_block_size": 0})


def test_auto_blocks_wide_problems_over_particles():
    """``block_size="auto"`` on a CPU: a wide problem (n = 65536 > N = 64, one N x n array 16 MiB)
    is blocked over particles (no data blocks; a loop in the energy) and gives the plain energy
    and gradient; a deep one (n < N) over data; an explicit particle block is kept."""
    assert auto_particle_block_size(64, 65536, cache=8 * 2**20) == 2**15
    assert auto_particle_block_size(64, 65536, cache=None) is None  # accelerators: no cache blocks
    assert auto_particle_block_size(8192, 4096, cache=8 * 2**20) is None  # n < N
    assert auto_particle_block_size(64, 4096, cache=8 * 2**20) is None  # 1 MiB: one block
    x = jax.random.normal(jax.random.PRNGKey(9), (64, 3))
    y = jnp.sin(x[:, 0])
    plain = energy_from_model(mf.models.shallow_network, (x, y), {"width": 65536}, block_size=None)
    auto = energy_from_model(mf.models.shallow_network, (x, y), {"width": 65536}, block_size="auto")
    assert auto.block_size is None and auto.value_and_grad is None
    z = plain.sample_prior(jax.random.PRNGKey(10))
    loops = [e.primitive.name for e in jax.make_jaxpr(auto.energy)(z).jaxpr.eqns if e.primitive.name == "scan"]
    assert loops and not [e for e in jax.make_jaxpr(plain.energy)(z).jaxpr.eqns if e.primitive.name == "scan"]
    (e0, g0), (e1, g1) = (jax.value_and_grad(pe.energy)(z) for pe in (plain, auto))
    np.testing.assert_allclose(e1, e0, rtol=RTOL)
    for k in g0:
        np.testing.assert_allclose(g1[k], g0[k], rtol=RTOL, atol=1e-9)
    # a particle block passed by the caller, None (one block) included, is kept: "auto" then
    # blocks over data as for any model (8 MiB rows of n floats: B = 32)
    kept = energy_from_model(
        mf.models.shallow_network, (x, y), {"width": 65536, "particle_block_size": None}, block_size="auto"
    )
    assert kept.block_size == 2**23 // (65536 * 4) and kept.value_and_grad is not None
