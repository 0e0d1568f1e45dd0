#!/usr/bin/env python3
"""Check that the course's documents agree with the repository (standard library only).

    python3 tools/maintenance/check_docs.py              check the repository this script lives in
    python3 tools/maintenance/check_docs.py --root DIR   check another tree (the unit test uses this)

Four checks; each problem is printed as `file:line: message`, and the exit status is 1 if there
is any:

1. links: every relative link in a Markdown file, `[text](path)` or `![alt](path)`, points at a file
   or folder that exists; a `#anchor` into a Markdown file must name one of its headings.
2. path references: a "see X" or "in X" in a .md, .h, .c, .cu, .cuh or .py file, where X looks
   like a repository path (a known top-level folder, or a file extension such as .md or .h), must
   name something that exists: relative to the repository root, to the referring file's folder,
   or a file in common/ or in the same lesson's folder (lessons/ and solutions/ alike).
3. lesson READMEs: every function a lesson README names as `name(` in inline code or calls in a C
   code block is declared in a header the learner can see (the lesson's, another lesson's, or
   common/'s) or defined in the lesson's given code; every declaration it quotes in a code block
   matches the header's declaration, whitespace aside. Every test it names as `suite/name` exists in
   tests/test_NN_*.c, and every "the part's K tests" counts that suite's tests.
4. points tables: a Markdown table right after the line POINTS_MARKER (autograder/README.md has one)
   lists every lesson once, `| NN | title | C part | CUDA part | speed | total |`, with the title and
   points of its descriptor (lesson.json, read by tools/lessons.py; a speed of 0 reads "reported
   only").

Files: those git tracks plus untracked ones it does not ignore (the tree is walked when it is not a
git checkout), never build folders.
"""
import argparse
import fnmatch
import glob
import os
import re
import subprocess
import sys

DOC_SUFFIXES = (".md",)
REF_SUFFIXES = (".md", ".h", ".c", ".cu", ".cuh", ".py")
# A token counts as a path when it has one of these extensions or starts with a top-level folder.
PATH_EXTENSIONS = (".md", ".h", ".c", ".cu", ".cuh", ".py", ".csv", ".png", ".txt", ".json", ".sh", ".yml")
TOP_FOLDERS = ("common", "lessons", "solutions", "tests", "tools", "figures", "docs")

# Path references that are right although nothing in the tree matches them, and why.
IGNORED_PATH_PATTERNS = [
    (re.compile(r"^build[^/]*/"), "build outputs exist only after a build"),
    (re.compile(r"^/"), "absolute paths name places outside the repository (an autograder's)"),
    (re.compile(r"NN|<|\{|\.\.\."), "placeholders: lessons/NN_name/, naive_attention.{h,c,cu}"),
    (re.compile(r"^results\.json$"), "written by ./course grade --results"),
    (re.compile(r"^r\.json$|^speed\.jsonl$"), "temporary files the grader writes"),
]

# Names a lesson README may show as calls without any course header declaring them: C and CUDA
# library functions and built-ins, and C keywords that look like calls in code.
KNOWN_EXTERNAL = set("""
if for while switch return sizeof alignof defined
exp expf exp2 exp2f log logf log2 log2f sqrt sqrtf rsqrtf fmax fmaxf fmin fminf fabs fabsf max min
isnan isinf isfinite floor ceil powf pow INFINITY
printf fprintf snprintf puts malloc calloc realloc free memcpy memset qsort assert abort exit
__syncthreads __syncwarp __shfl_xor_sync __shfl_sync __expf __exp2f __ldg __float2bfloat16
__bfloat162float __launch_bounds__ __restrict__ atomicAdd
cudaMalloc cudaFree cudaMemcpy cudaMemcpyAsync cudaMemset cudaMemsetAsync cudaDeviceSynchronize
cudaGetLastError cudaPeekAtLastError cudaGetErrorString cudaGetErrorName cudaFuncSetAttribute
cudaStreamCreate cudaEventRecord cudaLaunchKernel cudaSetDevice cudaDeviceReset
mma ldmatrix cp
O softmax ln
""".split())  # the last line: math notation in prose (`O(N w)`, `softmax(S)`, `ln(2)`)

