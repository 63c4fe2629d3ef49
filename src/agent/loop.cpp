#include <agentcore/agent/loop.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_from.hpp>

#include "detail/complete.hpp"
#include "detail/spawn.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <mutex>

namespace agentcore::agent {

namespace {

using clock = std::chrono::steady_clock;

std::size_t chars_of(const model::message& m) {
  std::size_t n = 0;
  for (const auto& p : m.parts) {
    if (auto* t = std::get_if<model::text_part>(&p)) n += t->text.size();
    else if (auto* c = std::get_if<model::tool_call>(&p)) n += c->name.size() + c->arguments.size() + 16;
    else if (auto* r = std::get_if<model::tool_result>(&p)) n += r->content.size() + 16;
  }
  return n;
}

std::string head(std::string_view s, std::size_t n) {
  if (s.size() <= n) return std::string(s);
  return fmt::format("{}... [{} more chars]", s.substr(0, n), s.size() - n);
}

std::string first_line(std::string_view s, std::size_t n) {
  auto nl = s.find('\n');
  auto line = s.substr(0, nl);
  return std::string(line.substr(0, n));
}

// The part of the conversation that condensing replaces, as plain text the
// summariser reads (tool calls and their answers cut short).
std::string render(const std::vector<model::message>& ms, std::size_t from, std::size_t to) {
  std::string out;
  for (std::size_t i = from; i < to; ++i) {
    for (const auto& p : ms[i].parts) {
      if (auto* t = std::get_if<model::text_part>(&p)) {
        if (!t->text.empty()) out += fmt::format("[{}] {}\n", model::to_string(ms[i].role), head(t->text, 2000));
      } else if (auto* c = std::get_if<model::tool_call>(&p)) {
        out += fmt::format("[assistant called {}] {}\n", c->name, head(c->arguments, 400));
      } else if (auto* r = std::get_if<model::tool_result>(&p)) {
        out += fmt::format("[{}] {}\n", r->is_error ? "tool error" : "tool answer", head(r->content, 600));
      }
    }
  }
  return out;
}

// What is left when the summariser cannot be asked: the calls made, in order.
std::string mechanical_summary(const std::vector<model::message>& ms, std::size_t from, std::size_t to,
                               const std::vector<std::string>& written) {
  std::string out = "(the summary could not be written; the calls made were:)\n";
  for (std::size_t i = from; i < to; ++i)
    for (const auto& c : ms[i].tool_calls()) out += fmt::format("- {} {}\n", c.name, head(c.arguments, 120));
  if (!written.empty()) {
    out += "Files written so far:";
    for (const auto& w : written) out += " " + w;
    out += "\n";
  }
  return out;
}

constexpr std::string_view condensed_marker =
    "\n\n[Earlier turns were condensed to save context. Summary of the work so far:]\n";

const char* nudge =
    "You answered without calling a tool. Continue the task with the tools; when it is done (or cannot be done), "
    "call finish with a summary.";

}  // namespace

std::string_view to_string(outcome_kind k) noexcept {
  switch (k) {
    case outcome_kind::finished: return "finished";
    case outcome_kind::time_box: return "time_box";
    case outcome_kind::stalled: return "stalled";
    case outcome_kind::stopped: return "stopped";
    case outcome_kind::failed: return "failed";
  }
  return "failed";
}

namespace {

// The contract's terms, as both prompts state them.
std::string terms_text(const contract::task_contract& c) {
  std::string s;
  if (!c.goal.empty()) s += "\nGoal: " + c.goal + "\n";
  if (!c.acceptance_criteria.empty()) {
    s += "\nDone means:\n";
    for (const auto& a : c.acceptance_criteria) s += "- " + a + "\n";
  }
  if (!c.acceptance_checks.empty()) {
    s += "\nThese commands must pass:\n";
    for (const auto& a : c.acceptance_checks) s += "- " + a + "\n";
  }
  if (!c.allowed_paths.empty()) {
    s += "\nYou may change only these paths:";
    for (const auto& p : c.allowed_paths) s += " " + p;
    s += "\n";
  }
  s += "\nYou may never change:";
  for (const auto& p : c.forbidden_paths) s += " " + p;
  s += " .git\n";
  if (c.max_files) s += fmt::format("Change at most {} files.\n", c.max_files);
  if (c.max_changed_lines) s += fmt::format("Change at most {} lines in all.\n", c.max_changed_lines);
  if (c.time.wall.count()) s += fmt::format("You have {} minutes.\n", (c.time.wall.count() + 59) / 60);
  return s;
}

}  // namespace

std::string system_prompt(const contract::task_contract& c) {
  std::string s =
      "You are a software engineer working on one task in a git worktree of a larger project. Other engineers work "
      "on other tasks at the same time; change only what this task needs. Use the tools to read, search, edit and "
      "run commands; paths are relative to the worktree root. Make small, correct changes, run the checks, and call "
      "finish with a summary when the task is done.\n";
  s += terms_text(c);
  if (c.time.model_turns) s += fmt::format("You have {} turns.\n", c.time.model_turns);
  s += "Writes outside the allowed paths are refused; the merge gate rejects changes that break these rules.\n";
  return s;
}

std::string whole_task_prompt(const contract::task_contract& c) {
  std::string s =
      "You are a software engineer working on one task in a git worktree of a larger project (the current "
      "directory). Other engineers work on other tasks at the same time; change only what this task needs. Make "
      "small, correct changes to the files and run the checks; do not commit (your changes are taken from the "
      "worktree as they are). When the task is done, or cannot be done, end with a short summary of what you "
      "changed and why.\n";
  s += terms_text(c);
  s += "The merge gate rejects changes that break these rules.\n";
  return s;
}

struct agent_loop::state : std::enable_shared_from_this<state> {
  model::client& model;
  agent::workspace& ws;
  std::vector<std::shared_ptr<tool>> tools;
  loop_options o;
  // The coroutine and stop()'s cancellation run here, never at once.
  asio::strand<asio::any_io_executor> strand;
  std::atomic<bool> stop_flag{false};
  std::mutex wake_mutex;
  asio::steady_timer* wake = nullptr;  // the timer raced against the model call in flight
  bool running = false;

