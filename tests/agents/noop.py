#!/usr/bin/env python3
"""Fake agent that reads its prompt and changes nothing."""

import sys

sys.stdin.read()
