"""What drives the transport: geometry baseline, adiabaticity classes, scattering-event ε.

Part of the ``transport`` stage (issue 13). The phase decomposition of paper Eqs. 11–15 splits
each particle's displacement into the parts accumulated while its step midpoint was in phase α,
Σ_α Δr_α = Δr, so Σ_αβ D_αβ = D holds by construction. What the matrix says *beyond* that
bookkeeping is measured here against a geometry baseline.

Geometry baseline
-----------------
If a particle's dwell times in each group (phase, or adiabaticity class) are short against its
velocity correlation time, every group receives a share of the displacement proportional to the
time spent in it, Δr_α ≈ f_α Δr, hence

.. math:: D_{\\alpha\\beta} \\approx f_\\alpha f_\\beta D, \\qquad
          D_{\\rm eff,\\alpha} = D_{\\alpha\\alpha}/f_\\alpha \\approx f_\\alpha D,

with f_α the fraction of particle *time* spent in α. The ratios

.. math:: \\rho_{\\alpha\\beta} = \\frac{D_{\\alpha\\beta}}{f_\\alpha f_\\beta D}, \\qquad
          \\rho^{\\rm eff}_\\alpha = \\frac{D_{\\rm eff,\\alpha}}{f_\\alpha D}
          = \\rho_{\\alpha\\alpha}

are 1 for pure geometry *in the correlated limit*. In the opposite limit — dwell episodes long
against the velocity correlation time, as for the perpendicular motion, whose velocity
decorrelates every gyration — displacements in different phases are uncorrelated,
D_αα = f_α D_α with D_α the phase's own coefficient, and ρ_αα = D_α/(f_α D), i.e. 1/f_α for
a medium with the same D everywhere: a large diagonal ratio of a rare phase is then geometry
too. The *share* s_α = Σ_β D_αβ / D (row sum; Σ_α s_α = 1 exactly) is the fraction of D that
α's displacement carries; it equals f_α in *both* limits when every phase moves particles
alike, so the *mobility* m_α = s_α / f_α (= D_α/D in the uncorrelated limit) is the measure of
what a phase does beyond its time share, whichever limit applies.

f_α here is the time fraction t_α/t averaged over particles. For uniform injection in a static
field it equals the phase *volume* fraction (Liouville; ``test_integrate``), not the *mass*
fraction that the paper quotes for its phases.

Windows and intervals
---------------------
Every quantity is the mean over the late window of :func:`cosmicflow.transport.late_window`
(the plateau window) of its running value: D_αβ(t) = ⟨Δr_α Δr_β⟩/(2t or 4t), f_α(t) = ⟨t_α(t)⟩/t
and D(t), so D_αα and f_α use the *same* window. The per-particle window means are resampled
together (:func:`cosmicflow.transport.bootstrap_means`, same seed and N for every quantity), and
the ratio is formed per resample, so the interval of ρ carries the correlation of numerator and
denominator. The ratios are given whatever the late regime (the baseline argument holds for the
mean squared displacements at any time); the regime of D is in the result's attributes.

Adiabaticity classes
--------------------
The pusher (batch contract, docs/data-contracts.md) labels every step by ε = |∇|B|| r_L/|B| at
its field-evaluation point, with classes bounded by ``eps_class_edges`` (default 0.1, 1), and
accumulates ``class_displacement`` and ``class_time`` exactly like the phases, plus the joint
``phase_class_time`` and ``hist_epsilon_scatter``: ε at steps whose |dμ/d(tΩ)| exceeds
``scatter_dmu_threshold``, per phase. The same decomposition, baseline and shares apply to the
classes; the joint phase × class time fractions and, per phase, the normalised ε distribution at
scattering events (the paper's "events with |dμ/d(tΩ)| ≳ 0.1 concentrate at ε ~ 0.3–3", §3.3)
are added to the transport result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from cosmicflow.io import InputError

__all__ = [
    "CLASS_VARIABLES",
    "class_batch_variables",
    "merge_scatter_histograms",
    "check_class_sum",
    "window_group_estimates",
    "mechanism_vars",
    "mechanism_summary",
]

#: per-particle class variables of the batch contract and their dims
CLASS_VARIABLES = {
    "class_displacement": ("particle", "time", "eps_class", "component"),
    "class_time": ("particle", "time", "eps_class"),
    "phase_class_time": ("particle", "time", "phase", "eps_class"),
}
#: batch attributes of the class accounting copied into the transport result
CLASS_ATTRS = ("eps_class_edges", "scatter_dmu_threshold")
#: largest relative deviation of Σ_class Δr from Δr accepted in a batch (float32 accumulation)
CLASS_SUM_RTOL = 1e-6

_PC2_CM2 = None  # set lazily from cosmicflow.transport to avoid an import cycle


def _pc2_cm2() -> float:
    global _PC2_CM2
    if _PC2_CM2 is None:
        from cosmicflow.transport import PC2_CM2

        _PC2_CM2 = PC2_CM2
    return _PC2_CM2


# --------------------------------------------------------------------------------------------
# Reading the class variables of a batch


def class_batch_variables(raw: xr.Dataset, path: str) -> list[str]:
    """Names of the class variables present in batch ``raw`` (all of them, or none).

    Checks dims and units; a batch with only some of them, or with wrong dims, raises an
    :class:`InputError` naming ``path``. Class accounting switched off (``integrate.
    class_accounting: false``) gives no variables and an empty list.
    """
    present = [v for v in CLASS_VARIABLES if v in raw.variables]
    if not present:
        return []
    if len(present) != len(CLASS_VARIABLES):
        missing = sorted(set(CLASS_VARIABLES) - set(present))
        raise InputError(f"{path}: batch has class variables {present} but lacks {missing}")
    for name, dims in CLASS_VARIABLES.items():
        if tuple(raw[name].dims) != dims:
            raise InputError(f"{path}: {name!r} has dims {raw[name].dims}, expected {dims}")
        want = "pc" if name == "class_displacement" else "s"
        if raw[name].attrs.get("units") != want:
            raise InputError(f"{path}: {name!r} has units {raw[name].attrs.get('units')!r}, expected {want!r}")
    return list(CLASS_VARIABLES)


def merge_scatter_histograms(merged: xr.Dataset, raws: Sequence[xr.Dataset]) -> xr.Dataset:
    """Add the sum over batches of ``hist_epsilon_scatter`` (phase, eps_bin) [count] and the
    ``eps_edges`` it is binned on to a merged dataset, with the class attributes of the first
    batch. Batches without the histogram leave ``merged`` unchanged."""
    hists = [r["hist_epsilon_scatter"] for r in raws if "hist_epsilon_scatter" in r.variables]
    if not hists:
        return merged
    if len(hists) != len(raws):
        raise InputError("hist_epsilon_scatter is present in some batches but not in others")
    total = hists[0].values.astype(np.int64)
    for h in hists[1:]:
        if h.shape != hists[0].shape:
            raise InputError(f"hist_epsilon_scatter shapes differ between batches: {h.shape} vs {total.shape}")
        total = total + h.values.astype(np.int64)
    out = merged.assign(hist_epsilon_scatter=(hists[0].dims, total, {"units": "count"}))
    if "eps_edges" in raws[0].variables:
        out = out.assign(eps_edges=raws[0]["eps_edges"].load())
    for a in CLASS_ATTRS:
        if a in raws[0].attrs:
            out.attrs[a] = raws[0].attrs[a]
    return out


def check_class_sum(ds: xr.Dataset, rtol: float = CLASS_SUM_RTOL) -> float:
    """Largest relative deviation of Σ_class Δr_class from Δr and of Σ_class t_class from t.

    Raises InputError above ``rtol`` (relative to the largest |Δr| resp. t of the batch): the
    class accounting of the contract must add up like the phases."""
    disp = ds["displacement"].values
    csum = ds["class_displacement"].sum("eps_class").transpose(*ds["displacement"].dims).values
    scale = max(float(np.abs(disp).max()), 1e-300)
    dev_r = float(np.abs(csum - disp).max()) / scale
    t = ds["time"].values
    tsum = ds["class_time"].sum("eps_class").transpose("particle", "time").values
    dev_t = float(np.abs(tsum - t[None, :]).max()) / max(float(t[-1]), 1e-300)
    pct = ds["phase_class_time"].sum("phase").transpose("particle", "time", "eps_class").values
    ct = ds["class_time"].transpose("particle", "time", "eps_class").values
    dev_j = float(np.abs(pct - ct).max()) / max(float(t[-1]), 1e-300)
    dev = max(dev_r, dev_t, dev_j)
    if dev > rtol:
        raise InputError(
            f"class accounting does not add up: max relative deviation {dev:.3e} > {rtol:g} "
            "(sum over eps_class of class_displacement / class_time must equal displacement / "
            "time, and sum over phase of phase_class_time must equal class_time)"
        )
    return dev


# --------------------------------------------------------------------------------------------
# Group decomposition with the geometry baseline


def _project(disp: np.ndarray, b0hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 3) displacements [pc] -> parallel (...) and perpendicular vector (..., 3)."""
    par = disp @ b0hat
    return par, disp - par[..., None] * b0hat


