# Stage 3: |grad T| and |grad B| (paper §3.2, Fig. 3), adiabaticity epsilon per energy and
# phase, mean-field quantities. Chunked with a one-cell periodic halo.


rule gradients:
    input:
        snapshot=rules.snapshot.output.snapshot,
        code=script_code("gradients"),
    output:
        gradients="results/{medium}/gradients.nc",
    params:
        particles=config["particles"],
        phases=config["phases"],
    threads: 2
    resources:
        mem_mb=medium_analysis_mem_mb,
    conda:
        "../envs/cosmicflow.yaml"
    benchmark:
        "results/benchmarks/gradients/{medium}.tsv"
    log:
        "results/logs/gradients/{medium}.log",
    script:
        "../scripts/gradients.py"
