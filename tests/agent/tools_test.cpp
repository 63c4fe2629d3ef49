// The tool box against hostile input: every refusal is an answer the model
// can act on, nothing escapes the worktree or the contract, nothing crashes
// or hangs.
#include "agent/agent_fixture.hpp"

#include <agentcore/process/process.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <map>

using namespace agentcore;
using namespace std::chrono_literals;

namespace {

struct toolbox : test::agent_fixture {
  agent::workspace ws = open({.max_file_bytes = 64 * 1024});
  agent::tool_context ctx{.workspace = ws};
  std::map<std::string, std::shared_ptr<agent::tool>> tools;
  toolbox() {
    for (auto& t : agent::standard_tools({.answer_bytes = 8192, .command_timeout = 20s})) tools[t->name()] = t;
  }
  agent::tool_output run(const std::string& tool, const std::string& args) {
    return test::call(*tools.at(tool), ctx, args);
  }
  std::string args(json::object o) { return json::serialize(o); }
  // The refusal is an error answer that says `why`, and nothing outside changed.
  void refused(const agent::tool_output& out, std::string_view why) {
    CHECK_MESSAGE(out.is_error, out.content);
    CHECK_MESSAGE(out.content.find(why) != std::string::npos, out.content);
    CHECK(test::read_text(outside / "target.txt") == "outside, untouched\n");
    CHECK(std::filesystem::directory_iterator(outside) != std::filesystem::directory_iterator());
    std::size_t n = 0;
    for (auto& e : std::filesystem::directory_iterator(outside)) n += e.is_regular_file();
    CHECK(n == 1);  // nothing new appeared out there
  }
};

}  // namespace

TEST_CASE("agent.tools.hostile.dot_dot_and_absolute_paths") {
  toolbox b;
  b.refused(b.run("read_file", b.args({{"path", "../outside/target.txt"}})), "refused");
  b.refused(b.run("read_file", b.args({{"path", "/etc/passwd"}})), "refused");
  b.refused(b.run("read_file", b.args({{"path", "src/../../outside/target.txt"}})), "refused");
  b.refused(b.run("write_file", b.args({{"path", "../outside/new.txt"}, {"content", "x"}})), "refused");
  b.refused(b.run("write_file", b.args({{"path", (b.outside / "abs.txt").string()}, {"content", "x"}})), "refused");
  b.refused(b.run("write_file", b.args({{"path", "src/./x.txt"}, {"content", "x"}})), "refused");
  b.refused(b.run("list_files", b.args({{"path", "../"}})), "refused");
  b.refused(b.run("edit_file", b.args({{"path", "../outside/target.txt"}, {"old_text", "outside"}, {"new_text", "x"}})),
            "refused");
  b.refused(b.run("search", b.args({{"pattern", "untouched"}, {"path", ".."}})), "refused");
  // The worktree's own absolute path is just a long way of saying a relative one.
  auto ok = b.run("write_file", b.args({{"path", (b.wt / "src/new.txt").string()}, {"content", "hello\n"}}));
  CHECK_MESSAGE(!ok.is_error, ok.content);
  CHECK(test::read_text(b.wt / "src/new.txt") == "hello\n");
}

TEST_CASE("agent.tools.hostile.control_characters_and_empty_paths") {
  toolbox b;
  b.refused(b.run("write_file", b.args({{"path", "src/a\nb.txt"}, {"content", "x"}})), "refused");
  b.refused(b.run("write_file", b.args({{"path", std::string("src/a\0b", 7)}, {"content", "x"}})), "refused");
  b.refused(b.run("write_file", b.args({{"path", "src\\evil.txt"}, {"content", "x"}})), "refused");
  b.refused(b.run("write_file", b.args({{"path", ""}, {"content", "x"}})), "file path is needed");
  b.refused(b.run("write_file", b.args({{"path", "src"}, {"content", "x"}})), "is a directory");
  b.refused(b.run("write_file", b.args({{"path", "src/main.cpp/inner.txt"}, {"content", "x"}})), "is a file");
}

