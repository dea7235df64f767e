"""Parse the attractor DOT subset (attractor §2.2-2.12) into a `Graph`.

A lark LALR grammar tokenises and shapes the source; a small builder then walks the tree in
order, because node and edge default blocks apply only to the declarations after them and
subgraphs scope them. Every failure is a `PipelineSyntaxError` with a 1-based line:col.

Deliberately accepted beyond the spec, because rejecting them buys nothing: `;` as well as
`,` between attributes, a trailing separator, `#` line comments, quoted node ids whose text
is a valid identifier. Grammatically accepted only to be rejected with a precise message:
`strict`, undirected `graph`, `--` edges, a second graph.

Nodes first met in an edge are created with the defaults in force there, located at that
mention. A node declared again merges its attributes (later wins) and takes the defaults in
force at the new declaration for keys it never set itself. A node belongs to the classes of
every subgraph it is mentioned in, plus those of its `class` attribute. Typed attributes
(attrs.py) are normalised as they are read, so a bad `timeout` is a located syntax error.
"""

from __future__ import annotations

import marshal
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from lark import Lark, LarkError, Token, Tree, UnexpectedInput

from .attrs import coerce_attr, parse_duration
from .dot_errors import translate
from .errors import PipelineSyntaxError
from .graph import AttrValue, Edge, Graph, Location, Node
from .kept import Kept

_GRAMMAR = r"""
start: graph+
graph: STRICT? (DIGRAPH | GRAPH) NAME? LBRACE stmt* RBRACE
?stmt: graph_attrs | node_defaults | edge_defaults | subgraph | node_stmt | edge_stmt
     | attr_decl | SEMI
graph_attrs: GRAPH attr_block
node_defaults: NODE attr_block
edge_defaults: EDGE attr_block
subgraph: SUBGRAPH NAME? LBRACE stmt* RBRACE
attr_decl: NAME EQUAL value
node_stmt: node_id attr_block?
edge_stmt: node_id (edge_op node_id)+ attr_block?
node_id: NAME | STRING
edge_op: ARROW | UNDIRECTED
attr_block: LSQB (attr (_sep attr)* _sep?)? RSQB
_sep: COMMA | SEMI
attr: NAME EQUAL value
value: STRING | DURATION | FLOAT | INT | BARE

STRICT: "strict"
DIGRAPH: "digraph"
GRAPH: "graph"
NODE: "node"
EDGE: "edge"
SUBGRAPH: "subgraph"
LBRACE: "{"
RBRACE: "}"
LSQB: "["
RSQB: "]"
EQUAL: "="
COMMA: ","
SEMI: ";"
ARROW: "->"
UNDIRECTED: "--"
NAME: /[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*/
BARE: /[A-Za-z_][A-Za-z0-9_.:-]*/
STRING: /"(?:[^"\\]|\\.)*"/s
DURATION.3: /\d+(?:ms|s|m|h|d)(?![A-Za-z0-9_])/
FLOAT.2: /-?\d*\.\d+/
INT.1: /-?\d+/
LINE_COMMENT: /\/\/[^\n]*/
HASH_COMMENT: /#[^\n]*/
BLOCK_COMMENT: /\/\*(.|\n)*?\*\//
WS: /[ \t\f\r\n]+/
%ignore WS
%ignore LINE_COMMENT
%ignore HASH_COMMENT
%ignore BLOCK_COMMENT
"""

_NODE_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {'"': '"', "n": "\n", "t": "\t", "\\": "\\"}


@cache
def _parser() -> Lark:
    # Positions come from tokens (every error and Location is located by a token), so the
    # tree needs none of its own: propagate_positions would double the parse time.
    return Lark(_GRAMMAR, parser="lalr", maybe_placeholders=False)


def build_parser() -> None:
    """Build the DOT parser now (30 ms or so, once per process), not with the first
    pipeline: a worker does it before it reads its first job."""
    _parser()


