#!/usr/bin/env python3
"""The code's shape, checked: the modules' dependency graph and the paths the docs cite.

  module_graph.py SOURCE_DIR

1. The modules are the shmtimer_module() calls of src/*/CMakeLists.txt, each with the
   modules it DEPENDS on; the graph has no cycle, and docs/architecture.md's table between
   <!-- modules:begin --> and <!-- modules:end --> says the same.
2. Every #include of the library, its public headers, the tools and the Python module
   follows the graph: a module's files include their own module's headers and those of
   modules it depends on (directly or not), never one further up; a public header
   (include/shmtimer) includes no private one; the tools and src/python include the public
   headers only, besides their own; each public header belongs to exactly one module; no
   include climbs out of its folder with "..". Quoted and angled includes alike.
   (CMake's include paths stop back-edges between the modules' private headers from
   compiling; this check also covers the public ones, which share one include directory,
   and the tools, which see every module's folder.)
3. Every repository path cited in README.md, docs/*.md (and their relative links) and the
   comments and docstrings of the tracked sources exists (globs match something), and every
   file name such as `slot_ops.cpp` names a file that exists: a move or rename that leaves a
   stale citation fails here.
The files are those git tracks (every file but build trees, where git cannot say).
"""
import fnmatch
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
problems = []


def fail(message):
    problems.append(message)


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def tracked_files():
    """The files git tracks; every file but build trees where git cannot say (a tarball)."""
    git = subprocess.run(["git", "-C", ROOT, "ls-files"], capture_output=True, text=True)
    if git.returncode == 0 and git.stdout:
        return [p for p in git.stdout.splitlines() if os.path.exists(os.path.join(ROOT, p))]
    found = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(("build", ".git", "__pycache__"))]
        found += [os.path.relpath(os.path.join(folder, n), ROOT) for n in names]
    return found


# 1. The modules, as CMake declares them.
def cmake_modules():
    modules = {}
    for folder in sorted(os.listdir(os.path.join(ROOT, "src"))):
        cmake = os.path.join("src", folder, "CMakeLists.txt")
        if not os.path.exists(os.path.join(ROOT, cmake)):
            continue
        for call in re.findall(r"shmtimer_module\((.*?)\)", read(cmake), re.DOTALL):
            words = re.sub(r"#[^\n]*", "", call).split()
            name, sections, key = words[0], {}, None
            for word in words[1:]:
                if word in ("SOURCES", "HEADERS", "DEPENDS", "PRIVATE_LIBS"):
                    key = word
                    sections[key] = []
                else:
                    sections[key].append(word)
            if name != folder:
                fail(f"{cmake}: module '{name}' is not named after its folder '{folder}'")
            modules[name] = {"folder": f"src/{folder}", "depends": set(sections.get("DEPENDS", [])),
                             "headers": sections.get("HEADERS", []), "sources": sections.get("SOURCES", [])}
    return modules


def reachable(modules, name):
    seen, stack = set(), list(modules[name]["depends"])
    while stack:
        dep = stack.pop()
        if dep == name:
            fail(f"the modules' graph has a cycle through '{name}'")
            return seen
        if dep not in seen and dep in modules:
            seen.add(dep)
            stack.extend(modules[dep]["depends"])
    return seen


def check_architecture_page(modules):
    text = read("docs/architecture.md") if os.path.exists(os.path.join(ROOT, "docs/architecture.md")) else ""
    if "<!-- modules:begin -->" not in text:
        fail("docs/architecture.md: no table between <!-- modules:begin --> and <!-- modules:end -->")
        return
    block = text.split("<!-- modules:begin -->", 1)[1].split("<!-- modules:end -->", 1)[0]
    rows = re.findall(r"^\|\s*`([a-z_]+)`\s*\|\s*`([^`]+)`\s*\|([^|]*)\|", block, re.MULTILINE)
    documented = {name: (folder, set(re.findall(r"`([a-z_]+)`", deps))) for name, folder, deps in rows}
    for name, module in modules.items():
        if name not in documented:
            fail(f"docs/architecture.md: module '{name}' is missing from the modules table")
        elif documented[name] != (module["folder"], module["depends"]):
            fail(f"docs/architecture.md: module '{name}' is documented as {documented[name]}, "
                 f"CMake says {(module['folder'], module['depends'])}")
    for name in set(documented) - set(modules):
        fail(f"docs/architecture.md: module '{name}' is documented but not built")


# 2. Includes.
INCLUDE = re.compile(r'^\s*#\s*include\s+(?:"([^"]+)"|<([^>]+)>)', re.MULTILINE)