  state(model::client& m, agent::workspace& w, std::vector<std::shared_ptr<tool>> t, loop_options opts)
      : model(m), ws(w), tools(std::move(t)), o(std::move(opts)),
        strand(asio::make_strand(o.executor ? o.executor : asio::any_io_executor(asio::system_executor()))) {}

  void publish_outcome(const outcome& out) {
    if (o.events)
      o.events->publish(outcome_event{o.tags.role, o.tags.task, std::string(to_string(out.kind)), out.summary,
                                      out.turns, out.usage, out.cost});
  }

  // Asks the model, unless the deadline or a stop comes first (then nullopt).
  asio::awaitable<std::optional<model::result_type>> ask(model::request req, clock::time_point deadline) {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex);
    timer.expires_at(deadline);
    {
      std::lock_guard lock(wake_mutex);
      if (stop_flag) co_return std::nullopt;
      wake = &timer;
    }
    auto [order, answer, ec] = co_await asio::experimental::make_parallel_group(
                                   model.async_chat(std::move(req), asio::deferred), timer.async_wait(asio::deferred))
                                   .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    {
      std::lock_guard lock(wake_mutex);
      wake = nullptr;
    }
    if (order[0] == 1) co_return std::nullopt;
    co_return std::move(answer);
  }

  asio::awaitable<outcome> run(std::vector<model::message> messages) {
    outcome out;
    auto started = clock::now();
    auto deadline = o.limits.wall.count() > 0 ? started + o.limits.wall : clock::time_point::max();
    tool_context ctx{.workspace = ws, .blocking = o.blocking, .deadline = deadline, .stop = &stop_flag,
                     .commands = o.commands, .events = o.events, .task = o.tags.task};
    const bool whole_task = model.engine() == model::engine_kind::whole_task;
    std::string system = !o.system.empty() ? o.system
                         : whole_task      ? whole_task_prompt(ws.terms().terms())
                                           : system_prompt(ws.terms().terms());
    std::vector<model::tool_definition> defs;
    for (const auto& t : tools) defs.push_back(t->definition());
    // The task statement: the first message, without an earlier condensation's summary.
    std::string task = messages.front().text();
    if (auto cut = task.find(condensed_marker); cut != std::string::npos) task.resize(cut);

    std::uint64_t known_tokens = 0;   // the last answer's input + output
    std::size_t chars_since = 0;
    for (const auto& m : messages) chars_since += chars_of(m);
    std::uint64_t last_changes = ws.changes();
    int idle = 0, repeats = 0;
    std::string last_key;

    auto finish = [&](outcome_kind k, std::string summary) {
      out.kind = k;
      out.summary = std::move(summary);
      out.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - started);
      out.files_written = ws.written();
      out.messages = std::move(messages);
      publish_outcome(out);
      return std::move(out);
    };
    auto spent = [&]() -> std::string {
      const auto& l = o.limits;
      std::uint64_t tokens = out.usage.input_tokens + out.usage.output_tokens;
      if (l.model_turns > 0 && out.turns >= l.model_turns)
        return fmt::format("the time box's {} model turns are used up", l.model_turns);
      if (l.tokens > 0 && tokens >= static_cast<std::uint64_t>(l.tokens))
        return fmt::format("the time box's {} tokens are used up ({} used)", l.tokens, tokens);
      if (l.cost > 0 && out.cost >= l.cost) return fmt::format("the time box's cost limit {} is reached ({:.4f})", l.cost, out.cost);
      if (clock::now() >= deadline) return fmt::format("the time box's {} s of wall time are used up", l.wall.count());
      return {};
    };
    auto charge = [&](const model::response& r) {
      out.usage += r.usage;
      out.cost += model::cost_of(r.usage, r.model_name, o.prices);
    };
    auto base_request = [&] {
      model::request req;
      req.system = system;
      req.tools = defs;
      req.max_tokens = o.max_tokens;
      if (o.limits.tokens > 0) {
        auto used = out.usage.input_tokens + out.usage.output_tokens;
        auto left = used < static_cast<std::uint64_t>(o.limits.tokens) ? o.limits.tokens - used : 1;
        req.max_tokens = static_cast<std::uint32_t>(std::min<std::uint64_t>(req.max_tokens, std::max<std::uint64_t>(left, 1)));
      }
      req.tags = o.tags;
      return req;
    };

