// agentcore/core/memory.hpp: the C library's allocator in a process that runs
// swarms for days.
//
//   int main() {
//     agentcore::tune_allocator_for_long_runs();  // first thing, before any thread starts
//     ...
//   }
//
// glibc gives threads that allocate at once arenas of their own, and gives
// back memory freed at the top of such an arena only when a later free finds
// more than the trim threshold there. That threshold rises with every large
// block freed (up to 64 MiB), and malloc_trim() leaves those tops alone. A
// swarm's threads make passing large allocations (a planning round's list of
// tasks, a store snapshot, the gate's batch), so with the defaults its RSS
// creeps up while the heap in use stays flat: about 300 KiB per thousand task
// lifecycles in agentcore-bench's soak, 24 after this call (what is left is
// fragmentation inside the arenas).
#pragma once

namespace agentcore {

/// Fixes glibc's thresholds instead of letting them rise: blocks of 128 KiB
/// and more are mapped on their own (and unmapped when freed); more than
/// 256 KiB free at an arena's top goes back to the system at the next free. It
/// changes the whole process's allocator, so agentcore never calls it by
/// itself; a host that runs long does, once, early (the `agentcore` program
/// does). Returns false where the C library is not glibc (nothing changed).
bool tune_allocator_for_long_runs() noexcept;

}  // namespace agentcore
