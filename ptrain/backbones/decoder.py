"""Decoder-only language models: GPT-2 and the Llama family (Llama, Mistral, Qwen2, Qwen3).

All of them call attention through transformers' registry with `**kwargs`, so prefixes reach the
`ptrain_sdpa`/`ptrain_eager` functions as the `ptrain_prefix` kwarg, exactly as for BERT; they enter after rotary
embeddings and after the KV-cache update (never rotated, never cached), and with grouped-query attention a prefix
has the key/value heads' shape (`BackboneGeometry.num_kv_heads`), repeated to the query heads with the model's own
keys. What is decoder-specific lives here:

- positions count real tokens only (`cumsum(mask) - 1`), so a row gives the same states whatever its padding side:
  absolute (GPT-2) and rotary (Llama) positions both need this with left padding. Input prompts take positions
  0..P-1 and real tokens P..; a prefix shifts real tokens to P.. as well (`method.shift_positions`, as PEFT does).
- with sliding-window attention (Mistral, Qwen2 with `use_sliding_window`) the prefix columns stay visible to
  every query, outside the window, like an attention sink.
- sequence heads pool the last real token (`default_pooling = "last"`), on either padding side.
- generation runs HF `generate` on the LM-head model; a forward pre-hook gives every step the prefix and the
  shifted positions, and on the step that starts the sequence it swaps the P placeholder columns for the
  prompt's embeddings. HF itself forces the cache on when given `inputs_embeds`; placeholders let
  `use_cache=False` recompute the whole sequence, prompt included, at every step.
"""

from __future__ import annotations

from functools import partial

import torch

from ptrain.backbones.attention import PREFIX_KWARG
from ptrain.backbones.base import prefix_kwargs
from ptrain.backbones.lm import (
    LanguageModelBackbone,
    expand_prompt,
    generation_cache,
    last_real,
    left_padded,
    positions_from_mask,
    pre_hooks,
)
from ptrain.prompts.base import PromptOutput


class DecoderBackbone(LanguageModelBackbone):
    model_types = ("gpt2", "llama", "mistral", "qwen2", "qwen3")
    default_pooling = "last"
    family = "decoder"

    @classmethod
    def model_class(cls, lm_head: bool):
        from transformers import AutoModel, AutoModelForCausalLM

        return AutoModelForCausalLM if lm_head else AutoModel

    @property
    def base(self) -> torch.nn.Module:
        """The decoder stack (below the LM head when one is loaded)."""
        return self.model.base_model

    # ---- forward: hidden states of the real tokens ----------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        prompt: PromptOutput | None = None,
    ) -> torch.Tensor:
        # token_type_ids are ignored: GPT-2 would look them up in its word embeddings, the others have none
        prompt = prompt or PromptOutput()
        n_in = prompt.input_length
        prompt.check_rows()
        inputs, mask = self.embed_with_prompt(input_ids, attention_mask, prompt)
        inputs["use_cache"] = False
        inputs["attention_mask"] = mask
        # the mask counts a row's own virtual tokens (a mixed batch masks the others); a prefix shifts by its slots
        shift = prompt.prefix_shift() if prompt.kv and self.shift_positions else 0
        inputs["position_ids"] = positions_from_mask(mask) + shift
        hidden = self.run(inputs, prompt)
        return hidden[:, n_in:]

    def run(self, inputs: dict, prompt: PromptOutput) -> torch.Tensor:
        inputs.update(prefix_kwargs(prompt))
        return self.base(**inputs).last_hidden_state

    # ---- language-model views ---------------------------------------------------------------------
    def answer_state(self, input_ids, attention_mask, token_type_ids=None, prompt=None) -> torch.Tensor:
        """The next-token state after the input: the last real token's."""
        return last_real(self(input_ids, attention_mask, None, prompt), attention_mask)

    def target_states(self, input_ids, attention_mask, targets, prompt=None) -> torch.Tensor:
        """Teacher forcing on `[source; target]`: the source is left-aligned against the target, so the state
        predicting target token j sits at column `S - 1 + j` for every row. `targets` use -100 for padding."""
        source, source_mask = left_padded(input_ids, attention_mask)
        target_mask = targets.ne(-100).long()
        target = targets.masked_fill(targets == -100, self.pad_token_id)
        hidden = self(torch.cat([source, target], 1), torch.cat([source_mask, target_mask], 1), None, prompt)
        start = source.shape[1] - 1
        return hidden[:, start:start + targets.shape[1]]

    def generate(self, input_ids, attention_mask, prompt=None, **generate_kwargs) -> torch.Tensor:
        """New tokens [B, N] after each input; batches are left-padded first, so mixed lengths and either padding
        side give what each example gives alone. `prompt` may be built for one row: it is shared by all rows."""
        prompt = prompt or PromptOutput()
        n_in, n_kv = prompt.input_length, prompt.prefix_length
        ids, mask = left_padded(input_ids, attention_mask)
        if n_in:  # placeholder columns, replaced by the prompt's embeddings in the hook
            ids = torch.cat([ids.new_full((ids.shape[0], n_in), self.pad_token_id), ids], dim=1)
            mask = torch.cat([mask.new_ones(mask.shape[0], n_in), mask], dim=1)
        hook = partial(self._generation_hook, prompt=prompt, shift=n_kv if self.shift_positions else 0)
        with pre_hooks([(self.model, hook)]):
            out = self.model.generate(input_ids=ids, attention_mask=mask, **self._generate_defaults(generate_kwargs))
        return out[:, ids.shape[1]:]

    def _generation_hook(self, module, args, kwargs, prompt: PromptOutput, shift: int):
        ids = kwargs.get("input_ids")
        batch = (ids if ids is not None else kwargs["inputs_embeds"]).shape[0]
        shared = expand_prompt(prompt, batch)
        if shared.kv:
            kwargs[PREFIX_KWARG] = shared.kv
        if shift:
            if kwargs.get("position_ids") is None:
                raise RuntimeError(f"{type(module).__name__}.generate passed no position_ids to shift")
            kwargs["position_ids"] = kwargs["position_ids"] + shift
        past = generation_cache(kwargs)
        starts = past is None or past.get_seq_length() == 0
        if shared.embeds is not None and starts and ids is not None:
            n_in = shared.embeds.shape[1]
            embeds = self.word_embeddings(ids[:, n_in:])
            kwargs["inputs_embeds"] = torch.cat([shared.embeds.to(embeds.dtype), embeds], dim=1)
            kwargs["input_ids"] = None
        return args, kwargs