    for (;;) {
      if (stop_flag) co_return finish(outcome_kind::stopped, "asked to stop");
      if (auto why = spent(); !why.empty()) co_return finish(outcome_kind::time_box, why);

      if (whole_task) {
        // One call is the whole attempt: the engine works in the worktree
        // with its own tools until it is done, and answers with its report.
        model::request req = base_request();
        req.tools.clear();
        req.messages = messages;
        const auto asked = clock::now();
        auto answer = co_await ask(std::move(req), deadline);
        const double answer_seconds = std::chrono::duration<double>(clock::now() - asked).count();
        ws.note_untracked_change();  // whatever it did (or began to do) is in the worktree, not in the workspace's record
        if (!answer) continue;       // stop or deadline: the checks at the top say which
        if (!*answer) {
          out.error = (*answer).error();
          co_return finish(outcome_kind::failed, out.error.message());
        }
        model::response r = std::move(**answer);
        ++out.turns;
        charge(r);
        if (o.events)
          o.events->publish(turn_event{o.tags.role, o.tags.task, out.turns, {}, r.usage, std::string(model::to_string(r.stop)),
                                       r.model_name, model::cost_of(r.usage, r.model_name, o.prices), answer_seconds});
        r.message.role = model::role::assistant;
        std::string report = r.message.text();
        messages.push_back(std::move(r.message));
        if (r.stop == model::stop_reason::refused) co_return finish(outcome_kind::stalled, "the agent refused to go on");
        if (report.empty()) report = "(the agent ended without a summary)";
        co_return finish(outcome_kind::finished, std::move(report));
      }

      // Condense when the conversation has outgrown its budget.
      std::uint64_t estimate = known_tokens + chars_since / 4;
      if (estimate > o.context_tokens && messages.size() > o.keep_messages + 2) {
        std::size_t cut = messages.size() - o.keep_messages;
        while (cut < messages.size() && messages[cut].role != model::role::assistant) ++cut;
        if (cut > 1 && cut < messages.size()) {
          model::request sreq = base_request();
          sreq.tools.clear();
          sreq.system =
              "You condense the record of a software engineer's work on a task so the engineer can continue "
              "without it. Keep: what was done, which files were changed and how, what was learned about the code, "
              "what failed and why, and what is left to do. Be concise and concrete.";
          sreq.max_tokens = std::min<std::uint32_t>(sreq.max_tokens, 2048);
          sreq.messages.push_back(model::user("The task:\n" + task + "\n\nThe work so far:\n" +
                                              render(messages, 1, cut) + "\nWrite the summary."));
          auto answer = co_await ask(std::move(sreq), deadline);
          if (!answer) continue;  // stop or deadline: the checks at the top say which
          std::string summary;
          if (*answer && !(*answer)->message.text().empty()) {
            charge(**answer);
            summary = (*answer)->message.text();
          } else {
            summary = mechanical_summary(messages, 1, cut, ws.written());
          }
          std::vector<model::message> next{model::user(
              task + std::string(condensed_marker) + summary)};
          next.insert(next.end(), std::make_move_iterator(messages.begin() + static_cast<std::ptrdiff_t>(cut)),
                      std::make_move_iterator(messages.end()));
          messages = std::move(next);
          ++out.condensations;
          known_tokens = 0;
          chars_since = 0;
          for (const auto& m : messages) chars_since += chars_of(m);
          continue;
        }
      }

      model::request req = base_request();
      req.messages = messages;
      const auto asked = clock::now();
      auto answer = co_await ask(std::move(req), deadline);
      const double answer_seconds = std::chrono::duration<double>(clock::now() - asked).count();
      if (!answer) continue;
      if (!*answer) {
        out.error = (*answer).error();
        co_return finish(outcome_kind::failed, out.error.message());
      }
      model::response r = std::move(**answer);
      ++out.turns;
      charge(r);
      known_tokens = r.usage.input_tokens + r.usage.output_tokens;
      chars_since = known_tokens ? 0 : chars_since + chars_of(r.message);
      auto calls = r.message.tool_calls();
      if (o.events) {
        turn_event e{o.tags.role, o.tags.task, out.turns, {}, r.usage, std::string(model::to_string(r.stop)),
                     r.model_name, model::cost_of(r.usage, r.model_name, o.prices), answer_seconds};
        for (const auto& c : calls) e.tool_calls.push_back(c.name);
        o.events->publish(std::move(e));
      }
      r.message.role = model::role::assistant;
      messages.push_back(std::move(r.message));

      if (calls.empty()) {
        if (r.stop == model::stop_reason::refused) co_return finish(outcome_kind::stalled, "the model refused to go on");
        messages.push_back(model::user(nudge));
        chars_since += std::char_traits<char>::length(nudge);
        if (o.idle_turns > 0 && ++idle >= o.idle_turns)
          co_return finish(outcome_kind::stalled, fmt::format("no file changed in the last {} turns", idle));
        last_key.clear();
        continue;
      }

      model::message results{model::role::user, {}};
      std::string key;
      std::size_t index = 0;
      for (const auto& c : calls) {
        key += c.name + ' ' + c.arguments + '\n';
        tool_output answer_out;
        if (o.max_tool_calls_per_turn > 0 && index++ >= o.max_tool_calls_per_turn) {
          answer_out = {fmt::format("not run: one answer may make at most {} tool calls and this one made {}; ask "
                                    "for fewer at a time",
                                    o.max_tool_calls_per_turn, calls.size()),
                        true};
        } else if (ctx.finished) {
          answer_out = {"not run: finish was already called", true};
        } else if (stop_flag) {
          answer_out = {"not run: the agent was asked to stop", true};
        } else {
          auto it = std::find_if(tools.begin(), tools.end(), [&](const auto& t) { return t->name() == c.name; });
          if (it == tools.end()) {
            std::string names;
            for (const auto& t : tools) names += (names.empty() ? "" : ", ") + t->name();
            answer_out = {fmt::format("there is no tool named '{}'; the tools are: {}", head(c.name, 80), names), true};
          } else if (auto args = model::parse_arguments(c); !args) {
            answer_out = {args.error().message(), true};
          } else {
            answer_out = co_await (*it)->async_invoke(std::move(*args), ctx, asio::use_awaitable);
          }
        }
        ++out.tool_calls;
        if (answer_out.is_error) ++out.tool_errors;
        if (o.events)
          o.events->publish(tool_call_event{o.tags.role, o.tags.task, c.name, answer_out.is_error,
                                            first_line(answer_out.content, 200)});
        results.parts.push_back(model::tool_result{c.id, std::move(answer_out.content), answer_out.is_error});
      }
      chars_since += chars_of(results);
      messages.push_back(std::move(results));
      if (ctx.finished) co_return finish(outcome_kind::finished, ctx.summary);

      if (ws.changes() != last_changes) {
        last_changes = ws.changes();
        idle = 0;
      } else if (o.idle_turns > 0 && ++idle >= o.idle_turns) {
        co_return finish(outcome_kind::stalled, fmt::format("no file changed in the last {} turns", idle));
      }
      repeats = key == last_key ? repeats + 1 : 1;
      last_key = std::move(key);
      if (o.repeat_limit > 0 && repeats >= o.repeat_limit)
        co_return finish(outcome_kind::stalled,
                         fmt::format("the same call ({} {}) {} turns in a row", calls.front().name,
                                     head(calls.front().arguments, 120), repeats));
    }
  }
};

