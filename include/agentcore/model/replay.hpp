// agentcore/model/replay.hpp: record a live run's model calls once, replay
// them deterministically (in CI, in tests, to reproduce a bug).
//
//   auto live = std::make_shared<my_client>(...);
//   auto rec = model::recorder::open(live, "run.jsonl").value();   // a client
//   ...                                                             // run with rec
//   auto rep = model::replay_client::open("run.jsonl").value();     // later: same answers
//
// A transcript is JSONL, one line per answered call (schema 1):
// {"v":1,"role":"worker","turn":3,"hash":"<16 hex>","request":{...},"response":{...}}
// `turn` counts the answered calls of one role from 0, in the order they
// were answered; `hash` is FNV-1a 64 of the request's JSON without its tags.
// Failed calls are not recorded. Matching by role and turn is deterministic
// when a role's calls are sequential; when many agents share a role and call
// at once, match by task and turn (each task's calls are sequential) or by
// request hash.
#pragma once

#include <agentcore/model/client.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace agentcore::model {

/// FNV-1a 64 of the request's JSON form without its tags, as 16 hex digits.
std::string request_hash(const request& r);

struct replay_options {
  enum class match {
    /// The n-th call of a role gets that role's n-th recorded answer, even if
    /// the request differs (prompts with timestamps, paths of a temp dir).
    role_and_turn,
    /// A call gets the answer recorded for the same request (same hash);
    /// the same request asked again gets the next answer recorded for it.
    request_hash,
    /// The n-th call of a role for one task (tags.task) gets the n-th answer
    /// recorded for that role and task, in transcript order: deterministic
    /// when many workers run at once, since each task's calls are sequential.
    task_and_turn,
  } by = match::role_and_turn;
};

/// Answers from a transcript. A request the transcript does not cover fails
/// with error::not_covered, naming the nearest recorded request and where it
/// differs. Safe to call from several threads.
class replay_client final : public client {
public:
  static result<std::unique_ptr<replay_client>> open(const std::filesystem::path& transcript, replay_options options = {});

  std::string name() const override;
  /// Recorded answers not given yet.
  std::size_t remaining() const;

  struct entry {
    std::string role;
    std::uint64_t turn = 0;
    std::string hash;
    request req;
    response resp;
    std::size_t line = 0;
  };

protected:
  void do_chat(request req, delta_handler on_delta, asio::any_completion_handler<chat_signature> handler) override;

private:
  replay_client(std::filesystem::path path, replay_options options, std::vector<entry> entries);
  result_type answer(const request& req);

  std::filesystem::path path_;
  replay_options options_;
  std::vector<entry> entries_;
  mutable std::mutex mutex_;
  std::map<std::string, std::uint64_t> next_turn_;                       // by role
  std::map<std::pair<std::string, std::uint64_t>, std::size_t> by_turn_;  // (role, turn) -> entry
  std::map<std::string, std::vector<std::size_t>> by_hash_;              // hash -> entries, in order
  std::map<std::string, std::size_t> hash_used_;
  std::map<std::pair<std::string, std::string>, std::vector<std::size_t>> by_task_;  // (role, task) -> entries
  std::map<std::pair<std::string, std::string>, std::size_t> task_used_;
  std::size_t given_ = 0;
};

/// Wraps a client and appends each answered call to a transcript. The file is
/// opened for appending (an existing transcript grows) and each line is
/// flushed when written.
class recorder final : public client {
public:
  static result<std::unique_ptr<recorder>> open(std::shared_ptr<client> inner, const std::filesystem::path& transcript);
  ~recorder() override;

  std::string name() const override;
  engine_kind engine() const override;

protected:
  void do_chat(request req, delta_handler on_delta, asio::any_completion_handler<chat_signature> handler) override;

private:
  struct state;
  explicit recorder(std::shared_ptr<state> s);
  std::shared_ptr<state> state_;
};

}  // namespace agentcore::model