C_BLOCK_LANGS = ("c", "cu", "cuda", "cpp", "c++", "h")

POINTS_MARKER = "<!-- points table: check_docs.py compares it with each lesson's lesson.json -->"


class Problems:
    def __init__(self, root):
        self.root, self.items = root, []

    def add(self, path, line, msg):
        self.items.append(f"{os.path.relpath(path, self.root)}:{line}: {msg}")


def list_files(root):
    """Tracked and untracked-but-not-ignored files, relative to root, without build folders."""
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True).stdout.decode()
        files = [f for f in out.split("\0") if f]
        if os.path.realpath(subprocess.run(["git", "-C", root, "rev-parse", "--show-toplevel"], capture_output=True,
                                           text=True, check=True).stdout.strip()) != os.path.realpath(root):
            raise OSError("root is inside another checkout")
    except (OSError, subprocess.CalledProcessError):
        files = []
        for d, dirs, names in os.walk(root):
            dirs[:] = [x for x in dirs if not x.startswith(".") and not x.startswith("build")]
            files += [os.path.relpath(os.path.join(d, n), root) for n in names]
    return sorted(f for f in files if not f.split("/")[0].startswith("build") and os.path.isfile(os.path.join(root, f)))


def split_fences(text):
    """Yield (line_number, line, fence_language or None) for every line; fence lines themselves excluded."""
    lang = None
    for n, line in enumerate(text.split("\n"), 1):
        m = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", line)
        if m:
            lang = (m.group(2).lower() or "text") if lang is None else None
            continue
        yield n, line, lang


def strip_inline_code(line):
    return re.sub(r"`[^`]*`", "", line)


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    h = re.sub(r"`|\*\*|\*|_(?=\W)|(?<=\W)_", "", heading.strip().lower())
    h = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", h)
    h = re.sub(r"[^\w\- ]", "", h)
    return h.replace(" ", "-")


_anchor_cache = {}


def anchors(path):
    if path not in _anchor_cache:
        found, seen = set(), {}
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for _, line, lang in split_fences(text):
            m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if m and lang is None:
                s = slug(m.group(1))
                k = seen.get(s, 0)
                found.add(s if k == 0 else f"{s}-{k}")
                seen[s] = k + 1
        found |= set(re.findall(r'<a\s+(?:name|id)="([^"]+)"', text))
        _anchor_cache[path] = found
    return _anchor_cache[path]


# ---------------------------------------------------------------- 1. links

LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)")


def check_links(root, rel, text, problems):
    path = os.path.join(root, rel)
    for n, line, lang in split_fences(text):
        if lang is not None:
            continue
        targets = [m.group(1) for m in LINK.finditer(strip_inline_code(line))]
        m = REF_DEF.match(line)
        if m:
            targets.append(m.group(1))
        for t in targets:
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", t):  # http:, https:, mailto:
                continue
            target, _, anchor = t.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), target)) if target else path
            if not os.path.realpath(dest).startswith(os.path.realpath(root) + os.sep) and dest != root:
                problems.add(path, n, f"link '{t}' leaves the repository")
                continue
            if not os.path.exists(dest):
                problems.add(path, n, f"broken link '{t}': {os.path.relpath(dest, root)} does not exist")
                continue
            if anchor and dest.endswith(".md") and os.path.isfile(dest) and anchor not in anchors(dest):
                problems.add(path, n, f"link '{t}': no heading with the anchor #{anchor} in "
                                      f"{os.path.relpath(dest, root)}")


# ---------------------------------------------------------------- 2. "see X" / "in X"

