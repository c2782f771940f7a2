"""Snakemake script of rule fig10_mechanisms: isotropic transport results of every medium and energy."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821

from cosmicflow.plotting import save_figure  # noqa: E402
from cosmicflow.plotting_mechanisms import fig10_mechanisms  # noqa: E402
from cosmicflow.plotting_transport import load_results  # noqa: E402

media = load_results(snakemake.input.results)  # noqa: F821
save_figure(fig10_mechanisms(media), snakemake.output.png, snakemake.output.pdf)  # noqa: F821
