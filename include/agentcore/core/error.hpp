// agentcore/core/error.hpp: the error codes every agentcore module reports,
// and `result<T>`, the value-or-error that synchronous operations return.
//
//   agentcore::result<int> r = parse_port(text);
//   if (!r) std::cerr << r.error().message() << '\n';   // says what and what to do
//
// An error carries a code (`agentcore::error`, a boost::system category) and a
// message naming the value that was wrong. Expected outcomes such as a
// compare-and-swap conflict are values, never errors.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>
#include <boost/system/system_error.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace agentcore {

using error_code = boost::system::error_code;

enum class error {
  success = 0,
  invalid_argument,    ///< a caller passed a value the operation cannot accept
  not_found,           ///< the named thing does not exist
  already_exists,      ///< the named thing exists and may not be created again
  compacted,           ///< a watch asked for history that compaction removed
  lease_not_found,     ///< the lease expired or was revoked
  io_error,            ///< the operating system refused a read, write or sync
  corrupt,             ///< stored data failed its checksum or does not parse
  unsupported_format,  ///< stored data was written by a newer format
  in_use,              ///< another process holds the resource
  closed,              ///< the object was closed or failed and takes no more work
  illegal_transition,  ///< a task state change the state machine forbids
  invalid_task,        ///< a task's JSON or fields are not valid
  canceled,            ///< the operation was cancelled
  too_many_attempts,   ///< an optimistic retry loop gave up
  claim_lost,          ///< the worker no longer holds the task's claim
  unavailable,         ///< the service cannot serve now (no quorum, no endpoint answers); safe to retry later
  outcome_unknown,     ///< a write may or may not have applied; re-read before deciding to retry
  permission_denied,   ///< the server refused the credentials or the operation
};

}  // namespace agentcore

template <>
struct boost::system::is_error_code_enum<agentcore::error> : std::true_type {};

namespace agentcore {

const boost::system::error_category& error_category() noexcept;

inline error_code make_error_code(error e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// An error code with the message a user reads: what was wrong, with what
/// value, and what to do. Converts to `error_code` for code that only needs
/// the category.
class error_info {
public:
  error_info() = default;
  error_info(error_code code, std::string message = {})
      : code_(code), message_(std::move(message)) {}
  error_info(error e, std::string message = {}) : error_info(make_error_code(e), std::move(message)) {}

  const error_code& code() const noexcept { return code_; }
  /// The detailed message, or the category's text when none was given.
  std::string message() const { return message_.empty() ? code_.message() : message_; }
  operator const error_code&() const noexcept { return code_; }  // NOLINT: implicit by design
  explicit operator bool() const noexcept { return static_cast<bool>(code_); }

  friend bool operator==(const error_info& a, error b) noexcept { return a.code_ == make_error_code(b); }

  /// How long the other side asked us to wait before trying again (an HTTP
  /// Retry-After), when it said.
  std::optional<std::chrono::milliseconds> retry_after() const noexcept { return retry_after_; }
  error_info& set_retry_after(std::chrono::milliseconds d) noexcept {
    retry_after_ = d;
    return *this;
  }

private:
  error_code code_;
  std::string message_;
  std::optional<std::chrono::milliseconds> retry_after_;
};

/// Thrown by `result<T>::value()` on an error: a system_error whose what()
/// is the detailed message.
class exception : public boost::system::system_error {
public:
  explicit exception(const error_info& e) : system_error(e.code(), e.message()), info_(e) {}
  const error_info& info() const noexcept { return info_; }

private:
  error_info info_;
};

[[noreturn]] void throw_exception_from_error(const error_info& e, const boost::source_location& loc);

template <class T>
using result = boost::system::result<T, error_info>;

/// Shorthand for building a failed result: `return fail(error::corrupt, "...")`.
inline error_info fail(error e, std::string message) { return {e, std::move(message)}; }

}  // namespace agentcore

