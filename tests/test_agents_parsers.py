"""Stream parsers fed output lines.

"recorded" lines come from the real CLIs (claude 2.1.197, codex-cli 0.171.0, gemini 0.61.0,
opencode 1.18.33) pointed at tests/support/model_server.py, trimmed of fields the parsers ignore;
"documented" lines follow the shapes the CLIs' documentation and issue trackers show.
"""

from __future__ import annotations

import json

from ralph.agents import get_agent
from ralph.agents.base import AgentSignal, StreamParser

SID = "361b462d-efd0-4373-aee3-17652c26220d"


def feed(parser: StreamParser, lines: list[str | dict], stream="stdout") -> list[AgentSignal]:
    signals: list[AgentSignal] = []
    for line in lines:
        text = line if isinstance(line, str) else json.dumps(line)
        signals += parser.feed(text, stream)
    return signals


# recorded: claude -p --output-format stream-json --verbose, model server in "write" mode
CLAUDE_WRITE = [
    {"type": "system", "subtype": "init", "cwd": "/tmp/w", "session_id": SID,
     "permissionMode": "bypassPermissions"},
    {"type": "assistant", "session_id": SID, "message": {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_68a9", "name": "Write",
         "input": {"file_path": "/tmp/w/hello.txt", "content": "hi there"}}]}},
    {"type": "user", "session_id": SID, "message": {"role": "user", "content": [
        {"tool_use_id": "toolu_68a9", "type": "tool_result",
         "content": "File created successfully at: /tmp/w/hello.txt"}]}},
    {"type": "assistant", "session_id": SID, "message": {"role": "assistant", "content": [
        {"type": "text", "text": "done"}]}},
    {"type": "result", "subtype": "success", "is_error": False, "api_error_status": None,
     "duration_ms": 397, "num_turns": 2, "result": "done", "stop_reason": "end_turn",
     "session_id": SID, "total_cost_usd": 0.015,
     "usage": {"input_tokens": 2400, "cache_creation_input_tokens": 0,
               "cache_read_input_tokens": 0, "output_tokens": 120}},
]  # fmt: skip
# recorded: model server answering 401 / 429 (claude retries 10 times; these are the first two)
CLAUDE_401 = [
    '{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":607.58,'
    '"error_status":401,"error":"authentication_failed","session_id":"07abfc3d"}',
    '{"type":"system","subtype":"api_retry","attempt":2,"max_retries":10,"retry_delay_ms":1132.6,'
    '"error_status":401,"error":"authentication_failed","session_id":"07abfc3d"}',
]
CLAUDE_429 = [
    '{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":1000,'
    '"error_status":429,"error":"rate_limit","session_id":"414db3f0"}',
    '{"type":"system","subtype":"api_retry","attempt":2,"max_retries":10,"retry_delay_ms":1204.6,'
    '"error_status":429,"error":"rate_limit","session_id":"414db3f0"}',
]


def test_claude_result_fills_cost_tokens_session_turns_and_written_paths():
    parser = get_agent("claude").new_parser()
    assert feed(parser, CLAUDE_WRITE) == []
    report = parser.report
    assert report.cost_usd == 0.015
    assert (report.input_tokens, report.output_tokens) == (2400, 120)
    assert (report.session_id, report.num_turns) == (SID, 2)
    assert report.is_error is False and report.result_text == "done"
    assert report.changed_paths == ["/tmp/w/hello.txt"]


def test_claude_input_tokens_include_cache_reads_and_writes():
    parser = get_agent("claude").new_parser()
    feed(parser, [{"type": "result", "subtype": "success", "is_error": False, "usage": {
        "input_tokens": 10, "cache_creation_input_tokens": 200, "cache_read_input_tokens": 3000,
        "output_tokens": 7}}])  # fmt: skip
    assert (parser.report.input_tokens, parser.report.output_tokens) == (3210, 7)


def test_claude_first_401_retry_is_an_auth_failure_signalled_once():
    signals = feed(get_agent("claude").new_parser(), CLAUDE_401)
    assert [s.kind for s in signals] == ["auth_failed"]
    assert "401" in signals[0].message


def test_claude_first_429_retry_is_a_rate_limit_with_its_retry_delay():
    (signal,) = feed(get_agent("claude").new_parser(), CLAUDE_429)
    assert signal.kind == "rate_limited" and signal.retry_after == 1.0


def test_claude_overloaded_retries_are_left_to_claude():
    line = {"type": "system", "subtype": "api_retry", "attempt": 1, "error_status": 529,
            "error": "overloaded"}  # fmt: skip
    assert feed(get_agent("claude").new_parser(), [line]) == []


