#include "agent/lan_nat.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "common/broken_pipes.hpp"
#include "common/log.hpp"

namespace dptun {

namespace {

// Runs `nft -f -` with `script` on stdin; returns nft's exit status (or -1 when it could not be started).
int run_nft(const std::string& script, std::string& output) {
  int in[2], out[2];
  if (pipe(in) != 0) return -1;
  if (pipe(out) != 0) {
    close(in[0]);
    close(in[1]);
    return -1;
  }
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    restore_broken_pipes();  // nft as from a shell
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(out[1], 2);
    close(in[1]);
    close(out[0]);
    execlp("nft", "nft", "-f", "-", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  ssize_t w = write(in[1], script.data(), script.size());  // EPIPE when nft did not start: its status says why
  (void)w;
  close(in[1]);
  char buf[512];
  ssize_t n;
  while ((n = read(out[0], buf, sizeof buf)) > 0) output.append(buf, size_t(n));
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

bool LanNat::enable(const std::string& tun_name, Ipv4Prefix tun_net, std::string& error) {
  std::string table = "dptun_";
  for (char c : tun_name) table += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  {
    std::ofstream f("/proc/sys/net/ipv4/ip_forward");
    f << "1\n";
    f.flush();
    if (!f) {
      error = std::string("--lan-nat: cannot enable net.ipv4.ip_forward: ") + strerror(errno);
      return false;
    }
  }
  const Ipv4Prefix net{Ipv4{tun_net.addr.value & tun_net.mask()}, tun_net.len};
  const std::string script = "table ip " + table + " {\n  chain postrouting {\n    type nat hook postrouting priority srcnat;\n"
                             "    ip saddr " + net.str() + " oifname != \"" + tun_name + "\" masquerade\n  }\n}\n";
  std::string output;
  int rc = run_nft("delete table ip " + table + "\n", output);  // a table left by a killed agent
  (void)rc;
  output.clear();
  rc = run_nft(script, output);
  if (rc != 0) {
    error = rc == 127 ? "--lan-nat needs the nft command (apt install nftables)"
                      : "--lan-nat: nft failed: " + output;
    return false;
  }
  table_ = table;
  LOG_INFO("LAN delivery on: forwarding enabled, nftables table %s masquerades %s", table_.c_str(), net.str().c_str());
  return true;
}

LanNat::~LanNat() {
  if (table_.empty()) return;
  std::string output;
  if (run_nft("delete table ip " + table_ + "\n", output) != 0)
    LOG_WARN("could not remove nftables table %s: %s", table_.c_str(), output.c_str());
}

}  // namespace dptun
