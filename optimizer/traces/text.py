"""Text data sets without token counts (GSM8K): token counts estimated from the text.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from optimizer.traces.rows import Converted, Options, Rows, row_ids, untimed_arrivals

#: Llama-2 tokens per English word, for text without token counts (`estimate_tokens`).
TOKENS_PER_WORD = 1.3
_CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations: not model output


def estimate_tokens(text: pd.Series) -> np.ndarray:
    """Estimated Llama-2 (SentencePiece) token counts of text, for data sets without them.

        tokens = digits + ceil(1.3 x words) + symbols + newlines

    Llama's tokenizer splits numbers into single digits and most punctuation into tokens
    of their own; 1.3 tokens per word (runs of letters) is the usual English rate. An
    estimate, not a tokenizer: no tokenizer model ships with this tool.
    """
    digits = text.str.count(r"\d").to_numpy()
    words = text.str.count(r"[^\W\d_]+").to_numpy()
    symbols = text.str.count(r"[^\w\s]").to_numpy()
    newlines = text.str.count("\n").to_numpy()
    return (digits + np.ceil(TOKENS_PER_WORD * words) + symbols + newlines).astype(np.int64)


def reference_answer(answer: str) -> str:
    """A GSM8K reference answer as a model would write it: without the <<calculator>> notes."""
    return _CALCULATOR.sub("", answer)


def gsm8k(rows: Rows, options: Options) -> Converted:
    question, answer = rows.text("question"), rows.text("answer")
    for column, cells in (("question", question), ("answer", answer)):
        empty = (cells == "").to_numpy()
        if empty.any():
            raise rows.error("is empty; the token estimate needs the text.", int(np.argmax(empty)), column)
    arrival_s, arrivals = untimed_arrivals(len(rows), options)
    return Converted(
        {
            "request_id": "gsm8k-" + row_ids(rows),
            "arrival_s": arrival_s,
            "prompt_tokens": np.maximum(estimate_tokens(question) + 1, 1),  # + the BOS token
            "output_tokens": np.maximum(estimate_tokens(answer.str.replace(_CALCULATOR, "", regex=True)), 1),
        },
        notes=[
            "GSM8K has no token counts: estimated as digits + 1.3 x words + symbols + newlines (Llama-2 tokenizer "
            "conventions); prompt = the question (+1 BOS), output = the reference answer without its <<calculator>> notes.",
            arrivals,
        ],
    )
