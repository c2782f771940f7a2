# Figures of particle transport (paper Figs. 4-9), multiphase solid, isothermal dashed, PNG + PDF.


rule fig4_trajectory_3d:
    input:
        snapshot=snapshot_path(fig4_medium()),
        batch=particle_batch_path(fig4_medium(), fig4_energy(), "isotropic", 0),
        code=script_code("plot_fig4_trajectory_3d"),
    output:
        png=report("results/figures/fig4_trajectory_3d.png", caption="../report/fig4_trajectory_3d.rst", category="Transport"),
        pdf="results/figures/fig4_trajectory_3d.pdf",
    conda:
        "../envs/cosmicflow.yaml"
    log:
        "results/logs/figures/fig4_trajectory_3d.log",
    script:
        "../scripts/plot_fig4_trajectory_3d.py"


rule fig5_scattering_histograms:
    input:
        batches=fig5_batches,
        code=script_code("plot_fig5_scattering_histograms"),
    output:
        png=report("results/figures/fig5_scattering_histograms.png", caption="../report/fig5_scattering_histograms.rst", category="Transport"),
        pdf="results/figures/fig5_scattering_histograms.pdf",
    params:
        media=MEDIA,
        energies=fig5_energies(),
        batches=config["integrate"]["batches"],
    conda:
        "../envs/cosmicflow.yaml"
    log:
        "results/logs/figures/fig5_scattering_histograms.log",
    script:
        "../scripts/plot_fig5_scattering_histograms.py"


rule fig6_dmumu_vs_mu0:
    input:
        results=mono_results(),
        code=script_code("plot_fig6_dmumu_vs_mu0"),
    output:
        png=report("results/figures/fig6_dmumu_vs_mu0.png", caption="../report/fig6_dmumu_vs_mu0.rst", category="Transport"),
        pdf="results/figures/fig6_dmumu_vs_mu0.pdf",
    params:
        media=MEDIA,
    conda:
        "../envs/cosmicflow.yaml"
    log:
        "results/logs/figures/fig6_dmumu_vs_mu0.log",
    script:
        "../scripts/plot_fig6_dmumu_vs_mu0.py"


rule fig7_diffusion_vs_energy:
    input:
        results=isotropic_results(),
        mono=mono_results(),
        code=script_code("plot_transport_vs_energy"),
    output:
        png=report("results/figures/fig7_diffusion_vs_energy.png", caption="../report/fig7_diffusion_vs_energy.rst", category="Transport"),
        pdf="results/figures/fig7_diffusion_vs_energy.pdf",
    params:
        figure="fig7_diffusion_vs_energy",
    conda:
        "../envs/cosmicflow.yaml"
    log:
        "results/logs/figures/fig7_diffusion_vs_energy.log",
    script:
        "../scripts/plot_transport_vs_energy.py"


use rule fig7_diffusion_vs_energy as fig8_phase_matrix with:
    output:
        png=report("results/figures/fig8_phase_matrix.png", caption="../report/fig8_phase_matrix.rst", category="Transport"),
        pdf="results/figures/fig8_phase_matrix.pdf",
    params:
        figure="fig8_phase_matrix",
    log:
        "results/logs/figures/fig8_phase_matrix.log",


use rule fig7_diffusion_vs_energy as fig9_effective_diffusion with:
    output:
        png=report("results/figures/fig9_effective_diffusion.png", caption="../report/fig9_effective_diffusion.rst", category="Transport"),
        pdf="results/figures/fig9_effective_diffusion.pdf",
    params:
        figure="fig9_effective_diffusion",
    log:
        "results/logs/figures/fig9_effective_diffusion.log",
