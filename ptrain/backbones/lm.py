"""What language-model heads need from a backbone, shared by decoders and encoder-decoders.

Encoder adapters give hidden states of real tokens; a backbone with an LM head also answers three questions:
`answer_state` (the hidden state that predicts the token after the input: a verbaliser scores its label words
there), `target_states` (teacher forcing: the states that predict each target token, aligned with the target)
and `generate` (new tokens after the input, with the prompt or prefix honoured at every step). `lm_logits`
turns any of these states into vocabulary logits with the frozen output layer.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ptrain.backbones.base import Backbone
from ptrain.prompts.base import PromptOutput


def left_padded(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same batch with every row's padding moved to the left, real tokens kept in order.

    Works whatever side (or mix of sides) the input was padded on: a stable sort puts masked columns first.
    """
    order = torch.argsort(attention_mask.ne(0).int(), dim=1, stable=True)
    return input_ids.gather(1, order), attention_mask.gather(1, order)


def right_aligned_order(attention_mask: torch.Tensor) -> torch.Tensor:
    """Column order that moves every row's padding to the right, real tokens kept in order (gather with it)."""
    return torch.argsort(attention_mask.eq(0).int(), dim=1, stable=True)


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count real tokens only: 0..n-1 for each row whatever its padding (pads get 0).

    This is what HF generation uses, so training, scoring and generation place every token identically.
    """
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 0)


def last_real(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The hidden state of each row's last real token, on either padding side."""
    columns = torch.arange(attention_mask.shape[1], device=hidden.device)
    last = (attention_mask.long() * columns).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


#: the names under which `generate` hands a model its key/value cache: `cache` from transformers 5.24, before that
#: `past_key_values` (deprecated in 5.24, removed in 5.40)
CACHE_KWARGS = ("cache", "past_key_values")


def generation_cache(kwargs: dict) -> Any:
    """The KV cache in a model call's kwargs, whichever transformers version named it (None without one).

    A forward pre-hook that reads the wrong name sees no cache at every step and re-inserts the prompt at each
    new token: transformers 5.24 renamed the argument, and generation with input prompts went wrong silently.
    """
    for name in CACHE_KWARGS:
        if kwargs.get(name) is not None:
            return kwargs[name]
    return None


def expand_prompt(prompt: PromptOutput, batch: int) -> PromptOutput:
    """A batch-1 prompt (built once for generation) viewed as `batch` rows, without copies."""
    embeds = None if prompt.embeds is None else prompt.embeds.expand(batch, -1, -1)
    kv = {site: (k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for site, (k, v) in prompt.kv.items()}
    return PromptOutput(embeds=embeds, kv=kv)


class LanguageModelBackbone(Backbone):
    """A backbone that may carry its frozen LM head (loaded with `model.lm_head=true`, which a task asks for
    through `head_kind` "lm" or "generate")."""

    #: model families this kind of adapter serves, for error messages
    family: str = "language model"

    def __init__(self, model: nn.Module, shift_positions: bool = True, tokenizer: Any = None) -> None:
        super().__init__(model, shift_positions)
        # plain attribute (not a module): pad/eos ids for generation and decoding of generated text
        self.tokenizer = tokenizer

    @property
    def has_lm_head(self) -> bool:
        return getattr(self.model, "get_output_embeddings", lambda: None)() is not None

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if not self.has_lm_head:
            raise ValueError(f"{type(self).__name__} was loaded without its LM head; load it with model.lm_head=true")
        return self.model.get_output_embeddings()(hidden)

    @property
    def pad_token_id(self) -> int:
        tok = self.tokenizer
        value = None if tok is None else tok.pad_token_id
        return int(value if value is not None else (self.config.pad_token_id or 0))

    @property
    def eos_token_id(self) -> int | None:
        tok = self.tokenizer
        value = None if tok is None else tok.eos_token_id
        return value if value is not None else self.config.eos_token_id

    def answer_state(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     token_type_ids: torch.Tensor | None = None, prompt: PromptOutput | None = None) -> torch.Tensor:
        raise NotImplementedError

    def target_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, targets: torch.Tensor,
                      prompt: PromptOutput | None = None) -> torch.Tensor:
        raise NotImplementedError

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt: PromptOutput | None = None,
                 **generate_kwargs: Any) -> torch.Tensor:
        raise NotImplementedError

    def _generate_defaults(self, generate_kwargs: dict) -> dict:
        kwargs = {"pad_token_id": self.pad_token_id, "do_sample": False}
        if self.eos_token_id is not None:
            kwargs["eos_token_id"] = self.eos_token_id
        kwargs.update(generate_kwargs)
        return kwargs


@contextmanager
def pre_hooks(hooks: list[tuple[nn.Module, Any]]):
    """Install forward pre-hooks (with kwargs) for the duration of a `generate` call."""
    handles = [module.register_forward_pre_hook(hook, with_kwargs=True) for module, hook in hooks]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
