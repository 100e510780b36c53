"""Render gateway/kong.yml for DB-less Kong: substitute decK's `${{ env "DECK_..." }}` placeholders.

Kong itself does not read decK placeholders: left in, a literal `${{ env "DECK_KEY_STRIPE" }}` would
become a working key that anyone reading the repository knows. So this refuses to render while any
placeholder's variable is unset or empty, and names every missing one.

Each placeholder must sit in a block-style plain scalar that ends its line (`key: ${{ ... }}`,
`- Header:${{ ... }}`); that whole scalar is written back as a JSON (= YAML double-quoted) string,
so no value can change the document's structure or a string into a number. Standard library only:
it runs in the hub-api image (compose, the chart's init container) and in the tests.

    python gateway/render.py gateway/kong.yml -o /kong/kong.yml
"""

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping

PLACEHOLDER = re.compile(r'\$\{\{\s*env\s+"(DECK_[A-Za-z0-9_]+)"\s*\}\}')
# indentation, an optional "- ", an optional "key: ", then the scalar up to the end of the line
LINE = re.compile(r"^(?P<lead>\s*(?:-\s+)?(?:[A-Za-z_][\w-]*:\s+)?)(?P<scalar>\S.*?)\s*$")


class RenderError(Exception):
    """The file cannot be rendered safely; the message says what to set or fix."""


def variables(text: str) -> list[str]:
    """The DECK_ variables the file refers to, in first-seen order."""
    return list(dict.fromkeys(PLACEHOLDER.findall(text)))


def render(text: str, env: Mapping[str, str]) -> str:
    missing = [name for name in variables(text) if not env.get(name)]
    if missing:
        raise RenderError("unset: " + ", ".join(missing) + " (set each to the key or secret)")
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        if PLACEHOLDER.search(line) and not line.lstrip().startswith("#"):
            match = LINE.match(line)
            scalar = match["scalar"] if match else ""
            if not match or scalar[0] in "[{\"'" or " #" in scalar:
                raise RenderError(
                    f"line {number}: a placeholder must be a block-style plain scalar ending "
                    "its line (no flow style, quotes or trailing comment)"
                )
            value = PLACEHOLDER.sub(lambda m: env[m[1]], scalar)
            line = match["lead"] + json.dumps(value)
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("source", help="the declarative file, e.g. gateway/kong.yml")
    parser.add_argument("-o", "--output", help="where to write (default: standard output)")
    args = parser.parse_args(argv)
    with open(args.source, encoding="utf-8") as f:
        text = f.read()
    try:
        rendered = render(text, os.environ)
    except RenderError as exc:
        print(f"render {args.source}: {exc}", file=sys.stderr)
        return 2
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(rendered)
    else:
        sys.stdout.write(rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
