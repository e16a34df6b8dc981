"""Safe YAML parsing that remembers the line of every value, so errors can point at it.

Only plain data comes out: mappings, lists, strings, numbers, booleans and null. No YAML tag is
ever resolved to a constructor, so a case file cannot make Python objects (or run code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

# Only plain YAML data: anything carrying an explicit tag (``!!python/object``, ``!!binary``,
# ``!custom``, even ``!!str``) is refused before a constructor could ever see it.
_IMPLICIT_TAGS = {None, "!"}
# Implicit scalar types that become Python values; every other implicit type (timestamps,
# '=' values, a bare '<<') stays the text it was written as.
_PLAIN_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_NODES = 100_000  # guards against alias bombs ("billion laughs")
_MAX_DEPTH = 64  # case files nest four levels deep; this stops stack exhaustion long before Python would


class YamlMap(dict):
    """A mapping that knows its own line, the line of each key and the source text of scalar values."""

    line: int
    key_lines: dict[str, int]
    texts: dict[str, str]  # key -> the scalar value exactly as written (for "quote it" hints)


class YamlList(list):
    """A sequence that knows its own line, the line of each item and the source text of scalar items."""

    line: int
    item_lines: list[int]
    texts: list[str | None]


def new_map(line: int) -> YamlMap:
    result = YamlMap()
    result.line, result.key_lines, result.texts = line, {}, {}
    return result


@dataclass(frozen=True)
class YamlProblem:
    line: int
    message: str


class YamlSyntaxError(Exception):
    def __init__(self, problems: list[YamlProblem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


class _TagRefusingLoader(yaml.SafeLoader):
    """A SafeLoader whose composer records explicit tags instead of resolving them."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.tag_problems: list[YamlProblem] = []
        self._depth = 0

    def _check_tag(self) -> None:
        event = self.peek_event()
        tag = getattr(event, "tag", None)
        if tag not in _IMPLICIT_TAGS:
            tag = str(tag).replace("tag:yaml.org,2002:", "!!")  # show it as the user wrote it
            self.tag_problems.append(
                YamlProblem(
                    event.start_mark.line + 1,
                    f"YAML tag {tag!r} is not allowed; case files hold plain data only "
                    "(remove the tag, and quote the value if it should be a string)",
                )
            )

    def _enter(self) -> None:
        self._depth += 1
        if self._depth > _MAX_DEPTH:
            line = self.peek_event().start_mark.line + 1
            raise YamlSyntaxError([YamlProblem(line, f"the data is nested more than {_MAX_DEPTH} levels deep")])

    def compose_scalar_node(self, anchor):  # type: ignore[no-untyped-def]
        self._check_tag()
        return super().compose_scalar_node(anchor)

    def compose_sequence_node(self, anchor):  # type: ignore[no-untyped-def]
        self._check_tag()
        self._enter()
        try:
            return super().compose_sequence_node(anchor)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor):  # type: ignore[no-untyped-def]
        self._check_tag()
        self._enter()
        try:
            return super().compose_mapping_node(anchor)
        finally:
            self._depth -= 1


def _syntax_problem(exc: yaml.MarkedYAMLError) -> YamlProblem:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else 1
    where = f"YAML syntax error at line {line}, column {mark.column + 1}" if mark else "YAML syntax error"
    problem, context = exc.problem or "", exc.context or ""
    cm = exc.context_mark
    if context and cm is not None and cm is not mark:
        context = f"{context} at line {cm.line + 1}, column {cm.column + 1}"
    if not problem or not context:
        what = problem or context or "invalid YAML"
    elif problem.startswith("but "):
        # "expected a single document in the stream at line 1, column 1 but found another document"
        what = f"{context} {problem}"
    else:
        # "found unexpected end of stream (while scanning a quoted scalar at line 3, column 13)"
        what = f"{problem} ({context})"
    return YamlProblem(line, f"{where}: {what}")


def parse_yaml(text: str) -> Any:
    """Parse ``text`` into YamlMap / YamlList / scalars; raise YamlSyntaxError on any problem.

    Returns None for an empty document.
    """
    loader = _TagRefusingLoader(text)
    try:
        node = loader.get_single_node()
        if loader.tag_problems:
            raise YamlSyntaxError(loader.tag_problems)
        if node is None:
            return None
        converter = _Converter(loader)
        document = converter.convert(node)
        if converter.problems:
            raise YamlSyntaxError(converter.problems)
        return document
    except yaml.MarkedYAMLError as exc:
        raise YamlSyntaxError([_syntax_problem(exc)]) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError([YamlProblem(1, f"YAML syntax error: {exc}")]) from None
    except RecursionError:
        raise YamlSyntaxError(
            [YamlProblem(1, "the data is nested too deeply (or an alias refers to itself)")]
        ) from None
    finally:
        loader.dispose()


