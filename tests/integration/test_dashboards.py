"""The Grafana dashboard and the Prometheus rules against what the workers
really expose: every worker deployed (intake, review, inspection, logistics,
notification; as-probe is the runtime's test worker, deployed nowhere) is
started, fed one record it dead-letters (and intake one request it rejects,
so that the families made on first use exist), and scraped the way
Prometheus scrapes it. The test fails when `promtool check metrics` has
anything to say about a scrape, when a metric family a worker exposes is in
no panel of the dashboard (a worker's own families in its own row), when a
panel or an alert rule names a metric no worker exposes, or when a query
aggregates a metric the wrong way (a counter not under rate() or
increase(), a histogram's quantile not over `sum by (le, ...)` of its
buckets' rate, a gauge every instance reports alike summed). The rules
themselves go through `promtool check rules`, `promtool test rules
deploy/prometheus/alerts_test.yml` and `promtool check config`, and every
panel's query through promtool's parser.

promtool is Debian's `prometheus` package (scripts/deps.sh installs it).
"""
import json
import re
import shutil
import subprocess
import uuid

import yaml

from conftest import (CASES_TOPIC, REQUESTS_TOPIC, ROOT, SLOW, produce_requests, request_envelope,
                      start_service, wait_until)

DASHBOARD = ROOT / "deploy" / "grafana" / "aftersales.json"
PROM_DIR = ROOT / "deploy" / "prometheus"
RULES = PROM_DIR / "alerts.yml"
WORKERS = ["intake", "review", "inspection", "logistics", "notification"]
# Gauges each instance reads from the same table: a sum would multiply them
# by the replica count.
SHARED_GAUGES = {"as_outbox_backlog", "as_logistics_receipt_exceptions",
                 "as_notification_send_queue_depth"}
# Series Prometheus makes itself, not a worker.
SCRAPE_SERIES = {"up"}
AGGREGATIONS = {"sum", "max", "min", "avg", "count"}
# Functions of a gauge's range, aggregated after them.
GAUGE_RANGE_FUNCS = {"changes", "deriv", "delta", "max_over_time", "min_over_time",
                     "avg_over_time"}
PROMQL_WORDS = AGGREGATIONS | {
    "by", "without", "rate", "increase", "histogram_quantile", "on", "or", "and", "unless",
    "vector", "le", "ignoring", "group_left", "group_right", "bool", "offset"}


def promtool():
    p = shutil.which("promtool")
    assert p, "promtool missing: Debian's prometheus package (scripts/deps.sh installs it)"
    return p


# ---- the dashboard and the rules, as text ------------------------------------

def dashboard_queries():
    """[(row title, panel title, expr)] in dashboard order; a panel belongs to
    the row above it (or the collapsed row holding it)."""
    d = json.loads(DASHBOARD.read_text())
    out, row = [], ""
    for p in d["panels"]:
        if p.get("type") == "row":
            row = p["title"]
            for q in p.get("panels", []):
                out += [(row, q["title"], t["expr"]) for t in q.get("targets", [])]
            continue
        out += [(row, p["title"], t["expr"]) for t in p.get("targets", [])]
    return out


def rule_exprs():
    doc = yaml.safe_load(RULES.read_text())
    return [(r.get("alert") or r.get("record"), r["expr"])
            for g in doc["groups"] for r in g["rules"]]


def strip_strings(expr):
    """The expression with label matchers, ranges and strings blanked, same length."""
    blank = lambda m: " " * len(m.group(0))
    expr = re.sub(r'"[^"]*"', blank, expr)
    expr = re.sub(r'\{[^}]*\}', blank, expr)
    return re.sub(r'\[[^\]]*\]', blank, expr)


def metric_refs(expr):
    """[(name, offset)] of every series name the expression selects."""
    bare = strip_strings(expr)
    labels = {l.strip() for g in re.findall(r'\b(?:by|without|on|ignoring)\s*\(([^)]*)\)', bare)
              for l in g.split(",")}
    refs = []
    for m in re.finditer(r'(?<![\w$.:])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()', bare):
        if m.group(1) not in PROMQL_WORDS and m.group(1) not in labels:
            refs.append((m.group(1), m.start()))
    return refs


def enclosing(expr, pos):
    """The calls around offset pos, innermost first: [(function, by-labels or
    None, offset of its '(')]; `sum by (a) (x)` is ("sum", {"a"}, ...)."""
    bare = strip_strings(expr)
    calls, depth, i = [], 0, pos - 1
    while i >= 0:
        c = bare[i]
        if c == ")":
            depth += 1
        elif c == "(":
            if depth:
                depth -= 1
            else:
                head = bare[:i].rstrip()
                by = None
                m = re.search(r'\b(by|without)\s*\(([^()]*)\)$', head)
                if m:
                    by = {l.strip() for l in m.group(2).split(",") if l.strip()}
                    head = head[:m.start()].rstrip()
                f = re.search(r'([a-z_]+)$', head)
                calls.append((f.group(1) if f else "", by, i))
        i -= 1
    return calls


