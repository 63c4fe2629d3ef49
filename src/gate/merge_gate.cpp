// The merge gate: the JSON of its changes, verdicts and events, and its
// public API. The implementation (merge_gate_impl.hpp) is in queue.cpp,
// leader.cpp, landing.cpp and remote.cpp.
#include <agentcore/gate/merge_gate.hpp>

#include "detail/spawn.hpp"
#include "gate/merge_gate_impl.hpp"

#include <boost/asio/cancellation_signal.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <random>
#include <thread>
#include <unistd.h>

namespace agentcore::gate {

using gate_detail::now_us;

namespace {

json::array strings(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) a.push_back(json::value(s));
  return a;
}

result<git::oid> oid_field(const json::object& o, std::string_view key) {
  auto s = json_field<std::string>(o, key, "gate");
  if (!s) return s.error();
  return git::oid::from_hex(*s);
}

/// An object id that may be absent (null, missing or empty).
result<std::optional<git::oid>> optional_oid_field(const json::object& o, std::string_view key, std::string_view what) {
  auto s = json_field_or<std::string>(o, key, {}, what);
  if (!s) return s.error();
  if (s->empty()) return std::optional<git::oid>();
  auto id = git::oid::from_hex(*s);
  if (!id) return id.error();
  return std::optional<git::oid>(*id);
}

constexpr std::array<std::string_view, 8> verdict_names = {"queued",   "merged",   "contract_violated",
                                                           "checks_failed", "conflict", "deep_checks_failed",
                                                           "reverted", "error"};

}  // namespace

std::string_view to_string(verdict_kind k) noexcept { return verdict_names[static_cast<std::size_t>(k)]; }

// --- JSON ---

void tag_invoke(json::value_from_tag, json::value& v, const change& c) {
  json::object o{{"id", c.id},
                 {"base", c.base.hex()},
                 {"head", c.head.hex()},
                 {"priority", c.priority},
                 {"contract", contract::to_json_value(c.contract)},
                 {"checks", strings(c.checks)}};
  o["task"] = c.task ? json::value(c.task->str()) : json::value(nullptr);
  o["revert_of"] = c.revert_of ? json::value(c.revert_of->hex()) : json::value(nullptr);
  v = std::move(o);
}

result<change> change_from_json(const json::value& v) {
  if (!v.is_object()) return fail(error::invalid_argument, "gate: a change must be a JSON object");
  const auto& o = v.as_object();
  change c;
  auto id = json_field<std::string>(o, "id", "gate: change");
  if (!id) return id.error();
  c.id = *id;
  auto base = oid_field(o, "base");
  if (!base) return base.error();
  c.base = *base;
  auto head = oid_field(o, "head");
  if (!head) return head.error();
  c.head = *head;
  auto prio = json_field_or<int>(o, "priority", 0, "gate: change");
  if (!prio) return prio.error();
  c.priority = *prio;
  auto checks = json_field_or<std::vector<std::string>>(o, "checks", {}, "gate: change");
  if (!checks) return checks.error();
  c.checks = std::move(*checks);
  if (auto it = o.find("contract"); it != o.end() && !it->value().is_null()) {
    auto k = contract::contract_from_json(it->value());
    if (!k) return k.error();
    c.contract = std::move(*k);
  }
  auto task = json_field_or<std::string>(o, "task", {}, "gate: change");
  if (!task) return task.error();
  if (!task->empty()) c.task = task_id(*task);
  auto rev = optional_oid_field(o, "revert_of", "gate: change");
  if (!rev) return rev.error();
  c.revert_of = *rev;
  return c;
}

void tag_invoke(json::value_from_tag, json::value& v, const change_verdict& c) {
  json::array checks;
  for (const auto& r : c.checks) checks.push_back(json::value_from(r));
  v = {{"change", c.change_id},
       {"verdict", to_string(c.kind)},
       {"detail", c.detail},
       {"paths", strings(c.paths)},
       {"contract", json::value_from(c.contract)},
       {"checks", std::move(checks)},
       {"merged_as", c.merged_as ? json::value(c.merged_as->hex()) : json::value(nullptr)}};
}

