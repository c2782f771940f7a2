# Config validation and the input functions the rules use by name.
import ast
import functools
import os
from pathlib import Path

import numpy as np

from snakemake.exceptions import WorkflowError

from cosmicflow import config as cfg
from cosmicflow import resources as cost

ROOT = Path(workflow.basedir)  # the folder of the main Snakefile (the project)

# schema (units, bounds, defaults) and every cross-key constraint, before any job: one line
try:
    cfg.validate_config(config, ROOT / "workflow" / "schemas" / "config.schema.yaml")
except ValueError as err:
    raise WorkflowError(str(err)) from None

MEDIA = list(config["media"])


# ---- code inputs: the import graph of the module each rule's script runs ----


def _module_file(name):
    """Source file of the dotted module ``name`` under src/ (a module or a package's
    __init__.py), or None when ``name`` is not a module (an attribute, a class)."""
    base = ROOT.joinpath("src", *name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


@functools.lru_cache(maxsize=None)
def _imports(path, module):
    """cosmicflow modules a file imports anywhere in its body (top level and inside functions),
    with ``from cosmicflow.x import y`` counted as x and as x.y (y may be a submodule) and
    relative imports resolved against ``module``, the file's dotted name."""
    tree = ast.parse(Path(path).read_text(), str(path))
    package = module if Path(path).name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1] + ([node.module] if node.module else [])
                base = ".".join(parts)
            else:
                base = node.module
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return frozenset(n for n in names if n == "cosmicflow" or n.startswith("cosmicflow."))


@functools.lru_cache(maxsize=None)
def _closure(names):
    """Files of the cosmicflow modules ``names`` and of everything they import, transitively;
    importing a.b.c also runs a/__init__.py and a/b/__init__.py."""
    files, todo = set(), list(names)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for k in range(1, len(parts) + 1):
            mod = ".".join(parts[:k])
            f = _module_file(mod)
            if f is None or f in files:
                continue
            files.add(f)
            todo.extend(_imports(str(f), mod))
    return files


def _relative(files):
    # relative to the working directory, so moving or copying the project reruns nothing
    return sorted(os.path.relpath(f) for f in files)


def script_code(script):
    """Code inputs of a rule: the source files of every cosmicflow module its script
    workflow/scripts/<script>.py imports, directly or through other modules. Editing any of
    them reruns exactly the rules whose code runs it."""
    path = ROOT / "workflow" / "scripts" / f"{script}.py"
    return _relative(_closure(_imports(str(path), "")))


def package_code(*modules):
    """Code inputs for the cosmicflow modules named (e.g. "transport"), with their imports."""
    return _relative(_closure(frozenset(f"cosmicflow.{m}" for m in modules)))


wildcard_constraints:
    medium="|".join(MEDIA),
    injection="isotropic|mono",
    energy=r"[0-9.e+-]+",
    batch=r"[0-9]+",
    realisation=r"[1-9][0-9]*",


# ---- media and their realisations ----


def _realisation_index(wildcards):
    return int(getattr(wildcards, "realisation", 0))


def realisation_config(medium, r=0):
    """The config of realisation ``r`` of a medium: a single ``path`` or ``seed``."""
    return cfg.realisations(config["media"][medium])[r]


def n_realisations(medium):
    return len(cfg.realisations(config["media"][medium]))


def medium_config(wildcards):
    """The config block of one realisation of a medium (source, grid, params, path/seed, ...)."""
    return realisation_config(wildcards.medium, _realisation_index(wildcards))


def medium_input_files(wildcards):
    """Files a medium is built from: the AthenaK output or snapshot it names, else nothing."""
    m = medium_config(wildcards)
    return [m["path"]] if m["source"] in cfg.FILE_SOURCES else []


def snapshot_path(medium, r=0):
    """Snapshot of realisation r; realisation 0 (phases, gradients, Figs. 1-4) keeps the
    single-medium name results/{medium}/snapshot.h5."""
    return f"results/{medium}/snapshot.h5" if r == 0 else f"results/{medium}/snapshot_r{r}.h5"


def field_cache_path(medium, r=0):
    return f"results/{medium}/field_cache.h5" if r == 0 else f"results/{medium}/field_cache_r{r}.h5"


energy_label = cfg.energy_label


def energy_value(label, injection):
    """The configured energy [PeV] behind a file label (the jobs run this value, not the label)."""
    energies = (config["integrate"]["mono"]["energies_PeV"] if injection == "mono"
                else config["particles"]["energies_PeV"])
    for e in energies:
        if energy_label(e) == label:
            return float(e)
    raise ValueError(f"no {injection} run at E = {label} PeV in the config; configured: {energies}")


