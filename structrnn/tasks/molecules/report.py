"""What a molecule or TU run reports: ``metrics.json`` (per-unit results, mean +- std over
seeds or folds, the folds' and the splits' ensembles with their uncertainty and conformal
intervals, the GIN-paper protocol, the fair protocol) and its pictures."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch_geometric.data import Batch

from structrnn import viz
from structrnn.tasks.molecules import uncertainty
from structrnn.tasks.molecules.data import Prepared, split_units
from structrnn.tasks.molecules.fair import settings_grid
from structrnn.tasks.molecules.metrics import classification_metrics, regression_metrics
from structrnn.tasks.molecules.tune import TUNED_KEYS
from structrnn.training.logging import notice

__all__ = ["finish", "summarise", "fold_figures", "split_figures", "fair_figures", "mean_std"]


def mean_std(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    a = a[~np.isnan(a)]
    if a.size == 0:
        return {"mean": float("nan"), "std": float("nan")}
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0}


def fold_figures(names: list[str], preds: list, trues: list) -> list[dict]:
    """Per outer fold of a TU run (units named ``seedS-foldF`` or ``seedS-foldF-valK``): the
    test accuracy and ROC-AUC of its models' mean class probabilities. ``preds`` holds each
    unit's test logits (M, C), ``trues`` its test labels (M,)."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name.rsplit("-val", 1)[0], []).append(i)
    out = []
    for fold, members in groups.items():
        probs = torch.stack([torch.softmax(torch.as_tensor(preds[i], dtype=torch.float), 1)
                             for i in members]).mean(0)
        # the mean probability as logits: classification_metrics applies a softmax again
        m = classification_metrics(probs.clamp(min=1e-12).log(), torch.as_tensor(trues[members[0]]),
                                   ["class"], [probs.size(1)])
        out.append({"fold": fold, "models": len(members), "accuracy": m["mean_accuracy"],
                    "roc_auc": m["mean_roc_auc"]})
    return out