def window_group_estimates(
    group_disp: np.ndarray,
    group_time: np.ndarray,
    disp: np.ndarray,
    time: np.ndarray,
    b0hat: np.ndarray,
    mask: np.ndarray,
    params: Any,
) -> dict[str, dict[str, np.ndarray]]:
    r"""Late-window group matrix, fractions, baseline ratios and shares with bootstrap intervals.

    Parameters
    ----------
    group_disp : (particle, time, group, 3) Δr_α [pc] at the times ``time`` (all > 0)
    group_time : (particle, time, group) t_α [s]
    disp : (particle, time, 3) total Δr [pc]
    time : (time,) [s], > 0
    b0hat : (3,) unit mean-field direction
    mask : (time,) bool late window
    params : :class:`cosmicflow.transport.TransportParams` (bootstrap settings)

    Returns ``{"par": {...}, "perp": {...}, "fraction": {...}}``; each component holds
    ``matrix`` (group, group) [cm² s⁻¹], ``total`` D [cm² s⁻¹], ``ratio`` ρ_αβ = D_αβ/(f_α f_β D)
    and ``share`` s_α = Σ_β D_αβ / D, each with ``*_interval`` (..., 2); ``fraction`` holds
    ``value`` f_α and its ``interval``. Definitions in the module docstring.
    """
    from cosmicflow.transport import _interval, bootstrap_means

    t = np.asarray(time, float)
    if np.any(t <= 0):
        raise ValueError("window_group_estimates needs times > 0")
    m = np.asarray(mask, bool)
    tw = t[m]
    gpar, gperp = _project(np.asarray(group_disp, float)[:, m], b0hat)  # (p, w, g), (p, w, g, 3)
    tpar, tperp = _project(np.asarray(disp, float)[:, m], b0hat)
    f = (np.asarray(group_time, float)[:, m] / tw[None, :, None]).mean(axis=1)  # (p, g)
    out: dict[str, dict[str, np.ndarray]] = {}
    f_boot = bootstrap_means(f, params)  # (B, g)
    f_mean = f.mean(axis=0)
    out["fraction"] = {
        "value": f_mean,
        "interval": np.array([_interval(f_boot[:, a], params) for a in range(f_mean.size)]),
    }
    for comp, denom in (("par", 2.0), ("perp", 4.0)):
        scale = _pc2_cm2() / (denom * tw)
        if comp == "par":
            prod = np.einsum("pwa,pwb,w->pab", gpar, gpar, scale) / tw.size
            tot = np.einsum("pw,w->p", tpar * tpar, scale) / tw.size
        else:
            prod = np.einsum("pwac,pwbc,w->pab", gperp, gperp, scale) / tw.size
            tot = np.einsum("pwc,w->p", tperp * tperp, scale) / tw.size
        mat_b = bootstrap_means(prod, params)  # (B, g, g)
        tot_b = bootstrap_means(tot, params)  # (B,)
        mat, d = prod.mean(axis=0), float(tot.mean())
        with np.errstate(divide="ignore", invalid="ignore"):
            ff = np.outer(f_mean, f_mean)
            ratio = np.where(ff > 0, mat / (ff * d), np.nan)
            ratio_b = mat_b / (f_boot[:, :, None] * f_boot[:, None, :] * tot_b[:, None, None])
            share = mat.sum(axis=1) / d
            share_b = mat_b.sum(axis=2) / tot_b[:, None]
            mobility = share / np.where(f_mean > 0, f_mean, np.nan)
            mobility_b = share_b / np.where(f_boot > 0, f_boot, np.nan)
        g = f_mean.size
        out[comp] = {
            "matrix": mat,
            "matrix_interval": np.array(
                [[_interval(mat_b[:, a, b], params) for b in range(g)] for a in range(g)]
            ),
            "total": np.asarray(d),
            "ratio": ratio,
            "ratio_interval": np.array(
                [[_interval(ratio_b[:, a, b], params) for b in range(g)] for a in range(g)]
            ),
            "share": share,
            "share_interval": np.array([_interval(share_b[:, a], params) for a in range(g)]),
            "mobility": mobility,
            "mobility_interval": np.array([_interval(mobility_b[:, a], params) for a in range(g)]),
        }
    return out


