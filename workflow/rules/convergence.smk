# Target `convergence` (not in `all`): the headline transport numbers under half the step,
# twice the particles, twice the duration and the medium block-averaged x2 (cosmicflow.convergence).
#   snakemake --cores 2 convergence

rule convergence_downsample:
    input:
        snapshot="results/{medium}/snapshot.h5",
        code=script_code("convergence"),
    output:
        snapshot="results/convergence/{medium}/snapshot_ds2.h5",
    conda:
        "../envs/cosmicflow.yaml"
    log:
        "results/logs/convergence/{medium}_downsample.log",
    script:
        "../scripts/convergence.py"


rule convergence_run:
    input:
        snapshot=convergence_snapshot,
        code=script_code("convergence"),
    output:
        result="results/convergence/{medium}/E{energy}_{variant}.nc",
    wildcard_constraints:
        variant="|".join(VARIANTS),
    params:
        config={k: config[k] for k in ("particles", "integrate", "phases", "transport")},
        n_particles=convergence_particles(),
    threads: 2
    conda:
        "../envs/cosmicflow.yaml"
    benchmark:
        "results/benchmarks/convergence/{medium}_E{energy}_{variant}.tsv"
    log:
        "results/logs/convergence/{medium}_E{energy}_{variant}.log",
    script:
        "../scripts/convergence.py"


rule convergence_report:
    input:
        runs=convergence_runs(),
        code=script_code("convergence"),
    output:
        csv="results/convergence.csv",
        png="results/figures/convergence.png",
        pdf="results/figures/convergence.pdf",
    params:
        convergence=config.get("convergence", {}),
    conda:
        "../envs/cosmicflow.yaml"
    log:
        "results/logs/convergence/report.log",
    script:
        "../scripts/convergence.py"


rule convergence:
    input:
        rules.convergence_report.output,
