#include <agentcore/model/replay.hpp>

#include "detail/complete.hpp"

#include <boost/json/serialize.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace agentcore::model {

namespace {

constexpr int transcript_version = 1;

std::string hash_of(const json::value& request_without_tags) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : json::serialize(request_without_tags)) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return fmt::format("{:016x}", h);
}

json::value untagged(const request& r) {
  auto v = to_json_value(r);
  v.as_object().erase("tags");
  return v;
}

std::string shorten(const json::value& v) {
  auto s = json::serialize(v);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

// Where two JSON values first differ, as "at PATH: recorded X, asked Y".
std::string first_difference(const json::value& recorded, const json::value& asked, const std::string& path) {
  auto at = path.empty() ? std::string("the top") : path;
  if (recorded.kind() != asked.kind() && !(recorded.is_number() && asked.is_number()))
    return fmt::format("at {}: recorded {}, asked {}", at, shorten(recorded), shorten(asked));
  if (recorded.is_object()) {
    const auto& a = recorded.as_object();
    const auto& b = asked.as_object();
    for (const auto& kv : a) {
      auto key = std::string(kv.key());
      auto it = b.find(kv.key());
      if (it == b.end()) return fmt::format("at {}: recorded has '{}', asked has not", at, key);
      auto d = first_difference(kv.value(), it->value(), path.empty() ? key : path + "." + key);
      if (!d.empty()) return d;
    }
    for (const auto& kv : b)
      if (!a.contains(kv.key())) return fmt::format("at {}: asked has '{}', recorded has not", at, std::string(kv.key()));
    return {};
  }
  if (recorded.is_array()) {
    const auto& a = recorded.as_array();
    const auto& b = asked.as_array();
    for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
      auto d = first_difference(a[i], b[i], fmt::format("{}[{}]", path, i));
      if (!d.empty()) return d;
    }
    if (a.size() != b.size())
      return fmt::format("at {}: recorded has {} element(s), asked has {}", at, a.size(), b.size());
    return {};
  }
  if (recorded != asked) return fmt::format("at {}: recorded {}, asked {}", at, shorten(recorded), shorten(asked));
  return {};
}

std::size_t common_prefix(const std::string& a, const std::string& b) {
  std::size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

error_info transcript_error(const std::filesystem::path& p, std::size_t line, std::string_view detail) {
  return fail(agentcore::error::corrupt,
              fmt::format("model: transcript '{}' line {}: {}; fix or remove that line (each line is one recorded call)",
                          p.string(), line, detail));
}

}  // namespace

std::string request_hash(const request& r) { return hash_of(untagged(r)); }

// --- replay_client ---

result<std::unique_ptr<replay_client>> replay_client::open(const std::filesystem::path& transcript,
                                                           replay_options options) {
  std::ifstream in(transcript);
  if (!in)
    return fail(agentcore::error::not_found,
                fmt::format("model: cannot open transcript '{}': {}; record one with model::recorder", transcript.string(),
                            std::strerror(errno)));
  std::vector<entry> entries;
  std::string line;
  std::size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto v = parse_json(line);
    if (!v) return transcript_error(transcript, number, v.error().message());
    if (!v->is_object()) return transcript_error(transcript, number, "not a JSON object");
    const auto& o = v->as_object();
    auto version = json_field<int>(o, "v", "transcript line");
    if (!version) return transcript_error(transcript, number, version.error().message());
    if (*version != transcript_version)
      return fail(agentcore::error::unsupported_format,
                  fmt::format("model: transcript '{}' line {} has version {}; this agentcore reads version {}",
                              transcript.string(), number, *version, transcript_version));
    entry e;
    e.line = number;
    auto role = json_field_or<std::string>(o, "role", "", "transcript line");
    auto turn = json_field<std::uint64_t>(o, "turn", "transcript line");
    if (!role) return transcript_error(transcript, number, role.error().message());
    if (!turn) return transcript_error(transcript, number, turn.error().message());
    auto req = o.contains("request") ? request_from_json(o.at("request"))
                                     : result<request>(boost::system::in_place_error,
                                                       fail(agentcore::error::invalid_argument, "it has no 'request'"));
    if (!req) return transcript_error(transcript, number, req.error().message());
    auto resp = o.contains("response") ? response_from_json(o.at("response"))
                                       : result<response>(boost::system::in_place_error,
                                                          fail(agentcore::error::invalid_argument, "it has no 'response'"));
    if (!resp) return transcript_error(transcript, number, resp.error().message());
    e.role = std::move(*role);
    e.turn = *turn;
    e.req = std::move(*req);
    e.resp = std::move(*resp);
    e.hash = request_hash(e.req);  // recomputed: a hand-edited request still matches itself
    entries.push_back(std::move(e));
  }
  return std::unique_ptr<replay_client>(new replay_client(transcript, options, std::move(entries)));
}

