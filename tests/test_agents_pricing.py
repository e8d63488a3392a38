"""The price table: estimated cost for agents whose CLI reports tokens only."""

from __future__ import annotations

import json

import pytest

from ralph.agents import get_agent
from ralph.config import parse_settings
from ralph.errors import ConfigError
from ralph.pricing import estimate, parse_overrides, price_of


def test_longest_prefix_wins_and_provider_prefixes_are_ignored():
    assert price_of("gpt-5-mini-2025-08-07") == (0.25, 2.0)
    assert price_of("gpt-5") == (1.25, 10.0)
    assert price_of("openai/gpt-5-codex") == (1.25, 10.0)
    assert price_of("models/gemini-2.5-flash-lite") == (0.10, 0.40)


def test_unknown_or_missing_model_has_no_estimate():
    assert estimate("mystery-model", 1000, 1000) is None
    assert estimate(None, 1000, 1000) is None


def test_estimate_is_input_and_output_tokens_at_their_prices_per_million():
    assert estimate("gemini-2.5-pro", 1_000_000, 100_000) == pytest.approx(1.25 + 1.0)


def test_overrides_replace_defaults_and_add_prefixes():
    overrides = parse_overrides({"gpt-5": {"input": 2, "output": 20}, "local": {"input": 0}})
    assert price_of("gpt-5", overrides) == (2.0, 20.0)
    assert price_of("gpt-5-mini", overrides) == (0.25, 2.0)  # a longer default prefix still wins
    assert estimate("local-llama", 10**6, 10**6, overrides) == 0.0


@pytest.mark.parametrize(
    "table", [{"m": {"input": -1}}, {"m": {"input": "cheap"}}, {"m": {"inp": 1}}, {"m": 3}]
)
def test_bad_price_tables_are_config_errors(table):
    with pytest.raises(ConfigError, match="prices"):
        parse_overrides(table)


def test_ralph_toml_prices_reach_settings():
    settings = parse_settings({"prices": {"mock-model": {"input": 1.0, "output": 2.0}}})
    assert settings.prices == {"mock-model": {"input": 1.0, "output": 2.0}}


def test_codex_tokens_become_an_estimated_cost_with_the_configured_price():
    agent = get_agent("codex", {"model": "mock-model"})
    agent.prices = {"mock-model": {"input": 1.0, "output": 10.0}}
    parser = agent.new_parser()
    usage = {"input_tokens": 2400, "output_tokens": 120}
    parser.feed(json.dumps({"type": "turn.completed", "usage": usage}), "stdout")
    parser.finish(0)
    assert parser.report.cost_usd == pytest.approx(0.0036) and parser.report.cost_estimated


def test_gemini_prices_each_model_it_used():
    parser = get_agent("gemini").new_parser()
    stats = {"input_tokens": 3600, "output_tokens": 180, "models": {
        "gemini-2.5-flash-lite": {"input_tokens": 1200, "output_tokens": 60},
        "gemini-2.5-pro": {"input_tokens": 2400, "output_tokens": 120}}}  # fmt: skip
    parser.feed(json.dumps({"type": "result", "status": "success", "stats": stats}), "stdout")
    parser.finish(0)
    expected = (1200 * 0.10 + 60 * 0.40 + 2400 * 1.25 + 120 * 10.0) / 1e6
    assert parser.report.cost_usd == pytest.approx(expected)
    assert parser.report.cost_estimated and parser.report.model == "gemini-2.5-pro"


def test_a_cost_the_cli_reports_is_kept_and_not_marked_estimated():
    parser = get_agent("claude", {"model": "claude-sonnet-4-5"}).new_parser()
    result = {"type": "result", "subtype": "success", "is_error": False, "total_cost_usd": 0.5,
              "usage": {"input_tokens": 10, "output_tokens": 1}}  # fmt: skip
    parser.feed(json.dumps(result), "stdout")
    parser.finish(0)
    assert parser.report.cost_usd == 0.5 and not parser.report.cost_estimated


def test_cursor_tokens_are_priced_by_the_model_its_init_event_names():
    parser = get_agent("cursor").new_parser()
    parser.feed(json.dumps({"type": "system", "subtype": "init", "model": "gpt-5"}), "stdout")
    result = {"type": "result", "subtype": "success", "is_error": False,
              "usage": {"input_tokens": 1_000_000, "output_tokens": 0}}  # fmt: skip
    parser.feed(json.dumps(result), "stdout")
    parser.finish(0)
    assert parser.report.cost_usd == pytest.approx(1.25) and parser.report.cost_estimated


GEMINI_3 = ["gemini-3.8-flash", "gemini-3.5-flash-lite", "gemini-3.1-pro-preview"]


@pytest.mark.parametrize("model", [*GEMINI_3, "models/gemini-3.5-flash"])
def test_current_gemini_models_have_a_price_so_max_cost_can_cap_them(model):
    assert price_of(model) is not None
    parser = get_agent("gemini", {"model": model}).new_parser()
    parser.report.input_tokens, parser.report.output_tokens = 1200, 60
    parser.finish(0)
    assert parser.report.cost_usd and parser.report.cost_estimated
