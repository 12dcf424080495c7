"""Personal data and secrets become typed placeholders: `<EMAIL>`, `<PHONE>`, `<IP_ADDRESS>`, ...

The patterns lean towards precision: version numbers (3.11.7), dates, times, private and
documentation IP addresses, hex and other code constants must come through unchanged, so
every numeric kind is checked beyond its shape:

    email          local@domain.tld, not glued to a longer token
    phone          with separators ("555-555-0199", "(555) 555-0142", "+44 20 7946 0958"), 10-15
                   digits (E.164); a bare run of digits is far more often an id or a constant
    ip_address     IPv4 and IPv6 that `ipaddress` accepts; by default public (global) ones only,
                   IPv4 not after "section", "version" and the like (section 8.2.4.36), and IPv6
                   only in the global unicast range 2000::/3 with 3 or more groups, so that
                   slices like `a[1::2]` stay code
    credit_card    13-19 digits (optionally in groups), a known issuer prefix, and the Luhn checksum
    iban           country code, check digits, the country's registered length and the ISO 13616
                   mod-97 checksum
    us_ssn         ddd-dd-dddd outside the never-issued areas (000, 666, 9xx), group 00, serial 0000
    aws_access_key AKIA/ASIA/... key ids; aws_secret_key: 40-character secrets after an AWS key name
    api_key        Google (AIza...), GitHub (ghp_...), Slack (xox...) tokens, Azure AccountKey=...
    private_key    -----BEGIN ... PRIVATE KEY----- blocks, whole
    bearer_token   the token after "Bearer " (the word stays), and JSON Web Tokens

Secrets go first (their digits would otherwise look like phone or card numbers), then the
kinds whose shapes contain others' (an IBAN holds digit runs, an email holds dots).
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Callable

import pyarrow as pa

from pipeline.config.curate import PII_KINDS, PiiConfig
from pipeline.curate.records import kept_mask, set_column

PLACEHOLDERS = {kind: f"<{kind.upper()}>" for kind in PII_KINDS}
EMAIL, PHONE = PLACEHOLDERS["email"], PLACEHOLDERS["phone"]


def pii_column(kind: str) -> str:
    return f"pii_{kind}"


# ---------------------------------------------------------------- patterns

# Patterns start with a character class, not a look-behind, so that `re` can skip ahead to
# candidates quickly; what must not come before or after a match is checked in `_bounded`.
_PRIVATE_KEY = re.compile(r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY(?: BLOCK)?-----.*?"
                          r"-----END \1PRIVATE KEY(?: BLOCK)?-----", re.DOTALL)
_AWS_PREFIXES = ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "APKA")
_AWS_ACCESS_KEY = re.compile(rf"\b(?:{'|'.join(_AWS_PREFIXES)})[A-Z0-9]{{16}}\b")
_API_KEY_PREFIXES = ("AIza", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox", "AccountKey=")
_AWS_SECRET_KEY = re.compile(
    r"(?i)(aws_?secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?)([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])")
_API_KEY = re.compile(
    r"\b(?:AIza[0-9A-Za-z_\-]{35}"                           # Google API key
    r"|gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}"  # GitHub tokens
    r"|xox[abposr]-[A-Za-z0-9-]{10,})(?![\w-])"                # Slack tokens
    r"|(?<=AccountKey=)[A-Za-z0-9+/]{86}==")                   # Azure storage account key
_BEARER = re.compile(r"(?i)(\bbearer\s+)([A-Za-z0-9\-._~+/]{16,}=*)")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
_EMAIL = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._%+\-]*"      # local part
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+"  # domain labels
    r"[A-Za-z]{2,24}"                     # top-level domain
    r"(?![\w\-]|\.\w)"
)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_CARD = re.compile(r"\d(?:[ \-]?\d){12,18}")
_SSN = re.compile(r"\d{3}-\d\d-\d{4}")
_IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
_IPV6 = re.compile(r"[0-9A-Fa-f]{1,4}:(?:[0-9A-Fa-f]{1,4}:){0,6}(?:(?::[0-9A-Fa-f]{1,4}){1,7}|[0-9A-Fa-f]{1,4}|:)")
# international: +country code, an optional (area) or (0), then groups of digits
_PHONE_INTL = re.compile(r"\+\d{1,3}(?:[ .\-]?\(\d{1,4}\)[ .\-]?\d{1,6})?(?:[ .\-]\d{1,6}){1,5}")
# North American: optional 1, area code (with or without parentheses), exchange, line
_PHONE_NANP = re.compile(r"(?:1[ .\-])?(?:\(\d{3}\) ?|\d{3}[ .\-])\d{3}[ .\-]\d{4}")
_NANP_TAIL = re.compile(r"\d{3}[ .\-]\d{4}")  # in every NANP number; found much faster than the whole
# What may not touch a match on either side (a match glued to these is part of something longer).
_GLUE_BEFORE = {
    "email": re.compile(r"[\w.+\-]$"), "card": re.compile(r"[\d.\-/]$"), "ssn": re.compile(r"[\d\-]$"),
    "ipv4": re.compile(r"[\w.\-]$"), "ipv6": re.compile(r"[\w:.]$"), "phone": re.compile(r"[\w+.\-/:]$"),
}
_GLUE_AFTER = {
    "card": re.compile(r"\d|[.\-/]\d"), "ssn": re.compile(r"\d|-\d"), "ipv4": re.compile(r"\w|\.\d"),
    "ipv6": re.compile(r"[\w:]|\.\d"), "phone": re.compile(r"\w|[.\-/:]\d"),
}


def _bounded(name: str, m: re.Match) -> bool:
    """No glue before or after the match `m` (see _GLUE_BEFORE/_GLUE_AFTER)."""
    text, start, end = m.string, m.start(), m.end()
    before, after = _GLUE_BEFORE.get(name), _GLUE_AFTER.get(name)
    if before is not None and start and before.search(text, max(0, start - 1), start):
        return False
    return not (after is not None and after.match(text, end))


# IBAN lengths per country (SWIFT IBAN registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


# ---------------------------------------------------------------- checks


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def card_issuer_ok(digits: str) -> bool:
    """A prefix and length some card network issues (Visa, Mastercard, Amex, Discover, JCB, Diners,
    UnionPay, Maestro)."""
    n, p2, p4 = len(digits), int(digits[:2]), int(digits[:4])
    if digits[0] == "4":
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return n == 16
    if p2 in (34, 37):
        return n == 15
    if digits.startswith(("6011", "65")) or 644 <= int(digits[:3]) <= 649:
        return 16 <= n <= 19
    if 3528 <= p4 <= 3589:
        return 16 <= n <= 19
    if p2 in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:
        return 14 <= n <= 19
    if p2 == 62 or p2 in (50, 56, 57, 58, 67):  # UnionPay, Maestro
        return 12 <= n <= 19
    return False


def iban_ok(candidate: str) -> bool:
    iban = candidate.replace(" ", "")
    if IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


_NUMBERING = re.compile(r"(?:section|sect?\.|§|chapter|clause|paragraph|figure|fig\.|table|step|rule|version|"
                       r"release|rfc\s?\d+#section)\W{0,2}$", re.IGNORECASE)


def numbering(m: re.Match) -> bool:
    """Whether the dotted number `m` follows a word like "section" or "version" (section 8.2.4.36 is
    a place in a document, not a host)."""
    return _NUMBERING.search(m.string, max(0, m.start() - 24), m.start()) is not None


def ip_ok(candidate: str, public_only: bool) -> bool:
    try:
        ip = ipaddress.ip_address(candidate)
    except ValueError:
        return False
    if ip.version == 6:
        groups = [g for g in candidate.split(":") if g]
        if len(groups) < 3 or not 0x2000 <= int(groups[0], 16) <= 0x3FFF:
            return False
    return ip.is_global if public_only else True


# ---------------------------------------------------------------- redaction


def _checked(pattern: re.Pattern, placeholder: str, check: Callable[[re.Match], bool] | None = None,
             group: int = 0):
    """A redactor: replaces matches of `pattern` (or its `group`) that pass `check`; returns (text, count)."""

    def redact(text: str) -> tuple[str, int]:
        count = 0

        def replace(m: re.Match) -> str:
            nonlocal count
            if check is not None and not check(m):
                return m.group()
            count += 1
            if group:
                return m.group()[: m.start(group) - m.start()] + placeholder + m.group()[m.end(group) - m.start():]
            return placeholder

        return pattern.sub(replace, text), count

    return redact


def _digits(m: re.Match) -> str:
    return re.sub(r"\D", "", m.group())


def _card(m: re.Match) -> bool:
    if not _bounded("card", m):
        return False
    raw, digits = m.group(), _digits(m)
    separators = set(re.sub(r"\d", "", raw))
    return len(separators) <= 1 and card_issuer_ok(digits) and luhn_ok(digits)


def _phone(m: re.Match) -> bool:
    # E.164 numbers have at most 15 digits
    return _bounded("phone", m) and 10 <= sum(c.isdigit() for c in m.group()) <= 15


def redactors(cfg: PiiConfig) -> list[tuple[str, Callable[[str], tuple[str, int]], Callable[[str], bool]]]:
    """(kind, redact, worth_trying) for each enabled kind, in application order; `worth_trying` is a
    cheap test that skips the pattern on texts that cannot match."""
    public = cfg.public_ips_only
    table = [
        ("private_key", _checked(_PRIVATE_KEY, PLACEHOLDERS["private_key"]), lambda t: "PRIVATE KEY-----" in t),
        ("aws_access_key", _checked(_AWS_ACCESS_KEY, PLACEHOLDERS["aws_access_key"]),
         lambda t: any(p in t for p in _AWS_PREFIXES)),
        ("aws_secret_key", _checked(_AWS_SECRET_KEY, PLACEHOLDERS["aws_secret_key"], group=2),
         lambda t: "ecret" in t or "ECRET" in t),
        ("api_key", _checked(_API_KEY, PLACEHOLDERS["api_key"]),
         lambda t: any(p in t for p in _API_KEY_PREFIXES)),
        ("bearer_token", _checked(_BEARER, PLACEHOLDERS["bearer_token"], group=2), lambda t: "earer" in t),
        ("bearer_token", _checked(_JWT, PLACEHOLDERS["bearer_token"]), lambda t: "eyJ" in t),
        ("email", _checked(_EMAIL, PLACEHOLDERS["email"], lambda m: _bounded("email", m)), lambda t: "@" in t),
        ("iban", _checked(_IBAN, PLACEHOLDERS["iban"], lambda m: iban_ok(m.group())), lambda t: True),
        ("credit_card", _checked(_CARD, PLACEHOLDERS["credit_card"], _card), lambda t: True),
        ("us_ssn", _checked(_SSN, PLACEHOLDERS["us_ssn"], lambda m: _bounded("ssn", m) and ssn_ok(*m.group().split("-"))),
         lambda t: "-" in t),
        ("ip_address", _checked(_IPV4, PLACEHOLDERS["ip_address"],
                                lambda m: _bounded("ipv4", m) and not numbering(m) and ip_ok(m.group(), public)),
         lambda t: "." in t),
        ("ip_address", _checked(_IPV6, PLACEHOLDERS["ip_address"],
                                lambda m: _bounded("ipv6", m) and ip_ok(m.group(), public)),
         lambda t: "::" in t or t.count(":") >= 7),
        ("phone", _checked(_PHONE_INTL, PLACEHOLDERS["phone"], _phone), lambda t: "+" in t),
        ("phone", _checked(_PHONE_NANP, PLACEHOLDERS["phone"], _phone), lambda t: _NANP_TAIL.search(t) is not None),
    ]
    return [entry for entry in table if entry[0] in cfg.kinds]


def redact(text: str, cfg: PiiConfig | None = None) -> tuple[str, dict[str, int]]:
    """`text` with every enabled kind replaced by its placeholder, and how many of each were replaced."""
    counts: dict[str, int] = {}
    for kind, fn, worth in _redactors(cfg or PiiConfig()):
        if worth(text):
            text, n = fn(text)
            if n:
                counts[kind] = counts.get(kind, 0) + n
    return text, counts


_CACHE: dict[str, list] = {}


def _redactors(cfg: PiiConfig) -> list:
    key = cfg.model_dump_json()
    if key not in _CACHE:
        _CACHE[key] = redactors(cfg)
    return _CACHE[key]


@dataclass(frozen=True)
class RedactPII:
    """The pii step: redacts kept rows and adds per-row counts `pii_<kind>` (0 on rejected rows)."""

    cfg: PiiConfig

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch["text"].to_pylist()
        counts = {kind: [0] * len(texts) for kind in PII_KINDS}
        for i, keep in enumerate(kept_mask(batch)):
            if keep:
                texts[i], found = redact(texts[i], self.cfg)
                for kind, n in found.items():
                    counts[kind][i] = n
        batch = set_column(batch, "text", texts, pa.large_string())
        for kind in PII_KINDS:
            batch = set_column(batch, pii_column(kind), counts[kind], pa.int32())
        return batch
