#include "common/log.hpp"

#include <atomic>
#include <cstdio>
#include <ctime>

namespace dptun {

static std::atomic<int> g_level{int(LogLevel::Info)};
static const char* g_program = "dptun";

void log_set_level(LogLevel level) { g_level.store(int(level)); }
void log_set_program(const char* name) { g_program = name; }

void logf(LogLevel level, const char* fmt, ...) {
  if (int(level) < g_level.load(std::memory_order_relaxed)) return;
  static const char* names[] = {"debug", "info", "warn", "error"};
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  gmtime_r(&ts.tv_sec, &t);
  char line[1024];
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ", t.tm_year + 1900,
                   t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, ts.tv_nsec / 1000000, g_program,
                   names[int(level)]);
  va_list ap;
  va_start(ap, fmt);
  if (n > 0 && n < int(sizeof line)) vsnprintf(line + n, sizeof line - size_t(n), fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s\n", line);
}

}  // namespace dptun
