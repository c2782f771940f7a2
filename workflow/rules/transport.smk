# Stage 5: particle batches -> running and plateau diffusion coefficients, phase-phase matrices
# (results/{medium}/transport/E{energy}_{injection}.nc), and the table users quote from.


rule transport:
    input:
        batches=transport_batches,
        code=package_code("transport"),
    output:
        transport="results/{medium}/transport/E{energy}_{injection}.nc",
    params:
        transport=config["transport"],
    conda:
        "../envs/cosmicflow.yaml"
    benchmark:
        "results/benchmarks/transport/{medium}_E{energy}_{injection}.tsv"
    log:
        "results/logs/transport/{medium}_E{energy}_{injection}.log",
    script:
        "../scripts/transport.py"


rule summary:
    input:
        transport=transport_results(),
        code=package_code("transport"),
    output:
        summary="results/transport_summary.csv",
    conda:
        "../envs/cosmicflow.yaml"
    log:
        "results/logs/transport/summary.log",
    script:
        "../scripts/transport_summary.py"
