// The endpoint record on a real directory: round trip, replace, erase, the
// leftovers of a crash during a write, damaged files reported by name (and
// the others still read), and one daemon per directory.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "../temp_dir.hpp"
#include "fwd/control/endpoint_record.hpp"

namespace fwd::control {
namespace {

using nlohmann::json;

json pod(const std::string &id, const std::string &v4) {
    return json{{"id", id},
                {"kind", "tap"},
                {"netns", "/var/run/netns/" + id},
                {"ipv4", v4},
                {"ipv6", "fd00::" + v4.substr(v4.rfind('.') + 1)},
                {"mac", "02:00:00:00:00:01"},
                {"mtu", 1450},
                {"owner", {{"handle", "k8s." + id}}}};
}

void write_file(const std::string &path, const std::string &text) {
    std::ofstream(path) << text;
}

TEST(EndpointRecord, RoundTripSortedById) {
    test::TempDir tmp("fwd-record");
    const std::string dir = tmp.path() + "/state/endpoints";
    {
        EndpointRecord r(dir);
        r.put(pod("b", "10.0.0.2"));
        r.put(pod("a", "10.0.0.1"));
    }
    struct stat st {};
    ASSERT_EQ(::stat(dir.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    EndpointRecord r(dir);  // the first one's lock went with it
    RecordLoad l = r.load();
    EXPECT_TRUE(l.unreadable.empty());
    ASSERT_EQ(l.records.size(), 2u);
    EXPECT_EQ(l.records[0], pod("a", "10.0.0.1"));
    EXPECT_EQ(l.records[1], pod("b", "10.0.0.2"));
}

TEST(EndpointRecord, PutReplacesEraseRemoves) {
    test::TempDir tmp("fwd-record");
    EndpointRecord r(tmp.path());
    r.put(pod("a", "10.0.0.1"));
    r.put(pod("a", "10.0.0.9"));
    auto l = r.load();
    ASSERT_EQ(l.records.size(), 1u);
    EXPECT_EQ(l.records[0]["ipv4"], "10.0.0.9");
    r.erase("a");
    r.erase("a");  // twice: nothing to do, no error
    r.erase("never");
    EXPECT_TRUE(r.load().records.empty());
    EXPECT_FALSE(std::filesystem::exists(tmp.path() + "/a.json"));
}

// A crash between writing the temporary file and the rename leaves the
// temporary file: the old record stands and the leftover goes.
TEST(EndpointRecord, CrashDuringPutKeepsTheOldRecord) {
    test::TempDir tmp("fwd-record");
    EndpointRecord r(tmp.path());
    r.put(pod("a", "10.0.0.1"));
    write_file(tmp.path() + "/.a.json.tmp", R"({"version": 1, "endpoint": {"id": "a", "ipv4")");
    auto l = r.load();
    ASSERT_EQ(l.records.size(), 1u);
    EXPECT_EQ(l.records[0]["ipv4"], "10.0.0.1");
    EXPECT_TRUE(l.unreadable.empty());
    EXPECT_FALSE(std::filesystem::exists(tmp.path() + "/.a.json.tmp"));
}

// Each damaged file is reported with its path and why; the others load.
TEST(EndpointRecord, DamagedFilesAreReportedNotDropped) {
    test::TempDir tmp("fwd-record");
    EndpointRecord r(tmp.path());
    r.put(pod("good", "10.0.0.1"));
    write_file(tmp.path() + "/torn.json", R"({"version": 1, "endpoint": {"id": "to)");
    write_file(tmp.path() + "/future.json", R"({"version": 7, "endpoint": {"id": "future"}})");
    write_file(tmp.path() + "/other.json", R"({"version": 1, "endpoint": {"id": "someone"}})");
    write_file(tmp.path() + "/empty.json", "");
    write_file(tmp.path() + "/notes.txt", "not a record: ignored");
    auto l = r.load();
    ASSERT_EQ(l.records.size(), 1u);
    EXPECT_EQ(l.records[0]["id"], "good");
    ASSERT_EQ(l.unreadable.size(), 4u);
    EXPECT_EQ(l.unreadable[0], tmp.path() + "/empty.json: not JSON (a damaged record)");
    EXPECT_EQ(l.unreadable[1], tmp.path() + "/future.json: not a version 1 endpoint record");
    EXPECT_EQ(l.unreadable[2],
              tmp.path() + "/other.json: its endpoint is missing or not named 'other'");
    EXPECT_EQ(l.unreadable[3], tmp.path() + "/torn.json: not JSON (a damaged record)");
    // A new endpoint of a damaged one's id replaces it.
    r.put(pod("torn", "10.0.0.3"));
    EXPECT_EQ(r.load().records.size(), 2u);
}

TEST(EndpointRecord, OneDaemonPerDirectory) {
    test::TempDir tmp("fwd-record");
    EndpointRecord r(tmp.path());
    try {
        EndpointRecord again(tmp.path());
        FAIL() << "a second holder was let in";
    } catch (const RecordError &e) {
        EXPECT_EQ(std::string(e.what()),
                  "endpoint record " + tmp.path() +
                      " is held by another dpdk-fwd: give each daemon its own state_dir");
    }
}

TEST(EndpointRecord, BadIdsAreRefused) {
    test::TempDir tmp("fwd-record");
    EndpointRecord r(tmp.path());
    EXPECT_THROW(r.put(json{{"id", "../x"}}), RecordError);
    EXPECT_THROW(r.put(json{{"id", ".hidden"}}), RecordError);
    EXPECT_THROW(r.put(json{{"kind", "tap"}}), RecordError);
    EXPECT_THROW(r.put(json::array()), RecordError);
    EXPECT_TRUE(r.load().records.empty());
}

TEST(EndpointRecord, UnusableDirectoryIsAClearError) {
    test::TempDir tmp("fwd-record");
    write_file(tmp.path() + "/file", "x");
    try {
        EndpointRecord r(tmp.path() + "/file/endpoints");
        FAIL() << "a record under a regular file";
    } catch (const RecordError &e) {
        EXPECT_NE(std::string(e.what()).find(tmp.path() + "/file/endpoints"), std::string::npos)
            << e.what();
    }
}

}  // namespace
}  // namespace fwd::control
