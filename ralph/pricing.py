"""Prices per million tokens, to estimate the cost of agents whose CLI reports tokens only.

codex, gemini, cursor (and opencode with a provider it has no price for) print token counts but no
dollars; `--max-cost` and `ralph stats` need dollars. The table below holds list prices (USD per
million input / output tokens, standard tier, checked 2026-11; gemini 3.x 2026-05) matched by
the longest model-name prefix; ralph.toml overrides or adds models:

    [prices."gpt-5-codex"]
    input = 1.25
    output = 10.0

An estimate ignores cache discounts, so it errs high. Costs computed here are marked estimated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ralph.errors import ConfigError

# model-name prefix -> (input, output) USD per million tokens
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    # OpenAI (codex, cursor, opencode, aider)
    "gpt-5-codex": (1.25, 10.0),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5": (1.25, 10.0),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.0),
    "o4-mini": (1.10, 4.40),
    "o3": (2.0, 8.0),
    "codex-mini": (1.50, 6.0),
    # Google (gemini); 3.x from ai.google.dev's pricing page as aggregators quoted it (2026-05):
    # prompts up to 200K tokens. gemini-3.5-flash-lite and gemini-3.8-flash had no published
    # price there: each takes the nearest priced sibling's, higher rather than lower, so
    # --max-cost stops early rather than late (override in [prices] once known).
    "gemini-3.8-flash": (1.50, 9.0),
    "gemini-3.5-flash-lite": (1.50, 9.0),
    "gemini-3.5-flash": (1.50, 9.0),
    "gemini-3.1-pro": (2.0, 12.0),
    "gemini-3.1-flash-lite": (0.25, 1.50),
    "gemini-3-flash": (0.50, 3.0),
    "gemini-3-pro": (2.0, 12.0),
    "gemini-2.5-pro": (1.25, 10.0),
    "gemini-2.5-flash-lite": (0.10, 0.40),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.0-flash-lite": (0.075, 0.30),
    "gemini-2.0-flash": (0.10, 0.40),
    # Anthropic (claude reports its own cost; these serve cursor, opencode, aider)
    "claude-opus-4-5": (5.0, 25.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-haiku-4": (1.0, 5.0),
    "claude-3-5-haiku": (0.80, 4.0),
}


def parse_overrides(table: Any, where: str = "ralph.toml") -> dict[str, dict[str, float]]:
    """Validate a `[prices]` table: `[prices."model"] input = .., output = ..` per million."""
    if not isinstance(table, Mapping):
        raise ConfigError(f'{where}: prices must be a table of [prices."model-name"] tables')
    out: dict[str, dict[str, float]] = {}
    for model, entry in table.items():
        if not isinstance(entry, Mapping) or set(entry) - {"input", "output"}:
            raise ConfigError(
                f'{where}: [prices."{model}"] takes input and output only',
                hint="USD per million tokens, e.g. input = 1.25, output = 10.0",
            )
        prices: dict[str, float] = {}
        for side in ("input", "output"):
            value = entry.get(side, 0.0)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f'{where}: [prices."{model}"] {side} must be a number >= 0')
            prices[side] = float(value)
        out[str(model)] = prices
    return out


def price_of(
    model: str | None, overrides: Mapping[str, Mapping[str, float]] | None = None
) -> tuple[float, float] | None:
    """(input, output) USD per million tokens for `model`: an exact override, else the longest
    matching prefix among the overrides and the defaults; None for an unknown model."""
    if not model:
        return None
    name = model.lower().rsplit("/", 1)[-1]  # "openai/gpt-5", "models/gemini-2.5-pro"
    overrides = overrides or {}
    for key in (model, name):
        if key in overrides:
            entry = overrides[key]
            return float(entry.get("input", 0.0)), float(entry.get("output", 0.0))
    table: dict[str, tuple[float, float]] = dict(DEFAULT_PRICES)
    for key, entry in overrides.items():
        table[key.lower()] = (float(entry.get("input", 0.0)), float(entry.get("output", 0.0)))
    matches = [key for key in table if name.startswith(key)]
    return table[max(matches, key=len)] if matches else None


def estimate(
    model: str | None,
    input_tokens: int,
    output_tokens: int,
    overrides: Mapping[str, Mapping[str, float]] | None = None,
) -> float | None:
    """Estimated USD for one run's tokens on `model`; None when the model has no known price."""
    price = price_of(model, overrides)
    if price is None:
        return None
    return round((input_tokens * price[0] + output_tokens * price[1]) / 1_000_000, 6)
