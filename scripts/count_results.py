#!/usr/bin/env python3
"""Sums JUnit XML results (GoogleTest and pytest write the same shape) and
prints the closing line: 'tests: N passed, N failed, N skipped'. A skipped
test is reported, and fails the run: a skipped suite is not a pass."""
import pathlib
import sys
import xml.etree.ElementTree as ET

root = pathlib.Path(sys.argv[1])
passed = failed = skipped = 0
for f in sorted(root.rglob("*.xml")):
    for case in ET.parse(f).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
            print(f"FAILED {f.parent.name}/{case.get('classname')}.{case.get('name')}")
        elif case.find("skipped") is not None or case.get("result") == "skipped":
            skipped += 1
            print(f"SKIPPED {f.parent.name}/{case.get('classname')}.{case.get('name')}")
        else:
            passed += 1
if passed == 0:
    failed += 1
    print("no test ran")
print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed or skipped else 0)
