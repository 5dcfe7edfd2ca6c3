# ruff: noqa: E501  (a table of formats reads better one per line)
"""Secrets in the formats people really hold, each in the place it is really found.

`SECRETS` are (name, channel, text, secret): `text` holds `secret` where a shell command,
a visited URL, a file or a pushed event would. The values are generated (random, with
the right prefixes and lengths), never real credentials. The same generators feed the
property test, which embeds them in arbitrary text.
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass

_rnd = random.Random(1642)
A = string.ascii_letters + string.digits
LOWER_HEX = "0123456789abcdef"


def rand(n: int, alphabet: str = A, rnd: random.Random = _rnd) -> str:
    return "".join(rnd.choice(alphabet) for _ in range(n))


def _jwt(rnd: random.Random) -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    return (part({"alg": "HS256", "typ": "JWT"}) + "." +
            part({"sub": rand(10, rnd=rnd), "iat": rnd.randrange(10**9)}) + "." +
            rand(43, A + "-_", rnd))


def _pem(kind: str, rnd: random.Random) -> tuple[str, str]:
    body = "\n".join(rand(64, A + "+/", rnd) for _ in range(6))
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----", body.split("\n")[2]


# format name -> a generator of (the secret as it is written, the part that must vanish)
FORMATS: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "aws-access-key-id": lambda r: (s := "AKIA" + rand(16, string.ascii_uppercase + "234567", r), s),
    "aws-secret-key": lambda r: ("aws_secret_access_key = " + (s := rand(40, A + "+/", r)), s),
    "github-pat": lambda r: (s := "ghp_" + rand(36, rnd=r), s),
    "github-fine-grained": lambda r: (s := "github_pat_" + rand(22, rnd=r) + "_" + rand(59, rnd=r), s),
    "gitlab-pat": lambda r: (s := "glpat-" + rand(20, A + "-_", r), s),
    "slack-bot": lambda r: (s := f"xoxb-{r.randrange(10**11, 10**12)}-{r.randrange(10**12, 10**13)}-"
                            + rand(24, rnd=r), s),
    "slack-webhook": lambda r: (s := f"https://hooks.slack.com/services/T{rand(8, rnd=r)}/B"
                                f"{rand(8, rnd=r)}/{rand(24, rnd=r)}", s),
    "stripe-live": lambda r: (s := "sk_live_" + rand(24, rnd=r), s),
    "stripe-test": lambda r: (s := "sk_test_" + rand(24, rnd=r), s),
    "twilio-api-key": lambda r: (s := "SK" + rand(32, LOWER_HEX, r), s),
    "sendgrid": lambda r: (s := "SG." + rand(22, A + "-_", r) + "." + rand(43, A + "-_", r), s),
    "npm-token": lambda r: (s := "npm_" + rand(36, rnd=r), s),
    "pypi-token": lambda r: (s := "pypi-AgEIcHlwaS5vcmc" + rand(80, A + "-_", r), s),
    "openai-key": lambda r: (s := "sk-proj-" + rand(48, A + "-_", r), s),
    "anthropic-key": lambda r: (s := "sk-ant-api03-" + rand(93, A + "-_", r) + "AA", s),
    "google-api-key": lambda r: (s := "AIza" + rand(35, A + "-_", r), s),
    "huggingface": lambda r: (s := "hf_" + rand(34, string.ascii_letters, r), s),
    "azure-storage": lambda r: ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey="
                                + (s := rand(86, A + "+/", r) + "==")
                                + ";EndpointSuffix=core.windows.net", s),
    "jwt": lambda r: (s := _jwt(r), s),
    "rsa-private-key": lambda r: _pem("RSA PRIVATE KEY", r),
    "openssh-private-key": lambda r: _pem("OPENSSH PRIVATE KEY", r),
    "ec-private-key": lambda r: _pem("EC PRIVATE KEY", r),
    "pkcs8-private-key": lambda r: _pem("PRIVATE KEY", r),
    "encrypted-private-key": lambda r: _pem("ENCRYPTED PRIVATE KEY", r),
    "pgp-private-key": lambda r: _pem("PGP PRIVATE KEY BLOCK", r),
    "postgres-url": lambda r: ("postgresql://app:" + (s := rand(16, rnd=r)) + "@db.internal:5432/shop", s),
    "mysql-url": lambda r: ("mysql://root:" + (s := rand(14, rnd=r)) + "@127.0.0.1:3306/app", s),
    "redis-url": lambda r: ("redis://:" + (s := rand(20, rnd=r)) + "@cache:6379/0", s),
    "amqp-url": lambda r: ("amqp://worker:" + (s := rand(18, rnd=r)) + "@rabbit:5672/vhost", s),
    "mongodb-url": lambda r: ("mongodb+srv://admin:" + (s := rand(18, rnd=r))
                              + "@cluster0.example.net/db", s),
    "basic-auth-header": lambda r: ("Authorization: Basic " + (s := base64.b64encode(
        f"deploy:{rand(12, rnd=r)}".encode()).decode()), s),
    "bearer-header": lambda r: ("Authorization: Bearer " + (s := rand(40, A + "._-", r)), s),
    "x-api-key-header": lambda r: ("X-API-Key: " + (s := rand(32, rnd=r)), s),
    "api_key-assignment": lambda r: ("api_key=" + (s := rand(24, rnd=r)), s),
    "access_key-assignment": lambda r: ("access_key=" + (s := rand(20, rnd=r)), s),
    "password-yaml": lambda r: ("password: " + (s := rand(6, rnd=r) + "-" + rand(6, rnd=r)), s),
    "curl-u": lambda r: ("curl -u deploy:" + (s := rand(14, rnd=r)) + " https://api.example.com/v1", s),
    "docker-login": lambda r: ("docker login -u ci -p " + (s := rand(20, rnd=r)) + " registry.example.com", s),
    "twine-p": lambda r: ("twine upload -u __token__ -p " + (s := rand(30, rnd=r)) + " dist/*", s),
    "url-token": lambda r: ("https://app.example.com/share?token=" + (s := rand(32, rnd=r)), s),
    "url-code": lambda r: ("https://app.example.com/oauth/callback?code=" + (s := rand(30, rnd=r))
                           + "&state=xyz", s),
    "url-access-token": lambda r: ("https://app.example.com/#access_token=" + (s := rand(40, rnd=r))
                                   + "&token_type=bearer", s),
    "url-key": lambda r: ("https://maps.example.com/api/js?key=" + (s := rand(30, rnd=r)), s),
    "service-account-json": lambda r: (json.dumps({
        "type": "service_account", "project_id": "demo",
        "private_key_id": (s := rand(40, LOWER_HEX, r)),
        "private_key": _pem("PRIVATE KEY", r)[0] + "\n",
        "client_email": "svc@demo.iam.gserviceaccount.com"}, indent=2), s),
}


@dataclass(frozen=True)
class Case:
    name: str
    channel: str  # shell | browser | files | events
    text: str  # the command, URL, file content or event text
    secret: str


def _channel(name: str, written: str) -> str:
    if name.startswith("url-"):
        return "browser"
    if name in ("curl-u", "docker-login", "twine-p") or name.endswith("-url"):
        return "shell"
    if "private-key" in name or name in ("service-account-json", "azure-storage",
                                         "aws-secret-key", "password-yaml"):
        return "files"
    return "events"


def corpus() -> list[Case]:
    """One case per format, spread over the four channels by where it is usually found;
    token formats are shared out between shell exports, files and pushed events."""
    rnd = random.Random(20261202)
    out: list[Case] = []
    spread = ("shell", "events", "files")
    for i, (name, gen) in enumerate(FORMATS.items()):
        written, secret = gen(rnd)
        channel = _channel(name, written)
        if channel == "events" and not name.endswith("-header") and "assignment" not in name:
            channel = spread[i % 3]
        if channel == "shell" and not written.startswith(("curl", "docker", "twine")):
            if written.startswith("https://"):
                written = f"curl -s -X POST -d @payload.json {written}"
            elif "://" in written:
                written = f"psql '{written}' -c 'select 1'"
            else:
                written = f"printf %s {written} | xclip -selection clipboard"
        out.append(Case(name, channel, written, secret))
    return out
