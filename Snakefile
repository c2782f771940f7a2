# cosmicflow: cosmic-ray transport through multiphase MHD snapshots.
# This file is a table of contents; helpers live in workflow/rules/common.smk and the physics
# in src/cosmicflow. Run `snakemake --cores 2` for everything in config/config.yaml.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/snapshot.smk"
include: "workflow/rules/integrate.smk"
include: "workflow/rules/transport.smk"
include: "workflow/rules/phases.smk"
include: "workflow/rules/gradients.smk"
include: "workflow/rules/figures_medium.smk"
include: "workflow/rules/figures_transport.smk"
include: "workflow/rules/regime.smk"
include: "workflow/rules/convergence.smk"
include: "workflow/rules/mechanisms.smk"
include: "workflow/rules/twophase.smk"


rule all:
    input:
        get_final_outputs(),
        mechanism_figures(),
        "results/transport_theory.csv",
        "results/implications.csv",
    default_target: True
