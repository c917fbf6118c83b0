// Line-oriented logging to stderr with a level and an ISO timestamp. Never pass key material here.
#pragma once
#include <cstdarg>

namespace dptun {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3 };

void log_set_level(LogLevel level);
void log_set_program(const char* name);
void logf(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_DEBUG(...) ::dptun::logf(::dptun::LogLevel::Debug, __VA_ARGS__)
#define LOG_INFO(...) ::dptun::logf(::dptun::LogLevel::Info, __VA_ARGS__)
#define LOG_WARN(...) ::dptun::logf(::dptun::LogLevel::Warn, __VA_ARGS__)
#define LOG_ERROR(...) ::dptun::logf(::dptun::LogLevel::Error, __VA_ARGS__)

}  // namespace dptun