result<change_verdict> verdict_from_json(const json::value& v) {
  if (!v.is_object()) return fail(error::invalid_argument, "gate: a verdict must be a JSON object");
  const auto& o = v.as_object();
  change_verdict out;
  auto id = json_field<std::string>(o, "change", "gate: verdict");
  if (!id) return id.error();
  out.change_id = *id;
  auto kind = json_field<std::string>(o, "verdict", "gate: verdict");
  if (!kind) return kind.error();
  bool known = false;
  for (std::size_t i = 0; i < verdict_names.size(); ++i)
    if (verdict_names[i] == *kind) {
      out.kind = static_cast<verdict_kind>(i);
      known = true;
    }
  if (!known) return fail(error::invalid_argument, fmt::format("gate: unknown verdict '{}'", *kind));
  auto detail = json_field_or<std::string>(o, "detail", {}, "gate: verdict");
  if (!detail) return detail.error();
  out.detail = *detail;
  auto paths = json_field_or<std::vector<std::string>>(o, "paths", {}, "gate: verdict");
  if (!paths) return paths.error();
  out.paths = *paths;
  auto merged = optional_oid_field(o, "merged_as", "gate: verdict");
  if (!merged) return merged.error();
  out.merged_as = *merged;
  // The checks and the contract's findings, read leniently: what a next
  // attempt needs to be told, from verdicts older versions wrote too.
  auto str = [](const json::object& x, const char* k) {
    auto* f = x.if_contains(k);
    return f && f->is_string() ? std::string(f->get_string()) : std::string();
  };
  auto flag = [](const json::object& x, const char* k) {
    auto* f = x.if_contains(k);
    return f && f->is_bool() && f->get_bool();
  };
  auto number = [](const json::object& x, const char* k) -> std::int64_t {
    auto* f = x.if_contains(k);
    return f && f->is_int64() ? f->get_int64() : f && f->is_uint64() ? static_cast<std::int64_t>(f->get_uint64()) : 0;
  };
  if (auto* checks = o.if_contains("checks"); checks && checks->is_array())
    for (const auto& c : checks->get_array()) {
      if (!c.is_object()) continue;
      const auto& co = c.get_object();
      check_result r;
      r.command = str(co, "command");
      r.exit_code = static_cast<int>(co.contains("exit_code") ? number(co, "exit_code") : -1);
      r.timed_out = flag(co, "timed_out");
      r.duration = std::chrono::milliseconds(number(co, "duration_ms"));
      r.log = str(co, "log");
      r.output_bytes = static_cast<std::size_t>(number(co, "output_bytes"));
      r.truncated = flag(co, "truncated");
      r.sandboxed = flag(co, "sandboxed");
      r.warning = str(co, "warning");
      r.limit_exceeded = str(co, "limit_exceeded");
      out.checks.push_back(std::move(r));
    }
  if (auto* k = o.if_contains("contract"); k && k->is_object())
    if (auto* vs = k->get_object().if_contains("violations"); vs && vs->is_array())
      for (const auto& x : vs->get_array())
        if (x.is_object())
          out.contract.violations.push_back(
              {str(x.get_object(), "path"), str(x.get_object(), "rule"), str(x.get_object(), "detail")});
  return out;
}

std::string explain(const change_verdict& v, std::size_t max_bytes) {
  std::string s = fmt::format("The gate's verdict: {}", to_string(v.kind));
  if (!v.detail.empty()) s += ": " + v.detail;
  s += "\n";
  if (!v.contract.ok()) s += "The change broke its contract:\n" + v.contract.summary() + "\n";
  if (!v.paths.empty()) s += fmt::format("It conflicts with the branch in: {}\n", fmt::join(v.paths, ", "));
  const check_result* failed = nullptr;
  for (const auto& c : v.checks)
    if (!c.passed()) failed = &c;
  if (failed) {
    s += fmt::format("The check '{}' {}", failed->command, failed->outcome());
    std::string log = failed->log;
    while (!log.empty() && (log.back() == '\n' || log.back() == ' ')) log.pop_back();
    if (log.empty()) {
      s += " and printed nothing.\n";
    } else {
      // The end of the output is where compilers and test runners say what failed.
      std::size_t room = max_bytes > s.size() + 64 ? max_bytes - s.size() - 64 : 256;
      bool cut = log.size() > room;
      if (cut) {
        log = log.substr(log.size() - room);
        if (auto nl = log.find('\n'); nl != std::string::npos && nl < 200) log = log.substr(nl + 1);  // whole lines
      }
      s += fmt::format("; {} of its output:\n{}\n", cut ? "the end" : "all", log);
    }
  }
  return s;
}

void tag_invoke(json::value_from_tag, json::value& v, const gate_event& e) {
  v = json::value_from(e.verdict, v.storage());
  if (e.task) v.as_object()["task"] = e.task->str();
}
void tag_invoke(json::value_from_tag, json::value& v, const gate_step& e) {
  v = {{"step", e.step}, {"changes", strings(e.changes)}, {"detail", e.detail}};
}
void tag_invoke(json::value_from_tag, json::value& v, const branch_moved& e) {
  v = {{"branch", e.branch}, {"from", e.from.hex()}, {"to", e.to.hex()}, {"changes", strings(e.changes)}};
}

// --- the gate ---

merge_gate::impl::impl(store::store& s, git::worktree_pool& pool, gate_options o, git::repository queue_repo,
                       git::repository submit_repo, git::repository tip_repo)
    : store_(s), pool_(pool), options_(std::move(o)), policy_(policy_of(options_)), repo_(std::move(queue_repo)),
      submit_repo_(std::move(submit_repo)),
      tip_repo_(std::move(tip_repo)) {
  std::string name = options_.branch;
  if (name.starts_with("refs/heads/")) name = name.substr(11);
  for (char& ch : name)
    if (ch == '/') ch = '_';
  root_ = options_.prefix + name + "/";
  // Unique even where pids are not: two containers' gates are both pid 1,
  // and a restarted process may get the pid of the one that died.
  instance_ = options_.instance.empty()
                  ? fmt::format("pid-{}-{:08x}", ::getpid(), static_cast<std::uint32_t>(std::random_device{}()))
                  : options_.instance;
  if (options_.leader_ttl.count() < 1) options_.leader_ttl = std::chrono::seconds(1);
}

