"""Snakemake script of rules fig7-fig9: isotropic transport results of every medium and energy."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
from cosmicflow.io import one_line_errors  # noqa: E402

one_line_errors()  # bad input, full disk: one line naming the file

from cosmicflow import plotting_transport  # noqa: E402
from cosmicflow.plotting import save_figure  # noqa: E402

media = plotting_transport.load_results(snakemake.input.results)  # noqa: F821
figure = getattr(plotting_transport, snakemake.params.figure)  # noqa: F821
extra = {}
if snakemake.params.figure == "fig7_diffusion_vs_energy" and snakemake.input.get("mono"):  # noqa: F821
    extra["mono"] = plotting_transport.load_results(snakemake.input.mono)  # noqa: F821
save_figure(figure(media, **extra), snakemake.output.png, snakemake.output.pdf)  # noqa: F821
