# Stage 2: thermal phases (paper §3.1): fractions, per-phase statistics, T–M_A/M_s/n
# histograms (Fig. 2) and a slice (Fig. 1). Chunked over x-slabs so memory stays bounded.


rule phases:
    input:
        snapshot=rules.snapshot.output.snapshot,
        code=script_code("phases"),
    output:
        table="results/{medium}/phases.csv",
        histograms="results/{medium}/phase_histograms.nc",
        slices="results/{medium}/slices.nc",
    params:
        phases=config["phases"],
    threads: 2
    resources:
        mem_mb=medium_analysis_mem_mb,
    conda:
        "../envs/cosmicflow.yaml"
    benchmark:
        "results/benchmarks/phases/{medium}.tsv"
    log:
        "results/logs/phases/{medium}.log",
    script:
        "../scripts/phases.py"