replay_client::replay_client(std::filesystem::path path, replay_options options, std::vector<entry> entries)
    : path_(std::move(path)), options_(options), entries_(std::move(entries)) {
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    by_turn_.emplace(std::pair{entries_[i].role, entries_[i].turn}, i);
    by_hash_[entries_[i].hash].push_back(i);
    by_task_[{entries_[i].role, entries_[i].req.tags.task}].push_back(i);
  }
}

std::string replay_client::name() const { return "replay:" + path_.string(); }

std::size_t replay_client::remaining() const {
  std::lock_guard lock(mutex_);
  return entries_.size() - given_;
}

result_type replay_client::answer(const request& req) {
  std::lock_guard lock(mutex_);
  std::string why;
  if (options_.by == replay_options::match::role_and_turn) {
    auto turn = next_turn_[req.tags.role]++;
    if (auto it = by_turn_.find({req.tags.role, turn}); it != by_turn_.end()) {
      ++given_;
      return entries_[it->second].resp;
    }
    why = fmt::format("no answer for role '{}' turn {}", req.tags.role, turn);
  } else if (options_.by == replay_options::match::task_and_turn) {
    std::pair key{req.tags.role, req.tags.task};
    auto& used = task_used_[key];
    if (auto it = by_task_.find(key); it != by_task_.end() && used < it->second.size()) {
      ++given_;
      return entries_[it->second[used++]].resp;
    }
    why = fmt::format("no answer for role '{}' task '{}' turn {}", req.tags.role, req.tags.task, used);
  } else {
    auto hash = request_hash(req);
    if (auto it = by_hash_.find(hash); it != by_hash_.end()) {
      auto& used = hash_used_[hash];
      if (used < it->second.size()) {
        ++given_;
        return entries_[it->second[used++]].resp;
      }
      why = fmt::format("request {} was recorded {} time(s) and has been asked more often", hash, it->second.size());
    } else {
      why = fmt::format("no answer for request {}", hash);
    }
  }
  if (entries_.empty())
    return fail(error::not_covered, fmt::format("model: replay '{}': {}; the transcript is empty", path_.string(), why));
  // The nearest recorded request: the same role first, then the longest
  // common prefix of the JSON forms.
  auto asked = untagged(req);
  auto asked_text = json::serialize(asked);
  std::size_t best = 0, best_score = 0;
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    auto text = json::serialize(untagged(entries_[i].req));
    std::size_t score = common_prefix(text, asked_text) + (entries_[i].role == req.tags.role ? text.size() + 1 : 0);
    if (score >= best_score) {
      best = i;
      best_score = score;
    }
  }
  const auto& e = entries_[best];
  auto diff = first_difference(untagged(e.req), asked, "");
  return fail(error::not_covered,
              fmt::format("model: replay '{}': {}; nearest recorded request: line {} (role '{}', turn {}), {}; record the "
                          "run again if the prompts changed",
                          path_.string(), why, e.line, e.role, e.turn, diff.empty() ? "identical" : diff));
}

