"""`make gpu-proof`: the GPU path proven on one CUDA host in one command, one JSON report.

1. Packages: on a host whose image provides torch (CUDA) but not this project's other packages
   and has no network, installs ``../shared/gpu-wheels/*.whl`` beside that torch (its README's
   line: ``--no-index --no-deps --target``) into ``<work>/site`` and puts it on PYTHONPATH.
   Nothing is installed when everything already imports.
2. Tests: ``pytest -q -m gpu -rs tests/test_gpu.py`` (what ``make test-gpu`` runs), with a JUnit
   XML file read back into the report (per-test outcome and time).
3. Throughput: ``benchmarks/cpt_throughput.py`` for the production setting, Llama-3.2-1B shape,
   vocabulary 128,256, 2,048 tokens, one micro-batch size (``--batch``, default 8), configurations
   plain, liger, liger-sac (Liger + selective AC: the presets) and liger-compile (a failure to
   compile is reported as such, not hidden).

Budget: under 8 minutes on one H100/H200, enforced: the tests get 240 s, the throughput runs 210 s
(building the random 1.24B model once, then 4 runs); what overruns is reported as an error.
Not run yet: no GPU host has been available to this project (issue 20). The report's format is
in benchmarks/README.md ("gpu_proof.py").

    make gpu-proof                                   # writes gpu-proof.json
    python3 benchmarks/gpu_proof.py --out gpu-proof.json --batch 8
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO.parent / "shared" / "gpu-wheels"
NEEDED = ("liger_kernel", "trl", "metaflow", "gguf", "datasets", "tiktoken")
"""Modules the tests and the trainer import that a CUDA image may lack (gpu-wheels has them)."""
CONFIGS = "plain,liger,liger-sac,liger-compile"


def ensure_packages(work: Path, env: dict[str, str]) -> dict:
    """Install gpu-wheels beside the present torch if a needed module is missing; returns a record."""
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if not missing:
        return {"installed_from": None, "missing_before": []}
    if not WHEELS.is_dir():
        return {"installed_from": None, "missing_before": missing,
                "error": f"{missing} do not import and {WHEELS} does not exist"}
    site = work / "site"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
           "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, sorted(WHEELS.glob("*.whl")))]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return {"installed_from": str(WHEELS), "missing_before": missing, "pip_returncode": proc.returncode,
            "pip_tail": proc.stderr[-1000:]}


def run_tests(work: Path, env: dict[str, str], timeout_s: int) -> dict:
    """tests/test_gpu.py's gpu tests; per-test outcomes from the JUnit XML."""
    if importlib.util.find_spec("pytest") is None:
        return {"status": "error", "reason": "pytest is not installed (pip install pytest)"}
    xml = work / "gpu-tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-rs", "tests/test_gpu.py", f"--junitxml={xml}",
           "-p", "no:cacheprovider"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"over {timeout_s} s", "wall_s": time.perf_counter() - t0}
    (work / "gpu-tests.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    cases = []
    if xml.is_file():
        for case in ET.parse(xml).getroot().iter("testcase"):
            outcome = "passed"
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                    detail = (node.get("message") or "")[:500]
                    break
            else:
                detail = ""
            cases.append({"test": case.get("name"), "outcome": outcome, "time_s": float(case.get("time", 0)),
                          **({"message": detail} if detail else {})})
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "error", "skipped")}
    return {"status": "ok" if proc.returncode == 0 else "failed", "returncode": proc.returncode, **counts,
            "wall_s": time.perf_counter() - t0, "cases": cases, "tail": proc.stdout[-2000:]}


SETTINGS = {"llama-3.2-1b": (128256, 2048), "tiny": (1024, 64)}
"""shape: (vocabulary, tokens per sequence); tiny is the CPU smoke check of this script."""


def run_throughput(work: Path, env: dict[str, str], *, batch: int, steps: int, warmup_steps: int,
                   configs: str, timeout_s: int, shape: str = "llama-3.2-1b") -> dict:
    vocab, seq = SETTINGS[shape]
    cmd = [sys.executable, str(REPO / "benchmarks" / "cpt_throughput.py"), "--shape", shape,
           "--vocab", str(vocab), "--seq", str(seq), "--configs", configs, "--batch-sizes", str(batch),
           "--steps", str(steps), "--warmup-steps", str(warmup_steps), "--work-dir", str(work / "bench")]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        proc = None
    else:
        out = proc.stdout
    (work / "throughput.log").write_text(out + (proc.stderr if proc else ""), encoding="utf-8")
    records = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    keep = ("config", "status", "batch", "tokens_per_s", "step_time_s", "peak_mem_gib", "mfu", "liger_applied",
            "loss_first", "loss_last", "reason", "device")
    runs = [{k: r.get(k) for k in keep if k in r} for r in records if r.get("record") == "run"]
    return {"status": "ok" if proc is not None and proc.returncode == 0 else "error",
            "setting": {"shape": shape, "vocab": vocab, "seq": seq, "batch": batch, "steps": steps,
                        "warmup_steps": warmup_steps, "tokens_per_s_is": "per GPU (one process)"},
            "runs": runs, "wall_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "gpu-proof.json")
    ap.add_argument("--batch", type=int, default=8, help="micro-batch of the throughput runs (2,048 tokens each)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup-steps", type=int, default=3)
    ap.add_argument("--configs", default=CONFIGS)
    ap.add_argument("--tests-timeout-s", type=int, default=240)
    ap.add_argument("--throughput-timeout-s", type=int, default=210)
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--shape", choices=sorted(SETTINGS), default="llama-3.2-1b",
                    help="tiny: a smoke check of this script (the production setting is llama-3.2-1b)")
    args = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("gpu-proof needs a CUDA GPU and torch sees none here; nothing was run.", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="gpu-proof-"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    packages = ensure_packages(work, env)
    versions = subprocess.run(
        [sys.executable, "-c", "import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
         "('torch', 'triton', 'liger_kernel', 'transformers', 'trl')}))"],
        env=env, capture_output=True, text=True)
    report = {
        "report": "gpu-proof", "version": 1, "python": platform.python_version(),
        "versions": json.loads(versions.stdout) if versions.returncode == 0 else {"error": versions.stderr[-500:]},
        "packages": packages, "work_dir": str(work),
        "tests": {"status": "skipped"} if args.skip_tests else run_tests(work, env, args.tests_timeout_s),
    }
    report["throughput"] = run_throughput(work, env, batch=args.batch, steps=args.steps,
                                          warmup_steps=args.warmup_steps, configs=args.configs,
                                          timeout_s=args.throughput_timeout_s, shape=args.shape)
    report["wall_s"] = time.perf_counter() - t0
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"gpu-proof: {args.out} (tests {report['tests'].get('status')}, throughput "
          f"{report['throughput']['status']}, {report['wall_s']:.0f} s; logs in {work})")
    return 0 if report["tests"].get("status") in ("ok", "skipped") and report["throughput"]["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
