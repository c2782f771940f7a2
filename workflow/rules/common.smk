# Config validation and the input functions the rules use by name.
from snakemake.utils import validate

from cosmicflow import resources as cost

validate(config, "../schemas/config.schema.yaml")

MEDIA = list(config["media"])


wildcard_constraints:
    medium="|".join(MEDIA),


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
    return [snapshot_path(m) for m in MEDIA]


def snapshot_mem_mb(wildcards, input):
    """Memory of the snapshot job [MB]: FFT work arrays of a synthetic medium, or ingest buffers."""
    m = config["media"][wildcards.medium]
    if m["source"] in ("multiphase", "kolmogorov", "slab"):
        return cost.synthetic_memory_mb(m["grid"])
    # an AthenaK file holds about as many float32 per cell as the canonical snapshot
    return cost.ingest_memory_mb(int(input.size_mb * 1024**2))