void replay_client::do_chat(request req, delta_handler on_delta, asio::any_completion_handler<chat_signature> handler) {
  auto r = answer(req);
  if (r) stream_whole(*r, on_delta);
  detail::post_completion(std::move(handler), std::move(r));
}

// --- recorder ---

struct recorder::state {
  std::shared_ptr<client> inner;
  std::filesystem::path path;
  std::FILE* file = nullptr;
  std::mutex mutex;
  std::map<std::string, std::uint64_t> next_turn;
  std::string write_error;  // the first failed write, reported on every later call

  ~state() {
    if (file) std::fclose(file);
  }
};

result<std::unique_ptr<recorder>> recorder::open(std::shared_ptr<client> inner, const std::filesystem::path& transcript) {
  if (!inner) return fail(agentcore::error::invalid_argument, "model: recorder needs a client to record");
  auto s = std::make_shared<state>();
  s->inner = std::move(inner);
  s->path = transcript;
  s->file = std::fopen(transcript.c_str(), "ae");  // creates it, so that the check below reads something
  if (!s->file)
    return fail(agentcore::error::io_error, fmt::format("model: cannot open transcript '{}' for appending: {}",
                                                        transcript.string(), std::strerror(errno)));
  // Appending to a transcript that does not read back would lose the run:
  // refuse it. Turns go on from what it already holds, so that a grown
  // transcript replays as one run.
  if (auto existing = replay_client::open(transcript); !existing) return existing.error();
  {
    std::ifstream in(transcript);
    std::string line;
    while (std::getline(in, line)) {
      auto v = parse_json(line);
      if (!v || !v->is_object()) continue;
      auto role = json_field_or<std::string>(v->as_object(), "role", "");
      auto turn = json_field_or<std::uint64_t>(v->as_object(), "turn", 0);
      if (role && turn) s->next_turn[*role] = std::max(s->next_turn[*role], *turn + 1);
    }
  }
  return std::unique_ptr<recorder>(new recorder(std::move(s)));
}

recorder::recorder(std::shared_ptr<state> s) : state_(std::move(s)) {}
recorder::~recorder() = default;

std::string recorder::name() const { return "record:" + state_->inner->name(); }
engine_kind recorder::engine() const { return state_->inner->engine(); }

void recorder::do_chat(request req, delta_handler on_delta, asio::any_completion_handler<chat_signature> handler) {
  {
    std::lock_guard lock(state_->mutex);
    if (!state_->write_error.empty()) {
      detail::post_completion(std::move(handler), result_type(boost::system::in_place_error,
                                                              fail(agentcore::error::io_error, state_->write_error)));
      return;
    }
  }
  auto asked = req;
  state_->inner->async_stream(
      std::move(req), std::move(on_delta),
      [s = state_, asked = std::move(asked), handler = std::move(handler)](result_type r) mutable {
        if (r) {
          // A turn is taken by an answer, not by a call: a failed call (retried
          // by a wrapper outside) leaves no gap for replay to trip on.
          std::lock_guard lock(s->mutex);
          auto turn = s->next_turn[asked.tags.role]++;
          json::object line{{"v", transcript_version},
                            {"role", asked.tags.role},
                            {"turn", turn},
                            {"hash", request_hash(asked)},
                            {"request", to_json_value(asked)},
                            {"response", to_json_value(*r)}};
          auto text = json::serialize(line) + "\n";
          if (std::fwrite(text.data(), 1, text.size(), s->file) != text.size() || std::fflush(s->file) != 0) {
            s->write_error = fmt::format("model: recorder could not write transcript '{}': {}; the run's answers are no "
                                         "longer recorded",
                                         s->path.string(), std::strerror(errno));
            r = result_type(boost::system::in_place_error, fail(agentcore::error::io_error, s->write_error));
          }
        }
        detail::post_completion(std::move(handler), std::move(r));
      });
}

}  // namespace agentcore::model
