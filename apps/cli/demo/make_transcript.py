#!/usr/bin/env python3
"""Writes apps/cli/demo/transcript.jsonl: the recorded model answers `agentcore demo`
replays (match by task and turn). Run it after changing a script below; the build
embeds the transcript, so nothing needs Python at build or run time."""
import json, os

HERE = os.path.dirname(os.path.abspath(__file__))
lines = []
turns = {}

def answer(role, task, parts, stop="tool_use", inp=900, out=250):
    turn = turns.get(role, 0)
    turns[role] = turn + 1
    lines.append({
        "v": 1, "role": role, "turn": turn, "hash": "0000000000000000",
        "request": {"system": "", "messages": [], "tools": [], "max_tokens": 1, "stop": [],
                    "tags": {"role": role, "task": task}},
        "response": {"message": {"role": "assistant", "parts": parts}, "stop": stop,
                     "usage": {"input": inp, "output": out, "cache_read": 0, "cache_write": 0},
                     "latency_ms": 0, "model": "demo-replay"}})

n = 0
def call(name, **args):
    global n
    n += 1
    return {"type": "tool_call", "id": f"call_{n}", "name": name, "arguments": json.dumps(args)}

def text(t):
    return {"type": "text", "text": t}

def worker(task, *turn_parts):
    for parts in turn_parts:
        answer("worker", task, parts)

def planner(tasks):
    answer("planner", "", [text(json.dumps({"tasks": tasks}))], stop="end_turn", inp=2500, out=600)

def contract(*paths):
    return {"allowed_paths": list(paths), "acceptance_checks": ["make test"], "max_files": 6,
            "max_changed_lines": 200}

def header(name, decl, doc):
    guard = f"TEXTKIT_{name.upper()}_H"
    return f"#ifndef {guard}\n#define {guard}\n/* {doc} */\n{decl}\n#endif\n"

def files(name, decl, doc, source, test):
    return [call("write_file", path=f"include/textkit/{name}.h", content=header(name, decl, doc)),
            call("write_file", path=f"src/{name}.c", content=source),
            call("write_file", path=f"tests/test_{name}.c", content=test)]

# ---- the code the scripted engineers write -----------------------------------
case_src = lambda fn, conv: (f'#include "textkit/{fn}.h"\n\n#include <ctype.h>\n\n'
                             f'char *tk_{fn}(char *s) {{\n  for (char *p = s; *p; ++p) *p = (char){conv}((unsigned char)*p);\n'
                             f'  return s;\n}}\n')
case_test = lambda fn, a, b: (f'#include "../tests/check.h"\n#include "textkit/{fn}.h"\n\nint main(void) {{\n'
                              f'  char s[] = "{a}";\n  CHECK_STR(tk_{fn}(s), "{b}");\n  return 0;\n}}\n')

def words_src(helper_static):
    h = "static int is_space" if helper_static else "int tk_is_space"
    use = "is_space" if helper_static else "tk_is_space"
    return (f'#include "textkit/words.h"\n\n{h}(char c) {{ return c == \' \' || c == \'\\t\' || c == \'\\n\'; }}\n\n'
            f'size_t tk_count_words(const char *s) {{\n  size_t n = 0;\n  int in_word = 0;\n'
            f'  for (; *s; ++s) {{\n    if ({use}(*s)) in_word = 0;\n    else if (!in_word) {{ in_word = 1; ++n; }}\n  }}\n'
            f'  return n;\n}}\n')
words_test = ('#include "../tests/check.h"\n#include "textkit/words.h"\n\nint main(void) {\n'
              '  CHECK(tk_count_words("") == 0);\n  CHECK(tk_count_words("  one two\\tthree ") == 3);\n  return 0;\n}\n')

def trim_src(helper_static):
    h = "static int is_space" if helper_static else "int tk_is_space"
    use = "is_space" if helper_static else "tk_is_space"
    return (f'#include "textkit/trim.h"\n\n#include <string.h>\n\n'
            f'{h}(char c) {{ return c == \' \' || c == \'\\t\' || c == \'\\n\'; }}\n\n'
            f'char *tk_trim(char *s) {{\n  char *start = s;\n  while (*start && {use}(*start)) ++start;\n'
            f'  size_t n = strlen(start);\n  while (n > 0 && {use}(start[n - 1])) --n;\n'
            f'  memmove(s, start, n);\n  s[n] = 0;\n  return s;\n}}\n')
trim_test = ('#include "../tests/check.h"\n#include "textkit/trim.h"\n\nint main(void) {\n'
             '  char a[] = "  hi there \\n";\n  CHECK_STR(tk_trim(a), "hi there");\n'
             '  char b[] = "   ";\n  CHECK_STR(tk_trim(b), "");\n  return 0;\n}\n')
pal_src = ('#include "textkit/palindrome.h"\n\n#include <string.h>\n\n'
           'int tk_is_palindrome(const char *s) {\n  size_t n = strlen(s);\n'
           '  for (size_t i = 0; i < n / 2; ++i)\n    if (s[i] != s[n - 1 - i]) return 0;\n  return 1;\n}\n')
pal_test = ('#include "../tests/check.h"\n#include "textkit/palindrome.h"\n\nint main(void) {\n'
            '  CHECK(tk_is_palindrome("level"));\n  CHECK(tk_is_palindrome(""));\n  CHECK(!tk_is_palindrome("textkit"));\n'
            '  return 0;\n}\n')
readme_both = ("# textkit\n\nSmall string functions in C, one file each, each with its own test.\n"
               "`make test` runs the tests; `make goal` checks that every planned feature is there.\n\n"
               "## Features\n- reverse\n- upper\n- lower\n")

