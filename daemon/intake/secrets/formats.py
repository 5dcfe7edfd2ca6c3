"""Token formats by their prefixes, with gitleaks' published rule set as the reference of
what to cover (the patterns are written here, not copied): where detect-secrets has no
plugin (GitHub fine-grained PATs, npm and PyPI tokens outside their config files, Stripe
test keys, Google, Hugging Face, DigitalOcean, Vault, ...) or where its plugin is narrower
than the tokens people hold (any length of `ghp_`, `sk-` keys of every provider)."""

from __future__ import annotations

import re

from daemon.intake.secrets.rules import Rule, regex_rule

_B = ""  # a token starts at a word edge: checked after the match (see regex_rule)
_E = r"(?![A-Za-z0-9_])"

# (kind, triggers, pattern)
_FORMATS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("aws-access-key", ("akia", "asia", "abia", "acca", "a3t", "agpa", "aida", "aroa", "aipa",
                        "anpa", "anva"),
     _B + r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[A-Z0-9]{16}" + _E),
    ("github-token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
     _B + r"(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})"),
    ("gitlab-token", ("glpat-", "gldt-", "glrt-", "glptt-", "glsoat-", "glft-", "glcbt-"),
     _B + r"gl(?:pat|dt|rt|ptt|soat|ft|cbt)-[A-Za-z0-9_-]{20,}"),
    ("api-key", ("sk-",),  # OpenAI, Anthropic, DeepSeek, ...: sk-, sk-proj-, sk-ant-api03-
     _B + r"sk-[A-Za-z0-9_-]{20,}"),
    ("slack-token", ("xox", "xapp-"),
     _B + r"(?:xox[a-z]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{20,})"),
    ("stripe-key", ("sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"),
     _B + r"(?:[sr]k_(?:live|test)_[A-Za-z0-9]{16,}|whsec_[A-Za-z0-9]{24,})"),
    ("sendgrid-key", ("sg.",), _B + r"SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"),
    ("mailgun-key", ("key-",), _B + r"key-[0-9a-f]{32}" + _E),
    ("npm-token", ("npm_",), _B + r"npm_[A-Za-z0-9]{36}" + _E),
    ("pypi-token", ("pypi-",), _B + r"pypi-AgE[A-Za-z0-9_-]{50,}"),
    ("google-api-key", ("aiza",), _B + r"AIza[0-9A-Za-z_-]{35}"),
    ("google-oauth", ("ya29.", "gocspx-"),
     _B + r"(?:ya29\.[0-9A-Za-z_-]{20,}|GOCSPX-[A-Za-z0-9_-]{20,})"),
    ("azure-client-secret", ("q~",), _B + r"[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.-]{31,34}"),
    ("huggingface-token", ("hf_",), _B + r"hf_[A-Za-z]{30,}" + _E),
    ("digitalocean-token", ("_v1_",), _B + r"do[opr]_v1_[a-f0-9]{64}" + _E),
    ("shopify-token", ("shpat_", "shpss_", "shpca_", "shppa_"),
     _B + r"shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}"),
    ("vault-token", ("hvs.", "hvb."), _B + r"hv[sb]\.[A-Za-z0-9_-]{24,}"),
    ("databricks-token", ("dapi",), _B + r"dapi[a-f0-9]{32}(?:-\d)?" + _E),
    ("age-secret-key", ("age-secret-key-",), r"AGE-SECRET-KEY-1[0-9A-Z]{58}"),
    ("doppler-token", ("dp.pt.", "dp.st."), _B + r"dp\.(?:pt|st)\.[A-Za-z0-9]{40,}"),
    ("linear-key", ("lin_api_",), _B + r"lin_api_[A-Za-z0-9]{40}"),
    ("postman-key", ("pmak-",), _B + r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}"),
    ("grafana-token", ("glsa_", "glc_"),
     _B + r"(?:glsa_[A-Za-z0-9_]{32,}|glc_[A-Za-z0-9+/=]{32,})"),
    ("sentry-token", ("sntrys_", "sntryu_"), _B + r"sntry[su]_[A-Za-z0-9+/=_]{40,}"),
    ("heroku-key", ("hrku-",), _B + r"HRKU-[A-Za-z0-9_-]{40,}"),
    ("atlassian-token", ("atatt",), _B + r"ATATT3[A-Za-z0-9_=-]{100,}"),
    ("telegram-token", ("aa",), _B + r"\d{8,10}:AA[A-Za-z0-9_-]{33}"),
    ("jwt", ("eyj",), _B + r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ("slack-webhook", ("hooks.slack.com",),
     r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/]+"),
)


def format_rules() -> tuple[Rule, ...]:
    return tuple(regex_rule(kind, trig, pattern, edge=True) for kind, trig, pattern in _FORMATS)


# The whole block, of every kind (RSA, EC, DSA, OPENSSH, PGP, ENCRYPTED, SSH2), to its END
# line or the end of the text; also with JSON's "\n" escapes (service-account files).
PRIVATE_KEY = regex_rule(
    "private-key", ("private key",),
    r"-----BEGIN[ A-Z0-9_-]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    r".*?(?:-----END[ A-Z0-9_-]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)"
    r"|---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----.*?"
    r"(?:---- END SSH2 ENCRYPTED PRIVATE KEY ----|\Z)",
    re.S)
PUTTY_KEY = regex_rule("private-key", ("private-lines:",),
                       r"(?<=Private-Lines: )\d+\r?\n(?:[A-Za-z0-9+/=]+\r?\n?)+")
