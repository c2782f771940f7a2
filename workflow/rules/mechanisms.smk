# Mechanisms (issue 13): field-line random walk and phase patches per medium
# (results/{medium}/field_lines.nc), Fig. 10 (geometry baseline, adiabaticity classes) and
# Fig. 11 (field-line wandering beside particle D_perp, patch lengths).

rule field_lines:
    input:
        snapshot=lambda wildcards: snapshot_path(wildcards.medium),
        code=script_code("field_lines"),
    output:
        field_lines="results/{medium}/field_lines.nc",
    params:
        field_lines=config.get("field_lines", {}),
        phases=config["phases"],
    conda:
        "../envs/cosmicflow.yaml"
    benchmark:
        "results/benchmarks/field_lines/{medium}.tsv"
    log:
        "results/logs/field_lines/{medium}.log",
    script:
        "../scripts/field_lines.py"


rule fig10_mechanisms:
    input:
        results=isotropic_results(),
        code=script_code("plot_fig10_mechanisms"),
    output:
        png=report("results/figures/fig10_mechanisms.png", caption="../report/fig10_mechanisms.rst", category="Mechanisms"),
        pdf="results/figures/fig10_mechanisms.pdf",
    conda:
        "../envs/cosmicflow.yaml"
    log:
        "results/logs/figures/fig10_mechanisms.log",
    script:
        "../scripts/plot_fig10_mechanisms.py"


rule fig11_field_lines:
    input:
        field_lines=[field_lines_path(m) for m in MEDIA],
        results=isotropic_results(),
        code=script_code("plot_fig11_field_lines"),
    output:
        png=report("results/figures/fig11_field_lines.png", caption="../report/fig11_field_lines.rst", category="Mechanisms"),
        pdf="results/figures/fig11_field_lines.pdf",
    params:
        media=MEDIA,
    conda:
        "../envs/cosmicflow.yaml"
    log:
        "results/logs/figures/fig11_field_lines.log",
    script:
        "../scripts/plot_fig11_field_lines.py"
