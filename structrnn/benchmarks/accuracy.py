"""A trained run's figures as a record for the README's accuracy table.

``python -m structrnn.benchmarks.accuracy RUN --what TEXT --json FILE`` (``structrnn bench
accuracy``) reads ``RUN/config.json`` and ``RUN/metrics.json`` and writes one JSON record: the
command that trains the run again (spelled from its config: every flag that differs from the
task's default), the machine the run recorded, its metrics (without the per-epoch lists) and
the figure text. ``benchmarks/figures.py`` puts the records in the README between the
accuracy markers, so that no accuracy figure is typed by hand; a test checks that each stored
record's command and figure are what its config and metrics give.

A figure is the mean +- standard deviation over every seed (fold, split) the run trained, then
the values themselves, then the ensemble's figure where the run has one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import sys
from pathlib import Path

from structrnn._env import machine as this_machine
from structrnn.benchmarks.trees import portable, write_json

__all__ = ["record", "command_line", "figure_text", "main"]

# flags that say where and how a run is written or shown, not what it trains
NOT_IN_COMMAND = frozenset({"out", "no_progress", "overwrite", "resume", "config", "tensorboard",
                            "check_every", "workers", "device", "download"})
# the per-epoch detail of metrics.json, which the table never shows
DROPPED = frozenset({"epoch_seconds", "test_accuracy_by_epoch", "grid_scores", "chosen",
                     "best_epoch"})

PCT, F3, F2 = "pct", "f3", "f2"
# task -> (metrics key, label, format), in the order the figure lists them
HEADLINES: dict[str, list[tuple[str, str, str]]] = {
    "sst": [("test_fine_root", "test fine root", PCT),
            ("test_binary_root", "binary root", PCT),
            ("test_fine_all_nodes", "all nodes", PCT),
            ("dev_root", "dev root (what selects)", PCT)],
    "parser": [("test_f1", "test F1", PCT), ("dev_f1", "dev F1 (what selects)", PCT)],
    "molecules": [("test_rmse", "test RMSE", F3), ("test_mae", "test MAE", F3),
                  ("test_conformal_coverage", "interval coverage", F3),
                  ("test_conformal_width", "interval width", F2),
                  ("test_spread_spearman", "spread-error Spearman", F2),
                  ("test_miscalibration_area", "miscalibration area", F2),
                  ("test_rmse_single_models", "RMSE of the single models", F3),
                  ("test_accuracy", "test accuracy", PCT), ("test_roc_auc", "ROC-AUC", F3)],
}
HEADLINES["tu"] = HEADLINES["molecules"]


def _fmt(value: float, kind: str) -> str:
    return {PCT: f"{100 * value:.1f}", F3: f"{value:.3f}", F2: f"{value:.2f}"}[kind]


def _one_target(value, first_target: str | None):
    """A molecule run keeps per-target figures ``{target: ...}``: the first target's."""
    if isinstance(value, dict) and first_target is not None and first_target in value:
        return value[first_target]
    return value


def _mean(value) -> float:
    return value["mean"] if isinstance(value, dict) else value


def _per_run(metrics: dict) -> list[dict]:
    """The rows whose figures the mean and spread are taken over: the splits of a molecule
    run (one per seed, each scored by its ensemble), the outer folds of a fair protocol, else
    the units (seeds)."""
    for key in ("splits", "folds", "units"):
        if isinstance(metrics.get(key), list) and metrics[key]:
            return metrics[key]
    return []


def figure_text(task: str, metrics: dict) -> str:
    """The figure cell of a run: for each headline metric it has, ``mean +- std`` over the
    seeds (folds) with the values, or the single value, then the ensemble's."""
    targets = metrics.get("targets") or []
    first = targets[0] if targets else None
    rows = _per_run(metrics)
    ensemble = metrics.get("ensemble") if isinstance(metrics.get("ensemble"), dict) else {}
    parts = []
    if len(targets) > 1 and isinstance(metrics.get("test_mae"), dict):
        # several targets (QM9): each one's test MAE, in its own units
        parts.append("test MAE " + ", ".join(
            f"{t} {_mean(metrics['test_mae'][t]):.4g}" for t in targets
            if t in metrics["test_mae"]))
    for key, label, kind in HEADLINES.get(task, []) if len(targets) <= 1 else []:
        value = _one_target(metrics.get(key), first)
        if value is None:
            continue
        if isinstance(value, dict) and "mean" in value:
            values = [_one_target(r.get(key), first) for r in rows]
            values = [v for v in values if isinstance(v, int | float)]
            text = f"{label} {_fmt(value['mean'], kind)} +- {_fmt(value['std'], kind)}"
            if 1 < len(values) <= 10:
                text += f" ({', '.join(_fmt(v, kind) for v in values)})"
        elif isinstance(value, int | float):
            text = f"{label} {_fmt(value, kind)}"
        else:
            continue
        if isinstance(ensemble.get(key), int | float):
            text += f", ensemble {_fmt(ensemble[key], kind)}"
        parts.append(text)
    validation = [u["best_val_score"] for u in metrics.get("units", [])
                  if isinstance(u.get("best_val_score"), int | float)]
    if task in ("molecules", "tu") and metrics.get("kind") == "regression" and \
            len(targets) == 1 and len(validation) > 1:
        # the selection's score: each member's best validation RMSE
        parts.append(f"validation RMSE {statistics.fmean(validation):.3f} +- "
                     f"{statistics.stdev(validation):.3f}")
    count = len(rows) if rows else 1
    unit = "outer folds" if metrics.get("protocol") == "fair" else \
        "seeds" if metrics.get("seeds") else "run"
    head = "one run" if unit == "run" else f"{count} {unit}" if count > 1 else \
        f"1 {unit[:-1]}"
    if metrics.get("protocol") == "fair":
        head += f", {len(metrics.get('grid', []))} settings chosen on an inner hold-out per fold"
    return f"{head}: " + "; ".join(parts) if parts else head


