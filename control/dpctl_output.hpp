// dpctl's human output: replies from dpctld's API rendered as aligned tables and key/value blocks.
// (--json prints the reply as it came.)
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "proto/control_names.hpp"

namespace dptun {

// Columns sized to their widest cell; every row must have as many cells as the header.
class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header) : header_(std::move(header)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string str() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// One renderer per API command (proto/control_names.hpp); returns the text to print for a successful reply.
std::string render_reply(DpctlCommand cmd, const nlohmann::json& reply);

}  // namespace dptun