def selector(expr, pos, name):
    """The label matchers written after the name at pos: {label: value} of the = ones."""
    m = re.match(re.escape(name) + r'\s*\{([^}]*)\}', expr[pos:])
    return dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', m.group(1))) if m else {}


# ---- what the workers expose -------------------------------------------------

def parse_families(text):
    """{family: (type, {label names of its samples, le aside})}"""
    fams, labels = {}, {}
    for line in text.splitlines():
        m = re.match(r'# TYPE (\S+) (\S+)', line)
        if m:
            fams[m.group(1)] = m.group(2)
            labels[m.group(1)] = set()
            continue
        m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s', line)
        if not m or line.startswith("#"):
            continue
        name = m.group(1)
        base = re.sub(r'_(bucket|sum|count)$', "", name)
        fam = name if name in fams else base
        labels.setdefault(fam, set()).update(
            k for k in re.findall(r'(\w+)="', m.group(2) or "") if k != "le")
    return {f: (t, labels.get(f, set())) for f, t in fams.items()}


def scrape_fleet(h):
    """{worker: {family: (type, labels)}}, each scrape clean by promtool."""
    ws = {s: start_service(h, s, **({"AS_INTAKE_HOLD_MS": "100"} if s == "intake" else {}))
          for s in WORKERS}
    # Families made on first use: a dead letter on every worker (cases.v1
    # feeds all but intake, requests.v1 feeds intake), a rejection at intake.
    h.produce(b"\xff not an envelope", key="k", topic=CASES_TOPIC)
    h.produce(b"\xff not an envelope", key="k", topic=REQUESTS_TOPIC)
    produce_requests(h, [request_envelope(h, f"o-{uuid.uuid4().hex[:8]}", "b-1")])
    for s, w in ws.items():
        wait_until(lambda: w.metric("as_messages_deadlettered_total") >= 1, 30 * SLOW,
                   what=f"{s} dead-letters the undecodable record")
    wait_until(lambda: ws["intake"].metric("as_intake_rejected_total") >= 1, 30 * SLOW,
               what="intake rejects the request for an unknown order")
    out = {}
    for s, w in ws.items():
        status, text = w.http("/metrics")
        assert status == 200, text
        lint = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True,
                              text=True, timeout=30)
        assert lint.returncode == 0 and lint.stdout + lint.stderr == "", (s, lint.stdout + lint.stderr)
        out[s] = parse_families(text)
    return out


def resolve(name, fams):
    """(family, suffix) a series name belongs to, or None."""
    if name in fams:
        return name, ""
    m = re.match(r'(.*)_(bucket|sum|count)$', name)
    if m and fams.get(m.group(1), ("",))[0] == "histogram":
        return m.group(1), m.group(2)
    return None


def misuse(expr, name, pos, fams, per_series=False):
    """Why the reference to name at pos aggregates it wrongly, or None;
    per_series: a gauge may stand alone (an alert on each instance)."""
    fam, suffix = resolve(name, fams)
    kind, labels = fams[fam]
    calls = enclosing(expr, pos)
    inner = calls[0] if calls else ("", None, 0)
    if kind == "counter" or suffix in ("sum", "count"):
        return None if inner[0] in ("rate", "increase") else "a counter not under rate()/increase()"
    if suffix == "bucket":
        pinned = selector(expr, pos, name)
        if inner[0] != "rate":
            return "buckets not under rate()"
        if "le" in pinned:  # one bucket: the share within a bound
            return None
        if len(calls) < 3 or calls[1][0] != "sum" or calls[2][0] != "histogram_quantile":
            return "a quantile not histogram_quantile over sum by (le) (rate(..._bucket))"
        by = calls[1][1] or set()
        # The histogram's own labels (from="submitted"|"occurred", channel,
        # tx) split it into histograms that must not be merged.
        merged = labels - {"service", "instance"} - by - set(pinned)
        if "le" not in by or merged:
            return f"histogram_quantile over sum by ({', '.join(sorted(by))}): merges {sorted(merged)}"
        return None
    if kind == "gauge":
        if inner[0] in GAUGE_RANGE_FUNCS:
            inner = calls[1] if len(calls) > 1 else ("", None, 0)
        if inner[0] not in AGGREGATIONS:
            return None if per_series and fam not in SHARED_GAUGES else "a gauge not aggregated"
        if fam in SHARED_GAUGES and inner[0] != "max":
            return "a gauge every instance reports alike, not a max"
    return None


