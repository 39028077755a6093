"""YAML with line numbers: every value remembers ``file:line``, every problem is collected.

PyYAML's composer gives nodes with marks; this module turns them into ``Node`` values (maps,
lists, scalars kept as the text that was written) and offers a ``Reader`` whose typed getters
never raise: they record a problem naming the file and line and return None, so one pass
reports every mistake in a file at once.

Scalars stay text until a getter asks for a type. That sidesteps YAML 1.1 surprises
(``9:30`` read as the integer 570, ``no`` as False, ``2026-12-24`` as a date) for values
that are really strings.

Aliases, values and nesting are bounded (``MAX_ALIASES``, ``MAX_ALIAS_VALUES``,
``MAX_VALUES``, ``MAX_DEPTH``): a few hundred bytes of nested aliases ("billion laughs")
would otherwise expand to a billion values, and ``a: &a [*a]`` to a loop. The bounds are
constants, not settings: they guard the reading of the very file that would hold the
settings, and no real configuration comes near them. A value reached through several
aliases is converted once and shared, as ``Node`` values are immutable.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import yaml

from dnspol.bounded import read_at_most

T = TypeVar("T")
TRUE_WORDS = {"true", "yes", "on"}
FALSE_WORDS = {"false", "no", "off"}
NULL_WORDS = {"", "~", "null"}
MAX_ALIASES = 10_000  # alias uses (``*name``) in one file
MAX_ALIAS_VALUES = 100_000  # values the aliases of one file stand for, once expanded
MAX_VALUES = 300_000  # values written in one file (~8 s and ~300 MB to read that many)
MAX_DEPTH = 100  # lists and maps inside each other
MAX_FILE_BYTES = 16 * 2**20  # the config file; the default for included rule files


@dataclass(frozen=True, slots=True)
class Node:
    """A YAML value with where it was written.

    ``kind`` is "map" (``value``: dict key text → (key Node, value Node)), "list" (``value``:
    list of Node) or "scalar" (``value``: the text as written; ``quoted`` when it was quoted).
    """

    kind: str
    value: object
    file: str
    line: int
    quoted: bool = False
    plain_null: bool = field(default=False)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def is_null(self) -> bool:
        return self.plain_null

    def items(self) -> Iterable[tuple[str, Node, Node]]:
        """(key text, key node, value node) of a map, in written order."""
        assert self.kind == "map"
        for key, (key_node, value_node) in self.value.items():  # type: ignore[union-attr]
            yield key, key_node, value_node


def parse_yaml(text: str, filename: str, problems: list[str]) -> Node | None:
    """Parse one YAML document. Syntax errors and duplicate keys become problems."""
    loader = _BoundedLoader(text)
    try:
        root = loader.get_single_node()
    except _Refused as refused:
        problems.append(f"{filename}:{refused.line}: {refused}")
        return None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = error.problem or error.context or "invalid YAML"
        problems.append(f"{filename}:{line}: YAML syntax error: {what}")
        return None
    except yaml.YAMLError as error:
        problems.append(f"{filename}:1: YAML error: {error}")
        return None
    finally:
        loader.dispose()
    if root is None:
        return None
    return _convert(root, filename, problems, {})


def read_yaml_file(
    path: str,
    problems: list[str],
    max_bytes: int = MAX_FILE_BYTES,
    limit_name: str = "the largest configuration file",
) -> tuple[Node | None, bytes | None]:
    """Read and parse a file; an unreadable file (or one over ``max_bytes``) is a problem."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size <= max_bytes:
                data = read_at_most(handle, max_bytes)
                size = len(data)
        if size > max_bytes:
            problems.append(
                f"{path}:1: the file is {size:,} bytes, above the limit of {max_bytes:,} "
                f"({limit_name})"
            )
            return None, None
    except OSError as error:
        problems.append(f"{path}:1: cannot read file: {error.strerror or error}")
        return None, None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        problems.append(f"{path}:1: not UTF-8 text ({error.reason})")
        return None, data
    return parse_yaml(text, path, problems), data


