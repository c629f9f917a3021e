"""Write spec/schema/tcc.schema.json from the op table (`tcc.spec.schema.build_schema()`).

    .venv/bin/python tools/gen_schema.py          # rewrite the file
    .venv/bin/python tools/gen_schema.py --check  # exit 1 if the file is out of date

tests/spec/test_language.py keeps the file equal to the generated schema.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tcc.spec.schema import build_schema

PATH = Path(__file__).resolve().parents[1] / "spec" / "schema" / "tcc.schema.json"


def render() -> str:
    return json.dumps(build_schema(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = PATH.read_text(encoding="utf-8") if PATH.is_file() else ""
        if current != text:
            print(f"{PATH} is out of date; run tools/gen_schema.py", file=sys.stderr)
            return 1
        return 0
    PATH.parent.mkdir(parents=True, exist_ok=True)
    PATH.write_text(text, encoding="utf-8")
    print(f"wrote {PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
