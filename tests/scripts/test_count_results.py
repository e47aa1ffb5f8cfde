"""scripts/count_results.py on results folders laid out as scripts/test.sh leaves them: every
way a test can lose its results (a crash, a timeout, a build that failed, a stage that ran
nothing, two tests of one binary) must show in the closing line as a named failure."""
import json
import pathlib
import shutil
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "count_results.py"


def gtest_xml(*cases):
    """GoogleTest's XML (1.12) for cases given as (suite.name, outcome): 'ok', 'fail', 'skip'
    (GTEST_SKIP) or 'disabled' (a DISABLED_ test)."""
    body = []
    for full, outcome in cases:
        suite, name = full.split(".")
        status, result = {"ok": ("run", "completed"), "fail": ("run", "completed"),
                          "skip": ("run", "skipped"),
                          "disabled": ("notrun", "suppressed")}[outcome]
        head = (f'    <testcase name="{name}" file="t.cpp" line="1" status="{status}" '
                f'result="{result}" time="0." timestamp="2026-01-01T00:00:00" '
                f'classname="{suite}"')
        if outcome == "fail":
            body.append(f'{head}>\n      <failure message="t.cpp:9&#x0A;boom" type=""><![CDATA['
                        f't.cpp:9\nboom]]></failure>\n    </testcase>')
        elif outcome == "skip":
            body.append(f'{head}>\n      <skipped message="t.cpp:9&#x0A;"><![CDATA[t.cpp:9\n]]>'
                        f'</skipped>\n    </testcase>')
        else:
            body.append(f"{head} />")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites tests="1" name="AllTests">\n'
            '  <testsuite name="S" tests="1">\n' + "\n".join(body) +
            "\n  </testsuite>\n</testsuites>\n")


def pytest_xml(*outcomes):
    """pytest's --junitxml for cases that passed ('ok'), failed ('fail'), erred ('error') or
    were skipped ('skip')."""
    inner = {"ok": "", "fail": '<failure message="assert 0">assert 0</failure>',
             "error": '<error message="fixture">boom</error>',
             "skip": '<skipped type="pytest.skip" message="no">no</skipped>'}
    cases = "".join(f'<testcase classname="tests.system.test_x" name="test_{i}" time="0.1">'
                    f"{inner[o]}</testcase>" for i, o in enumerate(outcomes))
    return ('<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" '
            f'errors="0" failures="0" skipped="0" tests="{len(outcomes)}">{cases}'
            "</testsuite></testsuites>")


GOOD_GTEST = gtest_xml(("Addr.Parse", "ok"), ("Addr.Format", "ok"), ("Addr.Compare", "ok"))


def meson_stage(root, stage, listed, ran, xml):
    """A gtest stage as scripts/test.sh leaves it: listed, the tests `meson test --list` names;
    ran, {name: meson's result} in testlog.json (None: no log at all); xml, {name: XML text}.
    Replaces the stage's folder if there is one."""
    d = root / stage
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    # meson prefixes project and suite when the build has several suites
    (d / "tests.txt").write_text("".join(f"dpdk-fwd:unit / {n}\n" for n in listed))
    if ran is not None:
        (d / "testlog.json").write_text("".join(
            json.dumps({"name": f"dpdk-fwd:unit / {n}", "result": r, "returncode": 0,
                        "stdout": "", "command": [f"test_{n}"]}) + "\n"
            for n, r in ran.items()))
    for n, text in xml.items():
        (d / f"{n}.xml").write_text(text)


def good_results(root):
    """Both gtest stages and both pytest stages ran and passed: 2 x 2 x 3 + 2 x 2 cases."""
    for stage in ("plain", "asan"):
        meson_stage(root, stage, ["common", "rib"], {"common": "OK", "rib": "OK"},
                    {"common": GOOD_GTEST, "rib": GOOD_GTEST})
    (root / "scripts.xml").write_text(pytest_xml("ok", "ok"))
    (root / "system.xml").write_text(pytest_xml("ok", "ok"))


