# Figures of the medium itself (paper Figs. 1-3), all media side by side, PNG + PDF.


rule fig1_slices:
    input:
        slices=expand(rules.phases.output.slices, medium=MEDIA),
        code=script_code("plot_fig1_slices"),
    output:
        png=report("results/figures/fig1_slices.png", caption="../report/fig1_slices.rst", category="Medium"),
        pdf="results/figures/fig1_slices.pdf",
    params:
        media=MEDIA,
    conda:
        "../envs/cosmicflow.yaml"
    log:
        "results/logs/figures/fig1_slices.log",
    script:
        "../scripts/plot_fig1_slices.py"


rule fig2_phase_histograms:
    input:
        histograms=expand(rules.phases.output.histograms, medium=MEDIA),
        code=script_code("plot_fig2_phase_histograms"),
    output:
        png=report("results/figures/fig2_phase_histograms.png", caption="../report/fig2_phase_histograms.rst", category="Medium"),
        pdf="results/figures/fig2_phase_histograms.pdf",
    params:
        media=MEDIA,
        phases=config["phases"],
    conda:
        "../envs/cosmicflow.yaml"
    log:
        "results/logs/figures/fig2_phase_histograms.log",
    script:
        "../scripts/plot_fig2_phase_histograms.py"


rule fig3_gradient_histogram:
    input:
        gradients=expand(rules.gradients.output.gradients, medium=MEDIA),
        code=script_code("plot_fig3_gradient_histogram"),
    output:
        png=report("results/figures/fig3_gradient_histogram.png", caption="../report/fig3_gradient_histogram.rst", category="Medium"),
        pdf="results/figures/fig3_gradient_histogram.pdf",
    params:
        media=MEDIA,
    conda:
        "../envs/cosmicflow.yaml"
    log:
        "results/logs/figures/fig3_gradient_histogram.log",
    script:
        "../scripts/plot_fig3_gradient_histogram.py"