TEST_CASE("agent.tools.hostile.symlink_made_by_the_model_then_written_through") {
  toolbox b;
  // The model makes links with a command, then tries to write through them.
  auto made = b.run("run_command",
                    b.args({{"command", "ln -s " + b.outside.string() + " src/out_dir && ln -s " +
                                            (b.outside / "target.txt").string() + " src/out_file && ln -s ../.. src/up"}}));
  CHECK_MESSAGE(!made.is_error, made.content);
  REQUIRE(std::filesystem::is_symlink(b.wt / "src/out_dir"));
  b.refused(b.run("write_file", b.args({{"path", "src/out_dir/new.txt"}, {"content", "x"}})), "symbolic link");
  b.refused(b.run("write_file", b.args({{"path", "src/out_file"}, {"content", "x"}})), "symbolic link");
  b.refused(b.run("write_file", b.args({{"path", "src/up/outside/new.txt"}, {"content", "x"}})), "symbolic link");
  b.refused(b.run("edit_file", b.args({{"path", "src/out_file"}, {"old_text", "outside"}, {"new_text", "inside"}})),
            "symbolic link");
  // Reading through a link that leads out is refused too.
  b.refused(b.run("read_file", b.args({{"path", "src/out_file"}})), "symbolic link");
  b.refused(b.run("read_file", b.args({{"path", "src/out_dir/target.txt"}})), "symbolic link");
  b.refused(b.run("list_files", b.args({{"path", "src/out_dir"}})), "symbolic link");
  // Links are listed, never followed.
  auto listed = b.run("list_files", b.args({}));
  CHECK(listed.content.find("src/out_dir (symbolic link)") != std::string::npos);
  CHECK(listed.content.find("target.txt") == std::string::npos);
  // A link that stays inside the worktree reads fine.
  std::filesystem::create_symlink("main.cpp", b.wt / "src/alias.cpp");
  auto alias = b.run("read_file", b.args({{"path", "src/alias.cpp"}}));
  CHECK_MESSAGE(!alias.is_error, alias.content);
  CHECK(alias.content.find("int main()") != std::string::npos);
}

TEST_CASE("agent.tools.hostile.hard_link_is_replaced_not_written_through") {
  toolbox b;
  std::filesystem::create_hard_link(b.outside / "target.txt", b.wt / "src/hard.txt");
  auto w = b.run("write_file", b.args({{"path", "src/hard.txt"}, {"content", "new content\n"}}));
  CHECK_MESSAGE(!w.is_error, w.content);
  CHECK(test::read_text(b.wt / "src/hard.txt") == "new content\n");
  CHECK(test::read_text(b.outside / "target.txt") == "outside, untouched\n");
}

TEST_CASE("agent.tools.hostile.writes_into_git") {
  toolbox b;
  b.refused(b.run("write_file", b.args({{"path", ".git/config"}, {"content", "[core]\n"}})), ".git");
  b.refused(b.run("write_file", b.args({{"path", ".git"}, {"content", "gitdir: /etc\n"}})), ".git");
  b.refused(b.run("write_file", b.args({{"path", ".GIT/hooks/pre-commit"}, {"content", "rm -rf /\n"}})), ".git");
  b.refused(b.run("write_file", b.args({{"path", "src/.git/hooks/post-checkout"}, {"content", "x"}})), ".git");
  b.refused(b.run("edit_file", b.args({{"path", ".git/HEAD"}, {"old_text", "ref"}, {"new_text", "x"}})), ".git");
  CHECK_FALSE(std::filesystem::exists(b.wt / ".git/hooks/pre-commit"));
  CHECK_FALSE(std::filesystem::exists(b.wt / "src/.git"));
}

