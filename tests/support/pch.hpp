#pragma once
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <agentcore/core/error.hpp>
#include <agentcore/core/json.hpp>
#include <agentcore/store/store.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

// doctest prints a result<T> as "ok" or its error message.
namespace doctest {
template <class T>
struct StringMaker<boost::system::result<T, agentcore::error_info>> {
  static String convert(const boost::system::result<T, agentcore::error_info>& r) {
    return r.has_value() ? String("ok") : String(("error: " + r.error().message()).c_str());
  }
};
}  // namespace doctest
