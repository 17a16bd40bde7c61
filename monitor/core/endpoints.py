"""The endpoint taxonomy, in one place: which Ollama (and OpenAI/Anthropic-compatible) calls are
inference, enumeration, management, account/cloud, and what is something else (a probe).

Used by the rules, the features and the summary. Source: Ollama's route table
(server/routes.go), summarised in ARCHITECTURE.md.
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import lru_cache


class Category(StrEnum):
    INFERENCE = "inference"  # spends GPU time: generate, chat, embeddings, completions
    ENUMERATION = "enumeration"  # what scanners call first: /, version, tags, ps, show, models
    MANAGEMENT = "management"  # changes the model store: pull, push, create, copy, delete, blobs
    ACCOUNT = "account"  # ollama.com account and cloud features: me, signout, keys, web search
    OTHER = "other"  # anything else: unknown paths, scanner probes, garbage


INFERENCE_PATHS = frozenset(
    {
        "/api/generate",
        "/api/chat",
        "/api/embed",
        "/api/embeddings",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/messages",
        "/v1/audio/transcriptions",
        "/v1/images/generations",
    }
)
ENUMERATION_PATHS = frozenset({"/", "/api/version", "/api/tags", "/api/ps", "/api/show", "/v1/models"})
MANAGEMENT_PATHS = frozenset({"/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete"})
ACCOUNT_PATHS = frozenset(
    {
        "/api/me",
        "/api/signout",
        "/api/experimental/web_search",
        "/api/experimental/web_fetch",
        "/api/web_search",
        "/api/web_fetch",
    }
)
ACCOUNT_PREFIXES = ("/api/user/keys/", "/api/experimental/")
MANAGEMENT_PREFIXES = ("/api/blobs/",)

# Paths that only scanners ask an LLM host for: web-app exploits, secrets, admin panels.
_PROBE = re.compile(
    r"""(?ix)
    (?:^|/)\.(?:env|git|svn|hg|aws|ssh|DS_Store|htaccess|htpasswd|vscode)(?:/|$|\.)
    | (?:^|/)(?:wp-(?:login|admin|content|includes|config)|xmlrpc\.php|phpmyadmin|pma|myadmin|adminer)
    | (?:^|/)(?:cgi-bin|boaform|HNAP1|actuator|solr|jenkins|manager/html|owa|autodiscover|ecp)(?:/|$)
    | \.(?:php\d?|asp|aspx|jsp|cgi|pl|env|sql|bak|old|swp|ini|cfg|conf|yml|yaml|tar|gz|zip|rar|7z)(?:$|\?)
    | (?:\.\./|%2e%2e|\.%2e|%2e\.)          # path traversal
    | (?:etc/passwd|win\.ini|/bin/sh|cmd\.exe|/proc/self)
    | (?:\$\{jndi:|<script|union\s+select|%3cscript)
    | ^/(?:console|druid|vendor|telescope|debug|server-status|server-info|config\.json|api/v1/pods|v2/_catalog)
    """
)


def normalise(path: str | None) -> str:
    """Return the route part of a logged path: no query or fragment, no trailing slash (except '/')."""
    if not path:
        return ""
    route = path.split("?", 1)[0].split("#", 1)[0]
    if route.startswith(("http://", "https://")):  # absolute-URI request line (proxy probes)
        after = route.split("://", 1)[1]
        route = "/" + after.split("/", 1)[1] if "/" in after else "/"
    while "//" in route:
        route = route.replace("//", "/")
    if len(route) > 1:
        route = route.rstrip("/") or "/"
    return route


@lru_cache(maxsize=65536)
def classify(method: str | None, path: str | None) -> Category:
    """Given a request's method and logged path, return its category."""
    route = normalise(path)
    if route in INFERENCE_PATHS:
        return Category.INFERENCE
    if route in MANAGEMENT_PATHS or route.startswith(MANAGEMENT_PREFIXES):
        return Category.MANAGEMENT
    if route in ENUMERATION_PATHS or route.startswith("/v1/models/"):
        return Category.ENUMERATION
    if route in ACCOUNT_PATHS or route.startswith(ACCOUNT_PREFIXES):
        return Category.ACCOUNT
    return Category.OTHER


@lru_cache(maxsize=65536)
def is_probe(path: str | None) -> bool:
    """True for paths that only vulnerability scanners request from an LLM host."""
    if not path:
        return False
    return bool(_PROBE.search(path))
