"""A runbook as a list of blocks (headings, paragraphs, list items, tables, code blocks) with their line numbers.

markdown-it-py (CommonMark, with GFM tables) does the parsing; this module only walks its token stream and
keeps what the extractors need: each block's text, its inline code spans, the section it is in and the
1-based line of the runbook it starts on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from markdown_it import MarkdownIt
from markdown_it.token import Token

Kind = Literal["heading", "paragraph", "item", "table", "code"]


@dataclass(frozen=True)
class Section:
    title: str
    level: int
    line: int
    parents: tuple[str, ...] = ()  # the titles of the enclosing headings, outermost first

    @property
    def path(self) -> tuple[str, ...]:
        return (*self.parents, self.title)

    def under(self, *words: str) -> bool:
        """True when this heading or one around it contains one of `words` (case-insensitive)."""
        text = " / ".join(self.path).lower()
        return any(word in text for word in words)


@dataclass(frozen=True)
class Cell:
    text: str
    codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Row:
    line: int
    cells: tuple[Cell, ...]

    def texts(self) -> list[str]:
        return [c.text for c in self.cells]


@dataclass(frozen=True)
class Block:
    kind: Kind
    line: int
    text: str = ""                          # plain text of a heading, paragraph or item; a code block's body
    codes: tuple[str, ...] = ()             # inline code spans, in order
    section: Section | None = None
    lines: tuple[tuple[int, str], ...] = ()  # (line, text) of each source line of a paragraph/item/code block
    lang: str = ""                          # a fenced code block's info string
    depth: int = 0                          # list nesting (1 = a top-level item)
    ordered: bool = False
    header: tuple[str, ...] = ()            # a table's column titles
    rows: tuple[Row, ...] = ()

    def heading_path(self) -> tuple[str, ...]:
        return self.section.path if self.section else ()

    def under(self, *words: str) -> bool:
        return self.section.under(*words) if self.section else False


@dataclass
class Document:
    source: str
    lines: list[str]
    blocks: list[Block] = field(default_factory=list)

    @property
    def title(self) -> str | None:
        first = next((b for b in self.blocks if b.kind == "heading"), None)
        return first.text if first else None

    def raw(self, line: int) -> str:
        """The runbook's text on `line` (1-based), stripped."""
        return self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""

    def after(self, block: Block, limit: int = 3) -> list[Block]:
        """The next `limit` blocks of the same section after `block`."""
        index = self.blocks.index(block)
        found: list[Block] = []
        for other in self.blocks[index + 1:]:
            if other.kind == "heading" or len(found) >= limit:
                break
            found.append(other)
        return found


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


def _inline(token: Token, first_line: int) -> tuple[str, tuple[str, ...], tuple[tuple[int, str], ...]]:
    """Plain text, code spans and per-line text of an inline token (emphasis dropped, code kept as text)."""
    codes: list[str] = []
    lines: list[tuple[int, str]] = []
    line, current = first_line, ""
    for child in token.children or []:
        if child.type in ("text", "html_inline"):
            current += child.content
        elif child.type == "code_inline":
            current += f"`{child.content}`"
            codes.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            lines.append((line, current))
            line, current = line + 1, ""
        elif child.type == "image":
            current += child.content
    lines.append((line, current))
    text = " ".join(part.strip() for _n, part in lines if part.strip())
    return text, tuple(codes), tuple(lines)


def parse(text: str, source: str = "RUNBOOK.md") -> Document:
    """The runbook's blocks in document order."""
    doc = Document(source=source, lines=text.splitlines())
    tokens = _parser().parse(text)
    stack: list[Section] = []
    section: Section | None = None
    lists: list[bool] = []  # ordered? for each open list
    table_header: list[str] = []
    table_rows: list[Row] = []
    row_cells: list[Cell] = []
    table_line = 0
    in_head = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        start = (tok.map[0] + 1) if tok.map else 0
        if tok.type == "heading_open":
            level = int(tok.tag[1:])
            title, _codes, _lines = _inline(tokens[i + 1], start)
            while stack and stack[-1].level >= level:
                stack.pop()
            section = Section(title=title, level=level, line=start, parents=tuple(s.title for s in stack))
            stack.append(section)
            doc.blocks.append(Block("heading", start, title, section=section))
            i += 3
            continue
        if tok.type in ("bullet_list_open", "ordered_list_open"):
            lists.append(tok.type == "ordered_list_open")
        elif tok.type in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif tok.type == "paragraph_open":
            inline = tokens[i + 1]
            text_, codes, lines = _inline(inline, start)
            kind: Kind = "item" if lists else "paragraph"
            doc.blocks.append(Block(kind, start, text_, codes, section, lines, depth=len(lists),
                                    ordered=bool(lists and lists[-1])))
            i += 3
            continue
        elif tok.type in ("fence", "code_block"):
            body = tok.content
            first = start + 1 if tok.type == "fence" else start
            lines = tuple((first + n, line) for n, line in enumerate(body.splitlines()))
            doc.blocks.append(Block("code", start, body, section=section, lines=lines,
                                    lang=tok.info.strip().split(" ")[0].lower() if tok.type == "fence" else "",
                                    depth=len(lists)))
        elif tok.type == "table_open":
            table_header, table_rows, table_line = [], [], start
        elif tok.type == "thead_open":
            in_head = True
        elif tok.type == "thead_close":
            in_head = False
        elif tok.type == "tr_open":
            row_cells = []
        elif tok.type in ("th_open", "td_open"):
            cell_text, codes, _lines = _inline(tokens[i + 1], start)
            row_cells.append(Cell(cell_text, codes))
            i += 3
            continue
        elif tok.type == "tr_close":
            if in_head:
                table_header = [c.text for c in row_cells]
            else:
                row_line = _row_line(tokens, i)
                table_rows.append(Row(row_line, tuple(row_cells)))
        elif tok.type == "table_close":
            doc.blocks.append(Block("table", table_line, section=section, header=tuple(table_header),
                                    rows=tuple(table_rows)))
        i += 1
    return doc


def _row_line(tokens: list[Token], close_index: int) -> int:
    """The line of the row that closes at `close_index` (its tr_open carries the map)."""
    for j in range(close_index, -1, -1):
        found = tokens[j].map
        if tokens[j].type == "tr_open" and found:
            return found[0] + 1
    return 0
