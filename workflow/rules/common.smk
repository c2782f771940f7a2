# Config validation and the input functions the rules use by name.
from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")

MEDIA = list(config["media"])


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


def get_final_outputs():
    outputs = [snapshot_path(m) for m in MEDIA]
    outputs += [particle_batch_path(m, e, inj, b)
                for m in MEDIA for inj, e, b in particle_batches()]
    return outputs


# ---- particle integration (rule integrate) ----
INJECTIONS = ["isotropic", "mono"]


def energy_label(energy_pev):
    """Energy as it appears in file names (f"{E:g}" in PeV: 1.5, 10)."""
    return f"{float(energy_pev):g}"


def particle_batches():
    """Every (injection, energy label, batch) the config asks for."""
    it = config["integrate"]
    jobs = [("isotropic", energy_label(e), b)
            for e in config["particles"]["energies_PeV"] for b in range(it["batches"])]
    jobs += [("mono", energy_label(e), b)
             for e in it["mono"]["energies_PeV"] for b in range(it["batches"])]
    return jobs


def particle_batch_path(medium, energy, injection, batch):
    return f"results/{medium}/particles/E{energy}_{injection}_b{batch}.h5"


def particle_batch_files(medium, energy, injection):
    """All batch files of one (medium, energy, injection): what the transport stage merges."""
    return [particle_batch_path(medium, energy, injection, b)
            for b in range(config["integrate"]["batches"])]


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
