// A planner and a worker driven by hand, without the runtime: the planner
// proposes tasks from a snapshot of the repository, a worker claims one, works
// it in a worktree through the agent loop, and submits it to the merge gate,
// whose queue runs on a thread of its own here.
#include <agentcore/gate/merge_gate.hpp>
#include <agentcore/git/repository.hpp>
#include <agentcore/roles/planner.hpp>
#include <agentcore/roles/worker.hpp>
#include <agentcore/store/memory_store.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>

#include <cstdlib>
#include <thread>

using namespace agentcore;
namespace asio = boost::asio;
namespace fs = std::filesystem;

// Stands in for your models: the planner asks for one file, the worker writes it.
class rule_model final : public model::client {
public:
  std::string name() const override { return "rules"; }

protected:
  void do_chat(model::request req, model::delta_handler, asio::any_completion_handler<model::chat_signature> h) override {
    model::response r;
    if (req.tags.role == "planner") {
      r.message = model::assistant(R"({"tasks":[{"id":"greeting","title":"Add a greeting",
        "description":"Write docs/hello.md","contract":{"allowed_paths":["docs/**"]}}]})");
    } else if (req.messages.size() == 1) {
      r.message.parts.push_back(model::tool_call{"1", "write_file", R"({"path":"docs/hello.md","content":"# Hello\n"})"});
    } else {
      r.message.parts.push_back(model::tool_call{"2", "finish", R"({"summary":"wrote docs/hello.md"})"});
    }
    complete(std::move(h), std::move(r));
  }
};

int main() {
  fs::path dir = fs::temp_directory_path() / fmt::format("agentcore-by-hand-{}", ::getpid());
  auto repo = git::repository::init(dir / "repo").value();
  auto tree = repo.edit_tree(std::nullopt, {{"README.md", git::tree_entry{repo.write_blob("# demo\n").value()}}}).value();
  auto root = repo.create_commit(tree, {}, "root", {"example", "example@agentcore.invalid"}).value();
  repo.advance("refs/heads/main", std::nullopt, root, "init").value();
  std::system(fmt::format("git -C '{}' symbolic-ref HEAD refs/heads/main", (dir / "repo").string()).c_str());

  auto store = store::memory_store::create();
  board::task_board board(*store);
  auto pool = git::worktree_pool::open(dir / "repo", {.root = dir / "slots", .slots = 2}).value();
  auto gate = gate::merge_gate::open(dir / "repo", *store, *pool, {.board = &board}).value();
  rule_model model;
  asio::io_context io;
  asio::thread_pool blocking(2);  // libgit2, the store and commands run here, not on io

  std::atomic<bool> done{false};
  std::thread gate_runner([&] {
    while (!done) {
      (void)gate->run_until_empty();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });

  roles::planner planner(board, dir / "repo", model, {.goal = "Greet the reader", .executor = io.get_executor()});
  roles::worker worker(board, *store, dir / "repo", *pool, *gate, model,
                       {.id = worker_id{"w1"}, .loop = {.executor = io.get_executor(), .blocking = blocking.get_executor()}});
  bool merged = false;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto plan = co_await planner.async_plan(asio::use_awaitable);
    fmt::print("planner proposed {} task(s)\n", plan.value().proposed.size());
    auto work = co_await worker.async_run_one(asio::use_awaitable);
    fmt::print("worker: {} {} ({} turns)\n", roles::to_string(work.value().result), work.value().task->str(),
               work.value().turns);
    merged = work.value().result == roles::work_result::merged;
  }, [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
  io.run();
  done = true;
  gate_runner.join();
  auto main_tree = repo.commit_tree(repo.resolve("refs/heads/main").value()).value();
  fmt::print("main has docs/hello.md: {}\n", repo.entry_at(main_tree, "docs/hello.md").value().has_value());
  gate.reset();
  pool.reset();
  fs::remove_all(dir);
  return merged ? 0 : 1;
}
