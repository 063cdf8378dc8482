"""Named numeric options of the simulator's policies, validated once on construction.

A class lists `options`, mapping each option to its (least, greatest) allowed value (None:
no limit); the class attribute of the same name is its default, and its type (int or
float) is the option's type.
"""

from __future__ import annotations

from optimizer.common.errors import OptimizerError


class NamedOptions:
    name = ""
    label = "Policy"  # how errors name the owner: "Policy 'slai'"
    options: dict[str, tuple[float, float | None]] = {}

    def __init__(self, **values: float):
        owner = f"{self.label.lower()} {self.name!r}"
        for key, value in values.items():
            if key not in self.options:
                known = ", ".join(self.options) or "none"
                raise OptimizerError(f"{self.label} {self.name!r} has no option {key!r}; its options: {known}.")
            least, greatest = self.options[key]
            default = getattr(type(self), key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(default, int) and not float(value).is_integer()):
                raise OptimizerError(f"Option {key} of {owner} must be a {'whole ' if isinstance(default, int) else ''}number, got {value!r}.")
            if value < least or (greatest is not None and value > greatest):
                bounds = f"at least {least:g}" if greatest is None else f"between {least:g} and {greatest:g}"
                raise OptimizerError(f"Option {key} of {owner} must be {bounds}, got {value:g}.")
            setattr(self, key, type(default)(value))


def parse_options(pairs: list[str]) -> dict[str, float]:
    """KEY=VALUE strings (from the command line) as a dict of numbers."""
    values = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        try:
            values[key.strip()] = float(text) if sep else float("nan")
        except ValueError:
            raise OptimizerError(f"Option {pair!r} is not KEY=NUMBER.") from None
        if not sep:
            raise OptimizerError(f"Option {pair!r} is not KEY=NUMBER.")
    return values
