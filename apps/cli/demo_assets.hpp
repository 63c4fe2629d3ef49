// The demo's sample project and recorded transcript, embedded in the program
// at build time from apps/cli/demo/ (see CMakeLists.txt), so that
// `agentcore demo` runs from anywhere.
#pragma once

#include <string_view>
#include <vector>

namespace agentcore::cli {

struct demo_asset {
  std::string_view path;  ///< relative to apps/cli/demo/: "project/Makefile", "transcript.jsonl"
  std::string_view content;
};

const std::vector<demo_asset>& demo_assets();

}  // namespace agentcore::cli
