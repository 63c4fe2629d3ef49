// A swarm embedded in a host application, with the host's own model client:
// the configuration is code, hooks.client_for hands the swarm your client for
// each role, and run() blocks until the goal's checks pass on main.
#include <agentcore/git/repository.hpp>
#include <agentcore/runtime/swarm.hpp>

#include <fmt/format.h>

#include <cstdlib>

using namespace agentcore;
namespace asio = boost::asio;
namespace fs = std::filesystem;

// Your model goes here. This one plans three files and writes each one.
class host_model final : public model::client {
public:
  std::string name() const override { return "host-model"; }

protected:
  void do_chat(model::request req, model::delta_handler, asio::any_completion_handler<model::chat_signature> h) override {
    model::response r;
    r.model_name = name();
    r.usage = {200, 50};
    if (req.tags.role == "planner") {
      r.message = model::assistant(calls_++ == 0 ? R"({"tasks":[
          {"id":"one","title":"Add one.txt","description":"docs/one.txt"},
          {"id":"two","title":"Add two.txt","description":"docs/two.txt"},
          {"id":"three","title":"Add three.txt","description":"docs/three.txt"}]})"
                                                 : R"({"tasks":[]})");
    } else if (req.messages.size() == 1) {
      r.message.parts.push_back(model::tool_call{
          "1", "write_file", fmt::format(R"({{"path":"docs/{}.txt","content":"{}\n"}})", req.tags.task, req.tags.task)});
    } else {
      r.message.parts.push_back(model::tool_call{"2", "finish", R"({"summary":"done"})"});
    }
    complete(std::move(h), std::move(r));
  }

private:
  std::atomic<int> calls_{0};
};

int main() {
  fs::path dir = fs::temp_directory_path() / fmt::format("agentcore-swarm-example-{}", ::getpid());
  auto repo = git::repository::init(dir / "repo").value();
  auto tree = repo.edit_tree(std::nullopt, {{"README.md", git::tree_entry{repo.write_blob("# demo\n").value()}}}).value();
  auto root = repo.create_commit(tree, {}, "root", {"example", "example@agentcore.invalid"}).value();
  repo.advance("refs/heads/main", std::nullopt, root, "init").value();
  std::system(fmt::format("git -C '{}' symbolic-ref HEAD refs/heads/main", (dir / "repo").string()).c_str());

  runtime::swarm_config cfg{.repository = dir / "repo",
                            .goal = "docs/one.txt, docs/two.txt and docs/three.txt exist",
                            .goal_checks = {"test -f docs/one.txt && test -f docs/two.txt && test -f docs/three.txt"},
                            .worktrees = dir / "slots",
                            .slots = 4,
                            .workers = 2};
  cfg.contract.allowed_paths = {"docs/**"};
  auto model = std::make_shared<host_model>();
  auto swarm = runtime::swarm::create(cfg, {.client_for = [&](std::string_view) { return model; }}).value();
  auto report = swarm->run().value();
  fmt::print("{}: {} merged in {} cycle(s), {} tokens; {}\n", report.goal_met ? "goal met" : "not met", report.merged,
             report.cycles, report.usage.input_tokens + report.usage.output_tokens, report.reason);
  swarm.reset();
  fs::remove_all(dir);
  return report.goal_met ? 0 : 1;
}
