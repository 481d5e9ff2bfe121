#!/usr/bin/env python3
"""Assembles minigpt.hpp from the parts in src/minigpt/.

    tools/amalgamate.py            write minigpt.hpp
    tools/amalgamate.py --check    exit 1 if minigpt.hpp is not what the parts give

Parts are concatenated in the order below. Their own `#pragma once` and
`#include "..."` lines (which exist so that each part can be opened in an
editor alone) are dropped; system includes stay.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = os.path.join(ROOT, "src", "minigpt")
OUT = os.path.join(ROOT, "minigpt.hpp")

MANUAL = "manual.hpp"
DECLARATIONS = ["config.hpp", "api.hpp"]
IMPLEMENTATION = [
    "base.hpp",
    "gguf.hpp",
    "gguf_writer.hpp",
    "quant.hpp",
    "kernels_scalar.hpp",
    "kernels_avx2.hpp",
    "kernels_avx512.hpp",
    "kernels_neon.hpp",
    "kernels.hpp",
    "gemm.hpp",
    "quant_ref.hpp",
    "threads.hpp",
    "unicode.hpp",
    "tokenizer.hpp",
    "model.hpp",
    "forward.hpp",
    "grammar.hpp",
    "sampler.hpp",
    "session.hpp",
    "chat.hpp",
]
LICENSE = "license.hpp"

LOCAL_INCLUDE = re.compile(r'^\s*#\s*include\s+"[^"]+"\s*$')
PRAGMA_ONCE = re.compile(r"^\s*#\s*pragma\s+once\s*$")


def part(name):
    with open(os.path.join(PARTS, name), encoding="utf-8") as f:
        lines = f.read().splitlines()
    kept = [l for l in lines if not LOCAL_INCLUDE.match(l) and not PRAGMA_ONCE.match(l)]
    while kept and not kept[-1].strip():
        kept.pop()
    return "// ---- %s ----\n%s\n" % (name, "\n".join(kept))


def assemble():
    out = [part(MANUAL)]
    out.append("#ifndef MINIGPT_HPP_INCLUDED\n#define MINIGPT_HPP_INCLUDED\n")
    out += [part(p) for p in DECLARATIONS]
    out.append("#endif // MINIGPT_HPP_INCLUDED\n")
    out.append("#if defined(MINIGPT_IMPLEMENTATION) && !defined(MINIGPT_IMPLEMENTATION_INCLUDED)\n"
               "#define MINIGPT_IMPLEMENTATION_INCLUDED\n")
    out += [part(p) for p in IMPLEMENTATION]
    out.append("#endif // MINIGPT_IMPLEMENTATION\n")
    out.append(part(LICENSE))
    return "\n".join(out)


def main():
    text = assemble()
    if "--check" in sys.argv[1:]:
        try:
            with open(OUT, encoding="utf-8") as f:
                current = f.read()
        except OSError:
            current = None
        if current != text:
            sys.stderr.write("minigpt.hpp is stale: run tools/amalgamate.py and commit the result\n")
            return 1
        return 0
    tmp = OUT + ".tmp%d" % os.getpid()
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
