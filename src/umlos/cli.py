"""The ``umlos`` command line: a thin edge over the library.

Exit codes (stable, documented in the README):
  0  success
  1  a check failed (invalid contracts, drift, incompatible change, failed verification)
  2  usage error (bad arguments, missing files)
  3  runtime error (a UML_OS error while doing the work)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from umlos.errors import Error

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3


def _emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


def _fail_runtime(exc: Error, as_json: bool) -> NoReturn:
    if as_json:
        _emit_json({"status": "error", "error": exc.as_dict()})
    else:
        click.echo(f"error: {exc.code_id}: {exc}", err=True)
    sys.exit(EXIT_RUNTIME)


def _contracts_dir(value: Path | None) -> Path:
    from umlos.contracts import find_contracts_dir

    found = value or find_contracts_dir()
    if found is None or not (found / "contracts.yaml").is_file():
        raise click.UsageError(
            "no contract set found: pass --contracts DIR (a directory holding contracts.yaml)"
        )
    return found


@click.group()
@click.version_option(package_name="umlos")
def main() -> None:
    """UML_OS: deterministic, auditable ML training with verifiable evidence."""


@main.group()
def contracts() -> None:
    """Check, compile and compare the contract set (contracts/)."""


@contracts.command("check")
@click.option("--contracts", "contracts_dir", type=click.Path(path_type=Path), default=None)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Write compiled artifacts here."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
def contracts_check(contracts_dir: Path | None, out: Path | None, as_json: bool) -> None:
    """Validate every contract file and compile the set to canonical CBOR."""
    from umlos.contracts import check

    root = _contracts_dir(contracts_dir)
    try:
        result = check(root)
    except Error as exc:
        _fail_runtime(exc, as_json)
    cs, compiled = result.contract_set, result.compiled
    if not result.ok or compiled is None:
        if as_json:
            issues = [{"file": i.file, "path": i.path, "message": i.message} for i in result.issues]
            _emit_json({"status": "invalid", "issues": issues})
        else:
            for issue in result.issues:
                click.echo(f"{root.name}/{issue}", err=True)
            click.echo(f"{len(result.issues)} issue(s) in {root}", err=True)
        sys.exit(EXIT_CHECK_FAILED)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for name, data in compiled.artifacts.items():
            (out / name).write_bytes(data)
        (out / "manifest.json").write_text(compiled.manifest_json(cs), encoding="utf-8")
    if as_json:
        _emit_json({"status": "ok", **compiled.manifest(cs)})
        return
    click.echo(
        f"{cs.name} {cs.version}: {len(cs.schemas.named)} types, {len(cs.operators)} operators, "
        f"{len(cs.errors)} error codes, {len(cs.tags)} digest tags, "
        f"{len(cs.capabilities)} capabilities — ok"
    )
    click.echo(f"operator_registry_root_hash {compiled.operator_registry_root_hash.hex()}")
    click.echo(f"contract_set_hash           {compiled.contract_set_hash.hex()}")


@contracts.command("diff")
@click.argument("old", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("new", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
def contracts_diff(old: Path, new: Path, as_json: bool) -> None:
    """Classify every change from OLD to NEW as PATCH, MINOR or MAJOR.

    Fails (exit 1) when NEW's declared version bump is smaller than the changes require.
    """
    from umlos.contracts.diff import diff_dirs

    try:
        report = diff_dirs(old, new)
    except Error as exc:
        _fail_runtime(exc, as_json)
    if as_json:
        _emit_json(report.as_dict())
    else:
        for change in report.changes:
            click.echo(f"{change.level:<5}  {change.where}: {change.what}")
        click.echo(
            f"{len(report.changes)} change(s); required bump {report.required}, declared "
            f"{report.declared} ({report.old_version} → {report.new_version}): "
            + ("ok" if report.ok else "TOO SMALL")
        )
    sys.exit(EXIT_OK if report.ok else EXIT_CHECK_FAILED)


@main.command()
@click.option("--check", "check_only", is_flag=True, help="Fail if generated files differ.")
@click.option(
    "--root",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Repository root (default: the directory holding contracts/).",
)
def generate(check_only: bool, root: Path | None) -> None:
    """Regenerate code, artifacts and reference docs from contracts/."""
    from umlos import codegen

    root = root or _contracts_dir(None).parent
    contracts_dir = _contracts_dir(root / "contracts")
    try:
        if check_only:
            drift = codegen.check(root, contracts_dir)
            for d in drift:
                click.echo(f"{d.kind:<8} {d.path}", err=True)
            if drift:
                click.echo(
                    f"{len(drift)} generated file(s) differ from contracts/: run `umlos generate`",
                    err=True,
                )
                sys.exit(EXIT_CHECK_FAILED)
            click.echo("generated files are up to date")
            return
        files = codegen.render(contracts_dir)
        changed = codegen.write(files, root)
    except Error as exc:
        _fail_runtime(exc, False)
    for rel in changed:
        click.echo(f"wrote {rel}")
    click.echo(f"{len(files)} files generated, {len(changed)} changed")


@main.command()
@click.argument("manifest", type=click.Path(path_type=Path, exists=True))
@click.option(
    "--runs-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("runs"),
    show_default=True,
)
@click.option(
    "--resume", "resume_run", is_flag=True, help="Continue an interrupted run (after a crash)."
)
@click.option(
    "--key", "key_id", default=None, help="Signing key id (default: the key store's default)."
)
@click.option("--as-of", default=None, help="Certificate verification time, YYYY-MM-DDTHH:MM:SSZ.")
@click.option("--valid-until", default=None, help="Certificate expiry, YYYY-MM-DDTHH:MM:SSZ.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, no progress bar.")
def run(
    manifest: Path,
    runs_dir: Path,
    resume_run: bool,
    key_id: str | None,
    as_of: str | None,
    valid_until: str | None,
    as_json: bool,
) -> None:
    """Train MANIFEST with full evidence; MANIFEST may also be a run directory (with --resume)."""
    from umlos.runner import DEFAULT_AS_OF, DEFAULT_VALID_UNTIL, execute

    try:
        if as_json or not sys.stderr.isatty():
            summary = execute(
                manifest,
                runs_root=runs_dir,
                resume_run=resume_run,
                key_id=key_id,
                as_of=as_of or DEFAULT_AS_OF,
                valid_until=valid_until or DEFAULT_VALID_UNTIL,
            )
        else:
            summary = _run_with_progress(
                manifest,
                runs_dir,
                resume_run,
                key_id,
                as_of or DEFAULT_AS_OF,
                valid_until or DEFAULT_VALID_UNTIL,
            )
    except Error as exc:
        _fail_runtime(exc, as_json)
    if as_json:
        _emit_json(summary.as_dict())
        return
    click.echo(f"run {summary.run_id} {summary.status} ({summary.steps} steps)")
    click.echo(f"run directory     {summary.run_dir}")
    click.echo(f"certificate_hash  {summary.certificate_hash}")
    for name, value in sorted(summary.metrics.items()):
        click.echo(
            f"  {name:<24} {value:.6g}" if isinstance(value, float) else f"  {name:<24} {value}"
        )
    click.echo(f"verify it with: umlos verify {summary.run_dir}")


def _run_with_progress(
    manifest: Path,
    runs_dir: Path,
    resume_run: bool,
    key_id: str | None,
    as_of: str,
    valid_until: str,
) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from umlos.runner import Progress as RunProgress
    from umlos.runner import execute

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[rate]} samples/s"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("starting", total=None, loss="-", rate="-")

        def update(event: RunProgress) -> None:
            bar.update(
                task,
                description=event.stage_id,
                completed=event.t,
                total=max(event.total, event.t),
                loss=f"{event.loss:.4f}" if event.loss is not None else "-",
                rate=f"{event.samples_per_s:,.0f}",
            )

        return execute(
            manifest,
            runs_root=runs_dir,
            resume_run=resume_run,
            key_id=key_id,
            as_of=as_of,
            valid_until=valid_until,
            progress=update,
        )


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--trust-store",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="A TrustStore (canonical CBOR) to verify against instead of the local key store's.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the VerifyReport as JSON.")
def verify(run_dir: Path, trust_store: Path | None, as_json: bool) -> None:
    """Verify RUN_DIR offline: signature, hash chains, checkpoints, WAL and every binding.

    Exit 0 when every step passes; otherwise 10 + the failing step's group (11 layout,
    12 manifest, 13 environment, 14 certificate, 15 trace, 16 journal, 17 checkpoints, 18 WAL,
    19 bindings). Reads only: nothing in RUN_DIR is written, moved or deleted.
    """
    from umlos._generated.records import TrustStore
    from umlos.codec import decode
    from umlos.runner.verify import exit_code, verify_run

    try:
        store = (
            TrustStore.from_obj(decode(trust_store.read_bytes()))
            if trust_store is not None
            else None
        )
        report = verify_run(run_dir, trust_store=store)
    except Error as exc:
        _fail_runtime(exc, as_json)
    if as_json:
        _emit_json(report.to_obj(json=True))
    else:
        for st in report.steps:
            mark = {"PASS": "ok  ", "FAIL": "FAIL", "SKIP": "skip"}.get(st.status, st.status)
            line = f"{mark} {st.step_no:>2}. {st.name}"
            if st.status != "PASS" and st.detail:
                line += f" — {st.artifact}: {st.detail}"
            click.echo(line)
        click.echo(
            f"{report.verdict}: run {report.run_id or '?'}"
            + (f", certificate {report.certificate_hash.hex()}" if report.certificate_hash else "")
        )
    sys.exit(exit_code(report))


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--from-checkpoint",
    "from_checkpoint",
    type=int,
    default=None,
    help="Restore checkpoint T and re-execute from there.",
)
@click.option(
    "--profile",
    type=click.Choice(["E0", "E1"]),
    default="E0",
    show_default=True,
    help="E0: bit-identical; E1: floats within the default tolerances.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the manifest's relative dataset paths resolve (default: where the run read them).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the ReplayReport as JSON.")
def replay(
    run_dir: Path, from_checkpoint: int | None, profile: str, data_dir: Path | None, as_json: bool
) -> None:
    """Re-execute RUN_DIR in a scratch directory and compare it with its evidence.

    Exit 0 for an E0 or E1 verdict, 1 for DIVERGED (the report names the first divergence:
    step, record kind, field path, expected and actual values).
    """
    from umlos.runner.replay import replay_outcome

    try:
        outcome = replay_outcome(
            run_dir,
            from_checkpoint=from_checkpoint,
            profile="E1" if profile == "E1" else "E0",
            data_dir=data_dir,
        )
    except Error as exc:
        _fail_runtime(exc, as_json)
    report = outcome.report
    if as_json:
        _emit_json(report.to_obj(json=True))
    else:
        for line in outcome.lines():
            click.echo(line)
    sys.exit(EXIT_CHECK_FAILED if report.verdict == "DIVERGED" else EXIT_OK)


@main.group()
def keys() -> None:
    """Manage the local Ed25519 signing key and trust store (never inside a run directory)."""


@keys.command("generate")
@click.option("--json", "as_json", is_flag=True)
def keys_generate(as_json: bool) -> None:
    """Create a new signing key, make it the default and trust it."""
    from umlos.evidence.keys import generate_key

    try:
        info = generate_key(make_default=True)
    except Error as exc:
        _fail_runtime(exc, as_json)
    _show_key(info, as_json)


@keys.command("show")
@click.argument("key_id", required=False)
@click.option("--json", "as_json", is_flag=True)
def keys_show(key_id: str | None, as_json: bool) -> None:
    """Show a key's id, public key and file (the default key when KEY_ID is omitted)."""
    from umlos.evidence.keys import show_key

    try:
        info = show_key(key_id)
    except Error as exc:
        _fail_runtime(exc, as_json)
    _show_key(info, as_json)


