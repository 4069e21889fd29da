#pragma once
// Threads on the power-fail notice's path must run the moment they wake. On a host whose CPUs
// are all busy running vCPUs, a woken thread of the normal class otherwise waits until the
// running vCPU thread's time slice ends: 2.5-3.5 ms measured here, more than a PSU's hold-up
// after PWR_OK drops. Since Linux 6.12 (EEVDF) a thread may ask for a shorter slice than the
// default, and a waking thread with a shorter slice preempts the running one at once. It needs no
// privilege and does not change the thread's share of the CPU.
//
// Not real-time priority: a SCHED_FIFO thread that spins while it waits for the vCPUs (as the
// pause does, sched_yield included) keeps their threads off its CPU; measured here, it made the
// checkpoint itself 5x slower.
#include <chrono>
#include <optional>

namespace nvhv {

// Asks for `slice` for the calling thread; threads it creates later inherit it. False when this
// kernel keeps the default slice (before 6.12 it ignores the request).
bool request_time_slice(std::chrono::microseconds slice);

// The calling thread's slice as the kernel reports it, if it reports one (6.12 and later).
std::optional<std::chrono::microseconds> current_time_slice();

// What nvhv asks for on the notice's path: the shortest slice the kernel accepts.
inline constexpr std::chrono::microseconds kNoticePathSlice{100};

}  // namespace nvhv