class _Converter:
    def __init__(self, loader: yaml.SafeLoader) -> None:
        self._loader = loader
        self._count = 0
        self._open: set[int] = set()  # collections being converted, to catch an alias to an ancestor
        self._merge_cache: dict[int, dict[str, tuple[yaml.Node, yaml.Node]]] = {}
        self.problems: list[YamlProblem] = []  # texts that are not valid Unicode

    def convert(self, node: yaml.Node) -> Any:
        self._count += 1
        line = node.start_mark.line + 1
        if self._count > _MAX_NODES:
            raise YamlSyntaxError([YamlProblem(line, "the document is too large (alias expansion?)")])
        if isinstance(node, yaml.ScalarNode):
            value = self._loader.construct_object(node, deep=True) if node.tag in _PLAIN_SCALAR_TAGS else node.value
            if isinstance(value, str):
                self._check_text(value, line)
            return value
        if id(node) in self._open:
            raise YamlSyntaxError([YamlProblem(line, "an alias refers to a collection that contains it")])
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, line)
            return self._sequence(node, line)
        finally:
            self._open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, line: int) -> YamlMap:
        result = new_map(line)
        # Keys merged in with '<<: *anchor' first; the mapping's own keys override them.
        for key, (key_node, value_node) in self._merged(node).items():
            self._put(result, key, key_node, value_node)
        own_lines: dict[str, int] = {}
        duplicates = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node)
            if key in own_lines:
                duplicates.append(
                    YamlProblem(
                        key_node.start_mark.line + 1,
                        f"key {key!r} appears twice in the same mapping (first on line {own_lines[key]}); keep one",
                    )
                )
                continue
            own_lines[key] = key_node.start_mark.line + 1
            self._put(result, key, key_node, value_node)
        if duplicates:
            raise YamlSyntaxError(duplicates)
        return result

    def _put(self, result: YamlMap, key: str, key_node: yaml.Node, value_node: yaml.Node) -> None:
        result[key] = self.convert(value_node)
        result.key_lines[key] = key_node.start_mark.line + 1
        result.texts.pop(key, None)
        if isinstance(value_node, yaml.ScalarNode):
            result.texts[key] = value_node.value

    def _merged(self, node: yaml.MappingNode) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """The pairs a mapping's '<<' keys bring in, the first source of each key winning."""
        if id(node) in self._merge_cache:
            return self._merge_cache[id(node)]
        pairs: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                self._count += 1
                line = source.start_mark.line + 1
                if not isinstance(source, yaml.MappingNode):
                    raise YamlSyntaxError([YamlProblem(line, "'<<' merges only mappings, e.g. <<: *common")])
                if id(source) in self._open or source is node:
                    raise YamlSyntaxError([YamlProblem(line, "a '<<' merge refers to a mapping that contains it")])
                self._open.add(id(source))
                try:
                    inherited = self._merged(source)
                finally:
                    self._open.discard(id(source))
                for key, pair in inherited.items():
                    pairs.setdefault(key, pair)
                for pair in source.value:
                    if pair[0].tag != _MERGE_TAG:
                        pairs.setdefault(self._key(pair[0]), pair)
        self._merge_cache[id(node)] = pairs
        return pairs

    def _key(self, key_node: yaml.Node) -> str:
        if not isinstance(key_node, yaml.ScalarNode):
            raise YamlSyntaxError(
                [YamlProblem(key_node.start_mark.line + 1, "mapping keys must be plain words, such as 'prompt'")]
            )
        # Keys are matched as written: 'yes:' is the key 'yes', not True.
        self._check_text(key_node.value, key_node.start_mark.line + 1)
        return key_node.value

    def _check_text(self, text: str, line: int) -> None:
        # A "\ud800" escape gives a lone surrogate: not a character, and no tokenizer, PNG chunk or
        # JSON writer in the run can encode it.
        bad = next((char for char in text if "\ud800" <= char <= "\udfff"), None)
        if bad is not None:
            problem = YamlProblem(
                line,
                f"the text holds U+{ord(bad):04X}, a lone surrogate (from a \\u escape), which is not a character; "
                "remove it, or write the character itself (or its \\U00XXXXXX escape)",
            )
            if problem not in self.problems:
                self.problems.append(problem)

    def _sequence(self, node: yaml.SequenceNode, line: int) -> YamlList:
        seq = YamlList(self.convert(item) for item in node.value)
        seq.line = line
        seq.item_lines = [item.start_mark.line + 1 for item in node.value]
        seq.texts = [item.value if isinstance(item, yaml.ScalarNode) else None for item in node.value]
        return seq


def has_top_level_key(text: str, key: str) -> bool | None:
    """Whether the document's top level is a mapping with ``key``, read from parse events only.

    No node is built and nothing is constructed, and the scan stops at the answer, so recursing a
    repository through its CI workflows and compose files stays cheap. Keys are compared as YAML reads
    them ('"cases":' and flow style '{cases: ...}' are the key 'cases'). None: a syntax error came
    before the answer.
    """
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_class(text.removeprefix("\ufeff"))
    depth = 0
    expecting_key = False  # at depth 1 of a top-level mapping: is the next node a key?
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if depth == 0 and not isinstance(event, yaml.MappingStartEvent):
                    return False  # a top-level list
                depth += 1
                if depth == 1:
                    expecting_key = True
                continue
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
                if depth == 0:
                    return False  # the top-level mapping ended without the key
                if depth == 1:
                    expecting_key = not expecting_key  # a collection value (or key) at depth 1 ended
                continue
            if depth == 1 and isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
                if expecting_key and isinstance(event, yaml.ScalarEvent) and event.value == key:
                    return True
                expecting_key = not expecting_key
            elif depth == 0 and isinstance(event, yaml.ScalarEvent):
                return False  # a top-level scalar
        return False
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()