class _Refused(Exception):
    """The text is refused at ``line``: too many aliases, an alias loop, too deep."""

    def __init__(self, message: str, mark: yaml.Mark) -> None:
        super().__init__(message)
        self.line = mark.line + 1


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's composer, counting aliases, what they expand to, and depth as it goes.

    The composer itself shares an anchored node between its aliases, so composing stays
    linear; the counts stop the text before anything walks the expansion.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._aliases = 0
        self._alias_values = 0
        self._values = 0
        self._depth = 0
        self._open_anchors: set[str] = set()  # anchored values still being composed
        self._sizes: dict[int, int] = {}  # id(node) → values in it, aliases expanded

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            return self._alias(event)
        if self._depth >= MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        anchor = event.anchor
        if anchor is not None:
            self._open_anchors.add(anchor)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open_anchors.discard(anchor)
        self._values += 1
        if self._values > MAX_VALUES:
            raise _Refused(f"more than {MAX_VALUES:,} values in one file", event.start_mark)
        self._sizes[id(node)] = 1 + sum(self._sizes[id(child)] for child in _children(node))
        return node

    def _alias(self, event: yaml.AliasEvent) -> yaml.Node:
        mark = event.start_mark
        if event.anchor in self._open_anchors:
            raise _Refused(f"alias *{event.anchor} refers to the value it is inside (a loop)", mark)
        self._aliases += 1
        if self._aliases > MAX_ALIASES:
            raise _Refused(f"more than {MAX_ALIASES:,} aliases; write the values out", mark)
        node = super().compose_node(None, None)  # the anchored node (or PyYAML's error)
        self._alias_values += self._sizes[id(node)]
        if self._alias_values > MAX_ALIAS_VALUES:
            raise _Refused(
                f"aliases expand to more than {MAX_ALIAS_VALUES:,} values; write the values out",
                mark,
            )
        return node


