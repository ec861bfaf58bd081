"""Writes the README's configuration table from the workers' --help, the one
source of truth (the runtime's table in common/as_worker.c and each
service's own table). The first binary gives the variables every worker
reads; each further binary adds the ones only it reads.

    /usr/bin/python3 scripts/readme_config.py build/bin/as-probe build/bin/as-intake ...          rewrite README.md
    /usr/bin/python3 scripts/readme_config.py build/bin/as-probe build/bin/as-intake ... --check  exit 1 if stale
"""
import re
import subprocess
import sys

BEGIN, END = "<!-- config:begin -->", "<!-- config:end -->"


def rows_of(binary):
    text = subprocess.run([binary, "--help"], capture_output=True, text=True, check=True).stdout
    rows = []
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
        rows.append((name, "| `%s` | %s | %s | %s | %s |" % (name, typ, "`%s`" % default if default else "(empty)",
                                                           bounds, help_text.replace("|", "\\|"))))
    return rows


def table(binaries):
    rows = ["| variable | worker | type | default | bounds | what it does |", "|---|---|---|---|---|---|"]
    seen = set()
    for i, binary in enumerate(binaries):
        who = "all" if i == 0 else binary.rsplit("/", 1)[-1]
        for name, row in rows_of(binary):
            if name in seen:
                continue
            seen.add(name)
            rows.append(row.replace(" | ", " | %s | " % who, 1))
    rows.append("| `AS_RDKAFKA_<PROP>` | all | string | | | Any librdkafka property, lower-cased with `_` as `.`,"
                " for every client: `AS_RDKAFKA_SOCKET_TIMEOUT_MS=6000` sets `socket.timeout.ms`. |")
    rows.append("| `AS_RDKAFKA_CONSUMER_<PROP>`, `AS_RDKAFKA_PRODUCER_<PROP>` | all | string | | |"
                " The same for the consumer only or the producers (outbox relay) only, over the shared"
                " value: `AS_RDKAFKA_CONSUMER_SESSION_TIMEOUT_MS=6000`. A consumer property set for every"
                " client reaches the producers too, and each logs a warning that it ignores it. |")
    return "\n".join(rows)


def main():
    binaries = [a for a in sys.argv[1:] if not a.startswith("--")]
    readme = open("README.md").read()
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    fresh = readme[:start] + "\n" + table(binaries) + "\n" + readme[end:]
    if "--check" in sys.argv:
        if fresh != readme:
            print("README.md configuration table is stale: run scripts/readme_config.py", file=sys.stderr)
            return 1
        return 0
    open("README.md", "w").write(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
