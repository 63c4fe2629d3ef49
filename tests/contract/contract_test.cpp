#include <agentcore/contract/ceiling.hpp>
#include <agentcore/contract/contract.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

using namespace agentcore;
using namespace agentcore::contract;

namespace {
file_change changed(std::string path, std::size_t add = 1, std::size_t del = 0) {
  return {.path = std::move(path), .status = change_status::modified, .old_mode = 0100644, .new_mode = 0100644,
          .additions = add, .deletions = del};
}
std::vector<std::string> rules(const verdict& v) {
  std::vector<std::string> out;
  for (const auto& x : v.violations) out.push_back(x.rule + " " + x.path);
  return out;
}
}  // namespace

TEST_CASE("contract.check.a_change_within_its_contract_passes") {
  task_contract c{.allowed_paths = {"src/lexer/**", "tests/**"}, .max_files = 3, .max_changed_lines = 100};
  diff d{{changed("src/lexer/lex.cpp", 30, 5), changed("tests/lexer_test.cpp", 20)}};
  auto v = check(c, d).value();
  CHECK(v.ok());
  CHECK(v.summary() == "the change keeps its contract");
}

TEST_CASE("contract.check.lists_every_violation_with_path_and_rule") {
  task_contract c{.allowed_paths = {"src/**"},
             .forbidden_paths = {".ci/**", "src/generated/**"},
             .max_files = 3,
             .max_changed_lines = 50,
             .binary_allowed = false};
  file_change bin = changed("src/logo.png", 0, 0);
  bin.binary = true;
  file_change renamed{.path = "src/new.cpp", .old_path = "lib/old.cpp", .status = change_status::renamed};
  diff d{{changed("src/ok.cpp", 40), changed(".ci/run"), changed("src/generated/x.cpp"), changed("docs/a.md", 20),
          bin, renamed}};
  auto v = check(c, d).value();
  CHECK_FALSE(v.ok());
  CHECK(rules(v) == std::vector<std::string>{
                        "path_forbidden .ci/run",
                        "path_forbidden src/generated/x.cpp",
                        "path_not_allowed docs/a.md",
                        "binary src/logo.png",
                        "path_not_allowed lib/old.cpp",  // a rename removes its old path too
                        "max_files ",
                        "max_changed_lines ",
                    });
  CHECK(v.violations[0].detail.find("'.ci/**'") != std::string::npos);
  CHECK(v.violations[2].detail.find("src/**") != std::string::npos);
  CHECK(v.violations[5].detail.find("6 files") != std::string::npos);
  CHECK(v.violations[6].detail.find("62 lines") != std::string::npos);
  CHECK(v.summary().find("path_not_allowed docs/a.md") != std::string::npos);
}

TEST_CASE("contract.check.hostile_paths_are_refused") {
  task_contract c{.protected_paths = {}};  // anywhere not forbidden
  auto cc = compiled_contract::compile(c).value();
  struct hostile {
    std::string path;
    const char* rule;
  };
  hostile cases[] = {
      {"../x", "path_invalid"},
      {"a/../../b", "path_invalid"},
      {"/etc/passwd", "path_invalid"},
      {"./a", "path_invalid"},
      {"a//b", "path_invalid"},
      {"a\\b", "path_invalid"},
      {".git/config", "path_forbidden"},
      {".git/hooks/pre-commit", "path_forbidden"},
      {"sub/.git/config", "path_forbidden"},        // a nested repository's .git
      {".GIT/config", "path_forbidden"},            // case-insensitive file systems
      {".g\u200cit/config", "path_forbidden"},      // HFS+ ignores U+200C
      {"\xef\xbb\xbf.git/config", "path_forbidden"},  // U+FEFF
      {".git./config", "path_forbidden"},           // NTFS drops trailing dots
      {"git~1/config", "path_forbidden"},           // NTFS short name
      {"bad\xff\xfe.txt", "path_invalid"},          // not UTF-8
      {"ov\xc0\xaf" "er", "path_invalid"},             // overlong '/'
  };
  for (const auto& h : cases) {
    CAPTURE(h.path);
    CHECK_FALSE(cc.may_write(h.path).empty());
    auto v = cc.check(diff{{changed(h.path)}});
    REQUIRE(v.violations.size() == 1);
    CHECK(v.violations[0].rule == h.rule);
  }
  // Look-alikes that are really other names are fine.
  CHECK(cc.may_write("docs/\xd0\xb0.md").empty());  // Cyrillic a
  CHECK(cc.may_write(".github/workflows/x.yml").empty());
  CHECK(cc.may_write(".gitignore").empty());
}

