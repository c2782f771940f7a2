"""Snakemake planning and reruns (issue 11): plans without data, errors before work, reruns
that follow the code (import graph), not the project's location or unrelated params."""

from __future__ import annotations

import modulefinder
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "athenak"
PROJECT_PARTS = ("Snakefile", "workflow", "src", "profiles")


def _run(workdir, *args, src=None, timeout=600, snakefile=None):
    exe = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
    src = Path(src or REPO / "src")
    env = {**os.environ, "PYTHONPATH": str(src) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    snakefile = snakefile or REPO / "Snakefile"
    return subprocess.run([exe, "-s", str(snakefile), "--directory", str(workdir), *args],
                          capture_output=True, text=True, env=env, cwd=workdir, timeout=timeout)


def _jobs(out: str) -> list[tuple[str, str]]:
    """(rule, job block) of every job a dry run lists."""
    return [(b.split(":", 1)[0].strip(), b) for b in re.split(r"\n(?:local)?rule ", "\n" + out)[1:]
            if ":" in b.split("\n", 1)[0]]


def _copy_project(dest: Path) -> Path:
    """The project's code (Snakefile, workflow, src, profiles) copied to ``dest``."""
    dest.mkdir(parents=True)
    for part in PROJECT_PARTS:
        if (REPO / part).is_dir():
            shutil.copytree(REPO / part, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / part, dest / part)
    return dest


def _write_config(workdir: Path, cfg: dict) -> None:
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))


def _paper_config_absolute() -> dict:
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    for m in cfg["media"].values():
        m["path"] = str((REPO / m["path"]).resolve())
    return cfg


# ---- item 1: planning before any data exists; item 10: local runs group batches ----


@pytest.mark.slow
@pytest.mark.parametrize("profile", [None, "slurm"])
def test_paper_config_plans_every_job_with_resources_before_any_data(tmp_path, profile):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"AthenaK test data not found at {SHARED_DATA}")
    _write_config(tmp_path, _paper_config_absolute())  # a fresh clone: no results/ at all
    args = ["-n"] + (["--profile", str(REPO / "profiles" / profile)] if profile else [])
    proc = _run(tmp_path, *args)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert not (tmp_path / "results").exists()
    assert "Shell command: None" not in out  # script rules have no shell command to print
    jobs = _jobs(proc.stdout)
    integrate = [b for r, b in jobs if r == "integrate"]
    runs = 2 * (6 + 1)  # media x (isotropic energies + mono energy)
    # locally one job per run (its 10 batches in one process); SLURM one per batch (arrays)
    assert len(integrate) == (runs * 10 if profile else runs)
    sized = {"snapshot", "field_cache", "phases", "gradients", "integrate"}
    for rule, block in jobs:
        if rule in sized or (profile and rule != "all"):  # SLURM gives every job a default
            mem = re.search(r"mem_mb=(\d+)", block)
            assert mem and int(mem.group(1)) > 0, block
    for block in integrate:
        mem = int(re.search(r"mem_mb=(\d+)", block).group(1))
        runtime = int(re.search(r"runtime=(\d+)", block).group(1))
        assert 400 <= mem < 2000 and runtime >= 10
        if profile:
            assert "threads: 8" in block and len(re.findall(r"_b\d+\.h5", block.split("output:")[1].split("\n")[0])) == 1
    # the snapshot job of the 48^3 AthenaK medium is sized from the file header (48^3 cells)
    snap = next(b for r, b in jobs if r == "snapshot" and "medium=multiphase" in b)
    assert int(re.search(r"mem_mb=(\d+)", snap).group(1)) == 400 + int(1.5 * 48**3 * 32 / 2**20)


# ---- item 4: every cross-key constraint before any job, one line naming the key ----


