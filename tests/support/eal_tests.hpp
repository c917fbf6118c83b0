// The main of a unit-test program that needs DPDK: an EAL without hugepages or PCI on lcore 0, the group of tests
// (with cmocka group fixtures for what the tests share, e.g. an engine opened once), the EAL's cleanup.
#pragma once
#include <rte_eal.h>

#include <cstddef>
#include <cstdio>

#include "tests/unit/cmocka.hpp"

namespace dptun::test {

// Returns the number of failed tests, or 1 when the EAL does not start.
inline int run_eal_tests(const char* program, const CMUnitTest* tests, size_t count,
                         CMFixtureFunction group_setup = nullptr, CMFixtureFunction group_teardown = nullptr) {
  const char* eal[] = {program, "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "-l", "0", "--log-level", "*:error"};
  if (rte_eal_init(int(sizeof eal / sizeof eal[0]), const_cast<char**>(eal)) < 0) {
    fprintf(stderr, "%s: cannot initialise the EAL\n", program);
    return 1;
  }
  const int failed = _cmocka_run_group_tests(program, tests, count, group_setup, group_teardown);
  rte_eal_cleanup();
  return failed;
}

}  // namespace dptun::test
