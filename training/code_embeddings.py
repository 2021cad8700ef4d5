"""Image-code rows built from the cell's attributes while training (a parametrization, removed at save).

In the grid-aligned shapes world a code is one (background, colour, kind, part) cell. Learned as atomic rows,
each of the 605 codes must be learned on its own (a purple triangle's part 3 on beige is rare); as the sum of
attribute vectors, what the model learns about "purple" or "triangle" carries over to every code that has it.
:func:`attach_attribute_rows` makes the code rows of the input embedding and of the output head
``free row + sum of attribute vectors``; :func:`detach_attribute_rows` folds the sum back into plain rows, so
the saved model is an ordinary ``LLaDATransformer`` (same format as Lumina-DiMOO's).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from rm_edit.data.shapes import BACKGROUNDS, COLOURS, KINDS, NUM_CELL_CODES, PARTS, cell_attributes
from rm_edit.layout import TokenLayout


def cell_attribute_index() -> torch.Tensor:
    """(NUM_CELL_CODES, 4) indices into one table of background | colour | kind | part values (-1 = none)."""
    offsets = {"background": 0, "colour": len(BACKGROUNDS), "kind": len(BACKGROUNDS) + len(COLOURS),
               "part": len(BACKGROUNDS) + len(COLOURS) + len(KINDS)}
    values = {"background": list(BACKGROUNDS), "colour": list(COLOURS), "kind": list(KINDS), "part": list(range(PARTS))}
    index = torch.full((NUM_CELL_CODES, 4), -1, dtype=torch.long)
    for code in range(NUM_CELL_CODES):
        attrs = cell_attributes(code)
        for j, name in enumerate(offsets):
            if attrs[name] is not None:
                index[code, j] = offsets[name] + values[name].index(attrs[name])
    return index


class AttributeSumRows(nn.Module):
    """weight -> weight with ``sum(attribute vectors)`` added to the image-code rows."""

    def __init__(self, index: torch.Tensor, start: int, d_model: int, std: float):
        super().__init__()
        self.register_buffer("index", index.clamp(min=0), persistent=False)
        self.register_buffer("present", (index >= 0).float().unsqueeze(-1), persistent=False)
        self.start = start
        n_values = int(index.max()) + 1
        self.vectors = nn.Parameter(torch.randn(n_values, d_model) * std)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        rows = (self.vectors[self.index] * self.present).sum(1)
        end = self.start + rows.shape[0]
        return torch.cat([weight[: self.start], weight[self.start : end] + rows.to(weight.dtype), weight[end:]])


def _modules(model) -> list[nn.Module]:
    heads = [model.get_input_embeddings()]
    if "ff_out" in model.transformer:
        heads.append(model.transformer["ff_out"])
    return heads


@torch.no_grad()
def attach_attribute_rows(model, layout: TokenLayout, fresh: bool) -> None:
    """Parametrize the code rows of ``model``'s embedding and output head (in place).

    ``fresh``: the model is new, so its code rows become the attribute sums alone (std 0.02, the model's own
    init scale); otherwise the attribute vectors start at zero and the trained rows are unchanged at step 0.
    """
    if layout.codebook_size != NUM_CELL_CODES:
        raise ValueError(f"attribute rows need the shapes-grid layout ({NUM_CELL_CODES} codes), got {layout.codebook_size}")
    index = cell_attribute_index()
    codes = slice(layout.image_code_offset, layout.image_code_offset + NUM_CELL_CODES)
    for module in _modules(model):
        d = module.weight.shape[1]
        rows = AttributeSumRows(index, layout.image_code_offset, d, std=0.02 / 2 if fresh else 0.0)
        if fresh:
            module.weight[codes] = 0.0
        parametrize.register_parametrization(module, "weight", rows)


def detach_attribute_rows(model) -> None:
    """Fold the attribute sums into plain rows (call before ``save_pretrained``); a no-op when not attached."""
    for module in _modules(model):
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


@torch.no_grad()
def folded_state_dict(model) -> dict[str, torch.Tensor]:
    """``model``'s state dict with the attribute sums folded into plain ``weight`` rows, leaving ``model`` as it
    is (a snapshot mid-training; removing the parametrization would change the class every copy shares)."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if ".parametrizations." not in k}
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            state[f"{name}.weight"] = module.weight.detach().clone()
    return state
