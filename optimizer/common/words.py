"""Counts in messages: "1 request", "2,000 requests", never "1 requests"."""

from __future__ import annotations


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """`number` with thousands separators and `noun` in the singular or plural."""
    return f"{number:,} {noun if number == 1 else plural or noun + 's'}"
