"""What a document is when its source does not say: source code, prose or markup.

A source of `kind: auto` (the default for `ownlm curate --input PATH`) has each document's
kind decided here, in the reader, so that the quality step routes it like any other row
(code rules for code, text rules for prose). The decision, in order:

1. the record's own kind field (`kind_field`, jsonl and parquet), when it holds a string;
2. the file's extension or name, when the document is a whole file (`format: text` / `code`,
   or those files in an `auto` folder): `.py`, `.c`, `Makefile`, ... are code, `.md` and `.rst`
   prose, `.html`, `.xml`, `.svg` markup;
3. a shebang (`#!/bin/sh`) on the first line: code;
4. the content: markup when it opens like an HTML or XML document or most lines are tags;
   otherwise every line of the first `SAMPLE_LINES` votes code, prose or nothing, and the
   share of code votes is the score (below).

Line votes. A line is code when it has the shape of a statement: it ends in `;`, `{`, `}`,
`:` after a keyword, it opens with a keyword of a programming language (`def`, `return`,
`import`, `#include`, `fi`, ...), an assignment, a call, a decorator, a JSON key, a YAML key
with a short value, a REPL prompt, or identifiers in `snake_case` / `camelCase` / `a.b(`
and a dense share of symbols. A line is prose when it holds at least five words, mostly
alphabetic, few symbols, and reads like a sentence (an English function word, or sentence
punctuation at its end). Comments (block comments too), blank lines, Python docstrings (the lines
between triple quotes) and fenced blocks of Markdown (between ```) do not vote: a module's docstrings do not
make it prose, and the examples in a Markdown page do not make it code.

    score = code / (code + prose + 1)        code when score >= 0.5

The `+ 1` leans short texts to prose: a text needs at least one code line more than its
prose lines to be code (a single statement is code, a single sentence prose, two words
nothing, hence prose). Data files (JSON, YAML, TOML, INI) are code: their lines are keys
and values, and the code rules (line lengths, share of alphanumerics) are the ones that fit.
"""
from __future__ import annotations

import re

CODE, PROSE, MARKUP = "code", "prose", "markup"
"""What the detector tells apart (`meta.kind_detected`)."""

SAMPLE_LINES = 200
SAMPLE_CHARS = 20_000
"""The detector reads at most this many leading lines and characters of a document."""
DECIDED = 16
"""Votes that decide a document when the other side has under a third of them (reading stops)."""

LANGUAGES = {
    ".py": "python", ".pyi": "python", ".pyx": "cython", ".c": "c", ".h": "c", ".cc": "cpp",
    ".cpp": "cpp", ".hpp": "cpp", ".cu": "cuda", ".rs": "rust", ".go": "go", ".java": "java",
    ".kt": "kotlin", ".scala": "scala", ".swift": "swift", ".js": "javascript", ".mjs": "javascript",
    ".ts": "typescript", ".tsx": "typescript", ".rb": "ruby", ".php": "php", ".lua": "lua",
    ".r": "r", ".jl": "julia", ".sh": "shell", ".bash": "shell", ".sql": "sql", ".html": "html",
    ".css": "css", ".json": "json", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml",
    ".md": "markdown", ".rst": "restructuredtext", ".txt": "text", ".cfg": "ini", ".ini": "ini",
}
"""The language of a code file by its extension (`meta.language` of the code reader)."""
NAMED_LANGUAGES = {"Makefile": "make", "Dockerfile": "dockerfile", "CMakeLists.txt": "cmake"}

_PROSE_LANGUAGES = frozenset({"markdown", "restructuredtext"})
_MARKUP_SUFFIXES = (".html", ".htm", ".xhtml", ".xml", ".svg", ".xsl", ".xslt")
_CODE_SUFFIXES = (".jsx", ".cxx", ".hh", ".hxx", ".m", ".mm", ".cs", ".fs", ".hs", ".ml", ".ex", ".exs",
                  ".erl", ".clj", ".dart", ".pl", ".pm", ".ps1", ".bat", ".zsh", ".fish", ".vue", ".scss",
                  ".less", ".proto", ".cmake", ".gradle", ".tf", ".nix", ".el", ".vim", ".asm", ".s")
"""Code extensions beyond `LANGUAGES` (files the code reader labels `text`, but code all the same)."""


def language(rel: str) -> str:
    """A file's language by its name or extension (`text` when unknown)."""
    name = rel.rsplit("/", 1)[-1]
    if name in NAMED_LANGUAGES:
        return NAMED_LANGUAGES[name]
    dot = name.rfind(".")
    return LANGUAGES.get(name[dot:].lower(), "text") if dot > 0 else "text"


def kind_by_name(rel: str) -> str | None:
    """What a file's name says it holds (CODE, PROSE, MARKUP), or None when it says nothing
    (`.txt`, no extension, an unknown one)."""
    name = rel.rsplit("/", 1)[-1]
    lowered = name.lower()
    if lowered.endswith(_MARKUP_SUFFIXES):
        return MARKUP
    lang = language(name)
    if lang in _PROSE_LANGUAGES:
        return PROSE
    if lang != "text" or lowered.endswith(_CODE_SUFFIXES):
        return CODE
    return None