def parse_dot(source: str) -> Graph:
    """Parse one attractor DOT digraph; raises PipelineSyntaxError with line:col (the
    loader calls it with the garbage collector paused: load.load_source)."""
    return _Builder(source).build(_syntax(source))


# A syntax tree as the builder reads it: plain tuples of strings and ints, which marshal
# turns into bytes and back at C speed.
Leaf = tuple[str, str, int, int]  # a terminal: its type, its text, line and column
Branch = tuple[str, tuple["Leaf | Branch", ...]]  # a rule and its children
KIND, CHILDREN = 0, 1  # of a Branch
TYPE, TEXT, LINE, COLUMN = 0, 1, 2, 3  # of a Leaf


def _is_leaf(syntax: Leaf | Branch) -> bool:
    return len(syntax) == 4


# The daemon loads the same pipelines again and again (trials, replays, test suites, an
# agent iterating), with other variables too: their syntax trees, which the builder only
# reads, are kept, the most recently used first, up to 64 MiB in all. Kept marshalled: one
# bytes object of 7 to 8 bytes per character of source, which the garbage collector never
# walks. As objects, the tree of a 10,000-node pipeline was 350,000 of them (55 to 110
# bytes per character), and every full collection of the daemon walked them all: a quarter
# of a second each, for as long as the tree was kept.
_TREES: Kept[bytes] = Kept(64 * 1024 * 1024)


def _syntax(source: str) -> Branch:
    kept = _TREES.get(source)
    if kept is not None:
        return marshal.loads(kept)
    try:
        syntax = _plain(_parser().parse(source))
    except UnexpectedInput as exc:
        raise translate(exc, source) from None
    except LarkError as exc:  # not expected from LALR, but never let one escape unlocated
        raise PipelineSyntaxError(f"syntax error: {exc}", 1, 1) from None
    dumped = marshal.dumps(syntax)
    _TREES.put(source, dumped, sys.getsizeof(source) + len(dumped))  # the key is kept too
    return syntax


# Far past any pipeline a person writes; much deeper would exhaust the interpreter's stack.
MAX_SUBGRAPH_NESTING = 100


def _plain(tree: Tree, nesting: int = 0) -> Branch:
    """`tree` as tuples; a syntax error where subgraphs nest too deep."""
    if tree.data == "subgraph":
        nesting += 1
        if nesting > MAX_SUBGRAPH_NESTING:
            keyword = tree.children[0]  # the SUBGRAPH token
            raise PipelineSyntaxError(
                f"subgraphs nested more than {MAX_SUBGRAPH_NESTING} deep",
                keyword.line or 1, keyword.column or 1)
    children: list[Leaf | Branch] = []
    for child in tree.children:
        if type(child) is Token:
            children.append((child.type, str(child), child.line or 1, child.column or 1))
        else:
            children.append(_plain(child, nesting))
    return (str(tree.data), tuple(children))


# --- the builder -------------------------------------------------------------------------


@dataclass
class _Scope:
    """Defaults and derived classes in force inside one graph or subgraph body."""

    node_defaults: dict[str, tuple[AttrValue, Location]] = field(default_factory=dict)
    edge_defaults: dict[str, tuple[AttrValue, Location]] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    root: bool = True

    def child(self, derived_class: str | None) -> _Scope:
        extra = (derived_class,) if derived_class else ()
        return _Scope(dict(self.node_defaults), dict(self.edge_defaults),
                      self.classes + extra, root=False)


