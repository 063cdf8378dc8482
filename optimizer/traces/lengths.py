"""Length-only tables: prompt and output lengths without times (an offline batch, or drawn arrivals).
"""

from __future__ import annotations

from optimizer.traces.rows import Converted, Options, Rows, row_ids, untimed_arrivals


def lengths(rows: Rows, options: Options) -> Converted:
    n = len(rows)
    arrival_s, note = untimed_arrivals(n, options)
    notes = [note]
    return Converted(
        {
            "request_id": row_ids(rows),
            "arrival_s": arrival_s,
            "prompt_tokens": rows.tokens("num_prefill_tokens", minimum=1),
            "output_tokens": rows.tokens("num_decode_tokens", minimum=1),
        },
        notes=notes,
    )