merge_gate::impl::~impl() { resign(); }

// --- the async operations ---

/// The executor of the blocking work: the host's, or a pool of the gate's own.
asio::any_io_executor merge_gate::impl::blocking_executor() {
  if (options_.blocking) return options_.blocking;
  std::lock_guard lk(pool_mutex_);
  if (!own_pool_) own_pool_ = std::make_unique<asio::thread_pool>(std::max(2u, std::thread::hardware_concurrency()));
  return own_pool_->get_executor();
}

asio::awaitable<result<change_verdict>> merge_gate::impl::submit_op(change c) { co_return submit(std::move(c)); }
asio::awaitable<result<std::vector<change_verdict>>> merge_gate::impl::run_once_op() { co_return run_once(); }
asio::awaitable<result<git::oid>> merge_gate::impl::tip_op() { co_return tip(); }

result<std::unique_ptr<merge_gate>> merge_gate::open(const std::filesystem::path& repository, store::store& s,
                                                     git::worktree_pool& pool, gate_options options) {
  auto a = git::repository::open(repository);
  if (!a) return a.error();
  auto b = git::repository::open(repository);
  if (!b) return b.error();
  auto c = git::repository::open(repository);
  if (!c) return c.error();
  auto p = std::make_unique<impl>(s, pool, std::move(options), std::move(*a), std::move(*b), std::move(*c));
  return std::unique_ptr<merge_gate>(new merge_gate(std::move(p)));
}

merge_gate::merge_gate(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
merge_gate::~merge_gate() = default;

result<change_verdict> merge_gate::submit(change c) { return impl_->submit(std::move(c)); }
result<std::vector<change_verdict>> merge_gate::run_once() { return impl_->run_once(); }

result<std::vector<change_verdict>> merge_gate::run_until_empty() {
  std::vector<change_verdict> all;
  for (;;) {
    auto r = impl_->run_once();
    if (!r) return r.error();
    if (r->empty()) {
      auto left = queued();
      if (!left) return left.error();
      if (*left == 0) return all;
      // A batch waiting for company (batch_wait): look again shortly.
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    for (auto& v : *r) all.push_back(std::move(v));
  }
}

result<change_verdict> merge_gate::rollback(const git::oid& merged, std::string reason) {
  change c;
  c.id = fmt::format("revert-{}-{:x}", merged.hex().substr(0, 12), static_cast<std::uint64_t>(now_us()));
  c.base = merged;
  c.head = merged;
  c.priority = 1000;  // ahead of normal work
  c.revert_of = merged;
  change_verdict v;
  v.detail = std::move(reason);
  return impl_->enqueue(std::move(c), std::move(v));
}

result<std::optional<change_verdict>> merge_gate::verdict(const std::string& change_id) {
  return impl_->verdict(change_id);
}

result<prune_report> merge_gate::prune(std::size_t keep) { return impl_->prune(keep); }

result<git::oid> merge_gate::tip() { return impl_->tip(); }

namespace {
template <class R>
auto on_exception(std::string what_op) {
  return [what_op = std::move(what_op)](const std::string& what) -> R {
    return fail(error::io_error, fmt::format("gate: {} failed: {}", what_op, what));
  };
}
}  // namespace

void merge_gate::do_async_submit(change c, asio::any_completion_handler<verdict_signature> handler) {
  auto ex = impl_->blocking_executor();
  detail::spawn_operation(ex, ex, impl_->submit_op(std::move(c)), std::move(handler),
                          on_exception<result<change_verdict>>("submitting"));
}

void merge_gate::do_async_run_once(asio::any_completion_handler<step_signature> handler) {
  auto ex = impl_->blocking_executor();
  detail::spawn_operation(ex, ex, impl_->run_once_op(), std::move(handler),
                          on_exception<result<std::vector<change_verdict>>>("a step of the queue"));
}

void merge_gate::do_async_tip(asio::any_completion_handler<tip_signature> handler) {
  auto ex = impl_->blocking_executor();
  detail::spawn_operation(ex, ex, impl_->tip_op(), std::move(handler), on_exception<result<git::oid>>("reading the branch"));
}

void merge_gate::do_async_wait_verdict(std::string id, asio::any_completion_handler<verdict_signature> handler) {
  auto ex = impl_->blocking_executor();
  auto ws = std::make_shared<impl::wait_state>();
  // The handler's cancellation reaches the watcher (the change stays queued).
  auto slot = asio::get_associated_cancellation_slot(handler);
  if (slot.is_connected()) slot.assign([ws](asio::cancellation_type) { ws->cancel(); });
  auto op = impl_->wait_op(id, ws);
  detail::spawn_operation(ex, ex, std::move(op), std::move(handler),
                          on_exception<result<change_verdict>>("waiting for a verdict"));
}

result<std::size_t> merge_gate::queued() const {
  auto r = impl_->store_.range(impl_->queue_prefix());
  if (!r) return r.error();
  return r->kvs.size();
}

}  // namespace agentcore::gate
