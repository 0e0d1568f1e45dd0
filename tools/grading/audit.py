#!/usr/bin/env python3
"""Audit a lesson's compiled objects: what may learner code define and call?

Learner code runs inside the test process, so before any of it runs the grader checks its compiled
objects (common/README.md, "What your code may call"):

  files      the lesson folder holds only README.md, the header and the .c/.cu/.cuh files of the
             lesson, and the header is unchanged (its SHA-256 is in tests/lesson_manifest.json); a
             .cuh is compiled into the .cu files that include it, and audited in their objects
  defines    the global symbols an object defines are the lesson API (the header's functions);
             kernels, helpers and variables are static or in an anonymous namespace
  calls      every symbol an object uses is on the allow-list below
  ctors      no static constructors or destructors (a .cu file keeps nvcc's one registration)
  syscalls   no system call instructions in host code (inline assembly)

A refused .c file costs the C part; a refused .cu file the CUDA part and the speed part.

    tools/grading/audit.py --lesson 03                      audit build/ 's objects of lessons/03_*
    tools/grading/audit.py --lesson 03 --flavor solutions   the reference solution (must be clean)
    tools/grading/audit.py --lesson 03 --objects a.o b.cu.o audit given objects against lesson 03's API
Exit 0 when clean, 1 with one line per violation.
"""
import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFEST = os.path.join(ROOT, "tests", "lesson_manifest.json")

# ---------------------------------------------------------------- the allow-list
MATH = set("""
acos asin atan atan2 cos sin tan acosh asinh atanh cosh sinh tanh exp exp2 expm1 log log2 log10 log1p logb
ilogb pow sqrt cbrt hypot fabs floor ceil round lround llround trunc rint lrint llrint nearbyint fmod remainder
remquo fmin fmax fdim fma frexp ldexp scalbn scalbln modf copysign nextafter nexttoward erf erfc tgamma lgamma
nan
""".split())
MATH |= {f + "f" for f in MATH} | {f + "l" for f in MATH}
MATH |= {"__isnan", "__isnanf", "__isinf", "__isinff", "__finite", "__finitef", "__fpclassify", "__fpclassifyf",
         "__signbit", "__signbitf", "__exp_finite", "__expf_finite", "__log_finite", "__logf_finite"}
STDIO = {"printf", "fprintf", "vprintf", "vfprintf", "puts", "putchar", "fputs", "fputc", "putc", "fflush",
         "snprintf", "vsnprintf", "__printf_chk", "__fprintf_chk", "__vprintf_chk", "__vfprintf_chk",
         "__snprintf_chk", "__vsnprintf_chk", "stdout", "stderr"}
MEMORY = {"malloc", "calloc", "realloc", "free", "aligned_alloc", "memcpy", "memset", "memmove", "memcmp",
          "strlen", "qsort", "__memcpy_chk", "__memset_chk", "__memmove_chk", "abs", "labs", "llabs"}
ASSERT = {"__assert_fail", "__assert_perror_fail", "abort", "__stack_chk_fail"}
CUDA_RUNTIME = re.compile(
    r"^cuda(Malloc|MallocAsync|MallocHost|HostAlloc|MallocPitch|Free|FreeAsync|FreeHost|Memcpy\w*|Memset\w*|"
    r"GetSymbolAddress|GetSymbolSize|GetLastError|PeekAtLastError|GetErrorString|GetErrorName|"
    r"DeviceSynchronize|StreamSynchronize|StreamQuery|GetDevice|GetDeviceCount|"
    r"GetDeviceProperties\w*|DeviceGetAttribute|FuncSetAttribute|FuncGetAttributes|FuncSetCacheConfig|"
    r"FuncSetSharedMemConfig|Occupancy\w*|MemGetInfo|PointerGetAttributes|DeviceGetLimit|LaunchKernel\w*|"
    r"LaunchCooperativeKernel\w*|RuntimeGetVersion|DriverGetVersion)$")
# what nvcc and g++ emit for kernel launches, registration, function-local statics, exceptions and new/delete
COMPILER = re.compile(
    r"^(__cuda[A-Z]\w*|__cxa_guard_(acquire|release|abort)|__cxa_(begin|end)_catch|__cxa_rethrow|"
    r"__cxa_allocate_exception|__cxa_free_exception|__cxa_throw|__cxa_pure_virtual|__gxx_personality_v0|"
    r"_Unwind_Resume|_Zn[wa]m\w*|_Zd[la]Pv\w*|_ZSt\d+__throw_\w+|_ZSt7nothrow|__dso_handle_unused)$")
NVCC_ONLY = {"atexit"}  # nvcc's registration unregisters its fat binary at exit

