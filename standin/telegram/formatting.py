"""Telegram's text formatting rules: parse_mode parsing, entity offsets, client-made entities.

A bot that streams model output with a parse_mode sends half-written markup all the time; Telegram
rejects it with "can't parse entities", so the stand-in must too. Offsets are in UTF-16 code units and
error positions in UTF-8 bytes, as in Telegram's answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .wire import ApiError, bad_request

HTML_TAGS = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
    "ins": "underline", "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
    "tg-spoiler": "spoiler", "span": "spoiler", "a": "text_link", "code": "code", "pre": "pre",
    "blockquote": "blockquote", "tg-emoji": "custom_emoji",
}
HTML_ESCAPES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
MARKDOWN_V2_RESERVED = set("_*[]()~`>#+-=|{}.!")
V2_MARKS = {"*": "bold", "__": "underline", "_": "italic", "~": "strikethrough",
            "||": "spoiler"}
V2_NAMES = {"bold": "Bold", "italic": "Italic", "underline": "Underline",
            "strikethrough": "Strikethrough", "spoiler": "Spoiler", "code": "Code", "pre": "Pre",
            "text_link": "TextUrl"}
COMMAND_RE = re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")
MENTION_RE = re.compile(r"(?<![\w@/])@[A-Za-z0-9_]{4,32}")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse_error(reason: str) -> ApiError:
    return bad_request(f"can't parse entities: {reason}")


@dataclass
class _Builder:
    """Accumulates plain text and entities while a marked-up text is scanned."""

    source: str
    chars: list[str] = field(default_factory=list)
    position: int = 0  # UTF-16 offset of the next character
    entities: list[dict[str, Any]] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.chars.append(text)
        self.position += utf16_len(text)

    def entity(self, kind: str, start: int, **extra: Any) -> None:
        if self.position > start:
            self.entities.append({"type": kind, "offset": start, "length": self.position - start,
                                  **extra})

    def byte_offset(self, index: int) -> int:
        return len(self.source[:index].encode("utf-8"))

    def result(self) -> tuple[str, list[dict[str, Any]]]:
        return "".join(self.chars), sorted(self.entities, key=lambda e: e["offset"])


def parse_formatted(text: str, parse_mode: str | None) -> tuple[str, list[dict[str, Any]]]:
    """Plain text and entities of `text` under `parse_mode`, or the ApiError Telegram answers."""
    if not parse_mode:
        return text, []
    mode = parse_mode.lower()
    if mode == "html":
        return _parse_html(text)
    if mode == "markdownv2":
        return _parse_markdown_v2(text)
    if mode == "markdown":
        return _parse_markdown(text)
    raise bad_request("unsupported parse_mode")


def _parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    out = _Builder(text)
    open_tags: list[tuple[str, int, dict[str, str]]] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "&":
            i = _html_escape(text, i, out)
            continue
        if char != "<":
            out.add(char)
            i += 1
            continue
        end = text.find(">", i)
        if end < 0:
            raise parse_error(f"Unclosed start tag at byte offset {out.byte_offset(i)}")
        body = text[i + 1:end]
        if body.startswith("/"):
            name = body[1:].strip().lower()
            if not open_tags:
                raise parse_error(f"Unexpected end tag at byte offset {out.byte_offset(i)}")
            open_name, start, attrs = open_tags.pop()
            if name and name != open_name:
                raise parse_error(
                    f'Unmatched end tag at byte offset {out.byte_offset(i)}, expected '
                    f'"</{open_name}>", found "</{name}>"')
            _close_html(out, open_name, start, attrs)
        else:
            name, attrs = _html_start_tag(body, out.byte_offset(i))
            open_tags.append((name, out.position, attrs))
        i = end + 1
    if open_tags:
        raise parse_error(f'Can\'t find end tag corresponding to start tag "{open_tags[-1][0]}"')
    return out.result()


def _html_escape(text: str, i: int, out: _Builder) -> int:
    match = re.match(r"&(#x[0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);", text[i:])
    if not match:
        out.add("&")
        return i + 1
    name = match.group(1)
    if name.startswith("#x"):
        out.add(chr(int(name[2:], 16)))
    elif name.startswith("#"):
        out.add(chr(int(name[1:])))
    else:
        out.add(HTML_ESCAPES.get(name.lower(), match.group(0)))
    return i + match.end()


def _html_start_tag(body: str, byte_offset: int) -> tuple[str, dict[str, str]]:
    name = re.match(r"[^\s/]*", body).group(0).lower()
    if name not in HTML_TAGS:
        raise parse_error(f'Unsupported start tag "{name}" at byte offset {byte_offset}')
    attrs = dict(re.findall(r'([\w-]+)\s*=\s*["\']([^"\']*)["\']', body))
    if name == "span" and attrs.get("class") != "tg-spoiler":
        raise parse_error(f'Tag "span" must have class "tg-spoiler" at byte offset {byte_offset}')
    return name, attrs


def _close_html(out: _Builder, name: str, start: int, attrs: dict[str, str]) -> None:
    kind = HTML_TAGS[name]
    extra: dict[str, Any] = {}
    if kind == "text_link":
        extra["url"] = attrs.get("href", "")
    elif kind == "custom_emoji":
        extra["custom_emoji_id"] = attrs.get("emoji-id", "")
    elif kind == "pre" and "class" in attrs:
        extra["language"] = attrs["class"].removeprefix("language-")
    out.entity(kind, start, **extra)


def _parse_markdown_v2(text: str) -> tuple[str, list[dict[str, Any]]]:
    out = _Builder(text)
    open_marks: list[tuple[str, int, int]] = []  # kind, utf16 start, byte offset of the mark
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and 0 < ord(text[i + 1]) <= 126:
            out.add(text[i + 1])
            i += 2
            continue
        in_code = open_marks and open_marks[-1][0] in ("code", "pre")
        if in_code:
            i = _v2_in_code(text, i, out, open_marks)
            continue
        if char == "`":
            kind = "pre" if text.startswith("```", i) else "code"
            open_marks.append((kind, out.position, out.byte_offset(i)))
            i += 3 if kind == "pre" else 1
            if kind == "pre" and "\n" in text[i:]:
                i = text.index("\n", i) + 1  # the rest of the opening line names the language
            continue
        if char == ">" and (i == 0 or text[i - 1] == "\n"):
            i = _v2_blockquote_line(text, i + 1, out)
            continue
        if char == "[":
            open_marks.append(("text_link", out.position, out.byte_offset(i)))
            i += 1
            continue
        if char == "]" and open_marks and open_marks[-1][0] == "text_link":
            i = _v2_close_link(text, i, out, open_marks)
            continue
        mark = next((m for m in ("||", "__", "*", "_", "~") if text.startswith(m, i)), None)
        if mark is None:
            if char in MARKDOWN_V2_RESERVED:
                raise parse_error(
                    f"Character '{char}' is reserved and must be escaped with the preceding '\\'")
            out.add(char)
            i += 1
            continue
        _v2_toggle(V2_MARKS[mark], out, open_marks, out.byte_offset(i))
        i += len(mark)
    if open_marks:
        kind, _, byte_offset = open_marks[-1]
        raise parse_error(f"Can't find end of {V2_NAMES[kind]} entity at byte offset {byte_offset}")
    return out.result()


def _v2_blockquote_line(text: str, i: int, out: _Builder) -> int:
    """A '>' line: the rest of the line, itself MarkdownV2, becomes a blockquote."""
    end = text.find("\n", i)
    end = len(text) if end < 0 else end
    line, line_entities = _parse_markdown_v2(text[i:end])
    start = out.position
    out.entities.extend({**e, "offset": e["offset"] + start} for e in line_entities)
    out.add(line)
    out.entity("blockquote", start)
    return end


def _v2_in_code(text: str, i: int, out: _Builder, open_marks: list) -> int:
    kind, start, _ = open_marks[-1]
    closing = "```" if kind == "pre" else "`"
    if text.startswith(closing, i):
        open_marks.pop()
        out.entity(kind, start)
        return i + len(closing)
    out.add(text[i])
    return i + 1


def _v2_close_link(text: str, i: int, out: _Builder, open_marks: list) -> int:
    _, start, byte_offset = open_marks.pop()
    if not text.startswith("(", i + 1) or ")" not in text[i + 2:]:
        raise parse_error(f"Can't find end of a URL at byte offset {out.byte_offset(i)}")
    end = text.index(")", i + 2)
    out.entity("text_link", start, url=text[i + 2:end].replace("\\", ""))
    return end + 1


def _v2_toggle(kind: str, out: _Builder, open_marks: list, byte_offset: int) -> None:
    if open_marks and open_marks[-1][0] == kind:
        _, start, _ = open_marks.pop()
        out.entity(kind, start)
        return
    if any(open_kind == kind for open_kind, _, _ in open_marks):
        _, _, open_offset = next(m for m in open_marks if m[0] == kind)
        raise parse_error(
            f"Can't find end of {V2_NAMES[kind]} entity at byte offset {open_offset}")
    open_marks.append((kind, out.position, byte_offset))


def _parse_markdown(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Legacy Markdown: *bold*, _italic_, `code`, ```pre```, [text](url); no nesting."""
    out = _Builder(text)
    closers = {"*": ("*", "bold"), "_": ("_", "italic"), "```": ("```", "pre"), "`": ("`", "code")}
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "_*`[":
            out.add(text[i + 1])
            i += 2
            continue
        opener = next((m for m in ("```", "`", "*", "_", "[") if text.startswith(m, i)), None)
        if opener is None:
            out.add(text[i])
            i += 1
            continue
        closer, kind = closers.get(opener, ("]", "text_link"))
        end = text.find(closer, i + len(opener))
        if end < 0:
            raise parse_error(
                f"Can't find end of the entity starting at byte offset {out.byte_offset(i)}")
        start = out.position
        out.add(text[i + len(opener):end])
        i = end + len(closer)
        if kind == "text_link":
            url_end = text.find(")", i) if text.startswith("(", i) else -1
            if url_end < 0:
                raise parse_error(f"Can't find end of a URL at byte offset {out.byte_offset(i)}")
            out.entity(kind, start, url=text[i + 1:url_end])
            i = url_end + 1
        else:
            out.entity(kind, start)
    return out.result()


def client_entities(text: str) -> list[dict[str, Any]]:
    """Entities a Telegram client attaches to typed text: bot commands and @mentions."""
    entities: list[dict[str, Any]] = []
    taken: list[range] = []
    for pattern, kind in ((COMMAND_RE, "bot_command"), (MENTION_RE, "mention")):
        for match in pattern.finditer(text):
            if any(match.start() in span for span in taken):
                continue
            taken.append(range(match.start(), match.end()))
            entities.append({"type": kind, "offset": utf16_len(text[:match.start()]),
                             "length": utf16_len(match.group(0))})
    return sorted(entities, key=lambda e: e["offset"])
