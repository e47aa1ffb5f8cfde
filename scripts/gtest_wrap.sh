#!/bin/sh
# `meson test --wrapper` of scripts/test.sh: every meson test writes its own GoogleTest XML,
# $FWD_GTEST_RESULTS/<meson test name>.xml, so scripts/count_results.py can tell which test
# wrote which results and which wrote none. A directory in GTEST_OUTPUT names the file after
# the binary, and two tests may run one binary with different filters (ipam_store_embedded,
# ipam_store_etcd). meson tells a wrapper nothing about the test, so each test() in
# tests/unit sets env FWD_TEST_NAME to its own name.
set -eu
: "${FWD_GTEST_RESULTS:?is not set: run the tests through scripts/test.sh}"
: "${FWD_TEST_NAME:?is not set: give this test env FWD_TEST_NAME=<its name> in its meson.build}"
xml="$FWD_GTEST_RESULTS/$FWD_TEST_NAME.xml"
rm -f "$xml"
export GTEST_OUTPUT="xml:$xml"
exec "$@"