class _Builder:
    def __init__(self, source: str) -> None:
        self.graph = Graph(name="", source=source, source_format="dot")
        # Keys written on the node itself, which later defaults never overwrite.
        self.explicit: dict[str, set[str]] = {}
        self.derived: dict[str, list[str]] = {}

    def build(self, tree: Branch) -> Graph:
        graphs = tree[CHILDREN]
        first = graphs[0]
        assert not _is_leaf(first)
        self._check_header(first)
        if len(graphs) > 1:
            raise _error("only one graph per file is allowed; a second graph starts here",
                         _first_token(graphs[1]))
        self._body(first[CHILDREN], _Scope())
        for node in self.graph.nodes.values():
            named = [c.strip() for c in str(node.attrs.get("class", "")).split(",")]
            node.classes = list(dict.fromkeys([c for c in named if c]
                                              + self.derived.get(node.id, [])))
        return self.graph

    def _check_header(self, tree: Branch) -> None:
        tokens = [c for c in tree[CHILDREN] if _is_leaf(c)]
        if tokens[0][TYPE] == "STRICT":
            raise _error("'strict' graphs are not supported; write 'digraph Name {'",
                         tokens[0])
        if tokens[0][TYPE] == "GRAPH":
            raise _error("undirected 'graph' is not supported; write 'digraph Name {'",
                         tokens[0])
        if tokens[1][TYPE] != "NAME":
            raise _error("the digraph needs a name: 'digraph Name {'", tokens[1])
        self.graph.name = tokens[1][TEXT]
        self.graph.loc = _loc(tokens[0])

    def _body(self, children: Sequence[Leaf | Branch], scope: _Scope) -> None:
        for stmt in children:
            if _is_leaf(stmt):
                continue  # braces, the graph's name, stray semicolons
            kind, parts = stmt
            if kind == "graph_attrs":
                if scope.root:
                    for key, value, loc in self._attrs(parts[1]):
                        self._set_graph_attr(key, value, loc)
            elif kind == "attr_decl":
                if scope.root:
                    key_tok, _eq, value_tree = parts
                    self._set_graph_attr(key_tok[TEXT], self._attr_value(key_tok, value_tree),
                                         _loc(key_tok))
            elif kind == "node_defaults":
                scope.node_defaults.update(
                    (k, (v, loc)) for k, v, loc in self._attrs(parts[1]))
            elif kind == "edge_defaults":
                scope.edge_defaults.update(
                    (k, (v, loc)) for k, v, loc in self._attrs(parts[1]))
            elif kind == "subgraph":
                inner = [c for c in parts if not _is_leaf(c)]
                self._body(inner, scope.child(_derive_class(self._subgraph_label(inner))))
            elif kind == "node_stmt":
                self._node_stmt(stmt, scope)
            elif kind == "edge_stmt":
                self._edge_stmt(stmt, scope)

    def _set_graph_attr(self, key: str, value: AttrValue, loc: Location) -> None:
        self.graph.attrs[key] = value
        self.graph.attr_locs[key] = loc

    def _subgraph_label(self, stmts: list[Branch]) -> str | None:
        # A subgraph's label names the whole subgraph, wherever in its body it is written.
        label: str | None = None
        for kind, parts in stmts:
            if kind == "attr_decl" and parts[0][TEXT] == "label":
                label = str(self._attr_value(parts[0], parts[2]))
            elif kind == "graph_attrs":
                labels = [v for k, v, _ in self._attrs(parts[1]) if k == "label"]
                label = str(labels[-1]) if labels else label
        return label

    def _node_stmt(self, stmt: Branch, scope: _Scope) -> None:
        parts = stmt[CHILDREN]
        id_tok = parts[0][CHILDREN][0]
        node = self._touch(id_tok, scope)
        explicit = self.explicit[node.id]
        for key, (value, loc) in scope.node_defaults.items():
            if key not in explicit:
                node.attrs[key] = value
                node.attr_locs[key] = loc
        if len(parts) > 1:
            for key, value, loc in self._attrs(parts[1]):
                node.attrs[key] = value
                node.attr_locs[key] = loc
                explicit.add(key)

    def _edge_stmt(self, stmt: Branch, scope: _Scope) -> None:
        ids: list[Leaf] = []
        attrs: list[tuple[str, AttrValue, Location]] = []
        for child in stmt[CHILDREN]:
            kind, parts = child[KIND], child[CHILDREN]
            if kind == "node_id":
                ids.append(parts[0])
            elif kind == "edge_op" and parts[0][TYPE] == "UNDIRECTED":
                raise _error("undirected edge '--' is not supported; use '->'", parts[0])
            elif kind == "attr_block":
                attrs = self._attrs(child)
        nodes = [self._touch(tok, scope) for tok in ids]
        for i in range(len(nodes) - 1):
            edge = Edge(nodes[i].id, nodes[i + 1].id, loc=_loc(ids[i]))
            for key, (value, loc) in scope.edge_defaults.items():
                edge.attrs[key] = value
                edge.attr_locs[key] = loc
            for key, value, loc in attrs:
                edge.attrs[key] = value
                edge.attr_locs[key] = loc
            self.graph.edges.append(edge)

    def _touch(self, id_tok: Leaf, scope: _Scope) -> Node:
        """The node `id_tok` names, created with the scope's defaults on first mention."""
        node_id = _node_id(id_tok)
        node = self.graph.nodes.get(node_id)
        if node is None:
            node = Node(node_id, loc=_loc(id_tok))
            for key, (value, loc) in scope.node_defaults.items():
                node.attrs[key] = value
                node.attr_locs[key] = loc
            self.graph.nodes[node_id] = node
            self.explicit[node_id] = set()
        derived = self.derived.setdefault(node_id, [])
        derived.extend(c for c in scope.classes if c not in derived)
        return node

    def _attrs(self, block: Branch) -> list[tuple[str, AttrValue, Location]]:
        out = []
        for attr in block[CHILDREN]:
            if not _is_leaf(attr):
                key_tok, _eq, value_tree = attr[CHILDREN]
                out.append((key_tok[TEXT], self._attr_value(key_tok, value_tree),
                            _loc(key_tok)))
        return out

    def _attr_value(self, key_tok: Leaf, value_tree: Branch) -> AttrValue:
        tok = value_tree[CHILDREN][0]
        try:
            return coerce_attr(key_tok[TEXT], _literal(tok))
        except ValueError as exc:
            raise _error(str(exc), tok) from None