def test_claude_not_logged_in_result_is_an_auth_failure():
    # recorded: claude without credentials (HOME empty, no ANTHROPIC_API_KEY)
    line = ('{"type":"result","subtype":"success","is_error":true,"api_error_status":null,'
            '"num_turns":1,"result":"Not logged in · Please run /login","session_id":"5d47b881",'
            '"total_cost_usd":0,"usage":{"input_tokens":0,"output_tokens":0}}')  # fmt: skip
    parser = get_agent("claude").new_parser()
    (signal,) = feed(parser, [line])
    assert signal.kind == "auth_failed" and "Not logged in" in signal.message
    assert parser.report.is_error and parser.report.cost_usd == 0


def test_claude_usage_limit_event_carries_the_reset_time():
    # documented: claude >= 2.1.45 emits rate_limit_event; "rejected" means the window is spent
    allowed = {"type": "rate_limit_event", "rate_limit_info": {"status": "allowed_warning"}}
    rejected = {"type": "rate_limit_event", "rate_limit_info": {
        "status": "rejected", "resetsAt": 1778565600, "rateLimitType": "five_hour"}}  # fmt: skip
    (signal,) = feed(get_agent("claude").new_parser(), [allowed, rejected])
    assert signal.kind == "rate_limited" and signal.reset_at == 1778565600


def test_claude_legacy_usage_limit_result_carries_the_epoch_reset():
    # documented: older claude printed "Claude AI usage limit reached|<epoch>"
    line = {"type": "result", "subtype": "success", "is_error": True,
            "result": "Claude AI usage limit reached|1762952400"}  # fmt: skip
    (signal,) = feed(get_agent("claude").new_parser(), [line])
    assert signal.kind == "rate_limited" and signal.reset_at == 1762952400


def use(name, tool_id, **tool_input):
    return {"type": "assistant", "message": {"content": [
        {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}]}}  # fmt: skip


def result(tool_id, is_error=False):
    return {"type": "user", "message": {"content": [
        {"type": "tool_result", "tool_use_id": tool_id, "is_error": is_error,
         "content": "error" if is_error else "ok"}]}}  # fmt: skip


def test_claude_records_edit_and_notebook_paths_once_each():
    parser = get_agent("claude").new_parser()
    calls = [
        use("Edit", "t1", file_path="a.py"),
        use("Read", "t2", file_path="b.py"),
        use("NotebookEdit", "t3", notebook_path="n.ipynb"),
        use("Write", "t4", file_path="a.py"),
    ]
    feed(parser, [*calls, *(result(f"t{n}") for n in (1, 2, 3, 4))])
    assert parser.report.changed_paths == ["a.py", "n.ipynb"]


def test_claude_changed_paths_skip_writes_whose_tool_result_failed():
    parser = get_agent("claude").new_parser()
    feed(parser, [use("Write", "ok", file_path="a.py"), use("Write", "bad", file_path="b.py"),
                  result("bad", is_error=True), result("ok"),
                  use("Edit", "pending", file_path="c.py")])  # fmt: skip
    assert parser.report.changed_paths == ["a.py"]


def test_claude_stderr_error_lines_count_only_when_claude_failed():
    parser = get_agent("claude").new_parser()
    assert parser.feed("{not json", "stdout") == []
    assert parser.feed("Error: Invalid API key · Fix external API key", "stderr") == []
    assert parser.final_signal(0) is None
    signal = parser.final_signal(1)
    assert signal.kind == "auth_failed" and "ANTHROPIC_API_KEY" in signal.fix


# recorded: codex exec --json with openai_base_url at the model server
CODEX_401 = [
    '{"type":"thread.started","thread_id":"01a21e39-6d74-7130-8613-db928ae83a21"}',
    '{"type":"turn.started"}',
    '{"type":"error","message":"Reconnecting... 2/5 (unexpected status 200 OK: {}, '
    'url: ws://127.0.0.1:45799/v1/responses)"}',
    '{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Falling back from '
    'WebSockets to HTTPS transport. unexpected status 200 OK: Unknown error"}}',
    '{"type":"error","message":"Reconnecting... 1/5 (unexpected status 401 Unauthorized: invalid '
    'x-api-key, url: http://127.0.0.1:45799/v1/responses)"}',
    '{"type":"error","message":"Reconnecting... 2/5 (unexpected status 401 Unauthorized: invalid '
    'x-api-key, url: http://127.0.0.1:45799/v1/responses)"}',
]
CODEX_429 = [
    '{"type":"error","message":"Reconnecting... 1/5 (exceeded retry limit, last status: 429 Too '
    'Many Requests)"}',
    '{"type":"turn.failed","error":{"message":"exceeded retry limit, last status: 429 Too Many '
    'Requests"}}',
]


