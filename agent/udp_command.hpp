// `dpagent udp` (agent/udp_proxy.hpp): parses its options (argv[0] is "udp") and runs it; the process's exit status.
#pragma once

namespace dptun {

int dpagent_udp_main(int argc, char** argv);

}  // namespace dptun