TEST_CASE("agent.tools.hostile.contract_globs") {
  toolbox b;
  b.refused(b.run("write_file", b.args({{"path", "src/secret/key.txt"}, {"content", "x"}})), "contract");
  b.refused(b.run("write_file", b.args({{"path", "README.md"}, {"content", "x"}})), "contract");
  b.refused(b.run("write_file", b.args({{"path", ".ci/run"}, {"content", "x"}})), "contract");
  b.refused(b.run("edit_file", b.args({{"path", "README.md"}, {"old_text", "demo"}, {"new_text", "x"}})), "contract");
  CHECK(test::read_text(b.wt / "README.md") == "# demo\n");
  CHECK_FALSE(std::filesystem::exists(b.wt / "src/secret"));
  auto ok = b.run("write_file", b.args({{"path", "docs/new/deep/notes.md"}, {"content", "fine\n"}}));
  CHECK_MESSAGE(!ok.is_error, ok.content);
  CHECK(b.ws.written() == std::vector<std::string>{"docs/new/deep/notes.md"});
}

TEST_CASE("agent.tools.hostile.huge_and_binary_content") {
  toolbox b;
  std::string huge(100 * 1024, 'x');
  b.refused(b.run("write_file", b.args({{"path", "src/huge.txt"}, {"content", huge}})), "limit");
  CHECK_FALSE(std::filesystem::exists(b.wt / "src/huge.txt"));
  test::write_text(b.wt / "src/big.txt", huge);
  b.refused(b.run("read_file", b.args({{"path", "src/big.txt"}})), "limit");
  b.refused(b.run("write_file", b.args({{"path", "src/blob.bin"}, {"content", std::string("ab\0cd", 5)}})), "binary");
  test::write_text(b.wt / "src/image.png", std::string("\x89PNG\0\0\0\x0d", 8));
  auto shown = b.run("read_file", b.args({{"path", "src/image.png"}}));
  CHECK_FALSE(shown.is_error);
  CHECK(shown.content.find("binary") != std::string::npos);
  CHECK(shown.content.find('\0') == std::string::npos);
  b.refused(b.run("edit_file", b.args({{"path", "src/image.png"}, {"old_text", "PNG"}, {"new_text", "GIF"}})), "binary");
  // A very long line is cut in the answer, not sent whole.
  std::string long_text(50000, 'y');
  long_text += "\nend\n";
  test::write_text(b.wt / "src/long.txt", long_text);
  auto long_line = b.run("read_file", b.args({{"path", "src/long.txt"}}));
  CHECK(long_line.content.size() < 5000);
  CHECK(long_line.content.find("line cut") != std::string::npos);
}

TEST_CASE("agent.tools.hostile.fifo_and_devices_do_not_hang") {
  toolbox b;
  REQUIRE(::mkfifo((b.wt / "src/pipe").c_str(), 0644) == 0);
  auto t0 = std::chrono::steady_clock::now();
  b.refused(b.run("read_file", b.args({{"path", "src/pipe"}})), "not a regular file");
  b.refused(b.run("write_file", b.args({{"path", "src/pipe"}, {"content", "x"}})), "not a regular file");
  auto found = b.run("search", b.args({{"pattern", "anything"}}));  // search skips it
  CHECK_FALSE(found.is_error);
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
}

TEST_CASE("agent.tools.hostile.arguments_missing_or_mistyped") {
  toolbox b;
  b.refused(b.run("write_file", R"({"path":"src/a.txt"})"), "'content' is missing");
  b.refused(b.run("write_file", R"({"path":42,"content":"x"})"), "'path' must be a string");
  b.refused(b.run("read_file", R"({"path":"src/main.cpp","start_line":"three"})"), "'start_line' must be an integer");
  b.refused(b.run("read_file", R"({"path":"src/main.cpp","start_line":5,"end_line":2})"), "start_line");
  b.refused(b.run("read_file", R"({"path":"src/main.cpp","start_line":99})"), "past the end");
  b.refused(b.run("edit_file", R"({"path":"src/main.cpp","old_text":"","new_text":"x"})"), "write_file");
  b.refused(b.run("run_command", R"({"command":""})"), "empty");
  b.refused(b.run("run_command", R"({"command":"true","timeout_seconds":-5})"), "positive");
  b.refused(b.run("finish", R"({})"), "'summary' is missing");
  b.refused(b.run("list_files", R"({"recursive":"sometimes"})"), "true or false");
  // Quoted numbers are what models often send: accepted.
  auto ok = b.run("read_file", R"({"path":"src/main.cpp","start_line":"2","end_line":2})");
  CHECK_MESSAGE(!ok.is_error, ok.content);
  CHECK(ok.content == "     2\t  return 0;\n");
}