SEE_IN = re.compile(r"(?i)\b(?:see|in)\s+(?:the\s+)?(?:file\s+|folder\s+)?`?([A-Za-z0-9_./*-]*[A-Za-z0-9_*/])`?")


def looks_like_path(tok):
    if "://" in tok or not re.search(r"[A-Za-z]", tok) or os.path.basename(tok).startswith("."):
        return False  # a URL, a number, or a bare extension ("the .cu file")
    if tok.lower().endswith(PATH_EXTENSIONS):
        return True
    return "/" in tok and tok.split("/")[0] in TOP_FOLDERS


def lesson_folders(root, rel):
    """The lesson folders whose files `rel` may name by their plain name: a lesson's own folder in
    lessons/ and solutions/ (they mirror each other), and for tests/test_NN_*.c lesson NN's."""
    parts = rel.split("/")
    m = re.match(r"^tests/test_(\d\d)_", rel)
    if m:
        return [f"{t}/{d}" for t in ("lessons", "solutions") if os.path.isdir(os.path.join(root, t))
                for d in sorted(os.listdir(os.path.join(root, t))) if d.startswith(m.group(1) + "_")]
    if len(parts) >= 3 and parts[0] in ("lessons", "solutions") and re.match(r"^\d\d_", parts[1]):
        return [f"lessons/{parts[1]}", f"solutions/{parts[1]}"]
    return []


def path_exists(root, rel, tok):
    bases = ["", os.path.dirname(rel), "common"] + lesson_folders(root, rel)
    for b in bases:
        cand = os.path.join(root, b, tok)
        if glob.glob(cand) if "*" in tok else os.path.exists(cand):
            return True
    return False


def check_path_refs(root, rel, text, problems):
    path = os.path.join(root, rel)
    for n, line in enumerate(text.split("\n"), 1):
        for m in SEE_IN.finditer(line):
            if re.search(r"\bfor\s+[\w, ()]+\s+$", line[:m.start()]):
                continue  # Python's `for x in args.csv:` is a loop, not a reference
            tok = m.group(1).rstrip(".")
            if not looks_like_path(tok):
                continue
            if any(p.search(tok) for p, _ in IGNORED_PATH_PATTERNS):
                continue
            if not path_exists(root, rel, tok):
                problems.add(path, n, f"'{m.group(0).strip()}' names {tok}, which does not exist")


# ---------------------------------------------------------------- 3. lesson READMEs against headers

DECL = re.compile(r"(?:^|[;}])\s*((?:static\s+inline\s+|static\s+|extern\s+)?(?:const\s+)?[A-Za-z_]\w*(?:\s+[A-Za-z_]\w*)*"
                  r"[\s*]+)([A-Za-z_]\w*)\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)\s*(?=[;{]|__attribute__)", re.S)


def strip_comments(code):
    code = re.sub(r"/\*.*?\*/", " ", code, flags=re.S)
    code = re.sub(r"//[^\n]*", " ", code)
    return re.sub(r"^\s*#[^\n]*(?:\\\n[^\n]*)*", " ", code, flags=re.M)


def norm(sig):
    return re.sub(r"\s+", "", sig)


def declarations(root, rel):
    """{name: normalised 'type name(params)'} of the functions a header declares or defines."""
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        code = strip_comments(f.read())
    out = {}
    for m in DECL.finditer(code):
        ret, name, params = m.group(1), m.group(2), m.group(3)
        if name in ("if", "for", "while", "switch", "return", "sizeof"):
            continue
        ret = re.sub(r"^(static\s+inline|static|extern)\s+", "", ret.strip())
        out[name] = norm(f"{ret} {name}({params})")
    return out


def defined_names(root, rel):
    """Names of the functions and templates a lesson's source defines (the given helpers)."""
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        code = strip_comments(f.read())
    return set(re.findall(r"\b([A-Za-z_]\w*)\s*(?:<[^<>;{}()]*>)?\s*\([^;{}]*\)\s*(?:const\s*)?\{", code))


