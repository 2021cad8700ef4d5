"""Token layout: how one model's vocabulary is laid out, and the editing sequence template.

A Lumina-DiMOO-style MDM reads one flat sequence: the prompt (system text, instruction, source image rows)
then the answer (target image rows). Image code ``k`` is token ``image_code_offset + k``; every image row
ends with an end-of-row token and the image is wrapped in ``<IMAGE>`` ... ``</IMAGE>``.

The samplers work in *code space*: a target position holds a code in ``[0, codebook_size)`` or the value
``codebook_size`` for [MASK]. :meth:`TokenLayout.code_state_from_ids` / :meth:`ids_from_code_state` convert.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Sequence

import torch


@dataclass(frozen=True)
class TokenLayout:
    """Where every kind of token lives in a model's vocabulary."""

    name: str
    text_vocab_size: int  # ids below this are text (specials included)
    mask_token_id: int
    end_of_row_id: int
    image_begin_id: int
    image_end_id: int
    uncondition_id: int
    answer_begin_id: int
    answer_end_id: int
    pad_token_id: int
    image_code_offset: int
    codebook_size: int
    system_prompt: str

    def __post_init__(self) -> None:
        specials = self.special_ids
        if len(set(specials)) != len(specials):
            raise ValueError(f"layout {self.name!r}: special token ids collide: {specials}")
        if self.image_code_offset < self.text_vocab_size:
            raise ValueError(
                f"layout {self.name!r}: image_code_offset {self.image_code_offset} overlaps the text vocabulary "
                f"(size {self.text_vocab_size})"
            )

    @property
    def special_ids(self) -> tuple[int, ...]:
        return (
            self.mask_token_id, self.end_of_row_id, self.image_begin_id, self.image_end_id,
            self.uncondition_id, self.answer_begin_id, self.answer_end_id, self.pad_token_id,
        )

    @property
    def vocab_size(self) -> int:
        """Smallest vocabulary that holds every id of this layout."""
        return self.image_code_offset + self.codebook_size

    @property
    def mask_code(self) -> int:
        """The value of [MASK] in code space (one past the last image code)."""
        return self.codebook_size

    def to_dict(self) -> dict:
        return asdict(self)

    # ---- codes <-> ids ------------------------------------------------------------------------------
    def code_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """Image codes -> token ids."""
        return codes + self.image_code_offset

    def code_state_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids at image positions -> code-space state ([MASK] becomes ``codebook_size``)."""
        state = ids - self.image_code_offset
        is_mask = ids == self.mask_token_id
        bad = ~is_mask & ((state < 0) | (state >= self.codebook_size))
        if bad.any():
            raise ValueError(f"layout {self.name!r}: ids {ids[bad][:5].tolist()} are neither image codes nor [MASK]")
        return torch.where(is_mask, torch.full_like(state, self.mask_code), state)

    def ids_from_code_state(self, state: torch.Tensor) -> torch.Tensor:
        """Code-space state -> token ids ([MASK] -> ``mask_token_id``)."""
        return torch.where(
            state == self.mask_code, torch.full_like(state, self.mask_token_id), state + self.image_code_offset
        )

    def image_code_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Full-vocabulary logits (..., V) -> logits over the image codes then [MASK] (..., K + 1)."""
        codes = logits[..., self.image_code_offset : self.image_code_offset + self.codebook_size]
        mask = logits[..., self.mask_token_id : self.mask_token_id + 1]
        return torch.cat([codes, mask], dim=-1)

    def image_class_ids(self, device=None) -> torch.Tensor:
        """The vocabulary ids :meth:`image_code_logits` keeps, in its order (the K codes, then [MASK]): a model's
        ``output_classes`` that gives those logits directly."""
        codes = torch.arange(self.image_code_offset, self.image_code_offset + self.codebook_size, device=device)
        return torch.cat([codes, torch.tensor([self.mask_token_id], device=device)])

    # ---- image rows ---------------------------------------------------------------------------------
    def image_token_ids(self, grid: torch.Tensor) -> torch.Tensor:
        """A (h, w) grid of token ids -> ``<IMAGE>`` row_1 <eor> ... row_h <eor> ``</IMAGE>`` (1D)."""
        if grid.dim() != 2:
            raise ValueError(f"expected an (h, w) grid, got shape {tuple(grid.shape)}")
        h = grid.shape[0]
        eor = torch.full((h, 1), self.end_of_row_id, dtype=grid.dtype, device=grid.device)
        rows = torch.cat([grid, eor], dim=1).reshape(-1)
        begin = grid.new_tensor([self.image_begin_id])
        end = grid.new_tensor([self.image_end_id])
        return torch.cat([begin, rows, end])

    def image_positions(self, start: int, h: int, w: int) -> torch.Tensor:
        """Sequence positions of the h*w codes of an image block that begins (``<IMAGE>``) at ``start``."""
        rows = torch.arange(h).unsqueeze(1) * (w + 1)
        return (start + 1 + rows + torch.arange(w).unsqueeze(0)).reshape(-1)


