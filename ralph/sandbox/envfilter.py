"""The environment a sandboxed agent gets: its own provider's credentials and nothing else.

An agent with a provider (claude, codex, gemini, ...; its adapter names `env_prefixes`) gets an
allow-list: the basics below, `RALPH_*`, the variables its adapter sets, its own prefixes, and
`[sandbox] env`. A command agent (no provider) gets the environment minus every variable that
looks like a secret (`*_API_KEY`, `*_TOKEN`, `*_SECRET`, `*_PASSWORD`, ...), unless listed in
`[sandbox] env`. Variables that would point git past the per-attempt view (GIT_DIR, ...) never
pass: the agent's git must be the view bound over its workspace's `.git`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

BASICS = {
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "COLORTERM",
    "NO_COLOR",
    "FORCE_COLOR",
    "TZ",
    "LANG",
    "LANGUAGE",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "PYTHONPATH",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONPYCACHEPREFIX",
    "PYTHONUNBUFFERED",
    "VIRTUAL_ENV",
    "EDITOR",
}
BASIC_PREFIXES = ("RALPH_", "LC_", "GIT_AUTHOR_", "GIT_COMMITTER_")
SECRET = re.compile(
    r"(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|PRIVATE_KEY|ACCESS_KEY)$|^AWS_",
    re.IGNORECASE,
)
GIT_REDIRECTS = {
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_COMMON_DIR",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "GIT_CONFIG_COUNT",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
}


def without_password(url: str) -> str:
    """A store URL (RALPH_DB) without its password: the agent cannot reach the store from the
    sandbox anyway, and a password is a secret like any other."""

    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.password:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host))


def filter_env(
    env: Mapping[str, str],
    *,
    prefixes: Iterable[str] = (),
    names: Iterable[str] = (),
    passthrough: Iterable[str] = (),
) -> dict[str, str]:
    """The variables of `env` the agent may see.

    `prefixes`: the provider's own (e.g. "ANTHROPIC_"); empty means a command agent (everything
    but secrets). `names`: exact names the adapter set or needs (its env_key). `passthrough`:
    `[sandbox] env`, always passed.
    """
    prefixes, keep = tuple(prefixes), set(names) | set(passthrough)
    out: dict[str, str] = {}
    for name, value in env.items():
        if name in keep:
            out[name] = value
        elif name in GIT_REDIRECTS or name.startswith("GIT_CONFIG_"):
            continue
        elif name in BASICS or name.startswith(BASIC_PREFIXES):
            out[name] = value
        elif prefixes:
            if name.startswith(prefixes):
                out[name] = value
        elif not SECRET.search(name):
            out[name] = value
    return out
