#include <agentcore/agent/tools.hpp>

#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/regex.hpp>

#include <fmt/format.h>

#include <algorithm>

namespace agentcore::agent {

namespace {

json::object schema(std::initializer_list<std::pair<std::string_view, json::value>> props,
                    std::initializer_list<std::string_view> required) {
  json::object p;
  for (const auto& [k, v] : props) p[k] = v;
  json::array req;
  for (auto r : required) req.emplace_back(r);
  return {{"type", "object"}, {"properties", std::move(p)}, {"required", std::move(req)}};
}

json::value prop(std::string_view type, std::string_view description) {
  return json::object{{"type", type}, {"description", description}};
}

// Cuts an answer to `limit` bytes at a line boundary, saying so.
std::string cap(std::string text, std::size_t limit) {
  if (text.size() <= limit) return text;
  auto cut = text.rfind('\n', limit);
  if (cut == std::string::npos || cut < limit / 2) cut = limit;
  std::size_t dropped = text.size() - cut;
  text.resize(cut);
  text += fmt::format("\n[... {} more bytes not shown: narrow the request]", dropped);
  return text;
}

std::string cut_line(std::string_view line, std::size_t chars) {
  if (line.size() <= chars) return std::string(line);
  return fmt::format("{}... [line cut at {} of {} chars]", line.substr(0, chars), chars, line.size());
}

// The 1-based line number of byte offset `pos`.
std::size_t line_of(std::string_view text, std::size_t pos) {
  return static_cast<std::size_t>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(pos), '\n')) + 1;
}

#define AGENTCORE_TRY_ARG(var, expr) \
  auto var = (expr);                 \
  if (!var) return refusal(var.error())

tool_output read_file(const tools_options& o, const json::object& args, tool_context& ctx) {
  AGENTCORE_TRY_ARG(path, string_arg(args, "read_file", "path"));
  AGENTCORE_TRY_ARG(start, optional_int_arg(args, "read_file", "start_line"));
  AGENTCORE_TRY_ARG(end, optional_int_arg(args, "read_file", "end_line"));
  auto text = ctx.workspace.read(*path);
  if (!text) return refusal(text.error());
  if (looks_binary(*text)) return {fmt::format("'{}' is a binary file ({} bytes); it is not shown", *path, text->size()), false};
  if (text->empty()) return {fmt::format("'{}' is empty", *path), false};
  std::vector<std::string_view> lines;
  std::string_view rest = *text;
  while (!rest.empty()) {
    auto nl = rest.find('\n');
    lines.push_back(rest.substr(0, nl));
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }
  std::int64_t total = static_cast<std::int64_t>(lines.size());
  std::int64_t first = start->value_or(1), last = end->value_or(total);
  if (first > total)
    return {fmt::format("read_file: '{}' has {} lines; start_line {} is past the end", *path, total, first), true};
  if (first < 1 || last < first)
    return {fmt::format("read_file: start_line must be at least 1 and end_line at least start_line (got {} and {})",
                        first, last),
            true};
  last = std::min(last, total);
  std::string out;
  std::int64_t shown_to = first - 1;
  for (std::int64_t i = first; i <= last; ++i) {
    if (static_cast<std::size_t>(i - first) >= o.read_lines || out.size() > o.answer_bytes) break;
    out += fmt::format("{:6}\t{}\n", i, cut_line(lines[static_cast<std::size_t>(i - 1)], o.line_chars));
    shown_to = i;
  }
  if (shown_to < last)
    out += fmt::format("[lines {}-{} of {} shown; read on with start_line={}]\n", first, shown_to, total, shown_to + 1);
  return {std::move(out), false};
}

tool_output write_file(const json::object& args, tool_context& ctx) {
  AGENTCORE_TRY_ARG(path, string_arg(args, "write_file", "path"));
  AGENTCORE_TRY_ARG(content, string_arg(args, "write_file", "content"));
  auto w = ctx.workspace.write(*path, *content);
  if (!w) return refusal(w.error());
  return {fmt::format("wrote {} bytes to '{}'", content->size(), *ctx.workspace.relative(*path)), false};
}

