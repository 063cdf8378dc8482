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

sharegpt_conversations_mooncake.jsonl: an offline re-run of logged multi-turn conversations,
in the Mooncake format (timestamp 0, input_length, output_length, hash_ids of 512-token
blocks). 400 ShareGPT stats rows drawn without replacement (seed 2026) are the last turns of
400 conversations: a row's prompt P is the conversation's history, cut at k - 1 seeded
points (k uniform in 1..6) into the user turns before it; turn i resends the history up to
its cut, behind a common 1,024-token system prompt, and its reply takes at most half the
tokens up to the next cut (the last turn keeps the row's real output). Blocks inside the
system prompt have the same id everywhere; blocks of the conversation's history the same id
in every turn that holds them in full; a turn's partial last block an id of its own. The
structure is synthetic, the lengths are ShareGPT's.

gsm8k_rollouts_16.csv: an RL-rollout batch in the native format: GSM8K test questions 8-135
(128 prompts), 16 samples each, behind an 8-shot prefix made of test questions 0-7 with
their reference answers ("Question: ...\nAnswer: ...", token counts estimated as the GSM8K
loader does). prefix_group "fewshot/gsm8k-<row>" with prefix_tokens "<preamble> <prompt>":
every request shares the preamble, the samples of one question their whole prompt. Output
lengths: the reference answer's estimate x lognormal(0, 0.5) (seed 2026), in 1..512, since
samples of one prompt differ in length (an assumption; GSM8K has one answer per question).
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


CONVERSATIONS = 400
SYSTEM_PROMPT_TOKENS = 1024
HASH_BLOCK = 512
MAX_TURNS = 6


def sharegpt_conversations() -> None:
    requests = load_trace(HERE / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv").requests
    rng = np.random.default_rng(SEED)
    rows = np.sort(rng.choice(len(requests), size=CONVERSATIONS, replace=False))
    next_id = SYSTEM_PROMPT_TOKENS // HASH_BLOCK
    lines = []
    for c, row in enumerate(rows.tolist()):
        history, output = int(requests["prompt_tokens"].iloc[row]), int(requests["output_tokens"].iloc[row])
        turns = int(rng.integers(1, MAX_TURNS + 1))
        cuts = np.sort(rng.choice(np.arange(1, history), size=min(turns - 1, history - 1), replace=False)).tolist() + [history]
        block_ids: dict[int, int] = {}  # full block of this conversation -> id
        for i, cut in enumerate(cuts):
            prompt = SYSTEM_PROMPT_TOKENS + cut
            reply = output if i == len(cuts) - 1 else max(1, min(output, (cuts[i + 1] - cut) // 2))
            ids = []
            for b in range(-(-prompt // HASH_BLOCK)):
                if (b + 1) * HASH_BLOCK <= SYSTEM_PROMPT_TOKENS:
                    ids.append(b)  # the system prompt's blocks: the same everywhere
                elif (b + 1) * HASH_BLOCK <= prompt:
                    if b not in block_ids:
                        block_ids[b], next_id = next_id, next_id + 1
                    ids.append(block_ids[b])
                else:  # this turn's partial last block
                    ids.append(next_id)
                    next_id += 1
            lines.append(json.dumps({"timestamp": 0, "input_length": prompt, "output_length": reply, "hash_ids": ids}))
    with open(HERE / "sharegpt_conversations_mooncake.jsonl", "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


ROLLOUT_SHOTS = 8
ROLLOUT_PROMPTS = 128
ROLLOUT_SAMPLES = 16


def gsm8k_rollouts() -> None:
    with open(HERE / "gsm8k_test.jsonl", encoding="utf-8") as f:
        items = [json.loads(line) for line in f]
    shots = "".join(f"Question: {item['question']}\nAnswer: {reference_answer(item['answer'])}\n\n" for item in items[:ROLLOUT_SHOTS])
    preamble = 1 + int(estimate_tokens(pd.Series([shots]))[0])  # + the BOS token
    batch = items[ROLLOUT_SHOTS : ROLLOUT_SHOTS + ROLLOUT_PROMPTS]
    questions = estimate_tokens(pd.Series([f"Question: {item['question']}\nAnswer:" for item in batch]))
    answers = np.maximum(estimate_tokens(pd.Series([reference_answer(item["answer"]) for item in batch])), 1)
    spread = np.random.default_rng(SEED).lognormal(0.0, 0.5, size=(len(batch), ROLLOUT_SAMPLES))
    records = []
    for i in range(len(batch)):
        row = ROLLOUT_SHOTS + i
        prompt = preamble + int(questions[i])
        for k in range(ROLLOUT_SAMPLES):
            records.append({"request_id": f"gsm8k-{row}#s{k}", "arrival_s": 0.0, "prompt_tokens": prompt,
                            "output_tokens": int(np.clip(np.rint(answers[i] * spread[i, k]), 1, 512)),
                            "prefix_group": f"fewshot/gsm8k-{row}", "prefix_tokens": f"{preamble} {prompt}"})
    pd.DataFrame.from_records(records).to_csv(HERE / "gsm8k_rollouts_16.csv", index=False, lineterminator="\n")


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
    sharegpt_conversations()
    gsm8k_rollouts()