def test_codex_first_401_reconnect_is_an_auth_failure():
    parser = get_agent("codex").new_parser()
    signals = feed(parser, CODEX_401)
    assert [s.kind for s in signals] == ["auth_failed"]
    assert parser.report.session_id == "01a21e39-6d74-7130-8613-db928ae83a21"


def test_codex_waiting_for_network_is_network_down_at_once():
    line = ('{"type":"error","message":"Reconnecting... waiting for network (Connection failed: '
            'error sending request)"}')  # fmt: skip
    (signal,) = feed(get_agent("codex").new_parser(), [line])
    assert signal.kind == "network_down" and signal.fix


def test_codex_missing_key_variable_is_an_auth_failure_naming_the_variable():
    # recorded: codex 0.171.0, a custom provider whose env_key variable is unset
    line = '{"type":"turn.failed","error":{"message":"Missing environment variable: `FAKEKEY`."}}'
    (signal,) = feed(get_agent("codex").new_parser(), [line])
    assert signal.kind == "auth_failed" and "FAKEKEY" in signal.fix


def test_codex_429_is_a_rate_limit_and_the_failed_turn_an_error():
    parser = get_agent("codex").new_parser()
    assert [s.kind for s in feed(parser, CODEX_429)] == ["rate_limited"]
    assert parser.report.is_error and "429" in (parser.report.result_text or "")


def test_codex_usage_limit_message_carries_the_wait():
    # documented: ChatGPT-plan usage limit text
    line = {"type": "error", "message": "You've hit your usage limit. Upgrade to Pro or try again "
            "in 1 hour 20 minutes."}  # fmt: skip
    (signal,) = feed(get_agent("codex").new_parser(), [line])
    assert signal.kind == "rate_limited" and signal.retry_after == 4800


def test_codex_turn_usage_messages_and_file_changes():
    # documented: codex exec --json item and turn events
    lines = [
        {"type": "item.completed", "item": {"id": "item_1", "type": "file_change", "changes": [
            {"path": "src/a.py", "kind": "update"}, {"path": "old.py", "kind": "delete"}],
            "status": "completed"}},
        {"type": "item.completed", "item": {"id": "item_2", "type": "agent_message",
                                            "text": "Done."}},
        {"type": "turn.completed", "usage": {"input_tokens": 24763, "cached_input_tokens": 24448,
                                             "output_tokens": 122}},
    ]  # fmt: skip
    parser = get_agent("codex").new_parser()
    assert feed(parser, lines) == []
    report = parser.report
    assert (report.input_tokens, report.output_tokens, report.num_turns) == (24763, 122, 1)
    assert report.result_text == "Done." and report.changed_paths == ["src/a.py"]
    assert report.cost_usd is None and not report.is_error


# recorded: gemini --output-format stream-json with GOOGLE_GEMINI_BASE_URL at the model server
GEMINI_INIT = ('{"type":"init","timestamp":"2026-11-27T18:19:10.998Z",'
               '"session_id":"5567b797-2080-4948-b123-d949b8a329d5","model":"auto"}')  # fmt: skip
GEMINI_401_RESULT = (
    '{"type":"result","timestamp":"2026-11-27T18:19:11.492Z","status":"error","error":{"type":'
    '"unknown","message":"[API Error: {\\"type\\":\\"error\\",\\"error\\":{\\"type\\":'
    '\\"authentication_error\\",\\"message\\":\\"invalid x-api-key\\"}}]"},"stats":{'
    '"total_tokens":0,"input_tokens":0,"output_tokens":0,"cached":0,"input":0,"duration_ms":0,'
    '"tool_calls":0}}'
)


def test_gemini_429_attempt_on_stderr_is_a_rate_limit_at_once():
    parser = get_agent("gemini").new_parser()
    signals = feed(parser, [GEMINI_INIT]) + feed(parser, [
        "Attempt 1 failed with status 429. Retrying with backoff... _ApiError: {\"type\":\"error\","
        "\"error\":{\"type\":\"rate_limit_error\",\"message\":\"Number of request tokens has "
        "exceeded your per-minute rate limit\"}}", "  status: 429",
        "Attempt 2 failed with status 429. Retrying with backoff...",
    ], stream="stderr")  # fmt: skip
    assert [s.kind for s in signals] == ["rate_limited"]
    assert parser.report.session_id == "5567b797-2080-4948-b123-d949b8a329d5"


