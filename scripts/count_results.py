#!/usr/bin/env python3
"""Prints the closing line of scripts/test.sh, 'tests: N passed, N failed, N skipped', with
every failed or skipped test named above it; exits 1 unless all passed. A skipped test fails
the run: a skipped suite is not a pass.

    count_results.py RESULTS --meson plain --meson asan --pytest scripts --pytest system

The cases come from the JUnit XML the stages wrote (GoogleTest and pytest write the same
shape). A test that writes no XML (crashed, aborted by a sanitizer, killed by meson's timeout,
never built) must not vanish from the count, so each stage is checked against what it was to
run:
  --meson NAME: RESULTS/NAME/ holds tests.txt (`meson test --list` with the stage's own
    selection: what it was to run), testlog.json (meson-logs: what meson ran, one JSON object
    a line) and <meson test name>.xml (scripts/gtest_wrap.sh). A listed test missing from the
    log, a test meson did not pass, and a test without XML are each a failure.
  --pytest NAME: RESULTS/NAME.xml (pytest --junitxml); without it, a failure.
Every stage must have run at least one case. GoogleTest's DISABLED_ tests count as skipped."""
import argparse
import json
import pathlib
import sys
import xml.etree.ElementTree as ET


class Tally:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0

    def fail(self, what):
        self.failed += 1
        print(f"FAILED {what}")

    def skip(self, what):
        self.skipped += 1
        print(f"SKIPPED {what}")


def count_cases(path, label, tally):
    """Counts the test cases of one JUnit XML file into tally; returns (cases, failed cases)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        tally.fail(f"{label}: cannot read {path.name}: {e}")
        return 0, 0
    cases = failed = 0
    for case in root.iter("testcase"):
        cases += 1
        what = f"{label}/{case.get('classname')}.{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
            tally.fail(what)
        # GoogleTest: a DISABLED_ test is status="notrun" result="suppressed"; GTEST_SKIP()
        # writes <skipped>; pytest writes <skipped> for skip and xfail
        elif (case.find("skipped") is not None or case.get("status") == "notrun"
              or case.get("result") in ("skipped", "suppressed")):
            tally.skip(what)
        else:
            tally.passed += 1
    return cases, failed


def meson_test_name(line):
    """The test's name in a line of `meson test --list` or a testlog.json name: meson puts
    'project:suite / ' in front of it when the build has more than one suite."""
    return line.rsplit(" / ", 1)[-1]


def meson_stage(folder, stage, tally):
    """Counts one meson stage; returns how many test cases its XML files hold."""
    listed = folder / "tests.txt"
    expected = []
    if listed.is_file():
        expected = [meson_test_name(l) for l in listed.read_text().splitlines() if l.strip()]
    else:
        tally.fail(f"{stage}: no list of the tests it was to run (is the build configured?)")
    for name in sorted({n for n in expected if expected.count(n) > 1}):
        tally.fail(f"{stage}/{name}: two meson tests have this name, their XML one file")

    results = {}
    log = folder / "testlog.json"
    for i, line in enumerate(log.read_text().splitlines() if log.is_file() else []):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            results[meson_test_name(entry["name"])] = entry["result"]
        except (ValueError, KeyError, TypeError):
            tally.fail(f"{stage}: line {i + 1} of testlog.json is not a test result")

    cases = 0
    for name in sorted(set(expected) | set(results)):
        xml = folder / f"{name}.xml"
        n, failed = count_cases(xml, f"{stage}/{name}", tally) if xml.is_file() else (0, 0)
        cases += n
        result = results.get(name)
        if result is None:
            tally.fail(f"{stage}/{name}: never ran (not built, or meson stopped before it)")
        elif not xml.is_file():
            tally.fail(f"{stage}/{name}: meson says {result} and it wrote no XML (crashed, "
                       "killed, or its test() does not set FWD_TEST_NAME)")
        elif result != "OK" and not failed:
            # no case failed, yet the binary did: a crash or a sanitizer report after the
            # XML was written, or a non-zero exit of its own
            tally.fail(f"{stage}/{name}: meson says {result}")
    return cases


def pytest_stage(xml, stage, tally):
    """Counts one pytest stage; returns how many test cases its XML holds."""
    if not xml.is_file():
        tally.fail(f"{stage}: pytest wrote no {xml.name} (it crashed or never started)")
        return 0
    return count_cases(xml, stage, tally)[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=pathlib.Path)
    ap.add_argument("--meson", action="append", default=[], metavar="STAGE",
                    help="a GoogleTest stage run by meson test: RESULTS/STAGE/")
    ap.add_argument("--pytest", action="append", default=[], metavar="STAGE",
                    help="a pytest stage: RESULTS/STAGE.xml")
    args = ap.parse_args(argv)
    tally = Tally()
    stages = [(s, meson_stage, args.results / s) for s in args.meson]
    stages += [(s, pytest_stage, args.results / f"{s}.xml") for s in args.pytest]
    if not stages:
        ap.error("no stage given")
    for stage, count, where in stages:
        if count(where, stage, tally) == 0:
            tally.fail(f"{stage}: ran no test case")
    print(f"tests: {tally.passed} passed, {tally.failed} failed, {tally.skipped} skipped")
    return 1 if tally.failed or tally.skipped else 0


if __name__ == "__main__":
    sys.exit(main())
