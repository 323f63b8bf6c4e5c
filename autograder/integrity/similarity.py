"""How much code two submissions share once what does not matter is taken away; for the leaderboard.

Normalised form (`normalise`): each code cell is parsed with `ast`, so comments and spacing are gone,
then
- no-op statements are dropped: `pass`, docstrings and other bare expressions without a call (`x`,
  `...`, `a + 1`), the branch an `if` with a constant test never takes, and assignments to names
  that the notebook never reads (`unused = 3` goes; `unused = f()` keeps the call `f()`);
- names are renamed `v1`, `v2`, ... in order of first appearance, afresh in each top-level statement
  (so a statement added or removed elsewhere renames nothing here); builtins, attributes (`.step`)
  and keyword-argument names (`lr=`) are the API and stay;
- numbers become `N`, strings and f-strings `S` (`True`, `False`, `None` stay).
A cell that does not parse (IPython magics, `!pip`, a syntax error) is parsed again without its
magic and shell lines; if that fails too, the same normalisation is done on `tokenize`'s tokens.

Score (`SimilarityIndex`): the normalised token stream of a notebook is cut into overlapping runs
of K tokens, each hashed; winnowing (Schleimer, Wilkerson, Aiken 2003, what MOSS does) keeps the
smallest hash of every WINDOW consecutive ones, so any run of at least K + WINDOW - 1 shared tokens
shares a fingerprint, and a notebook is a few hundred ints that `code_fingerprints` puts in its
record. A submission's own code is its fingerprints minus every run of the stub's code (every
student starts from the same notebook) and minus those that more than a tenth of the class has (the
lecture's training loop is not a copy). The score of a pair is the share of the smaller one's own
code that the other one has, |A & B| / min(|A|, |B|): padding a copy with extra code does not lower
it, as it would lower Jaccard. Pairs are counted through an inverted index of the fingerprints, so
a class of 300 costs milliseconds, never a diff of every pair of notebooks.

Known limits: a copy rewritten statement by statement (another loop shape, other API calls) is
new code to this; a ring of copies larger than the boilerplate cut-off (a tenth of the class, at
least 10) hides its shared code as boilerplate (identical weights still show); a notebook with
fewer than MIN_OWN fingerprints of its own is not compared (identical code still shows).
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import io
import keyword
import re
import tokenize
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

K = 10  # tokens per hashed run
WINDOW = 8  # winnowing window: shared runs of K + WINDOW - 1 = 17 normalised tokens are always found
MAX_TOKENS = 200_000  # a notebook with a huge literal is fingerprinted on its first tokens only
MAX_FINGERPRINTS = 2_000  # the smallest ones (a bottom-k sample) if a notebook has more
MIN_OWN = 8  # own fingerprints (about 3 lines) a notebook needs before it is compared at all
COMMON_FRACTION = 0.1  # a fingerprint in more than this share of the class is boilerplate...
COMMON_MIN = 10  # ...and in more than this many submissions (MOSS's -m default)

_KEEP = frozenset(dir(builtins)) | frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | {"N", "S"}
_MAGIC = re.compile(r"^\s*(?:[%!]|\S.*\?\s*$)")
_ROUGH_TOKENS = re.compile(r"""[rbuRBUfF]{0,2}(?:'[^'\n]*'?|"[^"\n]*"?)|\d[\w.]*|\w+|[^\w\s]""")


def normalise(code_cells: Sequence[str]) -> list[str]:
    """The notebook's code in normalised form: one line of space-separated tokens per top-level statement."""
    return [" ".join(statement) for statement in _statements(code_cells)]


def code_fingerprints(code_cells: Sequence[str]) -> list[int]:
    """The winnowed fingerprints of a notebook's normalised code: sorted 48-bit ints, plain JSON.
    Never raises: a notebook this cannot read gets [] (no similarity known), never a failed grade."""
    try:
        hashes = _run_hashes(code_cells)
    except Exception:  # noqa: BLE001 - e.g. a tree too deep even for the fallback
        return []
    if not hashes:
        return []
    if len(hashes) <= WINDOW:
        chosen = {min(hashes)}
    else:
        chosen = {min(hashes[i:i + WINDOW]) for i in range(len(hashes) - WINDOW + 1)}
    return sorted(chosen)[:MAX_FINGERPRINTS]


def stub_fingerprints(code_cells: Sequence[str]) -> set[int]:
    """Every hashed run of the stub's normalised code, not only the winnowed ones: a student's
    fingerprint that is any run of the stub is the stub's code, wherever winnowing chose it."""
    return set(_run_hashes(code_cells))


def _run_hashes(code_cells: Sequence[str]) -> list[int]:
    tokens = [token for statement in _statements(code_cells) for token in statement][:MAX_TOKENS]
    return [_hash(tokens[i:i + K]) for i in range(max(1, len(tokens) - K + 1))] if tokens else []