CALL = re.compile(r"(?<![\w.>])([A-Za-z_]\w*)\s*(?:<[^<>()]*>)?\(")
QUOTED_DECL = re.compile(r"^\s*((?:const\s+)?[A-Za-z_]\w*(?:\s*\*)*\s+\**)([A-Za-z_]\w*)\s*\(([^()]*)\)\s*;")


def check_lesson_readme(root, rel, text, files, problems):
    path = os.path.join(root, rel)
    folder = os.path.dirname(rel)
    headers = [f for f in files if re.match(r"^(lessons/\d\d_[^/]+|common)/[^/]+\.h$", f)]
    own = [f for f in files if f.startswith(folder + "/") and f.endswith(".h")]
    declared, own_decls = {}, {}
    for h in headers:
        d = declarations(root, h)
        declared.update(d)
        if h in own:
            own_decls.update(d)
    given = set()
    for f in files:
        # the lesson's .c, .cu and .cuh files (a .cuh holds what its two .cu files share), common/'s .cuh
        if (f.startswith(folder + "/") and f.endswith((".c", ".cu", ".cuh"))) or (
                f.startswith("common/") and f.endswith(".cuh")):
            given |= defined_names(root, f)
    known = set(declared) | given | KNOWN_EXTERNAL

    def check_name(n, name, where):
        if name not in known:
            problems.add(path, n, f"{where} names {name}(), which no header declares "
                                  f"({folder}/*.h, common/*.h) and the lesson's given code does not define")

    lines = list(split_fences(text))
    for n, line, lang in lines:
        if lang is None:
            for m in re.finditer(r"`([^`]*)`", line):
                c = re.match(r"^\s*([A-Za-z_]\w*)(?:<[^<>]*>)?\(", m.group(1))
                if c:
                    check_name(n, c.group(1), "inline code")
        elif lang in C_BLOCK_LANGS:
            for m in CALL.finditer(strip_comments(line)):
                check_name(n, m.group(1), "a C code block")

    # Declarations quoted in any code block (they may span lines: join each block first).
    block, start = [], None
    for n, line, lang in lines + [(len(lines) + 1, "", None)]:
        if lang is not None:
            if start is None:
                start = n
            block.append(line)
            continue
        if block:
            code = strip_comments("\n".join(block))
            for m in re.finditer(r"[^;{}]*?\b([A-Za-z_]\w*)\s*\([^;{}()]*(?:\([^()]*\)[^;{}()]*)*\)\s*;", code):
                stmt = m.group(0).strip()
                q = QUOTED_DECL.match(" ".join(stmt.split()))
                name = m.group(1)
                if not q or name not in declared or q.group(1).strip() in ("return", "else"):
                    continue
                quoted = norm(f"{q.group(1)} {q.group(2)}({q.group(3)})")
                if quoted != declared[name]:
                    line_no = start + code[:m.start()].count("\n") + stmt[:1].count("\n")
                    problems.add(path, line_no, f"quotes {name} as '{' '.join(stmt.split())}', but the header "
                                                f"declares '{declared[name]}' (whitespace removed)")
        block, start = [], None


SUITES = ("c_part", "cuda_part", "speed", "errors")
PART_COUNT = re.compile(r"\|\s*[^|]*\(`(c_part|cuda_part|speed)`\)\s*\|[^|]*\|[^|]*?the part's (\d+) tests")


def lesson_tests(root, files, num):
    """{suite: set of test names} from tests/test_NN_*.c (ATTN_TEST or Criterion's Test)."""
    out = {}
    for f in files:
        if re.match(rf"^tests/test_{num}_[^/]*\.c$", f):
            with open(os.path.join(root, f), encoding="utf-8") as fh:
                code = strip_comments(fh.read())
            for suite, name in re.findall(r"\b(?:ATTN_TEST|ATTN_GPU_TEST|Test)\(\s*(\w+)\s*,\s*(\w+)", code):
                out.setdefault(suite, set()).add(name)
    return out


