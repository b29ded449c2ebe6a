"""ptrain: prompt-based parameter-efficient tuning of frozen transformers.

The pieces compose one way: a task gives batches, a backbone wraps a frozen Hugging Face model,
a prompt module adds trainable inputs or per-layer prefixes, and `PromptedModel` joins them.
"""

__version__ = "0.1.0"

from ptrain import resolvers as _resolvers

_resolvers.register()  # the packaged configs' ${ptrain.*:...} interpolations, wherever they are composed