TEST_CASE("agent.tools.edit_file_missing_ambiguous_and_exact") {
  toolbox b;
  b.refused(b.run("edit_file", b.args({{"path", "src/main.cpp"}, {"old_text", "return 1;"}, {"new_text", "x"}})),
            "not in 'src/main.cpp'");
  auto indent = b.run("edit_file", b.args({{"path", "src/main.cpp"}, {"old_text", "return 0;\n}\n    "}, {"new_text", "x"}}));
  CHECK(indent.is_error);
  CHECK(indent.content.find("line 2") != std::string::npos);  // where its first line is
  test::write_text(b.wt / "src/dup.cpp", "a();\nb();\na();\n");
  b.refused(b.run("edit_file", b.args({{"path", "src/dup.cpp"}, {"old_text", "a();"}, {"new_text", "c();"}})),
            "2 times (at lines 1, 3)");
  CHECK(test::read_text(b.wt / "src/dup.cpp") == "a();\nb();\na();\n");
  auto all = b.run("edit_file",
                   b.args({{"path", "src/dup.cpp"}, {"old_text", "a();"}, {"new_text", "c();"}, {"replace_all", true}}));
  CHECK_MESSAGE(!all.is_error, all.content);
  CHECK(test::read_text(b.wt / "src/dup.cpp") == "c();\nb();\nc();\n");
  auto one = b.run("edit_file", b.args({{"path", "src/main.cpp"}, {"old_text", "return 0;"}, {"new_text", "return 7;"}}));
  CHECK_MESSAGE(!one.is_error, one.content);
  CHECK(test::read_text(b.wt / "src/main.cpp") == "int main() {\n  return 7;\n}\n");
  // The file's mode survives an edit.
  ::chmod((b.wt / "src/dup.cpp").c_str(), 0755);
  b.run("edit_file", b.args({{"path", "src/dup.cpp"}, {"old_text", "b();"}, {"new_text", "d();"}}));
  struct stat st{};
  ::stat((b.wt / "src/dup.cpp").c_str(), &st);
  CHECK((st.st_mode & 0777) == 0755);
}

TEST_CASE("agent.tools.list_and_search_honour_gitignore") {
  toolbox b;
  auto listed = b.run("list_files", b.args({}));
  CHECK_FALSE(listed.is_error);
  CHECK(listed.content.find("src/main.cpp\n") != std::string::npos);
  CHECK(listed.content.find("README.md\n") != std::string::npos);
  CHECK(listed.content.find("build/") == std::string::npos);
  CHECK(listed.content.find("main.o") == std::string::npos);
  CHECK(listed.content.find(".git/") == std::string::npos);
  auto top = b.run("list_files", b.args({{"recursive", false}}));
  CHECK(top.content.find("src/\n") != std::string::npos);
  CHECK(top.content.find("src/main.cpp") == std::string::npos);
  auto found = b.run("search", b.args({{"pattern", "ignored|twice"}}));
  CHECK_FALSE(found.is_error);
  CHECK(found.content == "src/util.hpp:2: int twice(int x) { return 2 * x; }\n");
  auto globbed = b.run("search", b.args({{"pattern", "int"}, {"glob", "**/*.cpp"}}));
  CHECK(globbed.content == "src/main.cpp:1: int main() {\n");
  auto icase = b.run("search", b.args({{"pattern", "DEMO"}, {"case_insensitive", true}}));
  CHECK(icase.content == "README.md:1: # demo\n");
  auto one_file = b.run("search", b.args({{"pattern", "return"}, {"path", "src/main.cpp"}}));
  CHECK(one_file.content == "src/main.cpp:2:   return 0;\n");
  auto none = b.run("search", b.args({{"pattern", "nowhere-to-be-found"}}));
  CHECK(none.content.find("no match") != std::string::npos);
}

