# Theory beside the measurement (issue 14): results/transport_theory.csv (QLT kappa_par from the
# mono-mu0 D_mumu, Bohm limit, energy slopes) and results/implications.csv (Galactic implications
# of the measured D's under the assumptions of config block `implications`).


rule transport_theory:
    input:
        isotropic=isotropic_results(),
        mono=mono_results(),
        code=script_code("transport_theory"),
    output:
        theory=report("results/transport_theory.csv", caption="../report/transport_theory.rst", category="Theory"),
    conda:
        "../envs/cosmicflow.yaml"
    log:
        "results/logs/twophase/transport_theory.log",
    script:
        "../scripts/transport_theory.py"


rule implications:
    input:
        summary="results/transport_summary.csv",
        code=script_code("implications"),
    output:
        implications=report("results/implications.csv", caption="../report/implications.rst", category="Theory"),
    params:
        implications=config["implications"],
    conda:
        "../envs/cosmicflow.yaml"
    log:
        "results/logs/twophase/implications.log",
    script:
        "../scripts/implications.py"