def test_gemini_401_on_stderr_and_in_the_result_is_one_auth_failure():
    parser = get_agent("gemini").new_parser()
    signals = feed(parser, ["  status: 401"], stream="stderr") + feed(parser, [GEMINI_401_RESULT])
    assert [s.kind for s in signals] == ["auth_failed"]
    assert parser.report.is_error and "authentication_error" in parser.report.result_text


def test_gemini_quota_error_carries_the_retry_delay():
    # documented: Gemini API RESOURCE_EXHAUSTED text
    line = {"type": "error", "severity": "error", "message": "[API Error: You exceeded your "
            "current quota ... Please retry in 41.2s.] RESOURCE_EXHAUSTED"}  # fmt: skip
    (signal,) = feed(get_agent("gemini").new_parser(), [line])
    assert signal.kind == "rate_limited" and signal.retry_after == 41.2


def test_gemini_messages_writes_and_stats():
    # documented: gemini stream-json message/tool_use/result events
    lines = [
        GEMINI_INIT,
        {"type": "message", "role": "assistant", "content": "Writing ", "delta": True},
        {"type": "tool_use", "tool_name": "write_file", "tool_id": "t1",
         "parameters": {"file_path": "/r/a.txt", "content": "x"}},
        {"type": "message", "role": "assistant", "content": "done", "delta": True},
        {"type": "result", "status": "success", "stats": {"total_tokens": 350,
         "input_tokens": 300, "output_tokens": 50, "cached": 0, "tool_calls": 1}},
    ]  # fmt: skip
    parser = get_agent("gemini").new_parser()
    assert feed(parser, lines) == []
    report = parser.report
    assert (report.input_tokens, report.output_tokens) == (300, 50)
    assert report.result_text == "Writing done" and report.changed_paths == ["/r/a.txt"]
    assert not report.is_error


# recorded: opencode run --format json with its anthropic provider at the model server
OPENCODE_OK = [
    '{"type":"step_start","timestamp":1795803806952,"sessionID":"ses_de1c0b29cffeyDrDeC55VEez7L",'
    '"part":{"type":"step-start"}}',
    '{"type":"text","timestamp":1795803806952,"sessionID":"ses_de1c0b29cffeyDrDeC55VEez7L",'
    '"part":{"type":"text","text":"done"}}',
    '{"type":"step_finish","timestamp":1795803806952,"sessionID":"ses_de1c0b29cffeyDrDeC55VEez7L",'
    '"part":{"reason":"stop","type":"step-finish","tokens":{"total":1260,"input":1200,'
    '"output":60,"reasoning":0,"cache":{"write":0,"read":0}},"cost":0.0045}}',
]


def opencode_error(status: int, message: str, **headers: str) -> str:
    data = {"message": message, "statusCode": status, "isRetryable": status == 429,
            "responseHeaders": headers}  # fmt: skip
    return json.dumps({"type": "error", "sessionID": "ses_de1bfe0c",
                       "error": {"name": "APIError", "data": data}})  # fmt: skip


def test_opencode_step_finish_gives_cost_tokens_and_session():
    parser = get_agent("opencode").new_parser()
    assert feed(parser, OPENCODE_OK) == []
    report = parser.report
    assert report.cost_usd == 0.0045 and (report.input_tokens, report.output_tokens) == (1200, 60)
    assert report.session_id == "ses_de1c0b29cffeyDrDeC55VEez7L" and report.result_text == "done"


def test_opencode_api_errors_are_auth_failures_or_rate_limits():
    (auth,) = feed(get_agent("opencode").new_parser(), [opencode_error(401, "invalid x-api-key")])
    assert auth.kind == "auth_failed"
    parser = get_agent("opencode").new_parser()
    (limit,) = feed(parser, [opencode_error(429, "rate limit", **{"retry-after": "30"})])
    assert limit.kind == "rate_limited" and limit.retry_after == 30
    assert parser.report.is_error


def test_opencode_write_tool_paths():
    # documented: tool_use parts carry the tool's input in state.input
    line = {"type": "tool_use", "part": {"type": "tool", "tool": "write", "state": {
        "status": "completed", "input": {"filePath": "/r/new.py", "content": "x"}}}}  # fmt: skip
    parser = get_agent("opencode").new_parser()
    feed(parser, [line])
    assert parser.report.changed_paths == ["/r/new.py"]