@dataclass
class EditSequence:
    """One editing sequence and where its target codes sit."""

    input_ids: torch.Tensor  # (L,)
    target_positions: torch.Tensor  # (h*w,), row-major
    grid_size: tuple[int, int]


def build_edit_sequence(
    layout: TokenLayout,
    prompt_ids: Sequence[int] | torch.Tensor,
    source_codes: torch.Tensor | None,
    target_state: torch.Tensor | None,
    prompt_close_ids: Sequence[int] | torch.Tensor,
    grid_size: tuple[int, int] | None = None,
) -> EditSequence:
    """Lumina-DiMOO's editing template.

    ``prompt_ids`` tokenises ``<system>SYS</system><user>INSTRUCTION`` (or the instruction replaced by
    ``<uncondition>``), then the source image block (omitted when ``source_codes`` is None, the no-image
    guidance branch), ``prompt_close_ids`` (``</user>``), then ``<answer><IMAGE>`` target rows
    ``</IMAGE></answer>``. ``target_state`` is a code-space (h, w) grid; None means all [MASK].
    """
    prompt = torch.as_tensor(prompt_ids, dtype=torch.long).reshape(-1)
    close = torch.as_tensor(prompt_close_ids, dtype=torch.long).reshape(-1)
    if target_state is None:
        if grid_size is None:
            if source_codes is None:
                raise ValueError("build_edit_sequence needs target_state, source_codes or grid_size")
            grid_size = tuple(source_codes.shape)  # type: ignore[assignment]
        target_state = torch.full(grid_size, layout.mask_code, dtype=torch.long)
    h, w = target_state.shape
    parts = [prompt]
    if source_codes is not None:
        parts.append(layout.image_token_ids(layout.code_ids(source_codes.long().cpu())))
    parts.append(close)
    parts.append(torch.tensor([layout.answer_begin_id]))
    target_start = sum(p.numel() for p in parts)
    parts.append(layout.image_token_ids(layout.ids_from_code_state(target_state.long().cpu())))
    parts.append(torch.tensor([layout.answer_end_id]))
    ids = torch.cat(parts)
    return EditSequence(ids, layout.image_positions(target_start, h, w), (h, w))


def target_grid(layout: TokenLayout, input_ids: torch.Tensor, seq: EditSequence) -> torch.Tensor:
    """Inverse of :func:`build_edit_sequence`: read the target grid back (code space)."""
    h, w = seq.grid_size
    return layout.code_state_from_ids(input_ids[seq.target_positions]).reshape(h, w)


LUMINA_SYSTEM_PROMPT = "Generate an image applying the following editing instruction based on the original image."

LUMINA_DIMOO = TokenLayout(
    name="lumina-dimoo",
    text_vocab_size=126356,
    mask_token_id=126336,
    end_of_row_id=126084,
    image_begin_id=126349,
    image_end_id=126350,
    uncondition_id=126351,
    answer_begin_id=126354,
    answer_end_id=126355,
    pad_token_id=126339,
    image_code_offset=126356,
    codebook_size=8192,
    system_prompt=LUMINA_SYSTEM_PROMPT,
)

# The project's small default model: a 256-word text vocabulary whose first 13 ids are specials (fixed by
# rm_edit.data.text_tokenizer), then 256 VQ codes of the shapes-world image tokenizer.
SHAPES = TokenLayout(
    name="shapes",
    text_vocab_size=256,
    mask_token_id=2,
    end_of_row_id=3,
    image_begin_id=4,
    image_end_id=5,
    uncondition_id=6,
    answer_begin_id=7,
    answer_end_id=8,
    pad_token_id=0,
    image_code_offset=256,
    codebook_size=256,
    system_prompt="Edit the image.",
)

# The same text side with a 1,024-code image tokenizer (the colour-preserving pixel-cell encoder): codes that
# keep a shape's colour apart need more entries than 256 (measured purity 0.88 at 256, 0.96 at 1,024).
SHAPES_1K = replace(SHAPES, name="shapes-1k", codebook_size=1024)

# The grid-aligned shapes world's exact tokenizer: one code per (background, colour, kind, part) cell.
SHAPES_GRID = replace(SHAPES, name="shapes-grid", codebook_size=605)

