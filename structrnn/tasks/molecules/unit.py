"""One unit of a molecule or TU run (a seed, a fold): its splits, target scaling, model, loss,
validation and test figures, as the :class:`~structrnn.training.task.Plan` the run trains."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.loader import DataLoader

from structrnn.tasks.molecules.data import Prepared, subset
from structrnn.tasks.molecules.metrics import (
    class_weights,
    classification_loss,
    classification_metrics,
    regression_metrics,
)
from structrnn.tasks.molecules.model import MoleculeModel
from structrnn.training import distributed
from structrnn.training.loop import FitResult
from structrnn.training.task import Plan

__all__ = ["Unit", "build", "predict"]


@torch.no_grad()
def predict(model: nn.Module, loader, device) -> tuple[Tensor, Tensor]:
    """(M, out) the model's outputs and (M, ...) the targets of every batch of ``loader``."""
    model.eval()
    preds, ys = [], []
    for batch in loader:
        batch = batch.to(device)
        preds.append(model(batch).cpu())
        ys.append(batch.y.cpu())
    return torch.cat(preds), torch.cat(ys)


def _column_stats(values: list[Tensor], width: int) -> tuple[Tensor, Tensor] | None:
    """Mean and (population) standard deviation of the first ``width`` columns."""
    if not width:
        return None
    stacked = torch.cat([v[:, :width] for v in values]).double()
    return stacked.mean(0).float(), stacked.std(0, unbiased=False).float()


