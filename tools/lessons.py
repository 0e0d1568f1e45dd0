"""The course's lessons and their descriptors, for every tool that needs them (the grader, the
benchmark, the generators, the classroom workflow's check).

A lesson is a folder NN_name/ in solutions/ (the reference) and lessons/ (the learner's copy) with a
test file tests/test_NN_name.c. Its descriptor, lesson.json in the folder, says what the build, the
grader and the benchmark need to know about it:

    title          the lesson's name as the score table prints it
    points         points per graded part: c_part, cuda_part, speed (0: timed and reported only)
    speed_targets  {speed result name: target speed-up over the frozen baseline} (0: reported only);
                   the build hands each to the tests as ATTN_TARGET_<NAME> (upper case)
    sanitize       the Criterion filters of compute-sanitizer: "grade", what ./course grade runs memcheck
                   and racecheck on: one filter or a list of them, each run on its own (lessons 01-09 name
                   their test cuda_part/sanitizer_paths, which walks every kernel and path of the lesson on
                   tiny shapes); "racecheck", one filter: the maintainers' racecheck entry
                   (sanitizer.racecheck.NN) and the default of the known-wrong racy variants. A filter is a
                   Criterion --filter pattern (a glob such as "cuda_part/*causal"); default "cuda_part/*"
    bench          what ./course bench times
    optional       source files of an optional fast path (default none): an API function of the header
                   that the lesson's general code calls first and serves itself when it answers
                   ATTN_ERR_NOT_IMPLEMENTED; such a file that does not compile is graded as its stand-in
                   (which answers just that) and costs no points
    bench          the shapes ./course bench and build/bin/bench --lesson NN time the lesson on:
                   {"SHAPE": {"OPTION": VALUE, ...}, ...}, each shape a name and a set of the benchmark's
                   options (tools/bench/README.md) without their dashes, e.g.
                   {"bar_64k": {"N": 65536, "H": 64, "G": 4, "D": 128, "causal": 1, "config": "mean,paper"}}
                   becomes `--N 65536 --H 64 --G 4 --D 128 --causal 1 --config mean,paper`; options not
                   given keep the benchmark's defaults. Values are whole numbers or words such as lists
                   ("1024,2048"); the build compiles the shapes into the benchmark (bench_defaults.h)

The descriptor is read from solutions/ when the tree has it, otherwise from lessons/, where the
grader checks it against its SHA-256 in tests/lesson_manifest.json, like the lesson's header.
"""
import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ("c_part", "cuda_part", "speed")


def lesson_names(root=ROOT):
    """Sorted lesson folder names (NN_name) that have a test file, from solutions/ and lessons/."""
    names = set()
    for tree in ("solutions", "lessons"):
        base = os.path.join(root, tree)
        if os.path.isdir(base):
            for name in os.listdir(base):
                if (re.match(r"^\d\d_", name) and os.path.isdir(os.path.join(base, name))
                        and os.path.exists(os.path.join(root, "tests", f"test_{name}.c"))):
                    names.add(name)
    return sorted(names)


def descriptor_path(name, root=ROOT):
    for tree in ("solutions", "lessons"):
        path = os.path.join(root, tree, name, "lesson.json")
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{name}: no lesson.json in solutions/{name}/ or lessons/{name}/")


def descriptor(name, root=ROOT):
    """The descriptor of lesson `name` (NN_name), with its points checked."""
    path = descriptor_path(name, root)
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    pts = d.get("points", {})
    if set(pts) != set(PARTS) or not all(isinstance(v, int) and v >= 0 for v in pts.values()):
        raise ValueError(f"{path}: points must give c_part, cuda_part and speed as whole numbers >= 0")
    d.setdefault("speed_targets", {})
    d.setdefault("sanitize", {})
    san = d["sanitize"]
    grade = san.get("grade", "cuda_part/*") if isinstance(san, dict) else None
    if (not isinstance(san, dict) or not isinstance(san.get("racecheck", ""), str)
            or not (isinstance(grade, str) or (isinstance(grade, list) and grade
                                               and all(isinstance(f, str) and f for f in grade)))
            or not grade):
        raise ValueError(f"{path}: sanitize must be an object whose grade is a filter or a non-empty list of filters "
                         "and whose racecheck is a filter")
    d.setdefault("optional", [])
    if not (isinstance(d["optional"], list) and all(isinstance(f, str) and f.endswith((".c", ".cu"))
                                                     for f in d["optional"])):
        raise ValueError(f"{path}: optional must be a list of the lesson's .c/.cu file names")
    d.setdefault("bench", {})
    bench_shapes(d, path)  # raises on a malformed "bench"
    d["name"], d["num"] = name, name[:2]
    return d


def grade_filters(d):
    """The Criterion filters ./course grade runs compute-sanitizer on, as a list (a descriptor's
    sanitize.grade may be one filter or a list)."""
    grade = d.get("sanitize", {}).get("grade", "cuda_part/*")
    return [grade] if isinstance(grade, str) else list(grade)


BENCH_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.,-]*$")


def bench_shapes(d, path="lesson.json"):
    """[(shape name, [bench options])] of a descriptor's "bench" key: {"N": 8192} gives ["--N", "8192"].
    Shapes by name and options by key, the order in which tools/bench/CMakeLists.txt (CMake's JSON
    reader) writes them into the benchmark."""
    shapes = d.get("bench", {})
    if not isinstance(shapes, dict):
        raise ValueError(f"{path}: bench must be an object of named shapes")
    out = []
    for name, options in sorted(shapes.items()):
        if not BENCH_WORD.match(name) or not isinstance(options, dict):
            raise ValueError(f"{path}: bench shape {name!r} must be a plain name with an object of options")
        args = []
        for key, value in sorted(options.items()):
            text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else None
            if not re.match(r"^[A-Za-z][A-Za-z0-9-]*$", key) or text is None or not BENCH_WORD.match(text):
                raise ValueError(f"{path}: bench shape {name}: option {key!r} = {value!r} is not a plain option and "
                                 "value (a whole number or a word)")
            args += [f"--{key}", text]
        out.append((name, args))
    return out


def descriptors(root=ROOT):
    """{NN: descriptor} of every lesson."""
    return {name[:2]: descriptor(name, root) for name in lesson_names(root)}