def check_lesson_tests(root, rel, text, files, problems):
    path = os.path.join(root, rel)
    num = rel.split("/")[1][:2]
    tests = lesson_tests(root, files, num)
    if not tests:
        return  # no test file yet (a lesson being written)
    for n, line in enumerate(text.split("\n"), 1):
        for suite, name in re.findall(r"`(%s)/([\w*.]+)`" % "|".join(SUITES), line):
            if name != "..." and not fnmatch.filter(tests.get(suite, set()), name):
                problems.add(path, n, f"names the test {suite}/{name}, which tests/test_{num}_*.c does not define")
        for suite, k in PART_COUNT.findall(line):
            have = len(tests.get(suite, ()))
            if int(k) != have:
                problems.add(path, n, f"says the {suite} part has {k} tests; tests/test_{num}_*.c has {have}")


# ---------------------------------------------------------------- 4. points tables against the descriptors

def load_lessons_module():
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tools/
    import lessons  # noqa: E402
    return lessons


def check_points_tables(root, rel, text, problems):
    path = os.path.join(root, rel)
    lines = text.split("\n")
    for start, line in enumerate(lines):
        if line.strip() != POINTS_MARKER:
            continue
        try:
            descs = load_lessons_module().descriptors(root)
        except (OSError, ValueError) as e:
            problems.add(path, start + 1, f"the points table cannot be checked: {e}")
            return
        rows, n = {}, start + 1
        while n < len(lines) and not lines[n].strip():
            n += 1
        while n < len(lines) and lines[n].lstrip().startswith("|"):
            cells = [c.strip() for c in lines[n].strip().strip("|").split("|")]
            if re.match(r"^\d\d$", cells[0]):
                if cells[0] in rows:
                    problems.add(path, n + 1, f"the points table lists lesson {cells[0]} twice")
                rows[cells[0]] = (n + 1, cells)
            n += 1
        if not rows:
            problems.add(path, start + 1, "no points table after the marker")
            continue
        for num, d in sorted(descs.items()):
            if num not in rows:
                problems.add(path, start + 1, f"the points table has no row for lesson {num} ({d['name']})")
                continue
            line_no, cells = rows[num]
            pts = d["points"]
            want = [num, d.get("title", ""), str(pts["c_part"]), str(pts["cuda_part"]),
                    str(pts["speed"]) if pts["speed"] else "reported only", str(sum(pts.values()))]
            if cells != want:
                problems.add(path, line_no, f"lesson {num}'s row reads '| {' | '.join(cells)} |', but its "
                                            f"lesson.json gives '| {' | '.join(want)} |'")
        for num, (line_no, _) in sorted(rows.items()):
            if num not in descs:
                problems.add(path, line_no, f"the points table lists lesson {num}, which has no descriptor")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    args = ap.parse_args(argv)
    root = os.path.abspath(args.root)
    files = list_files(root)
    problems = Problems(root)
    for rel in files:
        if not rel.endswith(REF_SUFFIXES):
            continue
        try:
            with open(os.path.join(root, rel), encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError:
            continue
        if rel.endswith(DOC_SUFFIXES):
            check_links(root, rel, text, problems)
        if rel != "tools/maintenance/check_docs.py" and not rel.startswith("tools/maintenance/test_check_docs"):
            check_path_refs(root, rel, text, problems)
        if rel.endswith(DOC_SUFFIXES):
            check_points_tables(root, rel, text, problems)
        if re.match(r"^lessons/\d\d_[^/]+/README\.md$", rel):
            check_lesson_readme(root, rel, text, files, problems)
            check_lesson_tests(root, rel, text, files, problems)
    for p in problems.items:
        print(p)
    if problems.items:
        print(f"check_docs: {len(problems.items)} problem(s)", file=sys.stderr)
        return 1
    print(f"check_docs: {len(files)} files, no problems")
    return 0


if __name__ == "__main__":
    sys.exit(main())