# --- values, ids, classes ----------------------------------------------------------------


def _literal(tok: Leaf) -> AttrValue:
    kind, text = tok[TYPE], tok[TEXT]
    if kind == "STRING":
        return _unescape(text[1:-1])
    if kind == "DURATION":
        duration = parse_duration(text)
        assert duration is not None  # the DURATION terminal only matches durations
        return duration
    if kind == "FLOAT":
        return float(text)
    if kind == "INT":
        return int(text)
    if text in ("true", "false"):
        return text == "true"
    return text


def _unescape(body: str) -> str:
    # Unknown escapes (Graphviz's \l, \N, ...) are kept as written.
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), body,
                  flags=re.DOTALL)


def _node_id(tok: Leaf) -> str:
    text = _unescape(tok[TEXT][1:-1]) if tok[TYPE] == "STRING" else tok[TEXT]
    if not _NODE_ID.fullmatch(text):
        raise _error(f"invalid node id {text!r}: node ids match [A-Za-z_][A-Za-z0-9_]* "
                     "(put display names in label)", tok)
    return text


def _derive_class(label: str | None) -> str | None:
    """Attractor §2.10: lowercase, spaces to hyphens, drop all but [a-z0-9-]."""
    if not label:
        return None
    return re.sub(r"[^a-z0-9-]", "", label.lower().replace(" ", "-")) or None


# --- locations and errors ----------------------------------------------------------------


def _loc(tok: Leaf) -> Location:
    return Location(tok[LINE], tok[COLUMN])


def _first_token(tree: Leaf | Branch) -> Leaf:
    return tree if _is_leaf(tree) else _first_token(tree[CHILDREN][0])


def _error(message: str, tok: Leaf) -> PipelineSyntaxError:
    return PipelineSyntaxError(message, tok[LINE], tok[COLUMN])
