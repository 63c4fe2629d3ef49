#include <agentcore/process/process.hpp>
#include <agentcore/model/cli.hpp>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <fmt/format.h>

#include <atomic>
#include <deque>
#include <functional>
#include <mutex>
#include <regex>
#include <thread>

namespace agentcore::model {

namespace {

std::string quote(const std::string& arg) {
  std::string out = "'";
  for (char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::uint64_t count(const json::object* o, std::string_view key) {
  if (!o) return 0;
  auto it = o->find(key);
  if (it == o->end()) return 0;
  if (it->value().is_uint64()) return it->value().as_uint64();
  if (it->value().is_int64() && it->value().as_int64() > 0) return static_cast<std::uint64_t>(it->value().as_int64());
  if (it->value().is_double() && it->value().as_double() > 0) return static_cast<std::uint64_t>(it->value().as_double());
  return 0;
}
const json::object* obj(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  return it != o.end() && it->value().is_object() ? &it->value().as_object() : nullptr;
}
std::string str(const json::object* o, std::string_view key) {
  if (!o) return {};
  auto it = o->find(key);
  return it != o->end() && it->value().is_string() ? std::string(it->value().as_string()) : std::string();
}

// What an agent's output said, read line by line as it arrives.
struct transcript {
  cli_options::format format;
  std::function<void(std::string kind, json::value data)> publish;  // may be empty
  std::string partial;       // an unfinished line
  std::string final_text;    // the answer
  std::string streamed;      // text as it came (the answer when no final one is reported)
  std::string reported_error;
  std::string model_name;
  usage used;
  bool finished = false;     // the agent reported its end

  // Returns text for a delta ("" for none).
  std::string line(std::string_view l) {
    if (format == cli_options::format::text) return {};
    boost::system::error_code ec;
    auto v = json::parse(l, ec);
    if (ec || !v.is_object()) return {};  // progress noise: not an event
    const auto& o = v.as_object();
    auto type = str(&o, "type");
    if (publish) {
      auto kind = type.empty() ? str(obj(o, "msg"), "type") : type;
      publish(kind.empty() ? std::string("event") : kind, v);
    }
    if (format == cli_options::format::claude_stream_json) {
      if (type == "system") {
        if (auto m = str(&o, "model"); !m.empty()) model_name = m;
      } else if (type == "assistant") {
        std::string text;
        if (auto* m = obj(o, "message"))
          if (auto it = m->find("content"); it != m->end() && it->value().is_array())
            for (const auto& b : it->value().as_array())
              if (b.is_object() && str(&b.as_object(), "type") == "text") text += str(&b.as_object(), "text");
        streamed += text;
        return text;
      } else if (type == "result") {
        finished = true;
        final_text = str(&o, "result");
        if (auto it = o.find("is_error"); it != o.end() && it->value().is_bool() && it->value().as_bool())
          reported_error = final_text.empty() ? str(&o, "subtype") : final_text;
        if (auto* u = obj(o, "usage"))
          used = {count(u, "input_tokens"), count(u, "output_tokens"), count(u, "cache_read_input_tokens"),
                  count(u, "cache_creation_input_tokens")};
      }
      return {};
    }
    // Codex CLI: the current event names, and the older {"msg": {...}} form.
    if (type == "item.completed") {
      auto* item = obj(o, "item");
      if (str(item, "type") == "agent_message") {
        auto text = str(item, "text");
        final_text = text;
        streamed += text;
        return text;
      }
    } else if (type == "turn.completed") {
      finished = true;
      auto* u = obj(o, "usage");
      used.input_tokens += count(u, "input_tokens") - std::min(count(u, "input_tokens"), count(u, "cached_input_tokens"));
      used.cache_read_tokens += count(u, "cached_input_tokens");
      used.output_tokens += count(u, "output_tokens");
    } else if (type == "turn.failed" || type == "error") {
      auto* e = obj(o, "error");
      reported_error = e ? str(e, "message") : str(&o, "message");
      if (reported_error.empty()) reported_error = json::serialize(o);
    } else if (auto* msg = obj(o, "msg"); msg && str(msg, "type") == "agent_message") {
      auto text = str(msg, "message");
      final_text = text;
      streamed += text;
      return text;
    }
    return {};
  }

  // Splits output into lines; returns the delta texts.
  std::vector<std::string> feed(std::string_view bytes) {
    std::vector<std::string> out;
    if (format == cli_options::format::text) {
      streamed.append(bytes);
      out.emplace_back(bytes);
      return out;
    }
    partial.append(bytes);
    std::size_t start = 0, nl;
    while ((nl = partial.find('\n', start)) != std::string::npos) {
      if (auto t = line(std::string_view(partial).substr(start, nl - start)); !t.empty()) out.push_back(std::move(t));
      start = nl + 1;
    }
    partial.erase(0, start);
    return out;
  }

  // Aider prints "Tokens: 2.3k sent, 120 received." (and more) at the end.
  void aider_usage() {
    static const std::regex tokens(R"(Tokens:\s*([0-9.]+)([kM]?)\s*sent,\s*([0-9.]+)([kM]?)\s*received)");
    std::smatch m;
    auto scale = [](const std::string& n, const std::string& unit) {
      double v = std::stod(n);
      return static_cast<std::uint64_t>(v * (unit == "k" ? 1e3 : unit == "M" ? 1e6 : 1));
    };
    std::string::const_iterator from = streamed.cbegin();
    while (std::regex_search(from, streamed.cend(), m, tokens)) {
      used.input_tokens += scale(m[1], m[2]);
      used.output_tokens += scale(m[3], m[4]);
      from = m.suffix().first;
    }
  }
};

// Deltas and then the completion, in that order, on the handler's executor
// and never inline. Each posted on its own, a handler without an executor of
// its own (the system executor, a pool of threads) could see its completion
// before the last deltas ran: one queue, drained by one task at a time.
class delivery : public std::enable_shared_from_this<delivery> {
public:
  explicit delivery(const asio::any_completion_handler<chat_signature>& h)
      : ex_(asio::prefer(asio::get_associated_executor(h), asio::execution::blocking.never)) {}
  void post(std::function<void()> f) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(f));
      if (draining_) return;
      draining_ = true;
    }
    ex_.execute([self = shared_from_this()] { self->drain(); });
  }

private:
  void drain() {
    for (;;) {
      std::function<void()> f;
      {
        std::lock_guard lock(mutex_);
        if (queue_.empty()) {
          draining_ = false;
          return;
        }
        f = std::move(queue_.front());
        queue_.pop_front();
      }
      f();
    }
  }
  asio::any_completion_executor ex_;
  std::mutex mutex_;
  std::deque<std::function<void()>> queue_;
  bool draining_ = false;
};

class cli_client final : public client {
public:
  explicit cli_client(cli_options o) : options_(std::make_shared<cli_options>(std::move(o))) {}
  // Agents still running when their client goes are stopped (their process
  // groups killed), not left working in a worktree nobody watches.
  ~cli_client() override {
    std::lock_guard lock(running_mutex_);
    for (auto& w : running_)
      if (auto stop = w.lock()) stop->store(true);
  }
  std::string name() const override { return options_->name; }
  engine_kind engine() const override { return engine_kind::whole_task; }

protected:
  void do_chat(request req, delta_handler on_delta, asio::any_completion_handler<chat_signature> handler) override {
    auto o = options_;
    std::filesystem::path dir = req.tags.workdir.empty() ? o->working_directory : std::filesystem::path(req.tags.workdir);
    if (o->command.empty())
      return complete(std::move(handler), fail(agentcore::error::invalid_argument,
                                               fmt::format("model: {}: no command configured", o->name)));
    if (dir.empty())
      return complete(std::move(handler),
                      fail(agentcore::error::invalid_argument,
                           fmt::format("model: {}: no working directory: set request.tags.workdir (the task's "
                                       "worktree) or cli_options::working_directory",
                                       o->name)));
    std::string prompt = req.system;
    for (const auto& m : req.messages) {
      auto t = m.text();
      if (t.empty()) continue;
      if (!prompt.empty()) prompt += "\n\n";
      prompt += t;
    }
    auto stop = std::make_shared<std::atomic<bool>>(false);
    {
      std::lock_guard lock(running_mutex_);
      std::erase_if(running_, [](const auto& w) { return w.expired(); });
      running_.push_back(stop);
    }
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected()) slot.assign([stop](asio::cancellation_type) { stop->store(true); });
    auto shared_handler = std::make_shared<asio::any_completion_handler<chat_signature>>(std::move(handler));
    auto order = std::make_shared<delivery>(*shared_handler);
    // The agent runs for minutes: on a thread of its own, not on the caller's
    // executor. Deltas and the answer are delivered on the handler's executor.
    std::thread([o, dir, prompt = std::move(prompt), on_delta = std::move(on_delta), stop, shared_handler, order,
                 task = req.tags.task] {
      auto t = std::make_shared<transcript>();
      t->format = o->output;
      if (o->events)
        t->publish = [bus = o->events, client = o->name, task_id = task](std::string kind, json::value data) {
          bus->publish(agent_event{client, task_id, std::move(kind), std::move(data)});
        };
      std::string command;
      for (const auto& a : o->command) command += (command.empty() ? "" : " ") + quote(a);
      process::run_options co{.working_directory = dir, .timeout = o->time_box, .output_limit = o->output_limit};
      for (const auto& v : o->env_allow) co.env_allow.push_back(v);
      co.env_set = o->env_set;
      // The agent is untrusted: the commands sandbox, with the network its API
      // needs (cli_options::sandbox), and the program's own directory readable
      // wherever it is (a private /tmp would hide one installed there).
      co.sandbox = o->sandbox;
      if (!o->command.empty() && std::filesystem::path(o->command.front()).is_absolute())
        co.sandbox.read_only.push_back(std::filesystem::path(o->command.front()).parent_path());
      co.stdin_data = prompt.empty() ? std::string("\n") : prompt;
      co.stop = stop.get();
      co.on_stdout = [&](std::string_view bytes) {
        for (auto& text : t->feed(bytes))
          if (on_delta)
            order->post([on_delta, text = std::move(text)] { on_delta({delta::text, 0, text, {}, {}}); });
      };
      auto ran = process::run(command, co);
      result_type out = [&]() -> result_type {
        if (!ran) return error_info(ran.error().code(), fmt::format("model: {}: {}", o->name, ran.error().message()));
        if (!t->partial.empty()) t->line(t->partial);
        if (ran->timed_out)
          return fail(error::time_box, fmt::format("model: {}: the agent ran out of its {} ms time box in '{}' and was "
                                                   "killed",
                                                   o->name, o->time_box.count(), dir.string()));
        if (stop->load()) return fail(agentcore::error::canceled, fmt::format("model: {}: canceled", o->name));
        auto tail = [&] {
          auto log = ran->log;
          return log.size() > 600 ? "..." + log.substr(log.size() - 600) : log;
        };
        if (!t->reported_error.empty())
          return fail(error::agent_failed, fmt::format("model: {}: the agent reported an error: {}", o->name,
                                                       t->reported_error));
        if (ran->exit_code != 0)
          return fail(error::agent_failed,
                      fmt::format("model: {}: the agent {} in '{}'; its output ends: {}", o->name, ran->outcome(),
                                  dir.string(), tail()));
        if (o->output != cli_options::format::text && !t->finished)
          return fail(error::agent_failed, fmt::format("model: {}: the agent exited without reporting its end (no "
                                                       "result event); its output ends: {}",
                                                       o->name, tail()));
        if (o->output == cli_options::format::text) t->aider_usage();
        if (t->publish)
          t->publish("usage", json::object{{"input", t->used.input_tokens},
                                           {"output", t->used.output_tokens},
                                           {"cache_read", t->used.cache_read_tokens},
                                           {"cache_write", t->used.cache_write_tokens}});
        response r;
        r.message = assistant(t->final_text.empty() ? t->streamed : t->final_text);
        r.usage = t->used;
        r.model_name = t->model_name.empty() ? o->name : t->model_name;
        r.latency = ran->duration;
        return r;
      }();
      // After every delta posted above (complete() posts it on, never inline).
      order->post([shared_handler, out = std::move(out)]() mutable {
        complete(std::move(*shared_handler), std::move(out));
      });
    }).detach();
  }

private:
  std::shared_ptr<cli_options> options_;
  std::mutex running_mutex_;
  std::vector<std::weak_ptr<std::atomic<bool>>> running_;  // the stop flags of calls in flight
};

}  // namespace