def test_amp_stream_json_is_read_like_claude():
    parser = get_agent("amp").new_parser()
    assert feed(parser, CLAUDE_WRITE) == []
    assert parser.report.cost_usd == 0.015 and parser.report.changed_paths == ["/tmp/w/hello.txt"]


def test_cursor_tool_calls_and_result():
    # documented: cursor-agent stream-json (Claude-like, plus tool_call events)
    lines = [
        {"type": "system", "subtype": "init", "session_id": "c-1", "model": "auto"},
        {"type": "tool_call", "subtype": "completed", "call_id": "x", "session_id": "c-1",
         "tool_call": {"writeToolCall": {"args": {"path": "/r/f.txt", "fileText": "x"},
                                         "result": {"success": {"path": "/r/f.txt"}}}}},
        {"type": "result", "subtype": "success", "is_error": False, "duration_ms": 5000,
         "result": "ok", "session_id": "c-1"},
    ]  # fmt: skip
    parser = get_agent("cursor").new_parser()
    assert feed(parser, lines) == []
    assert parser.report.changed_paths == ["/r/f.txt"] and parser.report.session_id == "c-1"
    assert parser.report.cost_usd is None and parser.report.result_text == "ok"


def test_aider_litellm_auth_error_marks_the_run_failed_and_classifies_as_auth():
    # documented: aider prints litellm exceptions, then exits 0
    parser = get_agent("aider").new_parser()
    line = "litellm.AuthenticationError: AnthropicException - invalid x-api-key"
    assert parser.feed(line, "stdout") == []
    assert parser.report.is_error
    assert parser.final_signal(0).kind == "auth_failed"


def test_aider_rate_limit_retry_time_wrapped_onto_the_next_line_is_read():
    parser = get_agent("aider").new_parser()
    lines = ["litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached",
             "for gpt-4o. Please try again", "in 20s.", "Retrying in 0.2 seconds..."]  # fmt: skip
    feed(parser, lines)
    signal = parser.final_signal(0)
    assert signal.kind == "rate_limited" and signal.retry_after == 20


def test_aider_browser_login_offer_is_an_auth_failure_at_once():
    parser = get_agent("aider").new_parser()
    (signal,) = parser.feed("Please open this URL in your browser to connect Aider with "
                            "OpenRouter:", "stdout")  # fmt: skip
    assert signal.kind == "auth_failed" and "[agents.aider]" in signal.fix


def test_aider_model_prose_about_rate_limiting_is_not_a_signal():
    parser = get_agent("aider").new_parser()
    assert parser.feed("I added a rate limiter and a 429 handler to api.py.", "stdout") == []
    assert parser.feed("Now it says the API provider has rate limited you (429).", "stdout") == []
    assert parser.final_signal(0) is None and not parser.report.is_error


def test_command_agent_reads_cost_from_a_claude_result_line_and_no_free_text():
    parser = get_agent("command", {"command": ["wrapper"]}).new_parser()
    assert feed(parser, [CLAUDE_WRITE[-1]]) == []
    assert parser.report.cost_usd == 0.015 and parser.report.session_id == SID
    assert parser.feed("Error: 429 Too Many Requests; retry-after: 12", "stderr") == []
    assert parser.final_signal(1) is None


def test_command_agent_protocol_lines_and_exit_codes_count_only_on_failure():
    def parser_with(*lines):
        parser = get_agent("command", {"command": ["wrapper"]}).new_parser()
        feed(parser, list(lines), stream="stderr")
        return parser

    limited = parser_with("ralph: rate-limited retry-after 90")
    assert limited.final_signal(0) is None
    assert limited.final_signal(1).retry_after == 90
    until = parser_with("ralph: rate-limited until 2026-11-30T01:00:00Z").final_signal(75)
    assert until.kind == "rate_limited" and until.reset_at == 1796000400
    assert parser_with().final_signal(75).kind == "rate_limited"
    assert parser_with().final_signal(77).kind == "auth_failed"
    auth = parser_with("ralph: auth-failed token expired").final_signal(1)
    assert auth.kind == "auth_failed" and auth.message == "token expired"
    assert parser_with("ralph: network-down").final_signal(1).kind == "network_down"
    assert parser_with().final_signal(1) is None


def test_command_agent_plain_json_output_is_not_mistaken_for_events():
    parser = get_agent("command", {"command": ["wrapper"]}).new_parser()
    assert parser.feed('{"files": 3, "status": "ok"}', "stdout") == []
    assert parser.report.cost_usd is None


