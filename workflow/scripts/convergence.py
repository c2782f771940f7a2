"""Snakemake script of the rules in workflow/rules/convergence.smk (cosmicflow.convergence)."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")

from cosmicflow import convergence  # noqa: E402

rule = snakemake.rule  # noqa: F821
if rule == "convergence_downsample":
    from cosmicflow.downsample import downsample_snapshot

    downsample_snapshot(snakemake.input.snapshot, snakemake.output.snapshot, 2)  # noqa: F821
elif rule == "convergence_run":
    import numba

    numba.set_num_threads(max(1, min(snakemake.threads, numba.config.NUMBA_NUM_THREADS)))  # noqa: F821
    convergence.run_variant(
        snakemake.input.snapshot,  # noqa: F821
        snakemake.output.result,  # noqa: F821
        medium=snakemake.wildcards.medium,  # noqa: F821
        energy_pev=float(snakemake.wildcards.energy),  # noqa: F821
        variant=snakemake.wildcards.variant,  # noqa: F821
        config=snakemake.params.config,  # noqa: F821
        n_particles=snakemake.params.n_particles,  # noqa: F821
    )
else:
    convergence.write_report(
        convergence.runs_from_paths(snakemake.input.runs),  # noqa: F821
        snakemake.output.csv,  # noqa: F821
        snakemake.output.png,  # noqa: F821
        snakemake.output.pdf,  # noqa: F821
        convergence.ConvergenceParams.from_config(snakemake.params.convergence),  # noqa: F821
    )