def similarity(a: Sequence[int], b: Sequence[int], stub: Iterable[int] = ()) -> float:
    """The score of one pair on its own (no class to tell what is common): 0 to 1. `stub`:
    stub_fingerprints of the stub notebook."""
    index = SimilarityIndex({"a": a, "b": b}, stub, common_min=2)
    return index.score("a", "b") or 0.0


class SimilarityIndex:
    """Every submission's own fingerprints, and the scores of the pairs that share any of them.

    `fingerprints`: name -> a record's `code_fingerprints`, or None where the record has none (an
    older grade): such a submission is never compared. `stub`: stub_fingerprints of the stub notebook.
    """

    def __init__(self, fingerprints: Mapping[str, Sequence[int] | None], stub: Iterable[int] = (),
                 common_fraction: float = COMMON_FRACTION, common_min: int = COMMON_MIN) -> None:
        stub_set = set(stub)
        known = {name: set(_ints(prints)) - stub_set for name, prints in fingerprints.items() if prints is not None}
        frequency = Counter(fp for prints in known.values() for fp in prints)
        cutoff = max(common_min, int(common_fraction * len(known)))
        self.common = {fp for fp, count in frequency.items() if count > cutoff}
        self.own = {name: prints - self.common for name, prints in known.items()}
        self._shared: Counter[tuple[str, str]] = Counter()
        holders: dict[int, list[str]] = defaultdict(list)
        for name in sorted(self.own):
            if len(self.own[name]) >= MIN_OWN:
                for fp in self.own[name]:
                    holders[fp].append(name)
        for names in holders.values():  # each list is at most `cutoff` long
            for i, first in enumerate(names):
                for second in names[i + 1:]:
                    self._shared[first, second] += 1

    def score(self, a: str, b: str) -> float | None:
        """None: one of them has no fingerprints or too little code of its own to compare."""
        own_a, own_b = self.own.get(a), self.own.get(b)
        if own_a is None or own_b is None or min(len(own_a), len(own_b)) < MIN_OWN:
            return None
        return len(own_a & own_b) / min(len(own_a), len(own_b))

    def pairs(self, threshold: float) -> list[tuple[str, str, float]]:
        """(a, b, score) of every pair scoring at least `threshold`, a < b, best first."""
        found = []
        for (a, b), shared in self._shared.items():
            score = shared / min(len(self.own[a]), len(self.own[b]))
            if score >= threshold:
                found.append((a, b, score))
        return sorted(found, key=lambda pair: (-pair[2], pair[0], pair[1]))


def _ints(values: Iterable[object]) -> list[int]:
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


def _hash(tokens: Sequence[str]) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(tokens).encode(), digest_size=6).digest(), "big")


# --- normalisation -------------------------------------------------------------------------------

def _statements(code_cells: Sequence[str]) -> list[list[str]]:
    """Each top-level statement of the notebook as normalised tokens, ending with ';'."""
    parsed = [_parse(cell) for cell in code_cells]
    reads: set[str] = set()
    for tree, text in parsed:
        if tree is not None:
            reads.update(node.id for node in ast.walk(tree) if isinstance(node, ast.Name)
                         and not isinstance(node.ctx, ast.Store))
        else:  # a cell only tokenize can read: any name in it may be a read
            reads.update(re.findall(r"[^\W\d]\w*", text))
    statements = []
    for tree, text in parsed:
        if tree is not None:
            try:
                statements += [[*tokens, ";"] for statement in _prune(tree.body, reads)
                               if (tokens := _tokens(ast.unparse(_Canonical().visit(statement))))]
                continue
            except (RecursionError, ValueError, tokenize.TokenError, SyntaxError):  # a tree too deep to walk
                pass
        statements += _token_statements(text)
    return statements


def _parse(source: str) -> tuple[ast.Module | None, str]:
    """The cell's tree, and its text without magic and shell lines for tokenize if it does not parse."""
    text = source
    with warnings.catch_warnings():  # a student's invalid escapes are no warning of the grader's
        warnings.simplefilter("ignore")
        for attempt in range(2):
            try:
                return ast.parse(text), text
            except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: a NUL byte
                if attempt == 0:
                    text = "\n".join("" if _MAGIC.match(line) else line for line in source.splitlines())
    return None, text


def _pure(node: ast.AST) -> bool:
    """An expression that does nothing when evaluated: no call, no await, no assignment expression."""
    return not any(isinstance(n, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr, ast.Lambda,
                                  ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp))
                   for n in ast.walk(node))