def test_aider_token_and_cost_lines_fill_the_report():
    # documented: aider's report after each message
    parser = get_agent("aider").new_parser()
    parser.feed("Tokens: 12k sent, 345 received. Cost: $0.04 message, $0.04 session.", "stdout")
    parser.feed("Tokens: 2.5k sent, 55 received. Cost: $0.01 message, $0.05 session.", "stdout")
    report = parser.report
    assert (report.input_tokens, report.output_tokens) == (14500, 400)
    assert report.cost_usd == 0.05 and report.num_turns == 2


def test_amp_bad_key_on_stderr_is_an_auth_failure_when_amp_fails():
    # recorded (by the CLI facts survey): amp with a rejected AMP_API_KEY
    line = "Error: Invalid or missing API key. Run 'amp login' to authenticate."
    parser = get_agent("amp").new_parser()
    assert parser.feed(line, "stderr") == []
    assert parser.final_signal(1).kind == "auth_failed"


def test_amp_login_flow_is_an_auth_failure_at_once():
    # recorded (by the CLI facts survey): amp with no key
    parser = get_agent("amp").new_parser()
    (signal,) = parser.feed("No API key found. Starting login flow...", "stdout")
    assert signal.kind == "auth_failed" and "AMP_API_KEY" in signal.fix


def test_codex_usage_limit_with_a_clock_time_resets_then():
    line = {"type": "error", "message": "You\u2019ve hit your usage limit. Upgrade to Pro "
            "(https://chatgpt.com/explore/pro) or try again at 10:16 PM."}  # fmt: skip
    (signal,) = feed(get_agent("codex").new_parser(), [line])
    assert signal.kind == "rate_limited" and signal.reset_at is not None


def test_aider_error_retried_away_by_a_later_successful_call_is_no_error():
    parser = get_agent("aider").new_parser()
    lines = ["litellm.InternalServerError: AnthropicException - Overloaded",
             "Retrying in 0.2 seconds...",
             "Tokens: 2.4k sent, 120 received. Cost: $0.01 message, $0.01 session."]  # fmt: skip
    feed(parser, lines)
    assert not parser.report.is_error and parser.final_signal(0) is None


def test_aider_connection_error_wrapped_over_two_lines_is_network_down():
    # aider 0.86 with its API base on a closed port: litellm's error, wrapped by aider's console
    parser = get_agent("aider").new_parser()
    lines = ["litellm.InternalServerError: InternalServerError: OpenAIException - Connection",
             "error.", "The API provider's servers are down or overloaded.",
             "Retrying in 0.2 seconds..."]  # fmt: skip
    feed(parser, lines)
    signal = parser.final_signal(0)
    assert signal is not None and signal.kind == "network_down" and signal.fix


def test_aider_model_prose_about_a_connection_error_is_not_a_signal():
    parser = get_agent("aider").new_parser()
    feed(parser, ["I fixed the Connection", "error. handling in client.py"])
    assert parser.final_signal(0) is None


def test_amp_cannot_reach_its_server_is_network_down():
    parser = get_agent("amp").new_parser()
    lines = ["Error: Couldn't connect to the Amp server at http://127.0.0.1:9.", "",
             "Run `pnpm dev` to start the local server, then try again."]  # fmt: skip
    feed(parser, lines, "stderr")
    signal = parser.final_signal(1)
    assert signal is not None and signal.kind == "network_down"


def test_token_counts_a_cli_did_not_report_stay_unknown_not_zero():
    claude = get_agent("claude").new_parser()
    feed(claude, [{"type": "result", "subtype": "success", "is_error": False, "result": "ok",
                   "usage": {"service_tier": "standard"}}])  # fmt: skip
    codex = get_agent("codex").new_parser()
    feed(codex, [{"type": "turn.completed", "usage": {}}])
    gemini = get_agent("gemini").new_parser()
    feed(gemini, [{"type": "result", "status": "success", "stats": {"duration_ms": 5}}])
    for parser in (claude, codex, gemini):
        assert (parser.report.input_tokens, parser.report.output_tokens) == (None, None)
    codex_known = get_agent("codex").new_parser()
    feed(codex_known, [{"type": "turn.completed", "usage": {"input_tokens": 0,
                                                            "output_tokens": 7}}])  # fmt: skip
    assert (codex_known.report.input_tokens, codex_known.report.output_tokens) == (0, 7)
