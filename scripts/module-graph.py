#!/usr/bin/env python3
"""The import graph of a crate's top-level modules, and its circles.

    scripts/module-graph.py [--dot] [--why FROM TO] CRATE_SRC...
    scripts/module-graph.py --self-test

For each crate (its `src/` directory) every `crate::` path in the code (in `use` trees, grouped
or not, and in expressions) names a top-level module of that crate: `crate::worker::run` is an
edge to `worker`; a name re-exported at the crate root (`crate::Job`, from `pub use job::Job`)
is an edge to the module it comes from. `super::` inside a nested module stays inside its
top-level module and is no edge. Comments, string literals and test code (`#[cfg(test)] mod`,
inline or in files) are left out: tests may reach across. `--why FROM TO` prints the paths behind
one edge.

Prints each crate's edges (or a Graphviz graph with --dot) and every strongly connected group of
more than one module. Exits 1 when a crate has a circle, so CI keeps the graph acyclic.
"""
import os
import re
import sys
from collections import defaultdict

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(text):
    """The code without comments, string and char literals (kept as blanks, lines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    out.append("\n" if text[i] == "\n" else "")
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:]) and (i == 0 or not re.match(r"\w", text[i - 1])):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            i = n if end < 0 else end + 1 + len(hashes)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:]):
            i += len(re.match(r"'(\\.|[^\\'])'", text[i:]).group(0))
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def top_module(src, path):
    """The top-level module a file belongs to (None for the crate root)."""
    rel = os.path.relpath(path, src)
    parts = rel.split(os.sep)
    if len(parts) == 1:
        name = parts[0][:-3]
        return None if name in ("lib", "main") else name
    return parts[0]


def use_heads(tree):
    """The first segments of each path in a use tree `a::b, c::{d, e}` (after `crate::`)."""
    heads, depth, cur = [], 0, ""
    for ch in tree:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if depth == 0 and ch == ",":
            heads.append(cur)
            cur = ""
        elif depth > 0 or ch not in "{}":
            cur += ch
    heads.append(cur)
    names = []
    for h in heads:
        h = h.strip()
        if not h:
            continue
        if h.startswith("{"):
            names.extend(use_heads(h[1:-1] if h.endswith("}") else h[1:]))
            continue
        m = re.match(IDENT, h)
        if m:
            names.append(m.group(0))
    return names


def root_reexports(src, modules):
    """Names the crate root re-exports, mapped to the module they come from."""
    names = {}
    for root in ("lib.rs", "main.rs"):
        p = os.path.join(src, root)
        if not os.path.exists(p):
            continue
        code = strip(open(p, encoding="utf-8").read())
        for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+(" + IDENT + r")\s*::\s*([^;]*);", code):
            module, rest = m.group(1), m.group(2)
            if module not in modules:
                continue
            for name in re.findall(IDENT, rest):
                if name not in ("self", "as"):
                    names.setdefault(name, module)
    return names


def without_test_modules(code):
    """The code without its inline `#[cfg(test)] mod name { ... }` blocks."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+" + IDENT + r"\s*\{", code)
        if not m:
            return code
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        code = code[: m.start()] + "\n" * code[m.start() : j].count("\n") + code[j:]


def test_only_files(files):
    """Files declared `#[cfg(test)] mod name;` (and everything below them)."""
    out = set()
    decl = re.compile(
        r"#\[cfg\(test\)\]\s*((?:#\[[^\]]*\]\s*)*)(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;"
    )
    for f in files:
        # Not stripped: a `#[path = "..."]` names the file in a string.
        code = open(f, encoding="utf-8").read()
        here = os.path.dirname(f)
        base = os.path.basename(f)[:-3]
        below = here if base in ("lib", "main", "mod") else os.path.join(here, base)
        for attrs, name in decl.findall(code):
            path = re.search(r'#\[path\s*=\s*"([^"]+)"\]', attrs)
            if path:
                out.add(os.path.normpath(os.path.join(here, path.group(1))))
            else:
                out.add(os.path.join(below, name + ".rs"))
                out.add(os.path.join(below, name))
    return out


