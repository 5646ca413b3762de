#!/usr/bin/env python3
"""Summarize a `cargo test` log: totals, failures, and each integration test that passed, by name.

Integration tests (the cluster, end-to-end and interop tests live there) are listed one by one so a
reader of CI output sees that they ran; unit tests are only counted.
"""
import re
import sys

text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
passed = failed = ignored = 0
for m in re.finditer(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", text):
    passed += int(m[1]); failed += int(m[2]); ignored += int(m[3])
print(f"== test summary: {passed} passed, {failed} failed, {ignored} ignored")
sections = re.split(r"^\s*Running (\S+)", text, flags=re.M)
for path, body in zip(sections[1::2], sections[2::2]):
    ok = re.findall(r"^test (\S+) \.\.\. ok$", body, re.M)
    bad = re.findall(r"^test (\S+) \.\.\. FAILED$", body, re.M)
    if "/tests/" in f"/{path}" and not path.startswith("unittests"):
        print(f"   {path}: {len(ok)} passed, {len(bad)} failed")
        for n in ok:
            print(f"      ok     {n}")
    for n in bad:
        print(f"      FAILED {path} {n}")
if not passed and not failed:
    print("== no test results found: the test phase did not run")
    sys.exit(1)
