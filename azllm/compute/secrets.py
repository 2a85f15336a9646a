"""Secrets (Hugging Face token, AWS credentials): read from the environment, never stored.

Where they come from:

* On a laptop: the environment (``HF_TOKEN``, or the file ``huggingface-cli login``
  writes) and AWS's usual credential chain (``AWS_PROFILE``, ``~/.aws``).
* In a remote step: Metaflow's ``@secrets``, added by the compute profile
  (``secrets = ["<secret name>"]``): its keys (e.g. ``HF_TOKEN``) become environment
  variables of the task only. AWS access comes from the Batch job role or the Kubernetes
  service account (IRSA), so no AWS keys travel at all.

What keeps them out of a run: the flow stores the parsed preset (no environment), the
`start` step stores library versions and hardware only, launch commands and worker logs
carry no environment, and the compiled Argo / Step Functions specs carry none
(tests/test_compile.py). :func:`redact` is for any text that might echo one anyway;
tests/test_secrets.py runs the flow with a fake token and searches every artifact,
card, log and stored file of the run for it.

    >>> redact("token=hf_abc123456789", env={"HF_TOKEN": "hf_abc123456789"})
    'token=<HF_TOKEN>'
"""

from __future__ import annotations

import os
from collections.abc import Mapping

SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                   "AWS_SESSION_TOKEN")
"""Environment variables whose values must never be stored or printed."""
MIN_SECRET_CHARS = 8
"""Shorter values (e.g. moto's 'testing') are too common to redact without mangling text."""


def hf_token(env: Mapping[str, str] | None = None) -> str | None:
    """The Hugging Face token from the environment (set locally or by ``@secrets``), or None.

    None lets huggingface_hub fall back to the token file of ``huggingface-cli login``.
    """
    env = os.environ if env is None else env
    return env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or None


def secret_values(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """{variable: value} for the secret variables set in ``env`` (default: this process)."""
    env = os.environ if env is None else env
    return {name: env[name] for name in SECRET_ENV_VARS if len(env.get(name, "")) >= MIN_SECRET_CHARS}


def redact(text: str, env: Mapping[str, str] | None = None) -> str:
    """``text`` with every secret value replaced by ``<NAME>``."""
    for name, value in secret_values(env).items():
        text = text.replace(value, f"<{name}>")
    return text


def find_secrets(blob: bytes | str, env: Mapping[str, str] | None = None) -> list[str]:
    """Names of the secret variables whose values occur in ``blob`` (for tests and audits)."""
    data = blob.encode("utf-8", "replace") if isinstance(blob, str) else blob
    return [name for name, value in secret_values(env).items() if value.encode() in data]