def _vars_for(prefix: str, group: str, est: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, xr.Variable]:
    """Result variables for one group family (``phase`` or ``eps_class``)."""
    ga, gb = f"{group}_a", f"{group}_b"
    what = "phase" if group == "phase" else "adiabaticity class"
    v: dict[str, xr.Variable] = {
        f"{prefix}_fraction_late": xr.Variable(
            group, est["fraction"]["value"],
            {"units": "1", "long_name": f"time fraction f in each {what}, late-window mean of <t_a>/t"},
        ),
        f"{prefix}_fraction_late_interval": xr.Variable(
            (group, "bound"), est["fraction"]["interval"], {"units": "1"}
        ),
    }
    for comp in ("par", "perp"):
        e = est[comp]
        if group != "phase":  # the phase matrix itself is the transport stage's own variable
            v[f"D_{comp}_{prefix}_matrix_late"] = xr.Variable(
                (ga, gb), e["matrix"],
                {"units": "cm^2 s^-1", "long_name": f"late-window D_{comp} matrix over {what}es (Eqs. 13-14)"},
            )
            v[f"D_{comp}_{prefix}_matrix_late_interval"] = xr.Variable(
                (ga, gb, "bound"), e["matrix_interval"], {"units": "cm^2 s^-1"}
            )
        v[f"{prefix}_baseline_ratio_{comp}"] = xr.Variable(
            (ga, gb), e["ratio"],
            {"units": "1", "long_name": f"D_{comp},ab / (f_a f_b D_{comp}) over the late window (1 = geometry)"},
        )
        v[f"{prefix}_baseline_ratio_{comp}_interval"] = xr.Variable(
            (ga, gb, "bound"), e["ratio_interval"], {"units": "1"}
        )
        v[f"{prefix}_share_{comp}"] = xr.Variable(
            group, e["share"],
            {"units": "1", "long_name": f"share of D_{comp} carried by each {what}: sum_b D_ab / D (baseline: f_a)"},
        )
        v[f"{prefix}_share_{comp}_interval"] = xr.Variable((group, "bound"), e["share_interval"], {"units": "1"})
        v[f"{prefix}_mobility_{comp}"] = xr.Variable(
            group, e["mobility"],
            {"units": "1", "long_name": f"share of D_{comp} over time fraction, s_a / f_a (1 = geometry in both limits)"},
        )
        v[f"{prefix}_mobility_{comp}_interval"] = xr.Variable((group, "bound"), e["mobility_interval"], {"units": "1"})
    return v