class Unit:
    """One seed (and fold): its data, target scaling and model; trained by :func:`fit`."""

    def __init__(self, args, prep: Prepared, unit: dict, device) -> None:
        self.args, self.prep, self.unit, self.device = args, prep, unit, device
        u = None
        if prep.descriptors is not None:
            from structrnn.datasets.molecules.descriptors import cdf_normalise

            # the distribution comes from the training molecules only
            self.reference = prep.descriptors[unit["train"]]
            u = cdf_normalise(prep.descriptors, self.reference)
        self.train_set = subset(prep.graphs, unit["train"], u)
        self.val_set = subset(prep.graphs, unit["val"], u)
        self.test_set = subset(prep.graphs, unit["test"], u)
        self.mean = self.std = None
        self.weights = None
        if prep.kind == "regression":
            y = torch.cat([g.y for g in self.train_set])
            self.mean = torch.nanmean(y, 0)
            std = torch.sqrt(torch.nanmean((y - self.mean) ** 2, 0))
            self.std = torch.where(std > 0, std, torch.ones_like(std))
        elif getattr(args, "class_weights", "none") == "balanced":
            self.weights = class_weights(torch.cat([g.y for g in self.train_set]),
                                         prep.classes)
        self.model = MoleculeModel(**self.model_args()).to(device)
        extra = prep.model_extra or {}
        if extra.get("node_scale") or extra.get("edge_scale"):
            # continuous attributes standardised with the training graphs' statistics only
            self.model.set_scaling(
                _column_stats([g.x for g in self.train_set], extra["node_scale"]),
                _column_stats([g.edge_attr for g in self.train_set], extra["edge_scale"]))

    def loss(self, model: nn.Module, batch) -> tuple[Tensor, Tensor]:
        """The summed loss over this process's targets scaled to the global batch mean."""
        out = model(batch).float()
        if self.prep.kind == "classification":
            loss_sum, count = classification_loss(out, batch.y, self.prep.classes, self.weights)
        else:
            target = (batch.y - self.mean.to(out.device)) / self.std.to(out.device)
            mask = ~torch.isnan(target)
            loss_sum = (out[mask] - target[mask]).pow(2).sum()
            count = mask.sum()
        if not distributed.is_distributed():
            loss = loss_sum / count.clamp(min=1)
            return loss, loss.detach()
        return distributed.global_mean_loss(loss_sum, count)

    def evaluate(self, model: nn.Module, graphs) -> dict[str, Any]:
        """The figures of ``model`` on ``graphs``: RMSE, MAE and R^2 per target (regression) or
        :func:`~structrnn.tasks.molecules.metrics.classification_metrics`, with the
        predictions (``pred`` in real units, or the logits) and ``true``."""
        pred, y = predict(model, DataLoader(graphs, batch_size=self.args.batch_size),
                          self.device)
        if self.prep.kind == "classification":
            m = classification_metrics(pred, y, self.prep.target_names, self.prep.classes)
        else:
            pred = pred * self.std + self.mean
            m = regression_metrics(pred, y, self.prep.target_names)
        m["pred"], m["true"] = pred, y
        return m

    def score(self, metrics: dict) -> float:
        """Lower is better: the validation error (mean standardised MAE for multi-target sets);
        for a TU set minus the accuracy, for molecules minus the mean ROC-AUC."""
        if self.prep.kind == "classification":
            if self.args.dataset == "mutag":
                # accuracy first; the (small-weighted) loss breaks the many ties of a small set
                return -metrics["mean_accuracy"] + 1e-3 * min(metrics["loss"], 100.0)
            auc = metrics["mean_roc_auc"]
            # a validation split with one class only has no AUC: the loss decides
            return metrics["loss"] if math.isnan(auc) else -auc
        names = self.prep.target_names
        if len(names) == 1:
            return metrics["rmse"][names[0]]
        scaled = [metrics["mae"][n] / float(s) for n, s in zip(names, self.std, strict=True)]
        return float(np.mean(scaled))

    def validate(self, model: nn.Module) -> dict[str, float]:
        val = self.evaluate(model, self.val_set)
        figures = {"val_score": self.score(val)}
        if self.prep.kind == "classification":
            figures["val_accuracy"] = val["mean_accuracy"]
            figures["val_roc_auc"] = val["mean_roc_auc"]
            if self.args.dataset == "mutag" and self.test_set:
                # the held-out fold's accuracy per epoch, for the GIN-paper protocol (see
                # summarise); never used to select anything
                figures["test_accuracy"] = self.evaluate(model, self.test_set)["mean_accuracy"]
        else:  # the selection figure under its own name (val_score is signed for selection)
            figures[self.report()[0]] = figures["val_score"]
        return figures

    def report(self) -> list[str]:
        """What the epoch line shows: the figure behind ``val_score``, named and unsigned."""
        if self.prep.kind == "classification":
            return ["val_accuracy" if self.args.dataset == "mutag" else "val_roc_auc"]
        return ["val_rmse" if len(self.prep.target_names) == 1 else "val_scaled_mae"]

    def model_args(self) -> dict[str, Any]:
        """The :class:`MoleculeModel` arguments of this unit (what rebuilds it to predict)."""
        return {"node_in": self.prep.node_in, "edge_in": self.prep.edge_in,
                "out_channels": self.prep.out_channels, "hidden": self.args.hidden,
                "steps": self.args.steps, "model": self.args.model,
                "readout": self.args.readout, "dropout": self.args.dropout,
                "global_in": 0 if self.prep.descriptors is None
                else int(self.prep.descriptors.size(1)), **(self.prep.model_extra or {})}

    def best_extra(self) -> dict:
        """What predicting in real units needs, saved beside the best weights: the model's
        arguments, the target names and scaling (or classes), the featuriser version (SMILES
        sets) and the descriptor reference (``--global-features rdkit``)."""
        extra: dict[str, Any] = {"target_names": self.prep.target_names,
                                 "kind": self.prep.kind, "model_args": self.model_args()}
        if self.prep.classes is not None:
            extra["classes"] = list(self.prep.classes)
        if self.prep.smiles is not None:
            from structrnn.datasets.molecules.graphs import FEATURISER_VERSION

            extra["featuriser"] = FEATURISER_VERSION
        if self.mean is not None:
            extra["target_mean"], extra["target_std"] = self.mean, self.std
        if self.prep.descriptors is not None:
            extra["descriptor_reference"] = self.reference
        return extra

    def result(self, fitted: FitResult) -> dict:
        """This unit's entry of metrics.json."""
        test = self.evaluate(fitted.model, self.test_set)
        history = fitted.history
        result: dict[str, Any] = {
            "unit": self.unit["name"], "seed": self.unit["seed"],
            "best_epoch": fitted.best_epoch, "best_val_score": fitted.best_score,
            "train_loss_first": history[0]["train_loss"] if history else None,
            "train_loss_last": history[-1]["train_loss"] if history else None,
            "epoch_seconds": (float(np.mean([h["epoch_seconds"] for h in history]))
                              if history else None),
            "sizes": [len(self.unit[k]) for k in ("train", "val", "test")],
        }
        if "fold" in self.unit:
            result["fold"] = self.unit["fold"]
            result["test_accuracy"] = test["mean_accuracy"]
            result["test_roc_auc"] = test["mean_roc_auc"]
            result["test_accuracy_by_epoch"] = [h["test_accuracy"] for h in history]
            result["test_pred"] = test["pred"].tolist()  # for the fold's ensemble
            result["test_true"] = test["true"].tolist()
            return result
        keys = (("accuracy", "roc_auc", "pr_auc") if self.prep.kind == "classification"
                else ("rmse", "mae", "r2"))
        for k in keys:
            result[f"test_{k}"] = test[k]
        if self.prep.kind == "classification":
            for k in keys:
                result[f"test_mean_{k}"] = test[f"mean_{k}"]
        result["test_pred"] = test["pred"].tolist()
        result["test_true"] = test["true"].tolist()
        result["test_index"] = [int(i) for i in self.unit["test"]]
        if getattr(self.args, "conformal", None) is not None:  # the calibration set
            val = self.evaluate(fitted.model, self.val_set)
            result["val_pred"], result["val_true"] = val["pred"].tolist(), val["true"].tolist()
        return result


def build(args, prep: Prepared, unit: dict, device) -> Plan:
    """The unit's plan: Adam with a cosine decay to a tenth of the learning rate."""
    work = Unit(args, prep, unit, device)
    optimizer = torch.optim.Adam(work.model.parameters(), lr=args.lr,
                                 weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs,
                                                           eta_min=args.lr / 10)
    return Plan(work.model, optimizer, work.loss, work.validate, train_set=work.train_set,
                loader_class=DataLoader, scheduler=scheduler, best_extra=work.best_extra,
                context=work, report=work.report())
