#include <agentcore/core/error.hpp>

#include <boost/throw_exception.hpp>

namespace agentcore {
namespace {

class category_impl final : public boost::system::error_category {
public:
  // A fixed id keeps the category unique across shared-library boundaries.
  constexpr category_impl() noexcept : error_category(0x6167'656e'7463'6f72ULL) {}
  const char* name() const noexcept override { return "agentcore"; }
  std::string message(int ev) const override {
    switch (static_cast<error>(ev)) {
      case error::success: return "success";
      case error::invalid_argument: return "invalid argument";
      case error::not_found: return "not found";
      case error::already_exists: return "already exists";
      case error::compacted: return "requested revision was compacted";
      case error::lease_not_found: return "lease not found (expired or revoked)";
      case error::io_error: return "input/output error";
      case error::corrupt: return "stored data is corrupt";
      case error::unsupported_format: return "stored data has an unsupported format version";
      case error::in_use: return "resource is in use by another process";
      case error::closed: return "object is closed";
      case error::illegal_transition: return "illegal state transition";
      case error::invalid_task: return "invalid task";
      case error::canceled: return "operation canceled";
      case error::too_many_attempts: return "too many attempts";
      case error::claim_lost: return "the claim was lost (lease expired or task reassigned)";
      case error::unavailable: return "the service is unavailable";
      case error::outcome_unknown: return "the outcome of the write is unknown";
      case error::permission_denied: return "permission denied";
    }
    return "unknown agentcore error " + std::to_string(ev);
  }
};

}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const category_impl instance;
  return instance;
}

void throw_exception_from_error(const error_info& e, const boost::source_location& loc) {
  boost::throw_exception(exception(e), loc);
}

}  // namespace agentcore