def particle_runs():
    """(energy label, injection) pairs that have particle batches, from the config:
    isotropic runs at every particles.energies_PeV, mono-mu0 runs at integrate.mono.energies_PeV."""
    runs = [(energy_label(e), "isotropic") for e in config["particles"]["energies_PeV"]]
    runs += [(energy_label(e), "mono") for e in config["integrate"]["mono"]["energies_PeV"]]
    return list(dict.fromkeys(runs))


def particle_batch_path(medium, energy, injection, batch):
    return f"results/{medium}/particles/E{energy}_{injection}_b{batch}.h5"


def transport_batches(wildcards):
    """All particle batches of one (medium, energy, injection): integrate.batches of them."""
    if (wildcards.energy, wildcards.injection) not in particle_runs():
        raise ValueError(
            f"no {wildcards.injection} particle run at E = {wildcards.energy} PeV in the config; "
            f"configured (energy, injection) runs: {particle_runs()}"
        )
    return [
        particle_batch_path(wildcards.medium, wildcards.energy, wildcards.injection, b)
        for b in range(config["integrate"]["batches"])
    ]


def transport_result_path(medium, energy, injection):
    return f"results/{medium}/transport/E{energy}_{injection}.nc"


def transport_results():
    """Every transport result of the config: each medium x (energy, injection) run."""
    return [transport_result_path(m, e, i) for m in MEDIA for e, i in particle_runs()]


# ---- resources, planned from the config and file headers (no snapshot needed) ----


@functools.lru_cache(maxsize=None)
def _plan_geometry(medium, r):
    """(cells, smallest cell edge [pc]) of realisation r's snapshot, from the config or the
    source file's header (cosmicflow.config.plan_geometry), never from an existing snapshot
    that may be stale."""
    return cfg.plan_geometry(realisation_config(medium, r))


def _b_ref_ug(medium, r):
    """Reference field [uG] for run-time estimates: particles.b_ref_uG if set; else B0 of a
    synthetic medium; else the stored <B> of the snapshot once it is built from the current
    source (Snakemake re-evaluates resources when it submits a job, so jobs are sized from it);
    before that, the conservative planning value cosmicflow.config.PLANNING_B_REF_UG."""
    b_ref = config["particles"]["b_ref_uG"]
    if b_ref:
        return float(b_ref)
    m = realisation_config(medium, r)
    if m["source"] in cfg.SYNTHETIC_SOURCES:
        return abs(float(cfg.synthetic_params(m)["b0_uG"])) or cfg.PLANNING_B_REF_UG
    from cosmicflow.snapshot import read_snapshot

    built = Path(m["path"] if m["source"] == "snapshot" else snapshot_path(medium, r))
    source = Path(m["path"])
    if built.exists() and source.exists() and built.stat().st_mtime >= source.stat().st_mtime:
        b = float((read_snapshot(built, validate=False).mean_field_ug() ** 2).sum() ** 0.5)
        return b or cfg.PLANNING_B_REF_UG
    return cfg.PLANNING_B_REF_UG


def medium_analysis_mem_mb(wildcards, threads):
    """Memory of the phases / gradients job [MB] from the snapshot size (cosmicflow.phases)."""
    from cosmicflow.phases import stage_memory_mb

    cells, _ = _plan_geometry(wildcards.medium, 0)
    return stage_memory_mb(cost.snapshot_bytes((cells, 1, 1)), threads)


def snapshot_mem_mb(wildcards):
    """Memory of the snapshot job [MB]: FFT work arrays of a synthetic medium, or ingest buffers
    of the full-resolution snapshot (before any downsampling)."""
    m = medium_config(wildcards)
    if m["source"] in cfg.SYNTHETIC_SOURCES:
        return cost.synthetic_memory_mb(m["grid"])
    cells, _ = _plan_geometry(wildcards.medium, _realisation_index(wildcards))
    return cost.ingest_memory_mb(cost.snapshot_bytes((cells * int(m.get("downsample", 1)) ** 3, 1, 1)))


MEDIUM_FIGURES = ["fig1_slices", "fig2_phase_histograms", "fig3_gradient_histogram"]


def medium_analysis_outputs():
    """Phases and gradients stages (paper §3.1-3.2) and their figures (Figs. 1-3)."""
    outputs = [f"results/{m}/{f}" for m in MEDIA
               for f in ("phases.csv", "phase_histograms.nc", "gradients.nc")]
    outputs += [f"results/figures/{fig}.{ext}" for fig in MEDIUM_FIGURES for ext in ("png", "pdf")]
    return outputs


