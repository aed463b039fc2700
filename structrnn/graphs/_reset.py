"""``reset_parameters`` of modules built from other modules, the user's included, and the
sizes their ``repr`` shows."""

from __future__ import annotations

from torch import nn

__all__ = ["reset", "reset_children", "channels_repr"]


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


def reset_children(module: nn.Module) -> None:
    """:func:`reset` every child of ``module`` (its ``reset_parameters``)."""
    for name, child in module.named_children():
        reset(child, name)


def channels_repr(module: nn.Module, *optional: str) -> str:
    """The sizes of a model with PyG's argument names, as its ``extra_repr``:
    ``in_channels, hidden_channels, num_layers=, out_channels=``, then each attribute named in
    ``optional`` that is set (not None, 0 or False)."""
    text = (f"{module.in_channels}, {module.hidden_channels}, num_layers={module.num_layers}, "
            f"out_channels={module.out_channels}")
    for name in optional:
        value = getattr(module, name)
        if value is not None and value is not False and value != 0:
            text += f", {name}={value!r}"
    return text