TEST_CASE("contract.check.may_write_answers_the_tool_box") {
  auto cc = compiled_contract::compile({.allowed_paths = {"src/**"}, .forbidden_paths = {"src/vendor/**"}}).value();
  CHECK(cc.may_write("src/a.cpp").empty());
  CHECK(cc.may_write("src/vendor/z.h").find("forbidden path 'src/vendor/**'") != std::string::npos);
  CHECK(cc.may_write("README.md").find("outside the allowed paths (src/**)") != std::string::npos);
  auto bad = compiled_contract::compile({.allowed_paths = {"src/[oops"}});
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message().find("allowed_paths") != std::string::npos);
}

TEST_CASE("contract.json.round_trip_and_errors") {
  task_contract c{.goal = "Fix the lexer",
             .acceptance_criteria = {"nested comments lex"},
             .acceptance_checks = {"ctest -R lexer"},
             .allowed_paths = {"src/lexer/**"},
             .forbidden_paths = {".ci/**"},
             .max_files = 5,
             .max_changed_lines = 200,
             .binary_allowed = true,
             .time = {std::chrono::seconds(1800), 60, 2'000'000, 4.5}};
  auto v = to_json_value(c);
  CHECK(v.as_object().at("schema").as_int64() == 1);
  auto back = contract_from_json(v);
  REQUIRE_MESSAGE(back.has_value(), back.error().message());
  CHECK(*back == c);

  auto minimal = contract_from_json(parse_json(R"({"schema":1})").value());
  REQUIRE(minimal.has_value());
  CHECK(minimal->allowed_paths.empty());

  struct bad_case {
    const char* json;
    const char* mentions;
  };
  bad_case cases[] = {
      {R"({"goal":"x"})", "\"schema\""},
      {R"({"schema":2})", "schema 2"},
      {R"({"schema":1,"max_files":"ten"})", "\"max_files\""},
      {R"({"schema":1,"allowed_paths":["src/[x"]})", "unclosed"},
      {R"({"schema":1,"time_box":{"tokens":-1}})", ">= 0"},
      {R"([])", "object"},
  };
  for (const auto& b : cases) {
    CAPTURE(b.json);
    auto r = contract_from_json(parse_json(b.json).value());
    REQUIRE_FALSE(r.has_value());
    CHECK_MESSAGE(r.error().message().find(b.mentions) != std::string::npos, r.error().message());
  }
}

// --- Issue 14: what an untrusted agent or planner tries, and what stops it ---

namespace {
file_change added(std::string path, std::uint32_t mode = mode_file, std::string target = {}, std::uint64_t bytes = 10) {
  file_change f{.path = std::move(path), .status = change_status::added, .new_mode = mode, .additions = 1};
  f.link_target = std::move(target);
  f.added_bytes = mode == mode_gitlink ? 0 : bytes;
  return f;
}
file_change with(file_change f, change_status s, std::uint32_t old_mode, std::uint32_t new_mode) {
  f.status = s;
  f.old_mode = old_mode;
  f.new_mode = new_mode;
  return f;
}
// The one violation a single-file change gets, as "rule detail".
violation only(const task_contract& c, const file_change& f) {
  auto v = check(c, diff{{f}}).value();
  REQUIRE_MESSAGE(v.violations.size() == 1, v.summary());
  return v.violations[0];
}
bool has(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }
}  // namespace

TEST_CASE("contract.compile.refuses_globs_that_leave_the_repository_or_name_git") {
  const char* hostile[] = {"../**",         "src/../../etc/**", "/etc/**",    "/",          "C:/Windows/**",
                           ".git/**",       ".git/hooks/*",     "sub/.git/config", ".GIT/**", "[.]git/**",
                           ".gi?/config",   "./src/**",         "src/\\.\\./x", "git~1/**", ".git./hooks/**"};
  for (const char* g : hostile) {
    CAPTURE(g);
    CHECK_FALSE(check_contract_glob(g).empty());
    auto a = compiled_contract::compile({.allowed_paths = {g}});
    REQUIRE_FALSE(a.has_value());
    CHECK(has(a.error().message(), "allowed_paths"));
    CHECK(has(a.error().message(), g));
    auto p = compiled_contract::compile({.protected_paths = {g}});
    REQUIRE_FALSE(p.has_value());
    CHECK(has(p.error().message(), "protected_paths"));
    auto f = compiled_contract::compile({.forbidden_paths = {g}});
    if (std::string_view(g) == ".git/**") CHECK(f.has_value());  // what the library adds itself
    else CHECK_FALSE(f.has_value());
  }
  CHECK(has(check_contract_glob("/etc/**"), "absolute"));
  CHECK(has(check_contract_glob("../**"), "'..'"));
  CHECK(has(check_contract_glob(".git/**"), ".git"));
  for (const char* fine : {"**", "src/**", ".github/**", ".gitignore", "**/*.md", ".*", "*/docs", "src/*.git"}) {
    CAPTURE(fine);
    CHECK(check_contract_glob(fine).empty());
  }
  // A stored or proposed contract with such a glob does not even read.
  auto j = contract_from_json(parse_json(R"({"schema":1,"allowed_paths":["../**"]})").value());
  REQUIRE_FALSE(j.has_value());
  CHECK(has(j.error().message(), "'..'"));
}

TEST_CASE("contract.check.link_attacks_are_refused") {
  task_contract inside{.links = link_policy::inside};
  struct attack {
    file_change f;
    const char* says;
  };
  attack attacks[] = {
      {added("src/passwd", mode_link, "/etc/passwd"), "absolute path '/etc/passwd'"},
      {added("src/up", mode_link, "../../outside"), "leaves the repository"},
      {added("a/b/c", mode_link, "../../../x"), "leaves the repository"},
      {added("src/x", mode_link, "y/../../../../etc/shadow"), "leaves the repository"},
      {added("hooks", mode_link, ".git/hooks"), ".git directory"},
      {added("src/h", mode_link, "../.git/hooks/pre-commit"), ".git directory"},
      {added("src/h2", mode_link, "../.GIT/config"), ".git directory"},
      {added("win", mode_link, "C:/Windows/System32"), "absolute path"},
      {added("bs", mode_link, "..\\..\\x"), "backslash"},
      {added("self", mode_link, "."), "root itself"},
      {added("empty", mode_link, ""), "empty target"},
      {added("long", mode_link, std::string(5000, 'a')), "longer than 4096"},
      // An existing link turned to point out, and a file turned into such a link.
      {with(added("docs/latest", mode_link, "/home"), change_status::modified, mode_link, mode_link), "absolute"},
      {with(added("README", mode_link, "../../../root/.ssh/id_rsa"), change_status::type_changed, mode_file, mode_link),
       "leaves the repository"},
  };
  for (const auto& a : attacks) {
    CAPTURE(a.f.path);
    for (auto policy : {link_policy::none, link_policy::inside}) {
      task_contract c{.links = policy};
      auto v = only(c, a.f);
      CHECK(v.rule == "link_target");  // the specific reason, whatever the policy
      CHECK_MESSAGE(has(v.detail, a.says), v.detail);
    }
  }
  // Links that stay inside: fine when the contract allows links, refused when it allows none.
  for (auto f : {added("docs/latest", mode_link, "v2/index.md"), added("src/alias.cpp", mode_link, "main.cpp"),
                 added("a/b", mode_link, "../c"), added("a/b/c", mode_link, "./../../d/./e")}) {
    CAPTURE(f.path);
    CHECK(check(inside, diff{{f}}).value().ok());
    auto v = only(task_contract{}, f);
    CHECK(v.rule == "link");
    CHECK(has(v.detail, f.link_target));
  }
  // "any" lets targets leave the repository, never into .git.
  task_contract any{.links = link_policy::any};
  CHECK(check(any, diff{{added("p", mode_link, "/etc/passwd")}}).value().ok());
  CHECK(check(any, diff{{added("src/up", mode_link, "../../outside")}}).value().ok());
  CHECK(only(any, added("h", mode_link, ".git/hooks")).rule == "link_target");
  // Removing a link carries no danger.
  file_change gone{.path = "src/up", .status = change_status::deleted, .old_mode = mode_link, .new_mode = 0};
  CHECK(check(task_contract{}, diff{{gone}}).value().ok());
}

TEST_CASE("contract.check.submodule_attacks_are_refused") {
  task_contract c{};
  file_change gitmodules{.path = ".gitmodules", .status = change_status::modified, .old_mode = mode_file,
                         .new_mode = mode_file, .additions = 3};
  struct attack {
    file_change f;
    const char* rule;
  };
  attack attacks[] = {
      {added("vendor/lib", mode_gitlink), "gitlink"},
      {with(added("vendor/lib", mode_gitlink), change_status::modified, mode_gitlink, mode_gitlink), "gitlink"},
      {with(added("src/util", mode_gitlink), change_status::type_changed, mode_file, mode_gitlink), "gitlink"},
      {gitmodules, "gitmodules"},
      {added(".gitmodules"), "gitmodules"},
      {added(".GITMODULES"), "gitmodules"},       // what a case-insensitive checkout reads
      {added(".gitmodules. "), "gitmodules"},     // NTFS drops trailing dots and spaces
      {added("GITMOD~1"), "gitmodules"},          // NTFS short name
      {added("lib/.gitmodules"), "gitmodules"},
      {with(gitmodules, change_status::deleted, mode_file, 0), "gitmodules"},
  };
  for (const auto& a : attacks) {
    CAPTURE(a.f.path);
    auto v = only(c, a.f);
    CHECK(v.rule == a.rule);
    CHECK(has(v.detail, "submodule"));
  }
  CHECK_FALSE(compiled_contract::compile(c).value().may_write(".gitmodules").empty());  // the tool box says no too
  // A host that allows submodules gets them (.gitmodules stays protected unless it says so too).
  task_contract allowed{.protected_allowed = true, .submodules_allowed = true};
  for (const auto& a : attacks) {
    CAPTURE(a.f.path);
    CHECK(check(allowed, diff{{a.f}}).value().ok());
  }
  // Taking a submodule out is fine.
  file_change gone{.path = "vendor/lib", .status = change_status::deleted, .old_mode = mode_gitlink, .new_mode = 0};
  CHECK(check(c, diff{{gone}}).value().ok());
}

TEST_CASE("contract.check.mode_attacks_are_refused") {
  task_contract c{};
  file_change edit = changed("tools/run");
  std::pair<file_change, const char*> attacks[] = {
      {added("tools/payload", mode_executable), "made executable"},
      {with(edit, change_status::modified, mode_file, mode_executable), "made executable"},
      {with(edit, change_status::type_changed, mode_link, mode_executable), "made executable"},
      {with(file_change{.path = "bin/x", .old_path = "docs/x.txt"}, change_status::renamed, mode_file, mode_executable),
       "made executable"},
      {with(file_change{.path = "bin/y", .old_path = "bin/x"}, change_status::copied, mode_executable, mode_executable),
       "made executable"},
      {added("odd", 0100664), "not a mode git writes"},
      {added("setuid", 0104755), "not a mode git writes"},
      {added("world", 0100777), "not a mode git writes"},
      {added("dir", 0040000), "not a mode git writes"},
  };
  for (const auto& [f, says] : attacks) {
    CAPTURE(f.path);
    auto v = only(c, f);
    CHECK(v.rule == "mode");
    CHECK_MESSAGE(has(v.detail, says), v.detail);
  }
  // Editing, moving or removing what is executable already is fine.
  CHECK(check(c, diff{{with(edit, change_status::modified, mode_executable, mode_executable)}}).value().ok());
  CHECK(check(c, diff{{with(edit, change_status::deleted, mode_executable, 0)}}).value().ok());
  CHECK(check(c, diff{{with(file_change{.path = "b/run", .old_path = "a/run"}, change_status::renamed, mode_executable,
                            mode_executable)}})
            .value()
            .ok());
  // A contract that allows executables gets them, never a mode git does not write.
  task_contract exec{.executable_allowed = true};
  CHECK(check(exec, diff{{added("tools/payload", mode_executable)}}).value().ok());
  CHECK(only(exec, added("odd", 0100664)).rule == "mode");
}

TEST_CASE("contract.check.added_bytes_over_budget") {
  task_contract c{.max_added_bytes = 1 << 20};
  // One huge file: 50 MB of data an agent downloaded or generated.
  auto v = check(c, diff{{changed("src/a.c", 3), added("data/huge.bin", mode_file, {}, 50ull << 20)}}).value();
  REQUIRE(v.violations.size() == 1);
  CHECK(v.violations[0].rule == "max_added_bytes");
  CHECK(v.violations[0].path.empty());
  CHECK(has(v.violations[0].detail, "52428800 bytes"));
  CHECK(has(v.violations[0].detail, "'data/huge.bin', 50.0 MiB"));
  CHECK(has(v.violations[0].detail, "allows 1048576"));
  // Many files that are each small add up.
  diff many;
  for (int i = 0; i < 40; ++i) many.files.push_back(added(fmt::format("gen/f{}.txt", i), mode_file, {}, 30'000));
  CHECK(many.added_bytes() == 1'200'000);
  auto vm = check(c, many).value();
  REQUIRE(vm.violations.size() == 1);
  CHECK(vm.violations[0].rule == "max_added_bytes");
  // A file grown in place counts its new content: rewriting is writing.
  file_change grown = changed("data/table.csv", 1);
  grown.added_bytes = 2 << 20;
  CHECK(only(c, grown).rule == "max_added_bytes");
  // At the budget is fine; 0 is no limit; a pure rename writes nothing.
  CHECK(check(c, diff{{added("x", mode_file, {}, 1 << 20)}}).value().ok());
  CHECK(check(task_contract{}, diff{{added("data/huge.bin", mode_file, {}, 50ull << 20)}}).value().ok());
  file_change moved{.path = "b.bin", .old_path = "a.bin", .status = change_status::renamed, .old_mode = mode_file,
                    .new_mode = mode_file};
  CHECK(check(c, diff{{moved}}).value().ok());
}

TEST_CASE("contract.check.protected_paths_need_the_host") {
  task_contract c{};  // the default protected list
  for (auto f : {changed("CMakeLists.txt"), changed(".ci/run"), added(".github/workflows/ci.yml"),
                 with(changed("scripts/build.sh"), change_status::deleted, mode_file, 0), changed("Makefile"),
                 changed("agentcore.json"), added("src/.gitattributes"), added(".envrc"), changed("cmake/deps.cmake"),
                 changed(".gitlab-ci.yml"),
                 // A rename out of a protected path changes it too.
                 file_change{.path = "src/x.sh", .old_path = "scripts/x.sh", .status = change_status::renamed,
                             .old_mode = mode_file, .new_mode = mode_file}}) {
    CAPTURE(f.path);
    auto v = only(c, f);
    CHECK(v.rule == "protected_path");
    CHECK(has(v.detail, "protected"));
    CHECK(has(v.detail, "host"));
    CHECK_FALSE(compiled_contract::compile(c).value().may_write(v.path).empty());
  }
  // Build files below the top level are ordinary work.
  CHECK(check(c, diff{{changed("src/CMakeLists.txt"), changed("tests/Makefile"), changed("docs/scripts/a.md")}})
            .value()
            .ok());
  // A task the host trusts may change them.
  task_contract trusted{.protected_allowed = true};
  CHECK(check(trusted, diff{{changed("CMakeLists.txt"), changed(".ci/run")}}).value().ok());
  // A host's own list replaces the defaults.
  task_contract own{.protected_paths = {"deploy/**"}};
  CHECK(check(own, diff{{changed("CMakeLists.txt")}}).value().ok());
  CHECK(only(own, changed("deploy/prod.yml")).rule == "protected_path");
}

TEST_CASE("contract.json.new_fields_round_trip_and_old_json_reads_the_safe_defaults") {
  task_contract c{.goal = "g",
                  .allowed_paths = {"src/**"},
                  .protected_paths = {"deploy/**"},
                  .protected_allowed = true,
                  .max_added_bytes = 12345,
                  .executable_allowed = true,
                  .links = link_policy::inside,
                  .submodules_allowed = true};
  auto v = to_json_value(c);
  CHECK(v.as_object().at("links").as_string() == "inside");
  auto back = contract_from_json(v);
  REQUIRE_MESSAGE(back.has_value(), back.error().message());
  CHECK(*back == c);
  // Written before these fields existed: the safe defaults.
  auto old = contract_from_json(parse_json(R"({"schema":1,"allowed_paths":["src/**"],"max_files":3})").value()).value();
  CHECK(old.protected_paths == default_protected_paths());
  CHECK_FALSE(old.protected_allowed);
  CHECK(old.max_added_bytes == 0);
  CHECK_FALSE(old.executable_allowed);
  CHECK(old.links == link_policy::none);
  CHECK_FALSE(old.submodules_allowed);
  auto none = contract_from_json(parse_json(R"({"schema":1,"protected_paths":[]})").value()).value();
  CHECK(none.protected_paths.empty());
  auto bad = contract_from_json(parse_json(R"({"schema":1,"links":"everywhere"})").value());
  REQUIRE_FALSE(bad.has_value());
  CHECK(has(bad.error().message(), "\"links\""));
  auto bad_protected = contract_from_json(parse_json(R"({"schema":1,"protected_paths":["/etc/**"]})").value());
  REQUIRE_FALSE(bad_protected.has_value());
  CHECK(has(bad_protected.error().message(), "protected_paths"));
  // A diff's JSON shows what the check saw.
  auto d = json::value_from(diff{{added("l", mode_link, "/etc/passwd", 11)}});
  CHECK(d.as_object().at("added_bytes").as_uint64() == 11);
  CHECK(d.as_object().at("files").as_array()[0].as_object().at("link_target").as_string() == "/etc/passwd");
}

TEST_CASE("contract.ceiling.planner_paths_are_cut_to_the_ceiling") {
  ceiling top{.allowed_paths = {"src/**", "tests/**"}};
  auto narrowed = [&](std::vector<std::string> allowed, const ceiling& c) {
    auto n = narrow(task_contract{.allowed_paths = std::move(allowed)}, c);
    REQUIRE_MESSAGE(n.has_value(), n.error().message());
    return *n;
  };
  auto notes = [](const narrowing& n) { return fmt::format("{}", fmt::join(n.notes, "\n")); };

  // Wider than the ceiling: cut to the ceiling's globs inside it.
  auto all = narrowed({"**"}, top);
  REQUIRE(all.ok());
  CHECK(all.contract.allowed_paths == std::vector<std::string>{"src/**", "tests/**"});
  CHECK(has(notes(all), "allowed path '**' narrowed to the ceiling's 'src/**', 'tests/**'"));
  auto src = narrowed({"src/lexer/**", "src/*.c"}, top);
  CHECK(src.contract.allowed_paths == std::vector<std::string>{"src/lexer/**", "src/*.c"});
  // Outside it, or outside the repository: refused, with why.
  struct refusal {
    std::vector<std::string> allowed;
    const char* says;
  };
  refusal refused[] = {
      {{"docs/**"}, "not inside the ceiling's allowed paths ('src/**', 'tests/**')"},
      {{"../**"}, "'..'"},
      {{"/etc/**"}, "absolute"},
      {{".git/**"}, ".git directory"},
      {{"src/../../**"}, "'..'"},
      {{"src/[oops"}, "unclosed"},
  };
  for (const auto& r : refused) {
    CAPTURE(r.allowed[0]);
    auto n = narrowed(r.allowed, top);
    CHECK_FALSE(n.ok());
    CHECK_MESSAGE(has(n.refused, r.says), n.refused);
    CHECK(has(n.refused, r.allowed[0]));
  }
  // One bad glob costs that glob, noted.
  auto mixed = narrowed({"src/**", "../**", "/etc/**"}, top);
  REQUIRE(mixed.ok());
  CHECK(mixed.contract.allowed_paths == std::vector<std::string>{"src/**"});
  CHECK(has(notes(mixed), "allowed path '../**' dropped"));
  CHECK(has(notes(mixed), "allowed path '/etc/**' dropped"));
  // Nothing proposed: the ceiling's.
  CHECK(narrowed({}, top).contract.allowed_paths == top.allowed_paths);
  // "./src/**" is read as "src/**" (and the compiler, strict, refuses the former).
  auto dotted = narrowed({"./src/**"}, top);
  REQUIRE(dotted.ok());
  CHECK(dotted.contract.allowed_paths == std::vector<std::string>{"src/**"});
  CHECK(has(notes(dotted), "allowed path './src/**' read as 'src/**'"));
}

TEST_CASE("contract.ceiling.protected_paths_stay_closed_to_planners") {
  ceiling whole{};  // the whole repository, default protected paths
  auto n = narrow(task_contract{.allowed_paths = {"**"}}, whole).value();
  REQUIRE(n.ok());
  CHECK(n.contract.allowed_paths == std::vector<std::string>{"**"});
  CHECK(n.contract.protected_paths == default_protected_paths());
  CHECK_FALSE(n.contract.protected_allowed);
  CHECK(has(fmt::format("{}", fmt::join(n.notes, "\n")), "includes protected paths ('.ci/**'"));
  // The worker of such a task still cannot rewrite the build or the CI.
  auto v = check(n.contract, diff{{changed("CMakeLists.txt"), changed(".ci/run"), changed("src/a.c")}}).value();
  CHECK(rules(v) == std::vector<std::string>{"protected_path CMakeLists.txt", "protected_path .ci/run"});
  // A proposal naming protected paths loses them.
  for (const char* p : {".ci/**", "CMakeLists.txt", ".github/workflows/**", "scripts/release.sh", ".gitmodules"}) {
    CAPTURE(p);
    auto r = narrow(task_contract{.allowed_paths = {p}}, whole).value();
    CHECK_FALSE(r.ok());
    CHECK(has(r.refused, "protected"));
  }
  auto partly = narrow(task_contract{.allowed_paths = {"scripts/**", "src/**"}}, whole).value();
  REQUIRE(partly.ok());
  CHECK(partly.contract.allowed_paths == std::vector<std::string>{"src/**"});
  // Asking for the keys does not get them; emptying the list does not either.
  auto asks = narrow(task_contract{.protected_paths = {}, .protected_allowed = true}, whole).value();
  REQUIRE(asks.ok());
  CHECK_FALSE(asks.contract.protected_allowed);
  CHECK(asks.contract.protected_paths == default_protected_paths());
  CHECK(has(fmt::format("{}", fmt::join(asks.notes, "\n")), "protected_allowed cleared"));
  // More protection is kept.
  auto more = narrow(task_contract{.protected_paths = {"src/api/**"}}, whole).value();
  CHECK(std::count(more.contract.protected_paths.begin(), more.contract.protected_paths.end(), "src/api/**") == 1);
}

TEST_CASE("contract.ceiling.limits_and_permissions_are_capped") {
  ceiling top{.forbidden_paths = {"secrets/**"}, .max_files = 5, .max_added_bytes = 1 << 20, .binary_allowed = false,
              .links = link_policy::none};
  task_contract asks{.forbidden_paths = {"/etc/**", ".git/**", "gen/**"},
                     .max_files = 50,
                     .max_changed_lines = 100,
                     .max_added_bytes = 1ull << 40,
                     .binary_allowed = true,
                     .executable_allowed = true,
                     .links = link_policy::any,
                     .submodules_allowed = true};
  auto n = narrow(asks, top).value();
  REQUIRE(n.ok());
  const auto& c = n.contract;
  CHECK(c.max_files == 5);
  CHECK(c.max_changed_lines == 100);  // the ceiling sets none
  CHECK(c.max_added_bytes == 1u << 20);
  CHECK_FALSE(c.binary_allowed);
  CHECK(c.executable_allowed);  // the ceiling allows it
  CHECK(c.links == link_policy::none);
  CHECK_FALSE(c.submodules_allowed);
  CHECK(c.forbidden_paths == std::vector<std::string>{".git/**", "gen/**", "secrets/**"});
  auto text = fmt::format("{}", fmt::join(n.notes, "\n"));
  for (const char* says : {"forbidden path '/etc/**' dropped", "max_files 50 lowered to the ceiling's 5",
                           "max_added_bytes 1099511627776 lowered", "binary_allowed cleared", "links 'any' narrowed",
                           "submodules_allowed cleared"}) {
    CAPTURE(says);
    CHECK(has(text, says));
  }
  // No limit proposed: the ceiling's.
  CHECK(narrow(task_contract{}, top).value().contract.max_files == 5);
  // A malformed ceiling is the host's error.
  auto bad = narrow(task_contract{}, ceiling{.allowed_paths = {"../**"}});
  REQUIRE_FALSE(bad.has_value());
  CHECK(has(bad.error().message(), "ceiling"));
}

TEST_CASE("contract.ceiling.json") {
  ceiling c{.allowed_paths = {"src/**"}, .protected_paths = {".ci/**"}, .max_added_bytes = 77, .links = link_policy::none};
  auto back = ceiling_from_json(to_json_value(c));
  REQUIRE_MESSAGE(back.has_value(), back.error().message());
  CHECK(*back == c);
  CHECK(ceiling_from_json(parse_json("{}").value()).value() == ceiling{});
  struct bad_case {
    const char* json;
    const char* mentions;
  };
  bad_case cases[] = {
      {R"({"allowed":["src/**"]})", "unknown field 'allowed'"},
      {R"({"allowed_paths":["/etc/**"]})", "absolute"},
      {R"({"protected_paths":[".git/**"]})", "protected_paths"},
      {R"({"links":"all"})", "\"links\""},
      {R"({"max_files":-1})", "\"max_files\""},
      {R"([])", "object"},
  };
  for (const auto& b : cases) {
    CAPTURE(b.json);
    auto r = ceiling_from_json(parse_json(b.json).value());
    REQUIRE_FALSE(r.has_value());
    CHECK_MESSAGE(has(r.error().message(), b.mentions), r.error().message());
  }
}