def _mean_probabilities(preds: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """(K, M, sum(classes)) members' logits -> (M, sum(classes)) the log of their mean
    probabilities per task (logits again: a softmax gives the mean probabilities back)."""
    blocks = [torch.softmax(b, 2).mean(0) for b in preds.split(list(classes), dim=2)]
    return torch.cat(blocks, 1).clamp(min=1e-12).log()


def _interval_figures(args, names: list[str], rs: list[dict], mean: torch.Tensor,
                      spread: torch.Tensor, true: torch.Tensor) -> dict[str, Any]:
    """``--conformal``: per target the quantile calibrated on the split's validation molecules
    (its ensemble mean and spread there), the test coverage and the mean interval width."""
    val = torch.stack([torch.as_tensor(r["val_pred"], dtype=torch.float64) for r in rs])
    val_true = torch.as_tensor(rs[0]["val_true"], dtype=torch.float64)
    val_mean, val_spread = val.mean(0), val.std(0, unbiased=False)
    scaled = args.conformal_scale == "spread"
    out: dict[str, Any] = {"quantile": {}, "coverage": {}, "width": {}}
    for t, name in enumerate(names):
        v = ~torch.isnan(val_true[:, t])
        scores = uncertainty.conformal_scores(val_mean[v, t], val_true[v, t],
                                              val_spread[v, t] if scaled else None)
        q = uncertainty.conformal_quantile(scores, args.conformal)
        if np.isinf(q):
            notice(f"--conformal {args.conformal}: {scores.size} validation molecules are too "
                   f"few for that level; the interval of {name} is unbounded")
        low, high = uncertainty.conformal_interval(mean[:, t], q,
                                                   spread[:, t] if scaled else None)
        out["quantile"][name] = q
        out["coverage"][name] = uncertainty.coverage(low, high, true[:, t])
        keep = ~torch.isnan(true[:, t]).numpy()
        out["width"][name] = float((high - low)[keep].mean()) if keep.any() else float("nan")
    return out


def split_figures(args, prep: Prepared, results: list[dict]) -> list[dict]:
    """Per split (a seed, with its ``--ensemble`` members): the test figures of the members'
    mean (regression) or mean probabilities (classification); for a regression ensemble the
    Spearman correlation of its spread with the absolute errors and its miscalibration area,
    and with ``--conformal`` the calibrated intervals' quantile, test coverage and width."""
    out = []
    names = prep.target_names
    for split, members in split_units([r["unit"] for r in results]).items():
        rs = [results[i] for i in members]
        preds = torch.stack([torch.as_tensor(r["test_pred"], dtype=torch.float64) for r in rs])
        true = torch.as_tensor(rs[0]["test_true"], dtype=torch.float64)
        entry: dict[str, Any] = {"split": split, "seed": rs[0]["seed"], "models": len(rs)}
        if prep.kind == "classification":
            m = classification_metrics(_mean_probabilities(preds.float(), prep.classes),
                                       true.float(), names, prep.classes)
            for k in ("accuracy", "roc_auc", "pr_auc"):
                entry[f"test_{k}"], entry[f"test_mean_{k}"] = m[k], m[f"mean_{k}"]
            out.append(entry)
            continue
        mean, spread = preds.mean(0), preds.std(0, unbiased=False)
        m = regression_metrics(mean, true, names)
        for k in ("rmse", "mae", "r2"):
            entry[f"test_{k}"] = m[k]
        if len(rs) > 1:
            entry["test_spread_spearman"], entry["test_miscalibration_area"] = {}, {}
            for t, name in enumerate(names):
                keep = ~torch.isnan(true[:, t])
                err = (mean[keep, t] - true[keep, t]).abs()
                entry["test_spread_spearman"][name] = uncertainty.spread_spearman(
                    spread[keep, t], err)
                entry["test_miscalibration_area"][name] = uncertainty.miscalibration_area(
                    mean[keep, t], spread[keep, t], true[keep, t])
        if args.conformal is not None:
            entry["conformal"] = _interval_figures(args, names, rs, mean, spread, true)
        out.append(entry)
    return out


def fair_figures(args, results: list[dict]) -> dict[str, Any]:
    """metrics.json of ``--protocol fair``: the grid, per outer fold the chosen setting, its
    inner hold-out score and accuracy, every setting's, and the fold's test accuracy (the mean
    of its repeats'); the mean +- std over folds."""
    folds = []
    for fold, members in split_units([r["unit"] for r in results]).items():
        chosen = args.fair[fold]
        accuracies = [results[i]["test_accuracy"] for i in members]
        folds.append({"fold": fold, "chosen": chosen["chosen"],
                      "inner_score": chosen["inner_score"],
                      "inner_accuracy": chosen["inner_accuracy"], "inner_epoch": chosen["epoch"],
                      "grid_scores": chosen["grid"], "repeats": len(members),
                      "test_accuracies": accuracies,
                      "test_accuracy": float(np.mean(accuracies)),
                      "test_roc_auc": float(np.nanmean([results[i]["test_roc_auc"]
                                                        for i in members]))})
    return {"protocol": "fair", "grid": settings_grid(args.grid), "folds": folds,
            "test_accuracy": mean_std([f["test_accuracy"] for f in folds]),
            "test_roc_auc": mean_std([f["test_roc_auc"] for f in folds])}


def _gin_protocol(args, results: list[dict]) -> dict:
    """Xu et al. (2019)'s protocol picks one epoch for all folds by the mean accuracy of the
    held-out folds, which peeks at them; reported for comparison with the literature only."""
    # tuned units may train for different numbers of epochs: the epochs they all have
    length = min(len(r["test_accuracy_by_epoch"]) for r in results)
    curves = np.array([r["test_accuracy_by_epoch"][:length] for r in results])
    per_seed = {}
    for seed in args.seeds:
        rows = curves[[r["seed"] == seed for r in results]]
        best = int(rows.mean(0).argmax())
        per_seed[seed] = {"epoch": best + 1, "mean": float(rows[:, best].mean()),
                          "std": float(rows[:, best].std(ddof=1)) if len(rows) > 1 else 0.0}
    return per_seed


def summarise(args, prep: Prepared, results: list[dict]) -> dict[str, Any]:
    """metrics.json: per-unit results and the mean +- std over seeds (or folds)."""
    metrics: dict[str, Any] = {
        "dataset": args.dataset, "kind": prep.kind, "targets": prep.target_names,
        "model": args.model, "readout": args.readout,
        "split": f"stratified {args.folds}-fold" if args.dataset == "mutag" else args.split,
        "seeds": args.seeds, "num_graphs": len(prep.graphs),
        "epoch_seconds": float(np.mean([r["epoch_seconds"] for r in results])),
        "best_epoch": [r["best_epoch"] for r in results],
        # what the validation splits chose, per unit: the epoch and the (tuned) settings
        "chosen": [{"unit": r["unit"], "epoch": r["best_epoch"], **r["settings"]}
                   for r in results],
        "units": [{k: v for k, v in r.items() if not k.startswith(("test_pred", "val_pred"))
                   and k not in ("test_true", "test_index", "val_true")} for r in results],
    }
    if prep.classes is not None:
        metrics["classes"] = prep.classes
    if args.tune:
        metrics["tune_seconds"] = float(sum(r.get("tune_seconds", 0.0) for r in results))
    if args.dataset == "mutag" and getattr(args, "protocol", "cv") == "fair":
        metrics.update(fair_figures(args, results))
        return metrics
    if args.dataset == "mutag":
        folds = fold_figures([r["unit"] for r in results], [r["test_pred"] for r in results],
                             [r["test_true"] for r in results])
        metrics["folds"] = folds
        metrics["test_accuracy"] = mean_std([f["accuracy"] for f in folds])
        metrics["test_roc_auc"] = mean_std([f["roc_auc"] for f in folds])
        if args.fold_models > 1:  # the single models, for comparison with the ensembles
            metrics["test_accuracy_single_models"] = mean_std([r["test_accuracy"]
                                                                for r in results])
        metrics["test_accuracy_gin_protocol"] = _gin_protocol(args, results)
        return metrics
    keys = (("accuracy", "roc_auc", "pr_auc") if prep.kind == "classification"
            else ("rmse", "mae", "r2"))
    ensemble = getattr(args, "ensemble", 1)
    metrics["ensemble"] = ensemble
    splits = (split_figures(args, prep, results)
              if ensemble > 1 or getattr(args, "conformal", None) is not None else results)
    if splits is not results:
        metrics["splits"] = splits
    for k in keys:
        metrics[f"test_{k}"] = {name: mean_std([r[f"test_{k}"][name] for r in splits])
                                for name in prep.target_names}
        if prep.kind == "classification":
            metrics[f"test_mean_{k}"] = mean_std([r[f"test_mean_{k}"] for r in splits])
        if ensemble > 1:  # the members alone, to see what the ensemble gains
            metrics[f"test_{k}_single_models"] = {
                name: mean_std([r[f"test_{k}"][name] for r in results])
                for name in prep.target_names}
    for key in ("test_spread_spearman", "test_miscalibration_area"):
        if splits and key in splits[0]:
            metrics[key] = {name: mean_std([s[key][name] for s in splits])
                            for name in prep.target_names}
    if getattr(args, "conformal", None) is not None:
        quantiles = {name: float(np.mean([s["conformal"]["quantile"][name] for s in splits]))
                     for name in prep.target_names}
        metrics["conformal"] = {"level": args.conformal, "scale": args.conformal_scale,
                                "quantile": quantiles}
        for key in ("coverage", "width"):
            metrics[f"test_conformal_{key}"] = {
                name: mean_std([s["conformal"][key][name] for s in splits])
                for name in prep.target_names}
    return metrics


def finish(args, prep: Prepared, fitted: list, device) -> tuple[dict, dict]:
    """Test every unit; the metrics and the pictures (a regression's scatter, and with
    ``--readout atom-sum`` the first test molecule's atom contributions)."""
    results = []
    for f in fitted:
        result = f.plan.context.result(f.result)
        result["settings"] = {k: getattr(f.args, k) for k in TUNED_KEYS}
        if args.tune:
            result["tune_seconds"] = f.unit.get("tune_seconds", 0.0)
        results.append(result)
    metrics, pictures = summarise(args, prep, results), {}
    if "conformal" in metrics:  # what the predictor's <target>_low / _high come from
        uncertainty.write_calibration(
            args.out, metrics["conformal"]["level"], metrics["conformal"]["scale"],
            metrics["conformal"]["quantile"],
            {s["split"]: s["conformal"]["quantile"] for s in metrics["splits"]})
    if prep.kind == "regression":
        pictures["scatter.png"] = lambda path: viz.plot_scatter(results, prep.target_names,
                                                                path)
        if args.readout == "atom-sum" and prep.smiles is not None:
            work = fitted[0].plan.context
            graph = work.test_set[0]
            work.model.eval()
            with torch.no_grad():
                c = work.model.atom_contributions(Batch.from_data_list([graph]).to(device))
            # in target units: y = std * sum_v c_v + mean; the mean spread evenly over the atoms
            weights = (c[:, 0].cpu() * work.std[0] + work.mean[0] / graph.num_nodes).tolist()
            pictures["atom_contributions.png"] = lambda path: viz.draw_atom_weights(
                graph.smiles, weights, path)
    return metrics, pictures

