"""Personal data redaction: emails and phone numbers become typed placeholders.

The patterns lean towards precision: version numbers (3.11.7), dates (2024-01-15), times,
IP addresses, hex and other code constants must come through unchanged. Phone numbers need
separators ("555-555-0199", "(555) 555-0142", "+44 20 7946 0958"); a bare run of ten
digits is left alone, since in code and data it is far more often an id or a constant.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

from pipeline.curate.config import PiiConfig
from pipeline.curate.records import kept_mask, set_column

EMAIL = "<EMAIL>"
PHONE = "<PHONE>"

_EMAIL = re.compile(
    r"(?<![\w.+\-])"                      # not in the middle of a longer token
    r"[A-Za-z0-9][A-Za-z0-9._%+\-]*"      # local part
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+"  # domain labels
    r"[A-Za-z]{2,24}"                     # top-level domain
    r"(?![\w\-]|\.\w)"
)
_PHONE = re.compile(
    r"(?<![\w+.\-/:])"                    # not glued to a word, version, path or time
    r"(?:"
    # international: +country code, an optional (area) or (0), then groups of digits
    r"\+\d{1,3}(?:[ .\-]?\(\d{1,4}\)[ .\-]?\d{1,6})?(?:[ .\-]\d{1,6}){1,5}"
    r"|"
    # North American: optional 1, area code (with or without parentheses), exchange, line
    r"(?:1[ .\-])?(?:\(\d{3}\) ?|\d{3}[ .\-])\d{3}[ .\-]\d{4}"
    r")"
    r"(?![\w]|[.\-/:]\d)"                 # not followed by more of a number
)


def redact(text: str, emails: bool = True, phones: bool = True) -> tuple[str, int, int]:
    """`text` with emails and phone numbers replaced, and how many of each were replaced."""
    n_email = n_phone = 0
    if emails:
        text, n_email = _EMAIL.subn(EMAIL, text)
    if phones:
        def phone_or_not(match: re.Match) -> str:
            nonlocal n_phone
            digits = sum(c.isdigit() for c in match.group())
            if not 10 <= digits <= 15:  # E.164 numbers have at most 15 digits
                return match.group()
            n_phone += 1
            return PHONE

        text = _PHONE.sub(phone_or_not, text)
    return text, n_email, n_phone


@dataclass(frozen=True)
class RedactPII:
    """The pii step: redacts kept rows and adds per-row counts `pii_email`, `pii_phone` (0 on rejected rows)."""

    cfg: PiiConfig

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts, n_email, n_phone = [], [], []
        for text, keep in zip(batch["text"].to_pylist(), kept_mask(batch)):
            e = p = 0
            if keep:
                text, e, p = redact(text, self.cfg.emails, self.cfg.phones)
            texts.append(text)
            n_email.append(e)
            n_phone.append(p)
        batch = set_column(batch, "text", texts, pa.large_string())
        batch = set_column(batch, "pii_email", n_email, pa.int64())
        return set_column(batch, "pii_phone", n_phone, pa.int64())