def check_includes(modules, files):
    owner_of_public = {}
    for name, module in modules.items():
        for header in module["headers"]:
            if header in owner_of_public:
                fail(f"include/shmtimer/{header} is in the file sets of '{owner_of_public[header]}' and '{name}'")
            owner_of_public[header] = name
            if not os.path.exists(os.path.join(ROOT, "include/shmtimer", header)):
                fail(f"{module['folder']}/CMakeLists.txt: public header include/shmtimer/{header} does not exist")
    for path in files:
        if path.startswith("include/shmtimer/") and path.endswith(".hpp"):
            if os.path.basename(path) not in owner_of_public:
                fail(f"{path}: a public header in no module's HEADERS (so never installed)")
    private_of = {}  # private header path -> module
    for name, module in modules.items():
        for path in files:
            if path.startswith(module["folder"] + "/") and path.endswith(".hpp"):
                private_of[path] = name
        for source in module["sources"]:
            if f"{module['folder']}/{source}" not in files:
                fail(f"{module['folder']}/CMakeLists.txt: source {source} does not exist")
        for path in files:
            if (path.startswith(module["folder"] + "/") and path.endswith(".cpp")
                    and os.path.basename(path) not in module["sources"]):
                fail(f"{path}: in no SOURCES of module '{name}'")

    allowed = {name: reachable(modules, name) | {name} for name in modules}
    for path in files:
        if not path.endswith((".cpp", ".hpp")):
            continue
        if path.startswith("include/shmtimer/"):
            kind, module = "public", owner_of_public.get(os.path.basename(path))
        elif any(path.startswith(m["folder"] + "/") for m in modules.values()):
            kind = "module"
            module = next(n for n, m in modules.items() if path.startswith(m["folder"] + "/"))
        elif path.startswith(("tools/", "src/python/")):
            kind, module = "user", None
        else:
            continue  # tests and benchmarks may use private headers: they test them
        here = os.path.dirname(path)
        for quoted, angled in INCLUDE.findall(read(path)):
            included = quoted or angled
            if ".." in included.split("/"):
                fail(f"{path}: includes {included}: a path out of its folder goes around the module graph")
                continue
            if included.startswith("shmtimer/"):
                target = owner_of_public.get(included[len("shmtimer/"):])
                if target is None:
                    fail(f"{path}: includes {included}, which no module provides")
                elif module is not None and target not in allowed[module]:
                    fail(f"{path}: includes {included} of module '{target}', which '{module}' does not depend on "
                         f"(a back-edge)")
                continue
            local = os.path.normpath(os.path.join(here, included))
            if angled and not any(included == os.path.basename(p) for p in private_of):
                continue  # a system or third-party header
            if local in files and quoted:
                if kind == "public":
                    fail(f"{path}: a public header includes {included}, which is not installed")
                continue
            if kind == "user" and os.path.normpath(os.path.join("tools/common", included)) in files:
                continue  # the tools' shared library
            owners = [private_of[p] for p in (f"{m['folder']}/{included}" for m in modules.values())
                      if p in private_of]
            if not owners:
                fail(f"{path}: includes \"{included}\", which is nowhere in the tree")
            elif kind in ("user", "public"):
                fail(f"{path}: includes the private header {included} of module '{owners[0]}'; "
                     f"only include/shmtimer is the API")
            elif owners[0] not in allowed[module]:
                fail(f"{path}: includes {included} of module '{owners[0]}', which '{module}' does not depend on "
                     f"(a back-edge)")


# 3. Cited paths and file names.
TOP = ("src", "include", "tools", "tests", "bench", "docs", ".ci")
CITED_PATH = re.compile(r"(?<![\w./:-])((?:%s)/[A-Za-z0-9_.*/-]*[A-Za-z0-9_*/])" % "|".join(re.escape(t) for t in TOP))
MARKDOWN_LINK = re.compile(r"\]\((?![a-z]+:)([^)#\s]+)")
FILE_NAME = re.compile(r"(?<![\w./-])([A-Za-z0-9_-]+\.(?:cpp|hpp))\b")


def comment_text(path, text):
    """The comments of a source file (all of a Markdown file)."""
    if path.endswith(".md"):
        return text
    if path.endswith((".cpp", ".hpp")):
        return "\n".join(re.findall(r"//[^\n]*|/\*.*?\*/", text, re.DOTALL))
    comments = re.findall(r"(?:^|[ \t])#[^\n]*", text, re.MULTILINE)  # Python, shell, CMake
    docstrings = re.findall(r'"""(.*?)"""', text, re.DOTALL) if path.endswith(".py") else []
    return "\n".join(comments + docstrings)


def check_citations(files):
    names = {os.path.basename(p) for p in files}
    sources = [p for p in files if p == "README.md" or (p.startswith("docs/") and p.endswith(".md")) or
               p.endswith((".cpp", ".hpp", ".py", ".sh", ".cmake")) or os.path.basename(p) == "CMakeLists.txt"]
    for path in sources:
        text = comment_text(path, read(path))
        for cited in set(CITED_PATH.findall(text)):
            cited = cited.rstrip("/.")
            if "*" in cited:
                if not any(fnmatch.fnmatch(f, cited) or fnmatch.fnmatch(f, cited + "/*") for f in files):
                    fail(f"{path}: cites {cited}, which matches no file")
            elif cited not in files and not any(f.startswith(cited + "/") for f in files):
                fail(f"{path}: cites {cited}, which does not exist")
        for name in set(FILE_NAME.findall(text)):
            if name not in names:
                fail(f"{path}: names {name}, which is no file of the repository")
        if path.endswith(".md"):  # relative links, from the page's own folder
            for link in set(MARKDOWN_LINK.findall(text)):
                target = os.path.normpath(os.path.join(os.path.dirname(path), link))
                if target not in files and not any(f.startswith(target + "/") for f in files):
                    fail(f"{path}: links to {link}, which does not exist")


def main():
    files = set(tracked_files())
    modules = cmake_modules()
    if not modules:
        fail("no shmtimer_module() found under src/")
    for name in modules:
        for dep in modules[name]["depends"] - set(modules):
            fail(f"module '{name}' depends on '{dep}', which is no module")
    check_architecture_page(modules)
    check_includes(modules, files)
    check_citations(files)
    order = sorted(modules, key=lambda n: len(reachable(modules, n)))
    print("modules, each after what it depends on:", " <- ".join(order))
    for message in problems:
        print("PROBLEM:", message)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