def crate_graph(src, why=None):
    files = []
    for d, _, fs in os.walk(src):
        files.extend(os.path.join(d, f) for f in fs if f.endswith(".rs"))
    tests = test_only_files(files)
    files = [f for f in files if not any(f == t or f.startswith(t + os.sep) for t in tests)]
    modules = {top_module(src, f) for f in files} - {None}
    reexports = root_reexports(src, modules)
    edges = defaultdict(set)
    for f in files:
        me = top_module(src, f)
        if me is None:
            continue
        code = without_test_modules(strip(open(f, encoding="utf-8").read()))
        targets = []
        for m in re.finditer(r"\bcrate\s*::\s*\{", code):
            depth, j = 1, m.end()
            while j < len(code) and depth:
                depth += {"{": 1, "}": -1}.get(code[j], 0)
                j += 1
            targets.extend(use_heads(code[m.end() : j - 1]))
        targets.extend(re.findall(r"\bcrate\s*::\s*(" + IDENT + ")", code))
        for t in targets:
            target = t if t in modules else reexports.get(t)
            if target and target != me:
                edges[me].add(target)
                if why == (me, target):
                    print(f"  {os.path.relpath(f, src)}: crate::{t}")
    return modules, edges


def circles(modules, edges):
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(modules):
        if v not in index:
            visit(v)
    return out


def self_test():
    """The checker on made-up crates: a circle through a grouped `use` and a root re-export is
    found; test code, comments and strings are not edges."""
    import tempfile

    def crate(files):
        d = tempfile.mkdtemp()
        for name, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(d, name)), exist_ok=True)
            with open(os.path.join(d, name), "w", encoding="utf-8") as f:
                f.write(text)
        return d

    circle = crate({
        "lib.rs": "mod a;\nmod b;\npub use a::Thing;\n",
        "a.rs": "use crate::{b::{self, Other}};\npub struct Thing;\n",
        "b/mod.rs": "pub struct Other;\nfn f() -> crate::Thing { todo!() }\n",
    })
    modules, edges = crate_graph(circle)
    assert circles(modules, edges) == [["a", "b"]], dict(edges)
    clean = crate({
        "lib.rs": "mod a;\nmod b;\n",
        "a.rs": "use crate::b::Other;\n",
        "b/mod.rs": (
            "pub struct Other;\n"
            "// crate::a in a comment\n"
            'const S: &str = "crate::a";\n'
            "#[cfg(test)]\nmod tests { use crate::a; }\n"
            '#[cfg(test)]\n#[path = "b_tests.rs"]\nmod more;\n'
        ),
        "b/b_tests.rs": "use crate::a;\n",
    })
    modules, edges = crate_graph(clean)
    assert circles(modules, edges) == [] and dict(edges) == {"a": {"b"}}, dict(edges)
    print("module-graph self-test: ok")
    return 0


def main(argv):
    if argv == ["--self-test"]:
        return self_test()
    dot = "--dot" in argv
    why = None
    if "--why" in argv:
        i = argv.index("--why")
        why = (argv[i + 1], argv[i + 2])
        argv = argv[:i] + argv[i + 3 :]
    srcs = [a for a in argv if not a.startswith("--")]
    if not srcs:
        print(__doc__)
        return 2
    failed = False
    for src in srcs:
        modules, edges = crate_graph(src, why)
        found = circles(modules, edges)
        if dot:
            print(f'digraph "{src}" {{')
            for a in sorted(edges):
                for b in sorted(edges[a]):
                    print(f'  "{a}" -> "{b}";')
            print("}")
        else:
            print(f"{src}: {len(modules)} modules")
            for a in sorted(edges):
                print(f"  {a} -> {', '.join(sorted(edges[a]))}")
        for group in found:
            failed = True
            inner = {a: sorted(edges[a] & set(group)) for a in group}
            detail = "; ".join(f"{a} -> {', '.join(b)}" for a, b in inner.items())
            print(f"{src}: circle among {', '.join(group)} ({detail})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
