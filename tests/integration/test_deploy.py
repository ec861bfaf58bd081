"""The deployment files work, checked the way the stacks read them: the
review worker gets the repository's policy file, the inspection worker
its standards file and the notification worker its templates in compose
(bind mount + AS_REVIEW_POLICY_FILE, AS_INSPECTION_STANDARDS_FILE,
AS_NOTIFICATION_TEMPLATES_FILE) and in Kubernetes (a ConfigMap mounted into
the pod, as `kubectl kustomize deploy/k8s` renders it), and a real worker
starts on what each stack would hand it; every worker Deployment has a
PodDisruptionBudget; the listener address is set in both stacks; the Docker
build context (.dockerignore) keeps out host build trees and secrets but
holds every source `make build` needs. (The Grafana dashboard and the
Prometheus rules: test_dashboards.py.)
"""
import fnmatch
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import BIN_DIR, ROOT, SLOW, start_service, wait_until

POLICY = ROOT / "deploy" / "config" / "review.policy"
STANDARDS = ROOT / "deploy" / "config" / "inspection.standards"
TEMPLATES = ROOT / "deploy" / "config" / "notification.templates"
# worker, the variable naming its file, the repository's file, what it logs on a load
FILES = [("review", "AS_REVIEW_POLICY_FILE", POLICY, "policy loaded"),
         ("inspection", "AS_INSPECTION_STANDARDS_FILE", STANDARDS, "standards loaded"),
         ("notification", "AS_NOTIFICATION_TEMPLATES_FILE", TEMPLATES, "templates loaded")]


def policy_version(text):
    return re.search(r"(?m)^version = (\S+)$", text).group(1)


def start_on(h, worker, var, path, loaded_line):
    w = start_service(h, worker, **{var: str(path)})
    loaded = wait_until(lambda: w.logged(loaded_line), 10 * SLOW, what=loaded_line)
    return w, loaded[0]["version"]


# ---- compose -------------------------------------------------------------

def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.mark.parametrize("worker,var,repo_file,loaded_line", FILES, ids=[f[0] for f in FILES])
def test_compose_hands_the_worker_the_repository_file(h, worker, var, repo_file, loaded_line):
    svc = compose()["services"][worker]
    path = svc["environment"][var]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in svc.get("volumes", [])}
    assert path in mounts, (path, mounts)
    host = (ROOT / mounts[path]).resolve()
    assert host == repo_file.resolve()
    _, version = start_on(h, worker, var, host, loaded_line)
    assert version == policy_version(repo_file.read_text())


def test_compose_workers_listen_where_they_can_be_scraped():
    for name, svc in compose()["services"].items():
        cmd = str(svc.get("command", [""])[0])
        if cmd.startswith("as-") and cmd != "as-topics":  # as-topics: the topic initialiser
            assert svc["environment"].get("AS_HTTP_ADDR") == "0.0.0.0", name


def test_compose_runs_the_kafka_version_the_tests_run():
    """Every Kafka image of compose is apache/kafka at the version the
    embedded broker's pinned Maven project fetches (tools/kafka/pom.xml):
    what the suite proves on Kafka is proved on the compose broker too."""
    pinned = re.search(r"<kafka\.version>([^<]+)</kafka\.version>",
                       (ROOT / "tools" / "kafka" / "pom.xml").read_text()).group(1)
    images = {name: svc["image"] for name, svc in compose()["services"].items()
              if "kafka" in svc.get("image", "")}
    assert images, "no Kafka image in docker-compose.yml"
    assert images == {n: f"apache/kafka:{pinned}" for n in images}, (pinned, images)


def test_compose_creates_the_topics_with_as_topics():
    """compose's topic initialiser is our as-topics (tested on a real broker
    in test_real_kafka.py) over the repository's topics.tsv: its arguments
    parse, and with no broker it says so (exit 3) instead of passing."""
    svc = compose()["services"]["kafka-topics"]
    cmd = svc["command"]
    assert cmd[0] == "as-topics", cmd
    mounts = dict(v.rsplit(":", 2)[:2][::-1] for v in svc["volumes"])
    tsv = cmd[cmd.index("--topics") + 1]
    assert mounts.get(tsv) == "./proto/topics.tsv", (tsv, mounts)
    args = [str(ROOT / "proto" / "topics.tsv") if a == tsv else "127.0.0.1:1" if a == "kafka:9092" else a
            for a in cmd[1:]]
    out = subprocess.run([str(BIN_DIR / "as-topics"), *args, "--timeout-ms", "1500"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 3, (out.returncode, out.stdout, out.stderr)


# ---- Kubernetes ----------------------------------------------------------

@pytest.fixture(scope="module")
def k8s():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    out = subprocess.run([kubectl, "kustomize", str(ROOT / "deploy" / "k8s")], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def of_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.mark.parametrize("worker,var,repo_file,loaded_line", FILES, ids=[f[0] for f in FILES])
def test_k8s_pod_mounts_the_file_configmap(h, k8s, tmp_path, worker, var, repo_file, loaded_line):
    dep = of_kind(k8s, "Deployment")[f"aftersales-{worker}"]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    path = next(e["value"] for e in c["env"] if e["name"] == var)
    mount = next(m for m in c["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    vol = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    cm = of_kind(k8s, "ConfigMap")[vol["configMap"]["name"]]
    text = cm["data"][path[len(mount["mountPath"]) + 1:]]
    assert text == repo_file.read_text()  # what the pod reads is the repository's file
    (tmp_path / repo_file.name).write_text(text)
    _, version = start_on(h, worker, var, tmp_path / repo_file.name, loaded_line)
    assert version == policy_version(text)


def test_k8s_every_worker_has_a_disruption_budget_and_binds_its_pod_address(k8s):
    pdbs = of_kind(k8s, "PodDisruptionBudget")
    deps = of_kind(k8s, "Deployment")
    assert deps
    for name, dep in deps.items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        mine = [p for p in pdbs.values()
                if p["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(mine) == 1, name
        assert mine[0]["spec"].get("maxUnavailable") == 1, name
        env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["AS_HTTP_ADDR"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP", name


# ---- image -----------------------------------------------------------------

def dockerignore_rules():
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), line.lstrip("!").rstrip("/")))
    return rules


def ignored(rel, rules):
    """Docker's rule: the last pattern that matches the path or one of its
    parents decides; '!' re-includes."""
    parts = rel.split("/")
    out = False
    for negate, pat in rules:
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatchcase(prefix, pat) or (
                    pat.startswith("**/") and fnmatch.fnmatchcase(parts[i - 1], pat[3:])):
                out = not negate
                break
    return out


def test_docker_context_has_the_sources_and_nothing_of_the_host(tmp_path):
    rules = dockerignore_rules()
    for rel in ("build/bin/as-intake", ".git/HEAD", ".env", "tests/integration/conftest.py",
                "scripts/__pycache__/x.pyc"):
        assert ignored(rel, rules), rel
    ctx = tmp_path / "ctx"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    for rel in tracked + ["VERSION"]:
        if ignored(rel, rules) or not (ROOT / rel).is_file():
            continue
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, ctx / rel)
    # What the Dockerfile runs, as a dry run: every prerequisite must exist.
    out = subprocess.run(["make", "-n", "B=build", "TEST_HOOKS=0", "AS_COMMIT=test", "build"],
                         cwd=ctx, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "as-intake" in out.stdout and "as-review" in out.stdout


def test_image_is_a_release_build():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"(?m)^RUN make build TEST_HOOKS=0\b", text), text