def _show_key(info: Any, as_json: bool) -> None:
    data = {
        "key_id": info.key_id,
        "public_key": info.public_key.hex(),
        "path": str(info.path),
        "default": info.is_default,
    }
    if as_json:
        _emit_json(data)
    else:
        for name, value in data.items():
            click.echo(f"{name:<11} {value}")


@main.command()
@click.argument("template", type=click.Choice(["classification", "regression", "cnn", "lm"]))
@click.argument(
    "directory", type=click.Path(path_type=Path, file_okay=False), default=None, required=False
)
def quickstart(template: str, directory: Path | None) -> None:
    """Write a ready-to-run manifest (and its data) for TEMPLATE into DIRECTORY."""
    from umlos.quickstart import write_quickstart

    target = directory or Path(f"quickstart-{template}")
    try:
        manifest = write_quickstart(template, target)
    except Error as exc:
        _fail_runtime(exc, False)
    click.echo(f"wrote {manifest}")
    click.echo(f"train it with: umlos run {manifest}")


@main.command()
@click.option(
    "--tier",
    "tiers",
    multiple=True,
    type=click.Choice(["cpu_tier", "single_gpu_tier"]),
    help="Tier to run (repeatable; default: every tier, unavailable ones reported as such).",
)
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--workload", "workload_ids", multiple=True, help="Workload id (repeatable).")
@click.option(
    "--baseline",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="Baseline file to compare against (written by --save-baseline).",
)
@click.option(
    "--save-baseline",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Store this run's measured tiers as a baseline file.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("bench-results"),
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench(
    tiers: tuple[str, ...],
    repeat: int,
    workload_ids: tuple[str, ...],
    baseline: Path | None,
    save_baseline: Path | None,
    out: Path,
    as_json: bool,
) -> None:
    """Benchmark tiers: plain PyTorch vs evidence off vs full evidence (docs/adr/0016).

    Writes TIER.cbor and TIER.json benchmark evidence into --out. Exit 1 when a workload
    REGRESSED against --baseline; PASS and NO_BASELINE exit 0.
    """
    from umlos.conformance import bench as b

    try:
        b.select_workloads(tiers, workload_ids)
    except Error as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        baselines = b.load_baselines(baseline) if baseline is not None else None
        evidence = b.run_bench(
            tiers=tiers,
            workload_ids=workload_ids,
            repeat=repeat,
            baselines=baselines,
            progress=None if as_json else lambda line: click.echo(line, err=True),
        )
        files = b.write_evidence(evidence, out)
        if save_baseline is not None:
            b.save_baselines(save_baseline, evidence)
    except Error as exc:
        _fail_runtime(exc, as_json)
    verdict = b.overall_verdict(evidence)
    if as_json:
        _emit_json(
            {
                "regression_verdict": verdict,
                "tiers": [e.to_json() for e in evidence],
                "files": [str(f) for f in files],
                "baseline_saved": str(save_baseline) if save_baseline is not None else None,
            }
        )
    else:
        click.echo(b.format_report(evidence))
        click.echo(f"wrote {', '.join(str(f) for f in files)}")
        if save_baseline is not None:
            click.echo(f"baseline saved to {save_baseline}")
        click.echo(f"regression verdict: {verdict}")
    sys.exit(EXIT_CHECK_FAILED if verdict == "REGRESSED" else EXIT_OK)


@main.group()
def chaos() -> None:
    """Inject faults into real runs and emit recovery proof packs (docs/reliability.md)."""


@chaos.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the scenario table as JSON.")
def chaos_list(as_json: bool) -> None:
    """List the mandatory chaos scenarios and the invariants each one checks."""
    from umlos.conformance.chaos import scenario_index_hash, scenario_table

    table = scenario_table()
    if as_json:
        _emit_json({"scenario_index_hash": scenario_index_hash().hex(), "scenarios": table})
        return
    for row in table:
        click.echo(f"{row['scenario_id']:<28} {row['title']}")
        for inv in row["invariants"]:
            click.echo(f"    {inv['id']}")
    click.echo(f"scenario_index_hash {scenario_index_hash().hex()}")


@chaos.command("run")
@click.argument("scenario", required=False)
@click.option("--all", "run_all", is_flag=True, help="Run every scenario.")
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--trials", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--quick", is_flag=True, help="Sample cut offsets and named crash points.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Parallel children.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Write each proof pack with its transcript (SCENARIO.json) and index.json here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the proof packs as JSON.")
def chaos_run(
    scenario: str | None,
    run_all: bool,
    seed: int,
    trials: int,
    quick: bool,
    workers: int | None,
    out: Path | None,
    as_json: bool,
) -> None:
    """Run SCENARIO (or --all) against real runs in a scratch directory.

    Exit 1 when any invariant of any scenario FAILs. Uses a throw-away key store, never yours.
    """
    from umlos.conformance import chaos as c

    if run_all == (scenario is not None):
        raise click.UsageError("give one SCENARIO or --all (see `umlos chaos list`)")
    ids = list(c.SCENARIOS) if run_all else [str(scenario)]
    if scenario is not None and scenario not in c.SCENARIOS:
        raise click.UsageError(f"unknown scenario {scenario!r} (see `umlos chaos list`)")
    try:
        packs = c.run_chaos(ids, seed=seed, trials=trials, exhaustive=not quick, workers=workers)
    except Error as exc:
        _fail_runtime(exc, as_json)
    files = c.write_packs(packs, out) if out is not None else []
    verdict = c.overall_verdict(packs)
    if as_json:
        _emit_json(
            {
                "verdict": verdict,
                "scenario_index_hash": c.scenario_index_hash().hex(),
                "packs": [p.to_json() for p in packs],
                "files": [str(f) for f in files],
            }
        )
    else:
        for line in c.format_report(packs):
            click.echo(line)
        if files:
            click.echo(f"wrote {len(files)} file(s) to {out}")
    sys.exit(EXIT_CHECK_FAILED if verdict == "FAIL" else EXIT_OK)


if __name__ == "__main__":  # pragma: no cover
    main()