tool_output edit_file(const json::object& args, tool_context& ctx) {
  AGENTCORE_TRY_ARG(path, string_arg(args, "edit_file", "path"));
  AGENTCORE_TRY_ARG(old_text, string_arg(args, "edit_file", "old_text"));
  AGENTCORE_TRY_ARG(new_text, string_arg(args, "edit_file", "new_text"));
  AGENTCORE_TRY_ARG(all, optional_bool_arg(args, "edit_file", "replace_all"));
  if (old_text->empty())
    return refusal(fail(error::bad_arguments, "edit_file: old_text is empty; to create or replace a whole file use "
                                              "write_file"));
  auto text = ctx.workspace.read(*path);
  if (!text) return refusal(text.error());
  if (looks_binary(*text))
    return refusal(fail(error::binary, fmt::format("'{}' is a binary file; edit_file edits text", *path)));
  std::vector<std::size_t> at;
  for (auto p = text->find(*old_text); p != std::string::npos; p = text->find(*old_text, p + old_text->size()))
    at.push_back(p);
  if (at.empty()) {
    std::string hint = "read the file again and copy the text exactly, whitespace included";
    auto first_line = std::string_view(*old_text).substr(0, old_text->find('\n'));
    auto trimmed = first_line.substr(std::min(first_line.find_first_not_of(" \t"), first_line.size()));
    if (!trimmed.empty())
      if (auto p = text->find(trimmed); p != std::string::npos)
        hint = fmt::format("its first line appears (maybe with other indentation) at line {}; {}", line_of(*text, p), hint);
    return refusal(fail(error::search_text_missing,
                        fmt::format("edit_file: the text to replace is not in '{}'; {}", *path, hint)));
  }
  if (at.size() > 1 && !all->value_or(false)) {
    std::string lines;
    for (std::size_t i = 0; i < at.size() && i < 10; ++i) lines += (i ? ", " : "") + std::to_string(line_of(*text, at[i]));
    return refusal(fail(error::search_text_ambiguous,
                        fmt::format("edit_file: the text to replace is in '{}' {} times (at lines {}); include more "
                                    "of the surrounding lines to make it unique, or set replace_all to true",
                                    *path, at.size(), lines)));
  }
  std::string out;
  out.reserve(text->size() + at.size() * new_text->size());
  std::size_t from = 0;
  for (auto p : at) {
    out.append(*text, from, p - from);
    out += *new_text;
    from = p + old_text->size();
  }
  out.append(*text, from);
  auto w = ctx.workspace.write(*path, out);
  if (!w) return refusal(w.error());
  return {fmt::format("replaced {} occurrence{} in '{}' (first at line {})", at.size(), at.size() == 1 ? "" : "s",
                      *ctx.workspace.relative(*path), line_of(*text, at.front())),
          false};
}

tool_output list_files(const tools_options& o, const json::object& args, tool_context& ctx) {
  AGENTCORE_TRY_ARG(path, optional_string_arg(args, "list_files", "path"));
  AGENTCORE_TRY_ARG(recursive, optional_bool_arg(args, "list_files", "recursive"));
  bool truncated = false;
  auto entries = ctx.workspace.list(path->value_or("."), recursive->value_or(true), o.list_limit, truncated);
  if (!entries) return refusal(entries.error());
  std::string out;
  for (const auto& e : *entries)
    out += e.path + (e.directory ? "/" : "") + (e.link ? " (symbolic link)" : "") + "\n";
  if (entries->empty()) out = "(no files)\n";
  if (truncated)
    out += fmt::format("[first {} entries shown; list a subdirectory to see the rest]\n", entries->size());
  return {cap(std::move(out), o.answer_bytes), false};
}