void tag_invoke(json::value_from_tag, json::value& v, const agent_event& e) {
  v = json::object{{"client", e.client}, {"task", e.task}, {"kind", e.kind}, {"data", e.data}};
}

result<cli_options> cli_preset(std::string_view name) {
  cli_options o;
  o.name = fmt::format("cli:{}", name);
  std::vector<std::string> state;  // the agent's own files under HOME, writable in its sandbox
  if (name == "claude") {
    o.output = cli_options::format::claude_stream_json;
    o.command = {"claude", "-p", "--output-format", "stream-json", "--verbose"};
    o.env_allow = {"ANTHROPIC_API_KEY"};
    state = {".claude", ".claude.json"};
  } else if (name == "codex") {
    o.output = cli_options::format::codex_json;
    o.command = {"codex", "exec", "--json", "-"};
    o.env_allow = {"OPENAI_API_KEY"};
    state = {".codex"};
  } else if (name == "aider") {
    o.output = cli_options::format::text;
    o.command = {"aider", "--yes-always", "--no-stream", "--no-pretty", "--message-file", "/dev/stdin"};
    o.env_allow = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"};
    state = {".aider", ".aider.conf.yml"};
  } else {
    return fail(agentcore::error::not_found,
                fmt::format("model: no CLI agent preset '{}' (known: claude, codex, aider); give a command in the "
                            "options instead",
                            name));
  }
  if (const char* home = std::getenv("HOME"); home && *home) {
    std::error_code ec;
    for (const auto& f : state)
      if (std::filesystem::exists(std::filesystem::path(home) / f, ec))
        o.sandbox.writable.push_back(std::filesystem::path(home) / f);
  }
  return o;
}

std::shared_ptr<client> make_cli_client(cli_options options) { return std::make_shared<cli_client>(std::move(options)); }

}  // namespace agentcore::model