@pytest.mark.slow
@pytest.mark.parametrize("edit, key", [
    (lambda c: c["phases"].__setitem__("thresholds_K", [5000.0, 200.0]), "phases.thresholds_K"),
    (lambda c: c["phases"].__setitem__("names", ["cold", "warm"]), "phases.names"),
    (lambda c: c["media"]["toy"]["params"].__setitem__("l_min_pc", 1.0), "media.toy.params.l_min_pc"),
    (lambda c: c["media"]["toy"]["params"].__setitem__("l_min", 1.0), "media.toy.params"),
    (lambda c: c.__setitem__("medias", {}), "(top level)"),
])
def test_bad_config_stops_before_any_job_with_one_line(tmp_path, edit, key):
    cfg = {"media": {"toy": {"source": "kolmogorov", "grid": 16, "params": {}}},
           "phases": {"thresholds_K": [200.0, 5000.0]}}
    edit(cfg)
    _write_config(tmp_path, cfg)
    proc = _run(tmp_path, "--cores", "1")
    assert proc.returncode != 0
    assert f"config key {key}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 5, proc.stderr  # not ~950 lines of schema
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()  # nothing ran, not even the snapshot


# ---- item 2: code inputs follow the import graph; items 2/3: reruns ----


def _rule_scripts() -> dict[str, str]:
    """rule name -> script it runs, read from the rule files (`use rule A as B` inherits)."""
    scripts = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        for m in re.finditer(r"^\s*rule (\w+):(.*?)(?=^\s*(?:rule |use rule |if |else)|\Z)", text, re.S | re.M):
            s = re.search(r'"\.\./scripts/(\w+)\.py"', m.group(2))
            if s:
                scripts[m.group(1)] = s.group(1)
        for m in re.finditer(r"^use rule (\w+) as (\w+)", text, re.M):
            scripts[m.group(2)] = scripts[m.group(1)]
    return scripts


def _modules_run_by(script: Path, src: Path) -> set[str]:
    """cosmicflow modules a script runs, by the standard library's bytecode scanner
    (modulefinder, including imports inside functions), independent of common.smk."""
    finder = modulefinder.ModuleFinder(path=[str(src)])
    finder.run_script(str(script))
    return {name for name in finder.modules if name == "cosmicflow" or name.startswith("cosmicflow.")}


def _module_name(path: Path, src: Path) -> str:
    rel = path.relative_to(src).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


@pytest.fixture(scope="module")
def fabricated(tmp_path_factory):
    """A copy of the project whose every output exists and is newer than the code."""
    proj = _copy_project(tmp_path_factory.mktemp("fabricated") / "project")
    (proj / "config").mkdir()
    shutil.copy(REPO / ".test" / "config" / "config.yaml", proj / "config" / "config.yaml")
    summary = _run(proj, "--summary", src=proj / "src", snakefile=proj / "Snakefile")
    assert summary.returncode == 0, summary.stderr[-3000:]
    later = time.time() + 60
    for line in summary.stdout.splitlines()[1:]:
        f = proj / line.split("\t")[0]
        f.parent.mkdir(parents=True, exist_ok=True)
        f.touch()
        os.utime(f, (later, later))
    return proj


def _rule_graph(proj: Path) -> dict[str, set[str]]:
    """rule -> rules that consume its outputs (from `snakemake --rulegraph`)."""
    proc = _run(proj, "--rulegraph", src=proj / "src", snakefile=proj / "Snakefile")
    assert proc.returncode == 0, proc.stderr[-2000:]
    labels = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', proc.stdout, re.M))
    graph: dict[str, set[str]] = {name: set() for name in labels.values()}
    for a, b in re.findall(r"^\s*(\d+) -> (\d+)", proc.stdout, re.M):
        graph[labels[a]].add(labels[b])
    return graph


def _downstream(graph: dict[str, set[str]], rules: set[str]) -> set[str]:
    out, todo = set(rules), list(rules)
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in out:
                out.add(nxt)
                todo.append(nxt)
    return out


