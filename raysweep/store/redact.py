"""Credentials out of anything a run writes (provenance, logs, messages): `redact`,
`redact_text` and `redact_value` replace with `***`

- URI userinfo and query strings/fragments (`s3://KEY:SECRET@bucket/p?token=T#f` →
  `s3://***@bucket/p?***`),
- the value of any `name=value` / `name: value` whose name looks secret (token, secret,
  password, passwd, pwd, key, credential, auth, signature, cookie), as in `--set
  api_token=...` or `AWS_SECRET_ACCESS_KEY=...`, and the argument after such a flag
  (`--password X`),
- bearer/basic authorization values, AWS-style key ids, well-known token formats (GitHub,
  GitLab, Slack, Hugging Face, OpenAI, Google API keys, JWTs, PEM private keys),
- long high-entropy strings (20+ characters mixing upper case, lower case and digits with
  at least 3.5 bits of entropy per character; 32+ hex digits).

Environment variables are never copied.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any


MASK = "***"

# A name (of a flag, option, key or environment variable) whose value is a secret: it
# contains one of these, or has one of the words below as a word (snake, kebab, camel case).
_SECRET_PARTS = ("token", "secret", "passw", "pwd", "credential", "signature", "cookie",
                 "apikey", "accesskey", "privatekey")
_SECRET_WORDS = {"key", "keys", "keyid", "auth", "authorization", "authentication"}

# Userinfo may hold an unencoded "/" (a secret key pasted as is): everything up to an "@"
# counts, so a rare "@" in a path over-redacts rather than leaks.
_URI_USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^\s@]+@", re.IGNORECASE)
_URI_QUERY = re.compile(r"\b([a-z][a-z0-9+.-]*://[^\s?#]*)[?#][^\s]*", re.IGNORECASE)
_NAME_THEN_VALUE = re.compile(r"([A-Za-z0-9_.\-]+)\s*[=:]\s*")
_VALUE_END = re.compile(r"[\s,;&]|$")
_AUTH_HEADER = re.compile(r"\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/=\-]{8,}", re.IGNORECASE)
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)",
                  re.DOTALL)
_KNOWN_TOKENS = re.compile(
    r"\b(?:(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}"   # AWS key ids
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"       # GitHub
    r"|glpat-[A-Za-z0-9_\-]{20,}"                                      # GitLab
    r"|xox[abprs]-[A-Za-z0-9\-]{10,}"                                  # Slack
    r"|hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_\-]{20,}"                     # Hugging Face, OpenAI
    r"|AIza[A-Za-z0-9_\-]{35}"                                         # Google API keys
    r"|eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*)")  # JWTs
_CANDIDATE = re.compile(r"[A-Za-z0-9_+\-]{20,}={0,2}")
_MIN_ENTROPY_BITS = 3.5   # per character; English words and paths score lower


def redact(argv: list[str]) -> list[str]:
    """The command line with credentials replaced by `***`: each argument through
    `redact_text`, and the argument after a flag whose name looks secret."""
    out = []
    for i, arg in enumerate(argv):
        flag = argv[i - 1] if i else ""
        secret_flag = flag.startswith("-") and "=" not in flag and secret_name(flag)
        out.append(MASK if secret_flag and not arg.startswith("-") else redact_text(arg))
    return out


def redact_text(text: str) -> str:
    """`text` with every credential the module docstring lists replaced by `***`."""
    text = _PEM.sub(MASK, text)
    text = _URI_USERINFO.sub(rf"\1{MASK}@", text)
    text = _URI_QUERY.sub(rf"\1?{MASK}", text)
    text = _AUTH_HEADER.sub(rf"\1\2{MASK}", text)
    text = _mask_assignments(text)
    text = _KNOWN_TOKENS.sub(MASK, text)
    return _CANDIDATE.sub(lambda m: MASK if _looks_random(m.group(0)) else m.group(0), text)


def redact_value(value: Any, name: str = "") -> Any:
    """A YAML/JSON-like value with every string redacted, and every value under a key
    whose name looks secret replaced by `***` (a study's data, a provenance document)."""
    if isinstance(value, dict):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v, name) for v in value]
    if name and secret_name(name) and value not in (None, "", False, True):
        return MASK
    return redact_text(value) if isinstance(value, str) else value


def secret_name(name: str) -> bool:
    """Whether a flag, key or variable called `name` holds a secret (`api_token`,
    `AWS_SECRET_ACCESS_KEY`, `--password`, `clientKey`; not `keyboard` or `author`)."""
    flat = re.sub(r"[^a-z0-9]", "", name.lower())
    words = re.findall(r"[a-z]+", re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name).lower())
    return any(p in flat for p in _SECRET_PARTS) or any(w in _SECRET_WORDS for w in words)


def _mask_assignments(text: str) -> str:
    """Mask the value of every `name=value` / `name: value` whose name looks secret;
    names are found without consuming values (`--set=api_token=X` has two names)."""
    out, pos = [], 0
    for m in _NAME_THEN_VALUE.finditer(text):
        if m.start() < pos or not secret_name(m.group(1)):
            continue
        end = _VALUE_END.search(text, m.end()).start()
        if end > m.end() and text[m.end():end] != MASK:
            out += [text[pos:m.end()], MASK]
            pos = end
    return "".join(out) + text[pos:]


def _looks_random(word: str) -> bool:
    core = word.rstrip("=")
    if len(core) >= 32 and re.fullmatch(r"[0-9a-fA-F]+", core):
        return True  # a hex key or digest
    classes = (re.search(r"[a-z]", core), re.search(r"[A-Z]", core), re.search(r"[0-9]", core))
    if not all(classes):
        return False
    counts = Counter(core)
    entropy = -sum(n / len(core) * math.log2(n / len(core)) for n in counts.values())
    return entropy >= _MIN_ENTROPY_BITS
