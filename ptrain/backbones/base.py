"""The backbone adapter: a Hugging Face base model plus the knowledge of how prompts enter it."""

from __future__ import annotations

import torch
from torch import nn

from ptrain.backbones.attention import PREFIX_KWARG
from ptrain.prompts.base import BackboneGeometry, PromptOutput


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
        n_in, n_kv = prompt.input_length, prompt.prefix_length
        if n_in and n_kv:
            raise ValueError("a prompt gives either input embeddings or layer prefixes, not both")
        inputs, mask = self.embed_with_prompt(input_ids, attention_mask, prompt)
        inputs["attention_mask"] = mask
        if n_in and token_type_ids is not None:
            token_type_ids = torch.cat([token_type_ids.new_zeros(input_ids.shape[0], n_in), token_type_ids], dim=1)
        if token_type_ids is not None and getattr(self.config, "type_vocab_size", 0):
            inputs["token_type_ids"] = token_type_ids
        if n_kv:
            positions = self.position_ids(input_ids, n_kv if self.shift_positions else 0)
        else:
            positions = self.prompted_position_ids(input_ids, n_in) if n_in else None
        if positions is not None:
            inputs["position_ids"] = positions
        hidden = self.run(inputs, prompt.kv)
        return hidden[:, n_in:]

    def embed_with_prompt(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          prompt: PromptOutput) -> tuple[dict, torch.Tensor]:
        """Model inputs and mask: `input_ids` as they are, or with an input prompt, the word embeddings with the
        virtual embeddings in front and the mask widened to cover them (shared by every adapter)."""
        if not prompt.input_length:
            return {"input_ids": input_ids}, attention_mask
        embeds = self.word_embeddings(input_ids)
        visible = attention_mask.new_ones(attention_mask.shape[0], prompt.input_length)
        return ({"inputs_embeds": torch.cat([prompt.embeds.to(embeds.dtype), embeds], dim=1)},
                torch.cat([visible, attention_mask], dim=1))

    def run(self, inputs: dict, prefixes: dict) -> torch.Tensor:
        """Call the HF model; prefixes travel as a kwarg to the registered ptrain attention functions."""
        if prefixes:
            inputs[PREFIX_KWARG] = prefixes
        return self.model(**inputs).last_hidden_state

    def prompted_position_ids(self, input_ids: torch.Tensor, n_in: int) -> torch.Tensor | None:
        """Positions of [input prompt; real tokens], or None to let the model number them (0..P+T-1 here)."""
        return None

    def position_ids(self, input_ids: torch.Tensor, shift: int) -> torch.Tensor | None:
        """Absolute positions of the real tokens when `shift` virtual positions come before them.

        The official P-tuning-v2 code (and PEFT) pass the prefix as a cache of length P, so HF places the
        real tokens at P..P+T-1. `method.shift_positions=false` keeps them at 0..T-1 instead.
        """
        batch, length = input_ids.shape
        return torch.arange(shift, shift + length, device=input_ids.device).expand(batch, length)


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

    def prompted_position_ids(self, input_ids: torch.Tensor, n_in: int) -> torch.Tensor | None:
        """The virtual tokens count as real ones in front. Without this, RoBERTa numbers `inputs_embeds`
        positions blindly, so left padding between the prompt and the text would shift the text's positions."""
        pad = self.config.pad_token_id
        real = torch.cat([input_ids.new_ones(input_ids.shape[0], n_in), input_ids.ne(pad).long()], dim=1)
        return torch.cumsum(real, dim=1) * real + pad