@pytest.mark.slow
def test_touching_a_module_reruns_exactly_the_rules_whose_code_imports_it(fabricated):
    proj, src = fabricated, fabricated / "src"
    quiet = _run(proj, "-n", src=src, snakefile=proj / "Snakefile")
    assert "Nothing to be done" in quiet.stdout + quiet.stderr, quiet.stdout[-2000:]
    graph = _rule_graph(proj)
    scripts = {r: s for r, s in _rule_scripts().items() if r in graph}
    assert {"snapshot", "integrate", "phases", "gradients", "fig4_trajectory_3d"} <= set(scripts)
    runs = {rule: _modules_run_by(proj / "workflow" / "scripts" / f"{s}.py", src)
            for rule, s in scripts.items()}
    modules = sorted((src / "cosmicflow").rglob("*.py"))
    assert len(modules) >= 15
    for module in modules:
        name = _module_name(module, src)
        importers = {rule for rule, mods in runs.items() if name in mods}
        before = module.stat().st_mtime
        future = time.time() + 3600
        os.utime(module, (future, future))
        try:
            proc = _run(proj, "-n", src=src, snakefile=proj / "Snakefile")
        finally:
            os.utime(module, (before, before))
        assert proc.returncode == 0, proc.stderr[-2000:]
        jobs = _jobs(proc.stdout)
        # the module is a code input of exactly the jobs whose script imports it ...
        rel = str(module.relative_to(proj))
        for rule, block in jobs:
            listed = rel in re.search(r"input: (.*)", block).group(1).split(", ") if "input:" in block else False
            assert listed == (rule in importers), (name, rule)
        # ... and exactly those rules and what consumes their outputs rerun
        scheduled = {rule for rule, _ in jobs} - {"all"}
        assert scheduled == _downstream(graph, importers) - {"all"}, (name, scheduled, importers)


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """A copy of the project that ran the snapshot and phases stages of a tiny medium."""
    proj = _copy_project(tmp_path_factory.mktemp("ran") / "project")
    _write_config(proj, {"media": {"toy": {"source": "kolmogorov", "grid": 16}}})
    proc = _run(proj, "--cores", "1", "results/toy/phases.csv", src=proj / "src",
                snakefile=proj / "Snakefile")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proj


@pytest.mark.slow
def test_moved_project_has_nothing_to_do(ran, tmp_path):
    moved = tmp_path / "elsewhere" / "project"
    shutil.copytree(ran, moved, symlinks=True)  # copy2: keeps mtimes, like mv or cp -a
    proc = _run(moved, "-n", "results/toy/phases.csv", src=moved / "src", snakefile=moved / "Snakefile")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-3000:]


@pytest.mark.slow
def test_changing_thresholds_reruns_phases_but_not_the_snapshot(ran, tmp_path):
    proj = tmp_path / "project"
    shutil.copytree(ran, proj, symlinks=True)
    _write_config(proj, {"media": {"toy": {"source": "kolmogorov", "grid": 16}},
                         "phases": {"thresholds_K": [150.0, 6000.0]}})
    proc = _run(proj, "-n", "results/toy/phases.csv", src=proj / "src", snakefile=proj / "Snakefile")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rules = {r for r, _ in _jobs(proc.stdout)}
    assert "phases" in rules and "snapshot" not in rules, proc.stdout[-3000:]


# ---- item 12-3: realisations ----


