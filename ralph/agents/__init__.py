"""Coding-agent adapters: how to launch each CLI and read its output."""

from ralph.agents.base import Agent, AgentReport, AgentSignal, StreamParser
from ralph.agents.registry import get_agent, known_agents, register

__all__ = [
    "Agent",
    "AgentReport",
    "AgentSignal",
    "StreamParser",
    "get_agent",
    "known_agents",
    "register",
]
