"""Run the benchmark sections, each in its own process, and write bench/RESULTS.md.

`script/bench` is the way in: it makes sure both Home Assistant environments exist, then runs
`python -m bench --venv 2025.4=... --venv 2026.2=...`. Options: `--only KEY[,KEY]` runs some
sections (results are printed; the file is written only with `--output`), `--quick` runs
every section with few runs (a smoke test; same rule for the file).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time

from .common import BENCH_OUT, BENCH_QUICK, Figure, SectionResult, load_result, machine

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "RESULTS.md"


@dataclass(frozen=True, slots=True)
class Section:
    """A benchmark module: run as `python -m module`, or by pytest when it needs `hass`.

    It writes a `SectionResult` (bench/common.py) as JSON to the path in $BENCH_OUT; it runs
    once per Home Assistant environment in `venvs`.
    """

    key: str
    module: str | None = None
    pytest: str | None = None
    venvs: tuple[str, ...] = ("2025.4",)
    timeout: float = 300.0


SECTIONS: list[Section] = [
    Section("audio_path", module="bench.audio_path", timeout=180),
    Section("latency", module="bench.latency", timeout=240),
    Section("pipeline", pytest="bench/pipeline.py", venvs=("2025.4", "2026.2"), timeout=300),
    Section("scale", module="bench.scale", timeout=300),
    Section("satellite", pytest="bench/satellite.py", venvs=("2025.4", "2026.2"), timeout=400),
]


def _command(section: Section, python: Path) -> list[str]:
    if section.pytest is not None:
        return [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q", section.pytest]
    assert section.module is not None
    return [str(python), "-m", section.module]


def _failed(section: Section, venv: str, reason: str) -> SectionResult:
    result = SectionResult(section.key, f"{section.key} ({venv}) FAILED")
    result.add("Section did not finish", reason, "-", "-", "finishes", False)
    return result


def run_section(
    section: Section, venv: str, python: Path, out_dir: Path, quick: bool
) -> SectionResult:
    """Run one section in one environment; a failure becomes a FAILED row, not an abort."""
    out = out_dir / f"{section.key}-{venv}.json"
    log = out_dir / f"{section.key}-{venv}.log"
    env = {**os.environ, BENCH_OUT: str(out), BENCH_QUICK: "1" if quick else "0"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
    start = time.monotonic()
    print(f"== {section.key} (Home Assistant {venv} environment)", flush=True)
    try:
        with log.open("wb") as sink:
            completed = subprocess.run(  # noqa: S603  # our own modules, fixed arguments
                _command(section, python),
                cwd=REPO,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=section.timeout,
                check=False,
            )
        reason = "" if completed.returncode == 0 else f"exit status {completed.returncode}"
    except subprocess.TimeoutExpired:
        reason = f"timed out after {section.timeout:.0f} s"
    elapsed = time.monotonic() - start
    if not reason and not out.exists():
        reason = "wrote no result"
    if reason:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
        print("\n".join(tail), file=sys.stderr)
        print(f"   {section.key} failed: {reason} ({elapsed:.0f} s)", flush=True)
        return _failed(section, venv, reason)
    print(f"   done in {elapsed:.0f} s", flush=True)
    result = load_result(out)
    result.env["elapsed_s"] = f"{elapsed:.0f}"
    return result


def _env_cell(result: SectionResult) -> str:
    env = result.env
    if not env:
        return "-"
    return f"Python {env.get('python', '?')}, HA {env.get('homeassistant', '?')}"


def _met_cell(figure: Figure) -> str:
    if figure.met is None:
        return ""
    return "yes" if figure.met else "**NO**"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(results: list[SectionResult], header: list[str]) -> str:
    """The Markdown report: a summary of targets, then one table per section."""
    lines = ["# Benchmark results", "", *header, ""]
    targets = [(r, f) for r in results for f in r.figures if f.met is not None]
    if targets:
        lines += ["## Targets", ""]
        for result, figure in targets:
            verdict = "met" if figure.met else "**MISSED**"
            lines.append(
                f"- {verdict}: {result.title.split(',')[0]}: {figure.name}: {figure.value} "
                f"{figure.unit} (target {figure.target}; {_env_cell(result)})"
            )
        lines.append("")
    for result in results:
        lines += [
            f"## {result.title}",
            "",
            f"{_env_cell(result)}; section took {result.env.get('elapsed_s', '?')} s.",
            "",
            "| Measurement | Value | Unit | Runs | Target | Met |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {_cell(f.name)} | {_cell(f.value)} | {_cell(f.unit)} | {_cell(f.runs)} "
            f"| {_cell(f.target)} | {_met_cell(f)} |"
            for f in result.figures
        ]
        if result.notes:
            lines.append("")
            lines += [f"- {_cell(note)}" for note in result.notes]
        lines.append("")
    return "\n".join(lines)


def _git_state() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}{' + uncommitted changes' if dirty else ''}"


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3])
    except OSError:
        return "?"


def main() -> None:
    """Run the chosen sections and write (or print) the report."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", help="comma-separated section keys")
    parser.add_argument("--quick", action="store_true", help="few runs: a smoke test")
    parser.add_argument(
        "--venv", action="append", default=[], help="VERSION=PATH of a Home Assistant venv"
    )
    parser.add_argument("--output", type=Path, help=f"report file (default {RESULTS})")
    args = parser.parse_args()
    venvs = {version: REPO / ".venv" / f"ha-{version}" for version in ("2025.4", "2026.2")}
    venvs.update({k: Path(v) for k, v in (item.split("=", 1) for item in args.venv)})
    keys = [s.key for s in SECTIONS]
    only = args.only.split(",") if args.only else keys
    if unknown := set(only) - set(keys):
        parser.error(f"unknown sections {sorted(unknown)}; known: {', '.join(keys)}")
    output = args.output or (None if args.only or args.quick else RESULTS)

    start, load_before = time.monotonic(), _load()
    results: list[SectionResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for section in SECTIONS:
            if section.key not in only:
                continue
            for venv in section.venvs:
                python = venvs[venv] / "bin" / "python"
                if not python.exists():
                    results.append(_failed(section, venv, f"no environment at {venvs[venv]}"))
                    continue
                results.append(run_section(section, venv, python, Path(tmp), args.quick))
    elapsed = time.monotonic() - start
    host = machine()
    header = [
        f"`script/bench{' --quick' if args.quick else ''}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, git {_git_state()}; "
        f"the whole run took {elapsed / 60:.1f} min.",
        "",
        f"Machine: {host['cpu']}, {host['cores']} cores, {host['os']} {host['kernel']}; "
        f"load average (1, 5, 15 min) {load_before} before the run, {_load()} after it "
        "(other work on the machine shows up there). Client or Home Assistant processes run "
        "on core 0, the local agent server on core 1. Each section names its Python and "
        "Home Assistant versions; Python 3.13 is what these machines have.",
    ]
    report = render(results, header)
    print()
    print(report)
    if output is not None:
        output.write_text(report, encoding="utf-8")
        print(f"Written to {output}")
    if any(
        f.met is False and f.name == "Section did not finish" for r in results for f in r.figures
    ):
        sys.exit(1)


if __name__ == "__main__":
    main()
