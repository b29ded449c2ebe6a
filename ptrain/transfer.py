"""Prompt transfer (`method.init_from=ARTIFACT`): a run's prompt starts from one trained on a related task.

The P-Tuning v2 paper and SPoT (Vu et al. 2022) start a task's prompt from another task's. The artifact's
trainable prompt module (`module.*`: reparameterisation networks included) is loaded into the new run's, which
must be the same method with the same shapes; the head is carried over only when the label sets agree, and is
re-initialised otherwise (a log line says which).
"""

from __future__ import annotations

import logging
from typing import Any

from ptrain.artifact import ArtifactError, check_backbone, module_state, read_artifact

log = logging.getLogger(__name__)


def init_from_artifact(model: Any, task: Any, tokenizer: Any, method: dict, path: str) -> None:
    artifact = read_artifact(path)
    source = artifact.meta["method"]
    if source["name"] != method["name"]:
        raise ArtifactError(f"method.init_from={path}: the artifact is method {source['name']!r}, this run is "
                            f"{method['name']!r}; transfer needs the same method")
    check_backbone(artifact, model.backbone, tokenizer)
    if model.prompt is not None:
        state = module_state(artifact)
        own = model.prompt.state_dict()
        bad = sorted(k for k in own if k not in state or tuple(state[k].shape) != tuple(own[k].shape))
        if bad or set(state) - set(own):
            detail = ", ".join(f"{k}: artifact {tuple(state[k].shape) if k in state else 'missing'} vs run "
                               f"{tuple(own[k].shape)}" for k in bad[:3])
            raise ArtifactError(f"method.init_from={path}: the prompt's shapes differ from this run's ({detail}); "
                                "use the artifact's method settings (length, reparam, layers)")
        model.prompt.load_state_dict(state, strict=True)
    labels = artifact.meta["task"].get("labels")
    same_head = artifact.meta["head"]["kind"] == task.head_kind and list(labels or []) == list(task.labels)
    head_state = artifact.group("head")
    if same_head and head_state:
        model.head.load_state_dict(head_state, strict=True)
        log.info("method.init_from: prompt and head from %s (task %s)", path, artifact.name)
    else:
        log.info("method.init_from: prompt from %s (task %s); head re-initialised: labels %s vs %s", path,
                 artifact.name, labels, list(task.labels))
