// Line-oriented logging to stderr with a level and an ISO 8601 UTC timestamp, as text
// ("2026-11-29T12:00:00.123Z dpctld info: message") or as one JSON object per line
// ({"time":"...","program":"dpctld","level":"info","msg":"message"}). Never pass key material here.
#pragma once
#include <cstdarg>
#include <cstdint>
#include <optional>
#include <string>

namespace dptun {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3 };
enum class LogFormat { Text, Json };

void log_set_level(LogLevel level);
void log_set_format(LogFormat format);
void log_set_program(const char* name);
void logf(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
// "debug", "info", "warn", "error" / "text", "json"; nullopt for anything else.
std::optional<LogLevel> log_parse_level(const std::string& name);
std::optional<LogFormat> log_parse_format(const std::string& name);
// "2026-11-29T12:00:00.123Z" for a wall-clock time in nanoseconds.
std::string iso8601_utc(uint64_t realtime_ns);

#define LOG_DEBUG(...) ::dptun::logf(::dptun::LogLevel::Debug, __VA_ARGS__)
#define LOG_INFO(...) ::dptun::logf(::dptun::LogLevel::Info, __VA_ARGS__)
#define LOG_WARN(...) ::dptun::logf(::dptun::LogLevel::Warn, __VA_ARGS__)
#define LOG_ERROR(...) ::dptun::logf(::dptun::LogLevel::Error, __VA_ARGS__)

}  // namespace dptun