# ---------------------------------------------------------------- line votes

_HARD_START = re.compile(
    r"\s*(?:"
    r"[)\]}]+[;,)\]}]*\s*$"                               # closing brackets alone
    r"|(?:def|class|fn|func|function|sub|proc)\s+[A-Za-z_$][\w$]*\s*[(<:{\[]"   # a definition
    r"|(?:async\s+def|pub\s+fn|impl\b|struct\s+\w+\s*[{;(<]|enum\s+\w+\s*[{:(])"
    r"|import\s+[\w.]+(?:\s+as\s+\w+)?(?:\s*,\s*[\w.]+(?:\s+as\s+\w+)?)*\s*;?\s*$"  # imports
    r"|from\s+\.*[\w.]*\s+import\s+[\w*(]"
    r"|import\s*[{*\'\"]|(?:const|let|var)\s+[\w{\[]+\s*="
    r"|#\s*(?:include|define|if|ifdef|ifndef|endif|else|elif|pragma|import|undef)\b"
    r"|@[A-Za-z_][\w.]*(?:\(.*\))?\s*$"                   # a decorator / annotation
    r"|(?:>>>|\.\.\.|In \[\d+\]:)(?:\s|$)"                  # a REPL prompt
    r"|(?:else|try|finally|except|do|then|fi|done|esac|end|begin|pass|break|continue|"
    r"return|elif\s.*|else\s+if\s.*|except\s.*|while\s.*|for\s.*|if\s.*|with\s.*)\s*:?\s*$(?<=:|\w)"
    r")"
)
"""Lines only code has (with a line ending in `{`): they vote code even where their words read as a sentence."""
_CODE_START = re.compile(
    r"\s*(?:"
    r"(?:return|yield|raise|throw|await|assert|del|global|nonlocal|pub|static|export|echo|local|"
    r"typedef|using|namespace|package|use|let|var|const|unset|alias|source|cd|sudo)\s+\S"
    r"|\$\s+\S"                                             # a shell prompt
    r"|[A-Za-z_$][\w$]*(?:\.[\w$]+|\[[^\]]*\])*\s*(?:[-+*/%|&^]|//|<<|>>|\*\*)?=(?!=)\s*\S"  # assignment
    r"|[A-Za-z_$][\w$.]*\(.*\)\s*;?\s*$"                    # a call alone on its line
    r"|[\"\'][^\"\']*[\"\']\s*:\s*"                          # a JSON / dict key
    r"|-?\s*[a-z_][\w.-]*:(?:\s+\S+(?:\s+\S+){0,3})?\s*$"      # a YAML / INI key with a short value
    r"|\[[\w.\- \"]+\]\s*$"                                # an INI / TOML section
    r"|[{\[].*[}\]][,;]?\s*$"                                # a JSON object or list on one line
    r"|<(?:/?[A-Za-z][\w:.-]*)(?:\s[^>]*)?/?>\s*$"           # a tag alone on its line
    r")"
)
"""Lines that look like statements or data, unless their words read as a sentence."""
_CODE_ENDS = (";", "(", "[", "=>", "->", "\\")
"""A statement ends, a bracket opens, an arrow, a continuation."""
_IDENTIFIER = re.compile(r"\b[a-z][a-z0-9]*_[a-z0-9_]+\b|\b[a-z]+[A-Z][A-Za-z0-9]*\b|\w\.\w+\(|\w\(|[!=<>]=|&&|\|\||::")
_COMMENT = re.compile(r"^\s*(?:#(?!\s*(?:include|define|if|ifdef|ifndef|endif|pragma|import)\b)"
                      r"|//|/\*|\*/|\*\s|\*$|--\s|;;|<!--)")
_RULE = re.compile(r"^\s*([-=*~^#_+.:|`\'\"])\1{2,}\s*$|^\s*[+|][-=+|: ]+[+|]\s*$|^\s*\|.*\|\s*$")
"""Underlines of headings, table borders and table rows: neither code nor prose."""
_QUOTED = re.compile(r'"[^"]*"|`[^`]*`|\*\*?[^*\s][^*]*?\*\*?|(?<![A-Za-z])\'[^\'\n]*\'(?![A-Za-z])')
"""Quoted names, inline code and *emphasis*: prose about code quotes symbols, prose does not type them."""
_SYMBOLS = frozenset("{}[]()<>=;_*&|\\/^~$#@+%`")
_INLINE_CODE_ITEM = re.compile(r"^\s*(?:[-*+]\s+)?`[^`]+`[.,:;]?\s*$")
"""A Markdown list item that only names something in backticks."""
_LINK = re.compile(r"\[([^\]]*)\](?:\([^)]*\))?")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+\u2022]|\d{1,3}[.)])\s+")
_DROP_SYMBOLS = str.maketrans("", "", "".join(_SYMBOLS))
_DROP_PROSE_SYMBOLS = str.maketrans("", "", "".join(_SYMBOLS - frozenset("()")))
_SENTENCE_END = frozenset(".!?:;,\"')")
_FUNCTION_WORDS = frozenset({
    "the", "a", "an", "of", "to", "in", "and", "or", "is", "are", "was", "were", "be", "been", "it", "its",
    "that", "this", "with", "for", "on", "as", "by", "at", "from", "not", "but", "which", "can", "has",
    "have", "will", "would", "there", "their", "they", "you", "we", "he", "she", "when", "so", "than",
    "der", "die", "das", "und", "le", "la", "les", "et", "el", "los", "y", "de"})
