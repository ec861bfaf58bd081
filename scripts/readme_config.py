"""Writes the README's configuration table from a worker's --help, the one
source of truth (the runtime's table in common/as_worker.c).

    /usr/bin/python3 scripts/readme_config.py build/bin/as-probe          rewrite README.md
    /usr/bin/python3 scripts/readme_config.py build/bin/as-probe --check  exit 1 if stale
"""
import re
import subprocess
import sys

BEGIN, END = "<!-- config:begin -->", "<!-- config:end -->"


def table(binary):
    text = subprocess.run([binary, "--help"], capture_output=True, text=True, check=True).stdout
    rows = ["| variable | type | default | bounds | what it does |", "|---|---|---|---|---|"]
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^  (AS_[A-Z0-9_]+) \((\w+), (.*)\)$", line)
        if not m:
            continue
        name, typ, rest = m.groups()
        dm = re.match(r'default ("[^"]*"|\S+?)(?:, (.*))?$', rest)
        default, bounds = (dm.group(1), dm.group(2) or "") if dm else ("", rest)
        default = default.strip('"')
        help_text = lines[i + 1].strip() if i + 1 < len(lines) else ""
        rows.append("| `%s` | %s | %s | %s | %s |" % (name, typ, "`%s`" % default if default else "(empty)",
                                                   bounds, help_text.replace("|", "\\|")))
    rows.append("| `AS_RDKAFKA_<PROP>` | string | | | Any librdkafka property, lower-cased with `_` as `.`:"
                " `AS_RDKAFKA_SESSION_TIMEOUT_MS=6000` sets `session.timeout.ms`. |")
    return "\n".join(rows)


def main():
    binary = sys.argv[1]
    readme = open("README.md").read()
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    fresh = readme[:start] + "\n" + table(binary) + "\n" + readme[end:]
    if "--check" in sys.argv:
        if fresh != readme:
            print("README.md configuration table is stale: run scripts/readme_config.py", file=sys.stderr)
            return 1
        return 0
    open("README.md", "w").write(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