def no_xml(where, result):
    return (f"FAILED {where}: meson says {result} and it wrote no XML (crashed, killed, or its "
            "test() does not set FWD_TEST_NAME)")


def never_ran(where):
    return f"FAILED {where}: never ran (not built, or meson stopped before it)"


def count(root):
    """(exit code, FAILED/SKIPPED lines, the closing line) of count_results.py on root."""
    r = subprocess.run([sys.executable, str(SCRIPT), str(root), "--meson", "plain",
                        "--meson", "asan", "--pytest", "scripts", "--pytest", "system"],
                       capture_output=True, text=True, timeout=30)
    lines = r.stdout.splitlines()
    assert lines and lines[-1].startswith("tests: "), r.stdout + r.stderr
    return r.returncode, lines[:-1], lines[-1]


def test_all_good(tmp_path):
    good_results(tmp_path)
    assert count(tmp_path) == (0, [], "tests: 16 passed, 0 failed, 0 skipped")


def test_crashed_binary_without_xml_is_a_failure(tmp_path):
    good_results(tmp_path)
    (tmp_path / "asan" / "rib.xml").unlink()
    log = tmp_path / "asan" / "testlog.json"
    log.write_text(log.read_text().replace('"OK"', '"FAIL"'))
    # common's cases passed, but meson saw it fail (a sanitizer report at exit): named too
    assert count(tmp_path) == (1, ["FAILED asan/common: meson says FAIL",
                                   no_xml("asan/rib", "FAIL")],
                               "tests: 13 passed, 2 failed, 0 skipped")


def test_timeout_is_a_failure(tmp_path):
    good_results(tmp_path)
    meson_stage(tmp_path, "plain", ["common", "rib"], {"common": "OK", "rib": "TIMEOUT"},
                {"common": GOOD_GTEST})
    assert count(tmp_path) == (1, [no_xml("plain/rib", "TIMEOUT")],
                               "tests: 13 passed, 1 failed, 0 skipped")


def test_failed_case_is_counted_once(tmp_path):
    good_results(tmp_path)
    meson_stage(tmp_path, "plain", ["common", "rib"], {"common": "OK", "rib": "FAIL"},
                {"common": GOOD_GTEST,
                 "rib": gtest_xml(("Rib.Add", "ok"), ("Rib.Del", "fail"), ("Rib.Ecmp", "ok"))})
    assert count(tmp_path) == (1, ["FAILED plain/rib/Rib.Del"],
                               "tests: 15 passed, 1 failed, 0 skipped")


def test_tests_never_built_are_failures(tmp_path):
    """build-asan did not build: meson test stopped before running anything and wrote no
    log; every test the build defines is named, and the stage ran nothing."""
    good_results(tmp_path)
    meson_stage(tmp_path, "asan", ["common", "rib"], None, {})
    assert count(tmp_path) == (1, [never_ran("asan/common"), never_ran("asan/rib"),
                                   "FAILED asan: ran no test case"],
                               "tests: 10 passed, 3 failed, 0 skipped")


def test_one_test_missing_from_the_log(tmp_path):
    good_results(tmp_path)
    meson_stage(tmp_path, "plain", ["common", "rib", "ipam"],
                {"common": "OK", "rib": "OK"}, {"common": GOOD_GTEST, "rib": GOOD_GTEST})
    assert count(tmp_path) == (1, [never_ran("plain/ipam")],
                               "tests: 16 passed, 1 failed, 0 skipped")


def test_stage_without_a_list_is_a_failure(tmp_path):
    """build-asan was never configured: meson cannot even list its tests."""
    good_results(tmp_path)
    for f in (tmp_path / "asan").glob("*"):
        f.unlink()
    assert count(tmp_path) == (1, ["FAILED asan: no list of the tests it was to run (is the "
                                   "build configured?)", "FAILED asan: ran no test case"],
                               "tests: 10 passed, 2 failed, 0 skipped")