TEST_CASE("agent.tools.hostile.regular_expressions") {
  toolbox b;
  b.refused(b.run("search", b.args({{"pattern", "(unclosed"}})), "not a valid regular expression");
  b.refused(b.run("search", b.args({{"pattern", ""}})), "empty");
  // Catastrophic backtracking: bounded by Boost.Regex, answered, not a crash or a hang.
  std::string evil(30000, 'a');
  evil += "!\n";
  test::write_text(b.wt / "src/evil.txt", evil);
  auto t0 = std::chrono::steady_clock::now();
  auto out = b.run("search", b.args({{"pattern", "(a|aa)+$"}, {"path", "src/evil.txt"}}));
  CHECK(std::chrono::steady_clock::now() - t0 < 30s);
  if (out.is_error) CHECK(out.content.find("too costly") != std::string::npos);
  else CHECK(out.content.find("no match") != std::string::npos);
}

TEST_CASE("agent.tools.hostile.commands_never_ending_flooding_and_prying") {
  toolbox b;
  auto t0 = std::chrono::steady_clock::now();
  auto forever = b.run("run_command", b.args({{"command", "sleep 1000"}, {"timeout_seconds", 1}}));
  CHECK(forever.is_error);
  CHECK(forever.content.find("timed out") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);

  auto flood = b.run("run_command", b.args({{"command", "yes 'flood flood flood' | head -c 50000000; echo END"}}));
  CHECK(flood.content.size() < 8192 + 512);
  CHECK(flood.content.find("elided") != std::string::npos);
  CHECK(flood.content.find("END") != std::string::npos);

  ::setenv("OPENAI_API_KEY", "sk-agent-must-never-see-this", 1);
  ::setenv("ANTHROPIC_API_KEY", "sk-ant-never-either", 1);
  auto env = b.run("run_command", b.args({{"command", "env; cat /proc/self/environ | tr '\\0' '\\n'"}}));
  ::unsetenv("OPENAI_API_KEY");
  ::unsetenv("ANTHROPIC_API_KEY");
  CHECK_FALSE(env.is_error);
  CHECK(env.content.find("PATH=") != std::string::npos);
  CHECK(env.content.find("sk-agent-must-never-see-this") == std::string::npos);
  CHECK(env.content.find("sk-ant-never-either") == std::string::npos);

  // With the sandbox, a command cannot write outside the worktree either.
  auto escape = b.run("run_command", b.args({{"command", "echo pwned > " + (b.outside / "target.txt").string()}}));
  if (process::probe_sandbox().available) {
    CHECK(escape.is_error);
    CHECK(test::read_text(b.outside / "target.txt") == "outside, untouched\n");
  }

  // Past the time box, no command starts.
  b.ctx.deadline = std::chrono::steady_clock::now() - 1s;
  b.refused(b.run("run_command", b.args({{"command", "true"}})), "time box is spent");
}

TEST_CASE("agent.tools.commands_that_change_files_count_as_progress") {
  toolbox b;
  auto before = b.ws.changes();
  b.run("run_command", b.args({{"command", "cat src/main.cpp"}}));
  CHECK(b.ws.changes() == before);
  b.run("run_command", b.args({{"command", "echo '// more' >> src/main.cpp"}}));
  CHECK(b.ws.changes() == before + 1);
  // Changes in ignored build output are not progress.
  b.run("run_command", b.args({{"command", "echo again >> build/out.txt"}}));
  CHECK(b.ws.changes() == before + 1);
}

TEST_CASE("agent.tools.host_tool_exceptions_become_answers") {
  toolbox b;
  auto thrower = agent::make_tool({.name = "explode", .description = "throws", .parameters = {{"type", "object"}}},
                                  [](const json::object&, agent::tool_context&) -> agent::tool_output {
                                    throw std::runtime_error("kaboom");
                                  });
  auto out = test::call(*thrower, b.ctx, "{}");
  CHECK(out.is_error);
  CHECK(out.content == "the tool 'explode' failed: kaboom");
}