def mechanism_vars(
    ds: xr.Dataset, b0hat: np.ndarray, mask: np.ndarray, params: Any
) -> xr.Dataset:
    """Every mechanism variable of one merged set of batches (t > 0 times only in ``ds``).

    Always: phase baseline ratios, shares and late-window time fractions. With the class
    variables of the batch contract: the same over adiabaticity classes (``eps_class``), the
    class sum-rule deviation, the joint phase × class late-window time fractions and the
    per-phase ε distribution at scattering events. Returns a Dataset (variables, the group
    coordinates and the attributes) to merge into the transport result.
    """
    t = ds["time"].values
    disp = ds["displacement"].transpose("particle", "time", "component").values
    pd_ = ds["phase_displacement"].transpose("particle", "time", "phase", "component").values
    pt = ds["phase_time"].transpose("particle", "time", "phase").values
    variables = _vars_for("phase", "phase", window_group_estimates(pd_, pt, disp, t, b0hat, mask, params))
    attrs: dict[str, Any] = {"class_accounting": int("class_displacement" in ds.variables)}
    phases = ds["phase"].values
    coords: dict[str, Any] = {"phase": phases, "phase_a": phases, "phase_b": phases}
    if "class_displacement" not in ds.variables:
        return xr.Dataset(variables, coords=coords, attrs=attrs)
    classes = ds["eps_class"].values
    coords.update({"eps_class": classes, "eps_class_a": classes, "eps_class_b": classes})
    cd = ds["class_displacement"].transpose("particle", "time", "eps_class", "component").values
    ct = ds["class_time"].transpose("particle", "time", "eps_class").values
    est = window_group_estimates(cd, ct, disp, t, b0hat, mask, params)
    variables.update(_vars_for("class", "eps_class", est))
    dev_par, dev_perp = _class_sum_rule(cd, disp, b0hat)
    attrs.update({"class_sum_rule_max_rel_dev_par": dev_par, "class_sum_rule_max_rel_dev_perp": dev_perp})
    pct = ds["phase_class_time"].transpose("particle", "time", "phase", "eps_class").values[:, mask]
    joint = (pct / t[mask][None, :, None, None]).mean(axis=(0, 1))
    variables["phase_class_fraction_late"] = xr.Variable(
        ("phase", "eps_class"), joint,
        {"units": "1", "long_name": "joint late-window time fraction in (phase, adiabaticity class)"},
    )
    if "hist_epsilon_scatter" in ds.variables:
        h = ds["hist_epsilon_scatter"].transpose("phase", "eps_bin").values.astype(np.float64)
        n = h.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(n > 0, h / n, np.nan)
        variables["hist_epsilon_scatter"] = xr.Variable(("phase", "eps_bin"), h.astype(np.int64), {"units": "count"})
        variables["eps_scatter_fraction"] = xr.Variable(
            ("phase", "eps_bin"), frac,
            {"units": "1", "long_name": "fraction of a phase's scattering events (|dmu/d(t Omega)| above "
                                        "scatter_dmu_threshold) in each eps bin"},
        )
        if "eps_edges" in ds.variables:
            edges = ds["eps_edges"].values
            variables["eps_scatter_edges"] = xr.Variable("eps_edge", edges, {"units": "1"})
            for lo, hi, name in ((0.3, 3.0, "0.3_3"), (1.0, math.inf, "ge1")):
                centre = np.sqrt(edges[:-1] * edges[1:])
                sel = (centre >= lo) & (centre < hi)
                variables[f"eps_scatter_fraction_{name}"] = xr.Variable(
                    "phase", np.nansum(np.where(sel[None, :], frac, 0.0), axis=1),
                    {"units": "1", "long_name": f"fraction of scattering events with eps in [{lo}, {hi}) (bin centres)"},
                )
    for a in CLASS_ATTRS:
        if a in ds.attrs:
            attrs[a] = ds.attrs[a]
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def _class_sum_rule(cd: np.ndarray, disp: np.ndarray, b0hat: np.ndarray) -> tuple[float, float]:
    """Worst relative deviation over output times of Σ_αβ D_αβ (classes) from D, par and perp.

    Σ_αβ Δr_α·Δr_β = |Σ_α Δr_α|², so the check is of the class accounting itself."""
    gpar, gperp = _project(cd, b0hat)
    tpar, tperp = _project(disp, b0hat)
    s_par = np.einsum("pta,ptb->t", gpar, gpar)
    s_perp = np.einsum("ptac,ptbc->t", gperp, gperp)
    devs = []
    for s, tot in ((s_par, (tpar**2).sum(axis=0)), (s_perp, (tperp**2).sum(axis=(0, 2)))):
        with np.errstate(divide="ignore", invalid="ignore"):
            devs.append(float(np.nanmax(np.abs(s - tot) / np.abs(tot))))
    return devs[0], devs[1]