def test_disabled_and_skipped_gtest_cases_are_skipped(tmp_path):
    good_results(tmp_path)
    (tmp_path / "plain" / "rib.xml").write_text(
        gtest_xml(("Rib.Add", "ok"), ("Rib.DISABLED_Slow", "disabled"), ("Rib.Root", "skip")))
    assert count(tmp_path) == (1, ["SKIPPED plain/rib/Rib.DISABLED_Slow",
                                   "SKIPPED plain/rib/Rib.Root"],
                               "tests: 14 passed, 0 failed, 2 skipped")


def test_stage_with_zero_cases_is_a_failure(tmp_path):
    good_results(tmp_path)
    (tmp_path / "system.xml").write_text(pytest_xml())
    assert count(tmp_path) == (1, ["FAILED system: ran no test case"],
                               "tests: 14 passed, 1 failed, 0 skipped")


def test_pytest_without_xml_is_a_failure(tmp_path):
    good_results(tmp_path)
    (tmp_path / "system.xml").unlink()
    assert count(tmp_path) == (1, ["FAILED system: pytest wrote no system.xml (it crashed or "
                                   "never started)", "FAILED system: ran no test case"],
                               "tests: 14 passed, 2 failed, 0 skipped")


def test_pytest_failures_errors_and_skips(tmp_path):
    good_results(tmp_path)
    (tmp_path / "system.xml").write_text(pytest_xml("ok", "fail", "error", "skip"))
    assert count(tmp_path) == (1, ["FAILED system/tests.system.test_x.test_1",
                                   "FAILED system/tests.system.test_x.test_2",
                                   "SKIPPED system/tests.system.test_x.test_3"],
                               "tests: 15 passed, 2 failed, 1 skipped")


def test_truncated_xml_is_a_failure(tmp_path):
    good_results(tmp_path)
    (tmp_path / "plain" / "rib.xml").write_text(GOOD_GTEST[:200])
    code, lines, last = count(tmp_path)
    assert (code, last) == (1, "tests: 13 passed, 1 failed, 0 skipped")
    assert len(lines) == 1 and lines[0].startswith("FAILED plain/rib: cannot read rib.xml: ")


def test_two_tests_of_one_binary_each_count(tmp_path):
    """ipam_store_embedded and ipam_store_etcd run one binary with two filters: each has its
    own XML, both are counted, and one without its XML is named."""
    good_results(tmp_path)
    embedded = gtest_xml(("StoreConformance/Embedded.Cas", "ok"), ("EmbeddedStore.Torn", "ok"))
    etcd = gtest_xml(("StoreConformance/Etcd.Cas", "ok"))
    names = ["common", "ipam_store_embedded", "ipam_store_etcd"]
    meson_stage(tmp_path, "plain", names, {n: "OK" for n in names},
                {"common": GOOD_GTEST, "ipam_store_embedded": embedded, "ipam_store_etcd": etcd})
    assert count(tmp_path) == (0, [], "tests: 16 passed, 0 failed, 0 skipped")

    (tmp_path / "plain" / "ipam_store_etcd.xml").unlink()
    assert count(tmp_path) == (1, [no_xml("plain/ipam_store_etcd", "OK")],
                               "tests: 15 passed, 1 failed, 0 skipped")


def test_two_meson_tests_of_one_name_are_a_failure(tmp_path):
    good_results(tmp_path)
    (tmp_path / "plain" / "tests.txt").write_text(
        "dpdk-fwd:unit / common\ndpdk-fwd:unit / rib\ndpdk-fwd:component / rib\n")
    assert count(tmp_path) == (1, ["FAILED plain/rib: two meson tests have this name, their "
                                   "XML one file"], "tests: 16 passed, 1 failed, 0 skipped")