# The Sudoku world's exact tokenizer: one code per cell pattern (empty, given 1-9, written 1-9:
# rm_edit.data.sudoku_cells.NUM_SUDOKU_CODES), 9x9 codes per 72x72 board; the same small text side.
SUDOKU_GRID = replace(SHAPES, name="sudoku-grid", codebook_size=19)

PRESETS: dict[str, TokenLayout] = {p.name: p for p in (LUMINA_DIMOO, SHAPES, SHAPES_1K, SHAPES_GRID, SUDOKU_GRID)}


def get_layout(name_or_dict: str | dict | TokenLayout) -> TokenLayout:
    """A preset by name, or a layout from its ``to_dict()``."""
    if isinstance(name_or_dict, TokenLayout):
        return name_or_dict
    if isinstance(name_or_dict, dict):
        return TokenLayout(**name_or_dict)
    if name_or_dict not in PRESETS:
        raise ValueError(f"unknown token layout {name_or_dict!r}; presets: {sorted(PRESETS)}")
    return PRESETS[name_or_dict]


def edit_prompt_text(layout: TokenLayout, instruction: str | None) -> tuple[str, str]:
    """Text around the source image: (``<system>SYS</system><user>INSTRUCTION``, ``</user>``).

    ``instruction=None`` gives the no-instruction guidance branch (``<uncondition>`` in its place).
    """
    body = "<uncondition>" if instruction is None else instruction
    return f"<system>{layout.system_prompt}</system><user>{body}", "</user>"


def encode_edit_prompts(tokenizer, layout: TokenLayout, instructions: Sequence[str]) -> tuple[list[list[int]], list[int], list[int]]:
    """Token ids of editing prompts as Lumina-DiMOO's inference code builds them: the whole prompt
    ``<system>SYS</system><user>INSTRUCTION</user>`` goes through ``tokenizer`` with its default special tokens
    (a BOS / EOS it adds stays), and the source image goes in before the prompt's last token.

    Returns (heads, the no-instruction head, tail): pass a head as ``prompt_ids`` and the tail as
    ``prompt_close_ids`` to :func:`build_edit_sequence`; head + tail is the tokenised prompt, unchanged (the
    no-image guidance branch). For a tokenizer that adds nothing and keeps ``</user>`` whole, this is the
    two-piece tokenisation of :func:`edit_prompt_text` exactly.
    """
    def split(text: str) -> tuple[list[int], list[int]]:
        ids = list(tokenizer(text)["input_ids"])
        if len(ids) < 2:
            raise ValueError(f"the tokenizer turned the editing prompt {text!r} into {ids}: nothing to splice the image into")
        return ids[:-1], ids[-1:]

    heads, tails = [], []
    for text in [*instructions, None]:
        head, tail = split("".join(edit_prompt_text(layout, text)))
        heads.append(head)
        tails.append(tail)
    for instruction, tail in zip(instructions, tails):
        if tail != tails[-1]:
            raise ValueError(f"instruction {instruction!r}: its prompt ends in token {tail} where the others end in "
                             f"{tails[-1]}; the tokenizer merges the instruction's end with '</user>'")
    return heads[:-1], heads[-1], tails[-1]


@dataclass
class SequenceBatch:
    """Right-padded editing sequences of one batch."""

    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L), 1 = real token
    target_positions: torch.Tensor  # (B, N)
    padded: bool = True  # False: every sequence has the same length (known on the host, no device read)

    def to(self, device) -> "SequenceBatch":
        return SequenceBatch(self.input_ids.to(device), self.attention_mask.to(device), self.target_positions.to(device),
                             self.padded)

    @property
    def model_mask(self) -> torch.Tensor | None:
        """The attention mask to give the model: None when nothing is padded, so attention runs unmasked and SDPA
        may pick its flash / memory-efficient kernels (a boolean mask rules flash out); the results are the same."""
        return self.attention_mask if self.padded else None


def pad_sequences(sequences: Sequence[EditSequence], pad_token_id: int) -> SequenceBatch:
    """Stack sequences of different lengths (the guidance branches differ) with a real padding mask."""
    n = {s.target_positions.numel() for s in sequences}
    if len(n) != 1:
        raise ValueError(f"sequences of one batch must have the same number of target codes, got {sorted(n)}")
    length = max(s.input_ids.numel() for s in sequences)
    ids = torch.full((len(sequences), length), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : s.input_ids.numel()] = s.input_ids
        mask[i, : s.input_ids.numel()] = 1
    positions = torch.stack([s.target_positions for s in sequences])
    padded = len({s.input_ids.numel() for s in sequences}) > 1
    return SequenceBatch(ids, mask, positions, padded)