tool_output search(const tools_options& o, const json::object& args, tool_context& ctx) {
  AGENTCORE_TRY_ARG(pattern, string_arg(args, "search", "pattern"));
  AGENTCORE_TRY_ARG(path, optional_string_arg(args, "search", "path"));
  AGENTCORE_TRY_ARG(glob_text, optional_string_arg(args, "search", "glob"));
  AGENTCORE_TRY_ARG(icase, optional_bool_arg(args, "search", "case_insensitive"));
  if (pattern->empty()) return refusal(fail(error::bad_arguments, "search: the pattern is empty"));
  boost::regex re;
  try {
    boost::regex::flag_type flags = boost::regex::perl;
    if (icase->value_or(false)) flags |= boost::regex::icase;
    re.assign(*pattern, flags);
  } catch (const std::exception& e) {
    return refusal(fail(error::bad_arguments, fmt::format("search: the pattern '{}' is not a valid regular expression: {}",
                                                          *pattern, e.what())));
  }
  std::optional<contract::glob> only;
  if (*glob_text) {
    auto g = contract::glob::compile(**glob_text);
    if (!g) return refusal(fail(error::bad_arguments, fmt::format("search: glob: {}", g.error().message())));
    only = std::move(*g);
  }
  bool truncated = false;
  auto files = ctx.workspace.list(path->value_or("."), true, o.search_files, truncated);
  if (!files) {
    // A single file is fine to search too.
    auto one = ctx.workspace.relative(path->value_or("."));
    if (!one || files.error().code() != make_error_code(error::bad_arguments)) return refusal(files.error());
    files = std::vector<entry>{{*one, false, false, 0}};
  }
  std::string out;
  std::size_t matches = 0, searched = 0;
  bool more = false;
  for (const auto& f : *files) {
    if (f.directory || f.link) continue;
    if (only && !only->matches(f.path)) continue;
    if (ctx.stop && ctx.stop->load()) break;
    auto text = ctx.workspace.read(f.path);
    if (!text || looks_binary(*text)) continue;
    ++searched;
    std::string_view rest = *text;
    std::size_t line = 0;
    while (!rest.empty() && !more) {
      ++line;
      auto nl = rest.find('\n');
      auto l = rest.substr(0, nl);
      rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
      bool hit = false;
      try {
        hit = boost::regex_search(l.begin(), l.end(), re);
      } catch (const std::exception& e) {  // Boost.Regex bounds its work and says so instead of running away
        return refusal(fail(error::bad_arguments,
                            fmt::format("search: the pattern '{}' is too costly to match ({}); simplify it", *pattern,
                                        e.what())));
      }
      if (!hit) continue;
      if (matches == o.search_matches) {
        more = true;
        break;
      }
      ++matches;
      out += fmt::format("{}:{}: {}\n", f.path, line, cut_line(l, 300));
    }
    if (more) break;
  }
  if (matches == 0) out = fmt::format("no match for '{}' in {} files\n", *pattern, searched);
  if (more) out += fmt::format("[first {} matches shown; narrow the pattern, path or glob]\n", matches);
  if (truncated) out += fmt::format("[only the first {} files were searched]\n", o.search_files);
  return {cap(std::move(out), o.answer_bytes), false};
}

tool_output run_command(const tools_options& o, const json::object& args, tool_context& ctx) {
  AGENTCORE_TRY_ARG(command, string_arg(args, "run_command", "command"));
  AGENTCORE_TRY_ARG(seconds, optional_int_arg(args, "run_command", "timeout_seconds"));
  if (command->empty()) return refusal(fail(error::bad_arguments, "run_command: the command is empty"));
  auto limit = std::chrono::duration_cast<std::chrono::milliseconds>(o.command_timeout);
  if (*seconds) {
    if (**seconds <= 0)
      return refusal(fail(error::bad_arguments, "run_command: timeout_seconds must be a positive number of seconds"));
    limit = std::chrono::milliseconds(std::min<std::int64_t>(**seconds, o.max_command_timeout.count()) * 1000);
  }
  auto now = std::chrono::steady_clock::now();
  if (ctx.deadline != std::chrono::steady_clock::time_point::max()) {
    if (ctx.deadline <= now)
      return refusal(fail(error::bad_arguments, "run_command: the task's time box is spent; call finish"));
    limit = std::min(limit, std::chrono::duration_cast<std::chrono::milliseconds>(ctx.deadline - now));
  }
  process::run_options co = ctx.commands;
  co.working_directory = ctx.workspace.root();
  co.timeout = limit;
  co.output_limit = std::min(co.output_limit, o.answer_bytes);
  co.stop = ctx.stop;
  co.stdin_data.clear();
  co.on_stdout = nullptr;
  if (!ctx.usage_before_commands) {  // the same directories process::run measures
    process::disk_usage u = process::measure_disk_usage(co.working_directory);
    for (const auto& w : co.sandbox.writable) {
      auto more = process::measure_disk_usage(w);
      u.bytes += more.bytes;
      u.entries += more.entries;
    }
    ctx.usage_before_commands = u;
  }
  co.written_since = ctx.usage_before_commands;
  co.max_written_bytes = o.max_task_written_bytes;
  co.max_new_entries = o.max_task_new_entries;
  auto before = ctx.workspace.fingerprint();
  ctx.workspace.note_untracked_change();  // whatever the fingerprint says: a command may change anything
  auto r = process::run(*command, co);
  if (!r) return refusal(r.error());
  if (ctx.workspace.fingerprint() != before) ctx.workspace.note_change();
  if (ctx.events) ctx.events->publish(command_event{ctx.task, *r});
  std::string out = fmt::format("{} in {} ms\n", r->outcome(), r->duration.count());
  out += r->log;
  return {cap(std::move(out), o.answer_bytes + 256), !r->passed()};
}

}  // namespace