def _children(node: yaml.Node) -> Iterable[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return (part for pair in node.value for part in pair)
    return ()


def _convert(node: yaml.Node, filename: str, problems: list[str], done: dict[int, Node]) -> Node:
    """The ``Node`` for ``node``; one reached again through an alias is the same ``Node``."""
    converted = done.get(id(node))
    if converted is None:
        converted = done[id(node)] = _convert_new(node, filename, problems, done)
    return converted


def _convert_new(
    node: yaml.Node, filename: str, problems: list[str], done: dict[int, Node]
) -> Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        try:
            _FLATTENER.flatten_mapping(node)  # YAML merge keys (<<)
        except yaml.MarkedYAMLError as error:
            problems.append(f"{filename}:{line}: YAML merge key error: {error.problem}")
        entries: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = _convert(key_node, filename, problems, done)
            text = key.value if key.kind == "scalar" else ""
            if key.kind != "scalar":
                problems.append(f"{filename}:{key.line}: a key must be plain text")
                continue
            if text in entries:
                first = entries[text][0].line
                problems.append(
                    f"{filename}:{key.line}: duplicate key {text!r} (first written at line {first})"
                )
                continue
            value = _convert(value_node, filename, problems, done)
            entries[text] = (key, value)  # type: ignore[index]
        return Node("map", entries, filename, line)
    if isinstance(node, yaml.SequenceNode):
        items = [_convert(item, filename, problems, done) for item in node.value]
        return Node("list", items, filename, line)
    scalar: yaml.ScalarNode = node  # type: ignore[assignment]
    quoted = scalar.style in ("'", '"', "|", ">")
    is_null = not quoted and scalar.tag == "tag:yaml.org,2002:null"
    return Node("scalar", scalar.value, filename, line, quoted=quoted, plain_null=is_null)


_FLATTENER = yaml.constructor.SafeConstructor()  # only for flatten_mapping (merge keys)


class Reader:
    """Typed access to ``Node`` values that records problems instead of raising."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems

    def problem(self, node: Node | str, message: str) -> None:
        where = node.where if isinstance(node, Node) else node
        self.problems.append(f"{where}: {message}")

    # --- shapes -----------------------------------------------------------------------------

    def mapping(
        self,
        node: Node,
        what: str,
        allowed: Iterable[str] | None,
        required: Iterable[str] = (),
    ) -> dict[str, Node] | None:
        """The map's entries by key; unknown keys are problems with a "did you mean".

        ``allowed`` None: any key (maps keyed by names the user chose).
        """
        if node.kind != "map":
            self.problem(node, f"{what} must be a mapping (key: value), not {describe(node)}")
            return None
        known = None if allowed is None else list(allowed)
        entries: dict[str, Node] = {}
        for key, key_node, value in node.items():
            if known is not None and key not in known:
                self.problem(key_node, f"unknown key {key!r} in {what}{did_you_mean(key, known)}")
                continue
            entries[key] = value
        for key in required:
            if key not in entries:
                self.problem(node, f"{what} needs {key!r}")
        return entries

    def sequence(self, node: Node, what: str, *, scalar_ok: bool = True) -> list[Node] | None:
        """A list; a single scalar counts as a list of one when ``scalar_ok``."""
        if node.kind == "list":
            return list(node.value)  # type: ignore[arg-type]
        if node.kind == "scalar" and scalar_ok and not node.is_null:
            return [node]
        self.problem(node, f"{what} must be a list, not {describe(node)}")
        return None

    # --- scalars ----------------------------------------------------------------------------

    def text(self, node: Node, what: str) -> str | None:
        if node.kind != "scalar" or node.is_null:
            self.problem(node, f"{what} must be text, not {describe(node)}")
            return None
        return str(node.value)

    def texts(self, node: Node, what: str) -> list[tuple[str, Node]]:
        """One text or a list of texts, each with its node (for line numbers)."""
        items = self.sequence(node, what)
        if items is None:
            return []
        if not items:
            self.problem(node, f"{what} is an empty list")
        out = []
        for item in items:
            value = self.text(item, f"each item of {what}")
            if value is not None:
                out.append((value, item))
        return out

    def integer(
        self, node: Node, what: str, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        value = None
        if node.kind == "scalar" and not node.quoted:
            try:
                value = int(str(node.value).replace("_", ""), 10)
            except ValueError:
                value = None
        if value is None:
            self.problem(node, f"{what} must be a whole number, not {describe(node)}")
            return None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bounds = _bounds(minimum, maximum)
            self.problem(node, f"{what} must be {bounds}, not {value}")
            return None
        return value

    def number(self, node: Node, what: str) -> float | None:
        if node.kind == "scalar" and not node.quoted:
            try:
                return float(str(node.value).replace("_", ""))
            except ValueError:
                pass
        self.problem(node, f"{what} must be a number, not {describe(node)}")
        return None

    def boolean(self, node: Node, what: str) -> bool | None:
        word = str(node.value).lower() if node.kind == "scalar" and not node.quoted else None
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        self.problem(node, f"{what} must be true or false, not {describe(node)}")
        return None

    def choice(self, node: Node, what: str, choices: Iterable[str]) -> str | None:
        choices = list(choices)
        value = self.text(node, what)
        if value is None:
            return None
        if value.lower() not in choices:
            options = ", ".join(choices)
            self.problem(
                node, f"{what} {value!r} is not one of {options}{did_you_mean(value, choices)}"
            )
            return None
        return value.lower()

    def convert(self, node: Node, what: str, parse: Callable[[str], T]) -> T | None:
        """Text parsed by ``parse``; its ValueError message becomes the problem."""
        value = self.text(node, what)
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as error:
            self.problem(node, str(error))
            return None


def describe(node: Node) -> str:
    """What a value looks like, for "must be X, not Y" messages."""
    if node.kind == "map":
        return "a mapping"
    if node.kind == "list":
        return "a list"
    if node.is_null:
        return "nothing (empty value)"
    return repr(str(node.value))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, compared without case; or ""."""
    by_lower = {str(choice).lower(): str(choice) for choice in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""


def _bounds(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"between {minimum} and {maximum}"
    if minimum is not None:
        return f"at least {minimum}"
    return f"at most {maximum}"
