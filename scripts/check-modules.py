#!/usr/bin/env python3
"""make lint: no module of a crate imports a module that (directly or through others)
imports it, and no source file under crates/*/src is longer than MAX_LINES. Reads every crates/*/src tree, maps `crate::a::b` and `super::x` paths in code
(`#[cfg(test)]` modules left out; doc links count, as in ../shared/tools/modcycles.py: a
reader follows them too) to the source files that define them, and
fails with the circle when the file graph has one. Test-only files are not counted."""
import pathlib
import re
import sys

MAX_LINES = 500
PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_]\w*)+)")
TEST_MOD = re.compile(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*mod\s+\w+\s*\{", re.S)


def module_of(src: pathlib.Path, f: pathlib.Path) -> tuple:
    parts = list(f.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def code(text: str) -> str:
    m = TEST_MOD.search(text)
    return text[: m.start()] if m else text


def graph(src: pathlib.Path) -> dict:
    files = {}
    for f in sorted(src.rglob("*.rs")):
        if f.stem.endswith("_tests") or "tests" in f.relative_to(src).parts:
            continue
        files[module_of(src, f)] = f
    edges = {m: set() for m in files}
    for m, f in files.items():
        for kind, rest in PATH.findall(code(f.read_text(errors="replace"))):
            path = rest.strip(":").split("::")
            if kind == "crate":
                target = tuple(path)
            else:
                base = list(m[:-1])  # `super` of module m, whichever file defines m
                while path and path[0] == "super":
                    path.pop(0)
                    base = base[:-1]
                target = tuple(base + path)
            while target and target not in files:
                target = target[:-1]
            if target in files and target != m:
                edges[m].add(target)
    return edges


def circle(edges: dict):
    state, stack = {}, []

    def visit(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(edges[v]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(edges):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def main() -> int:
    root = pathlib.Path(__file__).resolve().parent.parent
    bad = 0
    for src in sorted(root.glob("crates/*/src")):
        found = circle(graph(src))
        if found:
            bad += 1
            names = " -> ".join("::".join(m) or "<root>" for m in found)
            print(f"{src.parent.name}: import circle: {names}", file=sys.stderr)
    for f in sorted(root.glob("crates/*/src/**/*.rs")):
        n = sum(1 for _ in f.open(errors="replace"))
        if n > MAX_LINES:
            bad += 1
            print(f"{f.relative_to(root)}: {n} lines (split it: at most {MAX_LINES})", file=sys.stderr)
    if bad:
        return 1
    print(f"check-modules: no import circles, no source file over {MAX_LINES} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