def mechanism_summary(result: xr.Dataset) -> dict[str, Any]:
    """Columns of ``transport_summary.csv`` for the mechanism variables of a transport result:
    phase (and class) late time fractions, diagonal baseline ratios and shares with intervals."""
    row: dict[str, Any] = {}
    families = [("phase", "phase")]
    if "class_fraction_late" in result.variables:
        families.append(("class", "eps_class"))
    for prefix, group in families:
        if f"{prefix}_fraction_late" not in result.variables:
            continue
        names = [str(x) for x in result[group].values]
        f = result[f"{prefix}_fraction_late"].values
        for i, g in enumerate(names):
            row[f"f_late_{g}"] = float(f[i])
            for comp in ("par", "perp"):
                r = result[f"{prefix}_baseline_ratio_{comp}"].values[i, i]
                lo, hi = result[f"{prefix}_baseline_ratio_{comp}_interval"].values[i, i]
                row[f"ratio_{comp}_{g}_{g}"] = float(r)
                row[f"ratio_{comp}_{g}_{g}_lo"] = float(lo)
                row[f"ratio_{comp}_{g}_{g}_hi"] = float(hi)
                row[f"share_{comp}_{g}"] = float(result[f"{prefix}_share_{comp}"].values[i])
                row[f"mobility_{comp}_{g}"] = float(result[f"{prefix}_mobility_{comp}"].values[i])
    return row
