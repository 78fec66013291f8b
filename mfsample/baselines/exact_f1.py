"""The global optimum of F1-regularised least squares for ReLU units: the ground truth for global convergence.

    min_mu  P(mu) = 1/(2N) sum_i (f_mu(x_i) - y_i)^2 + reg |mu|_TV,
            f_mu(x) = ∫ relu(<w, x> + b) dmu(w, b),     mu a signed measure on the unit sphere of (w, b),

is convex with atomic minimisers (de Dios & Bruna 2020).  Write ``X~ = [X, 1]`` (``N x D``,
``D = d + 1``; ``D = d`` without bias).  Inside a cone ``K_p = {u : (2 D_p - I) X~ u >= 0}`` on
which the activation pattern ``D_p = diag(1[X~ u >= 0])`` is constant, ``relu(X~ u) = D_p X~ u`` is
linear, and the mass of ``mu`` in ``K_p`` acts through ``v_p = ∫_{K_p} u dmu+`` with
``|v_p| <= mu+(K_p)`` (equality for one atom).  Hence (Pilanci & Ergen 2020) ``P*`` equals the
finite group lasso with cone constraints

    min  1/(2N) |sum_p D_p X~ (v_p - w_p) - y|^2 + reg sum_p (|v_p| + |w_p|),   v_p, w_p in K_p,

over the patterns ``p`` of the hyperplane arrangement ``{u : <x~_i, u> = 0}``.  For ``D <= 3``
(input dimension 1-2 with bias) :func:`f1_optimum` enumerates every cell of the arrangement
exactly and solves the programme with cvxpy + Clarabel; the atoms are ``v_p/|v_p|`` (weight
``|v_p|``) and ``w_p/|w_p|`` (weight ``-|w_p|``).  A fixed finite set of candidate neurons is not
exact (the best neuron inside a cone depends on the residual); the cone variables are.

**Certificate** (independent of the solver).  With the returned measure's residual
``r = (y - f)/N``, weak duality gives, for any ``r'`` with ``sup_{|u|=1} |<r', relu(X~ u)>| <= reg``,

    P* >= D(r') = <r', y> - (N/2) |r'|^2.

``s = sup_{|u|=1} |<r, relu(X~ u)>|`` is computed exactly for ``D <= 3`` (the maximum of a
function linear on each cell is at a cell's unconstrained maximiser, at an edge's critical point
or at a vertex: all are enumerated) and ``r' = r min(1, reg/s)`` is dual feasible, so
``gap = P(mu) - D(r') >= P(mu) - P*``.  At the optimum ``s = reg`` (``dual_norm = 1``), with
``<r, relu(X~ u_k)> = reg sign(c_k)`` on every atom.

For ``D`` in 4-5 (input dimension 3-4) :func:`f1_optimum` falls back to a lasso over a fine
"cube-sphere" grid of neurons (``m`` points per side on each face of ``[-1,1]^D``, projected
radially; chordal covering radius ``delta <= sqrt(D-1)/m``).  This is **approximate**: its value is
an upper bound of ``P*``, and its lower bound uses ``s <= max_grid |h| + L delta`` with
``L = sum_i |r_i| |x~_i|``, a rigorous but looser bracket.

For 1-homogeneous units the weight-decay energy of a network with masses,
``1/(2N) sum_i (sum_j m_j a_j relu(<w_j,x_i>+b_j) - y_i)^2 + reg/2 sum_j m_j (a_j^2 + |w_j|^2 + b_j^2)``,
has the same infimum as ``P`` (AM-GM: ``(a^2+|u|^2)/2 >= |a||u|``, equality at balance
``|a| = |u|``); :func:`atoms_from_particles`, :func:`particles_from_atoms` and :func:`balance`
map between the two, and :func:`weight_decay_objective` / :func:`f1_objective` evaluate them.

Theory: ``docs/theory/global_convergence.md``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "F1Solution",
    "f1_optimum",
    "f1_objective",
    "weight_decay_objective",
    "atoms_from_particles",
    "particles_from_atoms",
    "balance",
    "activation_patterns",
    "dual_sup",
    "cube_sphere_grid",
]


class F1Solution(NamedTuple):
    """Result of :func:`f1_optimum`.

    - **value** – ``P`` at the returned atoms (an upper bound of ``P*``).
    - **lower_bound** – ``D(r')`` at a dual-feasible ``r'`` (a lower bound of ``P*``).
    - **gap** – ``value - lower_bound`` (``>= value - P*``).
    - **directions** – ``(k, D)`` atoms ``(w, b)`` on the unit sphere (``(k, d)`` without bias).
    - **weights** – ``(k,)`` signed output weights ``c_k``; ``f(x) = sum_k c_k relu(<w_k,x>+b_k)``.
    - **dual** – ``(N,)`` residual ``r = (y - f)/N``.
    - **dual_norm** – ``s / reg`` with ``s`` the (bound on the) sup of ``|<r, relu(X~ u)>|``.
    - **exact** – the cell enumeration was exact (``D <= 3``); False for the grid.
    - **resolution** – grid covering radius ``delta`` (chordal), None when exact.
    - **num_candidates** – number of activation patterns (exact) or grid neurons.
    - **loss**, **tv** – the two terms of ``value``.
    - **bias** – whether the units have a bias (last coordinate of ``directions``).
    """

    value: float
    lower_bound: float
    gap: float
    directions: np.ndarray
    weights: np.ndarray
    dual: np.ndarray
    dual_norm: float
    exact: bool
    resolution: float | None
    num_candidates: int
    loss: float
    tv: float
    bias: bool

    @property
    def w(self):
        """``(k, d)`` input weights of the atoms."""
        return self.directions[:, :-1] if self.bias else self.directions

    @property
    def b(self):
        """``(k,)`` biases of the atoms (zeros without bias)."""
        return self.directions[:, -1] if self.bias else np.zeros(len(self.weights))

    def predict(self, x):
        """``f(x) = sum_k c_k relu(<w_k, x> + b_k)``."""
        return _features(_lift(x, self.bias), self.directions) @ self.weights


# -- objectives and the weight-decay <-> TV map ---------------------------------------------------


def _lift(x, bias):
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (num_data, dim), got {x.shape}")
    return np.concatenate([x, np.ones((x.shape[0], 1))], axis=1) if bias else x


def _features(xt, directions):
    return np.maximum(xt @ np.asarray(directions, np.float64).T, 0.0)


def f1_objective(x, y, directions, weights, *, reg, bias=True):
    """``P = 1/(2N) |sum_k c_k relu(X~ u_k) - y|^2 + reg sum_k |c_k|`` for atoms ``u_k`` (rows
    of ``directions``, normalised here) with weights ``c_k``."""
    u = np.asarray(directions, np.float64)
    norms = np.linalg.norm(u, axis=1, keepdims=True)
    c = np.asarray(weights, np.float64) * norms[:, 0]
    u = u / np.where(norms > 0, norms, 1.0)
    f = _features(_lift(x, bias), u) @ c
    y = np.asarray(y, np.float64)
    return 0.5 * np.mean((f - y) ** 2) + reg * np.sum(np.abs(c))


def _stack_unit(w, b):
    w = np.asarray(w, np.float64)
    w = w[:, None] if w.ndim == 1 else w
    return w if b is None else np.concatenate([w, np.asarray(b, np.float64)[:, None]], axis=1)


def weight_decay_objective(x, y, a, w, b=None, masses=None, *, reg):
    """``1/(2N) sum_i (sum_j m_j a_j relu(<w_j,x_i>+b_j) - y_i)^2 + reg/2 sum_j m_j (a_j^2+|w_j|^2+b_j^2)``
    (``m_j = 1/n`` when ``masses`` is None; no bias when ``b`` is None)."""
    a = np.asarray(a, np.float64)
    m = np.full(a.shape, 1.0 / a.shape[0]) if masses is None else np.asarray(masses, np.float64)
    u = _stack_unit(w, b)
    f = _features(_lift(x, b is not None), u) @ (m * a)
    y = np.asarray(y, np.float64)
    return 0.5 * np.mean((f - y) ** 2) + 0.5 * reg * np.sum(m * (a**2 + np.sum(u**2, axis=1)))


def atoms_from_particles(a, w, b=None, masses=None):
    """Particles -> atoms: ``u_j = (w_j, b_j)/|(w_j, b_j)|``, ``c_j = m_j a_j |(w_j, b_j)|``.

    The network function is unchanged (1-homogeneity of relu) and ``sum_j |c_j|`` is the TV norm;
    ``reg |c|_1 <= reg/2 sum_j m_j (a_j^2 + |w_j|^2 + b_j^2)`` with equality at balance.
    Returns ``(directions, weights)``; a particle with ``(w, b) = 0`` gets weight 0.
    """
    a = np.asarray(a, np.float64)
    m = np.full(a.shape, 1.0 / a.shape[0]) if masses is None else np.asarray(masses, np.float64)
    u = _stack_unit(w, b)
    norms = np.linalg.norm(u, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    return u / safe[:, None], m * a * norms


def particles_from_atoms(directions, weights, *, bias=True, uniform=False):
    """Atoms -> balanced particles with the same network function and ``wd penalty = reg |c|_1``.

    ``uniform=False``: masses ``m_k = |c_k| / S`` (``S = sum|c|``), ``a_k = sign(c_k) sqrt(S)``,
    ``(w_k, b_k) = sqrt(S) u_k``.  ``uniform=True``: ``m_k = 1/k``, ``a_k = sign(c_k) sqrt(k|c_k|)``,
    ``(w_k, b_k) = sqrt(k|c_k|) u_k`` (the form of equally weighted birth–death particles).
    Returns a dict ``a, w, b, masses`` (``b`` absent without bias).
    """
    u = np.asarray(directions, np.float64)
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    c = np.asarray(weights, np.float64)
    k = c.shape[0]
    if uniform:
        m = np.full(k, 1.0 / k)
        s = np.sqrt(k * np.abs(c))
    else:
        total = np.sum(np.abs(c))
        m = np.abs(c) / total
        s = np.full(k, np.sqrt(total))
    a = np.sign(c) * s
    uu = u * s[:, None]
    out = {"a": a, "w": uu[:, :-1] if bias else uu, "masses": m}
    if bias:
        out["b"] = uu[:, -1]
    return out


def balance(a, w, b=None):
    """Rescale each particle to ``|a_j| = |(w_j, b_j)|`` keeping ``a_j (w_j, b_j)``'s direction and
    ``|a_j| |(w_j,b_j)|``: same function, smallest weight decay.  Returns ``(a, w, b)``."""
    a = np.asarray(a, np.float64)
    u = _stack_unit(w, b)
    norms = np.linalg.norm(u, axis=1)
    prod = np.abs(a) * norms
    s = np.sqrt(prod)
    scale = np.where(norms > 0, s / np.where(norms > 0, norms, 1.0), 0.0)
    a2 = np.sign(a) * s
    u2 = u * scale[:, None]
    if b is None:
        return a2, u2.reshape(np.shape(w)), None
    return a2, u2[:, :-1].reshape(np.shape(w)), u2[:, -1]


# -- the hyperplane arrangement -------------------------------------------------------------------


def _unique_normals(xt, tol):
    """Unit normals of the distinct hyperplanes ``{u : <x~_i, u> = 0}`` (up to sign)."""
    norms = np.linalg.norm(xt, axis=1)
    rows = xt[norms > tol] / norms[norms > tol, None]
    out = []
    for r in rows:
        if not any(abs(abs(r @ q) - 1.0) < tol for q in out):
            out.append(r)
    return np.array(out).reshape(-1, xt.shape[1])


def _circle_cells(normals2, tol):
    """Interior unit vectors, one per arc, of the arrangement of lines through 0 in R^2."""
    if len(normals2) == 0:
        return np.array([[1.0, 0.0]])
    ang = np.arctan2(normals2[:, 1], normals2[:, 0]) + np.pi / 2
    ang = np.mod(np.concatenate([ang, ang + np.pi]), 2 * np.pi)
    ang = np.sort(ang)
    keep = np.concatenate([[True], np.diff(ang) > tol])
    ang = ang[keep]
    if len(ang) > 1 and (ang[0] + 2 * np.pi - ang[-1]) <= tol:
        ang = ang[:-1]
    nxt = np.concatenate([ang[1:], [ang[0] + 2 * np.pi]])
    mid = 0.5 * (ang + nxt)
    return np.stack([np.cos(mid), np.sin(mid)], axis=1)


def _boundary_points_2d(normals2):
    """The 2N points where the lines meet the unit circle."""
    t = np.stack([-normals2[:, 1], normals2[:, 0]], axis=1)
    return np.concatenate([t, -t])


def _vertices_3d(normals, tol):
    """Vertices ``±(n_k x n_l)/|.|`` of the great-circle arrangement on S^2 (deduplicated)."""
    k = len(normals)
    ii, jj = np.triu_indices(k, 1)
    v = np.cross(normals[ii], normals[jj])
    nv = np.linalg.norm(v, axis=1)
    v = v[nv > tol] / nv[nv > tol, None]
    v = np.concatenate([v, -v])
    if len(v) == 0:
        return v
    key = np.round(v / (10 * tol), 0)
    _, first = np.unique(key, axis=0, return_index=True)
    return v[np.sort(first)]


def activation_patterns(x, *, bias=True, tol=1e-9):
    """Exact activation patterns ``1[X~ u > 0]`` of every full-dimensional cell of the arrangement
    of ``{u : <x~_i, u> = 0}`` in ``R^D``, ``D <= 3``, with one interior point per cell.

    ``D = 2``: the midpoints of the arcs between consecutive boundary angles.  ``D = 3``: every
    cell of a great-circle arrangement on S^2 has a vertex; around each vertex ``v`` the cells are
    those of the arrangement of the circles through ``v`` in the tangent plane (a ``D = 2``
    problem), and the other circles keep their sign at ``v``.  Returns ``(patterns (P, N) bool,
    points (P, D))`` without the all-inactive pattern and without duplicates.
    """
    xt = _lift(x, bias)
    dim = xt.shape[1]
    normals = _unique_normals(xt, tol)
    if dim == 1:
        points = np.array([[1.0], [-1.0]])
        pats = xt @ points.T > 0
    elif dim == 2:
        points = _circle_cells(normals, tol)
        pats = xt @ points.T > 0
    elif dim == 3:
        if len(normals) <= 1:
            base = normals if len(normals) else np.eye(3)[:1]
            points = np.concatenate([base, -base])
            pats = xt @ points.T > 0
        else:
            pts, pat_list = [], []
            xnorm = np.linalg.norm(xt, axis=1)
            for v in _vertices_3d(normals, tol):
                e1 = np.linalg.svd(v[None])[2][1]
                e2 = np.cross(v, e1)
                through = np.abs(normals @ v) < 1e-7
                local = _circle_cells(normals[through] @ np.stack([e1, e2], axis=1), tol)
                on = np.abs(xt @ v) <= 1e-7 * np.maximum(xnorm, 1e-300)
                sv = xt @ v > 0
                for t in local:
                    t3 = t[0] * e1 + t[1] * e2
                    pat_list.append(np.where(on, xt @ t3 > 0, sv))
                    pts.append(v + 1e-4 * t3)
            pats = np.array(pat_list).T
            points = np.array(pts)
    else:
        raise ValueError(f"exact enumeration is for D = d + bias <= 3 (input dimension <= 2 with bias); got D = {dim}")
    pats = pats.T  # (P, N)
    pats, first = np.unique(pats, axis=0, return_index=True)
    points = points[first]
    nonzero = pats.any(axis=1)
    points = points / np.linalg.norm(points, axis=1, keepdims=True)
    return pats[nonzero], points[nonzero]


def dual_sup(x, r, *, bias=True, patterns=None, tol=1e-9):
    """``sup_{|u|=1} |<r, relu(X~ u)>|``, exactly, for ``D <= 3``.

    On the closure of a cell with pattern ``D_p`` the function is ``<g_p, u>``, ``g_p = X~^T D_p r``;
    its maximum on the closed spherical polygon is at ``g_p/|g_p|`` (if inside), at the critical
    point of an edge (``g_p`` projected on the edge's plane, normalised) or at a vertex.  All these
    candidates (and their negatives, for ``|.|``) are evaluated with the true relu, so candidates
    outside their cell only give lower values.  Returns ``(sup, argmax u)``.
    """
    xt = _lift(x, bias)
    r = np.asarray(r, np.float64)
    dim = xt.shape[1]
    normals = _unique_normals(xt, tol)
    if patterns is None:
        patterns, _ = activation_patterns(x, bias=bias, tol=tol)
    g = (patterns * r[None, :]) @ xt  # (P, D)
    cands = [g]
    if dim == 2 and len(normals):
        cands.append(_boundary_points_2d(normals))
    if dim == 3 and len(normals):
        cands.append(_vertices_3d(normals, tol) if len(normals) > 1 else np.zeros((0, 3)))
        proj = g[:, None, :] - (g @ normals.T)[:, :, None] * normals[None, :, :]
        cands.append(proj.reshape(-1, 3))
    if dim == 1:
        cands.append(np.array([[1.0]]))
    u = np.concatenate(cands)
    nu = np.linalg.norm(u, axis=1)
    u = u[nu > 1e-300] / nu[nu > 1e-300, None]
    u = np.concatenate([u, -u])
    h = np.abs(np.maximum(xt @ u.T, 0.0).T @ r)
    i = int(np.argmax(h))
    return float(h[i]), u[i]


def cube_sphere_grid(dim, m):
    """``2 dim m^(dim-1)`` unit vectors: an ``m``-per-side grid of cell centres on each face of
    ``[-1, 1]^dim``, projected radially.  Chordal covering radius ``<= sqrt(dim-1)/m``."""
    ticks = -1.0 + (2.0 * np.arange(m) + 1.0) / m
    mesh = np.stack(np.meshgrid(*([ticks] * (dim - 1)), indexing="ij"), axis=-1).reshape(-1, dim - 1)
    faces = []
    for axis in range(dim):
        for sign in (-1.0, 1.0):
            pts = np.insert(mesh, axis, sign, axis=1)
            faces.append(pts)
    pts = np.concatenate(faces)
    return pts / np.linalg.norm(pts, axis=1, keepdims=True), np.sqrt(dim - 1) / m


# -- the solver -------------------------------------------------------------------------------------

DEFAULT_GRID = {2: 2000, 3: 60, 4: 14, 5: 7}


#: Clarabel's gap / feasibility tolerances (defaults 1e-8): tighter, so that the certificate is tight
CLARABEL_TOLERANCES = dict(tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11, tol_ktratio=1e-8)


def _solve_cones(xt, y, pats_v, pats_w, reg, solver, opts, verbose):
    """The group lasso with cone constraints over the patterns ``pats_v`` (positive atoms) and
    ``pats_w`` (negative atoms); returns the optimal ``v_p`` and ``w_p`` as arrays."""
    import cvxpy as cp

    n_data, dim = xt.shape
    terms, constraints, variables = [], [], []
    obj = 0.0
    for pats, sgn in ((pats_v, 1.0), (pats_w, -1.0)):
        if pats.shape[0] == 0:
            variables.append(None)
            continue
        mask = pats.T.astype(np.float64)  # (N, P)
        var = cp.Variable((pats.shape[0], dim))
        act = xt @ var.T  # (N, P)
        terms.append(sgn * cp.sum(cp.multiply(mask, act), axis=1))
        constraints.append(cp.multiply(2.0 * mask - 1.0, act) >= 0)
        obj = obj + reg * cp.sum(cp.norm(var, 2, axis=1))
        variables.append(var)
    f = sum(terms) if terms else np.zeros(n_data)
    obj = obj + cp.sum_squares(f - y) / (2 * n_data)
    cp.Problem(cp.Minimize(obj), constraints).solve(solver=solver, verbose=verbose, **opts)
    out = []
    for var in variables:
        out.append(np.zeros((0, dim)) if var is None else np.asarray(var.value))
    return out


def _merge_atoms(directions, weights, prune, atol=0.0, tol=1e-7):
    """Drop atoms with ``|c_k| <= max(prune max|c|, atol)`` and merge equal directions of equal sign
    (an atom on a cone's boundary is shared by the adjacent cells' variables)."""
    keep = np.abs(weights) > max(prune * np.abs(weights).max(initial=0.0), atol, 1e-300)
    directions, weights = directions[keep], weights[keep]
    out_u, out_c = [], []
    for u, c in zip(directions, weights):
        for i, (uu, cc) in enumerate(zip(out_u, out_c)):
            if np.sign(cc) == np.sign(c) and np.linalg.norm(uu - u) < tol:
                out_c[i] = cc + c
                break
        else:
            out_u.append(u)
            out_c.append(c)
    dim = directions.shape[1]
    return np.array(out_u).reshape(-1, dim), np.array(out_c)


def _certify(xt, y, directions, weights, reg, sup_fn):
    n_data = xt.shape[0]
    f = _features(xt, directions) @ weights
    loss = 0.5 * np.mean((f - y) ** 2)
    tv = float(np.sum(np.abs(weights)))
    value = loss + reg * tv
    r = (y - f) / n_data
    s = sup_fn(r)
    rf = r * min(1.0, reg / s) if s > 0 else r
    lower = float(rf @ y - 0.5 * n_data * rf @ rf)
    return value, lower, r, s, loss, tv


def f1_optimum(
    x,
    y,
    *,
    reg,
    bias=True,
    method="auto",
    grid_size=None,
    solver="CLARABEL",
    prune=1e-6,
    polish=True,
    tol=1e-9,
    verbose=False,
) -> F1Solution:
    """Global minimum of ``1/(2N) sum_i (f_mu(x_i) - y_i)^2 + reg |mu|_TV`` over ReLU measures.

    See the module docstring for the convex programme and the certificate.

    :param x: ``(N, d)`` inputs.
    :param y: ``(N,)`` targets.
    :param float reg: ``reg > 0``, weight of the TV norm (= weight-decay coefficient ``lambda``).
    :param bool bias: units ``relu(<w,x>+b)`` on the sphere of ``(w, b)`` (True) or ``relu(<w,x>)``.
    :param method: ``"auto"`` (exact when ``D = d + bias <= 3``, else grid), ``"exact"`` or ``"grid"``.
    :param grid_size: points per side ``m`` of the cube-sphere grid (defaults: 60 for ``D = 3``,
        14 for ``D = 4``, 7 for ``D = 5``); ``D >= 6`` needs it given.
    :param solver: cvxpy solver (Clarabel: interior point with its own primal-dual certificate).
    :param prune: atoms with ``|c_k| <= prune * max|c|`` (interior-point residue) are dropped and
        atoms of equal direction and sign merged; value and certificate are computed after that.
    :param bool polish: re-solve the exact programme on the cones that carry mass (> ``prune``).
    :returns: :class:`F1Solution`.

    Example::

        >>> import numpy as np
        >>> x = np.linspace(-1, 1, 12)[:, None]
        >>> y = np.abs(x[:, 0]) - 0.3
        >>> sol = f1_optimum(x, y, reg=1e-3)
        >>> bool(sol.gap <= 1e-6 * sol.value), bool(sol.exact)
        (True, True)
    """
    import cvxpy as cp

    if not (np.isfinite(reg) and reg > 0):
        raise ValueError(f"reg must be positive, got {reg!r}")
    xt = _lift(x, bias)
    y = np.asarray(y, np.float64)
    if y.shape != (xt.shape[0],):
        raise ValueError(f"y must have shape ({xt.shape[0]},), got {y.shape}")
    if not (np.all(np.isfinite(xt)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite")
    n_data, dim = xt.shape
    if method == "auto":
        method = "exact" if dim <= 3 else "grid"
    if method not in ("exact", "grid"):
        raise ValueError(f"method must be 'auto', 'exact' or 'grid', got {method!r}")

    opts = dict(CLARABEL_TOLERANCES) if solver == "CLARABEL" else {}
    # weights below this change f by at most 1e-10 max(|y|_inf, 1): solver residue (e.g. when mu* = 0);
    # dropping them is safe, the value and the certificate are computed afterwards
    atol = 1e-10 * max(np.abs(y).max(initial=0.0), 1.0) / max(np.linalg.norm(xt, axis=1).max(), 1e-300)

    if method == "exact":
        pats, _ = activation_patterns(x, bias=bias, tol=tol)
        vv, ww = _solve_cones(xt, y, pats, pats, reg, solver, opts, verbose)
        if polish:  # re-solve on the cones that carry mass: removes the interior-point residue
            nv, nw = np.linalg.norm(vv, axis=1), np.linalg.norm(ww, axis=1)
            top = max(nv.max(initial=0.0), nw.max(initial=0.0), 1e-300)
            sv, sw = nv > prune * top, nw > prune * top
            vv2, ww2 = _solve_cones(xt, y, pats[sv], pats[sw], reg, solver, opts, verbose)
            vv, ww = np.zeros_like(vv), np.zeros_like(ww)
            vv[sv], ww[sw] = vv2, ww2
        nv, nw = np.linalg.norm(vv, axis=1), np.linalg.norm(ww, axis=1)
        norms = np.concatenate([nv, nw])
        directions = np.concatenate([vv, ww]) / np.maximum(norms, 1e-300)[:, None]
        directions, weights = _merge_atoms(directions, np.concatenate([nv, -nw]), prune, atol)
        value, lower, r, s, loss, tv = _certify(
            xt, y, directions, weights, reg, lambda rr: dual_sup(x, rr, bias=bias, patterns=pats, tol=tol)[0]
        )
        return F1Solution(
            value, lower, value - lower, directions, weights, r, s / reg, True, None, pats.shape[0], loss, tv, bias
        )

    m = grid_size if grid_size is not None else DEFAULT_GRID.get(dim)
    if m is None:
        raise ValueError(f"give grid_size for D = {dim} (the grid has 2 D m^(D-1) neurons)")
    units, delta = cube_sphere_grid(dim, int(m))
    phi = _features(xt, units)
    c = cp.Variable(units.shape[0])
    objective = cp.sum_squares(phi @ c - y) / (2 * n_data) + reg * cp.norm1(c)
    cp.Problem(cp.Minimize(objective)).solve(solver=solver, verbose=verbose, **opts)
    directions, weights = _merge_atoms(units, np.asarray(c.value), prune, atol)
    lip_coef = np.linalg.norm(xt, axis=1)

    def sup_bound(rr):  # max over the grid + Lipschitz constant x covering radius
        return float(np.max(np.abs(phi.T @ rr)) + np.sum(np.abs(rr) * lip_coef) * delta)

    value, lower, r, s, loss, tv = _certify(xt, y, directions, weights, reg, sup_bound)
    return F1Solution(
        value,
        lower,
        value - lower,
        directions,
        weights,
        r,
        s / reg,
        False,
        float(delta),
        units.shape[0],
        loss,
        tv,
        bias,
    )