def test_dashboard_covers_every_metric_the_workers_expose_and_only_those(h):
    fleet = scrape_fleet(h)
    every = {f: t for fams in fleet.values() for f, t in fams.items()}
    queries = dashboard_queries()
    used, unknown, wrong = set(), [], []
    by_row = {}
    for row, title, expr in queries:
        for name, pos in metric_refs(expr):
            r = resolve(name, every)
            if r is None:
                if name not in SCRAPE_SERIES:
                    unknown.append((title, name))
                continue
            used.add(r[0])
            by_row.setdefault(row.lower(), set()).add(r[0])
            why = misuse(expr, name, pos, every)
            if why:
                wrong.append((title, name, why))
    missing = {s: sorted(set(fams) - used) for s, fams in fleet.items() if set(fams) - used}
    # A worker's own families are in its own row.
    astray = {s: sorted(f for f in fams if f.startswith(f"as_{s}_") and f not in by_row.get(s, set()))
              for s, fams in fleet.items()}
    bad_rules = []
    for alert, expr in rule_exprs():
        for name, pos in metric_refs(expr):
            if resolve(name, every) is None:
                if name not in SCRAPE_SERIES:
                    bad_rules.append((alert, name, "no worker exposes it"))
            elif misuse(expr, name, pos, every, per_series=True):
                bad_rules.append((alert, name, misuse(expr, name, pos, every, per_series=True)))
    problems = {"panels query metrics no worker exposes": unknown,
                "panels aggregate metrics wrongly": wrong,
                "families in no panel": missing,
                "families outside their worker's row": {s: f for s, f in astray.items() if f},
                "alert rules": bad_rules}
    assert {k: v for k, v in problems.items() if v} == {}


def test_dashboard_queries_are_promql_promtool_accepts(tmp_path):
    # Each panel's query, Grafana's variables given values, as a recording
    # rule: promtool parses it as Prometheus would.
    grafana_vars = {"$__rate_interval": "1m", "$service": ".*", "$instance": ".*"}
    rules = []
    for i, (_, title, expr) in enumerate(dashboard_queries()):
        for var, value in grafana_vars.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, (title, expr)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    f = tmp_path / "dashboard_rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = subprocess.run([promtool(), "check", "rules", str(f)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_alert_rules_pass_promtool():
    out = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_alert_rules_fire_on_their_cases_and_only_those():
    out = subprocess.run([promtool(), "test", "rules", "alerts_test.yml"], cwd=PROM_DIR,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_alert_rules_cover_the_slas_and_stalls():
    names = {a for a, _ in rule_exprs()}
    assert {"AftersalesRelayStalled", "AftersalesBatchStalled", "AftersalesOutboxBacklog",
            "AftersalesDeadLetterRate", "LogisticsCarrierAnswersLate",
            "NotificationFirstResponseSlow", "NotificationBreakerOpen"} <= names
    # Every alert is exercised by alerts_test.yml.
    tested = {t["alertname"] for case in yaml.safe_load((PROM_DIR / "alerts_test.yml").read_text())["tests"]
              for t in case.get("alert_rule_test", [])}
    assert names - tested == set()


def test_prometheus_config_passes_promtool(tmp_path):
    # Debian's promtool is built without Kubernetes discovery: the same
    # scrape job with one static target instead is what it checks (the
    # relabelling, honor_labels, the rule file it loads).
    conf = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    for job in conf["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs"), job
        assert job["honor_labels"] is True  # the workers' own service and instance labels
        job["static_configs"] = [{"targets": ["127.0.0.1:8080"]}]
    conf["rule_files"] = [str(PROM_DIR / f) for f in conf["rule_files"]]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(conf))
    out = subprocess.run([promtool(), "check", "config", str(tmp_path / "prometheus.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 1 rule files found" in out.stdout + out.stderr


def test_metric_refs_and_misuse_read_promql_as_meant():
    # The parser the checks above rest on, on what it must tell apart.
    fams = {"as_x_total": ("counter", set()), "as_g": ("gauge", set()),
            "as_outbox_backlog": ("gauge", set()), "as_h": ("histogram", {"service", "from"})}
    e = 'sum by (service) (rate(as_x_total{a="b"}[5m])) / max(as_g)'
    assert [n for n, _ in metric_refs(e)] == ["as_x_total", "as_g"]
    assert all(misuse(e, n, p, fams) is None for n, p in metric_refs(e))
    assert [misuse("as_g == 0", n, p, fams, per_series=True) for n, p in metric_refs("as_g == 0")] == [None]
    for bad in ["sum(as_x_total)", "as_g", "sum(as_outbox_backlog)",
                "histogram_quantile(0.99, sum by (le) (rate(as_h_bucket[5m])))",
                "histogram_quantile(0.99, rate(as_h_bucket[5m]))"]:
        assert [misuse(bad, n, p, fams) for n, p in metric_refs(bad)] != [None], bad
    good = 'histogram_quantile(0.99, sum by (le, from) (rate(as_h_bucket{service=~"$s"}[5m])))'
    assert [misuse(good, n, p, fams) for n, p in metric_refs(good)] == [None]
    pinned = 'sum(rate(as_h_bucket{le="600", from="x"}[5m])) / sum(rate(as_h_count[5m]))'
    assert [misuse(pinned, n, p, fams) for n, p in metric_refs(pinned)] == [None, None]