# ---- wave 1: the planner's first round ------------------------------------------
planner([
    {"id": "upper", "title": "Add tk_upper", "priority": 10,
     "description": "char *tk_upper(char *s): upper-case in place, with its header, a test, and a line in the README's feature list.",
     "contract": contract("include/textkit/upper.h", "src/upper.c", "tests/test_upper.c", "README.md")},
    {"id": "lower", "title": "Add tk_lower", "priority": 5,
     "description": "char *tk_lower(char *s): lower-case in place, with its header, a test, and a line in the README's feature list.",
     "contract": contract("include/textkit/lower.h", "src/lower.c", "tests/test_lower.c", "README.md")},
    {"id": "words", "title": "Add tk_count_words",
     "description": "size_t tk_count_words(const char *s): words separated by spaces, tabs or newlines; header and test.",
     "contract": contract("include/textkit/words.h", "src/words.c", "tests/test_words.c")},
    {"id": "trim", "title": "Add tk_trim",
     "description": "char *tk_trim(char *s): strip leading and trailing whitespace in place; header and test.",
     "contract": contract("include/textkit/trim.h", "src/trim.c", "tests/test_trim.c")},
    {"id": "palindrome", "title": "Add tk_is_palindrome with its test",
     "description": "int tk_is_palindrome(const char *s), its header and its test.",
     "contract": contract("include/textkit/palindrome.h", "src/palindrome.c", "tests/test_palindrome.c")},
])

# upper: quick; lands first. (Its last three turns resolve a README conflict, used only
# if lower lands first.)
worker("upper",
       files("upper", "char *tk_upper(char *s);", "Upper-cases s in place; returns s.", case_src("upper", "toupper"),
             case_test("upper", "Hello", "HELLO")),
       [call("edit_file", path="README.md", old_text="- reverse\n", new_text="- reverse\n- upper\n")],
       [call("run_command", command="make test")],
       [call("finish", summary="tk_upper with its header and test; README lists it.")],
       [call("read_file", path="README.md")],
       [call("write_file", path="README.md", content=readme_both)],
       [call("finish", summary="Resolved the README conflict: both upper and lower are listed.")])

# lower: runs the tests first (slow), so upper lands before it and its README line conflicts;
# it resolves the conflict itself.
worker("lower",
       [call("run_command", command="make test && sleep 2")],
       files("lower", "char *tk_lower(char *s);", "Lower-cases s in place; returns s.", case_src("lower", "tolower"),
             case_test("lower", "HeLLo", "hello")),
       [call("edit_file", path="README.md", old_text="- reverse\n", new_text="- reverse\n- lower\n")],
       [call("finish", summary="tk_lower with its header and test; README lists it.")],
       [call("read_file", path="README.md")],
       [call("write_file", path="README.md", content=readme_both)],
       [call("run_command", command="make test")],
       [call("finish", summary="Resolved the README conflict: both upper and lower are listed.")])

# words: first tries to touch the Makefile (refused by the tool box: not in its contract).
# words and trim both define a global tk_is_space: each passes alone, together they do not
# link, so the gate's deep check fails their batch and bisects it; the one rejected is
# requeued by the planner and its second attempt makes the helper static.
worker("words",
       [call("write_file", path="Makefile", content="# rewritten by the words task\n")],
       files("words", "#include <stddef.h>\nsize_t tk_count_words(const char *s);", "Counts whitespace-separated words.",
             words_src(False), words_test),
       [call("run_command", command="make test")],
       [call("finish", summary="tk_count_words with its header and test.")],
       files("words", "#include <stddef.h>\nsize_t tk_count_words(const char *s);", "Counts whitespace-separated words.",
             words_src(True), words_test),
       [call("finish", summary="tk_count_words again, its helper static so it cannot clash with another file's.")])
worker("trim",
       files("trim", "char *tk_trim(char *s);", "Strips leading and trailing whitespace in place; returns s.",
             trim_src(False), trim_test),
       [call("run_command", command="make test")],
       [call("finish", summary="tk_trim with its header and test.")],
       files("trim", "char *tk_trim(char *s);", "Strips leading and trailing whitespace in place; returns s.",
             trim_src(True), trim_test),
       [call("finish", summary="tk_trim again, its helper static so it cannot clash with another file's.")])

# palindrome: goes round in circles (the same read four times): the loop calls it a stall,
# the worker abandons it with a report, the judge restarts, the planner splits it.
worker("palindrome", *[[call("read_file", path="src/reverse.c")] for _ in range(4)])

# ---- wave 2 --------------------------------------------------------------------
planner([
    {"id": "palindrome-core", "title": "Add tk_is_palindrome",
     "description": "int tk_is_palindrome(const char *s) in src/palindrome.c with its header; nothing else.",
     "contract": contract("include/textkit/palindrome.h", "src/palindrome.c")},
    {"id": "palindrome-test", "title": "Test tk_is_palindrome", "dependencies": ["palindrome-core"],
     "description": "tests/test_palindrome.c for tk_is_palindrome.",
     "contract": contract("tests/test_palindrome.c")},
])
planner([])  # the round's proposals: nothing new beyond the split
worker("palindrome-core",
       [call("write_file", path="include/textkit/palindrome.h",
             content=header("palindrome", "int tk_is_palindrome(const char *s);", "1 when s reads the same backwards.")),
        call("write_file", path="src/palindrome.c", content=pal_src)],
       [call("finish", summary="tk_is_palindrome and its header.")])
worker("palindrome-test",
       [call("write_file", path="tests/test_palindrome.c", content=pal_test)],
       [call("run_command", command="make test")],
       [call("finish", summary="The palindrome test.")])

with open(os.path.join(HERE, "transcript.jsonl"), "w") as f:
    for line in lines:
        f.write(json.dumps(line, separators=(",", ":")) + "\n")
print(f"wrote {len(lines)} answers")