def get_final_outputs():
    return (
        [snapshot_path(m) for m in MEDIA]
        + medium_analysis_outputs()
        + transport_results()
        + ["results/transport_summary.csv"]
        + transport_figures()
    )


# ---- particle integration (rule integrate) ----


def integrate_per_run():
    """True: one integrate job runs all batches of a (medium, energy, injection) in one process
    (local runs: start-up and Numba cache loading once per run, not per batch); False: one job
    per batch (cluster executors: SLURM job arrays). integrate.jobs = auto picks by executor."""
    mode = config["integrate"]["jobs"]
    return mode == "run" or (mode == "auto" and workflow.local_exec)


def _split(total, parts, index):
    return total // parts + (1 if index < total % parts else 0)


def _batch_job(medium, energy, injection, batch):
    """Keyword arguments of cosmicflow.integrate.integrate_batch for one batch file."""
    it = config["integrate"]
    if injection == "isotropic":
        n, mu0 = _split(it["particles_per_energy"], it["batches"], batch), None
    else:
        mu0 = list(it["mono"]["mu0"])
        n = _split(it["mono"]["particles_per_mu0"], it["batches"], batch) * len(mu0)
    return {"energy_pev": energy_value(energy, injection), "injection": injection,
            "batch": batch, "n_particles": n, "mu0": mu0, "medium": medium}


def _common_b_ref_ug(medium):
    """|<B>| [uG] of realisation 0's snapshot: the reference field of every batch of a medium
    with several realisations, so that all share Omega_ref and the output times (t Omega_ref
    log-spaced) and can be merged. None until that snapshot exists (params are evaluated again
    when the job starts, by then it is an input)."""
    from cosmicflow.snapshot import read_snapshot

    path = Path(snapshot_path(medium, 0))
    if not path.exists():
        return None
    return float(np.sqrt((read_snapshot(path, validate=False).mean_field_ug() ** 2).sum()))


def integrate_config(wildcards):
    """The config the integrate jobs see (params): particles, integrate, phases, without
    integrate.jobs, which only groups jobs and changes no result. A medium with several
    realisations and no particles.b_ref_uG gets realisation 0's |<B>| as b_ref_uG."""
    it = {k: v for k, v in config["integrate"].items() if k != "jobs"}
    particles = dict(config["particles"])
    if n_realisations(wildcards.medium) > 1 and particles["b_ref_uG"] is None:
        particles["b_ref_uG"] = _common_b_ref_ug(wildcards.medium)
    return {"particles": particles, "integrate": it, "phases": config["phases"]}


def integrate_batch_numbers(wildcards):
    if integrate_per_run():
        return list(range(config["integrate"]["batches"]))
    return [int(wildcards.batch)]


def integrate_runs(wildcards):
    """One entry per batch file of the job: its output, the snapshot and field cache of its
    realisation (batch b uses realisation b % n), the realisation attributes and the
    integrate_batch keyword arguments."""
    m = wildcards.medium
    n = n_realisations(m)
    runs = []
    for b in integrate_batch_numbers(wildcards):
        r = b % n
        runs.append({
            "output": particle_batch_path(m, wildcards.energy, wildcards.injection, b),
            "snapshot": snapshot_path(m, r), "field_cache": field_cache_path(m, r),
            "realisation": r, "realisation_source": cfg.realisation_source(realisation_config(m, r)),
            "job": _batch_job(m, wildcards.energy, wildcards.injection, b),
        })
    return runs


def integrate_inputs(wildcards):
    """Snapshots and field caches of the job's realisations; with several realisations also
    realisation 0's snapshot, whose <B> is the common reference field."""
    runs = integrate_runs(wildcards)
    snapshots = [r["snapshot"] for r in runs]
    if n_realisations(wildcards.medium) > 1:
        snapshots.append(snapshot_path(wildcards.medium, 0))
    return {"snapshots": list(dict.fromkeys(snapshots)),
            "field_caches": list(dict.fromkeys(r["field_cache"] for r in runs))}


def _integrate_duration(injection):
    it = config["integrate"]
    return it["mono"]["duration_gyroperiods"] if injection == "mono" else it["duration_gyroperiods"]