def _shared_path(value):
    """A path into the shared data sets as the README's commands name it
    (``../shared/datasets/...``); any other value as it is."""
    if isinstance(value, str) and "datasets" in Path(value).parts:
        parts = Path(value).parts
        return "/".join(("..", "shared", *parts[parts.index("datasets"):]))
    return value


def _flag_value(value) -> str:
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(portable(_shared_path(value)))


def command_line(task: str, config: dict, threads: int | None = None) -> str:
    """``structrnn train TASK`` with every flag whose config value differs from the task's
    default (and ``--threads`` as the run recorded it)."""
    from structrnn.cli import _task

    parser = argparse.ArgumentParser(add_help=False)
    _task(task).add_arguments(parser)
    words = ["structrnn", "train", task]
    for action in parser._actions:  # noqa: SLF001 - argparse has no public list of its flags
        dest = action.dest
        if not action.option_strings or dest in NOT_IN_COMMAND or dest not in config \
                or action.help == argparse.SUPPRESS:
            continue
        value = config[dest]
        if dest == "seed" and config.get("seeds"):
            continue  # --seeds wins
        if value == action.default or (dest == "data" and value is None):
            continue
        flag = next(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse._StoreTrueAction):  # noqa: SLF001
            words.append(flag)
        else:
            words += [flag, _flag_value(value)]
    if threads is not None and "threads" not in config:
        words += ["--threads", str(threads)]
    return shlex.join(words)


def _trimmed(value):
    if isinstance(value, dict):
        return {k: _trimmed(v) for k, v in value.items() if k not in DROPPED}
    if isinstance(value, list):
        return [_trimmed(v) for v in value]
    return value


def _epoch_seconds(metrics: dict) -> list[float]:
    seconds = metrics.get("epoch_seconds")
    if isinstance(seconds, list):
        return [float(s) for s in seconds]
    found = [u.get("epoch_seconds") for u in metrics.get("units", [])]
    return [float(s) for f in found for s in (f if isinstance(f, list) else [f])
            if isinstance(s, int | float)]


def record(run: str | Path, what: str, note: str = "", threads: int | None = None,
           date: str | None = None, here: bool = False) -> dict:
    """The record of ``run`` (see the module's docstring). For a run that recorded no machine
    (one trained before runs did): ``threads`` and ``date`` stand in, and ``here`` says that it
    was trained on this machine, whose platform, cores and torch are then taken."""
    run = Path(run)
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    config = {k: _shared_path(v) for k, v in config.items()}
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    task = config["task"]
    machine = metrics.get("machine") or {}
    if here and not machine:
        machine = {k: v for k, v in this_machine(threads).items() if k not in ("date", "load_1m")}
    if threads is not None:
        machine = {**machine, "threads": threads}
    if date is not None or "date" not in machine:  # else the day metrics.json was written
        machine = {**machine, "date": date or datetime.date.fromtimestamp(
            (run / "metrics.json").stat().st_mtime).isoformat()}
    seconds = _epoch_seconds(metrics)
    return portable({
        "kind": "accuracy", "task": task, "what": what, "note": note,
        "command": command_line(task, config, machine.get("threads")),
        "machine": machine,
        "epoch_seconds": ({"mean": statistics.fmean(seconds), "min": min(seconds),
                           "max": max(seconds)} if seconds else None),
        "figure": figure_text(task, metrics),
        "config": config, "metrics": _trimmed(metrics)})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="structrnn bench accuracy", description=__doc__.split("\n")[0])
    p.add_argument("run", help="a run folder (config.json, metrics.json)")
    p.add_argument("--what", required=True, help="what the row shows (the table's first column)")
    p.add_argument("--note", default="", help="what else the row says (load, wall time ...)")
    p.add_argument("--threads", type=int, default=None,
                   help="the run's torch threads, for a run that did not record them")
    p.add_argument("--date", default=None,
                   help="the run's date, for a run that did not record it (default: the day "
                        "its metrics.json was written)")
    p.add_argument("--here", action="store_true",
                   help="the run was trained on this machine (for a run that did not record it)")
    p.add_argument("--json", default=None, help="write the record here")
    args = p.parse_args(argv)
    missing = [n for n in ("config.json", "metrics.json") if not (Path(args.run) / n).is_file()]
    if missing:
        p.error(f"run: expected a finished run folder with config.json and metrics.json, got "
                f"{args.run} without {' and '.join(missing)}")
    rec = record(args.run, args.what, args.note, args.threads, args.date, args.here)
    print(rec["command"])
    print(rec["figure"])
    write_json(args.json, rec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