_FENCE = re.compile(r"^\s*(?:```|~~~)")

_MARKUP_OPENING = re.compile(r"\s*(?:<\?xml\b|<!doctype\s+html|<html[\s>]|<svg[\s>]|<!--)", re.IGNORECASE)
_TAG_LINE = re.compile(r"^\s*</?[A-Za-z][\w:.-]*(?:\s[^>]*)?/?>")


def _prose_shaped(line: str) -> bool:
    """Five words or more, mostly alphabetic, few symbols (quoted spans, Markdown links and list
    markers aside), a function word."""
    plain = _QUOTED.sub("x", line) if ('"' in line or "`" in line or "*" in line or "'" in line) else line
    if "[" in plain:
        plain = _LINK.sub(r"\1", plain)
    plain = _LIST_MARKER.sub("", plain)
    words = plain.split()
    n = len(words)
    if n < 5:
        return False
    alpha = sum(1 for w in words if w.strip(",.;:!?\"'()[]*").isalpha())
    if alpha < 0.7 * n:
        return False
    symbols = len(plain) - len(plain.translate(_DROP_PROSE_SYMBOLS))
    if symbols > max(1, len(plain) // 30):
        return False
    return any(w.lower().strip(",.;:!?()") in _FUNCTION_WORDS for w in words)


def _line_vote(line: str) -> int:
    """1 for a code line, -1 for a prose line, 0 for a line that says neither."""
    end = line.rstrip()
    if end.endswith("{") or _HARD_START.match(line) or "require(" in line:
        return 1
    if _COMMENT.match(line) or _RULE.match(line) or _INLINE_CODE_ITEM.match(line):
        return 0
    if _prose_shaped(line):
        return -1
    if end.endswith(_CODE_ENDS) or _CODE_START.match(line):
        return 1
    nonspace = len(line) - line.count(" ")
    symbols = len(line) - len(line.translate(_DROP_SYMBOLS))
    if symbols >= 3 and symbols >= 0.15 * nonspace:
        return 1
    return 1 if len(_IDENTIFIER.findall(line)) >= 2 else 0


def line_votes(text: str):
    """(line, vote) for each non-blank line the detector reads: 1 code, -1 prose, 0 none."""
    fenced = quoted = commented = False
    for line in text[:SAMPLE_CHARS].split("\n", SAMPLE_LINES)[:SAMPLE_LINES]:
        if not line.strip():
            continue
        if commented or line.lstrip().startswith("/*"):  # a C-style block comment: prose inside code
            commented = "*/" not in line
            yield line, 0
        elif fence := _FENCE.match(line):
            # ```lang always opens a block; a bare ``` closes the open one (or opens one)
            fenced = not fenced if not line[fence.end():].strip() else True
            yield line, 0
        elif fenced:
            yield line, 0
        elif (triples := line.count('"""') + line.count("\'\'\'")) or quoted:
            if triples % 2:
                quoted = not quoted
            yield line, 1 if triples else 0  # prose never has triple quotes; what they hold does not vote
        else:
            yield line, _line_vote(line)


def code_score(text: str) -> tuple[float, int, int]:
    """(score, code lines, prose lines) over the first lines of `text` (see the module doc); reading
    stops once one side has `DECIDED` votes and three times the other's."""
    code = prose = 0
    for _, vote in line_votes(text):
        if vote > 0:
            code += 1
            if code >= DECIDED and code >= 3 * (prose + 1):
                break
        elif vote < 0:
            prose += 1
            if prose >= DECIDED and prose >= 3 * (code + 1):
                break
    return code / (code + prose + 1), code, prose


def _markup_share(text: str) -> float:
    lines = [line for line in text[:SAMPLE_CHARS].split("\n", SAMPLE_LINES)[:SAMPLE_LINES] if line.strip()]
    return sum(1 for line in lines if _TAG_LINE.match(line)) / len(lines) if lines else 0.0


def detect(text: str, path: str | None = None) -> tuple[str, float, str]:
    """(CODE / PROSE / MARKUP, score, what decided: `extension`, `shebang` or `content`).

    `path` is the file a whole-file document came from (its name may decide); the score is 1.0
    when a name or a shebang decided, else the markup share of lines (markup) or the code score."""
    if path:
        by_name = kind_by_name(path)
        if by_name:
            return by_name, 1.0, "extension"
    if text.startswith("#!"):
        return CODE, 1.0, "shebang"
    if _MARKUP_OPENING.match(text):
        return MARKUP, 1.0, "content"
    share = _markup_share(text) if "<" in text else 0.0
    if share >= 0.5:
        return MARKUP, round(share, 3), "content"
    score, _, _ = code_score(text)
    return (CODE if score >= 0.5 else PROSE), round(score, 3), "content"