std::shared_ptr<tool> read_file_tool(tools_options o) {
  return make_tool({"read_file",
                    "Read a text file of the worktree, with line numbers. Large files: give start_line and end_line.",
                    schema({{"path", prop("string", "path relative to the worktree root")},
                            {"start_line", prop("integer", "first line to show (1-based)")},
                            {"end_line", prop("integer", "last line to show (inclusive)")}},
                           {"path"})},
                   [o](const json::object& a, tool_context& c) { return read_file(o, a, c); });
}

std::shared_ptr<tool> write_file_tool(tools_options) {
  return make_tool({"write_file",
                    "Create a file or replace its whole content. Missing directories are created. Only paths the "
                    "task's contract allows may be written.",
                    schema({{"path", prop("string", "path relative to the worktree root")},
                            {"content", prop("string", "the file's complete new content")}},
                           {"path", "content"})},
                   [](const json::object& a, tool_context& c) { return write_file(a, c); });
}

std::shared_ptr<tool> edit_file_tool(tools_options) {
  return make_tool({"edit_file",
                    "Replace exact text in a file. old_text must appear exactly once (copy it from read_file output "
                    "without the line numbers), unless replace_all is true.",
                    schema({{"path", prop("string", "path relative to the worktree root")},
                            {"old_text", prop("string", "the exact text to replace")},
                            {"new_text", prop("string", "the text to put in its place")},
                            {"replace_all", prop("boolean", "replace every occurrence (default false)")}},
                           {"path", "old_text", "new_text"})},
                   [](const json::object& a, tool_context& c) { return edit_file(a, c); });
}

std::shared_ptr<tool> list_files_tool(tools_options o) {
  return make_tool({"list_files",
                    "List the files under a directory of the worktree (files ignored by .gitignore are left out).",
                    schema({{"path", prop("string", "directory relative to the worktree root (default: the root)")},
                            {"recursive", prop("boolean", "list files in subdirectories too (default true)")}},
                           {})},
                   [o](const json::object& a, tool_context& c) { return list_files(o, a, c); });
}

std::shared_ptr<tool> search_tool(tools_options o) {
  return make_tool({"search",
                    "Search the worktree's text files for a regular expression (Perl syntax); answers path:line: text.",
                    schema({{"pattern", prop("string", "the regular expression")},
                            {"path", prop("string", "directory or file to search (default: the whole worktree)")},
                            {"glob", prop("string", "only files matching this glob, e.g. 'src/**/*.cpp'")},
                            {"case_insensitive", prop("boolean", "ignore case (default false)")}},
                           {"pattern"})},
                   [o](const json::object& a, tool_context& c) { return search(o, a, c); });
}

std::shared_ptr<tool> run_command_tool(tools_options o) {
  return make_tool(
      {"run_command",
       fmt::format("Run a shell command in the worktree root (builds, tests, git status). It runs with a time limit "
                   "(default {} s), a capped output, no network and no secrets in its environment.",
                   o.command_timeout.count()),
       schema({{"command", prop("string", "the shell command")},
               {"timeout_seconds", prop("integer", "time limit in seconds")}},
              {"command"})},
      [o](const json::object& a, tool_context& c) { return run_command(o, a, c); });
}

std::shared_ptr<tool> finish_tool() {
  return make_tool({"finish",
                    "Call when the task is done (or cannot be done): summarise what you changed and how you checked "
                    "it, or what stopped you.",
                    schema({{"summary", prop("string", "what was done, and how it was checked")}}, {"summary"})},
                   [](const json::object& a, tool_context& c) -> tool_output {
                     AGENTCORE_TRY_ARG(summary, string_arg(a, "finish", "summary"));
                     c.finished = true;
                     c.summary = *summary;
                     return {"finished", false};
                   });
}

std::vector<std::shared_ptr<tool>> standard_tools(tools_options o) {
  return {read_file_tool(o),  write_file_tool(o), edit_file_tool(o), list_files_tool(o),
          search_tool(o),     run_command_tool(o), finish_tool()};
}

void tag_invoke(json::value_from_tag, json::value& v, const command_event& e) {
  v = {{"task", e.task}, {"result", json::value_from(e.result)}};
}

}  // namespace agentcore::agent
