"""Prompt methods, one module each. They see only backbone geometry, never a task."""

from ptrain.prompts.base import BackboneGeometry, PromptModule, PromptOutput
from ptrain.prompts.prefix import DeepPrefix
from ptrain.prompts.prompt_encoder import PromptEncoder
from ptrain.prompts.soft_prompt import SoftPrompt

__all__ = ["BackboneGeometry", "DeepPrefix", "PromptEncoder", "PromptModule", "PromptOutput", "SoftPrompt"]
