"""Prompt token counts of chat and completion requests: a real tokenizer, or an estimate.

A tokenizer is a local ``tokenizer.json`` or a Hugging Face model folder holding one,
read with the `tokenizers` library; nothing is ever downloaded. A folder's chat template
(``tokenizer_config.json`` key ``chat_template``, or ``chat_template.jinja``) is rendered
with jinja2 the way `transformers` does (messages, ``add_generation_prompt=True``,
``bos_token``, ``eos_token``), and the rendered text is encoded without adding special
tokens again (the template writes them).

Without a template the chat prompt is counted as the estimate below counts it, with the
tokenizer's counts for the contents:

    prompt_tokens = sum over messages (content tokens + 4) + 3

4 tokens per message for its role and turn markers and 3 for the opening of the
assistant's turn (the ChatML layout: ``<|im_start|>role\\n ... <|im_end|>\\n``). A plain
completion prompt is its tokens plus 1 (the BOS token).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.common.errors import TraceError
from optimizer.traces.text import estimate_tokens

#: Tokens a chat template adds per message, and for the assistant turn it opens (ChatML).
MESSAGE_OVERHEAD_TOKENS = 4
GENERATION_PROMPT_TOKENS = 3


@dataclass(frozen=True)
class Tokenizer:
    """A loaded tokenizer and, when its folder has one, its chat template."""

    path: str
    tokenizer: object  # tokenizers.Tokenizer
    chat_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""
    #: Why the folder's chat template is not used ("" when it is, or when there is none).
    template_note: str = ""

    def count_texts(self, texts: list[str]) -> np.ndarray:
        """Token counts of texts encoded as they are (no special tokens added)."""
        encoded = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        return np.fromiter((len(e.ids) for e in encoded), dtype=np.int64, count=len(texts))

    def describe(self) -> str:
        if self.chat_template is not None:
            return f"{self.path} (tokenizers, chat template rendered with jinja2)"
        return f"{self.path} (tokenizers, no chat template{': ' + self.template_note if self.template_note else ''})"


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A tokenizer from a ``tokenizer.json`` file or a model folder holding one (offline).

    Raises:
        TraceError: naming the path when it holds no readable tokenizer.
    """
    try:
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError:  # pragma: no cover - a declared dependency
        raise TraceError("reading a tokenizer needs the `tokenizers` package (pip install tokenizers).", path=path) from None
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        what = "has no tokenizer.json" if path.is_dir() else "no such file"
        raise TraceError(f"{what}; give a tokenizer.json or a Hugging Face model folder holding one.", path=path)
    try:
        tokenizer = HFTokenizer.from_file(str(file))
    except Exception as exc:  # the Rust library raises plain Exception for any bad file
        raise TraceError(f"is not a readable tokenizer.json ({str(exc).splitlines()[0]}).", path=file) from None
    if not path.is_dir():
        return Tokenizer(str(path), tokenizer)
    config = _read_config(folder / "tokenizer_config.json")
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if template is None and (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    bos, eos = _special(config.get("bos_token")), _special(config.get("eos_token"))
    if not isinstance(template, str):
        return Tokenizer(str(path), tokenizer, None, bos, eos)
    try:
        import jinja2  # noqa: F401
    except ImportError:
        return Tokenizer(str(path), tokenizer, None, bos, eos, "jinja2 is not installed, so the template is not applied")
    return Tokenizer(str(path), tokenizer, template, bos, eos)


def _read_config(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TraceError(f"is not readable JSON ({exc}).", path=path) from None
    return config if isinstance(config, dict) else {}


def _special(token: object) -> str:
    """A special token as tokenizer_config.json spells it: a string or {"content": ...}."""
    if isinstance(token, dict):
        token = token.get("content")
    return token if isinstance(token, str) else ""


def chat_prompt_tokens(conversations: list[list[dict]], tokenizer: Tokenizer | None) -> np.ndarray:
    """Prompt tokens of chat requests (each a list of messages with text contents)."""
    if tokenizer is not None and tokenizer.chat_template is not None:
        return count_unique(render_chat(conversations, tokenizer), tokenizer)
    contents = [message_text(m) for messages in conversations for m in messages]
    per_message = count_unique(contents, tokenizer)
    sizes = np.fromiter((len(messages) for messages in conversations), dtype=np.int64, count=len(conversations))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if len(sizes) else sizes
    content = np.add.reduceat(per_message, starts) if len(per_message) else np.zeros(len(sizes), dtype=np.int64)
    content = np.where(sizes > 0, content, 0)  # reduceat repeats a value for an empty conversation
    return (content + MESSAGE_OVERHEAD_TOKENS * sizes + GENERATION_PROMPT_TOKENS).astype(np.int64)


def completion_prompt_tokens(prompts: list[str], tokenizer: Tokenizer | None) -> np.ndarray:
    """Prompt tokens of completion requests: their text's tokens + 1 (the BOS token)."""
    return (count_unique(prompts, tokenizer) + 1).astype(np.int64)


def count_unique(texts: list[str], tokenizer: Tokenizer | None) -> np.ndarray:
    """Token counts of texts (tokenizer, else estimated), each distinct text counted once:
    batch files repeat their system prompts and few-shot examples on every line."""
    codes, distinct = pd.factorize(pd.Series(texts, dtype=object), sort=False)
    distinct = list(distinct)
    counts = tokenizer.count_texts(distinct) if tokenizer is not None else estimate_tokens(pd.Series(distinct, dtype=object))
    return np.asarray(counts, dtype=np.int64)[codes]


def render_chat(conversations: list[list[dict]], tokenizer: Tokenizer) -> list[str]:
    """Each conversation rendered by the tokenizer's chat template, ready for the model."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    # The environment transformers uses: templates are untrusted code, so sandboxed.
    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.globals["raise_exception"] = raise_exception
    try:
        template = environment.from_string(tokenizer.chat_template)
    except TemplateError as exc:
        raise TraceError(f"chat template does not compile ({exc}).", path=tokenizer.path) from None
    rendered = []
    for messages in conversations:
        try:
            rendered.append(
                template.render(
                    messages=messages, add_generation_prompt=True, bos_token=tokenizer.bos_token, eos_token=tokenizer.eos_token
                )
            )
        except Exception as exc:  # a template may fail on any message it rejects
            raise TraceError(f"chat template failed on a request ({type(exc).__name__}: {exc}).", path=tokenizer.path) from None
    return rendered


def message_text(message: dict) -> str:
    """The text of a chat message: its content, or the text parts of a content list."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")
    return ""
