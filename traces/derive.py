"""Re-create the derived traces of this folder from the bundled real ones.

    python traces/derive.py

sharegpt_batch_2k.csv: 2,000 requests drawn without replacement (numpy default_rng seed
2026) from sharegpt_8k_filtered_stats_llama2_tokenizer.csv, kept in file order, as an
offline batch (all arrivals at 0) in the native format. request_id is "sharegpt-<row>",
the 0-based data row of the source file, so every request traces back to its source.

batch/gsm8k.jsonl: the first 300 GSM8K test questions as an OpenAI batch file (chat
format, model llama2-70b, max_tokens 512, greedy), custom_id "gsm8k-<row>" as the GSM8K
loader names them. batch/out/gsm8k.jsonl: what a runner (vLLM run-batch) would write
back for it, one line per request, with the reference answer as the completion and usage
counted by the same estimate the loader uses (prompt: the chat estimate; completion: the
answer without its <<calculator>> notes). Neither file has timestamps or random parts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from optimizer.traces.load import load_trace  # noqa: E402
from optimizer.traces.text import estimate_tokens, reference_answer  # noqa: E402
from optimizer.traces.tokens import chat_prompt_tokens  # noqa: E402
from optimizer.traces.write import write_trace  # noqa: E402

SEED = 2026
BATCH_SIZE = 2000
GSM8K_BATCH = 300
SYSTEM_PROMPT = "Solve the grade-school math problem step by step. End with a line '#### <answer>'."


def sharegpt_batch() -> None:
    requests = load_trace(HERE / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv").requests
    rows = np.sort(np.random.default_rng(SEED).choice(len(requests), size=BATCH_SIZE, replace=False))
    batch = requests.iloc[rows].reset_index(drop=True)
    batch["request_id"] = "sharegpt-" + batch["request_id"]
    write_trace(batch, HERE / "sharegpt_batch_2k.csv")


def _dumps(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(", ", ": "))


def gsm8k_batch() -> None:
    with open(HERE / "gsm8k_test.jsonl", encoding="utf-8") as f:
        items = [json.loads(line) for line in f][:GSM8K_BATCH]
    conversations = [
        [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": item["question"]}] for item in items
    ]
    prompt_tokens = chat_prompt_tokens(conversations, None)
    answers = [reference_answer(item["answer"]) for item in items]
    completion_tokens = np.maximum(estimate_tokens(pd.Series(answers, dtype=object)), 1)
    with open(HERE / "batch" / "gsm8k.jsonl", "w", encoding="utf-8", newline="\n") as batch, open(
        HERE / "batch" / "out" / "gsm8k.jsonl", "w", encoding="utf-8", newline="\n"
    ) as results:
        for row, messages in enumerate(conversations):
            custom_id = f"gsm8k-{row}"
            body = {"model": "llama2-70b", "messages": messages, "max_tokens": 512, "temperature": 0}
            batch.write(_dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n")
            prompt, completion = int(prompt_tokens[row]), int(completion_tokens[row])
            response = {
                "id": f"chatcmpl-{custom_id}",
                "object": "chat.completion",
                "created": 0,
                "model": "llama2-70b",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answers[row]}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
            }
            line = {"id": f"batch-{custom_id}", "custom_id": custom_id, "response": {"status_code": 200, "request_id": f"batch-{custom_id}", "body": response}, "error": None}
            results.write(_dumps(line) + "\n")


if __name__ == "__main__":
    sharegpt_batch()
    gsm8k_batch()
