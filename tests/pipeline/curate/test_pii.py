"""PII redaction: every kind with its typed placeholder, and what is left alone."""
from __future__ import annotations

import pytest
from curate_texts import doc

from pipeline.config.curate import (
    PiiConfig,
)
from pipeline.curate.pii import EMAIL, PHONE, RedactPII, redact
from pipeline.curate.records import make_batch


@pytest.mark.parametrize("text, kind", [
    ("jane.doe@example.com", "email"), ("j.smith+python@mail.example.org", "email"),
    ("(555) 555-0142", "phone"), ("555-555-0199", "phone"), ("+1 555 555 0175", "phone"),
    ("+44 (0)20 7946 0958", "phone"), ("+33 1 99 00 12 34", "phone"),
    ("8.8.4.4", "ip_address"), ("2606:4700:4700::1111", "ip_address"),
    ("4111 1111 1111 1111", "credit_card"), ("5555-5555-5555-4444", "credit_card"), ("378282246310005", "credit_card"),
    ("GB82 WEST 1234 5698 7654 32", "iban"), ("DE89370400440532013000", "iban"),
    ("078-05-1120", "us_ssn"), ("AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
    ("AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", "api_key"), ("ghp_16C7e42F292c6912E7710c838347Ae178B4a", "api_key"),
])
def test_each_kind_is_redacted_with_its_typed_placeholder(text, kind):
    out, counts = redact(f"see {text} here")
    assert out == f"see <{kind.upper()}> here" and counts == {kind: 1}


def test_secrets_keep_their_context():
    out, counts = redact("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
                         "Authorization: Bearer abcdefghijklmnop1234567890\n"
                         "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0")
    assert out == ("aws_secret_access_key = <AWS_SECRET_KEY>\nAuthorization: Bearer <BEARER_TOKEN>\n"
                   "token <BEARER_TOKEN>")
    assert counts == {"aws_secret_key": 1, "bearer_token": 2}
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nQUJD\n-----END OPENSSH PRIVATE KEY-----"
    assert redact(f"my key:\n{key}\nthanks") == ("my key:\n<PRIVATE_KEY>\nthanks", {"private_key": 1})


@pytest.mark.parametrize("text", [
    "Python 3.11.7 and ray 2.60.0", "released 2024-01-15 at 12:30:45", "2023-10-05T12:30:45+00:00",
    "2024.01.15", "192.168.100.200 and 10.0.0.1", "127.0.0.1:8080", "0x7fffffff",
    "sys.maxsize == 9223372036854775807", "1,000,000 rows", "1e-10", "ISBN 978-3-16-148410-0", "range(100, 200)",
    "pi = 3.14159265358979", "x = a @ b", "@property\ndef f(self):", "user@localhost",
    "pip install pkg@git+https://github.com/org/repo", "see RFC 2822 section 3.4.1", "5555550199",
    "00:1B:44:11:3A:B7", "2001:db8::ff00:42:8329", "fe80::1", "::1", "a[1::2] + b[10::20]",
    "/usr/lib/555-555-0199.so", "v1.2.3-555-555", "'+3.140000; -3.140000'", "a = [+1, 2, 3, 4, 5, 6, 7, 8, 9, 10]",
    "OID 1.2.840.113549.1.1.1", "uuid 123e4567-e89b-12d3-a456-426614174000", "4111111111111112 (bad Luhn)",
    "GB82 WEST 1234 5698 7654 33 (bad checksum)", "000-12-3456", "666-12-3456", "the bearer of bad news",
    "AKIA is a key prefix", "version 1.2.3.4.5", "https://tools.ietf.org/html/rfc7231#section-7.1.1.1",
    "the HTML 5 spec, section 8.2.4.36, says", "Version 4.1.2.3 fixed it", "see §12.3.4.5",
])
def test_versions_dates_private_ips_and_code_are_not_redacted(text):
    assert redact(text) == (text, {})


def test_pii_step_counts_per_row_per_kind_and_skips_rejected_rows():
    batch = make_batch([
        doc("mail a@example.com or b@example.org, call 555-555-0199, card 4111 1111 1111 1111"),
        doc("c@example.com", reason="too_short", id_="d2"),
    ])
    out = RedactPII(PiiConfig())(batch)
    assert out["text"].to_pylist() == [f"mail {EMAIL} or {EMAIL}, call {PHONE}, card <CREDIT_CARD>", "c@example.com"]
    assert out["pii_email"].to_pylist() == [2, 0]
    assert out["pii_phone"].to_pylist() == [1, 0] and out["pii_credit_card"].to_pylist() == [1, 0]


def test_pii_kinds_and_public_ip_switches():
    assert redact("a@example.com 555-555-0199", PiiConfig(kinds=["email"])) == (f"{EMAIL} 555-555-0199", {"email": 1})
    assert redact("host 10.1.2.3", PiiConfig(public_ips_only=False)) == ("host <IP_ADDRESS>", {"ip_address": 1})
