#include "etcd_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "fwd/ipam/etcd_store.hpp"

namespace fwd::ipam::test {

namespace {

// A port the kernel just gave us; released at once, so etcd can take it.
int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len) != 0)
        throw std::runtime_error("no free loopback port");
    ::close(fd);
    return ntohs(a.sin_port);
}

}  // namespace

EtcdServer::EtcdServer() {
    if (::access(kBinary, X_OK) != 0)
        throw std::runtime_error(std::string(kBinary) +
                                 " is not installed: apt-get install -y etcd-server");
    char tmpl[] = "/tmp/fwd-etcd-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr)
        throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    std::string client = "http://127.0.0.1:" + std::to_string(free_port());
    std::string peer = "http://127.0.0.1:" + std::to_string(free_port());
    endpoint_ = client;
    std::string data = dir_ + "/data", log = dir_ + "/etcd.log";
    pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0)
        throw std::runtime_error("fork failed");
    if (pid_ == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent)
            ::_exit(127);
        int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            ::dup2(fd, 1);
            ::dup2(fd, 2);
        }
        std::string init = "default=" + peer;
        ::execl(kBinary, kBinary, "--name", "default", "--data-dir", data.c_str(),
                "--listen-client-urls", client.c_str(), "--advertise-client-urls", client.c_str(),
                "--listen-peer-urls", peer.c_str(), "--initial-advertise-peer-urls", peer.c_str(),
                "--initial-cluster", init.c_str(), "--log-level", "warn", nullptr);
        ::_exit(127);
    }
    EtcdStore::Options o;
    o.endpoints = {endpoint_};
    o.connect_timeout = std::chrono::milliseconds(200);
    o.request_timeout = std::chrono::milliseconds(1000);
    EtcdStore probe(o);
    std::string last;
    for (int i = 0; i < 150; ++i) {
        try {
            probe.get("probe");
            return;
        } catch (const StoreError &e) {
            last = e.what();
        }
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            stop();
            throw std::runtime_error("etcd exited at start; see " + log);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    stop();
    throw std::runtime_error("etcd did not answer in 15 s: " + last);
}

EtcdServer::~EtcdServer() {
    stop();
}

void EtcdServer::stop() {
    if (pid_ > 0) {
        ::kill(pid_, SIGTERM);
        int status = 0;
        for (int i = 0; i < 50 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        if (::kill(pid_, 0) == 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &status, 0);
        }
        pid_ = -1;
    }
    std::error_code ec;
    if (!dir_.empty())
        std::filesystem::remove_all(dir_, ec);
    dir_.clear();
}

}  // namespace fwd::ipam::test
