#include "common/log.hpp"

#include <atomic>
#include <cstdio>
#include <ctime>

#include "common/json_writer.hpp"

namespace dptun {

static std::atomic<int> g_level{int(LogLevel::Info)};
static std::atomic<int> g_format{int(LogFormat::Text)};
static const char* g_program = "dptun";
static const char* const kLevelNames[] = {"debug", "info", "warn", "error"};

void log_set_level(LogLevel level) { g_level.store(int(level)); }
void log_set_format(LogFormat format) { g_format.store(int(format)); }
void log_set_program(const char* name) { g_program = name; }

std::optional<LogLevel> log_parse_level(const std::string& name) {
  for (int i = 0; i < 4; ++i)
    if (name == kLevelNames[i]) return LogLevel(i);
  return std::nullopt;
}

std::optional<LogFormat> log_parse_format(const std::string& name) {
  if (name == "text") return LogFormat::Text;
  if (name == "json") return LogFormat::Json;
  return std::nullopt;
}

std::string iso8601_utc(uint64_t realtime_ns) {
  const time_t secs = time_t(realtime_ns / 1000000000ull);
  tm t;
  gmtime_r(&secs, &t);
  char buf[64];
  snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday,
           t.tm_hour, t.tm_min, t.tm_sec, unsigned(realtime_ns / 1000000ull % 1000));
  return buf;
}

void logf(LogLevel level, const char* fmt, ...) {
  if (int(level) < g_level.load(std::memory_order_relaxed)) return;
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  const std::string time = iso8601_utc(uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec));
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (g_format.load(std::memory_order_relaxed) == int(LogFormat::Json)) {
    JsonWriter j;
    j.begin_object()
        .field("time", time)
        .field("program", g_program)
        .field("level", kLevelNames[int(level)])
        .field("msg", std::string(msg))
        .end_object();
    fprintf(stderr, "%s\n", j.str().c_str());
  } else {
    fprintf(stderr, "%s %s %s: %s\n", time.c_str(), g_program, kLevelNames[int(level)], msg);
  }
}

}  // namespace dptun
