"""bench/results holds only what the docs cite, indexed, and no more than 60 tracked files.

Citations are the ``bench/results/...`` paths in docs/benchmarks.md and README.md, outside fenced code blocks (a
command's output path there is not a citation). ``{a,b}`` alternatives and ``*`` globs are expanded;
``bench/results/archive/<benchmark>.tar.xz:<member>`` names a member of an archive; a name with ``<...>`` is a
placeholder. bench/results/README.md names every tracked file and says what each archive holds.
"""

import fnmatch
import re
import shutil
import subprocess
import tarfile
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = "bench/results/"
INDEX = REPO / RESULTS / "README.md"
DOCS = ("docs/benchmarks.md", "README.md")
MAX_TRACKED = 60
CITATION = re.compile(r"bench/results/[^\s`'\"()\[\]]*")


@pytest.fixture(scope="module")
def tracked() -> list[str]:
    """The tracked files under bench/results/, repo-relative; skips outside a git checkout."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the tracked files of bench/results/ cannot be listed")
    out = subprocess.run(
        ["git", "ls-files", "-z", "--", RESULTS], cwd=REPO, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        pytest.skip(
            f"not a git checkout ({out.stderr.strip()}): the tracked files of bench/results/ cannot be listed"
        )
    files = sorted(f for f in out.stdout.split("\0") if f)
    if not files:
        pytest.skip("git lists nothing under bench/results/ (an export without the index?)")
    return files


def expand(pattern: str) -> list[str]:
    """``a{b,c}d{e,f}`` -> every combination."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    return [
        x for alt in m.group(1).split(",") for x in expand(pattern[: m.start()] + alt + pattern[m.end() :])
    ]


def matches(pattern: str, name: str) -> bool:
    """Glob match segment by segment (``*`` stays within one folder); ``dir/`` matches what lies under it."""
    if pattern.endswith("/"):
        return name.startswith(pattern)
    p, n = pattern.split("/"), name.split("/")
    return len(p) == len(n) and all(fnmatch.fnmatchcase(b, a) for a, b in zip(p, n, strict=True))


def names_a_file(pattern: str) -> bool:
    """A file, or a glob with a literal start to its name: not a folder and not ``bench/results/*.json`` in general."""
    base = pattern.rsplit("/", 1)[-1]
    return bool(base) and base[0] not in "*?["


def citations() -> list[tuple[str, str, str]]:
    """(document, path, archive member or "") for every bench/results citation, alternatives expanded."""
    found = []
    for doc in DOCS:
        text = re.sub(r"^```.*?^```", "", (REPO / doc).read_text(), flags=re.S | re.M)
        for raw in CITATION.findall(text):
            for cited in expand(raw.rstrip(".,;:")):
                if "<" in cited:
                    continue
                path, _, member = cited.partition(".tar.xz:")
                found.append((doc, path + ".tar.xz" if member else path, member))
    return found


@cache
def members(archive: str) -> tuple[str, ...]:
    with tarfile.open(REPO / archive, "r:xz") as tar:
        return tuple(m.name for m in tar.getmembers() if m.isfile())


def index_rows() -> dict[str, str]:
    """The index's table rows: first column's file (relative to bench/results) -> the whole row."""
    rows = {}
    for line in INDEX.read_text().splitlines():
        m = re.match(r"\|\s*`([^`]+)`\s*\|", line)
        if m:
            rows[m.group(1)] = line
    return rows


def test_at_most_60_tracked_files(tracked):
    assert len(tracked) <= MAX_TRACKED, (
        f"{len(tracked)} tracked files under bench/results/, at most {MAX_TRACKED}: move logs, per-run files and "
        "superseded results into their benchmark's bench/results/archive/<benchmark>.tar.xz (bench/results/README.md)"
    )


def test_no_python_and_no_loose_logs_under_bench_results(tracked):
    py = [f for f in tracked if f.endswith(".py")]
    assert not py, (
        f"runnable scripts under bench/results/ (put them in bench/, or into the benchmark's archive): {py}"
    )
    logs = [f for f in tracked if f.endswith(".log")]
    assert not logs, (
        f"tracked logs under bench/results/ (they are git-ignored; archive the cited ones): {logs}"
    )


def test_every_tracked_file_is_indexed_and_cited(tracked):
    assert INDEX.exists(), "bench/results/README.md, the index of the results files, is missing"
    rows = index_rows()
    cited = [(doc, path) for doc, path, _ in citations() if names_a_file(path)]
    for f in tracked:
        if f == RESULTS + "README.md":
            continue
        rel = f[len(RESULTS) :]
        assert rel in rows, f"{f} has no row in bench/results/README.md"
        docs = {doc for doc, path in cited if matches(path, f)}
        assert docs, (
            f"{f} is cited in neither docs/benchmarks.md nor README.md: cite it, archive it, or git rm it"
        )
    stale = sorted(RESULTS + rel for rel in rows if RESULTS + rel not in tracked)
    assert not stale, f"bench/results/README.md has rows for files that are not tracked: {stale}"


def test_every_cited_results_path_exists(tracked):
    missing = []
    for doc, path, member in citations():
        hits = [f for f in tracked if matches(path, f)]
        if not hits:
            missing.append(f"{doc}: {path}")
        elif member and not any(matches(member, m) for m in members(path)):
            missing.append(f"{doc}: {path}:{member} (no such member)")
    assert not missing, "cited under bench/results/ but not there:\n" + "\n".join(missing)


def test_the_index_names_only_members_its_archives_hold(tracked):
    """Each archive row's file names (``name.ext`` or ``folder/``, alternatives expanded) are members of it."""
    wrong = []
    for rel, row in index_rows().items():
        if not rel.endswith(".tar.xz"):
            continue
        held = members(RESULTS + rel)
        for token in re.findall(r"`([^`\s]+)`", row.split("|")[3]):
            if token.startswith(("bench/", "devlearn/", "tests/")) or not (
                "." in token or token.endswith("/")
            ):
                continue
            for name in expand(token):
                if not any(matches(name, m) for m in held):
                    wrong.append(f"{rel}: {name}")
    assert not wrong, "bench/results/README.md names members its archives do not hold:\n" + "\n".join(wrong)
