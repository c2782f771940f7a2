# Config validation and the input functions the rules use by name.
from pathlib import Path

from snakemake.utils import validate

from cosmicflow import resources as cost

validate(config, "../schemas/config.schema.yaml")

MEDIA = list(config["media"])
PACKAGE = Path(workflow.basedir) / "src" / "cosmicflow"


def package_code(*modules):
    """Source files of the cosmicflow modules a job runs, used as inputs so that editing the physics or the
    plotting code reruns exactly the rules that use it (Snakemake sees the package only here)."""
    files = []
    for m in modules:  # a subpackage (cosmicflow/integrate/) counts with all its modules
        pkg = PACKAGE / m
        files += sorted(map(str, pkg.glob("*.py"))) if pkg.is_dir() else [str(PACKAGE / f"{m}.py")]
    return files



wildcard_constraints:
    medium="|".join(MEDIA),
    injection="isotropic|mono",
    energy=r"[0-9.e+-]+",
    batch=r"[0-9]+",


def medium_config(wildcards):
    """The config block of one medium (source, grid, params, ...)."""
    return config["media"][wildcards.medium]


def medium_input_files(wildcards):
    """Files a medium is built from: the AthenaK output or snapshot it names, else nothing."""
    m = config["media"][wildcards.medium]
    return [m["path"]] if m["source"] in ("athenak", "snapshot") else []


def snapshot_path(medium):
    return f"results/{medium}/snapshot.h5"


def energy_label(energy_pev):
    """An energy [PeV] as it appears in file names: f"{E:g}" (1.5, 2.5, 10)."""
    return f"{float(energy_pev):g}"


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


def medium_analysis_mem_mb(wildcards, input, threads):
    """Memory of the phases / gradients job [MB] from the snapshot size (cosmicflow.phases)."""
    from cosmicflow.phases import stage_memory_mb

    return stage_memory_mb(int(input.size_mb * 1024**2), threads)


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


def snapshot_mem_mb(wildcards, input):
    """Memory of the snapshot job [MB]: FFT work arrays of a synthetic medium, or ingest buffers."""
    m = config["media"][wildcards.medium]
    if m["source"] in ("multiphase", "kolmogorov", "slab"):
        return cost.synthetic_memory_mb(m["grid"])
    # an AthenaK file holds about as many float32 per cell as the canonical snapshot
    return cost.ingest_memory_mb(int(input.size_mb * 1024**2))


# ---- particle integration (rule integrate) ----


def _split(total, parts, index):
    return total // parts + (1 if index < total % parts else 0)


def integrate_job(wildcards):
    """Keyword arguments of cosmicflow.integrate.integrate_batch for one batch file."""
    it = config["integrate"]
    batch = int(wildcards.batch)
    if wildcards.injection == "isotropic":
        n, mu0 = _split(it["particles_per_energy"], it["batches"], batch), None
    else:
        mu0 = list(it["mono"]["mu0"])
        n = _split(it["mono"]["particles_per_mu0"], it["batches"], batch) * len(mu0)
    if n < 1:
        raise ValueError(
            f"integrate: batch {batch} of {wildcards.injection} would have no particles; "
            "use fewer integrate.batches than particles"
        )
    return {"energy_pev": float(wildcards.energy), "injection": wildcards.injection,
            "batch": batch, "n_particles": n, "mu0": mu0, "medium": wildcards.medium}


def _integrate_duration(wildcards):
    it = config["integrate"]
    return it["mono"]["duration_gyroperiods"] if wildcards.injection == "mono" else it["duration_gyroperiods"]


def _snapshot_geometry(medium):
    """(cells, cell edge [pc], B_ref [uG]) of a medium, from the config when it is synthetic,
    else from the snapshot file once it exists (resources are evaluated when the job is ready)."""
    m = config["media"][medium]
    b_ref = config["particles"]["b_ref_uG"]
    if m["source"] in ("multiphase", "kolmogorov", "slab"):
        b0 = m.get("params", {}).get("b0_uG", 3.0)
        return m["grid"] ** 3, m["box_pc"] / m["grid"], b_ref or b0
    from cosmicflow.snapshot import read_snapshot

    snap = read_snapshot(snapshot_path(medium), validate=False)
    b = b_ref or float((snap.mean_field_ug() ** 2).sum() ** 0.5)  # stored by the writer
    return int(snap["density"].size), float(snap.cell_pc.min()), b


def integrate_mem_mb(wildcards, threads):
    cells, _, _ = _snapshot_geometry(wildcards.medium)
    n = integrate_job(wildcards)["n_particles"]
    it = config["integrate"]
    return cost.integrate_memory_mb(cells, n, it["output_times"] + 1,
                                    field_layout=it.get("field_layout", "full"),
                                    class_accounting=it.get("class_accounting", True),
                                    n_classes=len(it.get("class_eps_edges", [0.1, 1.0])) + 1)


def integrate_runtime_min(wildcards, threads):
    """Wall time [min] from the cost model, doubled as a margin, at least 10 minutes."""
    _, cell, b_ref = _snapshot_geometry(wildcards.medium)
    it = config["integrate"]
    t = cost.integrate_runtime_min(
        integrate_job(wildcards)["n_particles"], _integrate_duration(wildcards),
        float(wildcards.energy), b_ref, cell, threads=threads,
        max_rotation_rad=it["max_rotation_rad"], max_step_cells=it["max_step_cells"],
        charge=config["particles"]["charge"], n_cells=_snapshot_geometry(wildcards.medium)[0])
    return max(10, int(2 * t) + 1)


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
