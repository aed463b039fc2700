"""``reset_parameters`` of modules built from other modules, the user's included."""

from __future__ import annotations

from torch import nn

__all__ = ["reset"]


def reset(module: nn.Module | object | None, name: str = "module") -> None:
    """Draw new weights for ``module`` and everything inside it.

    A module with ``reset_parameters`` resets itself (``torch.nn`` layers, PyG layers, the cells
    and graph modules of structrnn, a user's module that defines one); a container without one
    (``nn.Sequential``, a plain wrapper) is searched inside, as
    ``torch_geometric.nn.inits.reset`` does. A module that holds parameters of its own but has
    no ``reset_parameters`` is a TypeError naming it: keeping its weights silently would leave a
    "reset" model partly trained. Strings (``aggr="sum"``) and None are left alone.
    """
    if not isinstance(module, nn.Module):
        return
    method = getattr(module, "reset_parameters", None)
    if callable(method):
        method()
        return
    own = [k for k, _ in module.named_parameters(recurse=False)]
    if own:
        raise TypeError(f"reset_parameters: {name} ({type(module).__name__}) has parameters "
                        f"{own} but no reset_parameters() method; give it one that draws new "
                        f"values for them")
    for child_name, child in module.named_children():
        reset(child, f"{name}.{child_name}")
