// A throwaway etcd for tests: /usr/bin/etcd on loopback, free ports, a temp
// data directory; stopped by PID (and killed with us via PDEATHSIG).
#pragma once

#include <sys/types.h>
#include <string>

namespace fwd::ipam::test {

class EtcdServer {
  public:
    static constexpr const char *kBinary = "/usr/bin/etcd";
    // Starts etcd and waits until it answers; throws std::runtime_error with
    // the reason (including "not installed") otherwise.
    EtcdServer();
    ~EtcdServer();
    EtcdServer(const EtcdServer &) = delete;
    EtcdServer &operator=(const EtcdServer &) = delete;

    const std::string &endpoint() const { return endpoint_; }

  private:
    void stop();

    pid_t pid_ = -1;
    std::string dir_;
    std::string endpoint_;
};

}  // namespace fwd::ipam::test