@pytest.mark.slow
def test_realisations_get_their_own_snapshots_and_batches_cycle_through_them(tmp_path):
    cfg = {"media": {"toy": {"source": "kolmogorov", "grid": 16, "seeds": [3, 4, 5]},
                     "one": {"source": "kolmogorov", "grid": 16, "seed": 1}},
           "particles": {"energies_PeV": [2.5]},
           "integrate": {"batches": 4, "jobs": "batch", "mono": {"energies_PeV": []}}}
    _write_config(tmp_path, cfg)
    proc = _run(tmp_path, "-n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = _jobs(proc.stdout)
    snaps = sorted(re.search(r"output: (\S+)", b).group(1) for r, b in jobs if r.startswith("snapshot"))
    assert snaps == ["results/one/snapshot.h5", "results/toy/snapshot.h5",
                     "results/toy/snapshot_r1.h5", "results/toy/snapshot_r2.h5"]
    for rule, block in jobs:
        if rule == "integrate" and "medium=toy" in block:
            b = int(re.search(r"batch=(\d+)", block).group(1))
            want = "results/toy/snapshot.h5" if b % 3 == 0 else f"results/toy/snapshot_r{b % 3}.h5"
            inputs = re.search(r"input: (.*)", block).group(1).split(", ")
            snaps = {i for i in inputs if i.startswith("results/toy/snapshot")}
            # its own realisation, plus realisation 0 whose <B> is the common reference field
            assert snaps == {want, "results/toy/snapshot.h5"}, block
    # phases and gradients use realisation 0 only
    for rule, block in jobs:
        if rule in ("phases", "gradients"):
            assert "snapshot_r" not in block


@pytest.mark.slow
def test_realisation_batches_record_their_source_and_share_output_times(tmp_path):
    import h5py
    import numpy as np

    cfg = {"media": {"toy": {"source": "kolmogorov", "grid": 16, "seeds": [3, 4]}},
           "particles": {"energies_PeV": [2.5]},
           "integrate": {"particles_per_energy": 4, "batches": 2, "duration_gyroperiods": 2.0,
                         "output_times": 4, "trajectories": 0, "mono": {"energies_PeV": []}}}
    _write_config(tmp_path, cfg)
    batches = [f"results/toy/particles/E2.5_isotropic_b{b}.h5" for b in (0, 1)]
    proc = _run(tmp_path, "--cores", "2", *batches, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    attrs, times = [], []
    for path in batches:
        with h5py.File(tmp_path / path, "r") as f:
            attrs.append({k: np.asarray(f.attrs[k]).ravel()[0] for k in (
                "realisation", "realisation_source", "b_ref_uG", "omega_ref_rad_s")})
            times.append(f["time"][()])
    assert [(int(a["realisation"]), a["realisation_source"].decode()
                                                    if isinstance(a["realisation_source"], bytes)
                                                    else str(a["realisation_source"])) for a in attrs] == [
        (0, "seed=3"), (1, "seed=4")]
    # one reference field (realisation 0's |<B>|) for all realisations: mergeable output times
    assert float(attrs[0]["b_ref_uG"]) == float(attrs[1]["b_ref_uG"])
    assert float(attrs[0]["omega_ref_rad_s"]) == float(attrs[1]["omega_ref_rad_s"])
    np.testing.assert_array_equal(times[0], times[1])
    assert (tmp_path / "results/toy/snapshot_r1.h5").exists()


def test_code_inputs_follow_subpackages_and_relative_imports(tmp_path):
    """A package (like the coming cosmicflow.integrate/) with relative imports: its __init__.py
    and every module it pulls in become code inputs of the rules that import it."""
    proj = _copy_project(tmp_path / "project")
    pkg = proj / "src" / "cosmicflow" / "newpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .step import advance\n")
    (pkg / "step.py").write_text("from .. import units\nfrom . import kernels\n\ndef advance():\n    pass\n")
    (pkg / "kernels.py").write_text("def f():\n    from cosmicflow.constants import C_PC_S\n")
    (pkg / "unused.py").write_text("X = 1\n")
    transport = proj / "src" / "cosmicflow" / "transport.py"
    transport.write_text(transport.read_text() + "\n\ndef _later():\n    from cosmicflow.newpkg import advance\n")
    _write_config(proj, {"media": {"toy": {"source": "kolmogorov", "grid": 16}},
                         "integrate": {"mono": {"energies_PeV": []}}})
    proc = _run(proj, "-n", src=proj / "src", snakefile=proj / "Snakefile")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rule, block in _jobs(proc.stdout):
        inputs = re.search(r"input: (.*)", block).group(1).split(", ") if "input:" in block else []
        new = {i for i in inputs if "newpkg" in i}
        # exactly the jobs whose code runs transport.py (transport, summary, and every rule whose
        # script imports it, e.g. field_lines through fieldlines) get the new package
        if "src/cosmicflow/transport.py" in inputs:
            assert new == {f"src/cosmicflow/newpkg/{m}.py" for m in ("__init__", "step", "kernels")}, (rule, new)
            assert "src/cosmicflow/units.py" in inputs and "src/cosmicflow/constants.py" in inputs
        else:
            assert not new, (rule, new)