def _bound_names(target: ast.AST) -> list[str] | None:
    """Names a target binds, or None if it also writes elsewhere (an attribute, an item)."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        names: list[str] = []
        for element in target.elts:
            inner = _bound_names(element.value if isinstance(element, ast.Starred) else element)
            if inner is None:
                return None
            names += inner
        return names
    return None


def _prune(body: list[ast.stmt], reads: set[str]) -> list[ast.stmt]:
    kept: list[ast.stmt] = []
    for statement in body:
        if isinstance(statement, ast.Pass) or isinstance(statement, ast.Expr) and _pure(statement.value):
            continue
        if isinstance(statement, ast.If) and isinstance(statement.test, ast.Constant):
            kept += _prune(statement.body if statement.test.value else statement.orelse, reads)
            continue
        if isinstance(statement, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            bound = [_bound_names(target) for target in targets]
            if all(names is not None and not set(names) & reads for names in bound):
                if statement.value is not None and not _pure(statement.value):
                    kept.append(ast.copy_location(ast.Expr(statement.value), statement))
                continue
        for field in ("body", "orelse", "finalbody"):
            inner = getattr(statement, field, None)
            if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                setattr(statement, field, _prune(inner, reads))
        for handler in getattr(statement, "handlers", []):
            handler.body = _prune(handler.body, reads)
        for case in getattr(statement, "cases", []):
            case.body = _prune(case.body, reads)
        kept.append(statement)
    return kept


class _Canonical(ast.NodeTransformer):
    """Renames a statement's own names in order of first appearance, constants to placeholders."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def rename(self, name: str | None) -> str | None:
        if name is None or name in _KEEP:
            return name
        return self.names.setdefault(name, f"v{len(self.names) + 1}")

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self.rename(node.id) or node.id
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg = self.rename(node.arg) or node.arg
        node.annotation = None
        return node

    def _definition(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> ast.AST:
        node.name = self.rename(node.name) or node.name
        return self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _definition

    def visit_alias(self, node: ast.alias) -> ast.alias:
        node.asname = self.rename(node.asname)
        return node

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.AST:
        node.name = self.rename(node.name)
        return self.generic_visit(node)

    def visit_Global(self, node: ast.Global | ast.Nonlocal) -> ast.AST:
        node.names = [self.rename(name) or name for name in node.names]
        return node

    visit_Nonlocal = visit_Global

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, (int, float, complex)) and not isinstance(node.value, bool):
            return ast.Name("N", ast.Load())
        if isinstance(node.value, (str, bytes)):
            return ast.Name("S", ast.Load())
        return node

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        return ast.Name("S", ast.Load())


def _tokens(text: str) -> list[str]:
    """The tokens of code we wrote ourselves (ast.unparse), with the block structure kept."""
    out = []
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.NEWLINE:
            out.append("\n")
        elif token.type == tokenize.INDENT:
            out.append("{")
        elif token.type == tokenize.DEDENT:
            out.append("}")
        elif token.type not in (tokenize.NL, tokenize.COMMENT, tokenize.ENDMARKER):
            out.append(token.string)
    while out and out[-1] in ("\n", "}"):
        out.pop()
    return out


def _token_statements(text: str) -> list[list[str]]:
    """The fallback for a cell that does not parse: tokenize's tokens, normalised like the tree's."""
    try:
        raw = [(t.type, t.string) for t in tokenize.generate_tokens(io.StringIO(text).readline)]
    except (tokenize.TokenError, SyntaxError):  # unclosed brackets or strings, bad indentation
        raw = [(_rough_type(s), s) for line in text.splitlines()
               for s in [*_ROUGH_TOKENS.findall(line.split("#", 1)[0]), "\n"]]
    statements: list[list[str]] = []
    current: list[str] = []
    names: dict[str, str] = {}
    depth, previous = 0, ""

    def close() -> None:
        nonlocal current
        if current and current not in (["pass"], ["..."], ["N"], ["S"], ["v1"]):
            statements.append([*current, ";"])
        current = []
        names.clear()

    for kind, string in raw:
        if kind in (tokenize.COMMENT, tokenize.NL, tokenize.ENDMARKER, tokenize.ENCODING) or (
                kind == tokenize.ERRORTOKEN and not string.strip()):
            continue
        if kind == tokenize.INDENT:
            depth += 1
            current.append("{")
        elif kind == tokenize.DEDENT:
            depth -= 1
            current.append("}")
            if depth == 0:
                close()
        elif kind == tokenize.NEWLINE or string == "\n":
            if depth == 0:
                close()
            else:
                current.append("\n")
        elif kind == tokenize.NUMBER:
            current.append("N")
        elif kind == tokenize.STRING:
            current.append("S")
        elif kind == tokenize.NAME and string not in _KEEP and previous != ".":
            current.append(names.setdefault(string, f"v{len(names) + 1}"))
        else:
            current.append(string)
        previous = string
    close()
    return statements


def _rough_type(string: str) -> int:
    if string == "\n":
        return tokenize.NEWLINE
    if string[:1].isdigit():
        return tokenize.NUMBER
    if string[-1:] in "'\"" and len(string) > 1 or string[:1] in "'\"":
        return tokenize.STRING
    if re.fullmatch(r"\w+", string):
        return tokenize.NAME
    return tokenize.OP
