"""detect-secrets' plugins as redaction rules.

detect-secrets (Yelp, pinned in pyproject) is the maintained detector: its plugins know
the formats of cloud, git-host, registry, payment and messaging credentials, JWTs, private
key headers, `key = value` assignments and high-entropy strings. Each plugin reports the
secret values it sees; each runs only when its cheap trigger substrings are present. No
plugin's `verify` is ever called (it would send the secret over the network).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from functools import cache

from daemon.intake.secrets.rules import Finder, Rule, values_finder
from daemon.lazy_imports import defer

log = logging.getLogger(__name__)

# plugin class name -> (our kind, trigger substrings, lower-case)
_REGEX_PLUGINS: dict[str, tuple[str, tuple[str, ...]]] = {
    "AWSKeyDetector": ("aws-access-key", ("akia", "asia", "abia", "acca", "a3t", "aws")),
    "AzureStorageKeyDetector": ("azure-storage-key", ("accountkey=",)),
    "BasicAuthDetector": ("url-credentials", ("://",)),
    "JwtTokenDetector": ("jwt", ("eyj",)),
    "SlackDetector": ("slack-token", ("xox", "hooks.slack.com")),
    "StripeDetector": ("stripe-key", ("k_live_",)),
    "TwilioKeyDetector": ("twilio-key", ("AC", "SK")),
    "GitHubTokenDetector": ("github-token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    "GitLabTokenDetector": ("gitlab-token", ("glpat-", "gldt-", "glft-", "glsoat-", "glrt-",
                                             "gr1348941", "glcbt-", "glimt-", "glptt-",
                                             "glagent-", "gloas-")),
    "NpmDetector": ("npm-token", ("_authtoken",)),
    "PypiTokenDetector": ("pypi-token", ("pypi-age",)),
    "OpenAIDetector": ("openai-key", ("t3blbkfj",)),
    "SendGridDetector": ("sendgrid-key", ("sg.",)),
    "MailchimpDetector": ("mailchimp-key", ("-us",)),
    "SquareOAuthDetector": ("square-token", ("sq0csp-",)),
}
# Left out: Discord's, Telegram's and Artifactory's patterns start with no literal, so they
# cost a scan of every text (10-30 us per 300 characters); formats.py has Telegram's
# token by its ":AA" and the entropy rule takes the others when quoted.
# Twilio's pattern is two capitals and a letter run that matches words in code: its
# trigger is case-sensitive and its values must also look random.
_CASED = {"TwilioKeyDetector"}

KEYWORD_TRIGGERS = ("key", "pass", "pwd", "secret", "contras")
_KEYED = ("key", "token", "secret", "pass", "auth", "sig")


_MODULES = {"AWSKeyDetector": "aws", "AzureStorageKeyDetector": "azure_storage_key",
            "BasicAuthDetector": "basic_auth", "JwtTokenDetector": "jwt",
            "SlackDetector": "slack", "StripeDetector": "stripe", "TwilioKeyDetector": "twilio",
            "GitHubTokenDetector": "github_token", "GitLabTokenDetector": "gitlab_token",
            "NpmDetector": "npm", "PypiTokenDetector": "pypi_token", "OpenAIDetector": "openai",
            "SendGridDetector": "sendgrid", "MailchimpDetector": "mailchimp",
            "SquareOAuthDetector": "square_oauth",
            "KeywordDetector": "keyword", "Base64HighEntropyString": "high_entropy_strings",
            "HexHighEntropyString": "high_entropy_strings"}


@cache
def _plugins() -> dict[str, object]:
    """The plugin classes by name, imported once, on the first redaction. The plugins
    import `requests` for verifying a secret with its service, which memoryd never does:
    it is loaded only if something else asks for it (daemon/lazy_imports.py)."""
    import importlib

    defer("requests")
    out: dict[str, object] = {}
    for name, module in _MODULES.items():
        try:
            out[name] = getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), name)
        except (ImportError, AttributeError):
            log.warning("detect-secrets has no %s plugin (a newer release?); memoryd's own "
                        "formats still cover it, reinstall the pinned version to get it back",
                        name)
    return out


def _regex_rule(name: str, kind: str, triggers: tuple[str, ...]) -> Rule | None:
    cls = _plugins().get(name)
    if cls is None:  # a plugin renamed upstream: the own formats still cover its kind
        return None
    plugin = cls()  # type: ignore[operator]
    if name in _CASED:
        return Rule(kind, triggers, _strict(plugin), cased=True)
    return Rule(kind, triggers, values_finder(plugin.analyze_string, per_line=False))


def _strict(plugin: object) -> Finder:
    """Only the values that also look random."""
    analyze = plugin.analyze_string  # type: ignore[attr-defined]

    def find(text: str) -> Iterable[tuple[int, int]]:
        values = [v for v in analyze(text) if _looks_random(v)]
        return values_finder(lambda _t: values, per_line=False)(text)

    return find


_HEX = frozenset("0123456789abcdefABCDEF")


def _looks_random(value: str) -> bool:
    """Long, with digits, and varied for its alphabet. A hex body (Twilio's `SK` + 32 hex)
    carries at most 4 bits a character, and a random one often less: at 3.5 bits, 2.2 %
    of random `SK` keys were kept (the property test found one); 3.0 misses none of
    20,000 and still needs 4 digits."""
    floor = 3.0 if set(value[2:]) <= _HEX else 3.5
    return (len(value) >= 24 and sum(c.isdigit() for c in value) >= 4
            and entropy(value) >= floor)


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in (value.count(x) for x in set(value)))


def _keyword_rule() -> Rule:
    """`key = value` where the key names a secret: memoryd's own scan (keys found whole,
    values judged by the key's strength and their look), and detect-secrets' keyword
    plugin (its config-file patterns, quotes optional) on the lines where that scan found
    an assignment, so the plugin's costly patterns run only where they can match."""
    from detect_secrets.plugins.keyword import CONFIG_DENYLIST_REGEX_TO_GROUP

    from daemon.intake.secrets.context import KEY_TRIGGERS, key_values

    plugin = _plugins()["KeywordDetector"]()  # type: ignore[operator]

    def analyze(line: str) -> Iterable[str]:
        for value in plugin.analyze_string(line, CONFIG_DENYLIST_REGEX_TO_GROUP):
            value = value.strip()
            if len(value) >= 4 and not _placeholder(value):
                yield value

    in_line = values_finder(analyze, per_line=False)

    def find(text: str) -> Iterable[tuple[int, int]]:
        spans, lines = key_values(text)
        yield from spans
        for start, end in lines:
            line = text[start:end]
            if any(k in line.lower() for k in KEYWORD_TRIGGERS):
                yield from ((start + a, start + b) for a, b in in_line(line))

    return Rule("secret", KEY_TRIGGERS, find)


def _placeholder(value: str) -> bool:
    v = value.lower()
    return (v in ("none", "null", "true", "false", "undefined", "required", "optional")
            or v.startswith(("$", "<", "{", "[redacted", "os.environ", "getenv", "env[",
                             "self.", "cfg.", "config.", "settings.", "args.")))


def _entropy_rule() -> Rule:
    """Quoted base64-looking strings above detect-secrets' default limit (4.5 bits/char);
    quoted hex above its limit (3.0) when the line names a key, token or secret (hex
    alone would take every quoted commit hash and event id)."""
    b64 = _plugins()["Base64HighEntropyString"]()  # type: ignore[operator]
    hexp = _plugins()["HexHighEntropyString"]()  # type: ignore[operator]
    # the plugin's own quoted-string pattern over its charset, from 20 characters: shorter
    # ones cannot pass 4.5 bits/char, and a quoted run never spans a line
    # (one pattern per quote: each starts with a literal, which the regex engine looks for
    # at C speed, where `(['"])...\1` is tried at every position; the charset holds no
    # quote, so the two find the same strings)
    run = "([" + re.escape(b64.charset) + "]{20,}+)"  # possessive: no backtracking
    quoted = (re.compile('"' + run + '"'), re.compile("'" + run + "'"))

    # Entropy is at most log2(distinct characters): a value with fewer distinct
    # characters than this cannot pass the limit, and is not measured (most quoted
    # strings in code and prose: names, paths, messages)
    hex_min = math.floor(2 ** hexp.entropy_limit) + 1
    b64_min = math.floor(2 ** b64.entropy_limit) + 1
    hexdigits = re.compile(r"[0-9a-fA-F]+")

    def find(text: str) -> Iterable[tuple[int, int]]:
        for pattern in quoted:
            yield from judge(text, pattern.finditer(text))

    def judge(text: str, found: Iterable[re.Match[str]]) -> Iterable[tuple[int, int]]:
        for m in found:
            value = m.group(1)
            distinct = len(set(value))
            if distinct < hex_min:
                continue
            if hexdigits.fullmatch(value):
                start = m.start()  # its line: "\x00" ends one too (joinable)
                cut = max(text.rfind("\n", 0, start), text.rfind("\x00", 0, start))
                line = text[cut + 1:start].lower()
                if (any(k in line for k in _KEYED)
                        and hexp.calculate_shannon_entropy(value) > hexp.entropy_limit):
                    yield m.span(1)
            elif (distinct >= b64_min
                  and b64.calculate_shannon_entropy(value) > b64.entropy_limit):
                yield m.span(1)

    return Rule("high-entropy", ('"', "'"), find, joinable=True)


@cache
def detector_rules() -> tuple[Rule, ...]:
    rules = [r for name, (kind, trig) in _REGEX_PLUGINS.items()
             if (r := _regex_rule(name, kind, trig)) is not None]
    return (*rules, _keyword_rule(), _entropy_rule())