agent_loop::agent_loop(model::client& model, agent::workspace& ws, std::vector<std::shared_ptr<tool>> tools,
                       loop_options options)
    : state_(std::make_shared<state>(model, ws, std::move(tools), std::move(options))) {}

agent_loop::~agent_loop() = default;

asio::any_io_executor agent_loop::get_executor() const { return state_->o.executor; }

void agent_loop::stop() {
  std::lock_guard lock(state_->wake_mutex);
  state_->stop_flag = true;
  if (state_->wake) asio::post(state_->strand, [s = state_] {
      std::lock_guard l(s->wake_mutex);
      if (s->wake) s->wake->cancel();
    });
}

std::vector<model::message> agent_loop::continued(std::vector<model::message> conversation, std::string message) {
  if (!conversation.empty() && conversation.back().role == model::role::user)
    conversation.back().parts.push_back(model::text_part{std::move(message)});  // roles must alternate
  else
    conversation.push_back(model::user(std::move(message)));
  return conversation;
}

void agent_loop::start(std::vector<model::message> conversation, asio::any_completion_handler<void(outcome)> handler) {
  auto s = state_;
  if (!s->o.executor) {
    outcome out;
    out.error = fail(agentcore::error::invalid_argument, "agent: loop_options::executor is not set");
    out.summary = out.error.message();
    agentcore::detail::post_completion(std::move(handler), std::move(out));
    return;
  }
  if (conversation.empty()) conversation.push_back(model::user(""));
  detail::spawn_operation(s->strand, s->o.executor, s->run(std::move(conversation)), std::move(handler),
                          [s](const std::string& what) {
                            outcome out;
                            out.error = fail(agentcore::error::io_error, fmt::format("agent: the loop failed: {}", what));
                            out.summary = out.error.message();
                            s->publish_outcome(out);
                            return out;
                          });
}

void tag_invoke(json::value_from_tag, json::value& v, const turn_event& e) {
  json::array calls;
  for (const auto& c : e.tool_calls) calls.emplace_back(c);
  v = {{"role", e.role}, {"task", e.task}, {"turn", e.turn}, {"tool_calls", std::move(calls)},
       {"input_tokens", e.usage.input_tokens}, {"output_tokens", e.usage.output_tokens}, {"stop", e.stop},
       {"model", e.model}, {"cost", e.cost}, {"seconds", e.seconds}};
}

void tag_invoke(json::value_from_tag, json::value& v, const tool_call_event& e) {
  v = {{"role", e.role}, {"task", e.task}, {"tool", e.tool}, {"is_error", e.is_error}, {"answer_head", e.answer_head}};
}

void tag_invoke(json::value_from_tag, json::value& v, const outcome_event& e) {
  v = {{"role", e.role},   {"task", e.task},   {"kind", e.kind},
       {"summary", e.summary}, {"turns", e.turns}, {"input_tokens", e.usage.input_tokens},
       {"output_tokens", e.usage.output_tokens}, {"cost", e.cost}};
}

}  // namespace agentcore::agent