RULES = {
    "files": "only README.md, the header and the lesson's .c/.cu/.cuh files; the header unchanged",
    "defines": "define only the functions the lesson header declares; make kernels, helpers and global "
               "variables static (or put them in an anonymous namespace)",
    "calls": "call only what the lesson allows (common/README.md, \"What your code may call\")",
    "ctors": "no static constructors or destructors (global objects with constructors, "
             "__attribute__((constructor)))",
    "syscalls": "no system calls in inline assembly",
}


def prototypes(header_text):
    """{function name: declaration text} of the functions a header declares (prototypes outside
    comments, not static inline)."""
    text = re.sub(r"/\*.*?\*/", " ", header_text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = "\n".join(line for line in text.split("\n") if not line.lstrip().startswith("#"))
    text = re.sub(r'extern\s+"C"\s*\{', " ", text)
    out, depth, stmt = {}, 0, ""
    for ch in text:
        if ch == "{":
            depth += 1
            if depth == 1 and "(" in stmt:
                stmt = ""  # a function body (static inline): drop the statement it belongs to
            continue
        if ch == "}":
            depth -= 1
            continue
        if depth:
            continue
        if ch == ";":
            s = " ".join(stmt.split())
            stmt = ""
            if s and not s.startswith(("typedef", "static")) and "(" in s:
                m = re.match(r"^([\w\s\*]*?)\b([A-Za-z_]\w*)\s*\(", s)
                if m:
                    out[m.group(2)] = s
            continue
        stmt += ch
    return out


def declared_functions(header_text):
    """Names of the functions a header declares."""
    return set(prototypes(header_text))


# the headers of common/ a lesson may include: every function they declare may be called (the
# grader's own headers are in common/grading/, off the lessons' include path)
LESSON_HEADERS = ("attn.h", "attn_gpu.h", "nsa.h")


def allowed_helpers():
    names = set()
    for h in LESSON_HEADERS:
        with open(os.path.join(ROOT, "common", h), encoding="utf-8") as f:
            names |= declared_functions(f.read())
    return names


def load_manifest():
    with open(MANIFEST, encoding="utf-8") as f:
        return json.load(f)


def symbol_allowed(sym, api, helpers, is_cu):
    base = sym.split("@")[0]
    return (base in api or base in helpers or base in MATH or base in STDIO or base in MEMORY or base in ASSERT
            or CUDA_RUNTIME.match(base) is not None or COMPILER.match(base) is not None
            or (is_cu and base in NVCC_ONLY))


def local_by_name(sym):
    """Symbols of anonymous namespaces are unique to their file (nvcc names them _GLOBAL__N_<hash>)."""
    return "_GLOBAL__N_" in sym or sym == "DW.ref.__gxx_personality_v0"


def demangle(sym):
    exe = shutil.which("c++filt")
    if not exe:
        return sym
    out = subprocess.run([exe, sym], capture_output=True, text=True).stdout.strip()
    return out or sym


def nm_symbols(obj):
    proc = subprocess.run(["nm", "-P", obj], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"nm failed on {obj}: {proc.stderr.strip()}")
    defined, undefined = [], []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind in ("U", "w", "v"):  # undefined (w, v: weak undefined)
            undefined.append(name)
        elif kind.isupper() or kind in ("u", "i"):  # global: upper case; u unique, i indirect function
            defined.append((name, kind))
    return defined, undefined


def init_entries(obj):
    """Entries of .init_array/.ctors and .fini_array/.dtors (8 bytes each on x86-64)."""
    proc = subprocess.run(["readelf", "-SW", obj], capture_output=True, text=True)
    ctors = dtors = 0
    for line in proc.stdout.splitlines():
        m = re.search(r"\]\s+(\.init_array|\.ctors|\.fini_array|\.dtors)(\.\S*)?\s+\S+\s+\S+\s+\S+\s+([0-9a-f]+)", line)
        if m:
            n = int(m.group(3), 16) // 8
            if m.group(1) in (".init_array", ".ctors"):
                ctors += n
            else:
                dtors += n
    return ctors, dtors


def has_syscall(obj):
    proc = subprocess.run(["objdump", "-d", "--no-show-raw-insn", obj], capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        ins = line.split("\t")[-1].strip() if "\t" in line else ""
        if re.match(r"^(syscall|sysenter|int\s+\$0x80)\b", ins):
            return True
    return False


def audit_object(obj, source_name, api, helpers):
    """Violations of one object: a list of (rule, symbol or detail)."""
    is_cu = source_name.endswith(".cu")
    out = []
    defined, undefined = nm_symbols(obj)
    for name, kind in defined:
        if name in api or local_by_name(name):
            continue
        out.append(("defines", f"{demangle(name)} (a global symbol the lesson header does not declare)"))
    for name in undefined:
        if not symbol_allowed(name, api, helpers, is_cu):
            out.append(("calls", f"{demangle(name)}"))
    ctors, dtors = init_entries(obj)
    if ctors > (1 if is_cu else 0) or dtors:
        out.append(("ctors", f"{ctors} static constructor(s) and {dtors} destructor(s)" +
                    (" (nvcc's kernel registration is the one allowed)" if is_cu else "")))
    if has_syscall(obj):
        out.append(("syscalls", "a syscall instruction in host code"))
    return out


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_files(lesson_dir, entry):
    """Violations of the folder itself: unchanged header, no extra files."""
    out = []
    present = sorted(n for n in os.listdir(lesson_dir) if not n.startswith("."))
    allowed = set(entry["files"]) | {"README.md"}
    for name in present:
        if name not in allowed:
            out.append(("files", f"{name}: not a file of this lesson (only {', '.join(sorted(allowed))})"))
    for name, digest in list(entry["headers"].items()) + list(entry.get("contract", {}).items()):
        path = os.path.join(lesson_dir, name)
        what = "the header is the contract" if name.endswith(".h") else "the lesson's descriptor (points, targets) is the course's"
        if not os.path.exists(path):
            out.append(("files", f"{name} is missing"))
        elif sha256(path) != digest:
            out.append(("files", f"{name} was changed: {what} (restore it, e.g. "
                                 f"git checkout -- lessons/{os.path.basename(lesson_dir)}/{name})"))
    return out


def lesson_objects(build_dir, flavor, num):
    """{source file name: object path} of the library <flavor>_<num>. The solutions' objects are built
    one object library per source file (solobj_<num>_<file>, which the known-wrong variants link), so
    for them those folders are searched too."""
    found = {}
    dirs = [f"{flavor}_{num}.dir"] + ([f"solobj_{num}_*.dir"] if flavor == "solutions" else [])
    for obj in [o for d in dirs for o in glob.glob(os.path.join(build_dir, "CMakeFiles", d, "**", "*.o"),
                                                   recursive=True)]:
        src = os.path.basename(obj)[:-2]  # x.cu.o -> x.cu
        found[src] = obj
    return found


def audit_lesson(build_dir, num, flavor="lessons", tree=None, objects=None):
    """Audit one lesson. Returns {"files": [...], "by_file": {source: [(rule, detail)]}} ."""
    manifest = load_manifest()
    name = next((k for k in manifest if k[:2] == num), None)
    if not name:
        raise KeyError(f"lesson {num} is not in {os.path.relpath(MANIFEST, ROOT)}")
    entry = manifest[name]
    api, helpers = set(entry["api"]), allowed_helpers()
    result = {"lesson": name, "files": [], "by_file": {}}
    if tree:
        result["files"] = check_files(os.path.join(tree, name), entry)
    objs = objects if objects is not None else lesson_objects(build_dir, flavor, num)
    for src, obj in sorted(objs.items()):
        result["by_file"][src] = audit_object(obj, src, api, helpers)
    return result


def format_violations(result):
    lines = []
    for rule, detail in result["files"]:
        lines.append(f"lessons/{result['lesson']}: {detail} [rule: {RULES[rule]}]")
    for src, items in result["by_file"].items():
        for rule, detail in items:
            what = {"defines": "defines", "calls": "uses", "ctors": "has", "syscalls": "has"}[rule]
            lines.append(f"{src} {what} {detail} [rule: {RULES[rule]}]")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lesson", required=True, help="lesson number, e.g. 03")
    ap.add_argument("--flavor", default="lessons", help="lessons (default), solutions, stubs, graded")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--objects", nargs="*", help="audit these objects instead of the build's")
    args = ap.parse_args()
    num = f"{int(args.lesson):02d}"
    objects = None
    if args.objects:
        objects = {os.path.basename(o)[:-2] if o.endswith(".o") else os.path.basename(o): o for o in args.objects}
    tree = os.path.join(ROOT, args.flavor) if args.flavor in ("lessons", "solutions") else None
    result = audit_lesson(args.build_dir, num, args.flavor, tree=tree, objects=objects)
    if not result["by_file"] and not objects:
        print(f"audit: no objects of {args.flavor}_{num} in {args.build_dir}: build the lesson first "
              f"(cmake --build {args.build_dir} --target test_{num}_{args.flavor})", file=sys.stderr)
        return 2
    lines = format_violations(result)
    for line in lines:
        print("audit: " + line)
    if not lines:
        print(f"audit: {args.flavor}/{result['lesson']}: clean ({', '.join(result['by_file'])})")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
