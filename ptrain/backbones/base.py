"""The backbone adapter: a Hugging Face base model plus the knowledge of how prompts enter it."""

from __future__ import annotations

import torch
from torch import nn

from ptrain.backbones.attention import PREFIX_KWARG, PREFIX_MASK_KWARG, PREFIX_OFFSET_KWARG
from ptrain.prompts.base import BackboneGeometry, PromptOutput


def prefix_kwargs(prompt: PromptOutput, offset: int = 0) -> dict:
    """The model kwargs that carry a prompt's prefixes (and a mixed batch's per-row masks) to attention;
    `offset`: see `attention.PREFIX_OFFSET_KWARG` (relative-position models only)."""
    extra: dict = {}
    if prompt.kv:
        extra[PREFIX_KWARG] = prompt.kv
        if offset:
            extra[PREFIX_OFFSET_KWARG] = offset
    if prompt.kv_mask:
        extra[PREFIX_MASK_KWARG] = prompt.kv_mask
    return extra


class Backbone(nn.Module):
    """Wraps an HF base model (no task head) and returns hidden states of the real tokens only.

    Subclasses describe one architecture family: where absolute positions come from, how large the
    position budget is, and (for DeBERTa) how prefixes reach attention. Everything architecture-specific
    about prompting lives in these classes and nowhere else.
    """

    #: model_type values (from the HF config) this adapter serves
    model_types: tuple[str, ...] = ()
    #: kinds of prompt contribution the adapter accepts
    accepts: frozenset[str] = frozenset({"input", "prefix"})
    #: how a sequence-level head pools hidden states by default for this family
    default_pooling: str = "first"

    def __init__(self, model: nn.Module, shift_positions: bool = True) -> None:
        super().__init__()
        self.model = model
        self.shift_positions = shift_positions

    # ---- geometry -------------------------------------------------------------------------------
    @property
    def config(self):
        return self.model.config

    @property
    def geometry(self) -> BackboneGeometry:
        c = self.config
        heads = c.num_attention_heads
        return BackboneGeometry(
            hidden_size=c.hidden_size,
            num_layers=c.num_hidden_layers,
            num_heads=heads,
            num_kv_heads=getattr(c, "num_key_value_heads", None) or heads,
            head_dim=getattr(c, "head_dim", None) or c.hidden_size // heads,
        )

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def position_budget(self) -> int | None:
        """How many positions (virtual + real) fit; None when positions are relative only."""
        return getattr(self.config, "max_position_embeddings", None)

    # ---- forward --------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        prompt: PromptOutput | None = None,
    ) -> torch.Tensor:
        prompt = prompt or PromptOutput()
        n_in = prompt.input_length
        prompt.check_rows()
        inputs, mask = self.embed_with_prompt(input_ids, attention_mask, prompt)
        inputs["attention_mask"] = mask
        if n_in and token_type_ids is not None:
            token_type_ids = torch.cat([token_type_ids.new_zeros(input_ids.shape[0], n_in), token_type_ids], dim=1)
        if token_type_ids is not None and getattr(self.config, "type_vocab_size", 0):
            inputs["token_type_ids"] = token_type_ids
        shift = prompt.prefix_shift() if prompt.kv and self.shift_positions else 0
        if n_in:  # a mixed batch can hold input-prompt rows and prefix rows: `shift` is 0 for the former
            positions = self.prompted_position_ids(input_ids, prompt, shift)
        elif prompt.kv:
            positions = self.position_ids(input_ids, shift)
        else:
            positions = None
        if positions is not None:
            inputs["position_ids"] = positions
        hidden = self.run(inputs, prompt)
        return hidden[:, n_in:]

    def embed_with_prompt(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          prompt: PromptOutput) -> tuple[dict, torch.Tensor]:
        """Model inputs and mask: `input_ids` as they are, or with an input prompt, the word embeddings with the
        virtual embeddings in front and the mask widened to cover them (shared by every adapter); in a mixed
        batch a row's missing virtual columns are masked."""
        if not prompt.input_length:
            return {"input_ids": input_ids}, attention_mask
        embeds = self.word_embeddings(input_ids)
        visible = prompt.input_visibility(input_ids.shape[0], input_ids.device).to(attention_mask.dtype)
        return ({"inputs_embeds": torch.cat([prompt.embeds.to(embeds.dtype), embeds], dim=1)},
                torch.cat([visible, attention_mask], dim=1))

    def run(self, inputs: dict, prompt: PromptOutput) -> torch.Tensor:
        """Call the HF model; prefixes travel as kwargs to the registered ptrain attention functions."""
        inputs.update(prefix_kwargs(prompt))
        return self.model(**inputs).last_hidden_state

    def prompted_position_ids(self, input_ids: torch.Tensor, prompt: PromptOutput,
                              shift: int | torch.Tensor = 0) -> torch.Tensor | None:
        """Positions of [input prompt; real tokens]. With one prompt for the batch the model numbers the columns
        itself (0..P+T-1); in a mixed batch they count a row's own virtual tokens only (plus `shift`, a prefix
        row's slots), so each row is numbered as it would be alone."""
        if prompt.embeds_mask is None and not torch.is_tensor(shift) and shift == 0:
            return None
        real = torch.ones_like(input_ids)  # BERT numbers every column, padding included
        columns = torch.cat([prompt.input_visibility(input_ids.shape[0], input_ids.device), real], dim=1)
        return (columns.cumsum(1) - 1).clamp(min=0) + shift

    def position_ids(self, input_ids: torch.Tensor, shift: int) -> torch.Tensor | None:
        """Absolute positions of the real tokens when `shift` virtual positions come before them.

        The official P-tuning-v2 code (and PEFT) pass the prefix as a cache of length P, so HF places the
        real tokens at P..P+T-1. `method.shift_positions=false` keeps them at 0..T-1 instead.
        """
        batch, length = input_ids.shape
        return (torch.arange(length, device=input_ids.device) + shift).expand(batch, length)


class BertBackbone(Backbone):
    model_types = ("bert", "electra", "ernie")


class RobertaBackbone(Backbone):
    """RoBERTa numbers positions from `padding_idx + 1` and gives padding the position `padding_idx`."""

    model_types = ("roberta", "xlm-roberta", "camembert")

    def position_budget(self) -> int | None:
        return self.config.max_position_embeddings - self.config.pad_token_id - 1

    def position_ids(self, input_ids: torch.Tensor, shift: int) -> torch.Tensor | None:
        pad = self.config.pad_token_id
        real = input_ids.ne(pad).long()
        return (torch.cumsum(real, dim=1) + shift) * real + pad

    def prompted_position_ids(self, input_ids: torch.Tensor, prompt: PromptOutput,
                              shift: int | torch.Tensor = 0) -> torch.Tensor | None:
        """The virtual tokens count as real ones in front. Without this, RoBERTa numbers `inputs_embeds`
        positions blindly, so left padding between the prompt and the text would shift the text's positions."""
        pad = self.config.pad_token_id
        virtual = prompt.input_visibility(input_ids.shape[0], input_ids.device)
        real = torch.cat([virtual, input_ids.ne(pad).long()], dim=1)
        return (torch.cumsum(real, dim=1) + shift) * real + pad
