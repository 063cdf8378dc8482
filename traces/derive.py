"""Re-create the derived traces of this folder from the bundled real ones.

    python traces/derive.py

sharegpt_batch_2k.csv: 2,000 requests drawn without replacement (numpy default_rng seed
2026) from sharegpt_8k_filtered_stats_llama2_tokenizer.csv, kept in file order, as an
offline batch (all arrivals at 0) in the native format. request_id is "sharegpt-<row>",
the 0-based data row of the source file, so every request traces back to its source.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from optimizer.traces.load import load_trace
from optimizer.traces.write import write_trace  # noqa: E402

SEED = 2026
BATCH_SIZE = 2000


def sharegpt_batch() -> None:
    requests = load_trace(HERE / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv").requests
    rows = np.sort(np.random.default_rng(SEED).choice(len(requests), size=BATCH_SIZE, replace=False))
    batch = requests.iloc[rows].reset_index(drop=True)
    batch["request_id"] = "sharegpt-" + batch["request_id"]
    write_trace(batch, HERE / "sharegpt_batch_2k.csv")


if __name__ == "__main__":
    sharegpt_batch()
