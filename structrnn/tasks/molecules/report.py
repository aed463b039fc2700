"""What a molecule or TU run reports: ``metrics.json`` (per-unit results, mean +- std over
seeds or folds, the folds' ensembles, the GIN-paper protocol) and its pictures."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch_geometric.data import Batch

from structrnn import viz
from structrnn.tasks.molecules.data import Prepared
from structrnn.tasks.molecules.metrics import classification_metrics
from structrnn.tasks.molecules.tune import TUNED_KEYS

__all__ = ["finish", "summarise", "fold_figures", "mean_std"]


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
        "units": [{k: v for k, v in r.items() if not k.startswith("test_pred")
                   and k not in ("test_true", "test_index")} for r in results],
    }
    if prep.classes is not None:
        metrics["classes"] = prep.classes
    if args.tune:
        metrics["tune_seconds"] = float(sum(r.get("tune_seconds", 0.0) for r in results))
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
    for k in keys:
        metrics[f"test_{k}"] = {name: mean_std([r[f"test_{k}"][name] for r in results])
                                for name in prep.target_names}
        if prep.kind == "classification":
            metrics[f"test_mean_{k}"] = mean_std([r[f"test_mean_{k}"] for r in results])
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

