# Config validation and the input functions the rules use by name.
from snakemake.utils import validate

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


MEDIUM_FIGURES = ["fig1_slices", "fig2_phase_histograms", "fig3_gradient_histogram"]


def get_final_outputs():
    outputs = [snapshot_path(m) for m in MEDIA]
    # phases and gradients stages (paper §3.1-3.2) and their figures (Figs. 1-3)
    outputs += [f"results/{m}/{f}" for m in MEDIA
                for f in ("phases.csv", "phase_histograms.nc", "gradients.nc")]
    outputs += [f"results/figures/{fig}.{ext}" for fig in MEDIUM_FIGURES for ext in ("png", "pdf")]
    return outputs
