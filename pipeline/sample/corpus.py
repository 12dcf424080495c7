"""The bundled sample corpus, built at run time from this Python installation.

Nothing is downloaded and nothing is copied into the repository: the pages, code and
prose all come from the interpreter that runs the pipeline, so the quickstart works
offline. Layout (the sources of `configs/quickstart.yaml`):

    web/*.html           pydoc's HTML page for a fixed list of standard-library modules
    code/...             a fixed, sorted selection of standard-library .py files, plus
                         files a code reader must skip (binary, too large, vendored,
                         __pycache__, not UTF-8)
    prose/*.txt          the language-reference topics of `pydoc_data.topics`, Python's
                         LICENSE, and one file that is not UTF-8
    forum/posts.jsonl    "forum posts" made from real docstrings, with planted work for
                         curation: exact and near duplicates, personal data and secrets
                         (emails, phones, IPs, test card numbers, example IBANs, SSNs, AWS
                         example keys, a private key block, bearer tokens), posts quoting the
                         bundled evaluation task, junk, and exactly one malformed JSON line
    _SUCCESS             JSON marker: Python version, file counts, what was planted

The build runs in a fresh interpreter (`python -I -S` on this very file, started by
pipeline/sample/stage.py): the pages then cannot depend on what the calling process imported
or configured (Ray touches tempfile and logging, for instance), and the same Python gives
byte-identical files. This module imports only the standard library, so it can run that way;
the one project file it reads (the evaluation questions to plant) is passed in by path.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

FORMAT = 2
"""Bump when the builder changes what it writes: an older sample is then rebuilt."""

MARKER = "_SUCCESS"

WEB_MODULES = (
    "abc argparse base64 binascii bisect calendar cmath codecs colorsys concurrent.futures "
    "contextlib copy copyreg csv dataclasses datetime difflib dis doctest "
    "email.message email.utils fnmatch fractions functools getopt gettext glob graphlib gzip "
    "hashlib heapq hmac html html.parser http.client ipaddress itertools json keyword math "
    "netrc numbers operator pickle plistlib pprint queue quopri re reprlib sched secrets "
    "selectors shelve shlex shutil statistics string struct subprocess tarfile textwrap "
    "threading timeit tokenize tomllib traceback types urllib.parse urllib.request "
    "uuid warnings weakref xml.etree.ElementTree zipfile zoneinfo"
).split()
"""Modules whose pydoc page goes into web/. Left out on purpose: pages that show mutable
process state (logging's root logger, tempfile.tempdir, mimetypes.inited, os.environ)
and the largest pages (ast, asyncio, ssl, configparser, unittest)."""

CODE_ROOTS = (
    "collections concurrent dbm email html http json re sqlite3 tomllib "
    "urllib venv wsgiref zoneinfo "
    "abc.py bisect.py calendar.py colorsys.py contextlib.py copy.py csv.py dataclasses.py "
    "fnmatch.py fractions.py functools.py glob.py graphlib.py heapq.py keyword.py numbers.py "
    "operator.py pprint.py queue.py reprlib.py sched.py secrets.py shlex.py statistics.py "
    "string.py textwrap.py timeit.py tokenize.py"
).split()
"""Standard-library packages and modules copied into code/ (tests and __pycache__ excluded)."""

FORUM_MODULES = (
    "base64 binascii bisect calendar cmath codecs colorsys concurrent.futures contextlib copy "
    "csv datetime difflib email.utils fnmatch fractions functools gettext glob graphlib gzip "
    "hashlib heapq html inspect itertools json math operator pickle posixpath pprint queue re "
    "shlex shutil statistics string struct subprocess textwrap threading timeit tokenize "
    "traceback types urllib.parse uuid warnings weakref zipfile zlib"
).split()
"""Modules whose function docstrings become forum posts."""

# Planted personal data: reserved example domains and fictional numbers only
# (US 555-01xx, UK Ofcom drama range 020 7946 0xxx).
EMAILS = ["jane.doe@example.com", "j.smith+python@mail.example.org", "admin@forum.example.org",
          "bob_1987@example.com", "support-team@help.example.org", "alice@example.com"]
PHONES = ["(555) 555-0142", "555-555-0199", "555.555.0123", "+1 555 555 0175",
          "+1-555-555-0110", "+44 20 7946 0958", "+44 20 7946 0321", "1-555-555-0168"]
# Other personal data and secrets: documentation examples and issuers' published test values only.
OTHER_PII = {
    "ip_address": ["8.8.4.4", "2606:4700:4700::1111", "9.9.9.9"],
    "credit_card": ["4111 1111 1111 1111", "5555-5555-5555-4444", "378282246310005"],
    "iban": ["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000"],
    "us_ssn": ["078-05-1120", "123-45-6789"],
    "aws_access_key": ["AKIAIOSFODNN7EXAMPLE"],
    "aws_secret_key": ["aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"],
    "private_key": ["-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
                    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
                    "-----END RSA PRIVATE KEY-----"],
    "bearer_token": ["Bearer eW91IGZvdW5kIGEgcGxhbnRlZCB0b2tlbg"],
}
CODE_TOO_LARGE_BYTES = 260_000
"""Size of the planted generated file: above the code reader's default cap."""


def read_marker(dest: Path) -> dict | None:
    """The marker of a complete corpus built by this Python and builder version, else None."""
    try:
        # a Path or a storage path (pipeline/storage.py); this module itself imports only the standard library
        marker = json.loads(((Path(dest) if isinstance(dest, str) else dest) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if marker.get("python") != sys.version or marker.get("format") != FORMAT:
        return None
    return marker


# ---------------------------------------------------------------- the builder (fresh interpreter)


def build_into(out: Path, eval_questions_file: Path) -> dict:
    """Write the whole corpus into the empty folder `out` (in the fresh interpreter)."""
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    marker = {"format": FORMAT, "python": sys.version, "files": {}, "bytes": {}}
    marker["web_modules"] = _write_web(out / "web", stdlib)
    marker["code_planted"] = _write_code(out / "code", stdlib)
    marker["prose_planted"] = _write_prose(out / "prose", stdlib)
    marker["forum"] = _write_forum(out / "forum" / "posts.jsonl", eval_questions_file)
    marker["pii"] = {"emails": EMAILS, "phones": PHONES, **OTHER_PII}
    for kind in ("web", "code", "prose", "forum"):
        files = [p for p in (out / kind).rglob("*") if p.is_file()]
        marker["files"][kind] = len(files)
        marker["bytes"][kind] = sum(p.stat().st_size for p in files)
    marker["total_bytes"] = sum(marker["bytes"].values())
    (out / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
    return marker


def _write_web(folder: Path, stdlib: Path) -> list[str]:
    import importlib
    import pydoc
    import re

    # Document what each class defines, not what it inherits: pydoc repeats every inherited
    # docstring in every subclass, which makes pages repeat themselves. (Safe to patch: this
    # runs in its own interpreter.)
    own_attrs = pydoc.classify_class_attrs
    pydoc.classify_class_attrs = lambda cls: [a for a in own_attrs(cls) if a[2] is cls]
    folder.mkdir(parents=True)
    written = []
    for name in WEB_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # not in this Python (a module removed or not built)
            continue
        page = pydoc.html.page(pydoc.describe(module), pydoc.html.document(module, name))
        # Keep the pages free of this machine: no install prefix, no object addresses.
        page = page.replace(str(stdlib), "Lib")
        page = re.sub(r"\bat(&nbsp;| )0x[0-9a-fA-F]+", r"at\g<1>0x0", page)
        (folder / f"{name}.html").write_text(page, encoding="utf-8")
        written.append(name)
    return written


def _write_code(folder: Path, stdlib: Path) -> dict:
    import struct
    import zlib

    for root in CODE_ROOTS:
        src = stdlib / root
        if src.is_file():
            _copy(src, folder / root)
        elif src.is_dir():
            for path in sorted(src.rglob("*.py")):
                rel = path.relative_to(stdlib)
                if not {"__pycache__", "test", "tests", "idle_test"} & set(rel.parts):
                    _copy(path, folder / rel)
    planted = {
        # A real PNG (8x8 grey): binary content, caught by its NUL bytes.
        "binary": "assets/logo.png",
        # Generated data far past the size cap.
        "too_large": "generated/unicode_table.py",
        # A vendored copy of a stdlib module and a __pycache__ entry: skipped by path.
        "vendored": "third_party/colorsys.py",
        "build_artifact": "json/__pycache__/decoder.cpython.pyc",
        # A source file saved as Latin-1: not UTF-8.
        "invalid_utf8": "legacy/latin1_module.py",
    }
    png_row = b"\x00" + b"\x80" * 8
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + \
        _png_chunk(b"IDAT", zlib.compress(png_row * 8, 9)) + _png_chunk(b"IEND", b"")
    _write_bytes(folder / planted["binary"], png)
    rows = [f"    0x{i:05X}: ({i % 30}, {i * 7919 % 65536}, {'True' if i % 3 else 'False'}),"
            for i in range(CODE_TOO_LARGE_BYTES // 30)]
    _write_bytes(folder / planted["too_large"], (
        "# Generated by tools/make_table.py. DO NOT EDIT.\nTABLE = {\n" + "\n".join(rows) + "\n}\n"
    ).encode())
    _copy(stdlib / "colorsys.py", folder / planted["vendored"])
    _write_bytes(folder / planted["build_artifact"],
                 b"\xa7\r\r\n\x00\x00\x00\x00" + bytes(range(256)) * 4)
    _write_bytes(folder / planted["invalid_utf8"], (
        '"""Caf\xe9 cr\xe8me: helpers from an old code base saved as Latin-1."""\n\n'
        "def greet(name):\n    return 'Ol\xe1, ' + name + '!'\n").encode("latin-1"))
    return planted


def _write_prose(folder: Path, stdlib: Path) -> dict:
    from pydoc_data.topics import topics

    folder.mkdir(parents=True)
    for name in sorted(topics):
        (folder / f"{name}.txt").write_text(topics[name], encoding="utf-8")
    license_file = stdlib / "LICENSE.txt"
    if license_file.is_file():
        _copy(license_file, folder / "LICENSE.txt")
    planted = {"invalid_utf8": "notes-latin1.txt"}
    (folder / planted["invalid_utf8"]).write_bytes(
        ("Notes from the caf\xe9 meetup, kept in an old editor that saved them as Latin-1. "
         "We talked about the r\xe9sum\xe9 of the project and its na\xefve parser.\n").encode("latin-1"))
    return planted


def _write_forum(path: Path, eval_questions_file: Path) -> dict:
    """Forum posts from real docstrings, then the planted cases; returns what was planted."""
    posts = [{"id": "", "text": text, "url": f"https://forum.example.org/t/{slug}"}
             for slug, text in _docstring_posts()]
    planted = {"exact_duplicates": 0, "near_duplicates": 0, "with_email": 0, "with_phone": 0,
               "too_short": 0, "symbol_soup": 0, "repeated_lines": 0, "malformed_json": 1,
               "contaminated": 0, "other_pii": {kind: 0 for kind in OTHER_PII}}
    extra = []
    # Personal data in otherwise good posts: an email, a phone number, or both.
    for j, i in enumerate(range(11, len(posts), 17)):
        email, phone = EMAILS[j % len(EMAILS)], PHONES[j % len(PHONES)]
        signature = [f"Mail me at {email} if you know more.", f"Or call me on {phone} after 5pm.",
                     f"Contact: {email}, tel. {phone}"][j % 3]
        planted["with_email"] += email in signature
        planted["with_phone"] += phone in signature
        posts[i]["text"] += "\n\n" + signature
    # Other personal data and secrets, one value per post, in "support request" posts.
    values = [(kind, value) for kind, vals in OTHER_PII.items() for value in vals]
    hosts = [i for i, p in enumerate(posts) if len(p["text"].split()) >= 80 and i % 17 != 11]
    for (kind, value), i in zip(values, hosts[1::4]):
        posts[i]["text"] += f"\n\nMy setup, in case it helps: {value}"
        planted["other_pii"][kind] += 1
    # Exact duplicates: the same text reposted (other ids come later, so the original survives).
    for i in range(3, len(posts), 25):
        copies = 2 if i % 2 else 1
        extra += [dict(posts[i], url=posts[i]["url"] + f"?repost={c}") for c in range(copies)]
        planted["exact_duplicates"] += copies
    # Near duplicates of long posts: one word changed and a sign-off added (word 5-shingle
    # Jaccard similarity well above 0.8, for the fuzzy dedup step to find).
    long_posts = [i for i, p in enumerate(posts) if len(p["text"].split()) >= 120]
    for i in long_posts[2::6]:
        text = posts[i]["text"].replace(" the ", " this ", 1)
        extra.append(dict(posts[i], text=text + "\n\nThanks in advance!", url=posts[i]["url"] + "?v=2"))
        planted["near_duplicates"] += 1
    # Posts that quote the bundled evaluation task word for word (for decontamination).
    questions = _eval_questions(eval_questions_file)
    for j, i in enumerate(long_posts[5::20][: len(questions)]):
        text = posts[i]["text"] + f"\n\nBy the way, a quiz I saw yesterday asked: {questions[j]} Any idea?"
        extra.append({"id": "", "text": text, "url": posts[i]["url"] + "?quiz=1"})
        planted["contaminated"] += 1
    # Junk.
    for text in ["thanks!", "+1", "bump", "same problem here, any news?", "solved it, nevermind"]:
        extra.append({"id": "", "text": text, "url": "https://forum.example.org/t/junk"})
        planted["too_short"] += 1
    for k in range(3):
        soup = " ".join(("#$%&*!?"[(k + n) % 7:] + "@@--==++")[: 5 + (n % 4)] for n in range(40))
        extra.append({"id": "", "text": soup, "url": "https://forum.example.org/t/junk"})
        planted["symbol_soup"] += 1
    for line in ["Click here to download the free installer now", "FREE COURSE: learn Python in one day"]:
        extra.append({"id": "", "text": "\n".join([line] * 30), "url": "https://forum.example.org/t/spam"})
        planted["repeated_lines"] += 1
    posts += extra
    for n, post in enumerate(posts, 1):
        post["id"] = f"post-{n:05d}"
    lines = [json.dumps(p, sort_keys=True, ensure_ascii=False) for p in posts]
    middle = len(lines) // 2  # a line cut short, as when a writer dies mid-record
    lines.insert(middle, lines[middle][: len(lines[middle]) // 2])
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    planted["posts"] = len(posts)
    planted["lines"] = len(lines)
    return planted


def _eval_questions(path: Path) -> list[str]:
    """Two long questions of the bundled evaluation task (evaluation/tasks/pyfacts.jsonl)."""
    questions = [json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [q for q in questions if len(q.split()) >= 10][:2]


def _docstring_posts() -> list[tuple[str, str]]:
    import importlib
    import inspect

    asks = ["How does `{q}` work?", "What exactly does `{q}` do?", "Question about `{q}`",
            "Can someone explain `{q}` to me?", "Confused by `{q}`"]
    intros = ["The docs say:", "From help():", "Here is the docstring:", "I read this:"]
    outros = ["Is there an example somewhere?", "What am I missing?",
              "When would I use this instead of writing it myself?", ""]
    posts = []
    for name in FORUM_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for attr, obj in inspect.getmembers(module):
            if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isbuiltin(obj)):
                continue
            if getattr(obj, "__module__", None) not in (module.__name__, None):
                continue  # re-exported from elsewhere
            doc = inspect.getdoc(obj) or ""
            if not 25 <= len(doc.split()) <= 400:
                continue
            n, q = len(posts), f"{name}.{attr}"
            text = "\n\n".join(s for s in (asks[n % 5].format(q=q), intros[n % 4], doc, outros[n % 4]) if s)
            posts.append((f"{name}-{attr}".replace(".", "-").lower(), text))
    return posts


def _copy(src: Path, dst: Path) -> None:
    _write_bytes(dst, src.read_bytes())


def _write_bytes(dst: Path, data: bytes) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


if __name__ == "__main__":
    build_into(Path(sys.argv[1]), Path(sys.argv[2]))
