"""Snakemake script of rule `integrate`: one particle batch file (docs/data-contracts.md)."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
import numba  # noqa: E402

from cosmicflow.integrate import IntegrateSettings, integrate_batch  # noqa: E402

# use the job's threads (never more than Numba's pool)
numba.set_num_threads(max(1, min(snakemake.threads, numba.config.NUMBA_NUM_THREADS)))  # noqa: F821

job = dict(snakemake.params.job)  # noqa: F821
integrate_batch(
    snakemake.input.snapshot,  # noqa: F821
    snakemake.output.batch,  # noqa: F821
    settings=IntegrateSettings.from_config(snakemake.params.config, job["injection"]),  # noqa: F821
    config=snakemake.params.config,  # noqa: F821
    progress=True,
    field_cache=snakemake.input.field_cache,  # noqa: F821
    **job,
)