def integrate_mem_mb(wildcards, threads):
    """Largest batch of the job (they run one after the other) [MB], cosmicflow.resources,
    for the configured field layout and class accounting."""
    it = config["integrate"]
    n_out = it["output_times"] + 1
    return max(cost.integrate_memory_mb(_plan_geometry(wildcards.medium, r["realisation"])[0],
                                        r["job"]["n_particles"], n_out,
                                        field_layout=it.get("field_layout", "full"),
                                        class_accounting=it.get("class_accounting", True),
                                        n_classes=len(it.get("class_eps_edges", [0.1, 1.0])) + 1)
               for r in integrate_runs(wildcards))


def integrate_runtime_min(wildcards, threads):
    """Wall time [min] from the cost model, summed over the job's batches, doubled as a margin,
    at least 10 minutes."""
    it = config["integrate"]
    total = 0.0
    for r in integrate_runs(wildcards):
        cells, cell = _plan_geometry(wildcards.medium, r["realisation"])
        job = r["job"]
        total += cost.integrate_runtime_min(
            job["n_particles"], _integrate_duration(job["injection"]), job["energy_pev"],
            _b_ref_ug(wildcards.medium, r["realisation"]), cell, threads=threads,
            max_rotation_rad=it["max_rotation_rad"], max_step_cells=it["max_step_cells"],
            charge=config["particles"]["charge"], n_cells=cells,
            field_layout=it.get("field_layout", "full"),
            class_accounting=it.get("class_accounting", True))
    return max(10, int(2 * total) + 1)


# ---- transport figures (Figs. 4-9) ----


def _nearest_energy(e):
    energies = config["particles"]["energies_PeV"]
    return energy_label(min(energies, key=lambda x: abs(float(x) - float(e))))


def fig4_medium():
    return config["figures"]["trajectory_medium"] or MEDIA[0]


def fig4_energy():
    e = config["figures"]["trajectory_energy_PeV"]
    if e is None:
        energies = sorted(config["particles"]["energies_PeV"])
        e = energies[len(energies) // 2]
    return _nearest_energy(e)


def fig5_energies():
    return list(dict.fromkeys(_nearest_energy(e) for e in config["figures"]["scattering_energies_PeV"]))


def fig5_batches(wildcards):
    """Every isotropic batch of every medium at the Fig. 5 energies."""
    return [particle_batch_path(m, e, "isotropic", b) for m in MEDIA for e in fig5_energies()
            for b in range(config["integrate"]["batches"])]


def isotropic_results():
    return [transport_result_path(m, energy_label(e), "isotropic")
            for m in MEDIA for e in config["particles"]["energies_PeV"]]


def mono_results():
    mono = config["integrate"]["mono"]["energies_PeV"]
    return [transport_result_path(m, energy_label(mono[0]), "mono") for m in MEDIA] if mono else []


def transport_figures():
    figs = ["fig4_trajectory_3d", "fig5_scattering_histograms", "fig7_diffusion_vs_energy",
            "fig8_phase_matrix", "fig9_effective_diffusion"]
    if config["integrate"]["mono"]["energies_PeV"]:
        figs.append("fig6_dmumu_vs_mu0")
    return [f"results/figures/{f}.{ext}" for f in figs for ext in ("png", "pdf")]


# ---- convergence report (rules in convergence.smk) ----

from cosmicflow.convergence import VARIANTS, ConvergenceParams


def convergence_params():
    return ConvergenceParams.from_config(config.get("convergence", {}))


def convergence_media():
    """Media of the convergence report: convergence.media, or every configured medium."""
    p = convergence_params()
    unknown = [m for m in p.media if m not in MEDIA]
    if unknown:
        raise ValueError(f"convergence.media names unknown media {unknown}; configured: {MEDIA}")
    return list(p.media) or MEDIA


def convergence_run_path(medium, energy, variant):
    return f"results/convergence/{medium}/E{energy_label(energy)}_{variant}.nc"


def convergence_runs():
    """The baseline and every configured test for each (medium, energy) of the report."""
    p = convergence_params()
    return [convergence_run_path(m, e, v) for m in convergence_media() for e in p.energies_PeV
            for v in ("baseline",) + p.tests]


def convergence_snapshot(wildcards):
    if wildcards.variant == "downsample":
        return f"results/convergence/{wildcards.medium}/snapshot_ds2.h5"
    return snapshot_path(wildcards.medium)


def convergence_particles():
    return convergence_params().particles_per_energy or config["integrate"]["particles_per_energy"]


# ---- mechanisms (rules in mechanisms.smk) ----

def field_lines_path(medium):
    return f"results/{medium}/field_lines.nc"


def mechanism_figures():
    return [f"results/figures/{f}.{ext}" for f in ("fig10_mechanisms", "fig11_field_lines")
            for ext in ("png", "pdf")]
