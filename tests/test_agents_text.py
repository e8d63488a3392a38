"""The shared matcher for auth failures and rate/usage limits, and the reset times it reads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ralph.agents.text import classify_lines, classify_text, parse_reset, span_seconds

NOW = datetime(2026, 11, 27, 10, 30, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    "text",
    [
        "Not logged in · Please run /login",
        "Invalid API key · Please run /login",
        "Error: 401 Unauthorized",
        "API key not valid. Please pass a valid API key.",
        "Incorrect API key provided: sk-****",
        '{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}',
    ],
)
def test_auth_failures_are_recognised(text):
    assert classify_text(text, NOW).kind == "auth_failed"


@pytest.mark.parametrize(
    "text",
    [
        "429 Too Many Requests",
        "Attempt 1 failed with status 429. Retrying with backoff...",
        "You've hit your limit · resets 2pm (Asia/Shanghai)",
        "5-hour limit reached ∙ resets 3pm",
        "Claude AI usage limit reached|1762952400",
        "You exceeded your current quota, please check your plan and billing details.",
        "RESOURCE_EXHAUSTED",
        "rate_limit_error: Number of request tokens has exceeded your per-minute rate limit",
    ],
)
def test_rate_and_usage_limits_are_recognised(text):
    assert classify_text(text, NOW).kind == "rate_limited"


@pytest.mark.parametrize(
    "text",
    [
        "Implemented rate limiting middleware in api/limits.py",
        "Fixed the handler for HTTP 429 responses",
        "tests: 429 passed, 3 skipped",
        "Writing src/auth/login.py",
        "",
    ],
)
def test_ordinary_output_is_not_a_signal(text):
    assert classify_text(text, NOW) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("try again in 1h20m", 4800),
        ("Please try again in 1 hour 20 minutes.", 4800),
        ("Please retry in 41.2s.", 41.2),
        ("Retrying in 2892 seconds… (attempt 1/10)", 2892),
        ("retry-after: 30", 30),
        ('"retry_after": 12', 12),
    ],
)
def test_waits_are_read_as_seconds(text, seconds):
    assert parse_reset(text, NOW) == (pytest.approx(seconds), None)


@pytest.mark.parametrize(
    ("text", "reset"),
    [
        ("usage limit reached|1762952400", datetime.fromtimestamp(1762952400, UTC)),
        ("resets at 2026-11-27T14:00:00Z", datetime(2026, 11, 27, 14, tzinfo=UTC)),
        ("limit reached · resets 3pm (UTC)", datetime(2026, 11, 27, 15, tzinfo=UTC)),
        ("resets 9:15am (Etc/UTC)", datetime(2026, 11, 28, 9, 15, tzinfo=UTC)),  # tomorrow
        ("resets 2pm (Asia/Shanghai)", datetime(2026, 11, 28, 6, tzinfo=UTC)),  # 14:00 +08
        ("or try again at Nov 28th, 2026 3:04 PM UTC", datetime(2026, 11, 28, 15, 4, tzinfo=UTC)),
    ],
)
def test_reset_times_are_read_as_the_next_such_moment(text, reset):
    assert parse_reset(text, NOW) == (None, reset.timestamp())


def test_a_limit_without_a_time_leaves_the_backoff_to_the_loop():
    signal = classify_text("429 Too Many Requests", NOW)
    assert (signal.retry_after, signal.reset_at) == (None, None)


def test_spans_add_up_their_units():
    assert span_seconds("2 days 3 hours 4 minutes") == 2 * 86400 + 3 * 3600 + 4 * 60
    assert span_seconds("soon") is None


@pytest.mark.parametrize(
    "text",
    [
        "Reconnecting... waiting for network (Connection failed: error sending request)",
        "stream disconnected before completion: failed to lookup address information",
        "Attempt 1 failed. Retrying with backoff... Error: exception TypeError: fetch failed",
        "Error: connect ECONNREFUSED 127.0.0.1:443",
        "Error: getaddrinfo ENOTFOUND api.example.com",
        "litellm.APIConnectionError: [Errno 111] Connection refused",
        "Unable to connect. Is the computer able to access the url?",
    ],
)
def test_network_failures_are_network_down(text):
    assert classify_text(text, NOW).kind == "network_down"


def test_an_error_naming_auth_and_the_network_is_an_auth_failure():
    signal = classify_lines(["Error: fetch failed", "401 Unauthorized: invalid x-api-key"], NOW)
    assert signal.kind == "auth_failed"


def test_a_limit_wrapped_onto_the_next_lines_keeps_its_retry_time():
    lines = ["RateLimitError: Rate limit reached for gpt-4o. Please try again", "in 20s.", "x"]
    signal = classify_lines(lines, NOW)
    assert signal.kind == "rate_limited" and signal.retry_after == 20


def test_no_error_lines_no_signal():
    assert classify_lines(["compiling", "done"], NOW) is None
